//! Per-domain policy, compiled once: which mode, templates and language apply to a bounce,
//! and which recipients are automated bounce handlers to leave alone.

use crate::config::{Config, Mode, Resolved};
use crate::dsn::OriginalMessage;
use crate::render::TemplateSet;
use anyhow::{bail, Context, Result};
use regex::{RegexSet, RegexSetBuilder};
use std::collections::HashMap;
use std::path::PathBuf;

/// A resolved policy and the template set it renders with.
pub struct DomainPolicy {
    pub policy: Resolved,
    pub set: usize,
}

/// Everything per-domain, ready for lookups on the per-message path.
pub struct Policies {
    skip: RegexSet,
    sets: Vec<TemplateSet>,
    default: DomainPolicy,
    /// Lower-case domain → policy.
    domains: HashMap<String, DomainPolicy>,
}

impl Policies {
    pub fn new(config: &Config) -> Result<Policies> {
        let skip = RegexSetBuilder::new(&config.skip_patterns).case_insensitive(true).build().context("skip_patterns")?;
        let mut sets = Vec::new();
        let mut set_dirs: Vec<Vec<PathBuf>> = Vec::new();
        let mut compile = |name: &str, policy: Resolved| -> Result<DomainPolicy> {
            let set = match set_dirs.iter().position(|d| *d == policy.template_dirs) {
                Some(i) => i,
                None => {
                    sets.push(TemplateSet::load(&policy.template_dirs).with_context(|| format!("{name}: templates"))?);
                    set_dirs.push(policy.template_dirs.clone());
                    sets.len() - 1
                }
            };
            check(name, &policy, &sets[set])?;
            Ok(DomainPolicy { policy, set })
        };
        let default = compile("[default]", config.policy_for(""))?;
        let mut domains = HashMap::new();
        for domain in config.domains.keys() {
            let name = format!("[domains.{domain:?}]");
            domains.insert(domain.to_ascii_lowercase(), compile(&name, config.policy_for(domain))?);
        }
        Ok(Policies { skip, sets, default, domains })
    }

    /// The policy for a domain: its own, the nearest parent domain's, or the default.
    pub fn for_domain(&self, domain: &str) -> &DomainPolicy {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut d = domain.as_str();
        loop {
            if let Some(p) = self.domains.get(d) {
                return p;
            }
            match d.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => d = parent,
                _ => return &self.default,
            }
        }
    }

    /// All policies, the default first (for validation and trial renders).
    pub fn all(&self) -> impl Iterator<Item = &DomainPolicy> {
        std::iter::once(&self.default).chain(self.domains.values())
    }

    pub fn set(&self, p: &DomainPolicy) -> &TemplateSet {
        &self.sets[p.set]
    }

    /// Does this address belong to an automated bounce handler?
    pub fn skipped(&self, address: &str) -> bool {
        self.skip.is_match(address)
    }

    /// The language for a notification: forced (preview), the domain's, the returned
    /// message's Content-Language, then its Accept-Language, then the fallback.
    pub fn language(&self, p: &DomainPolicy, original: &OriginalMessage, forced: Option<&str>) -> String {
        let set = self.set(p);
        let available = |tag: &str| {
            let primary = tag.split(['-', '_']).next().unwrap_or("").trim().to_ascii_lowercase();
            set.has_language(&primary).then_some(primary)
        };
        forced
            .and_then(available)
            .or_else(|| p.policy.language.as_deref().and_then(available))
            .or_else(|| original.content_language.as_deref().and_then(|v| v.split(',').find_map(available)))
            .or_else(|| original.accept_language.as_deref().and_then(|v| accept_language(v).into_iter().find_map(available)))
            .unwrap_or_else(|| p.policy.fallback_language.clone())
    }
}

/// Language ranges of an Accept-Language value, best first (RFC 9110 §12.5.4).
fn accept_language(value: &str) -> Vec<&str> {
    let mut ranges: Vec<(u16, usize, &str)> = value
        .split(',')
        .enumerate()
        .filter_map(|(i, item)| {
            let mut parts = item.split(';');
            let tag = parts.next()?.trim();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (!tag.is_empty() && tag != "*" && q > 0.0).then_some(((q * 1000.0) as u16, i, tag))
        })
        .collect();
    ranges.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    ranges.into_iter().map(|(_, _, t)| t).collect()
}

/// A policy must name languages and a template its set has.
fn check(name: &str, p: &Resolved, set: &TemplateSet) -> Result<()> {
    if p.mode == Mode::Off {
        return Ok(());
    }
    let langs = || set.languages().collect::<Vec<_>>().join(", ");
    for lang in p.language.iter().chain([&p.fallback_language]) {
        if !set.has_language(lang) {
            bail!("{name}: language {lang:?} has no strings (available: {}; add lang/{lang}.toml to the template directory)", langs());
        }
    }
    if !set.has_template(&p.template) {
        bail!("{name}: template {:?} not found: need {0}.txt.hbs and {0}.html.hbs in {1}", p.template, describe_dirs(&p.template_dirs));
    }
    Ok(())
}

fn describe_dirs(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "the built-in templates".into();
    }
    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_order() {
        assert_eq!(accept_language("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.95, *;q=0.5"), vec!["fr-CH", "de", "fr", "en"]);
        assert_eq!(accept_language("es;q=0, de"), vec!["de"]);
    }

    #[test]
    fn language_choice() {
        let policies = Policies::new(&Config::embedded()).unwrap();
        let p = policies.for_domain("example.com");
        let mut orig = OriginalMessage::default();
        assert_eq!(policies.language(p, &orig, None), "en");
        orig.accept_language = Some("nl, fr-FR;q=0.8".into());
        assert_eq!(policies.language(p, &orig, None), "fr");
        orig.content_language = Some("de-AT".into());
        assert_eq!(policies.language(p, &orig, None), "de");
        assert_eq!(policies.language(p, &orig, Some("es")), "es");
        assert_eq!(policies.language(p, &orig, Some("xx")), "de");
    }

    #[test]
    fn default_skip_patterns() {
        let policies = Policies::new(&Config::embedded()).unwrap();
        for a in ["bounces+123-abc=example.org@lists.example.net", "bounce-42-user=example.org@esp.example", "mylist-bounces@lists.example.org", "mylist-bounces+bob=example.org@lists.example.org", "news+bob=example.org@example.net"] {
            assert!(policies.skipped(a), "{a}");
        }
        for a in ["bob@example.org", "bob+tag@example.org", "bouncer@example.org", "anna.bounce@example.org"] {
            assert!(!policies.skipped(a), "{a}");
        }
    }
}
