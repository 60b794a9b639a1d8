//! The MIME structure of a report, through `mail-parser`: the human-readable text, the
//! machine-readable report parts, and the returned message's headers.

use super::original;
use super::text::{truncate, MAX_TEXT};
use super::OriginalMessage;
use mail_parser::{HeaderName, Message, MessageParser, MimeHeaders, PartType};
use regex::Regex;
use std::sync::LazyLock;

/// At most this many MIME parts are looked at (bounded work on hostile input).
const MAX_PARTS: usize = 200;
/// At most this much of a report part is read.
const MAX_REPORT: usize = 256 * 1024;

/// The parts of a message that matter for bounce parsing.
#[derive(Debug, Default)]
pub(crate) struct View {
    /// Top-level headers.
    pub headers: Headers,
    /// The human-readable text (text/plain preferred over text/html), parts joined.
    pub human: String,
    /// message/delivery-status (false) and message/global-delivery-status (true) parts.
    pub status_parts: Vec<(String, bool)>,
    /// A message/feedback-report part (ARF).
    pub feedback: Option<String>,
    /// A message/disposition-notification part (read receipt).
    pub disposition: bool,
    /// The returned message's headers, if a part carries them.
    pub original: Option<OriginalMessage>,
    /// Headers of the returned message that only some reports use.
    pub original_extra: original::Extra,
    /// The `report-type` parameter of a multipart/report, lower case.
    pub report_type: Option<String>,
}

/// Top-level header values (decoded where it matters, unfolded, raw otherwise).
#[derive(Debug, Default, Clone)]
pub(crate) struct Headers {
    pub from: Option<String>,
    pub from_address: Option<String>,
    pub subject: String,
    pub return_path: Option<String>,
    pub failed_recipients: Vec<String>,
    pub auto_submitted: Option<String>,
    pub precedence: Option<String>,
    pub autoreply: bool,
    pub apple_action: Option<String>,
    pub apple_unsubscribe: bool,
}

/// The parser for bounces (and for the headers `rewrite` reads): MIME headers, and the
/// only others read through mail-parser (From, To, Subject); the rest are skipped, and
/// read raw from their offsets when needed.
/// By default mail-parser parses every known header, `Received:` lines too (a fifth of
/// the parse, for nothing), and copies every other one into a string.
pub(crate) static PARSER: LazyLock<MessageParser> = LazyLock::new(|| {
    MessageParser::new()
        .with_mime_headers()
        .default_header_ignore()
        .header_address(HeaderName::From)
        .header_address(HeaderName::To)
        .header_text(HeaderName::Subject)
});

/// Parse a message; `None` when it has no header at all.
pub(crate) fn view(raw: &[u8]) -> Option<View> {
    let msg = PARSER.parse(raw)?;
    if msg.headers().is_empty() {
        return None;
    }
    let mut v = View { headers: headers(&msg), ..View::default() };
    let root = msg.root_part();
    if let Some(ct) = root.content_type() {
        if ct.ctype().eq_ignore_ascii_case("multipart") {
            v.report_type = ct.attribute("report-type").map(str::to_ascii_lowercase);
        }
    }
    let mut budget = MAX_PARTS;
    walk(&msg, 0, &mut v, &mut budget);
    if v.human.trim().is_empty() && v.status_parts.is_empty() && v.original.is_none() && v.feedback.is_none() {
        // Nothing usable came out of the MIME structure: read the body as text.
        let body = raw.get(root.offset_body as usize..).unwrap_or_default();
        v.human = String::from_utf8_lossy(&body[..body.len().min(MAX_TEXT)]).into_owned();
    }
    if v.human.contains('\r') {
        v.human = v.human.replace("\r\n", "\n");
    }
    Some(v)
}

fn walk(msg: &Message, id: usize, v: &mut View, budget: &mut usize) {
    if *budget == 0 {
        return;
    }
    *budget -= 1;
    let Some(part) = msg.parts.get(id) else { return };
    let (ctype, subtype) = match part.content_type() {
        Some(ct) => (ct.ctype().to_ascii_lowercase(), ct.subtype().unwrap_or("").to_ascii_lowercase()),
        None => ("text".to_string(), "plain".to_string()),
    };
    match &part.body {
        PartType::Multipart(children) => {
            let children: Vec<usize> = children.iter().map(|&c| c as usize).collect();
            if subtype == "alternative" {
                // One rendering is enough: the plain one if there is one.
                let plain = children.iter().copied().find(|&c| is_type(msg, c, "text", "plain"));
                if let Some(c) = plain.or_else(|| children.first().copied()) {
                    walk(msg, c, v, budget);
                }
            } else {
                for c in children {
                    walk(msg, c, v, budget);
                }
            }
        }
        PartType::Message(nested) => {
            if v.original.is_none() {
                v.original = Some(original::from_message(nested, msg.raw_message()));
                v.original_extra = original::extra_from_message(nested, msg.raw_message());
            }
        }
        body => {
            let text = match body {
                PartType::Text(t) | PartType::Html(t) => t.to_string(),
                PartType::Binary(b) | PartType::InlineBinary(b) => {
                    String::from_utf8_lossy(&b[..b.len().min(MAX_REPORT)]).into_owned()
                }
                _ => String::new(),
            };
            leaf(&ctype, &subtype, text, v);
        }
    }
}

fn leaf(ctype: &str, subtype: &str, text: String, v: &mut View) {
    match (ctype, subtype) {
        ("message", "delivery-status") => v.status_parts.push((cap(text, MAX_REPORT), false)),
        ("message", "global-delivery-status") => v.status_parts.push((cap(text, MAX_REPORT), true)),
        ("message", "feedback-report") => {
            v.feedback.get_or_insert(cap(text, MAX_REPORT));
        }
        ("message", "disposition-notification") => v.disposition = true,
        ("text", "rfc822-headers") | ("text", "rfc822-header") | ("message", "rfc822-headers")
        | ("message", "global-headers") | ("message", "rfc822") | ("message", "global")
            if v.original.is_none() =>
        {
            let headers = cap(text, 64 * 1024);
            v.original = Some(original::from_header_text(&headers));
            v.original_extra = original::extra_from_header_text(&headers);
        }
        ("text", "html") => add_human(v, &html_text(&text)),
        ("text", _) => add_human(v, &text),
        _ => {}
    }
}

fn add_human(v: &mut View, text: &str) {
    if v.human.len() >= MAX_TEXT {
        return;
    }
    if !v.human.is_empty() {
        v.human.push_str("\n\n");
    }
    v.human.push_str(truncate(text, MAX_TEXT - v.human.len().min(MAX_TEXT)));
}

fn is_type(msg: &Message, id: usize, ctype: &str, subtype: &str) -> bool {
    msg.parts.get(id).and_then(|p| p.content_type()).is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case(ctype) && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case(subtype))
    })
}

fn cap(mut s: String, max: usize) -> String {
    let keep = truncate(&s, max).len();
    s.truncate(keep);
    s
}

static BLOCK_TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)</(?:div|tr|li|h[1-6]|table|blockquote|pre)\s*>|<(?:div|tr|li|p|pre)(?-u:\b)").unwrap());

/// HTML to text with a line break at every block element (mail-parser only breaks at
/// `<br>` and `</p>`).
fn html_text(html: &str) -> String {
    let html = truncate(html, MAX_TEXT * 2);
    let marked = BLOCK_TAG.replace_all(html, "<br>$0");
    mail_parser::decoders::html::html_to_text(&marked)
}

fn headers(msg: &Message) -> Headers {
    let mut h = Headers { subject: msg.subject().unwrap_or("").to_string(), ..Headers::default() };
    if let Some(addr) = msg.from().and_then(|a| a.first()) {
        h.from_address = addr.address.as_ref().map(|a| a.to_string());
        h.from = Some(match (&addr.name, &addr.address) {
            (Some(n), Some(a)) => format!("{n} <{a}>"),
            (None, Some(a)) => a.to_string(),
            (Some(n), None) => n.to_string(),
            (None, None) => String::new(),
        });
    }
    let raw = msg.raw_message();
    for header in msg.headers() {
        let name = header.name().to_ascii_lowercase();
        let bytes = raw.get(header.offset_start as usize..header.offset_end as usize).unwrap_or_default();
        // Cleaned only for the fields read here: a message has dozens of others.
        let value = || super::reply::sanitize(&String::from_utf8_lossy(bytes));
        match name.as_str() {
            "return-path" => {
                h.return_path.get_or_insert_with(value);
            }
            "x-failed-recipients" => h.failed_recipients.extend(
                super::address::ADDRESS.find_iter(&value()).map(|m| m.as_str().to_string()).take(500),
            ),
            "auto-submitted" => {
                h.auto_submitted.get_or_insert_with(|| value().to_ascii_lowercase());
            }
            "precedence" => {
                h.precedence.get_or_insert_with(|| value().to_ascii_lowercase());
            }
            "x-autoreply" | "x-autorespond" | "x-autoresponder" => h.autoreply = true,
            "x-apple-unsubscribe" => h.apple_unsubscribe = value().eq_ignore_ascii_case("true"),
            "x-apple-action" => {
                h.apple_action.get_or_insert_with(|| value().to_ascii_lowercase());
            }
            _ => {}
        }
    }
    if h.from_address.is_none() {
        // A bare "From: MAILER-DAEMON" has no address; keep the text for the sender check.
        h.from = msg.header_raw("From").map(super::reply::sanitize);
    }
    h
}
