//! Untrusted text from remote servers, made safe to show: no control characters, no
//! bidirectional overrides, bounded length. HTML escaping is the template engine's job.

/// Longest text kept from a remote server (characters); a diagnostic is never longer in
/// practice, and a hostile one cannot blow up the rewritten message.
pub const MAX_TEXT: usize = 4000;

/// Remove control characters (C0 incl. NUL, CR, LF, ESC; DEL; C1), bidi overrides and
/// isolates, and line/paragraph separators. Whitespace controls become a space, so words
/// stay apart; runs of spaces collapse; the result is trimmed and at most `max` chars.
pub fn text(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    let mut count = 0;
    let mut pending_space = false;
    for c in s.chars() {
        if c.is_whitespace() || is_whitespace_control(c) {
            pending_space = !out.is_empty();
            continue;
        }
        if is_unsafe(c) {
            continue;
        }
        if count >= max {
            out.push('…');
            break;
        }
        if pending_space {
            out.push(' ');
            count += 1;
            pending_space = false;
        }
        out.push(c);
        count += 1;
    }
    out
}

/// Untrusted text from an optional field: sanitised, `None` when nothing is left.
pub fn opt(s: Option<&str>) -> Option<String> {
    s.map(|s| text(s, MAX_TEXT)).filter(|s| !s.is_empty())
}

fn is_whitespace_control(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\x0b' | '\x0c' | '\u{2028}' | '\u{2029}' | '\u{85}')
}

/// Characters that must never reach a header or a rendered part.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200e}' | '\u{200f}' | '\u{061c}'      // direction marks
            | '\u{202a}'..='\u{202e}'                 // embeddings and overrides
            | '\u{2066}'..='\u{2069}'                 // isolates
            | '\u{feff}')                             // BOM / zero-width no-break space
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_controls_and_bidi() {
        assert_eq!(text("550 user\r\nBcc: x@y\0 \x1b[31mred", 100), "550 user Bcc: x@y [31mred");
        assert_eq!(text("a\u{202e}gnp.exe\u{2066}b", 100), "agnp.exeb");
        assert_eq!(text("  lots   of \t space  ", 100), "lots of space");
        assert_eq!(text("\u{9b}x\u{7f}y", 100), "xy");
    }

    #[test]
    fn bounds_length() {
        let long = "x".repeat(50);
        assert_eq!(text(&long, 10), format!("{}…", "x".repeat(10)));
        assert_eq!(opt(Some(" \r\n ")), None);
        assert_eq!(opt(Some("ok")), Some("ok".into()));
    }
}
