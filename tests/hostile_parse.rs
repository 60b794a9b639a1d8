//! Hostile inputs against the bounce parser: each must parse without panicking, and what
//! comes out must be clean (single-line, no control characters) and still right.

mod hostile_support;
#[path = "../fuzz/src/invariants.rs"]
mod invariants;

use hostile_support::{arf_report, auto_reply, corpus_files, recipient, Dsn};
use plainbounce::dsn::{self, Bounce, Detection, ReportKind};

/// Parse; whatever comes out passes the fact invariants.
fn parse_clean(raw: &[u8]) -> Detection {
    let d = dsn::parse(raw);
    if let Detection::Bounce(b) = &d {
        invariants::check_bounce(b).unwrap_or_else(|e| panic!("unclean facts: {e}"));
    }
    d
}

/// Parse, and insist on a delivery report.
fn delivery(raw: &[u8]) -> Bounce {
    match parse_clean(raw) {
        Detection::Bounce(b) if b.kind == ReportKind::Delivery => b,
        other => panic!("expected a delivery report, got {other:?}"),
    }
}

fn diagnostic(b: &Bounce, i: usize) -> &str {
    b.recipients[i].diagnostic.as_deref().unwrap_or_else(|| panic!("recipient {i} has no diagnostic"))
}

#[test]
fn crlf_and_nul_in_diagnostic() {
    let mut dsn = Dsn::new("550 5.1.1 <bob@remote.example>: no such user\u{0}here\rX-Injected: yes");
    dsn.eol = "\r\n";
    // A real line break inside the field, then a line that looks like a header.
    dsn.recipients[0].push("\r\nX-Injected-Too: yes".into());
    let b = delivery(&dsn.build());
    assert_eq!(b.recipients.len(), 1);
    let d = diagnostic(&b, 0);
    assert!(d.contains("550 5.1.1") && d.contains("no such user"), "{d:?}");
    assert_eq!(b.recipients[0].status.as_deref(), Some("5.1.1"));
}

#[test]
fn folded_diagnostic_is_unfolded() {
    let dsn = Dsn::new("550-5.1.1 The email account that you tried to reach does not exist.\n    Please try\n\t double-checking the recipient's email address");
    let b = delivery(&dsn.build());
    let d = diagnostic(&b, 0);
    assert!(d.contains("does not exist. Please try") || d.contains("does not exist.  Please try") || d.contains("does not exist. Please"), "{d:?}");
    assert!(d.contains("double-checking"), "{d:?}");
}

#[test]
fn html_script_and_handlebars_in_remote_text_are_kept_verbatim() {
    let text = "550 5.7.1 <script>alert(1)</script> {{#each x}}{{this}}{{/each}} {{> partial}} &amp; \"quoted\"";
    let mut dsn = Dsn::new(text);
    dsn.recipients[0][0] = "Final-Recipient: rfc822; <img src=x onerror=alert(1)>@remote.example".into();
    let b = delivery(&dsn.build());
    let d = diagnostic(&b, 0);
    // The parser keeps facts as text; escaping is the renderer's job (tests/hostile_rewrite.rs).
    assert!(d.contains("<script>alert(1)</script>") && d.contains("{{> partial}}"), "{d:?}");
}

#[test]
fn diagnostic_containing_the_mime_boundary() {
    let dsn0 = Dsn::new("x");
    let b = dsn0.boundary.clone();
    // Mid-line, and on a continuation line (indented, so not a delimiter).
    let dsn = Dsn::new(&format!("550 5.1.1 user unknown --{b} --{b}--\n --{b}\n --{b}--"));
    let bounce = delivery(&dsn.build());
    assert_eq!(bounce.recipients.len(), 1);
    assert_eq!(bounce.recipients[0].address.as_deref(), Some("bob@remote.example"));
    assert_eq!(bounce.recipients[0].status.as_deref(), Some("5.1.1"));
    // Known limit (HARDENING.md): mail-parser 0.11 splits at the boundary string even in
    // mid-line, so the diagnostic ends where the boundary starts.
    assert!(diagnostic(&bounce, 0).starts_with("550 5.1.1 user unknown"), "{:?}", diagnostic(&bounce, 0));
    assert_eq!(bounce.original.subject.as_deref(), Some("Lunch?"), "returned message still found");
}

#[test]
fn invalid_utf8_in_diagnostic() {
    let mut raw = Dsn::new("550 5.1.1 user \u{1}MARK unknown").build();
    let at = raw.windows(5).position(|w| w == b"\x01MARK").unwrap();
    raw.splice(at..at + 5, [0xff, 0xfe, 0xc3, 0x28, 0xe2, 0x82]);
    let b = delivery(&raw);
    assert_eq!(b.recipients[0].status.as_deref(), Some("5.1.1"));
    assert!(diagnostic(&b, 0).contains("user"));
}

#[test]
fn odd_charsets() {
    let mut dsn = Dsn::new("550 5.2.2 mailbox full");
    dsn.human = "Content-Type: text/plain; charset=\"x-no-such-charset\"\nContent-Transfer-Encoding: base64\n\n\
                 ////AAAA!!!not base64\n"
        .into();
    dsn.returned = Some(
        "Content-Type: message/rfc822\n\nFrom: =?x-unknown?Q?=FF=FE?= <alice@example.org>\n\
         Subject: =?iso-2022-jp?B?GyRCJEgkaiQiJCgkOhsoQg==?= =?utf-7?Q?+AOQ-?= =?utf-8?B?////?=\n\
         Content-Language: =?utf-8?q?de?=\n\nbody\n"
            .into(),
    );
    let b = delivery(&dsn.build());
    assert_eq!(b.recipients[0].status.as_deref(), Some("5.2.2"));
}

#[test]
fn eight_bit_headers() {
    let mut dsn = Dsn::new("550 5.1.1 Benutzer unbekannt");
    dsn.headers.push("X-Raw: caf\u{e9} na\u{ef}ve".into());
    let mut raw = dsn.build();
    // Latin-1 bytes (not UTF-8) in Subject and in the recipient address.
    raw.splice(0..0, b"Subject-Latin1: Unzustellbar: \xe4\xf6\xfc\xdf\n".iter().copied());
    let at = raw.windows(4).position(|w| w == b"bob@").unwrap();
    raw.splice(at..at + 3, *b"b\xf6b");
    let b = delivery(&raw);
    assert_eq!(b.recipients.len(), 1);
}

#[test]
fn missing_boundary_parameter() {
    let mut dsn = Dsn::new("550 5.1.1 user unknown");
    dsn.content_type = "multipart/report; report-type=delivery-status".into();
    parse_clean(&dsn.build());
}

#[test]
fn empty_and_duplicate_boundary_parameters() {
    for ct in [
        "multipart/report; report-type=delivery-status; boundary=\"\"",
        "multipart/report; report-type=delivery-status; boundary=a; boundary=\"8A7D2C0C63.1700000000/mx.example.org\"",
        "multipart/report; report-type=delivery-status; boundary=\"8A7D2C0C63.1700000000/mx.example.org\"; boundary=a",
    ] {
        let mut dsn = Dsn::new("550 5.1.1 user unknown");
        dsn.content_type = ct.into();
        parse_clean(&dsn.build());
    }
}

#[test]
fn missing_closing_delimiter_still_parses() {
    let mut dsn = Dsn::new("550 5.1.1 user unknown");
    dsn.closed = false;
    let b = delivery(&dsn.build());
    assert_eq!(b.recipients[0].address.as_deref(), Some("bob@remote.example"));
}

#[test]
fn repeated_delimiters_and_empty_parts() {
    let dsn = Dsn::new("550 5.1.1 user unknown");
    let raw = dsn.build();
    let delim = format!("--{}\n", dsn.boundary);
    let doubled = String::from_utf8(raw).unwrap().replacen(&delim, &format!("{delim}\n{delim}{delim}"), 1);
    let b = delivery(doubled.as_bytes());
    assert_eq!(b.recipients[0].status.as_deref(), Some("5.1.1"));
}

#[test]
fn nested_multipart_report_inside_mixed() {
    let inner = Dsn::new("550 5.1.1 user unknown");
    let inner_raw = String::from_utf8(inner.build()).unwrap();
    let (inner_head, inner_body) = inner_raw.split_once("\n\n").unwrap();
    let ct = inner_head.lines().skip_while(|l| !l.starts_with("Content-Type:")).collect::<Vec<_>>().join("\n");
    let raw = format!(
        "Return-Path: <>\nFrom: MAILER-DAEMON@mx.example.org\nTo: alice@example.org\nSubject: Returned mail\n\
         MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"outer\"\n\n--outer\n{ct}\n\n{inner_body}\n--outer--\n"
    );
    let b = delivery(raw.as_bytes());
    assert_eq!(b.recipients.len(), 1);
    assert_eq!(b.recipients[0].status.as_deref(), Some("5.1.1"));
}

#[test]
fn bounce_of_a_bounce_reports_the_outer_recipient() {
    // The returned message is itself a bounce: only the outer report's recipient counts.
    let inner = Dsn::new("550 5.1.1 inner user unknown").build();
    let mut outer = Dsn::new("552 5.2.2 outer mailbox full");
    outer.recipients[0] = recipient("postmaster@outer.example", "5.2.2", "552 5.2.2 outer mailbox full");
    outer.returned = Some(format!("Content-Type: message/rfc822\n\n{}", String::from_utf8(inner).unwrap()));
    let b = delivery(&outer.build());
    assert_eq!(b.recipients.len(), 1, "{:?}", b.recipients);
    assert_eq!(b.recipients[0].address.as_deref(), Some("postmaster@outer.example"));
    assert!(diagnostic(&b, 0).contains("outer mailbox full"));
}

#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    let mut raw = String::from_utf8(Dsn::new("550 5.1.1 user unknown").build()).unwrap();
    for i in 0..2_000 {
        raw = format!("Content-Type: multipart/mixed; boundary=\"n{i}\"\n\n--n{i}\n{raw}\n--n{i}--\n");
    }
    parse_clean(raw.as_bytes());
    let mut rfc822 = String::from("Subject: x\n\nx\n");
    for _ in 0..2_000 {
        rfc822 = format!("Content-Type: message/rfc822\n\n{rfc822}");
    }
    parse_clean(rfc822.as_bytes());
}

#[test]
fn fifty_megabyte_body() {
    let mut dsn = Dsn::new("552 5.3.4 Message size exceeds fixed maximum message size");
    let line = "A".repeat(76) + "\n";
    let big = line.repeat(50 * 1024 * 1024 / line.len());
    dsn.returned = Some(format!("Content-Type: message/rfc822\n\nFrom: alice@example.org\nSubject: Holiday photos\n\n{big}"));
    let b = delivery(&dsn.build());
    assert_eq!(b.recipients[0].status.as_deref(), Some("5.3.4"));
}

#[test]
fn ten_thousand_recipients() {
    let mut dsn = Dsn::new("unused");
    dsn.recipients = (0..10_000)
        .map(|i| recipient(&format!("user{i}@remote{}.example", i % 97), "5.1.1", &format!("550 5.1.1 <user{i}>: user unknown")))
        .collect();
    let b = delivery(&dsn.build());
    // The parser keeps the first 1000 (memory per message stays bounded).
    assert_eq!(b.recipients.len(), 1000);
    assert_eq!(b.recipients[999].address.as_deref(), Some("user999@remote29.example"));
}

#[test]
fn one_megabyte_header_line() {
    let long = "x".repeat(1024 * 1024);
    let mut dsn = Dsn::new(&format!("550 5.1.1 user unknown {long}"));
    dsn.headers.push(format!("Subject-Long: {long}"));
    dsn.headers.push(format!("X-Folded: a{}", "\n b".repeat(100_000)));
    let b = delivery(&dsn.build());
    assert_eq!(b.recipients[0].status.as_deref(), Some("5.1.1"));
}

#[test]
fn truncated_anywhere() {
    let raw = Dsn::new("550 5.1.1 <bob@remote.example>: Recipient address rejected: User unknown").build();
    let crlf = hostile_support::with_eol(raw.clone(), "\r\n");
    for msg in [&raw, &crlf] {
        for cut in 0..msg.len() {
            parse_clean(&msg[..cut]);
        }
    }
}

#[test]
fn report_without_delivery_status_part() {
    let mut dsn = Dsn::new("550 5.1.1 user unknown");
    dsn.status_part = None;
    parse_clean(&dsn.build());
    // Nor with the part present but empty.
    let mut dsn = Dsn::new("550 5.1.1 user unknown");
    dsn.per_message.clear();
    dsn.recipients.clear();
    parse_clean(&dsn.build());
}

#[test]
fn auto_reply_is_not_a_delivery_report() {
    match parse_clean(&auto_reply()) {
        Detection::Bounce(b) => assert_ne!(b.kind, ReportKind::Delivery, "auto-reply taken for a bounce"),
        Detection::NotBounce(_) => {}
    }
}

#[test]
fn arf_feedback_report_is_not_a_delivery_report() {
    match parse_clean(&arf_report()) {
        Detection::Bounce(b) => assert_eq!(b.kind, ReportKind::Feedback),
        Detection::NotBounce(_) => {}
    }
}

#[test]
fn random_bytes_and_empty_input() {
    parse_clean(b"");
    parse_clean(b"\n\n\n");
    parse_clean(b"\r\n\r\n--\r\n--\r\n");
    let mut x: u32 = 0x1234_5678;
    let noise: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    for chunk in noise.chunks(997) {
        parse_clean(chunk);
    }
}

#[test]
fn corpus_facts_are_clean() {
    let files = corpus_files();
    for f in &files {
        let raw = std::fs::read(f).unwrap();
        if let Detection::Bounce(b) = dsn::parse(&raw) {
            invariants::check_bounce(&b).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        }
    }
}

#[test]
fn control_characters_in_every_dsn_field() {
    // Found by the parse fuzz target: NUL in Reporting-MTA survived into the facts.
    let mut dsn = Dsn::new("550 5.1.1 user unknown");
    dsn.per_message[0] = "Reporting-MTA: dns; mx.example.\0\0\x1b!org".into();
    dsn.recipients[0] = vec![
        "Final-Recipient: rfc822; bob@remote.\0example".into(),
        "Original-Recipient: rfc822;bob\x07@remote.example".into(),
        "Action: fai\0led".into(),
        "Status: 5.1.1\0".into(),
        "Remote-MTA: dns; mx.\0remote.\x1bexample".into(),
        "Diagnostic-Code: smtp; 550 5.1.1 \0user unknown".into(),
        "Last-Attempt-Date: Tue,\0 14 Nov 2023".into(),
        "Will-Retry-Until: \x1bnever".into(),
    ];
    delivery(&dsn.build());
    let arf = String::from_utf8(arf_report()).unwrap().replace("Version: 1", "Version: 1\nReporting-MTA: dns; mx.\0isp.example");
    parse_clean(arf.as_bytes());
}

#[test]
fn mail_parser_debug_assertion_is_contained() {
    // Found by the parse fuzz target: mail-parser 0.11 reaches a debug_assert! ("Invalid
    // part ID") on this input. Release builds skip it; in debug builds dsn::parse must
    // contain the panic and say it could not read the message.
    let raw = include_bytes!("../fuzz/seeds/mail-parser-debug-assert.eml");
    parse_clean(raw);
}
