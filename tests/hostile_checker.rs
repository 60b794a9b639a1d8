//! The invariant checker used by the fuzz targets and hostile tests must itself catch
//! what it claims to: each broken output here is built by hand and must be refused.

mod hostile_support;
#[path = "../fuzz/src/invariants.rs"]
mod invariants;

use hostile_support::Dsn;
use plainbounce::engine::{HeaderEdit, Modification};

const NEW_PART: &str = "Content-Type: multipart/alternative; boundary=\"=_pb_alt_1\"\n\n\
--=_pb_alt_1\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n\
Your message to bob@remote.example couldn't be delivered.\n\
--=_pb_alt_1\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n\
<p>Your message to <b>bob@remote.example</b> couldn&#39;t be delivered: &lt;script&gt;</p>\n\
--=_pb_alt_1--\n";

fn edits() -> Modification {
    Modification {
        header_edits: vec![HeaderEdit::Set { name: "X-Plainbounce".into(), value: "rewritten; reason=userunknown".into() }],
        body: Some(Vec::new()),
        summary: "test".into(),
    }
}

/// The original, and a correct rewrite of it.
fn pair() -> (Dsn, Dsn) {
    let orig = Dsn::new("550 5.1.1 user unknown");
    let mut out = orig.clone();
    out.human = NEW_PART.into();
    out.headers.push("X-Plainbounce: rewritten; reason=userunknown".into());
    (orig, out)
}

fn check(orig: &Dsn, out: &[u8], m: &Modification) -> invariants::Check {
    invariants::check_rewrite(&orig.build(), m, out)
}

#[test]
fn a_correct_rewrite_passes() {
    let (orig, out) = pair();
    check(&orig, &out.build(), &edits()).unwrap();
    let mut crlf = orig.clone();
    crlf.eol = "\r\n";
    let mut crlf_out = out.clone();
    crlf_out.eol = "\r\n";
    check(&crlf, &crlf_out.build(), &edits()).unwrap();
}

#[test]
fn header_injection_is_caught() {
    let (orig, mut out) = pair();
    out.headers.push("X-Injected: yes".into());
    assert!(check(&orig, &out.build(), &edits()).unwrap_err().contains("header injection"));
    let mut m = edits();
    m.header_edits.push(HeaderEdit::Add { name: "X-Plainbounce-Reason".into(), value: "a\r\nX-Evil: 1".into() });
    assert!(check(&orig, &pair().1.build(), &m).unwrap_err().contains("control character"));
}

#[test]
fn a_lost_original_header_is_caught() {
    let (orig, mut out) = pair();
    out.headers.retain(|h| !h.starts_with("Auto-Submitted"));
    assert!(check(&orig, &out.build(), &edits()).unwrap_err().contains("lost"));
}

#[test]
fn a_changed_machine_part_is_caught() {
    let (orig, mut out) = pair();
    out.recipients[0][3] = "Status: 5.1.2".into();
    assert!(check(&orig, &out.build(), &edits()).unwrap_err().contains("parts [1, 2] changed"));
    let (orig, mut out) = pair();
    out.returned = Some(out.returned.unwrap().replace("noon", "one"));
    assert!(check(&orig, &out.build(), &edits()).unwrap_err().contains("parts [1, 3] changed"));
}

#[test]
fn an_injected_report_delimiter_is_caught() {
    let (orig, mut out) = pair();
    out.human = NEW_PART.replace("couldn't", &format!("couldn't\n--{}\nContent-Type: text/html\n\n", orig.boundary));
    assert!(check(&orig, &out.build(), &edits()).unwrap_err().contains("parts became"));
    let (orig, mut out) = pair();
    out.human = NEW_PART.replace("couldn't", &format!("couldn't\n--{}--\n", orig.boundary));
    assert!(check(&orig, &out.build(), &edits()).is_err());
}

#[test]
fn an_unbalanced_or_leaking_inner_boundary_is_caught() {
    let (orig, mut out) = pair();
    out.human = NEW_PART.replace("--=_pb_alt_1--\n", "");
    assert!(check(&orig, &out.build(), &edits()).unwrap_err().contains("unbalanced"));
    let (orig, mut out) = pair();
    out.human = NEW_PART.replace("be delivered.", "be delivered. --=_pb_alt_1 inside");
    assert!(check(&orig, &out.build(), &edits()).unwrap_err().contains("inside its own part"));
    let (orig, mut out) = pair();
    out.human = NEW_PART.replace("=_pb_alt_1", &format!("{}x", orig.boundary));
    assert!(check(&orig, &out.build(), &edits()).unwrap_err().contains("clashes"));
}

#[test]
fn a_foreign_header_in_the_new_part_is_caught() {
    let (orig, mut out) = pair();
    out.human = NEW_PART.replace("Content-Type: text/plain;", "Bcc: eve@example.net\nContent-Type: text/plain;");
    assert!(check(&orig, &out.build(), &edits()).unwrap_err().contains("unexpected header"));
}

#[test]
fn unsafe_content_in_the_new_part_is_caught() {
    let cases = [
        ("&lt;script&gt;", "<script>", "<script"),
        ("be delivered.", "be delivered.=00", "control character"),
        ("be delivered.", "be delivered.\u{e9}", "8-bit"),
        ("be delivered.", &"x".repeat(1200), "octets"),
    ];
    for (from, to, expect) in cases {
        let (orig, mut out) = pair();
        out.human = NEW_PART.replace(from, to);
        let err = check(&orig, &out.build(), &edits()).unwrap_err();
        assert!(err.contains(expect), "{to:?}: {err}");
    }
}

#[test]
fn a_changed_report_type_is_caught() {
    let (orig, mut out) = pair();
    out.content_type = out.content_type.replace("report-type=delivery-status", "report-type=disposition-notification");
    assert!(check(&orig, &out.build(), &edits()).unwrap_err().contains("header injection"));
    // Even when the engine says it sets Content-Type, the report type must stay.
    let mut m = edits();
    m.header_edits.push(HeaderEdit::Set { name: "Content-Type".into(), value: out.content_type.replace('\n', "")});
    assert!(check(&orig, &out.build(), &m).unwrap_err().contains("content type changed"));
}

#[test]
fn body_change_without_new_body_is_caught() {
    let (orig, out) = pair();
    let mut m = edits();
    m.body = None;
    assert!(check(&orig, &out.build(), &m).unwrap_err().contains("body changed"));
}

#[test]
fn nested_report_siblings_must_stay() {
    let wrap = |d: &Dsn, extra: &str| {
        let raw = String::from_utf8(d.build()).unwrap();
        let (head, body) = raw.split_once("\n\n").unwrap();
        let ct = head.lines().skip_while(|l| !l.starts_with("Content-Type:")).collect::<Vec<_>>().join("\n");
        let top = head.lines().take_while(|l| !l.starts_with("MIME-Version")).collect::<Vec<_>>().join("\n");
        format!("{top}\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"outer\"\n\n--outer\n{ct}\n\n{body}\n--outer\nContent-Type: text/plain\n\n{extra}\n--outer--\n")
    };
    let (orig, out) = pair();
    let original = wrap(&orig, "sibling");
    invariants::check_rewrite(original.as_bytes(), &edits(), wrap(&out, "sibling").as_bytes()).unwrap();
    let err = invariants::check_rewrite(original.as_bytes(), &edits(), wrap(&out, "changed").as_bytes()).unwrap_err();
    assert!(err.contains("parts [1, 2] changed, and only part 1 may"), "{err}");
}

#[test]
fn a_new_part_put_before_the_old_ones_passes() {
    let orig = Dsn::new("550 5.1.1 user unknown");
    let mut out = orig.clone();
    out.human = format!("{NEW_PART}\n--{}\n{}", orig.boundary, orig.human);
    check(&orig, &out.build(), &edits()).unwrap();
    out.human = format!("{NEW_PART}\n--{}\n{}", orig.boundary, orig.human.replace("sorry", "glad"));
    assert!(check(&orig, &out.build(), &edits()).unwrap_err().contains("parts became"));
}

#[test]
fn a_wrapped_plain_bounce_must_keep_its_body() {
    let original = b"From: MAILER-DAEMON@mx.example.org\nSubject: failure notice\nContent-Type: text/plain; charset=latin1\n\nHi. This is the qmail-send program.\n<bob@remote.example>:\n550 5.1.1 no mailbox here\n";
    let body = &original[invariants::split_entity(original).header.len() + 1..];
    let wrapped = |old_body: &[u8]| {
        let mut out = b"From: MAILER-DAEMON@mx.example.org\nSubject: failure notice\nContent-Type: multipart/mixed; boundary=\"=_pb_mix\"\nX-Plainbounce: rewritten; reason=userunknown\n\n--=_pb_mix\n".to_vec();
        out.extend_from_slice(NEW_PART.as_bytes());
        out.extend_from_slice(b"\n--=_pb_mix\nContent-Type: text/plain; charset=latin1\n\n");
        out.extend_from_slice(old_body);
        out.extend_from_slice(b"\n--=_pb_mix--\n");
        out
    };
    let mut m = edits();
    m.header_edits.push(HeaderEdit::Set { name: "Content-Type".into(), value: "multipart/mixed; boundary=\"=_pb_mix\"".into() });
    invariants::check_rewrite(original, &m, &wrapped(body)).unwrap();
    let err = invariants::check_rewrite(original, &m, &wrapped(&body[1..])).unwrap_err();
    assert!(err.contains("not byte-identical"), "{err}");
}
