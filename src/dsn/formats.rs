//! What the human-readable bounces of real MTAs look like, as data: the sentences that
//! identify each family, where their list of failed recipients starts, where the returned
//! message begins, and how they say "only delayed". The scanner in `text.rs` is shared by
//! all of them.

use crate::patterns::PatternSet;
use regex::Regex;
use std::sync::LazyLock;

/// Families of non-standard bounces and a sentence (or two) that only they write.
/// Order matters where one family quotes another's wording: the first match names it.
const FAMILIES: &[(&str, &str)] = &[
    ("qmail", r"This is the qmail-send program|Hi\. This is the qmail|I'm afraid I wasn't able to deliver your message|Sorry, I wasn't able to establish an SMTP connection|This is the machine generated message from mail service|This is the mail delivery agent at|Su mensaje no pudo ser entregado|Unfortunately, your mail was not delivered to the following address|Your mail message to the following address|-{3}\s*Below (?:this|the next) line is a copy of the (?:message|mail header)"),
    ("yahoo", r"Sorry, we were unable to deliver your message to the following address"),
    ("x2", r"Unable to deliver message to the following address\(es\)|Delivery failed: \S+@|NOTICE: Delivery Failure"),
    ("mailru", r"сервером Mail\.Ru"),
    ("mxlogic", r"Included is a copy of the message header"),
    ("gmx", r"The header of the original message is following"),
    ("exim", r"This message was created automatically by (?:mail delivery software|the SMTP relay)|could not be delivered to one or more of\s+its\s+recipients|has not yet been delivered to one or more of its\s+recipients|rejected by the local scann?ing code|contained one or more recipient addresses|router encountered the following error|has been frozen|was frozen on arrival"),
    ("x1", r"-{2,} ?The following addresses had delivery errors ?-{2,}"),
    ("sendmail", r"-{3,} ?The following addresses had (?:permanent fatal errors|transient non-fatal errors|delivery problems)|-{3,} ?Transcript of session follows|-{3,} ?Unsent message follows|Non-delivered information"),
    ("postfix", r"This is the (?:mail system|Postfix program) at host|I'm sorry to have to inform you that (?:your|the) message"),
    ("exchange2007", r"Delivery has failed to these recipients or groups|rejected your message to the following e-?mail addresses|Diagnostic information for administrators|Your message to \S+ couldn't be delivered|Remote Server (?:at \S+ )?returned '"),
    ("exchange2003", r"did not reach the following recipient\(s\)|MSEXCH:"),
    ("domino", r"-{3,}\s*Failure Reasons\s*-{3,}|(?m)^\s*was not delivered to:\s*$"),
    ("gmail", r"Delivery to the following recipients? (?:failed permanently|has been delayed)|Technical details of (?:permanent|temporary) failure|\*\* (?:Address not found|Message not delivered|Message blocked|Delivery incomplete|Message delayed) \*\*|Your message wasn't delivered to|There was a problem delivering your message to"),
    ("googlegroups", r"groups\.google\.com/|Google Groups"),
    ("courier", r"running the Courier mail server|Your message to the following recipients cannot be delivered"),
    ("opensmtpd", r"This is the MAILER-DAEMON, please DO NOT REPLY|An error has occurred while attempting to deliver a message for|A message is delayed for more than"),
    ("dragonfly", r"This is the DragonFly Mail Agent|There was an error delivering your mail to"),
    ("imailserver", r"(?m)^\s*Original message follows\.?\s*$|Body of message generated response:"),
    ("kddi", r"Could not be delivered to:|Your mail sent on:"),
    ("ezweb", r"The following recipients did not receive this message|Each of the following recipients was rejected by a remote"),
    ("mfilter", r"-{5,} ?server message|以下のメールアドレスへの送信に失敗しました"),
    ("mailfoundry", r"Unable to deliver message to: <|Delivery failed for the following reason:"),
    ("interscanmss", r"Message from InterScan Messaging Security Suite|(?m)^\S{0,16}\s*(?:<<<|>>>)\s*RCPT TO:|(?m)^\S{1,16}\s+(?:<<<|>>>)\s*[45]\d\d "),
    ("x3", r"This is an automatically generated Delivery Status Notification\.|Dele?very to the following recipients was aborted"),
    ("x6", r"We had trouble delivering your message\. Full details follow"),
    ("zoho", r"ERROR_CODE\s*:"),
    ("amazonses", r"An error occurred while trying to deliver the mail to the following recipients"),
    ("messagingserver", r"Your message cannot be delivered to the following recipients"),
    ("apachejames", r"(?m)^Error message below:|^Message details:\s*$"),
    ("mailmarshal", r"The following recipients were affected:|Could not be delivered because of"),
    ("fml", r"Duplicated Message-ID|You are not a member of this mailing list|Loop Alert:"),
    ("v5sendmail", r"-{3,} ?Unsent message follows"),
    ("bounce", r"(?i)did not reach the following recipient|could not be delivered to the following recipients?"),
];

/// The families' sentences, found by one literal scan (one alternation of them all loses
/// the regex engine's literal prefilters and runs over the whole text).
static FAMILY_SET: LazyLock<PatternSet> =
    LazyLock::new(|| PatternSet::new(FAMILIES.iter().map(|&(name, re)| (name, re)), false).expect("family patterns are valid"));

/// How far into a bounce's text its family's sentences are looked for (they come first).
pub(crate) const FAMILY_WINDOW: usize = 12 * 1024;

/// The family whose wording the text uses (the first sentence found in its first
/// `FAMILY_WINDOW` bytes; where families share it, the first in the table).
pub(crate) fn family(text: &str) -> Option<&'static str> {
    let text = super::text::truncate(text, FAMILY_WINDOW);
    let (_, m) = FAMILY_SET.leftmost(text)?;
    // Widen to whole lines so that anchored sentences match again.
    let start = text[..m.start].rfind('\n').map_or(0, |i| i + 1);
    let end = text[m.end..].find('\n').map_or(text.len(), |i| m.end + i);
    FAMILY_SET.matching(&text[start..end]).first().map(|&i| FAMILIES[i].0)
}

/// The words after which bounces list the failed recipients. The list is taken from
/// the first match on; without one the whole text is read.
pub(crate) static SECTION_START: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?imx)
          following\s+address(?:\(es\)|es)?\s+failed\s*:?
        | router\s+encountered\s+the\s+following\s+error\(s\)\s*:
        | incorrectly\s+constructed\s*:
        | (?:to|for)\s+the\s+following\s+(?:e-?mail\s+)?(?:recipients?|address(?:es|\(es\))?|users?)(?:\s+or\s+groups)?\s*[:.]
        | delivery\s+to\s+the\s+following\s+recipients?\s+failed\.?
        | address\s+to\s+which\s+the\s+message\s+has\s+not\s+yet\s+been\s+delivered\s+is\s*:?
        | following\s+addresses\s+had\s+(?:permanent\s+fatal\s+errors|transient\s+non-fatal\s+errors|delivery\s+problems|delivery\s+errors)\s*-*
        | deliver\s+your\s+message\s+to\s+the\s+following\s+address(?:es|\(es\))?\.?
        | unable\s+to\s+deliver\s+message\s+to\s+the\s+following\s+address(?:es|\(es\))?\.?
        | did\s+not\s+reach\s+the\s+following\s+recipient(?:\(s\)|s)?\s*:?
        | delivery\s+has\s+failed\s+to\s+these\s+recipients\s+or\s+\S+\s+\S*\s*:
        | delivery\s+has\s+failed\s+to\s+these\s+recipients\s+or\s+groups\s*:?
        | rejected\s+your\s+message\s+to\s+the\s+following\s+e-?mail\s+addresses\s*:?
        | following\s+list\s+of\s+recipients\s*:?
        | following\s+recipients\s+cannot\s+be\s+delivered\s*:?
        | following\s+recipients\s+did\s+not\s+receive\s+this\s+message\s*:?
        | each\s+of\s+the\s+following\s+recipients\s+was\s+rejected\s+by\s+a\s+remote\s+mail\s+server\.?
        | -+\s*failure\s+reasons\s*-+
        | ^\s*was\s+not\s+delivered\s+to\s*:
        | following\s+recipients\s+were\s+affected\s*:?
        | delivery\s+to\s+the\s+following\s+recipients?\s+(?:failed\s+permanently|has\s+been\s+delayed)\s*:?
        | following\s+recipients\s+was\s+aborted[^\n]*
        | deliver\s+the\s+mail\s+to\s+the\s+following\s+recipients\s*:?
        | message\s+cannot\s+be\s+delivered\s+to\s+the\s+following\s+recipients\s*:?
        | 以下のメールアドレスへの送信に失敗しました。?
        | одному\s+или\s+нескольким\s+получателям\s*:?
        ",
    )
    .unwrap()
});

/// Where the returned message (or its headers) begins inside the text.
pub(crate) static ORIGINAL_STARTS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?imx)^[\ \t]*(?:
          -+\s*This\s+is\s+a\s+copy\s+of\s+the\s+message
        | -+\s*(?:Below\s+(?:this|the\s+next)\s+line\s+is|Enclosed\s+is)\s+a\s+copy\s+of\s+the\s+(?:message|mail\s+header)
        | -+\s*Mensaje\s+original\s+adjunto
        | -+\s*Original\s+message\s*-*\s*$
        | Original\s+message\s+headers:?\s*$
        | -*\s*Original\s+message\s+follows\.?
        | Message\s+headers\s+follow\.?
        | Below\s+is\s+a\s+copy\s+of\s+the\s+original\s+message:?
        | -+\s*Unsent\s+message\s+follows
        | Included\s+is\s+a\s+copy\s+of\s+the\s+message\s+header:?
        | -+\s*The\s+header\s+of\s+the\s+original\s+message\s+is\s+following
        | -+\s*Returned\s+Message\s*-+
        | -+\s*original\s+mail\s+info
        | Original\s+Message\s+Headers\s*$
        | Intestazioni\s+originali\s+del\s+messaggio:?
        | Ursprüngliche\s+Nachrichtenkopfzeilen:?
        | En-têtes\s+de\s+message\s+d'origine\s*:?
        | Encabezados\s+del\s+mensaje\s+original:?
        | Content-Type:\s*(?:message/(?:rfc822|global)|text/rfc822-headers)
        | bounced\s+e-?mail:\s*$
        | Original\s+mail\s+as\s+follows:?
        )",
    )
    .unwrap()
});

/// Bounces that only warn about a delay.
pub(crate) static DELAYED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)
          THIS\s+IS\s+A\s+WARNING\s+(?:MESSAGE\s+)?ONLY
        | delivery\s+to\s+the\s+following\s+recipients?\s+has\s+been\s+delayed
        | a\s+message\s+is\s+delayed\s+for\s+more\s+than
        | has\s+not\s+yet\s+been\s+delivered\s+to\s+one\s+or\s+more
        | only\s+a\s+temporary\s+failure\s+report
        | still\s+being\s+retried
        | will\s+(?:continue\s+to\s+)?(?:be\s+)?retr(?:y|ied)\s+(?:until|for)
        | \*\*\s+Message\s+delayed\s+\*\*
        ",
    )
    .unwrap()
});

/// Words that introduce a recipient at the start of a line ("Recipient: <a@b>",
/// "Your message to a@b couldn't be delivered", ...).
pub(crate) static LEAD_IN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)^(?:
          (?:final-?)?recipient(?:\s+address)?(?:\(s\))?\s*:
        | failed\s+recipients?\s*:
        | delivery\s+failed\s*:
        | could\s+not\s+be\s+delivered\s+to\s*:
        | (?:message\s+)?(?:was\s+)?not\s+delivered\s+to\s*:
        | unable\s+to\s+deliver\s+(?:your\s+)?(?:message|mail)?\s*to\s*:?
        | undeliverable\s+to
        | did\s+not\s+reach\s+the\s+following\s+recipient(?:\(s\)|s)?\s*:
        | there\s+was\s+an\s+error\s+delivering\s+your\s+mail\s+to
        | (?:there\s+was\s+a\s+problem\s+)?delivering\s+your\s+message\s+to
        | your\s+message\s+(?:wasn't|was\s+not|could\s+not\s+be|couldn't\s+be)\s+delivered\s+to
        | your\s+message\s+to\s*:?
        | the\s+following\s+recipients?\s+returned\s+(?:permanent|temporary|transient)\s+errors?\s*:
        | rcpt\s+to\s*:
        | >>>
        )\s*",
    )
    .unwrap()
});

/// "Some words: a@b" — a reason followed by the address (IMail and similar). At most
/// `PHRASE_WORDS` words, counted by the caller: a `{1,8}` on the repeated word would
/// copy its Unicode class eight times (compiling took 2.8 ms, against 1.2 ms).
pub(crate) static PHRASE_THEN_ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r#"^([\p{{Alphabetic}}][\p{{Alphabetic}}'&/-]*(?:\s+[\p{{Alphabetic}}'&/-]+)+)\s*:\s*<?({})>?\.?\s*$"#, super::address::ADDR_PATTERN)).unwrap()
});

/// The most words a `PHRASE_THEN_ADDRESS` phrase may have.
pub(crate) const PHRASE_WORDS: usize = 9;

/// Words in such a phrase that show it names someone other than a failed recipient.
pub(crate) static NOT_A_RECIPIENT_PHRASE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?-u:\b)(?:from|sender|reply|return|envelope|cc|bcc|by|message-id|postmaster|contact|support|help|admin\w*)(?-u:\b)")
        .unwrap()
});

/// Sendmail's per-recipient summary: "550 5.1.1 <a@b>... User unknown".
pub(crate) static SUMMARY_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r#"^[245]\d\d[ -](?:[245]\.\d{{1,3}}\.\d{{1,3}}\s+)?<?({})>?\.\.\.\s"#, super::address::ADDR_PATTERN)).unwrap()
});

/// A transcript line with the RCPT command: ">>> RCPT To:<a@b>", "Sent <<< RCPT TO:<a@b>".
pub(crate) static RCPT_COMMAND: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r#"(?i)^\s*(?:\S{{1,16}}\s+)?(?:<<<|>>>)\s*RCPT\s+TO:\s*<?({})>?"#, super::address::ADDR_PATTERN)).unwrap()
});

/// The RCPT command itself, as a transcript records it: "RCPT To:<a@b>".
pub(crate) static RCPT_TO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r#"(?i)^RCPT\s+TO:\s*<?({})>?"#, super::address::ADDR_PATTERN)).unwrap()
});

/// Local delivery targets that are not addresses (Exim "save to", "pipe to").
pub(crate) static DELIVERY_TARGET: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?i)^(?:save\s+to|pipe\s+to|"?\||/\S+$|an\s+undisclosed\s+address)"#).unwrap());

pub(crate) static GENERATED_BY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r#"(?i)^\s*\(?generated\s+by\s+<?({})>?"#, super::address::ADDR_PATTERN)).unwrap()
});

/// "generated by/from" lines: where a recipient came from, not why it failed.
pub(crate) static GENERATED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^\s*\(?(?:(?:ultimately\s+)?generated\s+(?:by|from)|expanded\s+from)(?-u:\b)").unwrap());

pub(crate) static GENERATED_FROM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r#"(?i)\((?:ultimately\s+)?(?:generated|expanded)\s+from:?\s*<?({})>?\)"#,
        super::address::ADDR_PATTERN
    ))
    .unwrap()
});

/// What a recipient line says after the address that is not about the failure.
pub(crate) static ADDRESS_NOISE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?ix)^(?:\s*<mailto:[^>]*>|\s*\([^()<>\s]+@[^()<>\s]+\)|\s*<[^<>\s]+@[^<>\s]+>|\s*\(expanded\ from:?\s*<?[^)]*\)|\s*on\ [A-Za-z]{3},\ .*$|\s*[:,;]|\s+)+"#,
    )
    .unwrap()
});

/// Evidence that a line in an unknown format is about a failed delivery.
pub(crate) static FAILURE_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)
          (?:^|[\s:(\[])(?:[245]\d\d[\s-]|[245]\.\d{1,3}\.\d{1,3}(?-u:\b))
        | (?-u:\b)(?:user|mailbox|recipient|address|account|domain|host)\s+(?:unknown|not\ found|unavailable|full|disabled|does\ not\ exist|doesn't\ exist|rejected|invalid)
        | (?-u:\b)unknown\s+(?:user|recipient|mailbox)(?-u:\b) | (?-u:\b)no\s+such\s+(?:user|mailbox|address|domain|recipient)(?-u:\b)
        | (?-u:\b)over\s+quota(?-u:\b) | (?-u:\b)quota\s+exceeded(?-u:\b) | (?-u:\b)exceeds?\s+(?:allowed|the)(?-u:\b) | (?-u:\b)mailbox\s+(?:is\s+)?full(?-u:\b)
        | (?-u:\b)(?:rejected|refused|denied|blocked|undeliverable|timed\s+out|expired|unreachable)(?-u:\b)
        ",
    )
    .unwrap()
});

/// The MTA that wrote a bounce, as its text names it.
pub(crate) static REPORTER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)
          this\ is\ the\ (?:mail\ system|postfix\ program)\ at\ host\ ([A-Za-z0-9.-]+[A-Za-z0-9])
        | qmail-send\ program\ at\ ([A-Za-z0-9.-]+[A-Za-z0-9])
        | dragonfly\ mail\ agent\ \S+\ at\ ([A-Za-z0-9.-]+[A-Za-z0-9])
        | generating\ server:\ ([A-Za-z0-9.-]+[A-Za-z0-9])
        | delivery\ status\ notification\ from\ ([A-Za-z0-9.-]+[A-Za-z0-9])
        | ^message\ from\ +([A-Za-z0-9.-]+[A-Za-z0-9])\.
        | created\ automatically\ by\ the\ SMTP\ relay\ on\ ([A-Za-z0-9.-]+[A-Za-z0-9])
        ",
    )
    .unwrap()
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_compile_and_name_families() {
        assert_eq!(family("Hi. This is the qmail-send program at example.jp."), Some("qmail"));
        assert_eq!(
            family("This message was created automatically by mail delivery software.\n\nA message that you sent"),
            Some("exim")
        );
        assert_eq!(family("Dear friend, see you tomorrow."), None);
        assert!(SECTION_START.is_match("The following address(es) failed:"));
        assert!(ORIGINAL_STARTS.is_match("------ This is a copy of the message, including all the headers. ------"));
        assert!(!ORIGINAL_STARTS.is_match("The original message was received at Thu, 29 Apr 2009"));
        assert!(DELAYED.is_match("THIS IS A WARNING MESSAGE ONLY."));
        assert!(LEAD_IN.is_match("Recipient address: a@b.example"));
        assert!(SUMMARY_LINE.is_match("550 5.1.1 <a@b.example>... User unknown"));
        assert!(RCPT_COMMAND.is_match(">>> RCPT To:<a@b.example>"));
        assert!(PHRASE_THEN_ADDRESS.is_match("User mailbox exceeds allowed size: a@b.example"));
    }

    /// The anchored search at the scanner's literals finds what searching the whole text
    /// for every family's regex finds: the leftmost match, the first family on a tie. On
    /// the start of every corpus message's text and on every paragraph of it.
    #[test]
    fn leftmost_sentence_is_that_of_a_search_for_every_pattern() {
        let regexes: Vec<Regex> = FAMILIES.iter().map(|(_, p)| Regex::new(p).unwrap()).collect();
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/emails");
        let mut texts = Vec::new();
        for entry in std::fs::read_dir(&corpus).into_iter().flatten().flatten() {
            let Ok(raw) = std::fs::read(entry.path()) else { continue };
            let raw = String::from_utf8_lossy(&raw).into_owned();
            texts.extend(raw.split("\n\n").map(String::from));
            texts.push(super::super::text::truncate(&raw, FAMILY_WINDOW).to_string());
        }
        assert!(texts.len() > 2000, "corpus not found at {}", corpus.display());
        let mut found = 0;
        for text in &texts {
            let expected = regexes
                .iter()
                .enumerate()
                .filter_map(|(i, re)| Some((i, re.find(text)?.range())))
                .min_by_key(|(i, m)| (m.start, *i));
            assert_eq!(FAMILY_SET.leftmost(text), expected, "text {text:?}");
            found += usize::from(expected.is_some());
        }
        assert!(found > 300, "only {found} texts name a family: the comparison says little");
    }
}
