//! The header block of a raw message: where each field is, which line ending the message
//! uses, and applying header edits without touching anything else.

use crate::engine::HeaderEdit;

/// A message split into header fields and body, by byte ranges into the original.
pub struct Head<'a> {
    pub raw: &'a [u8],
    /// Each field's bytes (name, value, continuation lines, line ending), in order.
    pub fields: Vec<Field>,
    /// End of the header block; the blank line (if any) follows.
    pub header_end: usize,
    /// Start of the body (after the blank line), or the end of the message.
    pub body_start: usize,
    /// "\r\n" or "\n", as the message's first line ends.
    pub eol: &'static str,
}

#[derive(Debug, Clone)]
pub struct Field {
    /// Name as written (empty for a line without a colon, e.g. an mbox "From " line).
    pub name: String,
    pub start: usize,
    pub end: usize,
}

impl<'a> Head<'a> {
    pub fn parse(raw: &'a [u8]) -> Head<'a> {
        let eol = match raw.iter().position(|&b| b == b'\n') {
            Some(i) if i > 0 && raw[i - 1] == b'\r' => "\r\n",
            Some(_) => "\n",
            None => "\r\n",
        };
        let mut fields: Vec<Field> = Vec::new();
        let mut pos = 0;
        while pos < raw.len() {
            let end = raw[pos..].iter().position(|&b| b == b'\n').map_or(raw.len(), |i| pos + i + 1);
            let line = &raw[pos..end];
            if line == b"\n" || line == b"\r\n" {
                return Head { raw, fields, header_end: pos, body_start: end, eol };
            }
            match fields.last_mut() {
                Some(f) if line[0] == b' ' || line[0] == b'\t' => f.end = end,
                _ => fields.push(Field { name: field_name(line), start: pos, end }),
            }
            pos = end;
        }
        Head { raw, fields, header_end: raw.len(), body_start: raw.len(), eol }
    }

    pub fn body(&self) -> &'a [u8] {
        &self.raw[self.body_start..]
    }

    pub fn has(&self, name: &str) -> bool {
        self.fields.iter().any(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The raw bytes of the first field called `name`.
    pub fn field_bytes(&self, name: &str) -> Option<&'a [u8]> {
        self.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name)).map(|f| &self.raw[f.start..f.end])
    }

    /// Unfolded value of the first field called `name` (lossy UTF-8).
    pub fn value(&self, name: &str) -> Option<String> {
        let bytes = self.field_bytes(name)?;
        let text = String::from_utf8_lossy(bytes);
        let value = text.split_once(':').map_or("", |(_, v)| v);
        Some(value.split(['\r', '\n']).map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" "))
    }
}

fn field_name(line: &[u8]) -> String {
    match line.iter().position(|&b| b == b':') {
        Some(i) if line[..i].iter().all(|&b| b.is_ascii_graphic()) => String::from_utf8_lossy(&line[..i]).into_owned(),
        _ => String::new(),
    }
}

/// A header field line (folded at spaces to stay near 78 columns), with line ending.
/// CR and LF in the value are replaced so that no edit can add a second field.
pub fn field_line(name: &str, value: &str, eol: &str) -> Vec<u8> {
    let value = value.replace(['\r', '\n'], " ");
    let mut out = String::with_capacity(name.len() + value.len() + 8);
    out.push_str(name);
    out.push(':');
    let mut col = out.len();
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        if col + 1 + word.len() > 78 && col > name.len() + 1 {
            out.push_str(eol);
            col = 0;
        }
        out.push(' ');
        out.push_str(word);
        col += 1 + word.len();
    }
    out.push_str(eol);
    out.into_bytes()
}

/// Apply header edits and an optional new body to a raw message; everything not edited
/// stays byte-for-byte as it was.
pub fn apply(raw: &[u8], edits: &[HeaderEdit], body: Option<&[u8]>) -> Vec<u8> {
    let head = Head::parse(raw);
    let mut fields: Vec<(String, Vec<u8>)> =
        head.fields.iter().map(|f| (f.name.clone(), raw[f.start..f.end].to_vec())).collect();
    // A last field without a line ending (a message that is all headers) gets one, so
    // that added fields start on their own line.
    if let Some((_, last)) = fields.last_mut() {
        if !last.ends_with(b"\n") {
            last.extend_from_slice(head.eol.as_bytes());
        }
    }
    // New fields go at the top, in order: appended after a malformed last field they can
    // be lost to readers (mail-parser 0.11 swallows the line after `Date: ... +0900h`).
    let mut added = 0;
    for edit in edits {
        match edit {
            HeaderEdit::Set { name, value } => {
                let line = field_line(name, value, head.eol);
                match fields.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                    Some(f) => f.1 = line,
                    None => add_on_top(&mut fields, &mut added, name, line),
                }
            }
            HeaderEdit::Add { name, value } => add_on_top(&mut fields, &mut added, name, field_line(name, value, head.eol)),
            HeaderEdit::Remove { name } => {
                added -= fields[..added].iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).count();
                fields.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            }
        }
    }
    let mut out = Vec::with_capacity(raw.len() + body.map_or(0, <[u8]>::len));
    for (_, bytes) in &fields {
        out.extend_from_slice(bytes);
    }
    let separator = &raw[head.header_end..head.body_start];
    match body {
        Some(b) => {
            out.extend_from_slice(if separator.is_empty() { head.eol.as_bytes() } else { separator });
            out.extend_from_slice(b);
        }
        None => {
            out.extend_from_slice(separator);
            out.extend_from_slice(head.body());
        }
    }
    out
}

/// Insert after the `added` fields already put at the top.
fn add_on_top(fields: &mut Vec<(String, Vec<u8>)>, added: &mut usize, name: &str, line: Vec<u8>) {
    fields.insert(*added, (name.to_string(), line));
    *added += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: a@b\r\nSubject: x\r\n y\r\nTo: c@d\r\n\r\nbody\r\n";

    /// mail-parser 0.11 swallows the line after a malformed Date (found by fuzzing): an
    /// appended Content-Type there would be lost to it, so new fields go at the top.
    #[test]
    fn new_fields_stay_visible_after_a_malformed_last_field() {
        use mail_parser::{MessageParser, MimeHeaders};
        let raw = b"From: a@b\nDate: Thu, 22 Apr 2016 23:34:45 +0900h\n\n--m\n\nhi\n--m--\n";
        let edits = vec![
            HeaderEdit::Set { name: "Content-Type".into(), value: "multipart/mixed; boundary=\"m\"".into() },
            HeaderEdit::Set { name: "MIME-Version".into(), value: "1.0".into() },
        ];
        let out = apply(raw, &edits, None);
        assert!(out.starts_with(b"Content-Type: multipart/mixed; boundary=\"m\"\nMIME-Version: 1.0\nFrom: a@b\n"), "{}", String::from_utf8_lossy(&out));
        let parsed = MessageParser::default().parse(&out).unwrap();
        assert_eq!(parsed.content_type().map(|c| c.ctype().to_string()).as_deref(), Some("multipart"));
        // The premise: appended after that Date, mail-parser does not see it.
        let appended = b"From: a@b\nDate: Thu, 22 Apr 2016 23:34:45 +0900h\nContent-Type: multipart/mixed; boundary=\"m\"\n\nx\n";
        assert!(MessageParser::default().parse(&appended[..]).unwrap().content_type().is_none());
    }

    #[test]
    fn parses_fields_and_eol() {
        let h = Head::parse(MSG);
        assert_eq!(h.eol, "\r\n");
        assert_eq!(h.fields.len(), 3);
        assert_eq!(h.value("subject").as_deref(), Some("x y"));
        assert_eq!(h.body(), b"body\r\n");
        assert_eq!(Head::parse(b"A: 1\n\nb").eol, "\n");
    }

    #[test]
    fn edits_keep_everything_else() {
        let edits = vec![
            HeaderEdit::Set { name: "subject".into(), value: "new".into() },
            HeaderEdit::Add { name: "X-New".into(), value: "1\r\nBcc: evil@x".into() },
            HeaderEdit::Remove { name: "From".into() },
            HeaderEdit::Set { name: "MIME-Version".into(), value: "1.0".into() },
        ];
        let out = apply(MSG, &edits, None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "X-New: 1 Bcc: evil@x\r\nMIME-Version: 1.0\r\nsubject: new\r\nTo: c@d\r\n\r\nbody\r\n"
        );
        assert_eq!(apply(MSG, &[], None), MSG);
    }

    #[test]
    fn headers_only_message() {
        let out = apply(b"A: 1", &[HeaderEdit::Add { name: "B".into(), value: "2".into() }], Some(b"x"));
        assert_eq!(out, b"B: 2\r\nA: 1\r\n\r\nx");
    }

    #[test]
    fn folds_long_values() {
        let line = field_line("X-Long", &"word ".repeat(40), "\n");
        let s = String::from_utf8(line).unwrap();
        assert!(s.lines().all(|l| l.len() <= 78));
        assert!(s.lines().skip(1).all(|l| l.starts_with(' ')));
    }
}
