//! Is it a bounce? Delivery reports (standard or not), feedback reports and auto-replies
//! are told apart here, in that order; everything else is not a bounce.

use super::fields::{self, Report, Source};
use super::mime::{self, Headers, View};
use super::text::{self, Prose};
use super::{address, original, report, reply, Bounce, Detection, OriginalMessage, RecipientFacts, ReportKind};
use regex::Regex;
use std::sync::LazyLock;

pub(crate) fn detect(raw: &[u8]) -> Detection {
    let Some(view) = mime::view(raw) else {
        return Detection::NotBounce("no message headers".into());
    };
    if let Some(b) = feedback(&view) {
        return Detection::Bounce(b);
    }
    let prose = text::scan(&view.human);
    if let Some(b) = delivery_report(&view, &prose) {
        return Detection::Bounce(b);
    }
    if view.disposition {
        return Detection::NotBounce("a read receipt (message disposition notification)".into());
    }
    if let Some(b) = auto_reply(&view) {
        return Detection::Bounce(b);
    }
    Detection::NotBounce(why_not(&view.headers, &prose))
}

/// A delivery report: with delivery-status fields (RFC 3464/6533, in their own part or
/// written into the text), or in the wording of a known MTA, or — from a sender that
/// sends bounces — naming failed recipients with evidence of the failure.
fn delivery_report(view: &View, prose: &Prose) -> Option<Bounce> {
    let mut report = Report::default();
    let mut global = false;
    for (text, is_global) in &view.status_parts {
        let r = fields::parse_report(text, Source::Part);
        global |= *is_global && !r.recipients.is_empty();
        report.per_message.reporting_mta = report.per_message.reporting_mta.or(r.per_message.reporting_mta);
        report.per_message.postfix_sender = report.per_message.postfix_sender.or(r.per_message.postfix_sender);
        report.recipients.extend(r.recipients);
    }
    if report.recipients.is_empty() {
        let r = fields::parse_report(&prose.text, Source::Text);
        report.recipients = r.recipients;
        report.per_message.reporting_mta = report.per_message.reporting_mta.or(r.per_message.reporting_mta);
    }
    let structural = view.report_type.as_deref() == Some("delivery-status") || !view.status_parts.is_empty();
    let headers_say_bounce = looks_like_bounce(&view.headers);

    let (format, recipients) = if !report.recipients.is_empty() {
        (if global { "rfc6533" } else { "rfc3464" }, report::from_fields(&report, prose, view))
    } else if let Some(family) = prose.family() {
        (family, report::from_prose(prose, view, false))
    } else if structural || headers_say_bounce {
        ("generic", report::from_prose(prose, view, !structural))
    } else {
        return None;
    };
    let mut recipients = recipients;
    if recipients.is_empty() && structural {
        // A report that lost its per-recipient part: the returned message says whom.
        recipients = view
            .original_extra
            .to_address
            .iter()
            .map(|a| RecipientFacts { address: Some(a.clone()), ..RecipientFacts::default() })
            .collect();
    }
    if recipients.is_empty() && !structural {
        return None;
    }
    let reporting_mta = report
        .per_message
        .reporting_mta
        .as_deref()
        .map(report::strip_type)
        .and_then(|v| v.split_whitespace().next().map(String::from))
        .or_else(|| prose.reporting_mta());
    let mut original = original_message(view, prose);
    if original.return_path.is_none() {
        original.return_path = report.per_message.postfix_sender.as_deref().and_then(address::from_field);
    }
    Some(Bounce { kind: ReportKind::Delivery, format, reporting_mta, recipients, original })
}

/// The returned message's headers: from its own part, else from the inline copy.
fn original_message(view: &View, prose: &Prose) -> OriginalMessage {
    if let Some(o) = view.original.as_ref().filter(|o| !original::is_empty(o)) {
        return o.clone();
    }
    let Some(at) = prose.original_at else { return OriginalMessage::default() };
    // Lines of spaces or an mbox "From " line may come before the headers.
    let mut rest = prose.text[at..].trim_start_matches(['\n', '\r', ' ', '\t']);
    if rest.starts_with("From ") {
        rest = rest.find('\n').map_or("", |i| &rest[i + 1..]);
    }
    original::from_header_text(text::truncate(rest, 64 * 1024))
}

/// ARF (RFC 5965) feedback reports; the complaint reports of Outlook.com (JMRP) and
/// Amazon SES, which predate ARF; and the automatic "unsubscribe" messages mail clients
/// send for List-Unsubscribe (Apple Mail marks them X-Apple-Unsubscribe).
fn feedback(view: &View) -> Option<Bounce> {
    let h = &view.headers;
    let arf = view.report_type.as_deref() == Some("feedback-report") || view.feedback.is_some();
    let complaint = h.subject.trim_start().to_ascii_lowercase().starts_with("complaint about message from ")
        || view.original_extra.hotmail_recipient.is_some() && view.status_parts.is_empty() && view.human.trim().is_empty();
    let unsubscribe = h.apple_unsubscribe
        || h.subject.trim().eq_ignore_ascii_case("unsubscribe") && h.auto_submitted.is_some();
    if !(arf || complaint || unsubscribe) {
        return None;
    }
    let fb = view.feedback.as_deref().map(fields::parse_feedback).unwrap_or_default();
    let mut addresses: Vec<Option<String>> = Vec::new();
    for v in &fb.recipients {
        let a = address::from_field(v).or_else(|| address::first_in(v));
        if a.is_some() && addresses.last() != Some(&a) {
            addresses.push(a);
        }
    }
    if addresses.is_empty() {
        // The report concerns one message: its recipient, if the copy names one.
        let hotmail = view.original_extra.hotmail_recipient.as_deref().and_then(address::first_in);
        let from = if unsubscribe { h.from_address.clone() } else { None };
        addresses.push(view.original_extra.to_address.clone().or(hotmail).or(from));
    }
    let diagnostic = match (&fb.feedback_type, unsubscribe) {
        (Some(t), _) => format!("Feedback-Type: {}", reply::sanitize(t)),
        (None, true) => "unsubscribe request".to_string(),
        (None, false) => "complaint".to_string(),
    };
    let recipients = addresses
        .into_iter()
        .map(|address| RecipientFacts { address, diagnostic: Some(diagnostic.clone()), ..RecipientFacts::default() })
        .collect();
    Some(Bounce {
        kind: ReportKind::Feedback,
        format: if arf { "arf" } else if complaint { "complaint" } else { "unsubscribe" },
        reporting_mta: fb.reporting_mta.as_deref().map(|v| report::strip_type(v).to_string()),
        recipients,
        original: view.original.clone().unwrap_or_default(),
    })
}

static AUTO_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*(?:auto:|auto(?:matic)?[ -]?(?:reply|response|respons|answer)(?-u:\b)|out\s+of\s+(?:the\s+)?office(?-u:\b)|abwesenheitsnotiz|automatische\s+antwort|r[ée]ponse\s+automatique|respuesta\s+autom[áa]tica|risposta\s+automatica|自動応答|自動返信|vacation\s+reply)",
    )
    .unwrap()
});

/// Machine senders whose messages are never vacation replies.
static DAEMON: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(?:^|[<\s])(?:mailer-daemon|postmaster|mail\s+delivery\s+(?:system|subsystem|service)|mail\.delivery\.system|mdaemon|mailerdaemon|post_master)(?-u:\b)|^root@",
    )
    .unwrap()
});

/// RFC 3834 auto-replies (vacation, "no longer in use", ...).
fn auto_reply(view: &View) -> Option<Bounce> {
    let h = &view.headers;
    let from = h.from.as_deref().unwrap_or("");
    let subject = h.subject.to_ascii_lowercase();
    if DAEMON.is_match(from) || subject.contains("security information for") || subject.contains("mail failure -") {
        // Machines' notices (sudo, Exim's own failure notices), not replies.
        return None;
    }
    let auto = h.auto_submitted.as_deref().is_some_and(|v| v.starts_with("auto-"))
        || h.precedence.as_deref().is_some_and(|v| v.starts_with("auto_reply"))
        || h.autoreply
        || h.apple_action.as_deref().is_some_and(|v| v.starts_with("vacation"))
        || AUTO_SUBJECT.is_match(&h.subject);
    if !auto {
        return None;
    }
    let address = h.from_address.clone().or_else(|| h.return_path.as_deref().and_then(address::first_in));
    let said = reply::sanitize(text::truncate(view.human.trim(), 400));
    Some(Bounce {
        kind: ReportKind::AutoReply,
        format: "rfc3834",
        reporting_mta: None,
        recipients: vec![RecipientFacts {
            address,
            diagnostic: Some(said).filter(|s| !s.is_empty()),
            ..RecipientFacts::default()
        }],
        original: view.original.clone().unwrap_or_default(),
    })
}

static BOUNCE_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)undeliver|undelivered|non[- ]?deliver|delivery\s+(?:status|failure|failed|notification|report|problem|has\s+failed|error)
        |returned\s+(?:mail|to\s+sender)|mail\s+delivery\s+failed|failure\s+notice|could\s+not\s+be\s+delivered
        |mail\s+system\s+error|returning\s+message|(?-u:\b)bounce|message\s+.*\s+delayed|delayed\s+mail|rejected|failed\s+delivery
        |permanent\s+(?:delivery\s+)?failure|not\s+delivered",
    )
    .unwrap()
});

/// Headers of the kind bounces have: a null sender or a daemon's From, and a subject
/// that says so; or an X-Failed-Recipients field.
fn looks_like_bounce(h: &Headers) -> bool {
    let null_sender = h.return_path.as_deref().is_some_and(|r| {
        let r = r.trim();
        r == "<>" || r.is_empty() || r.to_ascii_lowercase().contains("mailer-daemon")
    });
    let daemon = h.from.as_deref().is_some_and(|f| DAEMON.is_match(f));
    !h.failed_recipients.is_empty() || (null_sender || daemon) && BOUNCE_SUBJECT.is_match(&h.subject)
}

fn why_not(h: &Headers, prose: &Prose) -> String {
    if looks_like_bounce(h) {
        if prose.recipients.is_empty() {
            "looks like a bounce but names no failed recipient".into()
        } else {
            "looks like a bounce but gives no evidence of a failed delivery".into()
        }
    } else {
        "no delivery report, no known bounce wording, not from a mail system".into()
    }
}
