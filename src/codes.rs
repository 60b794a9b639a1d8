//! Finding the SMTP reply code, the enhanced status code and, where the wording shows
//! it, the command a reply answered, in free text.

use regex::Regex;
use std::sync::LazyLock;

static REPLY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|[\s:;(\[\x22'<>=])([245][0-9][0-9])(?:[\s\-.,:;)\]]|$)").unwrap());
static STATUS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|[^\d.])([245])\.(\d{1,3})\.(\d{1,3})(?:[^\d.]|\.(?:\D|$)|$)").unwrap());

/// The codes found in a text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FoundCodes {
    pub reply_code: Option<u16>,
    pub status: Option<String>,
    /// The SMTP command the text says the reply answered (upper case).
    pub command: Option<&'static str>,
}

impl FoundCodes {
    pub fn as_query<'a>(&'a self, text: &'a str) -> crate::kb::Query<'a> {
        crate::kb::Query { reply_code: self.reply_code, status: self.status.as_deref(), text, command: self.command, format: None }
    }
}

static LEADING: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\s*([1-5][0-9][0-9])(?:[\s\-]|$)").unwrap());

/// First basic reply code (2xx/4xx/5xx) in `text`; 1xx and 3xx count only at the start,
/// where nothing else could be meant.
pub fn reply_code(text: &str) -> Option<u16> {
    REPLY.captures(text).or_else(|| LEADING.captures(text)).and_then(|c| c[1].parse().ok())
}

static REPLY_THEN_STATUS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b[245][0-9][0-9][\s-]+['\x22]?([245])\.(\d{1,3})\.(\d{1,3})\b").unwrap());

/// The enhanced status code in `text`: the first one that follows a reply code ("550
/// 5.7.1", the remote server's own, even when a relay's summary comes first), else the
/// first one.
pub fn status(text: &str) -> Option<String> {
    REPLY_THEN_STATUS.captures(text).or_else(|| STATUS.captures(text)).map(|c| format!("{}.{}.{}", &c[1], &c[2], &c[3]))
}

/// Codes found in a free text such as "550 5.1.1 <x@y>: User unknown".
pub fn query_for_text(text: &str) -> FoundCodes {
    FoundCodes { reply_code: reply_code(text), status: status(text), command: command(text) }
}

/// The command a text says a reply answered ("after RCPT TO", "does not like
/// recipient"), or RCPT for a reply that opens by naming an address.
fn command(text: &str) -> Option<&'static str> {
    crate::dsn::command_in(text).or_else(|| opens_with_address(text).then_some("RCPT"))
}

/// A reply that opens by naming an address ("550 <bob@example.org>: User unknown",
/// "<bob@example.org>... User Unknown") is the answer to that recipient's RCPT TO.
fn opens_with_address(text: &str) -> bool {
    let head = text.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ':' || c == '-' || c.is_whitespace());
    head.strip_prefix('<').and_then(|rest| rest.split_once('>')).is_some_and(|(addr, _)| addr.contains('@') && !addr.contains(' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_codes() {
        let f = query_for_text("550-5.1.1 The email account that you tried to reach does not exist");
        assert_eq!(f.reply_code, Some(550));
        assert_eq!(f.status.as_deref(), Some("5.1.1"));
        assert_eq!(reply_code("smtp; 553 sorry, relaying denied"), Some(553));
        assert_eq!(reply_code("host 192.168.250.1 said"), None);
        assert_eq!(reply_code("471 Bad sender"), Some(471));
        assert_eq!(reply_code("101 The server is unable to connect"), Some(101));
        assert_eq!(reply_code("Error 354 seen"), None);
        assert_eq!(status("#5.1.1 SMTP; 550"), Some("5.1.1".into()));
        assert_eq!(status("version 10.5.1.2 build"), None);
        assert_eq!(status("Status: 4.7.27."), Some("4.7.27".into()));
        assert_eq!(status("5.1.0 - Unknown address error 550-'5.7.1 <a@b>... Access denied'"), Some("5.7.1".into()));
        assert_eq!(query_for_text("550 5.1.1 <bob@example.org>: User unknown").command, Some("RCPT"));
        assert_eq!(query_for_text("550 : User unknown").command, None);
    }
}
