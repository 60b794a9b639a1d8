//! Bounce detection and parsing: RFC 3464/6522/6533 reports and the non-standard
//! bounces real MTAs send, reduced to per-recipient facts.

mod address;
mod detect;
mod fields;
mod formats;
mod mime;
mod original;
mod reply;
mod report;
mod text;
mod trim;

pub(crate) use mime::PARSER;
pub(crate) use reply::command_in;

use serde::Serialize;

/// What a message turned out to be.
// Boxing the bounce would cost an allocation per message for nothing: a Detection is
// returned once and unpacked at once, never stored in bulk.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Detection {
    /// A delivery report (failure, delay, ...) with what could be learned from it.
    Bounce(Bounce),
    /// Not a bounce; the string says why (e.g. "no null sender and no report part").
    NotBounce(String),
}

/// A parsed bounce.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Bounce {
    /// Delivery report (the only kind that is rewritten), ARF feedback, or auto-reply.
    pub kind: ReportKind,
    /// Which parser understood it: "rfc3464", "qmail", "exim", "sendmail", "exchange", ...
    pub format: &'static str,
    /// `Reporting-MTA` or the host named in the text.
    pub reporting_mta: Option<String>,
    /// One entry per recipient, in report order.
    pub recipients: Vec<RecipientFacts>,
    /// Facts about the returned (original) message, if it was included.
    pub original: OriginalMessage,
}

/// What sort of automatic report a message is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// A delivery status notification: failed, delayed, delivered, relayed, expanded.
    #[default]
    Delivery,
    /// An ARF (RFC 5965) abuse/feedback report: not a bounce, never rewritten.
    Feedback,
    /// An RFC 3834 auto-reply (vacation): not a bounce, never rewritten.
    AutoReply,
}

impl Bounce {
    /// True for delivery reports, the only kind plainbounce rewrites.
    pub fn is_delivery_report(&self) -> bool {
        self.kind == ReportKind::Delivery
    }
}

/// Facts about one recipient, as the report states them (all strings trimmed,
/// unfolded, control characters removed; none interpreted yet).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RecipientFacts {
    /// Final-Recipient address without the `rfc822;` type (or the address named in the text).
    pub address: Option<String>,
    pub original_recipient: Option<String>,
    /// failed, delayed, delivered, relayed, expanded (lower case).
    pub action: Option<String>,
    /// Enhanced status code as reported, e.g. "5.1.1".
    pub status: Option<String>,
    /// SMTP basic reply code found in the diagnostic, e.g. 550.
    pub reply_code: Option<u16>,
    /// The remote server's text (Diagnostic-Code without the `smtp;` type, or the
    /// quoted reply in a non-standard bounce), multi-line replies joined with spaces.
    pub diagnostic: Option<String>,
    pub remote_mta: Option<String>,
    /// SMTP command the failure followed, if stated (RCPT, DATA, MAIL, CONN, ...).
    pub command: Option<String>,
    pub last_attempt: Option<String>,
    pub will_retry_until: Option<String>,
}

/// Headers of the returned message that the rewriter and the language choice need.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OriginalMessage {
    pub from: Option<String>,
    pub to: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub date: Option<String>,
    pub content_language: Option<String>,
    pub accept_language: Option<String>,
    /// Its envelope sender: its Return-Path, or the report's X-Postfix-Sender.
    pub return_path: Option<String>,
}

/// At most this much of a message is read: the report parts come first, and a returned
/// message with large attachments need not be decoded to the end.
pub const MAX_INPUT: usize = 4 * 1024 * 1024;

/// The `NotBounce` reason given when parsing failed inside (a bug: tests look for it).
pub const PARSER_FAILURE: &str = "the message could not be read (parser failure)";

/// Detect and parse a bounce. Never panics; any input gets an answer.
pub fn parse(raw: &[u8]) -> Detection {
    let raw = &raw[..raw.len().min(MAX_INPUT)];
    // The MIME parser is third-party code: a panic in it must not take mail down.
    match std::panic::catch_unwind(|| detect::detect(&trim::for_parsing(raw))) {
        Ok(Detection::Bounce(b)) => Detection::Bounce(clean(b)),
        Ok(d) => d,
        Err(_) => Detection::NotBounce(PARSER_FAILURE.into()),
    }
}

/// Every fact one clean line, whichever path found it: remote text is untrusted, and not
/// every field goes through the diagnostic's cleaning (found by fuzzing: a NUL in
/// Reporting-MTA).
fn clean(mut b: Bounce) -> Bounce {
    let fix = |s: &mut Option<String>| {
        if let Some(v) = s.as_mut() {
            *v = reply::sanitize(v);
        }
        if s.as_ref().is_some_and(|v| v.is_empty()) {
            *s = None;
        }
    };
    fix(&mut b.reporting_mta);
    for r in &mut b.recipients {
        for s in [
            &mut r.address,
            &mut r.original_recipient,
            &mut r.action,
            &mut r.status,
            &mut r.diagnostic,
            &mut r.remote_mta,
            &mut r.command,
            &mut r.last_attempt,
            &mut r.will_retry_until,
        ] {
            fix(s);
        }
    }
    let o = &mut b.original;
    for s in [&mut o.from, &mut o.to, &mut o.subject, &mut o.message_id, &mut o.date, &mut o.content_language, &mut o.accept_language, &mut o.return_path] {
        fix(s);
    }
    b
}

