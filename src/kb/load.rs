//! Reading knowledge-base TOML: built-in files first, then the admin's, where a later
//! definition with the same id overrides an earlier one.

use super::model::{Cause, Rule, Texts, Who};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The reasons a cause may name (Sisimai's vocabulary).
pub const REASONS: &[&str] = &[
    "authfailure", "badreputation", "blocked", "contenterror", "delivered", "exceedlimit",
    "expired", "failedstarttls", "feedback", "filtered", "hasmoved", "hostunknown",
    "mailboxfull", "mailererror", "mesgtoobig", "networkerror", "norelaying", "notaccept",
    "notcompliantrfc", "onhold", "policyviolation", "rejected", "requireptr", "securityerror",
    "spamdetected", "speeding", "suppressed", "suspend", "syntaxerror", "systemerror",
    "systemfull", "toomanyconn", "undefined", "userunknown", "vacation", "virusdetected",
];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    cause: Vec<RawCause>,
    #[serde(default)]
    rule: Vec<RawRule>,
    /// lang -> cause id -> texts
    #[serde(default)]
    lang: BTreeMap<String, BTreeMap<String, RawTexts>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCause {
    id: String,
    reason: Option<String>,
    who: Option<Who>,
    permanent: Option<bool>,
    title: Option<String>,
    explanation: Option<String>,
    remedy: Option<String>,
    admin_note: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTexts {
    title: Option<String>,
    explanation: Option<String>,
    remedy: Option<String>,
    admin_note: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Codes {
    One(u16),
    Many(Vec<u16>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Commands {
    One(String),
    Many(Vec<String>),
}

/// The SMTP stages a rule may be tied to.
/// "NONE" stands for a report that does not say.
const COMMANDS: &[&str] = &["CONN", "HELO", "EHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "NONE"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    cause: Option<String>,
    pattern: Option<String>,
    status: Option<String>,
    code: Option<Codes>,
    /// SMTP command(s) the reply followed: "RCPT", ["MAIL", "CONN"], ...
    command: Option<Commands>,
    /// Bounce format(s) of the report: "googlegroups", ["qmail", "exim"], ...
    format: Option<Commands>,
    provider: Option<String>,
    name: Option<String>,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    examples: Vec<String>,
    /// An admin may switch a built-in rule off.
    #[serde(default)]
    disabled: bool,
}

/// Causes and rules after merging all files, in load order.
#[derive(Default)]
pub struct Merged {
    pub causes: Vec<Cause>,
    pub rules: Vec<Rule>,
}

/// Merge `(name, toml text)` sources in order.
pub fn merge(sources: &[(String, String)]) -> Result<Merged> {
    let mut merged = Merged::default();
    for (name, text) in sources {
        let file: File = toml::from_str(text).with_context(|| format!("{name}: invalid knowledge-base TOML"))?;
        merge_file(&mut merged, file).with_context(|| name.clone())?;
    }
    Ok(merged)
}

fn merge_file(m: &mut Merged, file: File) -> Result<()> {
    for raw in file.cause {
        merge_cause(m, raw)?;
    }
    for raw in file.rule {
        merge_rule(m, raw)?;
    }
    for (lang, by_cause) in file.lang {
        for (id, raw) in by_cause {
            merge_translation(m, &lang, &id, raw)?;
        }
    }
    Ok(())
}

fn merge_cause(m: &mut Merged, raw: RawCause) -> Result<()> {
    if let Some(reason) = &raw.reason {
        if !REASONS.contains(&reason.as_str()) {
            bail!("cause {}: unknown reason {reason:?} (see Sisimai's vocabulary)", raw.id);
        }
    }
    if let Some(c) = m.causes.iter_mut().find(|c| c.id == raw.id) {
        // Override: only the fields given change.
        set(&mut c.reason, raw.reason);
        set(&mut c.who, raw.who);
        set(&mut c.permanent, raw.permanent);
        set(&mut c.en.title, raw.title);
        set(&mut c.en.explanation, raw.explanation);
        set(&mut c.en.remedy, raw.remedy);
        set(&mut c.en.admin_note, raw.admin_note);
        return Ok(());
    }
    let id = raw.id;
    let need = |v: Option<String>, field: &str| v.with_context(|| format!("cause {id}: missing {field}"));
    let cause = Cause {
        reason: need(raw.reason, "reason")?,
        who: raw.who.with_context(|| format!("cause {id}: missing who"))?,
        permanent: raw.permanent.with_context(|| format!("cause {id}: missing permanent"))?,
        en: Texts {
            title: need(raw.title, "title")?,
            explanation: need(raw.explanation, "explanation")?,
            remedy: need(raw.remedy, "remedy")?,
            admin_note: need(raw.admin_note, "admin_note")?,
        },
        translations: Vec::new(),
        id,
    };
    m.causes.push(cause);
    Ok(())
}

fn merge_translation(m: &mut Merged, lang: &str, id: &str, raw: RawTexts) -> Result<()> {
    let cause = m
        .causes
        .iter_mut()
        .find(|c| c.id == id)
        .with_context(|| format!("translation [{lang}] for unknown cause {id}"))?;
    let pos = match cause.translations.iter().position(|(l, _)| l == lang) {
        Some(p) => p,
        None => {
            // A new translation starts from English so a partial one still reads.
            cause.translations.push((lang.to_string(), cause.en.clone()));
            cause.translations.len() - 1
        }
    };
    let t = &mut cause.translations[pos].1;
    set(&mut t.title, raw.title);
    set(&mut t.explanation, raw.explanation);
    set(&mut t.remedy, raw.remedy);
    set(&mut t.admin_note, raw.admin_note);
    Ok(())
}

fn merge_rule(m: &mut Merged, raw: RawRule) -> Result<()> {
    let existing = m.rules.iter().position(|r| r.id == raw.id);
    if raw.disabled {
        match existing {
            Some(p) => {
                m.rules.remove(p);
                return Ok(());
            }
            None => bail!("rule {}: disabled, but no such rule exists", raw.id),
        }
    }
    if raw.pattern.is_none() && raw.status.is_none() && raw.code.is_none() && raw.command.is_none() && raw.format.is_none() {
        bail!("rule {}: needs at least one of pattern, status, code, command, format", raw.id);
    }
    if let Some(s) = &raw.status {
        super::status_pattern_valid(s).with_context(|| format!("rule {}", raw.id))?;
    }
    let rule = Rule {
        cause: raw.cause.with_context(|| format!("rule {}: missing cause", raw.id))?,
        pattern: raw.pattern,
        status: raw.status.map(|s| s.to_ascii_lowercase()),
        codes: match raw.code {
            None => Vec::new(),
            Some(Codes::One(c)) => vec![c],
            Some(Codes::Many(v)) => v,
        },
        commands: commands(&raw.id, raw.command)?,
        formats: one_or_many(raw.format).into_iter().map(|f| f.to_ascii_lowercase()).collect(),
        provider: raw.provider,
        name: raw.name,
        priority: raw.priority,
        examples: raw.examples,
        id: raw.id,
    };
    match existing {
        Some(p) => m.rules[p] = rule,
        None => m.rules.push(rule),
    }
    Ok(())
}

fn one_or_many(raw: Option<Commands>) -> Vec<String> {
    match raw {
        None => Vec::new(),
        Some(Commands::One(c)) => vec![c],
        Some(Commands::Many(v)) => v,
    }
}

fn commands(id: &str, raw: Option<Commands>) -> Result<Vec<String>> {
    let list: Vec<String> = one_or_many(raw).into_iter().map(|c| c.to_ascii_uppercase()).collect();
    if let Some(bad) = list.iter().find(|c| !COMMANDS.contains(&c.as_str())) {
        bail!("rule {id}: unknown command {bad:?} (one of {COMMANDS:?})");
    }
    Ok(list)
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}
