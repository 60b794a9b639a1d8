//! The knowledge base's vocabulary: causes (what went wrong and what to do) and the
//! rules that recognise them.

use serde::{Deserialize, Serialize};

/// Who has to act to get the message delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Who {
    /// The person who sent the message (fix the address, log in, shrink the message ...).
    Sender,
    /// The sender's mail administrator or provider (DNS, SPF/DKIM, blocklists, relay set-up).
    SenderAdmin,
    /// The recipient or the recipient's mail administrator.
    RecipientSide,
    /// Nobody: the server keeps trying on its own.
    Nobody,
}

impl Who {
    pub fn as_str(self) -> &'static str {
        match self {
            Who::Sender => "sender",
            Who::SenderAdmin => "sender_admin",
            Who::RecipientSide => "recipient_side",
            Who::Nobody => "nobody",
        }
    }
}

/// The human texts of a cause, in one language.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Texts {
    /// Short headline: "The address does not exist".
    pub title: String,
    /// What happened, for the sender, without jargon.
    pub explanation: String,
    /// What the sender can do.
    pub remedy: String,
    /// What an administrator should check.
    pub admin_note: String,
}

/// One reason a delivery can fail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cause {
    pub id: String,
    /// Sisimai's reason vocabulary (userunknown, norelaying, mailboxfull, ...).
    pub reason: String,
    pub who: Who,
    /// Default when the reply's class (4xx/5xx) does not say.
    pub permanent: bool,
    /// English texts (always present).
    pub en: Texts,
    /// Translations, by language tag ("de", "fr", "es").
    pub translations: Vec<(String, Texts)>,
}

impl Cause {
    /// Texts in `lang`, or English when there is no translation.
    pub fn texts(&self, lang: &str) -> &Texts {
        self.translations
            .iter()
            .find(|(l, _)| l.eq_ignore_ascii_case(lang))
            .map(|(_, t)| t)
            .unwrap_or(&self.en)
    }
}

/// How specific a rule's evidence is; the most specific match wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// A generic enhanced status (X.0.0: "other undefined status"), which says less
    /// than the basic reply code beside it.
    GenericStatus,
    /// Basic reply code only (RFC 5321).
    ReplyCode,
    /// Enhanced status code (RFC 3463 / 5248 registry).
    StatusCode,
    /// The context of the reply: the SMTP stage it came at (a refusal of MAIL FROM is
    /// about the sender, one at connection or HELO about the sending server) or the kind
    /// of system that reported it, whatever its codes say.
    Context,
    /// Text of the reply (provider or MTA wording), possibly with codes.
    Text,
}

/// A rule: evidence that points to a cause.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub id: String,
    pub cause: String,
    /// Case-insensitive regular expression over the diagnostic text.
    pub pattern: Option<String>,
    /// Enhanced status: "5.1.1", "x.1.1" (any class) or "5.7.*" / "x.7.*"; with "!" in
    /// front, any status but those (or none).
    pub status: Option<String>,
    /// Basic reply codes that the rule requires (any of).
    pub codes: Vec<u16>,
    /// SMTP commands after which the reply must have come (any of; upper case:
    /// CONN, HELO, MAIL, RCPT, DATA, or NONE when the report names none). Empty: any.
    pub commands: Vec<String>,
    /// Bounce formats (as `dsn` names them: "googlegroups", "qmail", ...) the report must
    /// have (any of). Empty: any.
    pub formats: Vec<String>,
    /// Provider or MTA the wording comes from (informational).
    pub provider: Option<String>,
    /// Registry or source name (e.g. "Bad destination mailbox address").
    pub name: Option<String>,
    /// Tie-breaker among rules of equal specificity (higher wins).
    pub priority: i32,
    /// Texts that must match this rule (checked by the test suite).
    pub examples: Vec<String>,
}

impl Rule {
    pub fn evidence(&self) -> Evidence {
        if self.pattern.is_some() {
            Evidence::Text
        } else if !self.commands.is_empty() || !self.formats.is_empty() {
            Evidence::Context
        } else if self.status.as_deref().is_some_and(|s| s.ends_with(".0.0") || s.starts_with('!')) {
            Evidence::GenericStatus
        } else if self.status.is_some() {
            Evidence::StatusCode
        } else {
            Evidence::ReplyCode
        }
    }
}
