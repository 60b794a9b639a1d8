//! E-mail addresses as bounces write them: in DSN fields (`rfc822; <a@b>`,
//! `utf-8; a@b\x{E9}`), in angle brackets, quoted, or bare inside free text.

use regex::Regex;
use std::sync::LazyLock;

/// An address in free text: dot-atom or quoted local part, non-ASCII allowed (RFC 6531),
/// domain labels that start and end with a letter or digit (so a sentence's final dot
/// is not taken). Non-ASCII is any character above U+007F: cheaper to match than Unicode
/// letter classes, and no less right for picking addresses out of text. Its classes hold
/// both cases already, so `(?-i:...)` changes nothing it matches; it spares patterns that
/// embed it under `(?i)` the case folding of the whole non-ASCII range (25 ms each to compile).
pub(crate) const ADDR_PATTERN: &str = r#"(?-i:(?:"[^"\s<>]+"|[A-Za-z0-9!\#$%&'*+/=?^_`{|}~.\x{80}-\x{10FFFF}-]+)@[A-Za-z0-9\x{80}-\x{10FFFF}](?:[A-Za-z0-9\x{80}-\x{10FFFF}-]*[A-Za-z0-9\x{80}-\x{10FFFF}])?(?:\.[A-Za-z0-9\x{80}-\x{10FFFF}](?:[A-Za-z0-9\x{80}-\x{10FFFF}-]*[A-Za-z0-9\x{80}-\x{10FFFF}])?)*)"#;

pub(crate) static ADDRESS: LazyLock<Regex> = LazyLock::new(|| Regex::new(ADDR_PATTERN).unwrap());

/// An address in angle brackets.
pub(crate) static ANGLED: LazyLock<Regex> = LazyLock::new(|| Regex::new(&format!("<({ADDR_PATTERN})>")).unwrap());

/// A whole value that is exactly one address (with the usual decorations).
static WHOLE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r#"^(?:mailto:)?<?\s*({ADDR_PATTERN})\s*>?$"#)).unwrap());

/// The address value of a DSN recipient field without its type:
/// `rfc822; <Kijitora@Example.JP>` → `Kijitora@Example.JP`. `None` when the value is not an
/// address (a file name, a pipe, `@host` only, ...).
pub(crate) fn from_field(value: &str) -> Option<String> {
    let (kind, rest) = match value.split_once(';') {
        Some((k, r)) if is_type_token(k) => (k.trim(), r),
        _ => ("", value),
    };
    let rest = rest.trim();
    let decoded;
    let rest = if kind.to_ascii_lowercase().starts_with("utf-8") || rest.contains("\\x{") {
        decoded = decode_unitext(rest);
        decoded.as_str()
    } else {
        rest
    };
    whole(rest)
}

/// `a@b`, `<a@b>`, `mailto:a@b` → `a@b`; anything else → `None`.
pub(crate) fn whole(s: &str) -> Option<String> {
    let s = s.trim().trim_end_matches([':', ',', ';']).trim();
    WHOLE.captures(s).map(|c| c[1].trim_matches('.').to_string()).filter(|a| plausible(a))
}

/// The first address in a text.
pub(crate) fn first_in(s: &str) -> Option<String> {
    ADDRESS.find_iter(s).map(|m| m.as_str().trim_matches('.').to_string()).find(|a| plausible(a))
}

/// Rules out strings the pattern accepts but no one would call an address.
fn plausible(a: &str) -> bool {
    match a.rsplit_once('@') {
        Some((local, domain)) => !local.is_empty() && !domain.is_empty() && !local.starts_with('.') && local.len() <= 128 && domain.len() <= 255,
        None => false,
    }
}

fn is_type_token(s: &str) -> bool {
    let s = s.trim();
    !s.is_empty() && s.len() <= 24 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// RFC 6533 `utf-8-addr-unitext`/`xtext`: `\x{HEX}` stands for one character.
pub(crate) fn decode_unitext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("\\x{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 3..];
        let decoded = after.find('}').and_then(|j| {
            let c = u32::from_str_radix(&after[..j], 16).ok().and_then(char::from_u32)?;
            Some((c, j))
        });
        match decoded {
            Some((c, j)) => {
                out.push(c);
                rest = &after[j + 1..];
            }
            None => {
                out.push_str("\\x{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Case-insensitive address comparison (the local part is case-sensitive in theory,
/// never in practice).
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.trim_matches(['<', '>']).eq_ignore_ascii_case(b.trim_matches(['<', '>']))
        || a.to_lowercase() == b.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_values() {
        assert_eq!(from_field("rfc822; kijitora@example.jp").as_deref(), Some("kijitora@example.jp"));
        assert_eq!(from_field("RFC822; <kijitora@example.org>").as_deref(), Some("kijitora@example.org"));
        assert_eq!(from_field("rfc822;\"neko..nyaan\"@example.org").as_deref(), Some("\"neko..nyaan\"@example.org"));
        assert_eq!(from_field("utf-8; j\\x{F6}rg@b\\x{FC}cher.example").as_deref(), Some("jörg@bücher.example"));
        assert_eq!(from_field("RFC822; @mx.example.org"), None);
        assert_eq!(from_field("rfc822;/mail/spool/x/cat"), None);
        assert_eq!(from_field("<kijitora@example.org>").as_deref(), Some("kijitora@example.org"));
    }

    #[test]
    fn free_text() {
        assert_eq!(first_in("errors: kijitora@nyaan.example.org. Reason:").as_deref(), Some("kijitora@nyaan.example.org"));
        assert_eq!(whole("<kijitora@example.jp>:").as_deref(), Some("kijitora@example.jp"));
        assert_eq!(whole("kijitora@mailhub0").as_deref(), Some("kijitora@mailhub0"));
        assert_eq!(whole("save to /var/mail/x"), None);
        assert!(same("Kijitora@Example.JP", "kijitora@example.jp"));
    }
}
