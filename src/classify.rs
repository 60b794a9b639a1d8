//! Per-recipient facts + knowledge base → an explanation.

use crate::codes;
use crate::dsn::RecipientFacts;
use crate::kb::{Cause, Evidence, KnowledgeBase, Query, Rule};

/// Rule name reported when no rule matched and a generic cause was used.
pub const GENERIC: &str = "generic";

/// Why one delivery failed, with the rule that decided it.
#[derive(Debug, Clone)]
pub struct Explanation<'k> {
    pub cause: &'k Cause,
    /// The winning rule; `None` when the generic fallback was used.
    pub rule: Option<&'k Rule>,
    pub reply_code: Option<u16>,
    pub status: Option<String>,
    pub permanent: bool,
}

impl Explanation<'_> {
    /// The matched rule's id, or "generic".
    pub fn matched(&self) -> &str {
        self.rule.map_or(GENERIC, |r| r.id.as_str())
    }

    pub fn evidence(&self) -> Option<Evidence> {
        self.rule.map(Rule::evidence)
    }
}

/// Explain a bare reply or diagnostic text ("553 sorry, relaying denied ...").
pub fn explain_text<'k>(kb: &'k KnowledgeBase, text: &str) -> Explanation<'k> {
    let found = codes::query_for_text(text);
    decide(kb, found.reply_code, found.status, text, None)
}

/// Explain one recipient of a parsed bounce.
pub fn classify<'k>(kb: &'k KnowledgeBase, facts: &RecipientFacts) -> Explanation<'k> {
    let text = facts.diagnostic.as_deref().unwrap_or("");
    let found = codes::query_for_text(text);
    let reply_code = facts.reply_code.or(found.reply_code);
    // The remote server's own enhanced code is more telling than a relaying MTA's
    // summary (often X.0.0), so prefer the one in the diagnostic unless it is generic.
    let status = match (found.status, facts.status.clone()) {
        (Some(s), Some(f)) if s.ends_with(".0.0") && !f.ends_with(".0.0") => Some(f),
        (Some(s), _) => Some(s),
        (None, f) => f,
    };
    decide(kb, reply_code, status, text, facts.action.as_deref())
}

fn decide<'k>(
    kb: &'k KnowledgeBase,
    reply_code: Option<u16>,
    status: Option<String>,
    text: &str,
    action: Option<&str>,
) -> Explanation<'k> {
    let q = Query { reply_code, status: status.as_deref(), text };
    let class_permanent = permanence(reply_code, status.as_deref(), action);
    let (cause, rule) = match kb.lookup(&q) {
        Some(m) => (m.cause, Some(m.rule)),
        None => {
            let id = if class_permanent == Some(false) { "unknown-temporary" } else { "unknown-permanent" };
            (kb.cause(id).expect("built-in generic causes exist"), None)
        }
    };
    let permanent = class_permanent.unwrap_or(cause.permanent);
    Explanation { cause, rule, reply_code, status, permanent }
}

/// Permanent (5xx), temporary (4xx, or a `delayed` report), or unknown.
fn permanence(reply_code: Option<u16>, status: Option<&str>, action: Option<&str>) -> Option<bool> {
    if action.is_some_and(|a| a.eq_ignore_ascii_case("delayed")) {
        return Some(false);
    }
    let class = status.and_then(|s| s.chars().next()).or_else(|| reply_code.and_then(|c| char::from_digit(u32::from(c / 100), 10)));
    match class {
        Some('5') => Some(true),
        Some('4') => Some(false),
        _ => None,
    }
}
