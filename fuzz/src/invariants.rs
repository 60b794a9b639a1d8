//! What must hold for any input, checked inside the fuzz targets and by the hostile-input
//! tests (which include this file with `#[path]`).
//!
//! MIME structure is checked here line by line rather than through mail-parser alone:
//! mail-parser is lenient and reads unbalanced boundaries without complaint, and an
//! unbalanced boundary is exactly what an injection produces.

#![allow(dead_code)] // each includer uses a different subset

use mail_parser::{MessageParser, MimeHeaders, PartType};
use plainbounce::dsn::{Bounce, RecipientFacts};
use plainbounce::engine::{HeaderEdit, Modification};

/// `Err` names the first broken invariant.
pub type Check = Result<(), String>;

/// RFC 5322 line limit, without the line ending.
const MAX_LINE: usize = 998;
/// Nesting the checker follows inside a generated part (the engine makes two levels).
const MAX_DEPTH: usize = 8;
/// Headers a generated MIME part may carry: anything else is a header injection.
const PART_HEADERS: &[&str] = &[
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
    "content-description",
    "content-language",
    "content-id",
    "mime-version",
];

/// Header block and body of one MIME entity.
#[derive(Debug, Clone, Copy)]
pub struct Entity<'a> {
    pub header: &'a [u8],
    pub body: &'a [u8],
}

/// Split at the first empty line (LF or CRLF); without one it is all header.
pub fn split_entity(raw: &[u8]) -> Entity<'_> {
    let mut pos = 0;
    for line in raw.split_inclusive(|&c| c == b'\n') {
        if line == b"\n" || line == b"\r\n" {
            return Entity { header: &raw[..pos], body: &raw[pos + line.len()..] };
        }
        pos += line.len();
    }
    Entity { header: raw, body: &[] }
}

/// Header fields, each with its continuation lines, as raw bytes.
pub fn header_fields(header: &[u8]) -> Vec<&[u8]> {
    let mut fields: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    for line in header.split_inclusive(|&c| c == b'\n') {
        let continues = matches!(line.first(), Some(b' ' | b'\t'));
        if !continues && pos > start {
            fields.push(&header[start..pos]);
            start = pos;
        }
        pos += line.len();
    }
    if pos > start {
        fields.push(&header[start..pos]);
    }
    fields
}

/// Lower-case field name (the bytes before the colon).
pub fn field_name(field: &[u8]) -> String {
    let end = field.iter().position(|&c| c == b':').unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).trim().to_ascii_lowercase()
}

/// The parts of Content-Type the checks need.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContentType {
    /// "type/subtype", lower case; "text/plain" when absent.
    pub mime: String,
    pub boundary: Option<String>,
    pub report_type: Option<String>,
}

/// Content-Type of an entity's header block, read by mail-parser.
pub fn content_type(header: &[u8]) -> ContentType {
    let mut buf = header.to_vec();
    buf.extend_from_slice(b"\r\n");
    let parsed = MessageParser::default().parse_headers(&buf);
    let ct = parsed.as_ref().and_then(|m| m.root_part().content_type());
    match ct {
        None => ContentType { mime: "text/plain".into(), ..Default::default() },
        Some(ct) => ContentType {
            mime: format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")).to_ascii_lowercase(),
            boundary: ct.attribute("boundary").map(str::to_string),
            report_type: ct.attribute("report-type").map(str::to_ascii_lowercase),
        },
    }
}

/// Value of the first field named `name` (unfolded, lossy UTF-8), if any.
pub fn header_value(header: &[u8], name: &str) -> Option<String> {
    let field = header_fields(header).into_iter().find(|f| field_name(f) == name)?;
    let colon = field.iter().position(|&c| c == b':')?;
    let v = String::from_utf8_lossy(&field[colon + 1..]).replace(['\r', '\n'], "");
    Some(v.trim().to_string())
}

/// A multipart body cut at its boundary's delimiter lines.
#[derive(Debug, Default)]
pub struct Multipart<'a> {
    pub parts: Vec<&'a [u8]>,
    pub closed: bool,
    /// Delimiter lines found after the closing delimiter.
    pub stray_delimiters: usize,
}

enum Delim {
    Open,
    Close,
}

fn delimiter(line: &[u8], boundary: &[u8]) -> Option<Delim> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    let blank = |s: &[u8]| s.iter().all(|&c| c == b' ' || c == b'\t');
    if blank(rest) {
        Some(Delim::Open)
    } else if rest.starts_with(b"--") && blank(&rest[2..]) {
        Some(Delim::Close)
    } else {
        None
    }
}

/// Cut `body` into parts as RFC 2046 says: the line ending before a delimiter belongs to
/// the delimiter. An unclosed last part runs to the end.
pub fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Multipart<'a> {
    let b = boundary.as_bytes();
    let mut out = Multipart::default();
    let mut part_start: Option<usize> = None;
    let mut pos = 0;
    for line in body.split_inclusive(|&c| c == b'\n') {
        let found = delimiter(line, b);
        if out.closed {
            out.stray_delimiters += usize::from(found.is_some());
        } else if let Some(kind) = found {
            if let Some(s) = part_start {
                out.parts.push(strip_eol(&body[s..pos]));
            }
            part_start = Some(pos + line.len());
            out.closed = matches!(kind, Delim::Close);
        }
        pos += line.len();
    }
    if let (Some(s), false) = (part_start, out.closed) {
        out.parts.push(&body[s.min(body.len())..]);
    }
    out
}

fn strip_eol(s: &[u8]) -> &[u8] {
    let s = s.strip_suffix(b"\n").unwrap_or(s);
    s.strip_suffix(b"\r").unwrap_or(s)
}

/// Everything that must hold of a rewrite: `output` is `original` with `m` applied.
pub fn check_rewrite(original: &[u8], m: &Modification, output: &[u8]) -> Check {
    if MessageParser::default().parse(output).is_none() {
        return Err("mail-parser cannot read the output".into());
    }
    check_edits(&m.header_edits)?;
    let (orig, out) = (split_entity(original), split_entity(output));
    check_headers(orig.header, out.header, &m.header_edits)?;
    if m.body.is_none() {
        return if orig.body == out.body { Ok(()) } else { Err("body changed though no new body was given".into()) };
    }
    let (oct, nct) = (content_type(orig.header), content_type(out.header));
    // Same type and boundary: parts were replaced in place; otherwise the body was wrapped.
    if oct.mime.starts_with("multipart/") && nct.mime == oct.mime && nct.boundary == oct.boundary {
        check_multipart_change(orig, out, &[], 0)
    } else {
        check_wrapped(orig, out, &nct)
    }
}

/// Header edits are single-line and name real fields.
fn check_edits(edits: &[HeaderEdit]) -> Check {
    for e in edits {
        let (name, value) = match e {
            HeaderEdit::Set { name, value } | HeaderEdit::Add { name, value } => (name, value.as_str()),
            HeaderEdit::Remove { name } => (name, ""),
        };
        let name_ok = !name.is_empty() && name.bytes().all(|c| c.is_ascii_graphic() && c != b':');
        if !name_ok {
            return Err(format!("invalid header name {name:?}"));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(format!("control character in header {name}: {value:?}"));
        }
        if name.len() + 2 + value.len() > MAX_LINE {
            return Err(format!("header {name} longer than {MAX_LINE} octets"));
        }
    }
    Ok(())
}

/// Every original field survives unless an edit names it; every new field is an edit.
fn check_headers(orig: &[u8], out: &[u8], edits: &[HeaderEdit]) -> Check {
    let edited: Vec<String> = edits
        .iter()
        .map(|e| match e {
            HeaderEdit::Set { name, .. } | HeaderEdit::Add { name, .. } | HeaderEdit::Remove { name } => {
                name.to_ascii_lowercase()
            }
        })
        .collect();
    let added: Vec<String> = edits
        .iter()
        .filter_map(|e| match e {
            HeaderEdit::Set { name, .. } | HeaderEdit::Add { name, .. } => Some(name.to_ascii_lowercase()),
            HeaderEdit::Remove { .. } => None,
        })
        .collect();
    // A last field without a line ending may gain one: compare without it.
    let mut unmatched = header_fields(orig);
    for f in header_fields(out) {
        if let Some(i) = unmatched.iter().position(|o| strip_eol(o) == strip_eol(f)) {
            unmatched.swap_remove(i);
        } else if !added.contains(&field_name(f)) {
            return Err(format!("header injection: {:?}", String::from_utf8_lossy(f)));
        }
    }
    match unmatched.iter().find(|f| !edited.contains(&field_name(f))) {
        Some(f) => Err(format!("original header lost or changed: {:?}", String::from_utf8_lossy(f))),
        None => Ok(()),
    }
}

/// A multipart kept its type: either one new part was put before the old ones, or exactly
/// one part changed: part 1 replaced by a new entity, or a multipart part changed the
/// same way further down (a report nested in multipart/mixed).
fn check_multipart_change(orig: Entity, out: Entity, outer: &[String], depth: usize) -> Check {
    let (oct, nct) = (content_type(orig.header), content_type(out.header));
    if nct.mime != oct.mime || nct.report_type != oct.report_type {
        return Err(format!("content type changed: {oct:?} -> {nct:?}"));
    }
    let (Some(ob), Some(nb)) = (oct.boundary.as_deref(), nct.boundary.as_deref()) else {
        return Err(format!("{} without boundary", nct.mime));
    };
    let (op, np) = (split_multipart(orig.body, ob), split_multipart(out.body, nb));
    if op.closed && !np.closed {
        return Err(format!("{}: closing delimiter lost", nct.mime));
    }
    let mut outer = outer.to_vec();
    outer.push(nb.to_string());
    if np.parts.len() == op.parts.len() + 1 && np.parts[1..] == op.parts[..] {
        return check_new_entity(np.parts[0], &outer, 1);
    }
    if np.parts.len() != op.parts.len() {
        return Err(format!("{}: {} parts became {}", nct.mime, op.parts.len(), np.parts.len()));
    }
    let changed: Vec<usize> = (0..op.parts.len()).filter(|&i| op.parts[i] != np.parts[i]).collect();
    match changed[..] {
        [] => Err(format!("{}: new body, yet every part is the same", nct.mime)),
        [0] if depth == 0 || !content_type(split_entity(op.parts[0]).header).mime.starts_with("multipart/") => {
            check_new_entity(np.parts[0], &outer, 1)
        }
        [k] if content_type(split_entity(op.parts[k]).header).mime.starts_with("multipart/") && depth < MAX_DEPTH => {
            check_multipart_change(split_entity(op.parts[k]), split_entity(np.parts[k]), &outer, depth + 1)
        }
        [k] => Err(format!("{}: part {} changed, and only part 1 may", nct.mime, k + 1)),
        _ => Err(format!("{}: parts {:?} changed, and only part 1 may", nct.mime, changed.iter().map(|k| k + 1).collect::<Vec<_>>())),
    }
}

/// Any other bounce is wrapped: multipart/mixed with the new part first and the old body,
/// byte for byte, second (with its own Content-Type and Content-Transfer-Encoding only).
fn check_wrapped(orig: Entity, out: Entity, nct: &ContentType) -> Check {
    if nct.mime != "multipart/mixed" {
        return Err(format!("body replaced, but the result is {} and not multipart/mixed", nct.mime));
    }
    let b = nct.boundary.as_deref().ok_or("multipart/mixed without boundary")?;
    check_boundary(b, &[])?;
    if contains(orig.body, format!("--{b}").as_bytes()) {
        return Err(format!("new boundary {b:?} occurs in the original body"));
    }
    let mp = split_multipart(out.body, b);
    if !mp.closed || mp.parts.len() != 2 || mp.stray_delimiters > 0 {
        return Err(format!("wrapped body: {} parts, closed {}", mp.parts.len(), mp.closed));
    }
    check_new_entity(mp.parts[0], &[b.to_string()], 1)?;
    let old = split_entity(mp.parts[1]);
    if old.body != orig.body {
        return Err("wrapped body: the original body is not byte-identical".into());
    }
    for f in header_fields(old.header) {
        if !header_fields(orig.header).contains(&f) || !matches!(field_name(f).as_str(), "content-type" | "content-transfer-encoding") {
            return Err(format!("wrapped body: unexpected header {:?}", String::from_utf8_lossy(f)));
        }
    }
    Ok(())
}

/// A part the engine generated: allowed headers only, balanced boundaries that appear
/// nowhere else, 7-bit where it says so, short lines, clean decoded text.
pub fn check_new_entity(raw: &[u8], outer: &[String], depth: usize) -> Check {
    if depth > MAX_DEPTH {
        return Err("generated part nested too deep".into());
    }
    let e = split_entity(raw);
    for f in header_fields(e.header) {
        let name = field_name(f);
        if depth > 0 && !PART_HEADERS.contains(&name.as_str()) {
            return Err(format!("unexpected header in a generated part: {:?}", String::from_utf8_lossy(f)));
        }
    }
    let ct = content_type(e.header);
    if ct.mime.starts_with("multipart/") {
        return check_new_multipart(e, &ct, outer, depth);
    }
    check_leaf(raw, e)
}

fn check_new_multipart(e: Entity, ct: &ContentType, outer: &[String], depth: usize) -> Check {
    let b = ct.boundary.as_deref().ok_or_else(|| format!("{} without boundary", ct.mime))?;
    check_boundary(b, outer)?;
    let mp = split_multipart(e.body, b);
    if !mp.closed || mp.parts.is_empty() || mp.stray_delimiters > 0 {
        return Err(format!("{} boundary {b:?} unbalanced", ct.mime));
    }
    let dash = format!("--{b}");
    let mut outer = outer.to_vec();
    outer.push(b.to_string());
    for p in &mp.parts {
        if contains(p, dash.as_bytes()) {
            return Err(format!("boundary {b:?} appears inside its own part"));
        }
        check_new_entity(p, &outer, depth + 1)?;
    }
    Ok(())
}

/// RFC 2046: 1-70 characters from a fixed set, and no boundary a prefix of an enclosing one.
fn check_boundary(b: &str, outer: &[String]) -> Check {
    let bchar = |c: char| c.is_ascii_alphanumeric() || "'()+_,-./:=? ".contains(c);
    if b.is_empty() || b.len() > 70 || !b.chars().all(bchar) || b.ends_with(' ') {
        return Err(format!("invalid boundary {b:?}"));
    }
    match outer.iter().find(|o| o.starts_with(b) || b.starts_with(o.as_str())) {
        Some(o) => Err(format!("boundary {b:?} clashes with enclosing boundary {o:?}")),
        None => Ok(()),
    }
}

fn check_leaf(raw: &[u8], e: Entity) -> Check {
    let cte = header_value(e.header, "content-transfer-encoding").unwrap_or_default().to_ascii_lowercase();
    if !matches!(cte.as_str(), "8bit" | "binary") && !e.body.is_ascii() {
        return Err(format!("8-bit bytes in a part declared {:?}", if cte.is_empty() { "7bit" } else { &cte }));
    }
    for line in raw.split_inclusive(|&c| c == b'\n') {
        let content = strip_eol(line);
        if content.len() > MAX_LINE {
            return Err(format!("generated line of {} octets", content.len()));
        }
        if content.contains(&b'\0') || content.contains(&b'\r') {
            return Err("NUL or bare CR in a generated part".into());
        }
    }
    let msg = MessageParser::default().parse(raw).ok_or("mail-parser cannot read a generated part")?;
    match &msg.root_part().body {
        PartType::Text(t) => clean_text(t),
        PartType::Html(h) => clean_text(h).and_then(|()| clean_html(h)),
        _ => Ok(()),
    }
}

/// Decoded text has no control characters but line endings and tabs.
fn clean_text(t: &str) -> Check {
    match t.chars().find(|&c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        Some(c) => Err(format!("control character {c:?} in generated text")),
        None => Ok(()),
    }
}

/// The templates carry no script: any found came from remote text.
fn clean_html(h: &str) -> Check {
    let lower = h.to_ascii_lowercase();
    // Escaped remote text may show "javascript:" as words; only live markup counts.
    for bad in ["<script", "<iframe", "<object", "<embed", "=\"javascript:", "='javascript:", "=javascript:"] {
        if lower.contains(bad) {
            return Err(format!("{bad} in generated HTML"));
        }
    }
    Ok(())
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Facts from the parser are clean strings: trimmed, single-line, no control characters.
pub fn check_bounce(b: &Bounce) -> Check {
    for (i, r) in b.recipients.iter().enumerate() {
        check_facts(r).map_err(|e| format!("recipient {}: {e}", i + 1))?;
    }
    let o = &b.original;
    let strings = [&b.reporting_mta, &o.from, &o.to, &o.subject, &o.message_id, &o.date, &o.content_language, &o.accept_language];
    strings.iter().filter_map(|s| s.as_deref()).try_for_each(clean_fact)
}

pub fn check_facts(r: &RecipientFacts) -> Check {
    let strings = [
        &r.address,
        &r.original_recipient,
        &r.action,
        &r.status,
        &r.diagnostic,
        &r.remote_mta,
        &r.command,
        &r.last_attempt,
        &r.will_retry_until,
    ];
    strings.iter().filter_map(|s| s.as_deref()).try_for_each(clean_fact)?;
    match r.reply_code {
        Some(c) if !(100..600).contains(&c) => Err(format!("reply code {c} out of range")),
        _ => Ok(()),
    }
}

fn clean_fact(s: &str) -> Check {
    if s.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!("control character in {s:?}"));
    }
    if s.trim() != s {
        return Err(format!("untrimmed {s:?}"));
    }
    Ok(())
}
