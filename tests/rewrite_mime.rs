//! The shape of a rewritten bounce: new notification in, every other byte kept.

mod rewrite_support;

use mail_parser::{MessageParser, MimeHeaders, PartType};
use plainbounce::engine::{apply, Options, Outcome};
use rewrite_support::*;

const REPORTS: &[&str] = &["postfix-userunknown.eml", "multi-recipient.crlf.eml", "global-dsn.eml", "delay-only.eml", "injection.eml", "mixed-bounce.eml"];

#[test]
fn multipart_reports_keep_parts_2_to_n_and_top_level_headers() {
    let engine = test_engine("");
    for name in REPORTS {
        let (raw, out) = rewrite_fixture(&engine, name);
        let before = top_parts(&raw);
        let after = top_parts(&out);
        assert!(before.len() >= 2, "{name}: fixture is multipart");
        assert_eq!(before.len(), after.len(), "{name}: same number of parts");
        assert_eq!(before[1..], after[1..], "{name}: parts 2..n byte-identical");
        assert_ne!(before[0], after[0], "{name}: part 1 replaced");
        // Headers: the marker on top, then exactly the original block.
        let (hb, ha) = (header_block(&raw), header_block(&out));
        assert!(ha.ends_with(hb), "{name}: original headers kept in order");
        let added = String::from_utf8_lossy(&ha[..ha.len() - hb.len()]);
        assert!(added.starts_with("X-Plainbounce: ") && added.trim_end().lines().count() == 1, "{name}: only the marker added: {added:?}");
        assert_eq!(header(&out, "Content-Type"), header(&raw, "Content-Type"), "{name}: top-level Content-Type unchanged");
        assert_eq!(header(&out, "X-Plainbounce").len(), 1, "{name}");
        // Preamble and epilogue untouched: the body after part 1 is a suffix of the original.
        let tail = &raw[raw.len() - 40..];
        assert!(out.ends_with(tail), "{name}: epilogue kept");
    }
}

#[test]
fn new_part_one_is_alternative_text_and_html_in_utf8() {
    let engine = test_engine("");
    for name in BOUNCES {
        let (_, out) = rewrite_fixture(&engine, name);
        let msg = MessageParser::new().parse(&out).unwrap();
        let alt = msg.parts.iter().find(|p| p.content_type().is_some_and(|c| c.subtype() == Some("alternative"))).expect("alternative");
        let PartType::Multipart(kids) = &alt.body else { panic!("{name}: alternative is multipart") };
        let types: Vec<(String, String)> = kids
            .iter()
            .map(|&i| {
                let ct = msg.part(i).unwrap().content_type().unwrap();
                (format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")), ct.attribute("charset").unwrap_or("").to_string())
            })
            .collect();
        assert_eq!(types, [("text/plain".into(), "utf-8".into()), ("text/html".into(), "utf-8".into())], "{name}");
    }
}

#[test]
fn notification_says_what_happened_and_keeps_the_diagnostic() {
    let engine = test_engine("");
    let (_, out) = rewrite_fixture(&engine, "postfix-userunknown.eml");
    let (text, html) = notification(&out);
    let e = &expect(&engine, "postfix-userunknown.eml", "en")[0];
    for needle in [
        "Your message to bob@example.net couldn't be delivered",
        &e.title,
        &e.explanation,
        "What you can do",
        &e.remedy,
        who_sentence(e.who),
        "No. The mail server has given up",
        "5.1.1",
        "mx.example.net",
        "550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown in virtual mailbox table",
        "Quarterly figures",
    ] {
        assert!(text.contains(needle), "text lacks {needle:?}:\n{text}");
    }
    assert!(html.contains("Your message to bob@example.net couldn't be delivered"), "{html}");
    assert!(html.contains("550 5.1.1 &lt;bob@example.net&gt;: Recipient address rejected"), "{html}");
    assert!(html.contains("refused here"));
    assert_eq!(header(&out, "X-Plainbounce"), [format!("X-Plainbounce: rewritten; reason={}", e.reason)]);
}

#[test]
fn several_recipients_get_their_own_explanation() {
    let engine = test_engine("[default]\nlanguage = \"en\"\n");
    let (_, out) = rewrite_fixture(&engine, "multi-recipient.crlf.eml");
    let (text, html) = notification(&out);
    let expected = expect(&engine, "multi-recipient.crlf.eml", "en");
    for e in &expected {
        for needle in [&e.title, &e.remedy, who_sentence(e.who)] {
            assert!(text.contains(needle), "text lacks {needle:?} for {}:\n{text}", e.address);
        }
    }
    for needle in [
        "Your message to bob@example.net couldn't be delivered",
        "Your message to carol@example.com couldn't be delivered",
        "Your message to dave@example.info hasn't been delivered yet",
        "Yes, until Sat, 8 Jun 2024 08:58:01 +0000.",
        "421 4.4.1 connect to mx.example.info[203.0.113.9]:25: Connection timed out",
    ] {
        assert!(text.contains(needle), "text lacks {needle:?}:\n{text}");
    }
    assert_eq!(html.matches("<h2 ").count(), 3);
    let mut reasons: Vec<&str> = expected.iter().map(|e| e.reason.as_str()).collect();
    reasons.dedup();
    assert_eq!(header(&out, "X-Plainbounce"), [format!("X-Plainbounce: rewritten; reason={}", reasons.join(","))]);
}

#[test]
fn delay_warning_says_when_the_server_gives_up() {
    let engine = test_engine("");
    let (_, out) = rewrite_fixture(&engine, "delay-only.eml");
    let (text, html) = notification(&out);
    assert!(text.contains("Your message to gina@example.co.uk hasn't been delivered yet"), "{text}");
    assert!(text.contains("Yes, until Wed, 12 Jun 2024 07:00:00 +0200 (CEST)."), "{text}");
    assert!(text.contains("has not been delivered yet"), "delayed introduction:\n{text}");
    assert!(html.contains("waiting"));
    assert!(!html.contains("refused here"));
}

#[test]
fn plain_bounces_become_mixed_with_the_original_body_verbatim() {
    let engine = test_engine("");
    for name in ["qmail-plain.eml", "exim-plain.crlf.eml"] {
        let (raw, out) = rewrite_fixture(&engine, name);
        let msg = MessageParser::new().parse(&out).unwrap();
        let ct = msg.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("mixed")), "{name}");
        assert_eq!(header(&out, "MIME-Version").len(), 1, "{name}: MIME-Version present once");
        let parts = top_parts(&out);
        assert_eq!(parts.len(), 2, "{name}");
        let original_body = &raw[header_block(&raw).len()..];
        let original_body = &original_body[if raw.contains(&b'\r') { 2 } else { 1 }..];
        let PartType::Multipart(kids) = &msg.root_part().body else { panic!("{name}: multipart") };
        let second = msg.part(kids[1]).unwrap();
        assert_eq!(&out[second.offset_body as usize..second.offset_end as usize], original_body, "{name}: body verbatim");
        // The old body's own Content-* fields went with it, and nothing else.
        let part_head = String::from_utf8_lossy(&out[second.offset_header as usize..second.offset_body as usize]).into_owned();
        let moved: Vec<String> = header(&raw, "Content-Type").into_iter().chain(header(&raw, "Content-Transfer-Encoding")).collect();
        for field in &moved {
            assert!(part_head.contains(field.as_str()), "{name}: {field} moved into the part");
        }
        assert_eq!(part_head.trim().lines().count(), moved.len(), "{name}: {part_head:?}");
    }
    // Exim's 8-bit body keeps the top level 8bit.
    let (_, out) = rewrite_fixture(&engine, "exim-plain.crlf.eml");
    assert_eq!(header(&out, "Content-Transfer-Encoding"), ["Content-Transfer-Encoding: 8bit"]);
}

#[test]
fn report_without_human_part_gets_one_inserted() {
    let engine = test_engine("");
    let (raw, out) = rewrite_fixture(&engine, "report-dsn-first.eml");
    let before = top_parts(&raw);
    let after = top_parts(&out);
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(after[1..], before[..]);
    assert!(notification(&out).0.contains("hank@example.net"));
}

#[test]
fn line_endings_and_line_lengths() {
    let engine = test_engine("[default]\nlanguage = \"de\"\n");
    for name in BOUNCES {
        let (raw, out) = rewrite_fixture(&engine, name);
        let crlf_in = raw.windows(2).any(|w| w == b"\r\n");
        let bare_lf = out.iter().enumerate().filter(|&(i, &b)| b == b'\n' && (i == 0 || out[i - 1] != b'\r')).count();
        if crlf_in {
            assert_eq!(bare_lf, 0, "{name}: CRLF message stays CRLF");
        } else {
            assert!(!out.contains(&b'\r'), "{name}: LF message stays LF");
        }
        for line in out.split(|&b| b == b'\n') {
            assert!(line.len() <= 999, "{name}: line of {} bytes", line.len());
        }
        // Quoted-printable parts keep to 76 columns.
        let msg = MessageParser::new().parse(&out).unwrap();
        for p in msg.parts.iter().filter(|p| p.content_transfer_encoding() == Some("quoted-printable")) {
            let body = &out[p.offset_body as usize..p.offset_end as usize];
            for line in body.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                assert!(line.len() <= 76, "{name}: QP line of {} bytes", line.len());
            }
        }
    }
}

#[test]
fn crlf_and_lf_versions_of_a_bounce_give_the_same_message() {
    let engine = test_engine("");
    let raw = fixture("postfix-userunknown.eml");
    let b = facts("postfix-userunknown.eml");
    let lf = rewrite_with(&engine, &raw, &b, &Options::default());
    let crlf_raw = crlf(&raw);
    let from_crlf = rewrite_with(&engine, &crlf_raw, &b, &Options::default());
    let (text, html) = notification(&from_crlf);
    assert_eq!(notification(&lf), (text.replace("\r\n", "\n"), html.replace("\r\n", "\n")));
    assert_eq!(top_parts(&crlf_raw)[1..], top_parts(&from_crlf)[1..]);
}

#[test]
fn rewriting_is_idempotent() {
    let engine = test_engine("");
    for name in BOUNCES {
        let (_, out) = rewrite_fixture(&engine, name);
        match engine.process_bounce(&out, &facts(name), &Options::default()) {
            Outcome::Pass(why) => assert!(why.contains("already"), "{name}: {why}"),
            Outcome::Modify(_) => panic!("{name}: rewritten twice"),
        }
        assert!(matches!(engine.process(&out), Outcome::Pass(_)));
    }
}

#[test]
fn new_boundaries_occur_nowhere_in_the_original() {
    let engine = test_engine("");
    for name in BOUNCES {
        let (raw, out) = rewrite_fixture(&engine, name);
        let msg = MessageParser::new().parse(&out).unwrap();
        for p in msg.parts.iter() {
            let Some(b) = p.content_type().and_then(|c| c.attribute("boundary")) else { continue };
            if b.starts_with("=_plainbounce") {
                let needle = b.as_bytes();
                assert!(!raw.windows(needle.len()).any(|w| w == needle), "{name}: {b} in original");
            }
        }
    }
}

#[test]
fn apply_without_changes_is_the_identity() {
    for name in BOUNCES {
        let raw = fixture(name);
        let m = plainbounce::engine::Modification { header_edits: vec![], body: None, summary: String::new() };
        assert_eq!(apply(&raw, &m), raw, "{name}");
    }
}

#[test]
fn english_text_part_stays_readable_for_text_parsers() {
    // Plain ASCII notifications go out as 7bit, so a parser that greps the raw text part
    // (as many bounce processors do) still finds the server's reply as it was.
    let engine = test_engine("[default]\nlanguage = \"en\"\norganisation = \"Example Org\"\nhelpdesk = \"help@example.org\"\nlinks = [{ label = \"Status\", url = \"https://status.example.org/\" }]\n");
    for name in ["postfix-userunknown.eml", "multi-recipient.crlf.eml", "qmail-plain.eml"] {
        let (_, out) = rewrite_fixture(&engine, name);
        let msg = MessageParser::new().parse(&out).unwrap();
        let plain = msg.parts.iter().find(|p| p.content_type().is_some_and(|c| c.subtype() == Some("plain") && c.attribute("charset") == Some("utf-8"))).unwrap();
        assert_eq!(plain.content_transfer_encoding(), Some("7bit"), "{name}");
        let raw_text = String::from_utf8_lossy(&out[plain.offset_body as usize..plain.offset_end as usize]).into_owned();
        for r in facts(name).recipients {
            assert!(raw_text.contains(r.diagnostic.as_deref().unwrap()), "{name}: diagnostic verbatim in the raw text");
        }
    }
}
