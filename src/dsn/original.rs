//! The returned (original) message's headers: from a message/rfc822 part, a
//! text/rfc822-headers part, or the copy a bounce quotes inline.

use super::reply::sanitize;
use super::OriginalMessage;
use mail_parser::{Address, Message};

/// Headers of the returned message that some reports need beyond `OriginalMessage`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Extra {
    /// The first address of its To: header.
    pub to_address: Option<String>,
    /// Outlook.com's complaint reports name the recipient here.
    pub hotmail_recipient: Option<String>,
}

/// `outer` is the raw message that contains `msg` (mail-parser gives a message parsed in
/// place offsets into its parent's bytes).
pub(crate) fn from_message(msg: &Message, outer: &[u8]) -> OriginalMessage {
    let raw = |name| raw(msg, outer, name);
    OriginalMessage {
        from: msg.from().and_then(display).or_else(|| raw("from")),
        to: raw("to"),
        subject: msg.subject().map(sanitize).filter(|s| !s.is_empty()),
        message_id: raw("message-id"),
        date: raw("date"),
        content_language: raw("content-language"),
        accept_language: raw("accept-language"),
        return_path: raw("return-path").and_then(|r| super::address::first_in(&r)),
    }
}

pub(crate) fn extra_from_message(msg: &Message, outer: &[u8]) -> Extra {
    Extra {
        to_address: msg.to().and_then(|a| a.first()).and_then(|a| a.address.as_ref()).map(|a| a.to_string()),
        hotmail_recipient: raw(msg, outer, "x-hmxmroriginalrecipient"),
    }
}

/// Headers given as text (a text/rfc822-headers part, or an inline copy).
pub(crate) fn from_header_text(text: &str) -> OriginalMessage {
    match super::mime::PARSER.parse_headers(text.as_bytes()) {
        Some(msg) => from_message(&msg, text.as_bytes()),
        None => OriginalMessage::default(),
    }
}

pub(crate) fn extra_from_header_text(text: &str) -> Extra {
    match super::mime::PARSER.parse_headers(text.as_bytes()) {
        Some(msg) => extra_from_message(&msg, text.as_bytes()),
        None => Extra::default(),
    }
}

/// True when nothing was found.
pub(crate) fn is_empty(o: &OriginalMessage) -> bool {
    *o == OriginalMessage::default()
}

fn display(a: &Address) -> Option<String> {
    let first = a.first()?;
    let s = match (&first.name, &first.address) {
        (Some(n), Some(addr)) => format!("{n} <{addr}>"),
        (None, Some(addr)) => addr.to_string(),
        (Some(n), None) => n.to_string(),
        (None, None) => return None,
    };
    Some(sanitize(&s)).filter(|s| !s.is_empty())
}

/// The first header of that name, unfolded, control characters removed.
fn raw(msg: &Message, outer: &[u8], name: &str) -> Option<String> {
    let h = msg.headers().iter().find(|h| h.name().eq_ignore_ascii_case(name))?;
    // The offsets point into whichever buffer has the field's name at the field's start.
    let named = |bytes: &[u8]| {
        bytes
            .get(h.offset_field as usize..)
            .is_some_and(|b| b.len() >= name.len() && b[..name.len()].eq_ignore_ascii_case(name.as_bytes()))
    };
    let bytes = [msg.raw_message(), outer].into_iter().find(|b| named(b))?;
    bytes
        .get(h.offset_start as usize..h.offset_end as usize)
        .map(|v| sanitize(&String::from_utf8_lossy(v)))
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_from_text() {
        let o = from_header_text(
            "From: Neko <neko@example.jp>\nTo: kijitora@example.org\nSubject: =?UTF-8?B?44Gr44KD44O844KT?=\n\
             Message-ID: <x@example.jp>\nContent-Language: ja-JP\nAccept-Language: ja-JP, en-US\n\nbody\n",
        );
        assert_eq!(o.from.as_deref(), Some("Neko <neko@example.jp>"));
        assert_eq!(o.subject.as_deref(), Some("にゃーん"));
        assert_eq!(o.message_id.as_deref(), Some("<x@example.jp>"));
        assert_eq!(o.content_language.as_deref(), Some("ja-JP"));
        assert_eq!(o.accept_language.as_deref(), Some("ja-JP, en-US"));
        assert_eq!(extra_from_header_text("To: a@b.example\n\n").to_address.as_deref(), Some("a@b.example"));
    }
}
