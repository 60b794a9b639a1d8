//! Measuring bounce understanding against a labelled corpus (`labels.jsonl` beside an
//! `emails/` folder, see ../shared/corpus/README.md): recipients found, status and reason
//! agreement, and how often a specific cause (not the generic fallback) was found.

use crate::classify::{self, GENERIC};
use crate::dsn::{self, Bounce, Detection, RecipientFacts, ReportKind};
use crate::kb::KnowledgeBase;
use anyhow::{Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Reference labels believed wrong, with the evidence. They are still counted as they
/// are (the figures do not bend to them); the report lists them so nobody tunes to them.
pub const LABEL_NOTES: &[(&str, &str)] = &[(
    "lhost-office365-04.eml",
    "the reference names otsu-sakaba-hunter-nyaaaaaaan@ezweb.ne.jp, which appears only inside a mangled \
     mailto: link; Final-Recipient, the notice text and the returned message all name \
     otsu-sakaba-hunter-neko-nyaaaaaaan@ezweb.ne.jp",
)];

/// Reference *reasons* believed wrong, with the evidence (most are replies whose twin,
/// word for word, carries another label in the same corpus). The figures are given both
/// with all labels and without these; both are printed.
pub const REASON_DISPUTES: &[(&str, &str)] = &[
    (
        "rhost-yahooinc-02.eml",
        "labelled rejected; the same [TSS04] reply (\"temporarily deferred due to unexpected volume or user \
         complaints\") in lhost-opensmtpd-13.eml is labelled badreputation, which is what TSS04 means",
    ),
    (
        "rhost-microsoft-06.eml",
        "labelled securityerror; 5.7.515 says the sending domain does not meet the required authentication \
         level (SPF/DKIM/DMARC), i.e. authfailure",
    ),
    ("rhost-zoho-03.eml", "labelled securityerror; the reply says \"Email flagged as Spam\", i.e. spamdetected"),
    (
        "lhost-exim-37.eml",
        "labelled hostunknown; the domain that does not exist is the sender's (refused at MAIL FROM), and the \
         same reply in lhost-exim-51.eml is labelled rejected",
    ),
    (
        "lhost-sendmail-21.eml",
        "labelled blocked; \"Deferred: Connection refused by mx...\" until the queue gave up is a connection \
         failure that expired, not a refusal of the sender",
    ),
    (
        "lhost-powermta-01.eml",
        "labelled suspend; the identical reply \"550 5.2.1 <addr>... User Unknown\" is labelled userunknown in \
         lhost-postfix-57.eml and filtered in lhost-messagingserver-06.eml and lhost-amazonworkmail-02.eml: \
         one reply, three labels",
    ),
    ("lhost-messagingserver-06.eml", "labelled filtered; see lhost-powermta-01.eml: one reply, three labels"),
    ("lhost-amazonworkmail-02.eml", "labelled filtered; see lhost-powermta-01.eml: one reply, three labels"),
];

/// One line of labels.jsonl: a reference recipient of one file.
#[derive(Debug, Clone, Deserialize)]
pub struct Label {
    pub file: String,
    pub recipient: Option<String>,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub replycode: String,
    pub reason: Option<String>,
}

impl Label {
    /// The reference names no recipient: null, or a placeholder of the reference tool
    /// (addresses in the reserved `.invalid` domain, used when the report names none).
    pub fn recipient_unnamed(&self) -> bool {
        self.recipient.as_deref().is_none_or(|r| r.to_ascii_lowercase().ends_with(".invalid"))
    }

    /// Negatives live in `emails/negatives/`.
    pub fn is_negative(&self) -> bool {
        self.file.starts_with("negatives/")
    }
}

/// The reason a recipient got, the cause and the rule that decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub reason: String,
    pub cause: String,
    pub matched: String,
    /// The enhanced status the explanation rests on (the remote server's own code when the
    /// diagnostic has one, else the report's Status field).
    pub status: Option<String>,
}

impl Verdict {
    pub fn is_generic(&self) -> bool {
        self.matched == GENERIC
    }
}

/// What plainbounce made of one reference recipient.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub label: Label,
    pub found: bool,
    /// `None` when the reference gives no status.
    pub status_agrees: Option<bool>,
    pub reason_agrees: bool,
    /// The reference reason is in `REASON_DISPUTES`.
    pub reason_disputed: bool,
    pub non_generic: bool,
    pub got_status: Option<String>,
    pub verdict: Option<Verdict>,
    pub diagnostic: Option<String>,
    pub got_address: Option<String>,
}

/// A file whose detection was wrong (negatives read as bounces, wrong report kind, ...).
#[derive(Debug, Clone)]
pub struct Misread {
    pub file: String,
    pub expected: String,
    pub got: String,
}

/// The whole evaluation.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    pub outcomes: Vec<Outcome>,
    pub negatives: usize,
    pub negatives_misread: Vec<Misread>,
    pub wrong_kind: Vec<Misread>,
    pub files: usize,
    pub unreadable: Vec<String>,
}

/// Figures for one group of reference recipients.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    pub recipients: usize,
    pub found: usize,
    pub status_compared: usize,
    pub status_agree: usize,
    pub reason_agree: usize,
    /// Recipients whose reference reason is not disputed, and how many of those agree.
    pub undisputed: usize,
    pub undisputed_agree: usize,
    pub non_generic: usize,
}

impl Figures {
    fn add(&mut self, o: &Outcome) {
        self.recipients += 1;
        self.found += usize::from(o.found);
        if let Some(a) = o.status_agrees {
            self.status_compared += 1;
            self.status_agree += usize::from(a);
        }
        self.reason_agree += usize::from(o.reason_agrees);
        if !o.reason_disputed {
            self.undisputed += 1;
            self.undisputed_agree += usize::from(o.reason_agrees);
        }
        self.non_generic += usize::from(o.non_generic);
    }

    pub fn found_rate(&self) -> f64 {
        ratio(self.found, self.recipients)
    }
    pub fn status_rate(&self) -> f64 {
        ratio(self.status_agree, self.status_compared)
    }
    pub fn reason_rate(&self) -> f64 {
        ratio(self.reason_agree, self.recipients)
    }
    /// Reason agreement over the labels not in `REASON_DISPUTES`.
    pub fn undisputed_reason_rate(&self) -> f64 {
        ratio(self.undisputed_agree, self.undisputed)
    }
    pub fn non_generic_rate(&self) -> f64 {
        ratio(self.non_generic, self.recipients)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

impl Evaluation {
    /// Figures over all (non-negative) reference recipients.
    pub fn overall(&self) -> Figures {
        let mut f = Figures::default();
        self.outcomes.iter().for_each(|o| f.add(o));
        f
    }

    /// Figures per reference reason.
    pub fn per_reason(&self) -> BTreeMap<String, Figures> {
        let mut m: BTreeMap<String, Figures> = BTreeMap::new();
        for o in &self.outcomes {
            let reason = o.label.reason.clone().unwrap_or_else(|| "(none)".into());
            m.entry(reason).or_default().add(o);
        }
        m
    }

    /// The summary table (Markdown).
    pub fn summary_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "| reason | recipients | found | status agrees | reason agrees | non-generic cause |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
        for (reason, f) in self.per_reason() {
            row(&mut s, &reason, &f);
        }
        row(&mut s, "**overall**", &self.overall());
        s
    }

    /// The full report: summary, misreads and every disagreement (Markdown).
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let o = self.overall();
        let _ = writeln!(s, "## Summary\n");
        let _ = writeln!(
            s,
            "{} files, {} reference recipients, {} negatives.\n",
            self.files, o.recipients, self.negatives
        );
        let _ = writeln!(s, "- recipients found: {}", pct(o.found, o.recipients));
        let _ = writeln!(s, "- status agreement: {} (of recipients whose reference gives a status)", pct(o.status_agree, o.status_compared));
        let _ = writeln!(s, "- reason agreement: {} with every label", pct(o.reason_agree, o.recipients));
        let _ = writeln!(
            s,
            "- reason agreement: {} without the {} disputed labels listed below",
            pct(o.undisputed_agree, o.undisputed),
            o.recipients - o.undisputed
        );
        let _ = writeln!(s, "- non-generic cause: {}", pct(o.non_generic, o.recipients));
        let _ = writeln!(s, "- negatives read as bounces: {} of {}", self.negatives_misread.len(), self.negatives);
        let _ = writeln!(s, "- files detected as the wrong kind: {}", self.wrong_kind.len());
        let _ = writeln!(s, "- unreadable files: {}\n", self.unreadable.len());
        let _ = writeln!(s, "{}", self.summary_table());
        let _ = writeln!(s, "## Reference labels believed wrong ({})\n", LABEL_NOTES.len());
        let _ = writeln!(s, "Counted as labelled all the same.\n");
        for (file, note) in LABEL_NOTES {
            let _ = writeln!(s, "- {file}: {note}");
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "## Reference reasons disputed ({})\n", REASON_DISPUTES.len());
        let _ = writeln!(s, "Counted both ways: in the figures with every label, and left out of the other.\n");
        for (file, note) in REASON_DISPUTES {
            let _ = writeln!(s, "- {file}: {note}");
        }
        let _ = writeln!(s);
        misreads(&mut s, "Negatives read as bounces", &self.negatives_misread);
        misreads(&mut s, "Files detected as the wrong kind", &self.wrong_kind);
        self.disagreements(&mut s, "Reference recipients not found", |o| !o.found);
        self.disagreements(&mut s, "Status disagreements", |o| o.found && o.status_agrees == Some(false));
        self.disagreements(&mut s, "Reason disagreements", |o| o.found && !o.reason_agrees);
        s
    }

    fn disagreements(&self, s: &mut String, title: &str, pick: impl Fn(&Outcome) -> bool) {
        let rows: Vec<&Outcome> = self.outcomes.iter().filter(|o| pick(o)).collect();
        let _ = writeln!(s, "## {title} ({})\n", rows.len());
        if rows.is_empty() {
            let _ = writeln!(s, "None.\n");
            return;
        }
        let _ = writeln!(s, "| file | recipient | expected | got | rule matched | diagnostic |");
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        for o in rows {
            let expected = format!(
                "{} {}",
                o.label.reason.as_deref().unwrap_or("-"),
                if o.label.status.is_empty() { "-" } else { &o.label.status }
            );
            let got = match &o.verdict {
                Some(v) => format!("{} {}", v.reason, o.got_status.as_deref().unwrap_or("-")),
                None => "-".into(),
            };
            let recipient = match (&o.label.recipient, &o.got_address) {
                (Some(r), Some(g)) if !g.eq_ignore_ascii_case(r) => format!("{r} (got {g})"),
                (Some(r), _) => r.clone(),
                (None, Some(g)) => format!("(unnamed; got {g})"),
                (None, None) => "(unnamed)".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                cell(&o.label.file),
                cell(&recipient),
                cell(&expected),
                cell(&got),
                cell(o.verdict.as_ref().map_or("-", |v| v.matched.as_str())),
                cell(&short(o.diagnostic.as_deref().unwrap_or("-"), 160)),
            );
        }
        let _ = writeln!(s);
    }
}

fn misreads(s: &mut String, title: &str, list: &[Misread]) {
    let _ = writeln!(s, "## {title} ({})\n", list.len());
    if list.is_empty() {
        let _ = writeln!(s, "None.\n");
        return;
    }
    let _ = writeln!(s, "| file | expected | got |\n|---|---|---|");
    for m in list {
        let _ = writeln!(s, "| {} | {} | {} |", cell(&m.file), cell(&m.expected), cell(&m.got));
    }
    let _ = writeln!(s);
}

fn row(s: &mut String, name: &str, f: &Figures) {
    let _ = writeln!(
        s,
        "| {name} | {} | {} | {} | {} | {} |",
        f.recipients,
        pct(f.found, f.recipients),
        pct(f.status_agree, f.status_compared),
        pct(f.reason_agree, f.recipients),
        pct(f.non_generic, f.recipients),
    );
}

fn pct(a: usize, b: usize) -> String {
    if b == 0 {
        "-".into()
    } else {
        format!("{:.1}% ({a}/{b})", 100.0 * a as f64 / b as f64)
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max).collect();
    format!("{cut}…")
}

/// The corpus folder: `$PLAINBOUNCE_CORPUS` when set (and then only it), else
/// `../shared/corpus` beside the crate, else `/work/shared/corpus`. The error says where
/// it looked.
pub fn locate_corpus() -> Result<PathBuf, String> {
    let has_labels = |p: &Path| p.join("labels.jsonl").is_file();
    if let Some(p) = std::env::var_os("PLAINBOUNCE_CORPUS") {
        let p = PathBuf::from(p);
        return if has_labels(&p) {
            Ok(p)
        } else {
            Err(format!("PLAINBOUNCE_CORPUS={} has no labels.jsonl", p.display()))
        };
    }
    let candidates = [Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"), PathBuf::from("/work/shared/corpus")];
    candidates.iter().find(|c| has_labels(c)).cloned().ok_or_else(|| {
        let tried: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
        format!(
            "bounce corpus not found (looked in {}); set PLAINBOUNCE_CORPUS to a folder with labels.jsonl and emails/",
            tried.join(", ")
        )
    })
}

/// Read labels.jsonl.
pub fn load_labels(path: &Path) -> Result<Vec<Label>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}:{}: bad label", path.display(), i + 1)))
        .collect()
}

/// The reason plainbounce gives one recipient of a report (see `classify::classify_in`).
pub fn verdict(kb: &KnowledgeBase, bounce: &Bounce, facts: &RecipientFacts) -> Verdict {
    let e = classify::classify_in(kb, bounce, facts);
    Verdict { reason: e.cause.reason.clone(), cause: e.cause.id.clone(), matched: e.matched(), status: e.status.clone() }
}

/// Evaluate the corpus at `dir` (holding labels.jsonl and emails/).
pub fn evaluate(dir: &Path, kb: &KnowledgeBase) -> Result<Evaluation> {
    let labels = load_labels(&dir.join("labels.jsonl"))?;
    let mut by_file: BTreeMap<String, Vec<Label>> = BTreeMap::new();
    for l in labels {
        by_file.entry(l.file.clone()).or_default().push(l);
    }
    let mut ev = Evaluation::default();
    for (file, labels) in by_file {
        ev.files += 1;
        let raw = match std::fs::read(dir.join("emails").join(&file)) {
            Ok(r) => r,
            Err(e) => {
                ev.unreadable.push(format!("{file}: {e}"));
                continue;
            }
        };
        let detection = parse_file(&raw);
        if labels.iter().all(Label::is_negative) {
            ev.negatives += 1;
            if let Detection::Bounce(b) = &detection {
                ev.negatives_misread.push(Misread { file, expected: "not a bounce".into(), got: describe(b) });
            }
            continue;
        }
        check_kind(&mut ev, &file, &labels, &detection);
        let bounce = match &detection {
            Detection::Bounce(b) => Some(b),
            Detection::NotBounce(_) => None,
        };
        let mut used = vec![false; bounce.map_or(0, |b| b.recipients.len())];
        for label in labels {
            ev.outcomes.push(outcome(kb, label, bounce, &mut used));
        }
    }
    Ok(ev)
}

/// A corpus file may be an mbox holding several messages ("From " lines): their
/// recipients are counted together, as the labels do.
fn parse_file(raw: &[u8]) -> Detection {
    let mut messages = mbox_messages(raw).into_iter().map(dsn::parse);
    let first = messages.next().unwrap_or_else(|| dsn::parse(raw));
    let mut merged: Option<Bounce> = match &first {
        Detection::Bounce(b) => Some(b.clone()),
        Detection::NotBounce(_) => None,
    };
    for d in messages {
        if let Detection::Bounce(b) = d {
            match &mut merged {
                Some(m) => m.recipients.extend(b.recipients),
                None => merged = Some(b),
            }
        }
    }
    merged.map_or(first, Detection::Bounce)
}

/// Split an mbox at "From " separator lines (after a blank line, followed by a header).
fn mbox_messages(raw: &[u8]) -> Vec<&[u8]> {
    let is_separator = |at: usize| {
        let line_end = raw[at..].iter().position(|&b| b == b'\n').map_or(raw.len(), |i| at + i);
        let next = &raw[(line_end + 1).min(raw.len())..];
        let next_is_header = next.iter().take_while(|&&b| b != b'\n').position(|&b| b == b':').is_some_and(|i| {
            i > 0 && next[..i].iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        });
        raw[at..].starts_with(b"From ") && next_is_header
    };
    if !raw.starts_with(b"From ") {
        return vec![raw];
    }
    let mut starts = vec![0];
    for i in 1..raw.len().saturating_sub(6) {
        if raw[i - 1] == b'\n' && (raw[i..].starts_with(b"From ")) && i >= 2 && raw[..i].ends_with(b"\n\n") && is_separator(i) {
            starts.push(i);
        }
    }
    starts.push(raw.len());
    starts.windows(2).map(|w| &raw[w[0]..w[1]]).collect()
}

fn check_kind(ev: &mut Evaluation, file: &str, labels: &[Label], detection: &Detection) {
    let expected = match labels.first().and_then(|l| l.reason.as_deref()) {
        Some("feedback") => ReportKind::Feedback,
        Some("vacation") => ReportKind::AutoReply,
        _ => ReportKind::Delivery,
    };
    let got = match detection {
        Detection::Bounce(b) => b.kind,
        Detection::NotBounce(why) => {
            ev.wrong_kind.push(Misread { file: file.into(), expected: format!("{expected:?}"), got: format!("not a bounce ({why})") });
            return;
        }
    };
    if got != expected {
        ev.wrong_kind.push(Misread { file: file.into(), expected: format!("{expected:?}"), got: format!("{got:?}") });
    }
}

fn describe(b: &Bounce) -> String {
    let addrs: Vec<&str> = b.recipients.iter().filter_map(|r| r.address.as_deref()).collect();
    format!("{:?} ({}) {}", b.kind, b.format, addrs.join(", "))
}

/// Match one reference recipient to a reported one (by address; an unnamed reference to
/// the first not yet matched) and compare.
fn outcome(kb: &KnowledgeBase, label: Label, bounce: Option<&Bounce>, used: &mut [bool]) -> Outcome {
    let mut o = Outcome {
        label,
        found: false,
        status_agrees: None,
        reason_agrees: false,
        reason_disputed: false,
        non_generic: false,
        got_status: None,
        verdict: None,
        diagnostic: None,
        got_address: None,
    };
    let Some(b) = bounce else {
        o.status_agrees = (!o.label.status.is_empty()).then_some(false);
        return o;
    };
    let same = |r: &RecipientFacts| {
        r.address.as_deref().zip(o.label.recipient.as_deref()).is_some_and(|(a, l)| a.eq_ignore_ascii_case(l))
    };
    let pick = if o.label.recipient_unnamed() {
        (0..b.recipients.len()).find(|&i| !used[i]).or((!b.recipients.is_empty()).then_some(0))
    } else {
        (0..b.recipients.len())
            .find(|&i| !used[i] && same(&b.recipients[i]))
            .or_else(|| (0..b.recipients.len()).find(|&i| same(&b.recipients[i])))
    };
    let Some(i) = pick else {
        o.status_agrees = (!o.label.status.is_empty()).then_some(false);
        o.got_address = b.recipients.first().and_then(|r| r.address.clone());
        return o;
    };
    used[i] = true;
    let r = &b.recipients[i];
    let v = verdict(kb, b, r);
    o.found = true;
    o.got_address = r.address.clone();
    o.got_status = v.status.clone();
    o.status_agrees = (!o.label.status.is_empty()).then(|| status_agrees(&o.label.status, v.status.as_deref(), class_of(r)));
    o.reason_agrees = o.label.reason.as_deref() == Some(v.reason.as_str());
    o.reason_disputed = REASON_DISPUTES.iter().any(|(f, _)| *f == o.label.file);
    o.non_generic = !v.is_generic();
    o.diagnostic = r.diagnostic.clone();
    o.verdict = Some(v);
    o
}

/// Exact agreement for registry codes; for the reference's own pseudo-codes (X.0.9NN,
/// not RFC 3463 codes but its shorthand for a reason) only the class can agree: the class
/// of our status, else of the reply code, else of the action.
pub fn status_agrees(expected: &str, got: Option<&str>, class: Option<char>) -> bool {
    if is_pseudo_status(expected) {
        return expected.chars().next() == got.and_then(|g| g.chars().next()).or(class);
    }
    got == Some(expected)
}

/// 2, 4 or 5: success, temporary or permanent, as the recipient's facts say.
fn class_of(r: &RecipientFacts) -> Option<char> {
    if let Some(c) = r.reply_code {
        return char::from_digit(u32::from(c / 100), 10);
    }
    match r.action.as_deref() {
        Some("failed") => Some('5'),
        Some("delayed") => Some('4'),
        Some("delivered" | "relayed" | "expanded") => Some('2'),
        _ => None,
    }
}

/// Sisimai writes X.0.9NN for reasons it found without a status code.
pub fn is_pseudo_status(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3 && parts[1] == "0" && parts[2].len() == 3 && parts[2].starts_with('9')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_comparison() {
        assert!(status_agrees("5.1.1", Some("5.1.1"), None));
        assert!(!status_agrees("5.1.1", Some("5.1.10"), None));
        assert!(status_agrees("5.0.911", Some("5.1.1"), None));
        assert!(!status_agrees("5.0.947", Some("4.4.7"), None));
        assert!(status_agrees("5.0.947", None, Some('5')));
        assert!(!status_agrees("5.1.1", None, Some('5')));
    }

    #[test]
    fn placeholder_labels_are_unnamed() {
        let l = |r: Option<&str>| Label {
            file: "x.eml".into(),
            recipient: r.map(String::from),
            status: String::new(),
            replycode: String::new(),
            reason: None,
        };
        assert!(l(None).recipient_unnamed());
        assert!(l(Some("undisclosed-recipient-in-headers@libsisimai.org.invalid")).recipient_unnamed());
        assert!(!l(Some("a@example.org")).recipient_unnamed());
    }
}
