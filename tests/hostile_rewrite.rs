//! Hostile remote text and hostile structure through the rewrite: every change must pass
//! the invariants (valid MIME, parts 2..n byte-identical, no injected header or boundary),
//! remote text must come out escaped and cleaned, and nothing is rewritten twice.
//!
//! The facts are handed to the engine as a parser would (`process_bounce`), but without
//! the parser's cleaning: the engine's own sanitising is what is tested.

mod hostile_support;
#[path = "../fuzz/src/invariants.rs"]
mod invariants;

use hostile_support::{arf_report, auto_reply, recipient, Dsn};
use mail_parser::{MessageParser, MimeHeaders, PartType};
use plainbounce::config::Config;
use plainbounce::dsn::{Bounce, OriginalMessage, RecipientFacts, ReportKind};
use plainbounce::engine::{self, Engine, Options, Outcome};
use std::sync::LazyLock;

static ENGINE: LazyLock<Engine> = LazyLock::new(|| Engine::new(Config::embedded()).unwrap());

fn facts(address: &str, status: &str, diagnostic: &str) -> RecipientFacts {
    RecipientFacts {
        address: Some(address.into()),
        action: Some("failed".into()),
        status: Some(status.into()),
        diagnostic: Some(diagnostic.into()),
        remote_mta: Some("mx.remote.example".into()),
        ..Default::default()
    }
}

fn bounce(recipients: Vec<RecipientFacts>) -> Bounce {
    Bounce {
        format: "rfc3464",
        reporting_mta: Some("mx.example.org".into()),
        recipients,
        original: OriginalMessage { subject: Some("Lunch?".into()), ..Default::default() },
        ..Default::default()
    }
}

/// Rewrite `raw` as the bounce `b`; the result must be a sound change.
fn rewrite(raw: &[u8], b: &Bounce) -> Vec<u8> {
    let m = match ENGINE.process_bounce(raw, b, &Options::default()) {
        Outcome::Modify(m) => m,
        Outcome::Pass(why) => panic!("not rewritten: {why}"),
    };
    let out = engine::apply(raw, &m);
    invariants::check_rewrite(raw, &m, &out).unwrap_or_else(|e| panic!("{e}\n--- output ---\n{}", String::from_utf8_lossy(&out)));
    assert!(matches!(ENGINE.process(&out), Outcome::Pass(_)), "a rewritten message must never be rewritten again");
    out
}

/// The decoded text/plain and text/html of the new human-readable part.
fn texts(out: &[u8]) -> (String, String) {
    let msg = MessageParser::default().parse(out).unwrap();
    let (mut text, mut html) = (String::new(), String::new());
    for p in &msg.parts {
        match &p.body {
            PartType::Text(t) if text.is_empty() => text = t.to_string(),
            PartType::Html(h) if html.is_empty() => html = h.to_string(),
            _ => {}
        }
    }
    assert!(!text.is_empty() && !html.is_empty(), "no text and html part in\n{}", String::from_utf8_lossy(out));
    (text, html)
}

fn one(diagnostic: &str) -> (Vec<u8>, Vec<u8>) {
    let raw = Dsn::new(diagnostic).build();
    let out = rewrite(&raw, &bounce(vec![facts("bob@remote.example", "5.1.1", diagnostic)]));
    (raw, out)
}

#[test]
fn crlf_nul_and_escapes_in_the_diagnostic() {
    let d = "550 5.1.1 no such user\r\nX-Injected: yes\0\x1b[31m red\rBcc: eve@example.net\u{202e}txet";
    let (_, out) = one(d);
    let (text, html) = texts(&out);
    assert!(text.contains("no such user X-Injected: yes"), "line breaks become spaces: {text}");
    for t in [&text, &html] {
        assert!(!t.contains('\0') && !t.contains('\x1b') && !t.contains('\u{202e}'), "{t:?}");
        assert!(!t.lines().any(|l| l.starts_with("X-Injected:") || l.starts_with("Bcc:")), "{t}");
    }
}

#[test]
fn html_and_script_in_remote_text_are_escaped() {
    let d = "550 5.7.1 <script>alert(1)</script> <a href=\"javascript:x\">click</a> &amp;";
    let raw = Dsn::new(d).build();
    let b = bounce(vec![facts("<img src=x onerror=alert(1)>@remote.example", "5.7.1", d)]);
    let out = rewrite(&raw, &b);
    let (text, html) = texts(&out);
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
    assert!(!html.contains("<img") && !html.contains("<a href=\"javascript"), "{html}");
    assert!(html.contains("&amp;amp;"), "an entity in remote text is shown, not interpreted: {html}");
    assert!(text.contains("<script>alert(1)</script>"), "text/plain keeps the diagnostic verbatim: {text}");
}

#[test]
fn handlebars_syntax_in_remote_text_is_not_evaluated() {
    let d = "550 5.1.1 {{#each recipients}}LOOP{{/each}} {{> evil}} {{{raw}}} {{lookup this \"x\"}}";
    let (_, out) = one(d);
    let (text, _) = texts(&out);
    assert!(text.contains("{{#each recipients}}LOOP{{/each}} {{> evil}} {{{raw}}}"), "{text}");
}

#[test]
fn diagnostic_containing_boundaries() {
    let b = Dsn::new("x").boundary;
    // The report's own boundary and the shape of plainbounce's boundaries.
    let d = format!("550 5.1.1 gone\n--{b}\nContent-Type: text/html\n\n<b>x</b>\n--{b}--\n--=_plainbounce_alt_0000000000000000_0\n--=_plainbounce_mix_");
    let (_, out) = one(&d);
    let (text, _) = texts(&out);
    assert!(text.contains(&format!("--{b}")), "the text is shown, on one line: {text}");
}

#[test]
fn long_diagnostic_and_long_address_are_bounded() {
    let long = "x".repeat(1024 * 1024);
    let raw = Dsn::new("550 5.1.1 short").build();
    let b = bounce(vec![facts(&format!("{long}@remote.example"), "5.1.1", &format!("550 5.1.1 {long}"))]);
    let out = rewrite(&raw, &b);
    assert!(out.len() < raw.len() + 200_000, "a 1 MB diagnostic grew the message to {} bytes", out.len());
}

#[test]
fn invalid_status_and_unicode_oddities() {
    let raw = Dsn::new("550").build();
    let weird = ["", "9.9.9", "5.1.1.1.1", "\u{fffd}\u{fffd}", "5.\u{0}.1", "𝟓.𝟏.𝟏"];
    for status in weird {
        let b = bounce(vec![facts("b\u{f6}b@r\u{e9}mote.example", status, "\u{fffd}\u{200f}550 \u{feff}user\u{2028}unknown")]);
        rewrite(&raw, &b);
    }
}

#[test]
fn eight_bit_and_folded_top_level_headers_stay() {
    let mut dsn = Dsn::new("550 5.1.1 user unknown");
    dsn.headers.push("X-Folded: one\n two\n\tthree".into());
    let mut raw = dsn.build();
    raw.splice(0..0, b"Subject-Latin1: Unzustellbar: \xe4\xf6\xfc\n".iter().copied());
    rewrite(&raw, &bounce(vec![facts("bob@remote.example", "5.1.1", "550 5.1.1 user unknown")]));
}

#[test]
fn crlf_message() {
    let mut dsn = Dsn::new("550 5.1.1 user unknown");
    dsn.eol = "\r\n";
    let raw = dsn.build();
    let out = rewrite(&raw, &bounce(vec![facts("bob@remote.example", "5.1.1", "550 5.1.1 user unknown")]));
    assert!(!out.windows(2).enumerate().any(|(i, w)| w[1] == b'\n' && w[0] != b'\r' && i > 0), "bare LF in a CRLF message");
}

#[test]
fn missing_closing_delimiter_and_report_without_status_part() {
    let b = bounce(vec![facts("bob@remote.example", "5.1.1", "550 5.1.1 user unknown")]);
    let mut dsn = Dsn::new("550 5.1.1 user unknown");
    dsn.closed = false;
    rewrite(&dsn.build(), &b);
    let mut dsn = Dsn::new("550 5.1.1 user unknown");
    dsn.status_part = None;
    rewrite(&dsn.build(), &b);
}

#[test]
fn report_whose_first_part_is_machine_readable() {
    let mut dsn = Dsn::new("550 5.1.1 user unknown");
    dsn.human = "Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n".into();
    rewrite(&dsn.build(), &bounce(vec![facts("bob@remote.example", "5.1.1", "550 5.1.1 user unknown")]));
}

#[test]
fn nested_multipart_report() {
    let inner = String::from_utf8(Dsn::new("550 5.1.1 user unknown").build()).unwrap();
    let (head, body) = inner.split_once("\n\n").unwrap();
    let ct = head.lines().skip_while(|l| !l.starts_with("Content-Type:")).collect::<Vec<_>>().join("\n");
    let raw = format!(
        "Return-Path: <>\nFrom: MAILER-DAEMON@mx.example.org\nTo: alice@example.org\nSubject: Returned mail\n\
         MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"outer\"\n\n--outer\n{ct}\n\n{body}\n--outer--\n"
    );
    rewrite(raw.as_bytes(), &bounce(vec![facts("bob@remote.example", "5.1.1", "550 5.1.1 user unknown")]));
}

#[test]
fn plain_text_bounce_is_wrapped() {
    let raw = b"Return-Path: <>\nFrom: MAILER-DAEMON@mx.example.org\nTo: alice@example.org\nSubject: failure notice\n\
        Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\n\
        Hi. This is the qmail-send program at mx.example.org.\n<bob@remote.example>:\n\
        550 5.1.1 Benutzer unbekannt \xe4\n--- Below this line is a copy of the message.\n";
    rewrite(raw, &bounce(vec![facts("bob@remote.example", "5.1.1", "550 5.1.1 Benutzer unbekannt")]));
}

/// The fuzzer's find: mail-parser 0.11 swallows the field after a malformed Date, so new
/// MIME fields appended after it were invisible to mail-parser readers. The whole path,
/// parser included, must leave a wrapped bounce that reads as multipart.
#[test]
fn wrapped_bounce_ending_in_a_malformed_date_stays_multipart() {
    let raw = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/qmail-bad-date.eml")).unwrap();
    assert!(raw.windows(6).any(|w| w == b"+0900h"), "the seed still ends its header with the malformed Date");
    let Outcome::Modify(m) = ENGINE.process(&raw) else { panic!("not rewritten") };
    let out = engine::apply(&raw, &m);
    invariants::check_rewrite(&raw, &m, &out).unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&out)));
    let ctype = MessageParser::default().parse(&out).and_then(|msg| msg.content_type().map(|c| c.ctype().to_string()));
    assert_eq!(ctype.as_deref(), Some("multipart"), "{}", String::from_utf8_lossy(&out));
    texts(&out);
}

#[test]
fn fifty_megabyte_returned_message() {
    let mut dsn = Dsn::new("552 5.3.4 message too big");
    let line = "A".repeat(76) + "\n";
    dsn.returned = Some(format!("Content-Type: message/rfc822\n\nSubject: photos\n\n{}", line.repeat(50 * 1024 * 1024 / 77)));
    let raw = dsn.build();
    let out = rewrite(&raw, &bounce(vec![facts("bob@remote.example", "5.3.4", "552 5.3.4 message too big")]));
    assert!(out.len() < raw.len() + 100_000);
}

#[test]
fn ten_thousand_recipients() {
    let mut dsn = Dsn::new("x");
    let n = 10_000;
    dsn.recipients = (0..n).map(|i| recipient(&format!("u{i}@r.example"), "5.1.1", "550 5.1.1 user unknown")).collect();
    let raw = dsn.build();
    let many = (0..n).map(|i| facts(&format!("u{i}@r.example"), if i % 2 == 0 { "5.1.1" } else { "4.2.2" }, "550 user unknown")).collect();
    let out = rewrite(&raw, &bounce(many));
    println!("10 000 recipients: {} bytes in, {} bytes out", raw.len(), out.len());
}

#[test]
fn already_rewritten_is_left_alone() {
    let (_, out) = one("550 5.1.1 user unknown");
    let b = bounce(vec![facts("bob@remote.example", "5.1.1", "550 5.1.1 user unknown")]);
    assert!(matches!(ENGINE.process_bounce(&out, &b, &Options::default()), Outcome::Pass(_)));
    // Also when a remote server forged the marker in the original.
    let mut dsn = Dsn::new("550 5.1.1 user unknown");
    dsn.headers.push("x-plainbounce: rewritten; reason=forged".into());
    assert!(matches!(ENGINE.process_bounce(&dsn.build(), &b, &Options::default()), Outcome::Pass(_)));
}

#[test]
fn feedback_reports_and_auto_replies_are_never_changed() {
    for (raw, kind) in [(arf_report(), ReportKind::Feedback), (auto_reply(), ReportKind::AutoReply)] {
        let mut b = bounce(vec![facts("bob@remote.example", "5.1.1", "550 5.1.1 user unknown")]);
        b.kind = kind;
        assert!(matches!(ENGINE.process_bounce(&raw, &b, &Options::default()), Outcome::Pass(_)));
        assert!(matches!(ENGINE.process(&raw), Outcome::Pass(_)), "{kind:?}");
    }
}

#[test]
fn only_delivered_recipients_is_not_a_failure() {
    let mut f = facts("bob@remote.example", "2.0.0", "250 2.0.0 OK");
    f.action = Some("delivered".into());
    let raw = Dsn::new("250 2.0.0 OK").build();
    assert!(matches!(ENGINE.process_bounce(&raw, &bounce(vec![f]), &Options::default()), Outcome::Pass(_)));
}

#[test]
fn duplicate_content_type_headers() {
    // Found by the rewrite fuzz target: a wrapped bounce whose second Content-Type stayed,
    // so readers that take the last one saw the new MIME body as plain text.
    let raw = b"Return-Path: <>\nFrom: MAILER-DAEMON@mx.example.org\nTo: alice@example.org\n\
        MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"nowhere\"\n\
        Subject: failure notice\nContent-Transfer-Encoding: 8bit\nContent-Type: text/plain; charset=utf-8\n\
        Content-Transfer-Encoding: 7bit\n\n\
        Hi. This is the qmail-send program at mx.example.org.\n<bob@remote.example>:\n550 5.1.1 no mailbox here\n";
    rewrite(raw, &bounce(vec![facts("bob@remote.example", "5.1.1", "550 5.1.1 no mailbox here")]));
}
