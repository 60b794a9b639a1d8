//! Configuration: one TOML file, with an embedded default so the program runs without one.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The embedded default configuration (also installed as the documented example).
pub const EMBEDDED: &str = include_str!("../config/plainbounce.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Milter socket: "inet:PORT@HOST" or "unix:/path".
    pub socket: String,
    /// Postfix socketmap socket for reply footers (off when absent).
    #[serde(default)]
    pub socketmap: Option<String>,
    /// Messages with a larger body pass through untouched (bytes).
    pub max_body: usize,
    /// Time budget for rewriting one message (milliseconds); over it, the message passes.
    pub timeout_ms: u64,
    /// tracing filter, e.g. "info" or "plainbounce=debug".
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
        toml::from_str(text).with_context(|| format!("{name}: invalid configuration"))
    }
}
