//! Configuration: one TOML file, with an embedded default so the program runs without one.
//! See config/plainbounce.toml for every key, documented.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The embedded default configuration (also installed as the documented example).
pub const EMBEDDED: &str = include_str!("../config/plainbounce.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Milter socket: "inet:PORT@HOST" or "unix:/path".
    #[serde(default = "default_socket")]
    pub socket: String,
    /// Postfix socketmap socket for reply footers (off when absent).
    #[serde(default)]
    pub socketmap: Option<String>,
    /// Messages with a larger body pass through untouched (bytes).
    #[serde(default = "default_max_body")]
    pub max_body: usize,
    /// Time budget for rewriting one message (milliseconds); over it, the message passes.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// tracing filter, e.g. "info" or "plainbounce=debug".
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Directory with templates that override the built-in ones.
    #[serde(default)]
    pub template_dir: Option<PathBuf>,
    /// Knowledge-base files that extend or override the built-in one.
    #[serde(default)]
    pub kb_files: Vec<PathBuf>,
    /// Permissions of a unix milter socket, in octal (e.g. "0660").
    #[serde(default = "default_socket_mode")]
    pub socket_mode: String,
    /// Look only at messages with a null sender (bounces); others pass at MAIL FROM.
    #[serde(default = "default_true")]
    pub only_null_sender: bool,
    /// Milter connections served at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Postfix reply footers: wording and socketmap server limits.
    #[serde(default)]
    pub footer: FooterConfig,
    /// Bounces to addresses matching any of these (case-insensitive) regular expressions
    /// are left alone: they go to automated bounce handlers (VERP, mailing lists).
    #[serde(default = "default_skip_patterns")]
    pub skip_patterns: Vec<String>,
    /// Policy for every domain without its own table.
    #[serde(default)]
    pub default: Policy,
    /// Policies by the bounce recipient's domain (also used for its subdomains); unset
    /// keys fall back to `[default]`.
    #[serde(default)]
    pub domains: BTreeMap<String, Policy>,
}

// Every key has a default (plainbounce.toml(5)), the values config/plainbounce.toml shows;
// a test checks that an empty file and that file give the same configuration.
fn default_socket() -> String {
    "inet:8890@127.0.0.1".into()
}

fn default_max_body() -> usize {
    10 * 1024 * 1024
}

fn default_timeout_ms() -> u64 {
    2000
}

fn default_log_level() -> String {
    "info".into()
}

fn default_socket_mode() -> String {
    "0660".into()
}

fn default_true() -> bool {
    true
}

fn default_max_connections() -> usize {
    100
}

/// `[footer]`: the texts appended to Postfix's own rejections (socketmap and static table).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FooterConfig {
    /// Language of the map name `footer` (`footer-LANG` picks another one per listener).
    pub lang: String,
    /// "short": title and remedy; "full": title, explanation and remedy.
    pub style: FooterStyle,
    /// Time a client has to send one complete request once it has started (milliseconds).
    pub request_timeout_ms: u64,
    /// An idle connection is closed after this long (milliseconds).
    pub idle_timeout_ms: u64,
    /// Connections served at once; further ones are closed at once.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FooterStyle {
    Short,
    Full,
}

impl Default for FooterConfig {
    fn default() -> Self {
        FooterConfig {
            lang: "en".into(),
            style: FooterStyle::Short,
            request_timeout_ms: 5_000,
            idle_timeout_ms: 60_000,
            max_connections: 64,
        }
    }
}

/// What to do with bounces for one domain. Every key is optional; see [`Policy::resolve`].
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub mode: Option<Mode>,
    /// "auto" (from the returned message's Content-Language / Accept-Language) or a tag.
    pub language: Option<String>,
    /// Language when "auto" finds none that is available.
    pub fallback_language: Option<String>,
    /// Template name: files `NAME.html.hbs` / `NAME.txt.hbs` (or `NAME.LANG.html.hbs`).
    pub template: Option<String>,
    /// Templates for this domain, overriding `template_dir` and the built-in ones.
    pub template_dir: Option<PathBuf>,
    /// Organisation named in the notification ("Example Corp").
    pub organisation: Option<String>,
    /// How to reach the helpdesk (an address, phone number, ...).
    pub helpdesk: Option<String>,
    /// A web page with help.
    pub helpdesk_url: Option<String>,
    /// Further links shown at the end.
    pub links: Option<Vec<Link>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Replace the human-readable part.
    Rewrite,
    /// Only add X-Plainbounce headers with the explanation.
    Annotate,
    /// Leave the bounce alone.
    Off,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Rewrite => "rewrite",
            Mode::Annotate => "annotate",
            Mode::Off => "off",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub label: String,
    pub url: String,
}

/// A policy with every key decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub mode: Mode,
    /// `None` for "auto".
    pub language: Option<String>,
    pub fallback_language: String,
    pub template: String,
    /// Template directories, lowest priority first (global, then domain).
    pub template_dirs: Vec<PathBuf>,
    pub organisation: String,
    pub helpdesk: Option<String>,
    pub helpdesk_url: Option<String>,
    pub links: Vec<Link>,
}

impl Policy {
    /// This policy over `base`, over the built-in defaults.
    pub fn resolve(&self, base: &Policy, global_template_dir: Option<&Path>) -> Resolved {
        let pick = |f: fn(&Policy) -> Option<String>, default: &str| f(self).or_else(|| f(base)).unwrap_or_else(|| default.to_string());
        let language = pick(|p| p.language.clone(), "auto");
        let template_dirs = [global_template_dir.map(Path::to_path_buf), base.template_dir.clone(), self.template_dir.clone()]
            .into_iter()
            .flatten()
            .fold(Vec::new(), |mut v: Vec<PathBuf>, d| {
                if !v.contains(&d) {
                    v.push(d);
                }
                v
            });
        Resolved {
            mode: self.mode.or(base.mode).unwrap_or(Mode::Rewrite),
            language: (!language.eq_ignore_ascii_case("auto")).then(|| language.to_ascii_lowercase()),
            fallback_language: pick(|p| p.fallback_language.clone(), "en").to_ascii_lowercase(),
            template: pick(|p| p.template.clone(), "bounce"),
            template_dirs,
            organisation: pick(|p| p.organisation.clone(), ""),
            helpdesk: self.helpdesk.clone().or_else(|| base.helpdesk.clone()).filter(|s| !s.is_empty()),
            helpdesk_url: self.helpdesk_url.clone().or_else(|| base.helpdesk_url.clone()).filter(|s| !s.is_empty()),
            links: self.links.clone().or_else(|| base.links.clone()).unwrap_or_default(),
        }
    }
}

/// Addresses of automated bounce handlers: `bounce-...@`, `bounces+...@`, mailing-list
/// `...-bounces@` / `...-bounces+...@`, and VERP `local+user=domain@`.
pub fn default_skip_patterns() -> Vec<String> {
    [r"^bounces?[-+=._]", r"-bounces?([-+=.][^@]*)?@", r"^[^@]*\+[^@]*=[^@]*@"].iter().map(|s| s.to_string()).collect()
}

impl Config {
    /// The embedded default.
    pub fn embedded() -> Config {
        Self::parse(EMBEDDED, "embedded default").expect("embedded default config is valid")
    }

    /// Read and validate a file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, name: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).with_context(|| format!("{name}: invalid configuration"))?;
        config.validate().with_context(|| format!("{name}: invalid configuration"))?;
        Ok(config)
    }

    /// Checks that need more than the TOML shape: regexes, language tags, names.
    fn validate(&self) -> Result<()> {
        for p in &self.skip_patterns {
            regex::RegexBuilder::new(p).case_insensitive(true).build().with_context(|| format!("skip_patterns: invalid regular expression {p:?}"))?;
        }
        check_policy("[default]", &self.default)?;
        for (domain, policy) in &self.domains {
            if domain.is_empty() || domain.contains(['@', ' ', '/']) {
                bail!("[domains.{domain:?}]: not a domain name");
            }
            check_policy(&format!("[domains.{domain:?}]"), policy)?;
        }
        Ok(())
    }

    /// The policy for a domain: its own table, else the nearest parent domain's, else
    /// `[default]`.
    pub fn policy_for(&self, domain: &str) -> Resolved {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut d = domain.as_str();
        loop {
            if let Some(p) = self.domains.iter().find(|(k, _)| k.eq_ignore_ascii_case(d)).map(|(_, p)| p) {
                return p.resolve(&self.default, self.template_dir.as_deref());
            }
            match d.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => d = parent,
                _ => return self.default.resolve(&Policy::default(), self.template_dir.as_deref()),
            }
        }
    }
}

fn check_policy(table: &str, p: &Policy) -> Result<()> {
    for (key, tag) in [("language", &p.language), ("fallback_language", &p.fallback_language)] {
        if let Some(tag) = tag {
            let ok = (key == "language" && tag.eq_ignore_ascii_case("auto"))
                || (2..=8).contains(&tag.len()) && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !ok {
                bail!("{table}: {key} = {tag:?} is not a language tag (e.g. \"en\", \"de\"{})", if key == "language" { " or \"auto\"" } else { "" });
            }
        }
    }
    if let Some(t) = &p.template {
        if t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')) {
            bail!("{table}: template = {t:?}: use letters, digits, '-' and '_' only");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "socket = \"inet:1@127.0.0.1\"\nmax_body = 1\ntimeout_ms = 1\nlog_level = \"info\"\n";

    #[test]
    fn embedded_default_parses() {
        let c = Config::embedded();
        assert_eq!(c.policy_for("example.com").mode, Mode::Rewrite);
        assert!(!c.skip_patterns.is_empty());
    }

    #[test]
    fn domain_policy_falls_back() {
        let text = format!(
            "{BASE}[default]\norganisation = \"Org\"\nlanguage = \"fr\"\n[domains.\"example.org\"]\nmode = \"annotate\"\nhelpdesk = \"help@example.org\"\n"
        );
        let c = Config::parse(&text, "t").unwrap();
        let p = c.policy_for("Mail.Example.ORG");
        assert_eq!(p.mode, Mode::Annotate);
        assert_eq!(p.organisation, "Org");
        assert_eq!(p.language.as_deref(), Some("fr"));
        assert_eq!(p.helpdesk.as_deref(), Some("help@example.org"));
        let other = c.policy_for("example.net");
        assert_eq!(other.mode, Mode::Rewrite);
        assert_eq!(other.helpdesk, None);
    }

    #[test]
    fn an_empty_file_is_the_documented_default() {
        let (mut empty, shipped) = (Config::parse("", "empty").unwrap(), Config::embedded());
        // `[default]` unset resolves to the values the file writes out.
        assert_eq!(empty.policy_for("example.com"), shipped.policy_for("example.com"));
        empty.default = shipped.default.clone();
        assert_eq!(format!("{empty:?}"), format!("{shipped:?}"));
        let one = Config::parse("timeout_ms = 500\n", "one key").unwrap();
        assert_eq!((one.timeout_ms, one.max_body, one.socket.as_str()), (500, 10485760, "inet:8890@127.0.0.1"));
    }

    #[test]
    fn clear_errors() {
        let err = |extra: &str| format!("{:#}", Config::parse(&format!("{BASE}{extra}"), "t").unwrap_err());
        assert!(err("colour = 1\n").contains("colour"), "{}", err("colour = 1\n"));
        assert!(err("skip_patterns = [\"(\"]\n").contains("skip_patterns"));
        assert!(err("[default]\nlanguage = \"english!\"\n").contains("language"));
        assert!(err("[default]\nmode = \"loud\"\n").contains("loud"));
        assert!(err("[domains.\"a.b\"]\nlinks = [{ label = \"x\" }]\n").contains("url"));
    }
}
