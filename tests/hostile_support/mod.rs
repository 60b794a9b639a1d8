//! Hostile inputs, generated (never committed: some are tens of megabytes), and helpers
//! shared by the tests/hostile_*.rs files.

#![allow(dead_code)] // each test file uses a different subset

use std::path::PathBuf;

/// A delivery report assembled from parts, so each test can break exactly one thing.
#[derive(Debug, Clone)]
pub struct Dsn {
    /// Line ending: "\n" (Postfix) or "\r\n" (on the wire).
    pub eol: &'static str,
    pub boundary: String,
    /// The whole top-level Content-Type value.
    pub content_type: String,
    /// Top-level headers before MIME-Version/Content-Type.
    pub headers: Vec<String>,
    /// Human-readable part 1, headers included.
    pub human: String,
    /// Part 2's type, usually message/delivery-status; `None` leaves the part out.
    pub status_part: Option<String>,
    pub per_message: Vec<String>,
    /// One block of fields per recipient.
    pub recipients: Vec<Vec<String>>,
    /// Part 3 (headers included); `None` leaves it out.
    pub returned: Option<String>,
    /// Write the closing delimiter.
    pub closed: bool,
}

impl Dsn {
    /// A Postfix-style bounce for one failed recipient with `diagnostic`.
    pub fn new(diagnostic: &str) -> Dsn {
        let boundary = "8A7D2C0C63.1700000000/mx.example.org".to_string();
        Dsn {
            eol: "\n",
            content_type: format!("multipart/report; report-type=delivery-status;\n\tboundary=\"{boundary}\""),
            boundary,
            headers: vec![
                "Return-Path: <>".into(),
                "Received: by mx.example.org (Postfix) id 8A7D2C0C63; Tue, 14 Nov 2023 22:13:20 +0000 (UTC)".into(),
                "Date: Tue, 14 Nov 2023 22:13:20 +0000 (UTC)".into(),
                "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)".into(),
                "Subject: Undelivered Mail Returned to Sender".into(),
                "To: alice@example.org".into(),
                "Auto-Submitted: auto-replied".into(),
                "Message-Id: <20231114221320.8A7D2C0C63@mx.example.org>".into(),
            ],
            human: "Content-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n\n\
                    This is the mail system at host mx.example.org.\n\n\
                    I'm sorry to have to inform you that your message could not\n\
                    be delivered to one or more recipients.\n"
                .into(),
            status_part: Some("message/delivery-status".into()),
            per_message: vec![
                "Reporting-MTA: dns; mx.example.org".into(),
                "X-Postfix-Queue-ID: 8A7D2C0C63".into(),
                "Arrival-Date: Tue, 14 Nov 2023 22:13:19 +0000 (UTC)".into(),
            ],
            recipients: vec![recipient("bob@remote.example", &plainbounce::codes::status(diagnostic).unwrap_or("5.0.0".into()), diagnostic)],
            returned: Some(
                "Content-Description: Undelivered Message\nContent-Type: message/rfc822\n\n\
                 From: alice@example.org\nTo: bob@remote.example\nSubject: Lunch?\n\
                 Message-Id: <lunch-1@example.org>\nContent-Language: en\n\nShall we meet at noon?\n"
                    .into(),
            ),
            closed: true,
        }
    }

    pub fn build(&self) -> Vec<u8> {
        let mut s = String::new();
        for h in &self.headers {
            s += h;
            s += "\n";
        }
        s += &format!("MIME-Version: 1.0\nContent-Type: {}\n\nThis is a MIME-encapsulated message.\n\n", self.content_type);
        let delim = format!("--{}\n", self.boundary);
        s += &delim;
        s += &self.human;
        if let Some(ct) = &self.status_part {
            s += &format!("\n{delim}Content-Description: Delivery report\nContent-Type: {ct}\n\n");
            s += &self.per_message.join("\n");
            for r in &self.recipients {
                s += "\n\n";
                s += &r.join("\n");
            }
            s += "\n";
        }
        if let Some(ret) = &self.returned {
            s += &format!("\n{delim}{ret}");
        }
        if self.closed {
            s += &format!("\n--{}--\n", self.boundary);
        }
        with_eol(s.into_bytes(), self.eol)
    }
}

/// Per-recipient fields of a failed delivery.
pub fn recipient(address: &str, status: &str, diagnostic: &str) -> Vec<String> {
    vec![
        format!("Final-Recipient: rfc822; {address}"),
        format!("Original-Recipient: rfc822;{address}"),
        "Action: failed".into(),
        format!("Status: {status}"),
        "Remote-MTA: dns; mx.remote.example".into(),
        format!("Diagnostic-Code: smtp; {diagnostic}"),
    ]
}

/// Replace every "\n" not already preceded by "\r" with `eol`.
pub fn with_eol(raw: Vec<u8>, eol: &str) -> Vec<u8> {
    if eol == "\n" {
        return raw;
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 20);
    for (i, &c) in raw.iter().enumerate() {
        if c == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.extend_from_slice(eol.as_bytes());
        } else {
            out.push(c);
        }
    }
    out
}

/// An RFC 3834 vacation reply that quotes a status code.
pub fn auto_reply() -> Vec<u8> {
    b"From: bob@remote.example\nTo: alice@example.org\nSubject: Automatic reply: Lunch?\n\
      Auto-Submitted: auto-replied\nX-Autoreply: yes\nPrecedence: bulk\n\
      Content-Type: text/plain; charset=utf-8\n\n\
      I am out of the office until Monday. Delivery to my colleague failed with\n\
      550 5.1.1 User unknown, so please write to carol@remote.example instead.\n"
        .to_vec()
}

/// An RFC 5965 (ARF) abuse report: a multipart/report, but no bounce.
pub fn arf_report() -> Vec<u8> {
    b"From: abuse@isp.example\nTo: postmaster@example.org\nSubject: FW: abuse report\n\
      MIME-Version: 1.0\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"arf\"\n\n\
      --arf\nContent-Type: text/plain; charset=us-ascii\n\n\
      This is an email abuse report for an email message received from IP 192.0.2.7.\n\
      Undelivered Mail Returned to Sender? No: 550 5.7.1 spam.\n\
      --arf\nContent-Type: message/feedback-report\n\n\
      Feedback-Type: abuse\nUser-Agent: SomeGenerator/1.0\nVersion: 1\nOriginal-Mail-From: <alice@example.org>\n\
      Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT\nSource-IP: 192.0.2.7\n\n\
      --arf\nContent-Type: message/rfc822\n\n\
      From: alice@example.org\nTo: victim@isp.example\nSubject: buy now\n\nspam\n--arf--\n"
        .to_vec()
}

/// An ordinary message.
pub fn plain_message() -> Vec<u8> {
    b"From: alice@example.org\nTo: bob@remote.example\nSubject: Lunch?\nMessage-Id: <x@example.org>\n\nNoon?\n".to_vec()
}

/// The shared bounce corpus, if present (`PLAINBOUNCE_CORPUS`, then `../shared/corpus`,
/// then /work/shared/corpus).
pub fn corpus_dir() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("PLAINBOUNCE_CORPUS").map(PathBuf::from),
        Some(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus"))),
        Some(PathBuf::from("/work/shared/corpus")),
    ];
    candidates.into_iter().flatten().find(|p| p.join("emails").is_dir())
}

/// Every .eml file in the corpus (negatives included), sorted.
pub fn corpus_files() -> Vec<PathBuf> {
    let Some(dir) = corpus_dir() else { return Vec::new() };
    let mut files = Vec::new();
    for sub in [dir.join("emails"), dir.join("emails/negatives")] {
        for e in std::fs::read_dir(sub).into_iter().flatten().flatten() {
            if e.path().extension().is_some_and(|x| x == "eml") {
                files.push(e.path());
            }
        }
    }
    files.sort();
    files
}
