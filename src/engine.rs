//! The rewriting engine: a pure function from message bytes (+ config) to "leave it" or
//! "change it like this". No I/O; the doors (milter, filter, CLI) apply the outcome and
//! fail open.
//!
//! detect/parse (dsn) → policy (by the bounce recipient's domain) → classify (kb) per
//! failed or delayed recipient → render (templates) → assemble (rewrite).

use crate::classify::{self, Explanation};
use crate::config::{Config, Mode};
use crate::dsn::{self, Bounce, Detection, RecipientFacts, ReportKind};
use crate::kb::KnowledgeBase;
use crate::policy::{DomainPolicy, Policies};
use crate::render::{Original, RecipientView, View};
use crate::rewrite::{self, encode, headers::Head, Notification, Splice};
use crate::sanitize;
use anyhow::{Context, Result};
use std::panic::AssertUnwindSafe;

/// Header that marks a message plainbounce has handled; its presence stops a second pass.
pub const MARKER: &str = "X-Plainbounce";
/// Header with one recipient's explanation (annotate mode).
pub const EXPLANATION: &str = "X-Plainbounce-Explanation";

/// What to do with a message. `B` is how a new body is given: whole, or as a [`Splice`]
/// of the old message (for doors that keep only the head of a large one in memory).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<B = Vec<u8>> {
    /// Leave the message exactly as it is; the string says why (for the log).
    Pass(String),
    /// Change it.
    Modify(Modification<B>),
}

impl<B> Outcome<B> {
    pub fn map_body<C>(self, f: impl FnOnce(B) -> C) -> Outcome<C> {
        match self {
            Outcome::Pass(why) => Outcome::Pass(why),
            Outcome::Modify(Modification { header_edits, body, summary }) => {
                Outcome::Modify(Modification { header_edits, body: body.map(f), summary })
            }
        }
    }
}

/// Header edits and an optional new body.
#[derive(Debug, Clone, PartialEq)]
pub struct Modification<B = Vec<u8>> {
    pub header_edits: Vec<HeaderEdit>,
    /// The new body (everything after the blank line); `None` keeps the body.
    pub body: Option<B>,
    /// One-line summary for the log: mode, recipient domain, reasons.
    pub summary: String,
}

/// What a door knows of the rest of a message beyond the head it passes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tail {
    pub len: usize,
    /// The rest holds [`rewrite::BOUNDARY_PREFIX`]: a boundary chosen on the head alone
    /// might occur in it.
    pub has_boundary_prefix: bool,
}

/// The answer for the head of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum HeadOutcome {
    Decided(Outcome<Splice>),
    /// The head is not enough (say why): process the whole message.
    NeedsWhole(String),
}

/// A header change. Values are single-line, already sanitised.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderEdit {
    /// Replace the first header of that name, or add it if there is none.
    Set { name: String, value: String },
    /// Add a header (at the top of the header block, after those added before it).
    Add { name: String, value: String },
    /// Remove every header of that name.
    Remove { name: String },
}

/// What a door may know beyond the message bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options<'a> {
    /// The bounce's envelope recipient, if the door knows it (else the To: header is used).
    pub recipient: Option<&'a str>,
    /// Use this domain's policy whatever the recipient (preview).
    pub domain: Option<&'a str>,
    /// Use this language if it is available (preview).
    pub lang: Option<&'a str>,
}

/// Apply a modification to a raw message: header edits, then the new body.
pub fn apply(raw: &[u8], m: &Modification) -> Vec<u8> {
    rewrite::headers::apply(raw, &m.header_edits, m.body.as_deref())
}

/// Everything compiled once at start-up: knowledge base, templates, policy.
pub struct Engine {
    config: Config,
    kb: KnowledgeBase,
    policies: Policies,
}

impl Engine {
    /// Compile the knowledge base, policies and templates, and render every template in
    /// every language once with sample bounces, so that a broken template is refused
    /// here rather than discovered on a real bounce.
    pub fn new(config: Config) -> Result<Engine> {
        // The knowledge base and the templates, the two big parts of start-up, load side
        // by side: a `rewrite` run (one per message as an Exim transport filter) is mostly
        // start-up.
        let (kb, policies) = std::thread::scope(|s| {
            let kb = s.spawn(|| KnowledgeBase::with_files(&config.kb_files));
            let policies = Policies::new(&config);
            (kb.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), policies)
        });
        let (kb, policies) = (kb?, policies?);
        let engine = Engine { config, kb, policies };
        engine.trial_render()?;
        Ok(engine)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn kb(&self) -> &KnowledgeBase {
        &self.kb
    }

    /// The languages notifications for `domain` can be written in.
    pub fn languages(&self, domain: &str) -> Vec<String> {
        self.policies.set(self.policies.for_domain(domain)).languages().map(str::to_string).collect()
    }

    /// Decide what to do with one message (headers + blank line + body).
    pub fn process(&self, raw: &[u8]) -> Outcome {
        self.process_with(raw, &Options::default())
    }

    /// `process` with what the door knows besides the bytes.
    pub fn process_with(&self, raw: &[u8], opts: &Options) -> Outcome {
        self.spliced(raw, opts).map_body(|s| s.apply(raw))
    }

    /// Decide on the first bytes of a message (`head`) when more (`tail`) follow that the
    /// caller keeps elsewhere. A new body is then the head's new start followed by the
    /// original bytes from some offset on, the tail included.
    pub fn process_head(&self, head: &[u8], tail: &Tail, opts: &Options) -> HeadOutcome {
        if tail.len == 0 {
            return HeadOutcome::Decided(self.spliced(head, opts));
        }
        if tail.has_boundary_prefix {
            return HeadOutcome::NeedsWhole("the rest holds a plainbounce boundary".into());
        }
        // Up to the last complete line: a delimiter line cut short could look complete.
        let (head, cut_off) = head.split_at(head.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1));
        if memchr::memmem::find(cut_off, rewrite::BOUNDARY_PREFIX.as_bytes()).is_some() {
            return HeadOutcome::NeedsWhole("the rest holds a plainbounce boundary".into());
        }
        match rewrite::head_suffices(head) {
            Ok(()) => HeadOutcome::Decided(self.spliced(head, opts)),
            Err(why) => HeadOutcome::NeedsWhole(why),
        }
    }

    fn spliced(&self, raw: &[u8], opts: &Options) -> Outcome<Splice> {
        unless_marked(raw, || match dsn::parse(raw) {
            Detection::NotBounce(why) => Outcome::Pass(format!("not a bounce: {why}")),
            Detection::Bounce(b) => self.decide(raw, &b, opts),
        })
    }

    /// `process_with` for a bounce the caller has parsed already.
    pub fn process_bounce(&self, raw: &[u8], bounce: &Bounce, opts: &Options) -> Outcome {
        unless_marked(raw, || self.decide(raw, bounce, opts)).map_body(|s| s.apply(raw))
    }

    fn decide(&self, raw: &[u8], bounce: &Bounce, opts: &Options) -> Outcome<Splice> {
        match bounce.kind {
            ReportKind::Delivery => {}
            ReportKind::Feedback => return Outcome::Pass("feedback report, not a bounce".into()),
            ReportKind::AutoReply => return Outcome::Pass("auto-reply, not a bounce".into()),
        }
        let failing: Vec<&RecipientFacts> = bounce.recipients.iter().filter(|r| needs_explaining(r)).collect();
        if failing.is_empty() {
            return Outcome::Pass("no failed or delayed recipients".into());
        }
        let to = opts.recipient.map(str::to_string).or_else(|| to_address(raw)).or_else(|| bounce.original.from.clone()).unwrap_or_default();
        let to = sanitize::text(&to, 320);
        let domain = opts.domain.map_or_else(|| to.rsplit_once('@').map_or("", |(_, d)| d).to_string(), str::to_string);
        let dp = self.policies.for_domain(domain.trim_end_matches('>'));
        if dp.policy.mode == Mode::Off {
            return Outcome::Pass(format!("policy for {domain:?} is off"));
        }
        if self.policies.skipped(&to) {
            return Outcome::Pass(format!("{to} looks like an automated bounce handler"));
        }
        let lang = self.policies.language(dp, &bounce.original, opts.lang);
        let explained: Vec<(&RecipientFacts, Explanation)> = failing.iter().map(|r| (*r, classify::classify_in(&self.kb, bounce, r))).collect();
        let mut reasons: Vec<&str> = Vec::new();
        for (_, e) in &explained {
            if !reasons.contains(&e.cause.reason.as_str()) {
                reasons.push(&e.cause.reason);
            }
        }
        let reasons = reasons.join(",");
        let summary = format!("{} domain={domain} lang={lang} reason={reasons}", dp.policy.mode.as_str());
        match dp.policy.mode {
            Mode::Annotate => Outcome::Modify(annotation(&explained, &lang, &reasons, summary)),
            _ => match self.rewrite(raw, bounce, dp, &to, &lang, &explained) {
                Ok((mut header_edits, body)) => {
                    header_edits.push(HeaderEdit::Add { name: MARKER.into(), value: format!("rewritten; reason={reasons}") });
                    Outcome::Modify(Modification { header_edits, body: Some(body), summary })
                }
                Err(e) => {
                    tracing::warn!("bounce to {to} left unchanged: {e:#}");
                    Outcome::Pass(format!("error, left unchanged: {e:#}"))
                }
            },
        }
    }

    fn rewrite(
        &self,
        raw: &[u8],
        bounce: &Bounce,
        dp: &DomainPolicy,
        to: &str,
        lang: &str,
        explained: &[(&RecipientFacts, Explanation)],
    ) -> Result<(Vec<HeaderEdit>, Splice)> {
        let set = self.policies.set(dp);
        let view = build_view(bounce, dp, to, lang, explained, |key| set.string(lang, key).unwrap_or_default().to_string());
        let rendered = set.render(&dp.policy.template, &view)?;
        rewrite::assemble(raw, &Notification { text: &rendered.text, html: &rendered.html, lang })
    }

    /// Render each policy's template in each language with two sample bounces: one with
    /// every field filled, one with none of the optional ones.
    fn trial_render(&self) -> Result<()> {
        let samples = [sample_bounce(true), sample_bounce(false)];
        let explained: Vec<Vec<_>> =
            samples.iter().map(|b| b.recipients.iter().map(|r| (r, classify::classify(&self.kb, r))).collect()).collect();
        let mut done: Vec<(usize, &str)> = Vec::new();
        for dp in self.policies.all().filter(|dp| dp.policy.mode == Mode::Rewrite) {
            if done.contains(&(dp.set, dp.policy.template.as_str())) {
                continue;
            }
            done.push((dp.set, dp.policy.template.as_str()));
            let set = self.policies.set(dp);
            for lang in set.languages() {
                for (i, (bounce, explained)) in samples.iter().zip(&explained).enumerate() {
                    let full = i == 0;
                    let mut dp_sample = DomainPolicy { policy: dp.policy.clone(), set: dp.set };
                    if full {
                        dp_sample.policy.helpdesk.get_or_insert_with(|| "helpdesk@example.org".into());
                        dp_sample.policy.helpdesk_url.get_or_insert_with(|| "https://help.example.org/".into());
                        dp_sample.policy.links.push(crate::config::Link { label: "Status".into(), url: "https://status.example.org/".into() });
                    }
                    let view = build_view(bounce, &dp_sample, "sender@example.org", lang, explained, |k| set.string(lang, k).unwrap_or_default().to_string());
                    set.render(&dp.policy.template, &view)
                        .with_context(|| format!("template {:?} in language {lang:?} fails on a sample bounce", dp.policy.template))?;
                }
            }
        }
        Ok(())
    }
}

// The doors share one engine between threads and tasks.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Engine>();
};

/// `f`'s answer, guarded, for a message plainbounce has not handled before (never twice).
fn unless_marked(raw: &[u8], f: impl FnOnce() -> Outcome<Splice>) -> Outcome<Splice> {
    guarded(|| if Head::parse(raw).has(MARKER) { Outcome::Pass("already handled by plainbounce".into()) } else { f() })
}

/// Run `f`; a panic becomes a pass (the door then sends the original on).
fn guarded<B>(f: impl FnOnce() -> Outcome<B>) -> Outcome<B> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(o) => o,
        Err(p) => {
            let what = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default();
            tracing::error!("internal error (panic: {what}); message left unchanged");
            Outcome::Pass(format!("internal error (panic: {what})"))
        }
    }
}

/// Failed and delayed recipients are explained; delivered, relayed, expanded are not.
/// A report that does not say (a non-standard bounce) means failed.
fn needs_explaining(r: &RecipientFacts) -> bool {
    r.action.as_deref().is_none_or(|a| a.eq_ignore_ascii_case("failed") || a.eq_ignore_ascii_case("delayed"))
}

fn is_delayed(r: &RecipientFacts) -> bool {
    r.action.as_deref().is_some_and(|a| a.eq_ignore_ascii_case("delayed"))
}

/// The first address in the To: header.
fn to_address(raw: &[u8]) -> Option<String> {
    let msg = dsn::PARSER.parse_headers(raw)?;
    msg.to()?.first()?.address().map(str::to_string)
}

/// Headers for annotate mode: the marker and one explanation per recipient.
fn annotation<B>(explained: &[(&RecipientFacts, Explanation)], lang: &str, reasons: &str, summary: String) -> Modification<B> {
    let mut header_edits = vec![HeaderEdit::Add { name: MARKER.into(), value: format!("annotated; reason={reasons}") }];
    for (facts, e) in explained {
        let t = e.cause.texts(lang);
        let address = sanitize::text(facts.address.as_deref().unwrap_or("unknown recipient"), 320);
        let status = e.status.as_deref().map(|s| format!("; status={}", sanitize::text(s, 20))).unwrap_or_default();
        let text = sanitize::text(&format!("{}. {}", t.title.trim_end_matches('.'), t.remedy), 300);
        let fields = format!("{address}; reason={}{status};", e.cause.reason);
        // Keep the machine-readable start plain when it can be; encode what is not ASCII.
        let value = if fields.is_ascii() {
            format!("{fields} {}", encode::header_value(&text))
        } else {
            encode::header_value(&format!("{fields} {text}"))
        };
        header_edits.push(HeaderEdit::Add { name: EXPLANATION.into(), value });
    }
    Modification { header_edits, body: None, summary }
}

/// Everything the templates show, with remote text sanitised.
fn build_view(
    bounce: &Bounce,
    dp: &DomainPolicy,
    to: &str,
    lang: &str,
    explained: &[(&RecipientFacts, Explanation)],
    string: impl Fn(&str) -> String,
) -> View {
    let p = &dp.policy;
    let recipients = explained.iter().map(|(f, e)| recipient_view(f, e, lang, &string)).collect::<Vec<_>>();
    let any_failed = recipients.iter().any(|r| r.failed);
    View {
        lang: lang.to_string(),
        organisation: p.organisation.clone(),
        helpdesk: p.helpdesk.clone(),
        helpdesk_url: p.helpdesk_url.clone(),
        links: p.links.clone(),
        has_help: p.helpdesk.is_some() || p.helpdesk_url.is_some() || !p.links.is_empty(),
        sender: to.to_string(),
        original: Original {
            subject: sanitize::opt(bounce.original.subject.as_deref()),
            date: sanitize::opt(bounce.original.date.as_deref()),
            to: sanitize::opt(bounce.original.to.as_deref()),
        },
        reporting_mta: sanitize::opt(bounce.reporting_mta.as_deref()),
        intro_key: if any_failed { "intro_failed" } else { "intro_delayed" },
        recipients,
    }
}

fn recipient_view(f: &RecipientFacts, e: &Explanation, lang: &str, string: &impl Fn(&str) -> String) -> RecipientView {
    let t = e.cause.texts(lang);
    let delayed = is_delayed(f);
    let address = sanitize::opt(f.address.as_deref());
    let remote_mta = sanitize::opt(f.remote_mta.as_deref());
    let reason = e.cause.reason.clone();
    // Without a remote server or a reply, only an unexplained failure suggests the server
    // was never reached: a known cause (a full mailbox, a failed delivery program) says
    // where it failed.
    let unreachable = !delayed
        && (matches!(reason.as_str(), "hostunknown" | "networkerror" | "expired" | "notaccept")
            || (remote_mta.is_none() && e.reply_code.is_none() && e.is_generic()));
    let will_retry_until = sanitize::opt(f.will_retry_until.as_deref());
    let domain = address.as_deref().and_then(|a| a.rsplit_once('@')).map(|(_, d)| d.to_string());
    RecipientView {
        address: address.clone().unwrap_or_else(|| string("someone")),
        action: if delayed { "delayed" } else { "failed" }.into(),
        failed: !delayed,
        delayed,
        title: t.title.clone(),
        explanation: t.explanation.clone(),
        remedy: t.remedy.clone(),
        admin_note: t.admin_note.clone(),
        reason,
        cause: e.cause.id.clone(),
        rule: e.matched().to_string(),
        who: e.cause.who.as_str(),
        who_key: format!("who_{}", e.cause.who.as_str()),
        retry_key: match (delayed, &will_retry_until) {
            (false, _) => "retry_no",
            (true, Some(_)) => "retry_until",
            (true, None) => "retry_yes",
        },
        permanent: e.permanent,
        status: sanitize::opt(e.status.as_deref()),
        reply_code: e.reply_code,
        server: remote_mta.clone().or(domain).unwrap_or_default(),
        remote_mta,
        command: sanitize::opt(f.command.as_deref()),
        diagnostic: sanitize::opt(f.diagnostic.as_deref()),
        last_attempt: sanitize::opt(f.last_attempt.as_deref()),
        will_retry_until,
        refused: !delayed && !unreachable,
        unreachable,
    }
}

/// A bounce for trial renders: every optional field set, or none.
fn sample_bounce(full: bool) -> Bounce {
    let some = |s: &str| full.then(|| s.to_string());
    let failed = RecipientFacts {
        address: some("someone@example.net"),
        original_recipient: some("someone@example.net"),
        action: Some("failed".into()),
        status: some("5.1.1"),
        reply_code: full.then_some(550),
        diagnostic: some("550 5.1.1 <someone@example.net>: Recipient address rejected: User unknown"),
        remote_mta: some("mx.example.net"),
        command: some("RCPT"),
        last_attempt: some("Mon, 3 Jun 2024 10:00:00 +0000"),
        will_retry_until: None,
    };
    let delayed = RecipientFacts {
        action: Some("delayed".into()),
        status: some("4.4.1"),
        will_retry_until: some("Sat, 8 Jun 2024 10:00:00 +0000"),
        diagnostic: some("connect to mx.example.com[192.0.2.1]:25: Connection timed out"),
        ..Default::default()
    };
    let mut b = Bounce { kind: ReportKind::Delivery, format: "sample", recipients: vec![failed, delayed], ..Default::default() };
    if full {
        b.reporting_mta = Some("mail.example.org".into());
        b.original.subject = Some("Sample".into());
        b.original.date = Some("Mon, 3 Jun 2024 09:59:00 +0000".into());
    }
    b
}
