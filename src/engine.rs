//! The rewriting engine: a pure function from message bytes (+ config) to "leave it" or
//! "change it like this". No I/O; the doors (milter, filter, CLI) apply the outcome and
//! fail open.

use crate::config::Config;
use crate::kb::KnowledgeBase;
use anyhow::Result;

/// What to do with a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Leave the message exactly as it is; the string says why (for the log).
    Pass(String),
    /// Change it.
    Modify(Modification),
}

/// Header edits and an optional new body.
#[derive(Debug, Clone, PartialEq)]
pub struct Modification {
    pub header_edits: Vec<HeaderEdit>,
    /// The new body (everything after the blank line); `None` keeps the body.
    pub body: Option<Vec<u8>>,
    /// One-line summary for the log: mode, recipient domain, reasons.
    pub summary: String,
}

/// A header change. Values are single-line, already sanitised.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderEdit {
    /// Replace the first header of that name, or add it if there is none.
    Set { name: String, value: String },
    /// Add a header (at the end of the header block).
    Add { name: String, value: String },
    /// Remove every header of that name.
    Remove { name: String },
}

/// Everything compiled once at start-up: knowledge base, templates, policy.
pub struct Engine {
    config: Config,
    kb: KnowledgeBase,
}

impl Engine {
    pub fn new(config: Config) -> Result<Engine> {
        let kb = KnowledgeBase::with_files(&config.kb_files)?;
        Ok(Engine { config, kb })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn kb(&self) -> &KnowledgeBase {
        &self.kb
    }

    /// Decide what to do with one message (headers + blank line + body).
    pub fn process(&self, raw: &[u8]) -> Outcome {
        let _ = raw;
        Outcome::Pass("rewriting not implemented yet".into())
    }
}
