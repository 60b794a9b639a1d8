//! One message as the MTA hands it over: envelope facts and the bytes, buffered up to a cap.

use std::ffi::{CStr, CString};

/// Is this MAIL FROM the null sender? Over SMTP the MTA passes `<>` (plus ESMTP
/// parameters), on Postfix's internal path (its own bounces) an empty string.
pub fn is_null_sender(args: &[CString]) -> bool {
    match args.first() {
        Some(addr) => matches!(addr.to_bytes().trim_ascii(), b"" | b"<>"),
        None => true,
    }
}

/// The address of a RCPT TO (`<user@example.org>` → `user@example.org`).
pub fn recipient_address(args: &[CString]) -> Option<String> {
    let addr = args.first()?.to_bytes().trim_ascii();
    let addr = addr.strip_prefix(b"<").unwrap_or(addr);
    let addr = addr.strip_suffix(b">").unwrap_or(addr);
    (!addr.is_empty()).then(|| String::from_utf8_lossy(addr).into_owned())
}

/// The domain of an address, lower-cased (`user@Example.org` → `example.org`).
pub fn domain(address: &str) -> Option<String> {
    let (_, domain) = address.rsplit_once('@')?;
    (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

/// The ESMTP SIZE the client announced in MAIL FROM, if any.
pub fn size_hint(args: &[CString]) -> Option<usize> {
    args.iter().skip(1).find_map(|a| {
        let a = a.to_bytes();
        a.get(..5).filter(|k| k.eq_ignore_ascii_case(b"SIZE="))?;
        std::str::from_utf8(&a[5..]).ok()?.parse().ok()
    })
}

/// The buffer was not extended: the message is over the cap.
#[derive(Debug, PartialEq)]
pub struct TooLarge {
    pub what: &'static str,
    pub size: usize,
}

/// The message reassembled as "Name: value" header lines (CRLF), a blank line and the
/// body, in one buffer so that the rewriter gets it without further copies.
/// Room for the header block on top of `max_body` when sizing the buffer.
const HEADER_ROOM: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct MessageBuffer {
    raw: Vec<u8>,
    header_names: Vec<CString>,
    header_len: usize,
    in_body: bool,
    max_body: usize,
}

impl MessageBuffer {
    /// `size_hint` (the announced SIZE) sizes the buffer up front, so it is not copied
    /// as it grows; capped, as the client may claim anything.
    pub fn new(max_body: usize, size_hint: Option<usize>) -> MessageBuffer {
        let capacity = size_hint.unwrap_or(0).min(max_body.saturating_add(HEADER_ROOM));
        MessageBuffer { max_body, raw: Vec::with_capacity(capacity), ..MessageBuffer::default() }
    }

    /// Append one header field. Folded values may come with bare LF; they get CRLF.
    pub fn add_header(&mut self, name: CString, value: &CStr) -> Result<(), TooLarge> {
        let (name_b, value_b) = (name.to_bytes(), value.to_bytes());
        let size = self.header_len + name_b.len() + value_b.len() + 4;
        // Headers are bounded by the same cap as the body, so memory stays bounded.
        if size > self.max_body {
            return Err(TooLarge { what: "header", size });
        }
        self.raw.extend_from_slice(name_b);
        self.raw.extend_from_slice(b": ");
        push_crlf_normalised(&mut self.raw, value_b);
        self.raw.extend_from_slice(b"\r\n");
        self.header_len = self.raw.len();
        self.header_names.push(name);
        Ok(())
    }

    /// Append a body chunk (the MTA sends CRLF line ends).
    pub fn add_body(&mut self, chunk: &[u8]) -> Result<(), TooLarge> {
        self.end_headers();
        let size = self.body_len() + chunk.len();
        if size > self.max_body {
            return Err(TooLarge { what: "body", size });
        }
        self.raw.extend_from_slice(chunk);
        Ok(())
    }

    fn end_headers(&mut self) {
        if !self.in_body {
            self.raw.extend_from_slice(b"\r\n");
            self.in_body = true;
        }
    }

    fn body_len(&self) -> usize {
        self.raw.len() - self.header_len - usize::from(self.in_body) * 2
    }

    /// The complete message, and the header names in the order seen (for the 1-based
    /// per-name indexes of header changes).
    pub fn finish(mut self) -> (Vec<u8>, Vec<CString>) {
        self.end_headers();
        (self.raw, self.header_names)
    }
}

fn push_crlf_normalised(out: &mut Vec<u8>, value: &[u8]) {
    let mut prev = 0u8;
    for &b in value {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    #[test]
    fn null_sender_forms() {
        assert!(is_null_sender(&[c("<>"), c("SIZE=1234")]));
        assert!(is_null_sender(&[c("")]));
        assert!(is_null_sender(&[c(" <> ")]));
        assert!(!is_null_sender(&[c("<a@example.org>")]));
        assert!(!is_null_sender(&[c("a@example.org")]));
    }

    #[test]
    fn announced_size() {
        assert_eq!(size_hint(&[c("<>"), c("BODY=8BITMIME"), c("size=4096")]), Some(4096));
        assert_eq!(size_hint(&[c("<>")]), None);
        assert_eq!(size_hint(&[c("<>"), c("SIZE=lots")]), None);
        assert_eq!(MessageBuffer::new(1000, Some(1 << 40)).raw.capacity(), 1000 + HEADER_ROOM);
    }

    #[test]
    fn recipient_forms() {
        assert_eq!(recipient_address(&[c("<Bob@Example.ORG>"), c("ORCPT=rfc822;x")]).as_deref(), Some("Bob@Example.ORG"));
        assert_eq!(recipient_address(&[c("bob@example.org")]).as_deref(), Some("bob@example.org"));
        assert_eq!(recipient_address(&[c("<>")]), None);
        assert_eq!(domain("Bob@Example.ORG").as_deref(), Some("example.org"));
        assert_eq!(domain("postmaster"), None);
        assert_eq!(domain("bob@"), None);
    }

    #[test]
    fn reassembles_headers_and_body() {
        let mut m = MessageBuffer::new(100, None);
        m.add_header(c("From"), &c("a@example.org")).unwrap();
        m.add_header(c("Subject"), &c("one\n\ttwo")).unwrap();
        m.add_body(b"line 1\r\n").unwrap();
        m.add_body(b"line 2\r\n").unwrap();
        let (raw, names) = m.finish();
        assert_eq!(raw, b"From: a@example.org\r\nSubject: one\r\n\ttwo\r\n\r\nline 1\r\nline 2\r\n");
        assert_eq!(names, [c("From"), c("Subject")]);
    }

    #[test]
    fn message_without_body_still_has_the_blank_line() {
        let mut m = MessageBuffer::new(100, None);
        m.add_header(c("From"), &c("a")).unwrap();
        assert_eq!(m.finish().0, b"From: a\r\n\r\n");
    }

    #[test]
    fn body_cap_counts_only_the_body() {
        let mut m = MessageBuffer::new(10, None);
        m.add_header(c("X"), &c("y")).unwrap();
        m.add_body(b"0123456789").unwrap();
        assert_eq!(m.add_body(b"a"), Err(TooLarge { what: "body", size: 11 }));
    }

    #[test]
    fn header_cap() {
        let mut m = MessageBuffer::new(10, None);
        assert_eq!(m.add_header(c("Subject"), &c("long")).unwrap_err().what, "header");
    }
}
