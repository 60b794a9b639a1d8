//! Per-recipient facts from what a bounce states: its delivery-status fields when it has
//! them (completed from its prose where the prose says more), else its prose alone.

use super::fields::{RecipientFields, Report};
use super::mime::View;
use super::reply::{self, clean_diagnostic, sanitize};
use super::text::{Named, Prose};
use super::{address, RecipientFacts};
use crate::codes;

/// Recipients of a report with delivery-status fields.
pub(crate) fn from_fields(report: &Report, prose: &Prose, view: &View) -> Vec<RecipientFacts> {
    let single_pair = report.recipients.len() == 1 && prose.recipients.len() == 1;
    let mut out: Vec<RecipientFacts> = report
        .recipients
        .iter()
        .map(|f| {
            let addr = [&f.final_recipient, &f.original_recipient, &f.actual_recipient]
                .into_iter()
                .flatten()
                .find_map(|v| address::from_field(v));
            let named = addr.as_deref().and_then(|a| prose.find(a)).or(if single_pair { prose.recipients.first() } else { None });
            facts(f, addr, named, prose)
        })
        .collect();
    fill_missing_addresses(&mut out, prose, view);
    out
}

fn facts(f: &RecipientFields, addr: Option<String>, named: Option<&Named>, prose: &Prose) -> RecipientFacts {
    let said = named.map(|n| n.reply(prose));
    let dsn_diag = f.diagnostic.as_deref().map(clean_diagnostic).filter(|d| !d.is_empty());
    let diagnostic = better_diagnostic(dsn_diag, said.as_ref(), prose);
    let status = f.status.as_deref().and_then(first_status).or_else(|| diagnostic.as_deref().and_then(codes::status));
    let action = f.action.as_deref().and_then(|a| a.split_whitespace().next()).map(normal_action);
    let action = action.or_else(|| status.as_deref().filter(|s| s.starts_with('5')).map(|_| "failed".to_string()));
    let remote_mta = f
        .remote_mta
        .as_deref()
        .map(strip_type)
        .and_then(|v| v.split_whitespace().next().map(String::from))
        .or_else(|| said.as_ref().and_then(|r| r.remote_mta.clone()));
    let command = said.as_ref().and_then(|r| r.command).or_else(|| diagnostic.as_deref().and_then(reply::command_in));
    RecipientFacts {
        address: addr.or_else(|| named.and_then(|n| n.address.clone())),
        original_recipient: f.original_recipient.as_deref().and_then(address::from_field),
        action,
        status,
        reply_code: diagnostic.as_deref().and_then(reply::reply_code),
        diagnostic,
        remote_mta,
        command: command.map(String::from),
        last_attempt: f.last_attempt.as_deref().map(sanitize).filter(|s| !s.is_empty()),
        will_retry_until: f.will_retry_until.as_deref().map(sanitize).filter(|s| !s.is_empty()),
    }
}

/// The DSN's Diagnostic-Code, unless the prose has the same reply in full (Sendmail
/// keeps only its first line) or the field says nothing ("X-Unix; 77", none at all).
fn better_diagnostic(dsn: Option<String>, said: Option<&reply::Reply>, prose: &Prose) -> Option<String> {
    let said_text = said.map(|r| r.text.as_str()).filter(|t| !t.is_empty());
    match dsn {
        Some(d) if !is_trivial(&d) => {
            let key = squash(&d);
            let longer = said_text
                .into_iter()
                .chain(prose.replies())
                .filter(|c| c.len() > d.len() && squash(c).starts_with(&key))
                .max_by_key(|c| c.len());
            Some(longer.map_or(d, String::from))
        }
        d => said_text.map(String::from).or(d),
    }
}

/// A diagnostic without a single word ("77", "550 5.0.0") says nothing a person could use.
fn is_trivial(d: &str) -> bool {
    !d.split(|c: char| !c.is_alphabetic()).any(|w| w.chars().count() >= 3)
}

fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect()
}

/// RFC 3464's vocabulary; Postfix address verification says "deliverable"/"undeliverable".
fn normal_action(a: &str) -> String {
    match a.to_ascii_lowercase().as_str() {
        "deliverable" => "delivered".into(),
        "undeliverable" => "failed".into(),
        other => other.into(),
    }
}

/// "5.1.1 (user unknown)" → "5.1.1".
fn first_status(s: &str) -> Option<String> {
    let tok = s.split_whitespace().next()?;
    let parts: Vec<&str> = tok.split('.').collect();
    let ok = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..].iter().all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    ok.then(|| tok.to_string())
}

/// "dns; mx.example.jp" → "mx.example.jp".
pub(crate) fn strip_type(v: &str) -> &str {
    match v.split_once(';') {
        Some((t, rest)) if !t.contains(' ') && t.len() <= 24 => rest.trim(),
        _ => v.trim(),
    }
}

/// Recipients whose field holds no address (a file, a pipe, "@host"): take the address
/// from the prose, X-Failed-Recipients, or the returned message's To:, when that leaves
/// no doubt which one it is.
fn fill_missing_addresses(out: &mut [RecipientFacts], prose: &Prose, view: &View) {
    let missing: Vec<usize> = (0..out.len()).filter(|&i| out[i].address.is_none()).collect();
    if missing.is_empty() {
        return;
    }
    let known: Vec<String> = out.iter().filter_map(|r| r.address.clone()).collect();
    let unused = |cands: Vec<String>| -> Vec<String> {
        cands.into_iter().filter(|c| !known.iter().any(|k| address::same(k, c))).collect()
    };
    let from_prose = unused(prose.recipients.iter().filter_map(|n| n.address.clone()).collect());
    let from_header = unused(view.headers.failed_recipients.clone());
    let from_to = unused(view.original_extra.to_address.clone().into_iter().collect());
    for cands in [from_prose, from_header, from_to] {
        if cands.len() == missing.len() {
            for (i, a) in missing.iter().zip(cands) {
                out[*i].address = Some(a);
            }
            return;
        }
    }
}

/// Recipients of a bounce known only from its prose.
pub(crate) fn from_prose(prose: &Prose, view: &View, need_evidence: bool) -> Vec<RecipientFacts> {
    let action = if prose.delayed() { "delayed" } else { "failed" };
    let mut out: Vec<RecipientFacts> = prose
        .recipients
        .iter()
        .filter(|n| !need_evidence || super::formats::FAILURE_WORDS.is_match(&n.block_text()))
        .map(|n| {
            let r = n.reply(prose);
            prose_facts(n.address.clone(), n.original.clone(), r, action)
        })
        .collect();
    // Delivery targets that never named their address (Exim "save to ..."): X-Failed-Recipients.
    let missing = out.iter().filter(|r| r.address.is_none()).count();
    if missing > 0 {
        let extra: Vec<&String> = view
            .headers
            .failed_recipients
            .iter()
            .filter(|a| !out.iter().any(|r| r.address.as_deref().is_some_and(|b| address::same(a, b))))
            .collect();
        if extra.len() == missing {
            for (r, a) in out.iter_mut().filter(|r| r.address.is_none()).zip(extra) {
                r.address = Some(a.clone());
            }
        }
    }
    out.retain(|r| r.address.is_some());
    apply_failed_recipients(&mut out, &view.headers.failed_recipients, action);
    if out.is_empty() {
        // The header names them, or a known bounce names one in a sentence; the prose
        // explains in words the scanner cannot tie to one.
        let named: Vec<String> = if !view.headers.failed_recipients.is_empty() {
            view.headers.failed_recipients.clone()
        } else if prose.family().is_some() {
            prose.mentioned().into_iter().collect()
        } else {
            Vec::new()
        };
        let r = prose.recipients.first().map(|n| n.reply(prose)).unwrap_or_else(|| whole_text_reply(prose));
        out = named.into_iter().map(|a| prose_facts(Some(a), None, r.clone(), action)).collect();
    }
    out
}

/// X-Failed-Recipients is the MTA's own list: when the prose agrees with it on at least
/// one address, addresses the header does not list are misreadings, and addresses only
/// the header lists are added.
fn apply_failed_recipients(out: &mut Vec<RecipientFacts>, header: &[String], action: &str) {
    let listed = |r: &RecipientFacts| r.address.as_deref().is_some_and(|a| header.iter().any(|h| address::same(a, h)));
    if header.is_empty() || !out.iter().any(listed) {
        return;
    }
    out.retain(listed);
    for h in header {
        if !out.iter().any(|r| r.address.as_deref().is_some_and(|a| address::same(a, h))) {
            let empty = reply::Reply::default();
            out.push(prose_facts(Some(h.clone()), None, empty, action));
        }
    }
}

/// The explanation of a bounce that ties it to no recipient: its first paragraph with words.
fn whole_text_reply(prose: &Prose) -> reply::Reply {
    let body = &prose.text[..prose.body_end.unwrap_or(prose.text.len())];
    let lines: Vec<&str> = body.lines().collect();
    let quoted = reply::from_block(&lines);
    if quoted.quoted {
        return quoted;
    }
    let para: Vec<&str> = body
        .split("\n\n")
        .map(str::trim)
        .filter(|p| p.chars().filter(|c| c.is_alphabetic()).count() > 20)
        .take(2)
        .collect();
    reply::Reply { text: super::text::truncate(&sanitize(&para.join(" ")), 600).to_string(), ..quoted }
}

fn prose_facts(address: Option<String>, original: Option<String>, r: reply::Reply, action: &str) -> RecipientFacts {
    let diagnostic = Some(r.text).filter(|t| !t.is_empty());
    RecipientFacts {
        address,
        original_recipient: original,
        action: Some(action.to_string()),
        status: diagnostic.as_deref().and_then(codes::status),
        reply_code: diagnostic.as_deref().and_then(reply::reply_code),
        diagnostic,
        remote_mta: r.remote_mta,
        command: r.command.map(String::from),
        last_attempt: None,
        will_retry_until: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_types() {
        assert_eq!(first_status("5.0.0 (Remote SMTP server has rejected address)").as_deref(), Some("5.0.0"));
        assert_eq!(first_status("undefined"), None);
        assert_eq!(strip_type("dns; mx.example.jp"), "mx.example.jp");
        assert!(is_trivial("77"));
        assert!(is_trivial("550 5.0.0"));
        assert!(!is_trivial("550 Unknown user"));
        assert!(!is_trivial("550 5.7.9 Rejected"));
    }
}
