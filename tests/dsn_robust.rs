//! Non-bounces stay non-bounces, and no input — truncated, broken, binary, huge — makes
//! the parser fail. `dsn::parse` guards against panics; these tests check that the guard
//! never has to act (a guarded panic would show as `PARSER_FAILURE`).

use plainbounce::dsn::{self, Detection, PARSER_FAILURE};

fn not_bounce(raw: &[u8]) -> String {
    match dsn::parse(raw) {
        Detection::NotBounce(why) => why,
        Detection::Bounce(b) => panic!("read as a bounce: {b:?}"),
    }
}

fn parses_cleanly(raw: &[u8]) -> Detection {
    let d = dsn::parse(raw);
    if let Detection::NotBounce(why) = &d {
        assert_ne!(why, PARSER_FAILURE, "parser failed on {} bytes", raw.len());
    }
    d
}

#[test]
fn personal_mail_is_not_a_bounce() {
    not_bounce(
        b"From: Bob <bob@example.com>\nTo: alice@example.org\nSubject: Re: lunch\n\n\
          Sure, 12:30 works. My old address bob@old.example.com bounced with\n\
          550 5.1.1 user unknown, so use this one.\n",
    );
}

#[test]
fn person_asking_about_a_bounce_is_not_a_bounce() {
    not_bounce(
        b"From: Carol <carol@example.com>\nTo: postmaster@example.org\nSubject: Mail delivery failed?\n\n\
          Hello, I got a message saying delivery failed for dave@example.org.\nCan you help?\n",
    );
}

#[test]
fn newsletter_is_not_a_bounce() {
    not_bounce(
        b"From: News <news@shop.example>\nTo: erin@example.net\nSubject: Spring sale\n\
          Precedence: bulk\nList-Unsubscribe: <mailto:unsubscribe@shop.example>\nContent-Type: text/html\n\n\
          <html><body><p>20% off everything.</p><p>Contact support@shop.example</p></body></html>\n",
    );
}

#[test]
fn read_receipt_is_not_a_bounce() {
    let why = not_bounce(
        b"From: frank@example.com\nTo: alice@example.org\nSubject: Read: Plans\n\
          Content-Type: multipart/report; report-type=disposition-notification; boundary=x\n\n\
          --x\nContent-Type: text/plain\n\nYour message was read.\n--x\n\
          Content-Type: message/disposition-notification\n\n\
          Final-Recipient: rfc822; frank@example.com\nDisposition: manual-action/MDN-sent-manually; displayed\n--x--\n",
    );
    assert!(why.contains("read receipt"), "{why}");
}

#[test]
fn machine_notice_without_failure_is_not_a_bounce() {
    // From a mail system, with a bounce-like subject, naming an address, but no failure.
    not_bounce(
        b"Return-Path: <>\nFrom: postmaster@example.de\nSubject: email bounce notification\n\n\
          This message is to inform you about our new bounce handling.\n\
          target mail address: someone@example.net\n",
    );
}

#[test]
fn garbage_and_truncated_inputs() {
    let inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\n\n\n".to_vec(),
        b"no headers at all, just text".to_vec(),
        b"From:\nSubject:\nContent-Type: multipart/report; boundary=\n\n--\n--\n".to_vec(),
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=a\n\n--a\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822;".to_vec(),
        b"Content-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n!!!!not base64@@@@\n".to_vec(),
        (0u8..=255).cycle().take(70_000).collect(),
        vec![0xff; 10_000],
        b"Subject: =?UTF-8?B?////?=\nFrom: \xff\xfe <\xc3\x28@\xa0\xa1>\n\n\xed\xa0\x80\n".to_vec(),
    ];
    for raw in &inputs {
        parses_cleanly(raw);
    }
}

const SAMPLE: &str = "\
Return-Path: <>
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"

--B
Content-Type: text/plain

<bob@example.com>: host mx.example.com[192.0.2.10] said: 550 5.1.1 <bob@example.com>:
    Recipient address rejected: User unknown (in reply to RCPT TO command)

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; bob@example.com
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <bob@example.com>: Recipient address rejected:
    User unknown

--B
Content-Type: message/rfc822

From: alice@example.org
To: bob@example.com
Subject: hi

hi
--B--
";

#[test]
fn every_truncation_of_a_bounce_parses_cleanly() {
    let raw = SAMPLE.as_bytes();
    for end in 0..=raw.len() {
        let d = parses_cleanly(&raw[..end]);
        // Once the report's recipient block is complete, the recipient is known.
        let complete = SAMPLE.find("    User unknown\n").map(|i| i + 17).unwrap();
        if end >= complete {
            match d {
                Detection::Bounce(b) => assert_eq!(b.recipients[0].address.as_deref(), Some("bob@example.com")),
                Detection::NotBounce(why) => panic!("truncated at {end}: not a bounce ({why})"),
            }
        }
    }
}

#[test]
fn corrupted_bytes_parse_cleanly() {
    // Overwrite every 7th byte in turn with bytes that break structure.
    let raw = SAMPLE.as_bytes();
    for (i, bad) in (0..raw.len()).step_by(7).zip([b'\n', b'-', b':', 0u8, 0xff, b'<', b'"'].iter().cycle()) {
        let mut broken = raw.to_vec();
        broken[i] = *bad;
        parses_cleanly(&broken);
    }
}

#[test]
fn crlf_line_endings() {
    let raw = SAMPLE.replace('\n', "\r\n");
    match parses_cleanly(raw.as_bytes()) {
        Detection::Bounce(b) => {
            assert_eq!(b.recipients[0].address.as_deref(), Some("bob@example.com"));
            assert_eq!(
                b.recipients[0].diagnostic.as_deref(),
                Some("550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown")
            );
        }
        Detection::NotBounce(why) => panic!("{why}"),
    }
}

#[test]
fn deeply_nested_and_wide_messages() {
    let mut nested = String::from("From: MAILER-DAEMON@x.example\nSubject: Returned mail\n");
    for i in 0..300 {
        nested.push_str(&format!("Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n"));
    }
    nested.push_str("Content-Type: text/plain\n\n<a@b.example>: 550 5.1.1 unknown user\n");
    parses_cleanly(nested.as_bytes());

    let mut wide = String::from(
        "From: MAILER-DAEMON@x.example\nSubject: Undelivered Mail\nContent-Type: multipart/report; report-type=delivery-status; boundary=w\n\n--w\nContent-Type: message/delivery-status\n\n",
    );
    for i in 0..5000 {
        wide.push_str(&format!("Final-Recipient: rfc822; user{i}@example.com\nAction: failed\nStatus: 5.1.1\n\n"));
    }
    wide.push_str("--w--\n");
    match parses_cleanly(wide.as_bytes()) {
        Detection::Bounce(b) => assert!(!b.recipients.is_empty() && b.recipients.len() <= 1000),
        Detection::NotBounce(why) => panic!("{why}"),
    }
}

#[test]
fn huge_message_is_read_in_bounded_time() {
    // A bounce that returns a 20 MB message: only the start is read.
    let mut raw = SAMPLE.replace("hi\n--B--\n", "");
    raw.reserve(20 << 20);
    let line = "x".repeat(998) + "\n";
    while raw.len() < 20 << 20 {
        raw.push_str(&line);
    }
    match parses_cleanly(raw.as_bytes()) {
        Detection::Bounce(b) => assert_eq!(b.recipients[0].address.as_deref(), Some("bob@example.com")),
        Detection::NotBounce(why) => panic!("{why}"),
    }
    // One enormous line without any structure.
    parses_cleanly(&vec![b'a'; 8 << 20]);
}
