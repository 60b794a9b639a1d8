//! Leaving the returned message's body out before the MIME parse. Bounce parsing reads
//! only the returned message's headers, but mail-parser parses and decodes all of it
//! (its attachments too): on bounces that return the whole message, most of the parse.

use memchr::memmem;
use regex::bytes::Regex;
use std::borrow::Cow;
use std::sync::LazyLock;

/// The Content-Type line of a part that holds a returned message.
static RETURNED_PART: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?im)^content-type:[ \t]*(?:\r?\n[ \t]+)?message/(?:rfc822|global)(?:[\s;]|$)").unwrap());

/// Below this size, looking for the part costs more than the parse it saves (callgrind,
/// on the corpus: bounces of a few kilobytes, their returned messages mostly headers).
const WORTH_TRIMMING: usize = 32 * 1024;

/// Header lines looked at above the Content-Type line for the part's boundary.
const MAX_PART_HEADERS: usize = 30;

/// What the MIME parser is given: large messages without their returned message's body.
pub(crate) fn for_parsing(raw: &[u8]) -> Cow<'_, [u8]> {
    if raw.len() < WORTH_TRIMMING {
        return Cow::Borrowed(raw);
    }
    without_returned_body(raw)
}

/// `raw` without the body of its first message/rfc822 (or message/global) part: the part's
/// headers, the returned message's headers and all from the next boundary line on stay,
/// at the same place. `raw` itself when there is no such part, or its bounds are not
/// plain to see (then mail-parser reads it all, as before).
pub(crate) fn without_returned_body(raw: &[u8]) -> Cow<'_, [u8]> {
    match returned_body(raw) {
        Some((start, end)) => {
            let mut out = Vec::with_capacity(raw.len() - (end - start));
            out.extend_from_slice(&raw[..start]);
            out.extend_from_slice(&raw[end..]);
            Cow::Owned(out)
        }
        None => Cow::Borrowed(raw),
    }
}

/// Where the returned message's body starts, and where the line break before the next
/// boundary line of the enclosing multipart is.
fn returned_body(raw: &[u8]) -> Option<(usize, usize)> {
    let part_start = returned_part(raw)?;
    let (delimiter, headers_start) = opening_delimiter(raw, part_start)?;
    let part_headers_end = after_blank_line(raw, part_start)?;
    if !identity_encoding(&raw[headers_start..part_headers_end]) {
        return None;
    }
    if !declared(&raw[..headers_start], &delimiter[2..]) {
        return None;
    }
    // The returned message's own headers end at the next blank line.
    let body_start = after_blank_line(raw, part_headers_end - 1)?;
    // No boundary after it: the message was cut short (the milter reads only the head of
    // a large one), and all that follows is the returned message's body.
    let Some(next) = next_delimiter(raw, body_start, delimiter) else {
        return (raw.len() > body_start).then_some((body_start, raw.len()));
    };
    let line_break = if raw[..next].ends_with(b"\r\n") { 2 } else { 1 };
    let end = next - line_break;
    (end > body_start).then_some((body_start, end))
}

/// Where the first `RETURNED_PART` match starts: it is tried only on lines that begin
/// with "Content-Type:". Running the regex over a large message took ~9 instructions a
/// byte (0.6 M for a 64 KB HTML notice), more than trimming saved on one like it.
fn returned_part(raw: &[u8]) -> Option<usize> {
    const NAME: &[u8] = b"content-type:";
    let line_starts = std::iter::once(0).chain(memchr::memchr_iter(b'\n', raw).map(|i| i + 1));
    line_starts
        .filter(|&at| raw.get(at..at + NAME.len()).is_some_and(|name| name.eq_ignore_ascii_case(NAME)))
        .find(|&at| {
            // The field and the line after it, which may continue it.
            let next = memchr::memchr(b'\n', &raw[at..]).map_or(raw.len(), |i| at + i + 1);
            let to = memchr::memchr(b'\n', &raw[next..]).map_or(raw.len(), |i| next + i + 1);
            RETURNED_PART.find(&raw[at..to]).is_some_and(|m| m.start() == 0)
        })
}

/// Whether `boundary` is declared (`boundary=...`) in `before`: then the line that
/// seemed to open the part is a real boundary line, not text that looks like one.
fn declared(before: &[u8], boundary: &[u8]) -> bool {
    memmem::find_iter(before, boundary).any(|i| {
        let name = before[..i].strip_suffix(b"\"").unwrap_or(&before[..i]);
        name.len() >= 9 && name[name.len() - 9..].eq_ignore_ascii_case(b"boundary=")
    })
}

/// The boundary line (`--boundary`, trailing blanks removed) that opens the part whose
/// header line starts at `line_start`, and where the part's headers start; `None` when a
/// line above it is neither a header nor a boundary line.
fn opening_delimiter(raw: &[u8], line_start: usize) -> Option<(&[u8], usize)> {
    let mut start = line_start;
    for _ in 0..MAX_PART_HEADERS {
        let end = start.checked_sub(1)?; // the line break that ends the line above
        let above = memchr::memrchr(b'\n', &raw[..end]).map_or(0, |i| i + 1);
        let line = raw[above..end].trim_ascii_end();
        if line.len() > 2 && line.starts_with(b"--") {
            return Some((line, start));
        }
        let header = line.first().is_some_and(|&b| b == b' ' || b == b'\t') || is_header_line(line);
        if !header {
            return None;
        }
        start = above;
    }
    None
}

fn is_header_line(line: &[u8]) -> bool {
    let Some(colon) = memchr::memchr(b':', line) else { return false };
    colon > 0 && line[..colon].iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The offset just after the first blank line that follows `from` (which must be on or
/// before the line break that precedes it).
fn after_blank_line(raw: &[u8], from: usize) -> Option<usize> {
    let rest = &raw[from..];
    let lf = memmem::find(rest, b"\n\n").map(|i| i + 2);
    let crlf = memmem::find(rest, b"\n\r\n").map(|i| i + 3);
    let at = match (lf, crlf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    Some(from + at)
}

/// No Content-Transfer-Encoding, or one that leaves the bytes as they are: an encoded
/// message part (not allowed, but sent) needs decoding before its headers can be read.
fn identity_encoding(headers: &[u8]) -> bool {
    headers.split(|&b| b == b'\n').all(|line| {
        let Some(value) = strip_prefix_ignore_case(line, b"content-transfer-encoding:") else { return true };
        let value = value.trim_ascii().to_ascii_lowercase();
        matches!(value.as_slice(), b"7bit" | b"8bit" | b"binary")
    })
}

fn strip_prefix_ignore_case<'a>(line: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = line.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &line[prefix.len()..])
}

/// The start of the next line, at or after `from`, that is `delimiter` (the close
/// delimiter `delimiter--` included, transport padding allowed).
fn next_delimiter(raw: &[u8], from: usize, delimiter: &[u8]) -> Option<usize> {
    let mut needle = Vec::with_capacity(delimiter.len() + 1);
    needle.push(b'\n');
    needle.extend_from_slice(delimiter);
    let finder = memmem::Finder::new(&needle);
    let mut at = from - 1; // `from` starts a line: the break before it may start the needle
    while let Some(i) = finder.find(&raw[at..]) {
        let line = at + i + 1;
        let after = raw.get(line + delimiter.len()).copied();
        // "--b" must not be taken for the start of "--bb".
        if matches!(after, None | Some(b'-' | b'\r' | b'\n' | b' ' | b'\t')) {
            return Some(line);
        }
        at = line;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "From: MAILER-DAEMON@example.org\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nIt failed.\r\n\r\n--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; example.org\r\n\r\nFinal-Recipient: rfc822; a@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--b1\r\nContent-Description: Undelivered Message\r\nContent-Type: message/rfc822\r\n\r\nFrom: s@example.org\r\nSubject: hello\r\nContent-Type: multipart/mixed; boundary=\"b1b\"\r\n\r\n--b1b\r\nContent-Type: text/plain\r\n\r\nThe body.\r\n--b1b--\r\n\r\n--b1--\r\n";

    #[test]
    fn the_returned_body_goes_and_all_else_stays() {
        let out = without_returned_body(REPORT.as_bytes());
        let out = std::str::from_utf8(&out).unwrap();
        let expected = REPORT.replace("--b1b\r\nContent-Type: text/plain\r\n\r\nThe body.\r\n--b1b--\r\n", "");
        assert_eq!(out, expected);
        assert!(out.contains("Subject: hello\r\n") && out.ends_with("\r\n\r\n--b1--\r\n"));
    }

    #[test]
    fn bare_line_feeds_work_too() {
        let lf = REPORT.replace("\r\n", "\n");
        let out = without_returned_body(lf.as_bytes());
        assert_eq!(std::str::from_utf8(&out).unwrap(), lf.replace("--b1b\nContent-Type: text/plain\n\nThe body.\n--b1b--\n", ""));
    }

    #[test]
    fn a_message_cut_short_loses_all_after_the_returned_headers() {
        let head = &REPORT[..REPORT.find("The body.").unwrap()];
        let out = without_returned_body(head.as_bytes());
        assert_eq!(std::str::from_utf8(&out).unwrap(), &REPORT[..REPORT.find("--b1b\r\n").unwrap()]);
        // "--b1x" is not the boundary "--b1": all after the headers is the returned body.
        let prefix_only = REPORT.replace("\r\n--b1--\r\n", "\r\n--b1x--\r\n");
        assert_eq!(std::str::from_utf8(&without_returned_body(prefix_only.as_bytes())).unwrap(), &REPORT[..REPORT.find("--b1b\r\n").unwrap()]);
    }

    #[test]
    fn unclear_bounds_leave_the_message_whole() {
        let encoded = REPORT.replace("Content-Type: message/rfc822\r\n", "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n");
        let quoted = REPORT.replace("--b1\r\nContent-Description", "\r\nContent-Description");
        let undeclared = REPORT.replace("boundary=\"b1\"", "boundary=\"b2\"");
        for case in [encoded, quoted, undeclared] {
            assert!(matches!(without_returned_body(case.as_bytes()), Cow::Borrowed(_)), "{case}");
        }
        assert!(matches!(without_returned_body(b"Subject: no parts\r\n\r\nbody\r\n"), Cow::Borrowed(_)));
    }

    #[test]
    fn the_line_scan_finds_what_the_regex_finds() {
        let by_regex = |raw: &[u8]| RETURNED_PART.find(raw).map(|m| m.start());
        let folded = REPORT.replace("Content-Type: message/rfc822\r\n", "Content-type:\r\n\tMESSAGE/Global; x=1\r\n");
        let text_first = REPORT.replace("It failed.", "It failed: see the message/rfc822 part.\r\nContent-Type: message/rfc822x");
        let none = REPORT.replace("message/rfc822", "text/rfc822-headers");
        for case in [REPORT.to_string(), folded, text_first, none] {
            assert_eq!(returned_part(case.as_bytes()), by_regex(case.as_bytes()), "{case}");
        }
        let mut found = 0;
        for (path, raw) in corpus() {
            let at = returned_part(&raw);
            assert_eq!(at, by_regex(&raw), "{}", path.display());
            found += usize::from(at.is_some());
        }
        assert!(found >= 100, "returned parts found in only {found} corpus messages");
    }

    #[test]
    fn the_corpus_parses_the_same_without_the_returned_bodies() {
        use super::super::detect;
        let mut trimmed = [0, 0]; // whole, cut short
        for (path, raw) in corpus() {
            // Whole, and cut short as the milter's head of a large message is.
            for (cut, raw) in [&raw[..], &raw[..raw.len() * 3 / 4], &raw[..raw.len() * 9 / 10]].into_iter().enumerate() {
                let cut = cut.min(1);
                let short = without_returned_body(raw);
                if let Cow::Owned(_) = short {
                    trimmed[cut] += 1;
                }
                assert_eq!(detect::detect(&short), detect::detect(raw), "{} ({} bytes)", path.display(), raw.len());
            }
        }
        assert!(trimmed[0] >= 100 && trimmed[1] >= 20, "returned bodies left out (whole, cut short): {trimmed:?}");
    }

    /// The corpus's bounces and non-bounces, with their paths.
    fn corpus() -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let emails = crate::eval::locate_corpus().expect("corpus").join("emails");
        let dirs = [emails.clone(), emails.join("negatives")];
        let files = dirs.iter().flat_map(|d| std::fs::read_dir(d).unwrap()).map(|e| e.unwrap().path());
        files.filter(|p| p.is_file()).map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect()
    }
}
