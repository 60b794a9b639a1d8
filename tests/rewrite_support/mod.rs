//! Shared helpers for the rewrite tests: fixtures, the facts they state, engines, and a
//! MIME view of the result through mail-parser (independent of plainbounce's own code).
#![allow(dead_code)]

use mail_parser::{MessageParser, MimeHeaders, PartType};
use plainbounce::config::Config;
use plainbounce::dsn::{Bounce, OriginalMessage, RecipientFacts, ReportKind};
use plainbounce::engine::{apply, Engine, Modification, Options, Outcome};
use std::path::PathBuf;

pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The same message with CRLF line endings.
pub fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 20);
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// A config: the embedded default's required keys plus `extra`.
pub fn config(extra: &str) -> Config {
    let text = format!("socket = \"inet:8890@127.0.0.1\"\nmax_body = 10485760\ntimeout_ms = 2000\nlog_level = \"info\"\n{extra}");
    Config::parse(&text, "test").unwrap()
}

/// The `kb_files` line that loads the test knowledge base.
pub fn kb_line() -> String {
    format!("kb_files = [\"{}/tests/fixtures/kb-test.toml\"]\n", env!("CARGO_MANIFEST_DIR"))
}

/// An engine with the test knowledge base; `extra` may add top-level keys and tables.
pub fn test_engine(extra: &str) -> Engine {
    engine(&format!("{}{extra}", kb_line()))
}

/// Every fixture that is a delivery report with failed or delayed recipients.
pub const BOUNCES: &[&str] = &[
    "postfix-userunknown.eml",
    "multi-recipient.crlf.eml",
    "qmail-plain.eml",
    "exim-plain.crlf.eml",
    "global-dsn.eml",
    "delay-only.eml",
    "report-dsn-first.eml",
    "mixed-bounce.eml",
    "injection.eml",
];

/// Fixtures that must pass unchanged.
pub const NOT_REWRITTEN: &[&str] = &["success-dsn.eml", "arf-feedback.eml", "autoreply.eml"];

/// Rewrite a fixture with its facts and the test knowledge base.
pub fn rewrite_fixture(engine: &Engine, name: &str) -> (Vec<u8>, Vec<u8>) {
    let raw = fixture(name);
    let out = rewrite_with(engine, &raw, &facts(name), &Options::default());
    (raw, out)
}

/// The header block (up to the blank line) of a message.
pub fn header_block(raw: &[u8]) -> &[u8] {
    let end = (0..raw.len())
        .find(|&i| raw[i..].starts_with(b"\n\n") || raw[i..].starts_with(b"\r\n\r\n"))
        .map_or(raw.len(), |i| i + if raw[i] == b'\r' { 2 } else { 1 });
    &raw[..end]
}

pub fn engine(extra: &str) -> Engine {
    Engine::new(config(extra)).unwrap()
}

pub fn failed(address: &str, status: &str, diagnostic: &str, remote: Option<&str>) -> RecipientFacts {
    RecipientFacts {
        address: Some(address.into()),
        action: Some("failed".into()),
        status: Some(status.into()),
        diagnostic: Some(diagnostic.into()),
        remote_mta: remote.map(Into::into),
        ..Default::default()
    }
}

pub fn delayed(address: &str, status: &str, diagnostic: &str, until: Option<&str>) -> RecipientFacts {
    RecipientFacts {
        address: Some(address.into()),
        action: Some("delayed".into()),
        status: Some(status.into()),
        diagnostic: Some(diagnostic.into()),
        will_retry_until: until.map(Into::into),
        ..Default::default()
    }
}

pub fn bounce(format: &'static str, recipients: Vec<RecipientFacts>) -> Bounce {
    Bounce {
        kind: ReportKind::Delivery,
        format,
        reporting_mta: Some("mail.example.org".into()),
        recipients,
        original: OriginalMessage { subject: Some("Quarterly figures".into()), ..Default::default() },
    }
}

/// What the report in each fixture states (written by hand from the fixture, so the
/// rewrite tests do not depend on the bounce parser).
pub fn facts(name: &str) -> Bounce {
    match name {
        "postfix-userunknown.eml" => bounce(
            "rfc3464",
            vec![failed(
                "bob@example.net",
                "5.1.1",
                "550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown in virtual mailbox table",
                Some("mx.example.net"),
            )],
        ),
        "multi-recipient.crlf.eml" => {
            let mut b = bounce(
                "rfc3464",
                vec![
                    failed("bob@example.net", "5.1.1", "550 5.1.1 The email account that you tried to reach does not exist.", Some("mx.example.net")),
                    failed("carol@example.com", "5.2.2", "552 5.2.2 Mailbox full: carol@example.com has exceeded her quota", Some("mx1.example.com")),
                    delayed(
                        "dave@example.info",
                        "4.4.1",
                        "421 4.4.1 connect to mx.example.info[203.0.113.9]:25: Connection timed out",
                        Some("Sat, 8 Jun 2024 08:58:01 +0000"),
                    ),
                ],
            );
            b.original.subject = Some("Team lunch on Friday".into());
            b.original.content_language = Some("de-DE".into());
            b
        }
        "qmail-plain.eml" => {
            let mut r = failed("erin@example.biz", "5.1.1", "550 5.1.1 <erin@example.biz>... User unknown", Some("198.51.100.44"));
            r.status = None;
            r.reply_code = Some(550);
            bounce("qmail", vec![r])
        }
        "exim-plain.crlf.eml" => {
            let mut r = failed("frank@example.de", "5.2.2", "550 5.2.2 Postfach voll – mailbox full", Some("mx.example.de"));
            r.command = Some("RCPT".into());
            let mut b = bounce("exim", vec![r]);
            b.original.subject = Some("Grüße aus Köln".into());
            b
        }
        "global-dsn.eml" => {
            let mut b = bounce("rfc3464", vec![failed("josé@exemple.fr", "5.1.1", "550 5.1.1 <josé@exemple.fr>: utilisateur inconnu", Some("mx.exemple.fr"))]);
            b.original.subject = Some("Café demain ?".into());
            b.original.accept_language = Some("fr-FR, fr;q=0.9, en;q=0.5".into());
            b
        }
        "delay-only.eml" => {
            let mut b = bounce(
                "rfc3464",
                vec![delayed(
                    "gina@example.co.uk",
                    "4.4.1",
                    "connect to mx.example.co.uk[198.51.100.200]:25: Connection timed out",
                    Some("Wed, 12 Jun 2024 07:00:00 +0200 (CEST)"),
                )],
            );
            b.original.subject = Some("Invoice 2024-117".into());
            b
        }
        "success-dsn.eml" => {
            let mut r = failed("bob@example.net", "2.0.0", "250 2.0.0 Ok: queued as 9F1E2", Some("mx.example.net"));
            r.action = Some("relayed".into());
            bounce("rfc3464", vec![r])
        }
        "arf-feedback.eml" => Bounce { kind: ReportKind::Feedback, ..bounce("arf", vec![failed("victim@isp.example", "", "", None)]) },
        "autoreply.eml" => Bounce { kind: ReportKind::AutoReply, ..bounce("autoreply", vec![failed("anna@example.org", "", "", None)]) },
        "report-dsn-first.eml" => bounce("rfc3464", vec![failed("hank@example.net", "5.1.1", "550 5.1.1 unknown user", None)]),
        "mixed-bounce.eml" => bounce("exchange", vec![failed("ivan@example.com", "5.1.1", "550 5.1.1 User unknown", Some("ex.example.com"))]),
        "injection.eml" => {
            // As a careless parser might hand it over: folded lines kept, nothing removed.
            let diag = "--INJ-BOUNDARY 550 5.1.1 <script>alert(\"x\")</script>\r\n{{organisation}} {{#each recipients}}{{/each}} {{> evil}}\r\n\x1b[2J\u{202e}evil\u{202c} Bcc: victim@example.com";
            let mut b = bounce("rfc3464", vec![failed("\"<b>mallory</b>\"@example.net", "5.1.1", diag, Some("mx.example.net\r\nX-Evil: 1"))]);
            b.reporting_mta = Some("mail.example.org<img src=x onerror=alert(1)>".into());
            b.original.subject = Some("hello <script>\r\nBcc: victim@example.com".into());
            b
        }
        other => panic!("no facts for fixture {other}"),
    }
}

pub fn modification(outcome: Outcome) -> Modification {
    match outcome {
        Outcome::Modify(m) => m,
        Outcome::Pass(why) => panic!("expected a modification, got pass: {why}"),
    }
}

/// Rewrite a fixture with its hand-written facts; return the new message.
pub fn rewrite_with(engine: &Engine, raw: &[u8], bounce: &Bounce, opts: &Options) -> Vec<u8> {
    apply(raw, &modification(engine.process_bounce(raw, bounce, opts)))
}

/// Raw bytes of the top-level parts of a multipart message, by mail-parser's offsets.
pub fn top_parts(raw: &[u8]) -> Vec<Vec<u8>> {
    let msg = MessageParser::new().parse(raw).expect("parses");
    let PartType::Multipart(children) = &msg.root_part().body else { return vec![] };
    children
        .iter()
        .map(|&i| {
            let p = msg.part(i).unwrap();
            raw[p.offset_header as usize..p.offset_end as usize].to_vec()
        })
        .collect()
}

/// The decoded text/plain and text/html of the first multipart/alternative.
pub fn notification(raw: &[u8]) -> (String, String) {
    let msg = MessageParser::new().parse(raw).expect("parses");
    let mut text = None;
    let mut html = None;
    for part in msg.parts.iter() {
        let Some(ct) = part.content_type() else { continue };
        match (ct.ctype(), ct.subtype(), &part.body) {
            ("text", Some("plain"), PartType::Text(t)) if text.is_none() => text = Some(t.to_string()),
            ("text", Some("html"), PartType::Html(h)) if html.is_none() => html = Some(h.to_string()),
            _ => {}
        }
    }
    (text.expect("a text/plain part"), html.expect("a text/html part"))
}

pub fn header(raw: &[u8], name: &str) -> Vec<String> {
    let msg = MessageParser::new().parse_headers(raw).expect("parses");
    msg.headers()
        .iter()
        .filter(|h| h.name.as_str().eq_ignore_ascii_case(name))
        .map(|h| String::from_utf8_lossy(&raw[h.offset_field as usize..h.offset_end as usize]).trim().to_string())
        .collect()
}

/// A fresh directory under the system temp dir, with `files` (relative path, content).
pub fn temp_dir(tag: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("plainbounce-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (path, content) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `Engine::new` with the test knowledge base and `extra`; the error text on failure.
pub fn engine_error(extra: &str) -> String {
    match Engine::new(config(&format!("{}{extra}", kb_line()))) {
        Ok(_) => panic!("engine accepted the configuration:\n{extra}"),
        Err(e) => format!("{e:#}"),
    }
}

/// What the knowledge base says about each recipient of a fixture, in `lang`: the texts
/// the notification must show.
pub struct Expect {
    pub address: String,
    pub title: String,
    pub explanation: String,
    pub remedy: String,
    pub reason: String,
    pub who: &'static str,
}

pub fn expect(engine: &Engine, name: &str, lang: &str) -> Vec<Expect> {
    facts(name)
        .recipients
        .iter()
        .map(|r| {
            let e = plainbounce::classify::classify(engine.kb(), r);
            let t = e.cause.texts(lang);
            Expect {
                address: r.address.clone().unwrap_or_default(),
                title: t.title.clone(),
                explanation: t.explanation.clone(),
                remedy: t.remedy.clone(),
                reason: e.cause.reason.clone(),
                who: e.cause.who.as_str(),
            }
        })
        .collect()
}

/// The English "who needs to act" sentence for a `Who`.
pub fn who_sentence(who: &str) -> &'static str {
    match who {
        "sender" => "You can fix this yourself.",
        "sender_admin" => "Your mail administrator or mail provider has to fix this.",
        "recipient_side" => "The recipient or their mail provider has to fix this.",
        _ => "Nobody, for now: the mail server keeps trying on its own.",
    }
}
