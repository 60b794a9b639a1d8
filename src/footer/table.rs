//! A static `pcre:` or `regexp:` table for `smtpd_reject_footer_maps`, built from the
//! same knowledge base and texts as the socketmap.
//!
//! Postfix returns the first entry that matches, while the knowledge base picks the most
//! specific matching rule. Writing the entries in the knowledge base's order of
//! precedence makes the two agree: the first entry that matches is the best rule that
//! matches. A rule's constraints on the reply code or enhanced status code become an
//! `if` line around its text pattern (Postfix's reply starts with both). A rule that
//! wins but gives no footer (e.g. "5.*.*") must also stop the search, as the socketmap
//! answers NOTFOUND then: it becomes `if !/its codes/` around all entries after it.

use super::regex::{convert, Dialect};
use super::{gives_footer, layout_unknown_reply, Footers, SMTPD_CONTEXT};
use crate::kb::Rule;
use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Pcre,
    Regexp,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Pcre => "pcre",
            Format::Regexp => "regexp",
        }
    }
}

/// The table text and what went into it.
#[derive(Debug, Clone)]
pub struct Table {
    pub text: String,
    /// Rules written as entries.
    pub written: usize,
    /// Rules that would give a footer but could not be written: (rule id, reason).
    pub skipped: Vec<(String, String)>,
}

/// Build the table in `lang` (texts and style as prepared in `footers`).
pub fn build(footers: &Footers, lang: &str, format: Format) -> Table {
    // Postfix rejects at RCPT TO unless smtpd_delay_reject is off, and its replies are the
    // "smtpd" context: rules for other stages or reporting systems never apply to them.
    let applies = |r: &&Rule| {
        (r.commands.is_empty() || r.commands.iter().any(|c| c == "RCPT"))
            && (r.formats.is_empty() || r.formats.iter().any(|f| f == SMTPD_CONTEXT))
    };
    let (ordered, elsewhere): (Vec<&Rule>, Vec<&Rule>) = footers.kb().rules_by_precedence().into_iter().partition(applies);
    let mut skipped: Vec<(String, String)> =
        elsewhere.iter().map(|r| (r.id.clone(), "applies only at another SMTP stage than RCPT TO, or to bounces".into())).collect();
    let last_footer = ordered.iter().rposition(|r| gives_footer(r)).unwrap_or(0);
    let mut body = String::new();
    let mut written = 0;
    let mut guards = 0;
    let mut gnu = false;
    for (i, rule) in ordered.into_iter().enumerate() {
        if !gives_footer(rule) {
            if i < last_footer {
                match stopper(rule, format) {
                    Ok(line) => {
                        guards += 1;
                        let _ = writeln!(body, "# {} ({}) gives no footer: no entry below applies to its replies\n{line}", rule.id, rule.cause);
                    }
                    Err(why) => skipped.push((rule.id.clone(), why)),
                }
            }
            continue;
        }
        let cause = footers.kb().cause(&rule.cause);
        let Some(text) = cause.and_then(|c| footers.text(&c.id, lang)) else {
            skipped.push((rule.id.clone(), "cause has no text".into()));
            continue;
        };
        match entry(rule, &layout_unknown_reply(text), format) {
            Ok((lines, uses_gnu)) => {
                gnu |= uses_gnu;
                written += 1;
                let _ = writeln!(body, "# {} ({})\n{lines}", rule.id, rule.cause);
            }
            Err(why) => skipped.push((rule.id.clone(), why)),
        }
    }
    body.push_str(&"endif\n".repeat(guards));
    let mut text = header(footers, lang, format, written, &skipped, gnu);
    text.push_str(&body);
    Table { text, written, skipped }
}

/// `if !/codes/` for a rule without a pattern that gives no footer.
fn stopper(rule: &Rule, format: Format) -> Result<String, String> {
    if rule.pattern.is_some() {
        return Err("footer-less rule with a pattern".into());
    }
    let guard = constraint_pattern(rule)?.ok_or("rule has neither pattern nor status")?;
    Ok(format!("if !{}", delimited(&guard, format)?))
}

fn header(footers: &Footers, lang: &str, format: Format, written: usize, skipped: &[(String, String)], gnu: bool) -> String {
    let mut h = String::new();
    let _ = writeln!(h, "# Footers for Postfix's own 4xx/5xx replies, written by plainbounce {} from its", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(h, "# knowledge base ({} rules, language {lang}). In main.cf (Postfix 3.4 or later):", footers.kb().rules().len());
    let _ = writeln!(h, "#   smtpd_reject_footer_maps = {}:/etc/postfix/plainbounce_footers.{}", format.name(), format.name());
    let _ = writeln!(h, "# Entries are in the knowledge base's order of precedence: keep them in this order.");
    let _ = writeln!(h, "# {written} rules written; {} rules skipped (for the socketmap they still count).", skipped.len());
    for (id, why) in skipped {
        let why: String = why.chars().map(|c| if c.is_ascii() && !c.is_ascii_control() { c } else { '?' }).collect();
        let _ = writeln!(h, "#   skipped {id}: {why}");
    }
    if gnu {
        let _ = writeln!(h, "# Some patterns use \\b, \\B, \\< or \\> (GNU regex extensions, as in glibc).");
    }
    h.push('\n');
    h
}

/// The lines of one entry, and whether they use GNU extensions.
fn entry(rule: &Rule, footer: &str, format: Format) -> Result<(String, bool), String> {
    let guard = constraint_pattern(rule)?;
    let Some(pattern) = &rule.pattern else {
        // A status-code rule: its constraint is the whole entry.
        let guard = guard.ok_or("rule has neither pattern nor status")?;
        return Ok((format!("{} {footer}", delimited(&guard, format)?), false));
    };
    let dialect = if format == Format::Pcre { Dialect::Pcre } else { Dialect::Posix };
    let converted = convert(pattern, dialect)?;
    let line = format!("{} {footer}", delimited(&converted.pattern, format)?);
    let lines = match guard {
        Some(g) => format!("if {}\n{line}\nendif", delimited(&g, format)?),
        None => line,
    };
    Ok((lines, converted.gnu))
}

/// A pattern for the rule's reply-code and status constraints, anchored at the start of
/// Postfix's reply ("554 5.7.1 ..."); valid as PCRE and as POSIX ERE.
fn constraint_pattern(rule: &Rule) -> Result<Option<String>, String> {
    let code = match rule.codes.as_slice() {
        [] => "[0-9]{3}".to_string(),
        codes => format!("({})", codes.iter().map(u16::to_string).collect::<Vec<_>>().join("|")),
    };
    let status = match &rule.status {
        None => None,
        Some(s) => {
            let parts: Vec<&str> = s.split('.').collect();
            let [class, subject, detail] = parts.as_slice() else {
                return Err(format!("status {s:?} is not class.subject.detail"));
            };
            // Wildcards as the knowledge base reads them: "x" or "*" in any part.
            let part = |p: &str, any: &str| if p == "x" || p == "*" { any.to_string() } else { p.to_string() };
            let (class, subject, detail) = (part(class, "[245]"), part(subject, "[0-9]{1,3}"), part(detail, "[0-9]{1,3}"));
            Some(format!("{class}\\.{subject}\\.{detail}([^0-9]|$)"))
        }
    };
    Ok(match status {
        Some(s) => Some(format!("^{code}[ -]{s}")),
        None if !rule.codes.is_empty() => Some(format!("^{code}[ -]")),
        None => None,
    })
}

/// `/pattern/flags`: PCRE escapes every `/` already, and gets the `s` flag so that `.`
/// stops matching newlines (Postfix turns DOTALL on by default); a POSIX pattern gets a
/// delimiter it does not contain.
fn delimited(pattern: &str, format: Format) -> Result<String, String> {
    match format {
        Format::Pcre => Ok(format!("/{pattern}/s")),
        Format::Regexp => {
            let d = ['/', '%', '~', '@', ',', ';', '&', '=', '`', '\'', '"', ':']
                .into_iter()
                .find(|d| !pattern.contains(*d))
                .ok_or("no free delimiter character")?;
            Ok(format!("{d}{pattern}{d}"))
        }
    }
}

