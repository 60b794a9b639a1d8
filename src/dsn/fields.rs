//! RFC 3464 / RFC 6533 delivery-status fields and RFC 5965 feedback-report fields, read
//! from a message/(global-)delivery-status part or, leniently, from any text that carries
//! them (mislabelled parts, forwarded or quoted bounces).

/// The per-message fields that matter here.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PerMessage {
    pub reporting_mta: Option<String>,
    pub postfix_sender: Option<String>,
}

/// One per-recipient block, values as written (unfolded, not interpreted).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RecipientFields {
    pub final_recipient: Option<String>,
    pub original_recipient: Option<String>,
    pub actual_recipient: Option<String>,
    pub action: Option<String>,
    pub status: Option<String>,
    pub remote_mta: Option<String>,
    pub diagnostic: Option<String>,
    pub last_attempt: Option<String>,
    pub will_retry_until: Option<String>,
}

impl RecipientFields {
    fn is_empty(&self) -> bool {
        *self == RecipientFields::default()
    }

    /// Enough to be a recipient block rather than stray words that look like fields.
    fn is_credible(&self) -> bool {
        (self.final_recipient.is_some() || self.original_recipient.is_some())
            && (self.action.is_some() || self.status.is_some() || self.diagnostic.is_some())
    }

    fn slot(&mut self, name: &str) -> Option<&mut Option<String>> {
        Some(match name {
            "final-recipient" => &mut self.final_recipient,
            "original-recipient" => &mut self.original_recipient,
            "x-actual-recipient" => &mut self.actual_recipient,
            "action" => &mut self.action,
            "status" => &mut self.status,
            "remote-mta" => &mut self.remote_mta,
            "diagnostic-code" => &mut self.diagnostic,
            "last-attempt-date" => &mut self.last_attempt,
            "will-retry-until" => &mut self.will_retry_until,
            _ => return None,
        })
    }
}

/// Fields of a delivery-status report.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Report {
    pub per_message: PerMessage,
    pub recipients: Vec<RecipientFields>,
}

/// How strictly to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A real delivery-status part: unknown fields are extension fields, skipped.
    Part,
    /// Free text: a line that is not a field ends the block; blocks must be credible.
    Text,
}

/// At most this many recipients per report (bounded work on hostile input).
const MAX_RECIPIENTS: usize = 1000;

/// Read the delivery-status fields of `text`.
pub(crate) fn parse_report(text: &str, source: Source) -> Report {
    let mut report = Report::default();
    let mut current = RecipientFields::default();
    let mut last: Option<(bool, &'static str)> = None; // (per-recipient?, field) for continuations
    let flush = |current: &mut RecipientFields, report: &mut Report| {
        let block = std::mem::take(current);
        let keep = match source {
            Source::Part => !block.is_empty(),
            Source::Text => block.is_credible(),
        };
        if keep && report.recipients.len() < MAX_RECIPIENTS {
            report.recipients.push(block);
        }
    };
    for raw_line in text.lines() {
        let line = unquote(raw_line);
        if line.trim().is_empty() {
            flush(&mut current, &mut report);
            last = None;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((per_recipient, name)) = last {
                let slot = if per_recipient { current.slot(name) } else { None };
                if let Some(Some(v)) = slot {
                    v.push(' ');
                    v.push_str(line.trim());
                }
            }
            continue;
        }
        let Some((name, value)) = split_field(line) else {
            if source == Source::Text {
                flush(&mut current, &mut report);
            }
            last = None;
            continue;
        };
        let lower = name.to_ascii_lowercase();
        let value = value.trim().to_string();
        match lower.as_str() {
            "reporting-mta" => {
                report.per_message.reporting_mta.get_or_insert(value);
                last = None;
            }
            "x-postfix-sender" => {
                report.per_message.postfix_sender.get_or_insert(value);
                last = None;
            }
            _ => match field_name(&lower) {
                Some(known) => {
                    // A field seen twice starts the next recipient (blocks without blank lines).
                    if current.slot(known).is_some_and(|s| s.is_some()) {
                        flush(&mut current, &mut report);
                    }
                    if let Some(slot) = current.slot(known) {
                        *slot = Some(value);
                    }
                    last = Some((true, known));
                }
                None => {
                    if source == Source::Text && !is_per_message(&lower) {
                        flush(&mut current, &mut report);
                    }
                    last = None;
                }
            },
        }
    }
    flush(&mut current, &mut report);
    report
}

/// The canonical name of a per-recipient field.
fn field_name(lower: &str) -> Option<&'static str> {
    const NAMES: [&str; 9] = [
        "final-recipient",
        "original-recipient",
        "x-actual-recipient",
        "action",
        "status",
        "remote-mta",
        "diagnostic-code",
        "last-attempt-date",
        "will-retry-until",
    ];
    NAMES.into_iter().find(|n| *n == lower)
}

/// Per-message fields (RFC 3464 section 2.2 and common extensions) that may sit in a
/// recipient-less block of free text without ending it.
fn is_per_message(lower: &str) -> bool {
    matches!(
        lower,
        "original-envelope-id" | "dsn-gateway" | "received-from-mta" | "arrival-date" | "x-postfix-queue-id"
    ) || lower.starts_with("x-")
}

/// `Name: value` with an RFC 5322 field name.
fn split_field(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once(':')?;
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some((name, value))
}

/// A forwarded bounce quotes its lines with "> ".
fn unquote(line: &str) -> &str {
    match line.strip_prefix('>') {
        Some(_) => {
            let l = line.trim_start_matches('>');
            l.strip_prefix(' ').unwrap_or(l)
        }
        None => line,
    }
}

/// The fields of a message/feedback-report part (RFC 5965) that name the recipient.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Feedback {
    pub feedback_type: Option<String>,
    /// Original-Rcpt-To and Removal-Recipient values (each may appear several times).
    pub recipients: Vec<String>,
    pub reporting_mta: Option<String>,
}

pub(crate) fn parse_feedback(text: &str) -> Feedback {
    let mut fb = Feedback::default();
    for line in text.lines() {
        let Some((name, value)) = split_field(line) else { continue };
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        match name.to_ascii_lowercase().as_str() {
            "feedback-type" => {
                fb.feedback_type.get_or_insert_with(|| value.to_string());
            }
            "reporting-mta" => {
                fb.reporting_mta.get_or_insert_with(|| value.to_string());
            }
            "original-rcpt-to" | "removal-recipient" if fb.recipients.len() < MAX_RECIPIENTS => {
                fb.recipients.push(value.to_string())
            }
            _ => {}
        }
    }
    fb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_continuations() {
        let r = parse_report(
            "Reporting-MTA: dns; mx.example.jp\n\nFinal-Recipient: rfc822; a@example.jp\nAction: failed\n\
             Status: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 <a@example.jp>... User\n    unknown\n\n\
             Final-Recipient: rfc822; b@example.jp\nAction: delayed\nStatus: 4.4.1\n",
            Source::Part,
        );
        assert_eq!(r.per_message.reporting_mta.as_deref(), Some("dns; mx.example.jp"));
        assert_eq!(r.recipients.len(), 2);
        assert_eq!(r.recipients[0].diagnostic.as_deref(), Some("smtp; 550 5.1.1 <a@example.jp>... User unknown"));
        assert_eq!(r.recipients[1].action.as_deref(), Some("delayed"));
    }

    #[test]
    fn quoted_text_without_blank_lines() {
        let r = parse_report(
            "> Final-Recipient: RFC822; a@example.jp\n> Action: failed\n> Status: 5.2.0\n\
             > Final-Recipient: RFC822; b@example.jp\n> Action: failed\n> Return-Path: <x@y>\n> From: x@y\n",
            Source::Text,
        );
        assert_eq!(r.recipients.len(), 2);
        assert_eq!(r.recipients[1].final_recipient.as_deref(), Some("RFC822; b@example.jp"));
    }

    #[test]
    fn stray_fields_are_not_a_report() {
        let r = parse_report("Status: ok\nAction: none\n", Source::Text);
        assert!(r.recipients.is_empty());
    }
}
