//! The knowledge base: causes and rules from TOML, compiled once into a matcher.
//!
//! Matching picks the most specific evidence: a text pattern beats the context (the SMTP
//! command the reply followed, the kind of system that reported it), which beats an
//! enhanced status code, which beats a basic reply code (a generic X.0.0 status ranks
//! lowest); within a tier, the more specific status wins, then the higher `priority`, then
//! a rule tied to the context, then a rule that also names the code, then `priority`, then load order.

mod builtin;
mod load;
mod model;

pub use load::REASONS;
pub use model::{Cause, Evidence, Rule, Texts, Who};

use anyhow::{bail, Context, Result};
use crate::patterns::PatternSet;
use std::collections::HashMap;
use std::path::Path;

/// What is known about one failure, for lookup.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<'a> {
    pub reply_code: Option<u16>,
    /// Enhanced status, e.g. "5.1.1".
    pub status: Option<&'a str>,
    /// Diagnostic text (may be empty).
    pub text: &'a str,
    /// SMTP command the reply followed (upper case), if the report says.
    pub command: Option<&'a str>,
    /// The bounce's format as `dsn` names it ("rfc3464", "googlegroups", ...), if known.
    pub format: Option<&'a str>,
}

/// The rule that won and the cause it names.
#[derive(Debug, Clone, Copy)]
pub struct Match<'a> {
    pub rule: &'a Rule,
    pub cause: &'a Cause,
}

/// Causes and compiled rules.
pub struct KnowledgeBase {
    causes: Vec<Cause>,
    cause_index: HashMap<String, usize>,
    rules: Vec<Rule>,
    /// Cause index of each rule.
    rule_cause: Vec<usize>,
    /// Patterns of the text rules, in the order of `pattern_rules`.
    patterns: PatternSet,
    pattern_rules: Vec<usize>,
    /// Rules without a pattern, in precedence order.
    code_rules: Vec<usize>,
    /// Each rule's status pattern, split once.
    rule_status: Vec<Option<StatusPattern>>,
    /// Each rule's place in precedence order (0 wins over all others).
    rank: Vec<usize>,
}

impl KnowledgeBase {
    /// The knowledge base compiled into the binary.
    pub fn builtin() -> Result<Self> {
        Self::from_sources(&builtin::sources())
    }

    /// The built-in knowledge base extended or overridden by the admin's files, in order.
    pub fn with_files<P: AsRef<Path>>(files: &[P]) -> Result<Self> {
        let mut sources = builtin::sources();
        for f in files {
            let path = f.as_ref();
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read knowledge base {}", path.display()))?;
            sources.push((path.display().to_string(), text));
        }
        Self::from_sources(&sources)
    }

    /// Compile `(name, toml)` sources, later ones overriding earlier ones.
    pub fn from_sources(sources: &[(String, String)]) -> Result<Self> {
        let merged = load::merge(sources)?;
        let cause_index: HashMap<String, usize> =
            merged.causes.iter().enumerate().map(|(i, c)| (c.id.clone(), i)).collect();
        let mut rule_cause = Vec::with_capacity(merged.rules.len());
        for r in &merged.rules {
            match cause_index.get(&r.cause) {
                Some(&i) => rule_cause.push(i),
                None => bail!("rule {}: unknown cause {:?}", r.id, r.cause),
            }
        }
        let pattern_rules: Vec<usize> = (0..merged.rules.len()).filter(|&i| merged.rules[i].pattern.is_some()).collect();
        let names: Vec<String> = pattern_rules.iter().map(|&i| format!("rule {}", merged.rules[i].id)).collect();
        let patterns = PatternSet::new(
            pattern_rules.iter().zip(&names).map(|(&i, name)| (name.as_str(), merged.rules[i].pattern.as_deref().unwrap_or_default())),
            true,
        )?;
        let mut order: Vec<usize> = (0..merged.rules.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse((precedence(&merged.rules[i]), std::cmp::Reverse(i))));
        let mut rank = vec![0; order.len()];
        for (place, &i) in order.iter().enumerate() {
            rank[i] = place;
        }
        let code_rules = order.iter().copied().filter(|&i| merged.rules[i].pattern.is_none()).collect();
        Ok(KnowledgeBase {
            causes: merged.causes,
            cause_index,
            rule_cause,
            patterns,
            pattern_rules,
            code_rules,
            rule_status: merged.rules.iter().map(|r| r.status.as_deref().map(StatusPattern::new)).collect(),
            rules: merged.rules,
            rank,
        })
    }

    /// Compile every pattern now, so that one too big to compile is reported (patterns are
    /// otherwise compiled on first use; their syntax is checked when loading).
    pub fn compile_all(&self) -> Result<()> {
        self.patterns.compile_all()
    }

    /// How many text rules have no literal for the scanner (tried on every text).
    pub fn unfiltered_patterns(&self) -> usize {
        self.patterns.unfiltered()
    }

    pub fn causes(&self) -> &[Cause] {
        &self.causes
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn cause(&self, id: &str) -> Option<&Cause> {
        self.cause_index.get(id).map(|&i| &self.causes[i])
    }

    /// The most specific rule matching `q`, if any. The constraints are checked before any
    /// regex runs, and text rules are tried in precedence order only while they could still
    /// win: the first one that matches does.
    pub fn lookup(&self, q: &Query) -> Option<Match<'_>> {
        let status = q.status.and_then(split_status);
        let holds = |i: usize| constraints_hold(&self.rules[i], self.rule_status[i].as_ref(), q, status);
        let by_code = self.code_rules.iter().copied().find(|&i| holds(i));
        let bound = by_code.map_or(usize::MAX, |i| self.rank[i]);
        let by_text = self.patterns.best_match(q.text, |k| {
            let i = self.pattern_rules[k];
            (self.rank[i] < bound && holds(i)).then_some(self.rank[i])
        });
        let best = by_text.map(|k| self.pattern_rules[k]).or(by_code)?;
        Some(Match { rule: &self.rules[best], cause: &self.causes[self.rule_cause[best]] })
    }

    /// The rules from the one that wins over all others to the one that loses to all:
    /// the order in which `lookup` prefers them.
    pub fn rules_by_precedence(&self) -> Vec<&Rule> {
        let mut order: Vec<usize> = (0..self.rules.len()).collect();
        order.sort_by_key(|&i| self.rank[i]);
        order.into_iter().map(|i| &self.rules[i]).collect()
    }

    /// The rules whose `examples` do not match the rule itself, as "rule: example" lines.
    /// An example is a reply in the rule's own context: its first command and format.
    pub fn failing_examples(&self) -> Vec<String> {
        let mut bad = Vec::new();
        for r in &self.rules {
            for ex in &r.examples {
                let found = crate::codes::query_for_text(ex);
                let mut q = found.as_query(ex);
                if let Some(c) = r.commands.first() {
                    q.command = (c != "NONE").then_some(c.as_str());
                }
                q.format = r.formats.first().map(String::as_str).or(q.format);
                let got = self.lookup(&q).map(|m| m.rule.id.as_str());
                if got != Some(r.id.as_str()) {
                    bad.push(format!("{}: {ex:?} matched {:?}", r.id, got));
                }
            }
        }
        bad
    }
}

/// How strongly a rule's evidence speaks (higher wins); see the module comment.
fn precedence(r: &Rule) -> (Evidence, u8, i32, bool, bool) {
    let status_rank = r.status.as_deref().map_or(0, status_specificity);
    let context = !r.commands.is_empty() || !r.formats.is_empty();
    (r.evidence(), status_rank, r.priority, context, !r.codes.is_empty())
}

/// `status` is the query's status split in three, `None` when it has no such shape.
fn constraints_hold(r: &Rule, pattern: Option<&StatusPattern>, q: &Query, status: Option<[&str; 3]>) -> bool {
    if !r.codes.is_empty() && !q.reply_code.is_some_and(|c| r.codes.contains(&c)) {
        return false;
    }
    if !r.commands.is_empty() && !r.commands.iter().any(|rc| rc == q.command.unwrap_or("NONE")) {
        return false;
    }
    if !r.formats.is_empty() && !q.format.is_some_and(|f| r.formats.iter().any(|rf| rf.eq_ignore_ascii_case(f))) {
        return false;
    }
    match pattern {
        None => true,
        Some(p) if p.negated => !status.is_some_and(|s| p.matches(s)),
        Some(p) => status.is_some_and(|s| p.matches(s)),
    }
}

/// A rule's status pattern split at load, so that lookups compare parts without
/// splitting every rule's pattern again: the same answers as `status_matches`.
struct StatusPattern {
    negated: bool,
    parts: [String; 3],
}

impl StatusPattern {
    /// From a pattern `status_pattern_valid` accepted.
    fn new(p: &str) -> StatusPattern {
        let negated = p.starts_with('!');
        let mut it = p.trim_start_matches('!').split('.').map(String::from);
        let parts = [(); 3].map(|()| it.next().unwrap_or_default());
        StatusPattern { negated, parts }
    }

    fn matches(&self, status: [&str; 3]) -> bool {
        self.parts.iter().zip(status).all(|(a, b)| a == "x" || a == "*" || a.eq_ignore_ascii_case(b))
    }
}

/// "5.1.1" as its three parts; `None` for any other number of parts.
fn split_status(s: &str) -> Option<[&str; 3]> {
    let mut it = s.split('.');
    let parts = [it.next()?, it.next()?, it.next()?];
    it.next().is_none().then_some(parts)
}

/// Higher is more specific: "5.7.1" > "x.7.1" > "5.7.*" > "x.7.*"; an exclusion ("!x.1.*")
/// says nothing positive and ranks with no status at all.
fn status_specificity(p: &str) -> u8 {
    if p.starts_with('!') {
        return 0;
    }
    let any_class = p.starts_with('x');
    let any_detail = p.ends_with('*');
    match (any_class, any_detail) {
        (false, false) => 4,
        (true, false) => 3,
        (false, true) => 2,
        (true, true) => 1,
    }
}

/// Does status pattern `p` ("5.7.1", "x.7.1", "5.7.*", "x.7.*") match status `s`?
pub fn status_matches(p: &str, s: &str) -> bool {
    let mut pp = p.split('.');
    let mut ss = s.split('.');
    for _ in 0..3 {
        match (pp.next(), ss.next()) {
            (Some(a), Some(b)) if a == "x" || a == "*" || a.eq_ignore_ascii_case(b) => {}
            _ => return false,
        }
    }
    ss.next().is_none()
}

/// Check a status pattern's shape ("!" in front excludes the statuses it matches).
fn status_pattern_valid(p: &str) -> Result<()> {
    let p = p.strip_prefix('!').unwrap_or(p);
    let parts: Vec<&str> = p.split('.').collect();
    let ok = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5" | "x" | "X")
        && (parts[1] == "*" || parts[1].parse::<u16>().is_ok_and(|n| n < 1000))
        && (parts[2] == "*" || parts[2].parse::<u16>().is_ok_and(|n| n < 1000));
    if !ok {
        bail!("invalid status pattern {p:?} (want e.g. \"5.1.1\", \"x.1.1\" or \"5.7.*\")");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scanner only skips regexes that cannot match: on every example of every rule
    /// and every line of every corpus message, the patterns found are those whose regex
    /// matches (each compiled on its own and run on the text).
    #[test]
    fn scanner_finds_every_pattern_that_matches() {
        let kb = KnowledgeBase::builtin().unwrap();
        let regexes: Vec<regex::Regex> = kb
            .pattern_rules
            .iter()
            .map(|&i| regex::RegexBuilder::new(kb.rules[i].pattern.as_deref().unwrap()).case_insensitive(true).build().unwrap())
            .collect();
        let mut texts: Vec<String> = kb.rules.iter().flat_map(|r| r.examples.clone()).collect();
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/emails");
        for entry in std::fs::read_dir(&corpus).into_iter().flatten().flatten() {
            if let Ok(raw) = std::fs::read(entry.path()) {
                texts.extend(String::from_utf8_lossy(&raw).lines().map(String::from));
            }
        }
        assert!(texts.len() > 10_000, "corpus not found at {}: only {} texts", corpus.display(), texts.len());
        let mut matched = 0;
        for text in &texts {
            let expected: Vec<usize> = (0..regexes.len()).filter(|&k| regexes[k].is_match(text)).collect();
            assert_eq!(kb.patterns.matching(text), expected, "text {text:?}");
            matched += usize::from(!expected.is_empty());
        }
        assert!(matched > 500, "only {matched} texts matched any pattern: the comparison says little");
        assert!(kb.unfiltered_patterns() * 10 < kb.pattern_rules.len(), "{} patterns escape the scanner", kb.unfiltered_patterns());
    }

    /// `lookup` (constraints first, regexes in precedence order until one matches) picks
    /// the rule that taking every matching rule and the best of them picks, on every line
    /// of the corpus and every rule example, each in several contexts.
    #[test]
    fn lookup_picks_the_best_of_all_matching_rules() {
        let kb = KnowledgeBase::builtin().unwrap();
        let best_of_all = |q: &Query| {
            let status = q.status.and_then(split_status);
            kb.patterns
                .matching(q.text)
                .into_iter()
                .map(|k| kb.pattern_rules[k])
                .chain(kb.code_rules.iter().copied())
                .filter(|&i| constraints_hold(&kb.rules[i], kb.rule_status[i].as_ref(), q, status))
                .max_by_key(|&i| (precedence(&kb.rules[i]), std::cmp::Reverse(i)))
                .map(|i| kb.rules[i].id.as_str())
        };
        let mut texts: Vec<String> = kb.rules.iter().flat_map(|r| r.examples.clone()).collect();
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/emails");
        for entry in std::fs::read_dir(&corpus).into_iter().flatten().flatten() {
            if let Ok(raw) = std::fs::read(entry.path()) {
                texts.extend(String::from_utf8_lossy(&raw).lines().filter(|l| l.len() > 8).map(String::from));
            }
        }
        assert!(texts.len() > 10_000, "corpus not found at {}", corpus.display());
        let (mut by_text, mut compared) = (0, 0);
        for text in &texts {
            let found = crate::codes::query_for_text(text);
            for (command, format) in [(None, None), (Some("RCPT"), Some("rfc3464")), (Some("DATA"), Some("exim")), (Some("MAIL"), None)] {
                let mut q = found.as_query(text);
                q.command = command.or(q.command);
                q.format = format;
                let got = kb.lookup(&q).map(|m| m.rule.id.as_str());
                assert_eq!(got, best_of_all(&q), "query {q:?}");
                compared += 1;
                by_text += usize::from(got.is_some_and(|id| kb.rules.iter().any(|r| r.id == id && r.pattern.is_some())));
            }
        }
        assert!(by_text > 1000, "only {by_text} of {compared} lookups won by a text rule: the comparison says little");
    }

    /// The split patterns answer as `status_matches` does, exclusions included.
    #[test]
    fn split_status_patterns_agree_with_status_matches() {
        let patterns = ["5.1.1", "x.1.1", "5.7.*", "x.7.*", "!x.1.*", "!5.1.1"];
        let statuses = ["5.1.1", "4.1.1", "5.7.26", "5.1.10", "5.1", "5.1.1.1", "", "5..1", "4.2.2", "5.07.1"];
        for p in patterns {
            let sp = StatusPattern::new(p);
            for s in statuses {
                let plain = p.strip_prefix('!').map_or_else(|| status_matches(p, s), |not| !status_matches(not, s));
                let split = if sp.negated { !split_status(s).is_some_and(|st| sp.matches(st)) } else { split_status(s).is_some_and(|st| sp.matches(st)) };
                assert_eq!(split, plain, "pattern {p:?}, status {s:?}");
            }
        }
    }

    #[test]
    fn status_patterns() {
        assert!(status_matches("5.1.1", "5.1.1"));
        assert!(status_matches("x.1.1", "4.1.1"));
        assert!(status_matches("5.7.*", "5.7.26"));
        assert!(!status_matches("5.7.*", "4.7.26"));
        assert!(!status_matches("5.1.1", "5.1.10"));
        assert!(status_pattern_valid("x.7.*").is_ok());
        assert!(status_pattern_valid("6.1.1").is_err());
        assert!(status_pattern_valid("5.1").is_err());
        assert!(status_pattern_valid("!x.1.*").is_ok());
    }
}
