//! Transfer encodings for the parts and headers plainbounce writes.

/// The Content-Transfer-Encoding chosen for a generated text part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cte {
    SevenBit,
    QuotedPrintable,
}

impl Cte {
    pub fn as_str(self) -> &'static str {
        match self {
            Cte::SevenBit => "7bit",
            Cte::QuotedPrintable => "quoted-printable",
        }
    }
}

/// Longest line allowed in a 7bit part (RFC 5322), without the line break.
const MAX_LINE: usize = 998;
/// Longest encoded line in quoted-printable, without the line break (RFC 2045).
const QP_LINE: usize = 76;

/// Encode text for a MIME part with `eol` line breaks. Plain ASCII with short lines stays
/// readable as 7bit (so text-reading bounce parsers still find the diagnostic); anything
/// else becomes quoted-printable. Either way no line starts with "--", so the part can
/// never contain a boundary delimiter.
pub fn body(text: &str, eol: &str) -> (Cte, String) {
    let lines: Vec<&str> = text.lines().collect();
    let plain = text.is_ascii()
        && lines.iter().all(|l| l.len() <= MAX_LINE && !l.starts_with("--") && !l.contains('\r'));
    if plain {
        return (Cte::SevenBit, join_lines(&lines, eol));
    }
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for line in &lines {
        qp_line(line.strip_suffix('\r').unwrap_or(line), eol, &mut out);
        out.push_str(eol);
    }
    (Cte::QuotedPrintable, out)
}

fn join_lines(lines: &[&str], eol: &str) -> String {
    let mut out = String::new();
    for l in lines {
        out.push_str(l);
        out.push_str(eol);
    }
    out
}

/// One input line as quoted-printable, soft-broken at 76 characters. A '-' or '.' that
/// would start an output line is encoded, so no boundary or SMTP dot line can appear.
fn qp_line(line: &str, eol: &str, out: &mut String) {
    let bytes = line.as_bytes();
    let trailing_ws = bytes.len() - line.trim_end_matches([' ', '\t']).len();
    let mut col = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let safe = (b == b' ' || b == b'\t' || (33..=126).contains(&b) && b != b'=') && i < bytes.len() - trailing_ws;
        // Leave room for the soft break's '='.
        if col + if safe { 1 } else { 3 } > QP_LINE - 1 {
            out.push('=');
            out.push_str(eol);
            col = 0;
        }
        if safe && !(col == 0 && (b == b'-' || b == b'.')) {
            out.push(b as char);
            col += 1;
        } else {
            push_hex(out, b);
            col += 3;
        }
    }
}

fn push_hex(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('=');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 15)] as char);
}

/// A header value, as RFC 2047 encoded-words (Q encoding, UTF-8) when it is not plain
/// ASCII; each word is at most 75 characters.
pub fn header_value(value: &str) -> String {
    if value.is_ascii() {
        return value.to_string();
    }
    const PREFIX: &str = "=?UTF-8?Q?";
    const MAX_PAYLOAD: usize = 75 - PREFIX.len() - 2;
    let mut words = Vec::new();
    let mut word = String::new();
    for c in value.chars() {
        let mut enc = String::new();
        let mut buf = [0u8; 4];
        for &b in c.encode_utf8(&mut buf).as_bytes() {
            match b {
                b' ' => enc.push('_'),
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'!' | b'*' | b'+' | b'-' | b'/' => enc.push(b as char),
                _ => push_hex(&mut enc, b),
            }
        }
        if word.len() + enc.len() > MAX_PAYLOAD {
            words.push(format!("{PREFIX}{word}?="));
            word.clear();
        }
        word.push_str(&enc);
    }
    if !word.is_empty() {
        words.push(format!("{PREFIX}{word}?="));
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_qp(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let joined = s.replace("=\r\n", "").replace("=\n", "");
        let b = joined.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'=' {
                out.push(u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap(), 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn ascii_short_lines_stay_7bit() {
        let (cte, s) = body("Hello\nworld\n", "\r\n");
        assert_eq!(cte, Cte::SevenBit);
        assert_eq!(s, "Hello\r\nworld\r\n");
    }

    #[test]
    fn qp_round_trips_and_bounds_lines() {
        let text = format!("Grüße, {}\n--boundary-lookalike\n.\ntrailing space \n", "ä".repeat(60));
        let (cte, s) = body(&text, "\n");
        assert_eq!(cte, Cte::QuotedPrintable);
        for line in s.lines() {
            assert!(line.len() <= QP_LINE, "{line:?}");
            assert!(!line.starts_with('-') && !line.starts_with('.'), "{line:?}");
        }
        assert_eq!(String::from_utf8(decode_qp(&s)).unwrap(), text);
    }

    #[test]
    fn long_ascii_line_is_soft_broken() {
        let text = "x".repeat(1200) + "\n";
        let (cte, s) = body(&text, "\r\n");
        assert_eq!(cte, Cte::QuotedPrintable);
        assert!(s.split("\r\n").all(|l| l.len() <= QP_LINE));
        assert_eq!(decode_qp(&s.replace("\r\n", "\n")), text.as_bytes());
    }

    #[test]
    fn encoded_words() {
        assert_eq!(header_value("plain"), "plain");
        let v = header_value(&"Die Adresse gibt es nicht: ü ".repeat(5));
        assert!(v.split(' ').all(|w| w.len() <= 75 && w.starts_with("=?UTF-8?Q?") && w.ends_with("?=")));
        assert!(v.is_ascii());
    }
}
