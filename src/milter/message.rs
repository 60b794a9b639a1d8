//! One message as the MTA hands it over: envelope facts and the bytes, buffered up to a cap.

use crate::engine::Tail;
use crate::rewrite::BOUNDARY_PREFIX;
use std::ffi::{CStr, CString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::atomic::{AtomicU64, Ordering};

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

/// The message is not buffered (over the cap, or its rest could not be kept): why.
#[derive(Debug, PartialEq)]
pub struct Unbuffered(pub String);

fn too_large(what: &str, size: usize, max_body: usize) -> Unbuffered {
    Unbuffered(format!("{what} of {size} bytes over max_body = {max_body} bytes"))
}

/// Room for the header block on top of `max_body` when sizing the buffer.
const HEADER_ROOM: usize = 64 * 1024;

/// Bytes of a message kept in memory; the rest of the body goes to a spill file. Enough
/// for the notification, the delivery status and the returned message's headers of all
/// but odd bounces (those are read back whole, one rewrite slot at a time).
pub const HEAD_LIMIT: usize = 128 * 1024;

/// The message reassembled as "Name: value" header lines (CRLF), a blank line and the
/// body: its head in memory, the rest of the body in an unlinked temp file.
#[derive(Debug, Default)]
pub struct MessageBuffer {
    raw: Vec<u8>,
    header_names: Vec<CString>,
    header_len: usize,
    in_body: bool,
    max_body: usize,
    body_len: usize,
    spill: Option<Spill>,
}

impl MessageBuffer {
    /// `size_hint` (the announced SIZE) sizes the buffer up front, so it is not copied
    /// as it grows; capped, as the client may claim anything.
    pub fn new(max_body: usize, size_hint: Option<usize>) -> MessageBuffer {
        let capacity = size_hint.unwrap_or(0).min(max_body.saturating_add(HEADER_ROOM)).min(HEAD_LIMIT);
        MessageBuffer { max_body, raw: Vec::with_capacity(capacity), ..MessageBuffer::default() }
    }

    /// Append one header field. Folded values may come with bare LF; they get CRLF.
    pub fn add_header(&mut self, name: CString, value: &CStr) -> Result<(), Unbuffered> {
        let (name_b, value_b) = (name.to_bytes(), value.to_bytes());
        let size = self.header_len + name_b.len() + value_b.len() + 4;
        // Headers are bounded by the same cap as the body, so memory stays bounded.
        if size > self.max_body {
            return Err(too_large("header", size, self.max_body));
        }
        self.raw.extend_from_slice(name_b);
        self.raw.extend_from_slice(b": ");
        push_crlf_normalised(&mut self.raw, value_b);
        self.raw.extend_from_slice(b"\r\n");
        self.header_len = self.raw.len();
        self.header_names.push(name);
        Ok(())
    }

    /// Append a body chunk (the MTA sends CRLF line ends): to memory up to the head
    /// limit, the rest to the spill file.
    pub fn add_body(&mut self, chunk: &[u8]) -> Result<(), Unbuffered> {
        self.end_headers();
        let size = self.body_len + chunk.len();
        if size > self.max_body {
            return Err(too_large("body", size, self.max_body));
        }
        self.body_len = size;
        let room = HEAD_LIMIT.saturating_sub(self.raw.len()).min(chunk.len());
        self.raw.extend_from_slice(&chunk[..room]);
        if room < chunk.len() {
            let spill = match &mut self.spill {
                Some(spill) => spill,
                None => self.spill.insert(Spill::new(&self.raw).map_err(|e| Unbuffered(format!("cannot spill the body to a temp file: {e}")))?),
            };
            spill.write(&chunk[room..]).map_err(|e| Unbuffered(format!("cannot write the spill file: {e}")))?;
        }
        Ok(())
    }

    fn end_headers(&mut self) {
        if !self.in_body {
            self.raw.extend_from_slice(b"\r\n");
            self.in_body = true;
        }
    }

    /// The complete message, and the header names in the order seen (for the 1-based
    /// per-name indexes of header changes).
    pub fn finish(mut self) -> (Message, Vec<CString>) {
        self.end_headers();
        (Message { head: self.raw, spill: self.spill }, self.header_names)
    }
}

/// A received message: the head in memory, perhaps the rest in a spill file.
#[derive(Debug)]
pub struct Message {
    pub head: Vec<u8>,
    spill: Option<Spill>,
}

impl Message {
    /// What the engine may know of the bytes after the head.
    pub fn tail(&self) -> Tail {
        self.spill.as_ref().map_or_else(Tail::default, |s| Tail { len: s.len, has_boundary_prefix: s.has_prefix })
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.tail().len
    }

    /// The whole message in memory (read back from the spill file).
    pub fn whole(&self) -> io::Result<Vec<u8>> {
        let mut raw = Vec::with_capacity(self.len());
        raw.extend_from_slice(&self.head);
        if let Some(s) = &self.spill {
            let mut rest = vec![0; s.len];
            s.file.read_exact_at(&mut rest, 0)?;
            raw.extend_from_slice(&rest);
        }
        Ok(raw)
    }

    /// Up to `max` bytes of the message from offset `at` (empty at the end).
    pub fn read_at(&self, at: usize, max: usize) -> io::Result<Vec<u8>> {
        if at < self.head.len() {
            return Ok(self.head[at..self.head.len().min(at + max)].to_vec());
        }
        let Some(s) = &self.spill else { return Ok(Vec::new()) };
        let offset = at - self.head.len();
        let mut chunk = vec![0; s.len.saturating_sub(offset).min(max)];
        s.file.read_exact_at(&mut chunk, offset as u64)?;
        Ok(chunk)
    }
}

/// The body beyond the head, in a temp file unlinked at once: nothing is left behind
/// however the message ends, even if the process dies.
#[derive(Debug)]
struct Spill {
    file: File,
    len: usize,
    has_prefix: bool,
    /// The last bytes written, to find the boundary prefix across writes.
    carry: Vec<u8>,
}

impl Spill {
    /// `before`: the bytes in memory, whose end may start a boundary prefix.
    fn new(before: &[u8]) -> io::Result<Spill> {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(".plainbounce-spill-{}-{n}", std::process::id()));
        let file = OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path)?;
        std::fs::remove_file(&path)?;
        let carry = before[before.len().saturating_sub(BOUNDARY_PREFIX.len() - 1)..].to_vec();
        Ok(Spill { file, len: 0, has_prefix: false, carry })
    }

    /// Plain blocking writes: a chunk of at most 64 KB into the page cache.
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all_at(bytes, self.len as u64)?;
        self.len += bytes.len();
        let (prefix, keep) = (BOUNDARY_PREFIX.as_bytes(), BOUNDARY_PREFIX.len() - 1);
        let mut joined = std::mem::take(&mut self.carry);
        joined.extend_from_slice(&bytes[..bytes.len().min(keep)]);
        let found = |hay: &[u8]| memchr::memmem::find(hay, prefix).is_some();
        self.has_prefix |= found(&joined) || found(bytes);
        let last = if bytes.len() >= keep { bytes } else { &joined };
        self.carry = last[last.len().saturating_sub(keep)..].to_vec();
        Ok(())
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
        let (msg, names) = m.finish();
        assert_eq!(msg.head, b"From: a@example.org\r\nSubject: one\r\n\ttwo\r\n\r\nline 1\r\nline 2\r\n");
        assert_eq!(names, [c("From"), c("Subject")]);
    }

    #[test]
    fn message_without_body_still_has_the_blank_line() {
        let mut m = MessageBuffer::new(100, None);
        m.add_header(c("From"), &c("a")).unwrap();
        assert_eq!(m.finish().0.head, b"From: a\r\n\r\n");
    }

    #[test]
    fn body_cap_counts_only_the_body() {
        let mut m = MessageBuffer::new(10, None);
        m.add_header(c("X"), &c("y")).unwrap();
        m.add_body(b"0123456789").unwrap();
        assert_eq!(m.add_body(b"a"), Err(Unbuffered("body of 11 bytes over max_body = 10 bytes".into())));
    }

    #[test]
    fn header_cap() {
        let mut m = MessageBuffer::new(10, None);
        assert!(m.add_header(c("Subject"), &c("long")).unwrap_err().0.starts_with("header of"));
    }

    #[test]
    fn the_body_beyond_the_head_is_spilled_and_read_back() {
        let mut m = MessageBuffer::new(1 << 20, Some(1 << 20));
        m.add_header(c("X"), &c("y")).unwrap();
        let body: Vec<u8> = (0..300_000u32).map(|i| b"0123456789\r\n"[i as usize % 12]).collect();
        for chunk in body.chunks(65_535) {
            m.add_body(chunk).unwrap();
        }
        let (msg, _) = m.finish();
        assert_eq!(msg.head.len(), HEAD_LIMIT);
        let whole = [&b"X: y\r\n\r\n"[..], &body].concat();
        assert_eq!(msg.whole().unwrap(), whole);
        assert_eq!(msg.tail(), Tail { len: whole.len() - HEAD_LIMIT, has_boundary_prefix: false });
        let mut streamed = Vec::new();
        while let Ok(chunk) = msg.read_at(streamed.len(), 50_000) {
            if chunk.is_empty() {
                break;
            }
            streamed.extend_from_slice(&chunk);
        }
        assert_eq!(streamed, whole);
    }

    #[test]
    fn a_boundary_prefix_across_writes_is_noticed() {
        let mut m = MessageBuffer::new(1 << 20, None);
        m.add_body(&vec![b'a'; HEAD_LIMIT - 7]).unwrap();
        m.add_body(b"\r\n=_plain").unwrap(); // straddles head and spill
        m.add_body(b"bounce_alt_x\r\n").unwrap();
        assert!(m.finish().0.tail().has_boundary_prefix);
    }
}
