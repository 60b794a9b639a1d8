//! MIME assembly: put the new human-readable part into the bounce and keep every other
//! byte of the original.
//!
//! A multipart/report (or multipart/mixed) bounce keeps its top-level headers, boundary,
//! preamble, epilogue and parts 2..n as they are (sliced from the original bytes); only
//! the content of part 1 is replaced by a multipart/alternative. Any other bounce becomes
//! multipart/mixed: the new multipart/alternative first, then the original body verbatim
//! with its own Content-Type and Content-Transfer-Encoding fields.

pub mod encode;
pub mod headers;

use crate::engine::HeaderEdit;
use anyhow::{bail, Result};
use headers::Head;
use mail_parser::MimeHeaders;

/// The new human-readable content.
pub struct Notification<'a> {
    pub text: &'a str,
    pub html: &'a str,
    /// Language tag for Content-Language.
    pub lang: &'a str,
}

/// Where boundaries made here start; a message that has it beyond the part given to
/// [`assemble`] must be assembled whole.
pub const BOUNDARY_PREFIX: &str = "=_plainbounce_";

/// Bytes hashed into the boundaries: the first ones only, so that the head of a message
/// and the whole of it give the same boundaries.
const HASH_SPAN: usize = 64 * 1024;

/// A new body expressed against the old message: `prefix`, then the message's own bytes
/// from offset `from` (of the whole message, headers included) to its end, then `suffix`.
/// So a door can stream the unchanged rest of a large message from wherever it keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Splice {
    pub prefix: Vec<u8>,
    pub from: usize,
    pub suffix: Vec<u8>,
}

impl Splice {
    /// A body given whole, for the message `raw` it replaces.
    pub fn whole(body: Vec<u8>, raw: &[u8]) -> Splice {
        Splice { prefix: body, from: raw.len(), suffix: Vec::new() }
    }

    /// The new body, given the whole message.
    pub fn apply(&self, raw: &[u8]) -> Vec<u8> {
        let rest = raw.get(self.from..).unwrap_or_default();
        [&self.prefix[..], rest, &self.suffix[..]].concat()
    }
}

/// Header edits and the new body that put `note` into the message `raw` (or into its
/// head, when [`head_suffices`] says so: the body then goes on beyond `raw`).
pub fn assemble(raw: &[u8], note: &Notification) -> Result<(Vec<HeaderEdit>, Splice)> {
    let head = Head::parse(raw);
    if head.header_end == 0 {
        bail!("message has no header");
    }
    let eol = head.eol;
    let (text_cte, text) = encode::body(note.text, eol);
    let (html_cte, html) = encode::body(note.html, eol);
    let avoid: [&[u8]; 2] = [text.as_bytes(), html.as_bytes()];
    let alt_boundary = fresh_boundary(raw, &avoid, "alt");
    let mut alt = Vec::with_capacity(text.len() + html.len() + 512);
    let mut w = |s: &str| alt.extend_from_slice(s.as_bytes());
    w(&format!("Content-Type: multipart/alternative; boundary=\"{alt_boundary}\"{eol}"));
    w(&format!("Content-Language: {}{eol}{eol}", note.lang));
    for (ctype, cte, body) in [("text/plain", text_cte, &text), ("text/html", html_cte, &html)] {
        w(&format!("--{alt_boundary}{eol}Content-Type: {ctype}; charset=utf-8{eol}"));
        w(&format!("Content-Transfer-Encoding: {}{eol}{eol}", cte.as_str()));
        w(body);
        // The line break before a delimiter belongs to the delimiter, not to the text.
        w(eol);
    }
    w(&format!("--{alt_boundary}--"));

    if let Some(body) = replace_first_part(&head, &alt) {
        return Ok((Vec::new(), body));
    }
    Ok(wrap(&head, &alt, &alt_boundary))
}

/// Is the head of a larger message (`head`, ending at a line end) enough to rewrite it?
/// Only when it is a multipart/report or /mixed whose parts before the last one begun are
/// complete in it, and that last part is the returned message (never changed): the new
/// body is then the head's up to there and the rest verbatim.
pub fn head_suffices(head: &[u8]) -> Result<(), String> {
    if head.len() < HASH_SPAN {
        return Err("head shorter than the boundary hash span".into());
    }
    let h = Head::parse(head);
    let boundary = top_boundary(&h).ok_or("not a multipart/report or /mixed")?;
    let delims: Vec<Delimiter> = delimiters(h.body(), boundary.as_bytes()).collect();
    let ([first, _, ..], Some(last)) = (delims.as_slice(), delims.last()) else { return Err("part 1 does not end in the head".into()) };
    if first.close {
        return Err("no parts".into());
    }
    if last.close {
        return Ok(()); // all parts in the head; the tail is epilogue
    }
    if delims.len() < 3 {
        return Err("part 2 does not end in the head".into());
    }
    let part = &h.body()[last.line_end..];
    let header_complete = part.starts_with(b"\n") || part.starts_with(b"\r\n") || memchr::memmem::find(part, b"\n\n").or(memchr::memmem::find(part, b"\n\r\n")).is_some();
    let returned = header_complete
        && Head::parse(part).value("Content-Type").is_some_and(|ct| {
            let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            matches!(mime.as_str(), "message/rfc822" | "text/rfc822-headers" | "message/global" | "message/global-headers")
        });
    if returned {
        Ok(())
    } else {
        Err("the part cut by the head is not the returned message".into())
    }
}

/// The boundary of a multipart/report or multipart/mixed message.
fn top_boundary(head: &Head) -> Option<String> {
    let msg = crate::dsn::PARSER.parse_headers(head.raw)?;
    let ct = msg.content_type()?;
    let subtype = ct.subtype().unwrap_or("").to_ascii_lowercase();
    if !ct.ctype().eq_ignore_ascii_case("multipart") || !matches!(subtype.as_str(), "report" | "mixed") {
        return None;
    }
    ct.attribute("boundary").map(str::to_string)
}

/// For multipart/report and multipart/mixed: the body with part 1's content replaced
/// (or, when part 1 is not human-readable, the new part inserted before it). `None`
/// when the message is not such a multipart or its structure cannot be found.
fn replace_first_part(head: &Head, alt: &[u8]) -> Option<Splice> {
    let boundary = top_boundary(head)?;
    let body = head.body();
    let mut delims = delimiters(body, boundary.as_bytes());
    let (Some(first), Some(second)) = (delims.next(), delims.next()) else { return None };
    if first.close {
        return None;
    }
    let start = first.line_end;
    let end = content_end(body, start, second.line_start);
    let mut prefix = Vec::with_capacity(start + alt.len() + 2);
    prefix.extend_from_slice(&body[..start]);
    prefix.extend_from_slice(alt);
    let from = if human_readable(&body[start..end]) {
        end
    } else {
        prefix.extend_from_slice(head.eol.as_bytes());
        first.line_start
    };
    Some(Splice { prefix, from: head.body_start + from, suffix: Vec::new() })
}

/// Is this part (headers + body) text or an alternative meant for people?
fn human_readable(part: &[u8]) -> bool {
    let ct = if part.starts_with(b"\n") || part.starts_with(b"\r\n") {
        None
    } else {
        crate::dsn::PARSER.parse_headers(part).and_then(|m| m.content_type().map(|c| (c.ctype().to_ascii_lowercase(), c.subtype().map(str::to_ascii_lowercase))))
    };
    match ct {
        None => true,
        Some((t, s)) => t == "text" || (t == "multipart" && matches!(s.as_deref(), Some("alternative" | "related" | "mixed"))),
    }
}

/// For any other message: multipart/mixed with the new part first and the old body next.
fn wrap(head: &Head, alt: &[u8], alt_boundary: &str) -> (Vec<HeaderEdit>, Splice) {
    let eol = head.eol;
    let avoid: [&[u8]; 2] = [alt, alt_boundary.as_bytes()];
    let mix = fresh_boundary(head.raw, &avoid, "mix");
    let body = head.body();
    let mut out = Vec::with_capacity(alt.len() + 512);
    out.extend_from_slice(format!("--{mix}{eol}").as_bytes());
    out.extend_from_slice(alt);
    out.extend_from_slice(format!("{eol}--{mix}{eol}").as_bytes());
    for name in ["Content-Type", "Content-Transfer-Encoding"] {
        if let Some(field) = head.field_bytes(name) {
            out.extend_from_slice(field);
        }
    }
    out.extend_from_slice(eol.as_bytes());
    let splice = Splice { prefix: out, from: head.body_start, suffix: format!("{eol}--{mix}--{eol}").into_bytes() };

    // Remove before setting: a duplicate field left behind is what some readers would use.
    let mut edits = vec![
        HeaderEdit::Remove { name: "Content-Type".into() },
        HeaderEdit::Set { name: "Content-Type".into(), value: format!("multipart/mixed; boundary=\"{mix}\"") },
    ];
    if !head.has("MIME-Version") {
        edits.push(HeaderEdit::Set { name: "MIME-Version".into(), value: "1.0".into() });
    }
    // A multipart entity may only be 7bit, 8bit or binary: keep what the old body needs.
    let old_cte = head.value("Content-Transfer-Encoding").map(|v| v.to_ascii_lowercase());
    let top_cte = match old_cte.as_deref() {
        Some(c @ ("8bit" | "binary")) => Some(c),
        _ if !body.is_ascii() => Some("8bit"),
        _ => None,
    };
    match top_cte {
        Some(c) => {
            edits.push(HeaderEdit::Remove { name: "Content-Transfer-Encoding".into() });
            edits.push(HeaderEdit::Set { name: "Content-Transfer-Encoding".into(), value: c.into() });
        }
        None if old_cte.is_some() => edits.push(HeaderEdit::Remove { name: "Content-Transfer-Encoding".into() }),
        None => {}
    }
    (edits, splice)
}

/// A boundary delimiter line in a multipart body.
#[derive(Debug)]
struct Delimiter {
    line_start: usize,
    line_end: usize,
    close: bool,
}

/// The delimiter lines of `boundary` (RFC 2046 §5.1.1), in order, up to and including the
/// close delimiter. Lazy, and found with `memmem`: a caller that needs the first two
/// should not walk a 1 MB returned message line by line (6 instructions a byte).
fn delimiters<'a>(body: &'a [u8], boundary: &[u8]) -> impl Iterator<Item = Delimiter> + 'a {
    let finder = memchr::memmem::Finder::new(&[b"--", boundary].concat()).into_owned();
    let mut pos = 0;
    let mut closed = false;
    std::iter::from_fn(move || {
        while !closed {
            let at = pos + finder.find(&body[pos..])?;
            if at > 0 && body[at - 1] != b'\n' {
                pos = at + 1; // not at the start of a line
                continue;
            }
            let end = memchr::memchr(b'\n', &body[at..]).map_or(body.len(), |i| at + i + 1);
            pos = end;
            let rest = &body[at + finder.needle().len()..end];
            let close = rest.starts_with(b"--");
            let tail = if close { &rest[2..] } else { rest };
            if tail.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')) {
                closed = close;
                return Some(Delimiter { line_start: at, line_end: end, close });
            }
        }
        None
    })
}

/// Where a part's content ends: the line break before the next delimiter belongs to it.
fn content_end(body: &[u8], start: usize, next_delimiter: usize) -> usize {
    let mut end = next_delimiter;
    if end > start && body[end - 1] == b'\n' {
        end -= 1;
        if end > start && body[end - 1] == b'\r' {
            end -= 1;
        }
    }
    end
}

/// A boundary that occurs nowhere in the message nor in the new content. "=_" cannot occur
/// in quoted-printable text, and the candidate is checked against every byte anyway.
fn fresh_boundary(raw: &[u8], avoid: &[&[u8]], tag: &str) -> String {
    let hash = raw[..raw.len().min(HASH_SPAN)].iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    (0u32..)
        .map(|n| format!("=_plainbounce_{tag}_{hash:016x}_{n}"))
        .find(|cand| {
            let finder = memchr::memmem::Finder::new(cand.as_bytes());
            finder.find(raw).is_none() && avoid.iter().all(|a| finder.find(a).is_none())
        })
        .expect("some counter value is free")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_delimiters() {
        let body = b"pre\n--b\nA x--b\n--b \n\nB\n--bx\n--b--\nepi\n--b\n";
        let d: Vec<Delimiter> = delimiters(body, b"b").collect();
        assert_eq!(d.len(), 3);
        assert_eq!((d[0].line_start, d[0].line_end), (4, 8));
        assert!(d[2].close);
        assert_eq!(&body[d[1].line_start..d[1].line_end], b"--b \n");
        assert_eq!(content_end(body, d[0].line_end, d[1].line_start), 14);
        // At the very start, and a body that ends without a line break.
        let d: Vec<Delimiter> = delimiters(b"--b\nA\n--b--", b"b").collect();
        assert_eq!((d.len(), d[0].line_start, d[1].line_end, d[1].close), (2, 0, 11, true));
    }

    #[test]
    fn boundary_avoids_message_text() {
        let first = fresh_boundary(b"hello", &[], "alt");
        let raw = format!("x {first} y");
        let second = fresh_boundary(raw.as_bytes(), &[], "alt");
        assert_ne!(first, second);
        assert!(!raw.contains(&second));
    }
}
