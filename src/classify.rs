//! Per-recipient facts + knowledge base → an explanation.

use crate::codes;
use crate::dsn::{Bounce, RecipientFacts, ReportKind};
use crate::kb::{Cause, Evidence, KnowledgeBase, Match, Query, Rule};

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
    /// When the server gave up after retrying (`expired`), what kept failing meanwhile.
    pub underlying: Option<Underlying<'k>>,
    /// Decided by the kind of report (feedback, auto-reply, success), not by a rule.
    pub by_kind: bool,
}

/// The cause behind an expiry: the last temporary failure before the server gave up.
#[derive(Debug, Clone, Copy)]
pub struct Underlying<'k> {
    pub cause: &'k Cause,
    pub rule: &'k Rule,
}

impl Explanation<'_> {
    /// The matched rule's id ("expired+RULE" for an expiry with a known underlying
    /// cause), or "generic".
    pub fn matched(&self) -> String {
        if self.by_kind {
            return format!("kind:{}", self.cause.id);
        }
        match (self.rule, self.underlying) {
            (Some(r), _) => r.id.clone(),
            (None, Some(u)) => format!("expired+{}", u.rule.id),
            (None, None) => GENERIC.to_string(),
        }
    }

    /// True when no rule decided (the generic fallback was used).
    pub fn is_generic(&self) -> bool {
        self.rule.is_none() && self.underlying.is_none() && !self.by_kind
    }

    pub fn evidence(&self) -> Option<Evidence> {
        self.rule.map(Rule::evidence)
    }
}

/// Replies worth classifying are short (RFC 5321 reply lines are at most 512 octets); a
/// hostile megabyte of diagnostic cost seconds of pattern matching, so only its start is read.
pub const MAX_CLASSIFIED: usize = 4096;

/// The first `MAX_CLASSIFIED` bytes of `text`, cut at a character boundary.
fn head(text: &str) -> &str {
    let mut end = text.len().min(MAX_CLASSIFIED);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Explain a bare reply or diagnostic text ("553 sorry, relaying denied ...").
pub fn explain_text<'k>(kb: &'k KnowledgeBase, text: &str) -> Explanation<'k> {
    let text = head(text);
    let found = codes::query_for_text(text);
    decide(kb, Facts { reply_code: found.reply_code, status: found.status, text, action: None, command: found.command, format: None })
}

/// Explain a reply known to answer `command` ("RCPT", "MAIL", ...), sent by a system of
/// the given `format` (e.g. "smtpd": a server's reply to a mail client).
pub fn explain_reply_to<'k>(kb: &'k KnowledgeBase, text: &str, command: &str, format: Option<&str>) -> Explanation<'k> {
    let text = head(text);
    let found = codes::query_for_text(text);
    decide(kb, Facts { reply_code: found.reply_code, status: found.status, text, action: None, command: Some(command), format })
}

/// Explain one recipient of a report: feedback reports, auto-replies and success
/// notices get their own causes ("feedback-report", "auto-reply", "delivered"); failures
/// are classified by the rules, including those tied to the report's format.
pub fn classify_in<'k>(kb: &'k KnowledgeBase, report: &Bounce, facts: &RecipientFacts) -> Explanation<'k> {
    let special = match report.kind {
        ReportKind::Feedback => Some("feedback-report"),
        ReportKind::AutoReply => Some("auto-reply"),
        ReportKind::Delivery if facts.action.as_deref().is_some_and(|a| a.eq_ignore_ascii_case("delivered")) => Some("delivered"),
        ReportKind::Delivery => None,
    };
    match special.and_then(|id| kb.cause(id)) {
        Some(cause) => Explanation {
            cause,
            rule: None,
            reply_code: facts.reply_code,
            status: facts.status.clone(),
            permanent: cause.permanent,
            underlying: None,
            by_kind: true,
        },
        None => classify_reported(kb, Some(report.format), facts),
    }
}

/// Explain one recipient of a parsed bounce.
pub fn classify<'k>(kb: &'k KnowledgeBase, facts: &RecipientFacts) -> Explanation<'k> {
    classify_reported(kb, None, facts)
}

/// Explain one recipient of a bounce of the given format (as `dsn` names it), so that
/// rules tied to the reporting system can apply.
pub fn classify_reported<'k>(kb: &'k KnowledgeBase, format: Option<&str>, facts: &RecipientFacts) -> Explanation<'k> {
    let text = head(facts.diagnostic.as_deref().unwrap_or(""));
    let found = codes::query_for_text(text);
    let reply_code = facts.reply_code.or(found.reply_code);
    // The remote server's own enhanced code is more telling than a relaying MTA's
    // summary (often X.0.0), so prefer the one in the diagnostic unless it is generic.
    let status = match (found.status, facts.status.clone()) {
        (Some(s), Some(f)) if s.ends_with(".0.0") && !f.ends_with(".0.0") => Some(f),
        (Some(s), _) => Some(s),
        (None, f) => f,
    };
    let command = facts.command.as_deref().map(str::to_ascii_uppercase).or_else(|| found.command.map(String::from));
    let action = facts.action.as_deref();
    decide(kb, Facts { reply_code, status, text, action, command: command.as_deref(), format })
}

/// What `decide` works from.
struct Facts<'a> {
    reply_code: Option<u16>,
    status: Option<String>,
    text: &'a str,
    action: Option<&'a str>,
    command: Option<&'a str>,
    format: Option<&'a str>,
}

fn decide<'k>(kb: &'k KnowledgeBase, f: Facts) -> Explanation<'k> {
    let q = Query { reply_code: f.reply_code, status: f.status.as_deref(), text: f.text, command: f.command, format: f.format };
    let found = kb.lookup(&q);
    if gave_up(&f, found) {
        if let Some(expired) = kb.cause("expired") {
            let underlying = found.filter(|m| m.cause.id != expired.id).map(|m| Underlying { cause: m.cause, rule: m.rule });
            let rule = if underlying.is_none() { found.map(|m| m.rule) } else { None };
            return Explanation { cause: expired, rule, reply_code: f.reply_code, status: f.status, permanent: true, underlying, by_kind: false };
        }
    }
    let class_permanent = permanence(f.reply_code, f.status.as_deref(), f.action);
    let (cause, rule) = match found {
        Some(m) => (m.cause, Some(m.rule)),
        None => {
            let id = if class_permanent == Some(false) { "unknown-temporary" } else { "unknown-permanent" };
            (kb.cause(id).expect("built-in generic causes exist"), None)
        }
    };
    let permanent = class_permanent.unwrap_or(cause.permanent);
    Explanation { cause, rule, reply_code: f.reply_code, status: f.status, permanent, underlying: None, by_kind: false }
}

/// Did the server give up after retrying? A report that says "failed" about a temporary
/// error means it retried until its queue lifetime ran out: unless the reply says more
/// than its codes, that expiry is the news. The same for a server that could not be
/// reached at all (no reply, so no codes) the whole time.
fn gave_up(f: &Facts, found: Option<Match>) -> bool {
    if !f.action.is_some_and(|a| a.eq_ignore_ascii_case("failed")) {
        return false;
    }
    match permanence(f.reply_code, f.status.as_deref(), None) {
        Some(true) => false,
        Some(false) => found.is_none_or(|m| m.rule.evidence() < Evidence::StatusCode || m.cause.id == "network-error"),
        None => found.is_some_and(|m| m.cause.id == "network-error"),
    }
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
