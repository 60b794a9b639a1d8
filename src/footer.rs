//! Footers for Postfix's own SMTP rejections (`smtpd_reject_footer_maps`).
//!
//! Postfix looks a footer up by the complete 4xx/5xx reply it is about to send and
//! appends the result as a template: `\c` at the very start continues the reply's last
//! line, `\n` starts a new line (Postfix repeats the reply code and enhanced status code
//! there), and `$name` is expanded (`$$` is a literal dollar). Postfix sends the result
//! as is, so a footer must be plain ASCII without control characters, and each line must
//! stay within SMTP's 512-octet limit (RFC 5321 4.5.3.1.5, CRLF included).

pub mod regex;
pub mod table;

use crate::classify;
use crate::config::{Config, FooterStyle};
use crate::kb::{Evidence, KnowledgeBase, Rule, Texts};
use anyhow::Result;
use std::collections::HashMap;

/// The map name Postfix sends (`socketmap:inet:127.0.0.1:PORT:footer`).
pub const MAP_NAME: &str = "footer";

/// Longest reply line SMTP allows, without the closing CRLF.
pub const MAX_LINE: usize = 512 - 2;

/// Longest line prefix Postfix puts before a footer line: "550-5.123.123 ".
const MAX_PREFIX: usize = 14;

/// What the map says about one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A footer template for Postfix.
    Footer(String),
    /// Nothing to add.
    NotFound,
    /// The map name is not one this server answers.
    UnknownMap,
}

/// The knowledge base with its footer texts prepared for every cause and language.
pub struct Footers {
    kb: KnowledgeBase,
    lang: String,
    /// Sanitised footer text by (cause id, language).
    texts: HashMap<(String, String), String>,
    /// Languages with at least one translation, plus "en".
    languages: Vec<String>,
}

impl Footers {
    pub fn new(kb: KnowledgeBase, lang: &str, style: FooterStyle) -> Footers {
        let mut languages = vec!["en".to_string()];
        for c in kb.causes() {
            for (l, _) in &c.translations {
                let l = l.to_ascii_lowercase();
                if !languages.contains(&l) {
                    languages.push(l);
                }
            }
        }
        let mut texts = HashMap::new();
        for c in kb.causes() {
            for l in &languages {
                texts.insert((c.id.clone(), l.clone()), footer_text(c.texts(l), style));
            }
        }
        Footers { kb, lang: lang.to_ascii_lowercase(), texts, languages }
    }

    /// Footers from the configuration's knowledge base and `[footer]` settings.
    pub fn from_config(config: &Config) -> Result<Footers> {
        let kb = KnowledgeBase::with_files(&config.kb_files)?;
        Ok(Footers::new(kb, &config.footer.lang, config.footer.style))
    }

    pub fn kb(&self) -> &KnowledgeBase {
        &self.kb
    }

    /// Languages a map name can ask for (`footer-de`).
    pub fn languages(&self) -> &[String] {
        &self.languages
    }

    /// Answer a socketmap request: map `footer` (configured language) or `footer-LANG`.
    pub fn lookup(&self, map: &str, key: &str) -> Answer {
        let Some(lang) = self.map_language(map) else {
            return Answer::UnknownMap;
        };
        match self.footer_for_reply(key, lang) {
            Some(f) => Answer::Footer(f),
            None => Answer::NotFound,
        }
    }

    fn map_language<'a>(&'a self, map: &'a str) -> Option<&'a str> {
        if map == MAP_NAME {
            return Some(&self.lang);
        }
        let lang = map.strip_prefix(MAP_NAME)?.strip_prefix('-')?;
        self.languages.iter().find(|l| l.eq_ignore_ascii_case(lang)).map(String::as_str)
    }

    /// The footer template for a complete Postfix reply, or `None` when the knowledge
    /// base has nothing specific to say about it.
    pub fn footer_for_reply(&self, reply: &str, lang: &str) -> Option<String> {
        let shape = ReplyShape::of(reply)?;
        // Postfix evaluates its restrictions at RCPT TO (smtpd_delay_reject = yes), and the
        // reply goes to the client that is sending: the "smtpd" context.
        let e = classify::explain_reply_to(&self.kb, reply, "RCPT", Some(SMTPD_CONTEXT));
        if !e.rule.is_some_and(gives_footer) {
            return None;
        }
        let text = self.text(&e.cause.id, lang)?;
        Some(layout(text, &shape, Escape::Socketmap))
    }

    /// The prepared footer text of a cause (plain ASCII, not yet laid out); English
    /// when the knowledge base has no texts in `lang`.
    pub fn text(&self, cause: &str, lang: &str) -> Option<&str> {
        let get = |l: &str| self.texts.get(&(cause.to_string(), l.to_string()));
        let t = get(&lang.to_ascii_lowercase()).or_else(|| get("en"))?;
        (!t.is_empty()).then_some(t.as_str())
    }
}

/// The knowledge base's `format` for a server's own reply to the client that is sending
/// (rules may word a refusal for that person: "log in first" rather than "wrong server").
pub const SMTPD_CONTEXT: &str = "smtpd";

/// Whether a winning rule is specific enough to be worth a footer. A bare reply code
/// (550, 554 ...) says no more than the reply itself, and neither does a status pattern
/// without a definite subject ("5.0.0" other/undefined, "5.*.*"), so those get none.
pub fn gives_footer(rule: &Rule) -> bool {
    match rule.evidence() {
        Evidence::Text | Evidence::Context => true,
        Evidence::StatusCode => {
            let subject = rule.status.as_deref().and_then(|s| s.split('.').nth(1));
            !matches!(subject, None | Some("0" | "*" | "x"))
        }
        Evidence::GenericStatus | Evidence::ReplyCode => false,
    }
}

/// The plain footer sentence(s) for a cause: headline and remedy, plus the explanation
/// in the "full" style. ASCII only, single spaces, no `\` (Postfix template escapes).
pub fn footer_text(t: &Texts, style: FooterStyle) -> String {
    let mut parts = vec![sentence(&t.title)];
    if style == FooterStyle::Full {
        parts.push(sentence(&t.explanation));
    }
    parts.push(sentence(&t.remedy));
    let joined = parts.into_iter().filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" ");
    ascii_safe(&joined)
}

/// Trimmed, with a full stop unless it already ends a sentence.
fn sentence(s: &str) -> String {
    let s = s.trim();
    if s.is_empty() || s.ends_with(['.', '!', '?']) {
        s.to_string()
    } else {
        format!("{s}.")
    }
}

/// Plain printable ASCII with single spaces: common accented letters and typographic
/// punctuation are transliterated, other non-ASCII characters and control characters
/// dropped, and backslashes (Postfix's `\n`/`\c` escapes) replaced by `/`.
pub fn ascii_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push('/'),
            c if c.is_ascii_graphic() || c == ' ' => out.push(c),
            c if c.is_whitespace() || c.is_control() => out.push(' '),
            c => out.push_str(transliterate(c)),
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// ASCII for the non-ASCII characters the built-in languages (de, fr, es) use.
#[rustfmt::skip]
fn transliterate(c: char) -> &'static str {
    match c {
        'ä' => "ae", 'ö' => "oe", 'ü' => "ue", 'Ä' => "Ae", 'Ö' => "Oe", 'Ü' => "Ue", 'ß' => "ss",
        'à' | 'á' | 'â' | 'ã' | 'å' => "a", 'À' | 'Á' | 'Â' | 'Ã' | 'Å' => "A",
        'æ' => "ae", 'Æ' => "AE", 'œ' => "oe", 'Œ' => "OE", 'ç' => "c", 'Ç' => "C",
        'è' | 'é' | 'ê' | 'ë' => "e", 'È' | 'É' | 'Ê' | 'Ë' => "E",
        'ì' | 'í' | 'î' | 'ï' => "i", 'Ì' | 'Í' | 'Î' | 'Ï' => "I",
        'ñ' => "n", 'Ñ' => "N",
        'ò' | 'ó' | 'ô' | 'õ' | 'ø' => "o", 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ø' => "O",
        'ù' | 'ú' | 'û' => "u", 'Ù' | 'Ú' | 'Û' => "U", 'ý' | 'ÿ' => "y", 'Ý' => "Y",
        '‘' | '’' | '‚' | '′' => "'",
        '“' | '”' | '„' | '«' | '»' | '″' => "\"",
        '‹' => "<", '›' => ">",
        '–' | '—' | '‐' | '‑' | '−' => "-",
        '…' => "...", '€' => "EUR", '©' => "(c)", '®' => "(R)", '™' => "(TM)", '°' => " degrees",
        '\u{a0}' | '\u{2009}' | '\u{202f}' => " ",
        _ => "",
    }
}

/// How `$` must be written for the consumer of the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Postfix expands `$name` once: `$$` is a literal `$`.
    Socketmap,
    /// pcre:/regexp: tables expand `$1` first, then Postfix expands `$name`: `$$$$`.
    Table,
}

fn escape_dollars(s: &str, how: Escape) -> String {
    s.replace('$', if how == Escape::Socketmap { "$$" } else { "$$$$" })
}

/// What Postfix will put before the footer, known from the reply text (the lookup key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyShape {
    /// Octets of the reply's last line (without CRLF).
    pub last_line: usize,
    /// Octets of the prefix Postfix writes on each new footer line: "554-5.7.1 ".
    pub prefix: usize,
    /// Whether the last line already ends a sentence.
    pub ends_sentence: bool,
}

impl ReplyShape {
    /// The shape of a reply the way Postfix's smtp_reply_footer() sees it; `None` when
    /// some line does not start with a three-digit code and a space or dash (Postfix
    /// then adds no footer either).
    pub fn of(reply: &str) -> Option<ReplyShape> {
        let reply = reply.strip_suffix("\r\n").unwrap_or(reply);
        let mut last = "";
        for line in reply.split("\r\n") {
            let b = line.as_bytes();
            if b.len() < 4 || !b[..3].iter().all(u8::is_ascii_digit) || !matches!(b[3], b' ' | b'-') {
                return None;
            }
            last = line;
        }
        let dsn = dsn_len(&last[4..]);
        let prefix = 4 + if dsn > 0 { dsn + 1 } else { 0 };
        Some(ReplyShape { last_line: last.len(), prefix, ends_sentence: last.trim_end().ends_with(['.', '!', '?']) })
    }
}

/// Length of an enhanced status code at the start of `s` ("5.7.1 ..." → 5), as
/// Postfix's dsn_valid() counts it: class 2/4/5, 1-3 digits, 1-3 digits, then end or space.
fn dsn_len(s: &str) -> usize {
    let b = s.as_bytes();
    if b.len() < 2 || !matches!(b[0], b'2' | b'4' | b'5') || b[1] != b'.' {
        return 0;
    }
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let d2 = digits(2);
    if !(1..=3).contains(&d2) || b.get(2 + d2) != Some(&b'.') {
        return 0;
    }
    let start3 = 3 + d2;
    let d3 = digits(start3);
    let end = start3 + d3;
    if !(1..=3).contains(&d3) || b.get(end).is_some_and(|c| !c.is_ascii_whitespace()) {
        return 0;
    }
    end
}

/// Lay a footer text out as a Postfix template for a reply of the given shape: on the
/// reply's last line (`\c`) when it fits there whole, otherwise on new lines (`\n`)
/// wrapped so that every line, prefix included, stays within `MAX_LINE`.
pub fn layout(text: &str, shape: &ReplyShape, how: Escape) -> String {
    let sep = if shape.ends_sentence { " " } else { ". " };
    if shape.last_line + sep.len() + text.len() <= MAX_LINE {
        return format!("\\c{sep}{}", escape_dollars(text, how));
    }
    wrap(text, MAX_LINE - shape.prefix).iter().map(|l| escape_dollars(l, how)).collect::<Vec<_>>().join("\\n")
}

/// Layout for a static table, where the reply is not known: always on new lines, wrapped
/// for the longest prefix Postfix can write.
pub fn layout_unknown_reply(text: &str) -> String {
    wrap(text, MAX_LINE - MAX_PREFIX).iter().map(|l| escape_dollars(l, Escape::Table)).collect::<Vec<_>>().join("\\n")
}

/// Greedy word wrap to `width` octets (ASCII input); over-long words are cut.
/// Widths count `$` once: escaping doubles it in the template, not on the wire.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word = word;
        while word.len() > width {
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            let (head, tail) = word.split_at(width);
            lines.push(head.to_string());
            word = tail;
        }
        if word.is_empty() {
            continue;
        }
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_lengths() {
        assert_eq!(dsn_len("5.7.1 <bob>: Relay"), 5);
        assert_eq!(dsn_len("4.7.27"), 6);
        assert_eq!(dsn_len("5.7.1234 x"), 0);
        assert_eq!(dsn_len("Relay access denied"), 0);
        assert_eq!(dsn_len("5.7.1:"), 0);
    }

    #[test]
    fn shapes() {
        let s = ReplyShape::of("554 5.7.1 <bob@example.net>: Relay access denied").unwrap();
        assert_eq!((s.last_line, s.prefix, s.ends_sentence), (48, 10, false));
        let s = ReplyShape::of("550-first line\r\n550 last.").unwrap();
        assert_eq!((s.last_line, s.prefix, s.ends_sentence), (9, 4, true));
        assert!(ReplyShape::of("hello").is_none());
        assert!(ReplyShape::of("550-ok\r\nbroken").is_none());
    }

    #[test]
    fn ascii() {
        assert_eq!(ascii_safe("Größe \u{201e}zu groß\u{201c} – café\tok\r\n\\n"), "Groesse \"zu gross\" - cafe ok /n");
        assert_eq!(ascii_safe("a\u{7}b 日本 c"), "a b c");
    }

    #[test]
    fn wraps_within_width() {
        let text = "aaa bbb ccc ddddddddddd e";
        assert_eq!(wrap(text, 7), vec!["aaa bbb", "ccc", "ddddddd", "dddd e"]);
        assert!(wrap(text, 7).iter().all(|l| l.len() <= 7));
    }

    #[test]
    fn layout_continues_or_breaks() {
        let short = ReplyShape { last_line: 40, prefix: 10, ends_sentence: false };
        assert_eq!(layout("Log in. Costs $5.", &short, Escape::Socketmap), "\\c. Log in. Costs $$5.");
        let long = ReplyShape { last_line: 505, prefix: 10, ends_sentence: true };
        assert_eq!(layout("Log in.", &long, Escape::Socketmap), "Log in.");
        let text = "word ".repeat(300);
        let t = layout(&text, &long, Escape::Socketmap);
        assert!(!t.starts_with("\\c"));
        assert!(t.split("\\n").all(|l| l.len() + 10 <= MAX_LINE), "{t}");
        assert_eq!(layout_unknown_reply("$1"), "$$$$1");
    }
}
