//! Reading the human-readable part of a bounce: which recipients it names and what it
//! says about each, for every family in `formats.rs` with one shared scanner.
//!
//! The text is cut where the returned message begins; the list of recipients starts
//! after the family's announcing words ("The following address(es) failed:"); a line that
//! starts with an address (after "Recipient:", bullets, ...) opens a recipient's block,
//! and the lines up to the next one (or more indented than it) belong to it.

use super::address;
use super::formats::{
    self, ADDRESS_NOISE, DELAYED, DELIVERY_TARGET, GENERATED, GENERATED_BY, GENERATED_FROM, LEAD_IN, NOT_A_RECIPIENT_PHRASE,
    ORIGINAL_STARTS, PHRASE_THEN_ADDRESS, PHRASE_WORDS, RCPT_COMMAND, RCPT_TO, REPORTER, SECTION_START, SUMMARY_LINE,
};
use super::reply::{self, Reply};
use std::borrow::Cow;
use std::cell::OnceCell;

/// At most this much text is read (bounded work on hostile input).
pub(crate) const MAX_TEXT: usize = 96 * 1024;
const MAX_LINES: usize = 600;
const MAX_BLOCK: usize = 60;
const MAX_RECIPIENTS: usize = 500;

/// A recipient the prose names.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Named {
    /// `None` for a local delivery target (file, pipe) whose address the text does not give.
    pub address: Option<String>,
    /// "(generated from a@b)": the address the message was sent to.
    pub original: Option<String>,
    indent: usize,
    /// Where it is first named (line number in the list).
    line: usize,
    /// First named in Sendmail's summary ("550 <a@b>... User unknown"), which is
    /// Sendmail's own wording: the remote server's reply is in the transcript.
    summary: bool,
    /// The rest of the recipient line, then the lines of its block.
    lines: Vec<String>,
}

/// One command and the reply to it in an SMTP transcript (">>> RCPT TO:<a@b>",
/// "<<< 550 ...").
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Exchange {
    pub command: Option<String>,
    pub reply: String,
    /// Line number (in the list) of the reply's first line.
    line: usize,
}

/// What the prose of a bounce says.
#[derive(Debug, Clone, Default)]
pub(crate) struct Prose {
    /// The family whose wording it uses, once asked (see `family`).
    family: OnceCell<Option<&'static str>>,
    pub recipients: Vec<Named>,
    /// The lines before the first recipient (some formats give the reason first).
    preamble: Vec<String>,
    pub transcript: Vec<Exchange>,
    /// Where the bounce's own text ends (byte offset in `text`), if a returned message follows.
    pub body_end: Option<usize>,
    /// Where the returned message's headers begin, if it is inline.
    pub original_at: Option<usize>,
    /// Where the list of recipients starts (byte offset in `text`).
    section_at: usize,
    /// The unquoted text that was read.
    pub text: String,
}

impl Named {
    /// What the bounce says about this recipient: the quoted reply if there is one.
    pub(crate) fn reply(&self, prose: &Prose) -> Reply {
        let own: Vec<&str> = self
            .lines
            .iter()
            .map(String::as_str)
            .filter(|l| !GENERATED.is_match(l))
            .collect();
        let mine = reply::from_block(&own);
        let from_transcript = || prose.transcript_reply(self.address.as_deref(), self.line);
        if mine.quoted && !self.summary {
            return mine;
        }
        // The reason may come before the address (Domino, IMail, Apache James) or only in
        // an SMTP transcript (old Sendmail).
        if let Some(t) = from_transcript() {
            return Reply { text: t, quoted: true, ..mine };
        }
        if mine.quoted {
            return mine;
        }
        let pre: Vec<&str> = prose.preamble.iter().map(String::as_str).collect();
        let before = reply::from_block(&pre);
        if before.quoted && !mine.text.is_empty() && prose.recipients.len() > 1 {
            // Several recipients and one reason before them: it is not about this one alone.
            return mine;
        }
        if before.quoted || mine.text.is_empty() {
            return Reply { command: mine.command.or(before.command), remote_mta: mine.remote_mta.or(before.remote_mta), ..before };
        }
        mine
    }

    /// The text of the recipient's block, for evidence checks.
    pub(crate) fn block_text(&self) -> String {
        self.lines.join("\n")
    }
}

impl Prose {
    /// The bounce's own text, without the returned message.
    fn body(&self) -> &str {
        &self.text[..self.body_end.unwrap_or(self.text.len())]
    }

    /// The family whose wording the text uses (see `formats::FAMILIES`). Asked only of
    /// bounces without delivery-status fields, so not worked out for every message.
    pub(crate) fn family(&self) -> Option<&'static str> {
        *self.family.get_or_init(|| formats::family(self.body()))
    }

    /// The first address in angle brackets after the list starts, for bounces that name
    /// their recipient only in a sentence.
    pub(crate) fn mentioned(&self) -> Option<String> {
        address::ANGLED.captures(&self.body()[self.section_at..]).map(|c| c[1].to_string())
    }

    /// The report only warns about a delay. Asked only of bounces without
    /// delivery-status fields, so not worked out for every message.
    pub(crate) fn delayed(&self) -> bool {
        DELAYED.is_match(self.body())
    }

    /// The host the text says it reports from; asked only when the report names none.
    pub(crate) fn reporting_mta(&self) -> Option<String> {
        self.body().lines().take(80).find_map(|l| {
            REPORTER.captures(l.trim()).and_then(|c| c.iter().skip(1).flatten().next().map(|m| m.as_str().to_string()))
        })
    }

    /// The error reply a transcript gives for `address`: the reply to its RCPT command,
    /// else the last error reply before the recipient is named (`line`) to a command that
    /// names no other recipient, else the first such reply.
    pub(crate) fn transcript_reply(&self, address: Option<&str>, line: usize) -> Option<String> {
        let is_error = |e: &&Exchange| e.reply.starts_with(['4', '5']);
        let rcpt_of = |e: &Exchange| e.command.as_deref().and_then(|c| RCPT_TO.captures(c)).map(|c| c[1].to_string());
        if let Some(a) = address {
            let own = self.transcript.iter().filter(is_error).find(|e| rcpt_of(e).is_some_and(|r| address::same(&r, a)));
            if let Some(e) = own {
                return Some(e.reply.clone());
            }
        }
        let mut general = self.transcript.iter().filter(is_error).filter(|e| rcpt_of(e).is_none());
        let before = general.clone().rfind(|e| e.line < line);
        before.or_else(|| general.next()).map(|e| e.reply.clone())
    }

    /// The replies of the transcript (to complete a truncated diagnostic).
    pub(crate) fn replies(&self) -> impl Iterator<Item = &str> {
        self.transcript.iter().map(|e| e.reply.as_str())
    }

    /// The named recipient with this address.
    pub(crate) fn find(&self, addr: &str) -> Option<&Named> {
        self.recipients.iter().find(|n| n.address.as_deref().is_some_and(|a| address::same(a, addr)))
    }
}

/// Read the human-readable text of a bounce.
pub(crate) fn scan(text: &str) -> Prose {
    let text = truncate(text, MAX_TEXT);
    let text = unquote(text).into_owned();
    let (cut, original_at) = original_start(&text).unzip();
    let body = &text[..cut.unwrap_or(text.len())];
    let section = SECTION_START.find(body);
    let section_at = section.map_or(0, |m| {
        // "Did not reach the following recipient: a@b" — the list starts on that line.
        let line_end = body[m.end()..].find('\n').map_or(body.len(), |i| m.end() + i);
        if body[m.end()..line_end].contains('@') {
            body[..m.start()].rfind('\n').map_or(0, |i| i + 1)
        } else {
            m.end()
        }
    });
    let (recipients, listed_before) = read_recipients(&body[section_at..]);
    // The reason may be written before the list starts (EZweb, Domino, MailMarshal).
    let before = section.map_or(section_at, |m| m.start().min(section_at));
    let preamble = last_lines(&body[..before], 8).into_iter().chain(listed_before).collect();
    let transcript = transcript(&body[section_at..]);
    Prose { family: OnceCell::new(), recipients, preamble, transcript, body_end: cut, original_at, section_at, text }
}

fn read_recipients(section: &str) -> (Vec<Named>, Vec<String>) {
    let mut recipients: Vec<Named> = Vec::new();
    let mut preamble = Vec::new();
    let mut current: Option<usize> = None; // index in `recipients` of the open block
    for (number, line) in section.lines().take(MAX_LINES).enumerate() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        // Lines indented deeper than the recipient line continue its block.
        let deeper = current.is_some_and(|i| !trimmed.is_empty() && indent > recipients[i].indent);
        if !deeper {
            if let Some((addr, rest, summary)) = recipient_line(line) {
                let new = Named { address: Some(addr), original: None, indent, line: number, summary, lines: vec![rest] };
                current = Some(open(&mut recipients, new));
                continue;
            }
            if DELIVERY_TARGET.is_match(trimmed) && recipients.len() < MAX_RECIPIENTS {
                let lines = vec![trimmed.to_string()];
                recipients.push(Named { address: None, original: None, indent, line: number, summary: false, lines });
                current = Some(recipients.len() - 1);
                continue;
            }
        }
        match current {
            // Indentation is kept: it tells where a wrapped reply ends.
            Some(i) => add_to_block(&mut recipients[i], line.trim_end()),
            None if preamble.len() < MAX_LINES => preamble.push(line.trim_end().to_string()),
            None => {}
        }
    }
    (recipients, preamble)
}

/// Open a block for a recipient, or reopen the block of one named before.
fn open(recipients: &mut Vec<Named>, new: Named) -> usize {
    let known = new.address.as_deref().and_then(|a| {
        recipients.iter().position(|n| n.address.as_deref().is_some_and(|b| address::same(a, b)))
    });
    match known {
        Some(i) => {
            let n = &mut recipients[i];
            if n.lines.len() < MAX_BLOCK {
                n.lines.push(String::new());
                n.lines.extend(new.lines);
            }
            i
        }
        None if recipients.len() < MAX_RECIPIENTS => {
            recipients.push(new);
            recipients.len() - 1
        }
        None => recipients.len() - 1,
    }
}

fn add_to_block(n: &mut Named, line: &str) {
    if n.address.is_none() {
        // "pipe to |prog / generated by a@b", "an undisclosed address / (generated from a@b)"
        if let Some(c) = GENERATED_BY.captures(line).or_else(|| GENERATED_FROM.captures(line)) {
            n.address = Some(c[1].to_string());
        }
    }
    if n.original.is_none() {
        if let Some(c) = GENERATED_FROM.captures(line) {
            n.original = Some(c[1].to_string());
        }
    }
    if n.lines.len() < MAX_BLOCK {
        n.lines.push(line.to_string());
    }
}

/// The address a line introduces, what the line says after it, and whether it is
/// Sendmail's summary line.
fn recipient_line(line: &str) -> Option<(String, String, bool)> {
    let t = line.trim();
    if t.is_empty() || !t.contains('@') {
        return None;
    }
    if let Some(c) = SUMMARY_LINE.captures(t) {
        return Some((c[1].to_string(), t.to_string(), true));
    }
    if let Some(c) = RCPT_COMMAND.captures(t) {
        return Some((c[1].to_string(), String::new(), false));
    }
    let t = t.trim_start_matches(['*', '•', '-', '·']).trim_start();
    let (after, sentence) = match LEAD_IN.find(t) {
        // "Unable to deliver message to <a@b> (...)" is a sentence worth keeping whole;
        // "Recipient: <a@b>" is a label.
        Some(m) => (&t[m.end()..], m.as_str().split_whitespace().count() >= 4),
        None => (t, false),
    };
    if let Some((addr, rest)) = address_first(after) {
        return Some((addr, if sentence { t.to_string() } else { rest }, false));
    }
    let c = PHRASE_THEN_ADDRESS.captures(t)?;
    if c[1].split_whitespace().count() > PHRASE_WORDS || NOT_A_RECIPIENT_PHRASE.is_match(&c[1]) {
        return None;
    }
    Some((c[2].to_string(), c[1].to_string(), false))
}

/// `<a@b>: rest`, `"a@b": rest`, `a@b rest` → (a@b, rest).
fn address_first(t: &str) -> Option<(String, String)> {
    let opener = t.chars().next()?;
    let inner = match opener {
        '<' | '"' | '(' | '[' => &t[1..],
        _ => t,
    };
    let m = address::ADDRESS.find(inner).filter(|m| m.start() == 0)?;
    let addr = m.as_str().trim_end_matches('.');
    let mut rest = &inner[addr.len()..];
    rest = rest.strip_prefix(['>', '"', ')', ']']).unwrap_or(rest);
    // The address must end there: "a@b.example is ..." is prose about a@b, not a list.
    if !(rest.is_empty() || rest.starts_with([' ', '\t', ':', ',', ';', '<', '(', '.', '['])) {
        return None;
    }
    let rest = ADDRESS_NOISE.find(rest).map_or(rest, |n| &rest[n.end()..]);
    let rest = rest.trim().trim_start_matches('.').trim();
    let rest = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(rest);
    Some((addr.to_string(), rest.to_string()))
}

/// Where the bounce's text ends and where the returned message's headers start: after an
/// announcing line ("--- Below this line is a copy of the message."), after the part
/// headers of a message/rfc822 part written into the text, or at a block of headers.
fn original_start(text: &str) -> Option<(usize, usize)> {
    let marked = ORIGINAL_STARTS.find(text).map(|m| {
        let announce_end = if m.as_str().trim_start().to_ascii_lowercase().starts_with("content-type:") {
            text[m.end()..].find("\n\n").map_or(text.len(), |i| m.end() + i + 2)
        } else {
            text[m.end()..].find('\n').map_or(text.len(), |i| m.end() + i + 1)
        };
        (m.start(), announce_end)
    });
    let headers = header_block_start(text).map(|at| (at, at));
    match (marked, headers) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// The start of the first run of at least three header lines that includes a header only
/// a message has (Received, Return-Path, Message-ID, ...).
fn header_block_start(text: &str) -> Option<usize> {
    let mut offset = 0;
    let mut run: Option<(usize, usize, bool)> = None; // (start, headers, has a strong one)
    for line in text.split_inclusive('\n') {
        let l = line.trim_end();
        let field = header_name(l);
        match (field, &mut run) {
            (Some(name), Some((_, count, strong))) => {
                *count += 1;
                *strong |= is_strong(name);
            }
            (Some(name), None) => run = Some((offset, 1, is_strong(name))),
            (None, Some(_)) if l.starts_with([' ', '\t']) && !l.trim().is_empty() => {}
            (None, _) => run = None,
        }
        if let Some((start, count, true)) = run {
            if count >= 3 {
                return Some(start);
            }
        }
        offset += line.len();
    }
    None
}

fn header_name(line: &str) -> Option<&str> {
    let (name, rest) = line.split_once(':')?;
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.as_bytes()[0].is_ascii_alphabetic()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !rest.starts_with("//");
    ok.then_some(name)
}

fn is_strong(name: &str) -> bool {
    const STRONG: [&str; 12] = [
        "received",
        "return-path",
        "dkim-signature",
        "message-id",
        "mime-version",
        "authentication-results",
        "delivered-to",
        "content-transfer-encoding",
        "references",
        "in-reply-to",
        "domainkey-signature",
        "thread-index",
    ];
    let lower = name.to_ascii_lowercase();
    STRONG.contains(&lower.as_str()) || lower.starts_with("x-") || lower.starts_with("arc-")
}

/// The SMTP dialogue some bounces quote: ">>> CMD" / "<<< reply" (or "Sent <<<" /
/// "Received >>>" in InterScan's wording; the arrows are used both ways, so a line is a
/// reply when it starts with a reply code).
fn transcript(text: &str) -> Vec<Exchange> {
    let mut out: Vec<Exchange> = Vec::new();
    let mut command: Option<String> = None;
    let mut open = false; // the last line added to the last reply
    for (number, line) in text.lines().take(MAX_LINES).enumerate() {
        let t = line.trim();
        let Some(body) = arrow_at(t).map(|i| &t[i + 3..]) else {
            open = false;
            continue;
        };
        let body = body.trim();
        let is_reply = body.len() >= 3 && body.as_bytes()[..3].iter().all(u8::is_ascii_digit);
        if !is_reply {
            command = Some(body.to_string());
            open = false;
            continue;
        }
        let continues = open
            && out
                .last()
                .is_some_and(|last| last.reply.as_bytes().get(3) == Some(&b'-') && last.reply.get(..3) == body.get(..3));
        if continues {
            if let Some(last) = out.last_mut() {
                // "NNN-" lines continue the reply they belong to.
                last.reply.push(' ');
                last.reply.push_str(body);
            }
        } else if out.len() < 64 {
            out.push(Exchange { command: command.clone(), reply: body.to_string(), line: number });
        }
        open = true;
    }
    for e in &mut out {
        e.reply = reply::join_multiline(&reply::sanitize(&e.reply));
    }
    out
}

/// Where the line's ">>>" or "<<<" starts, if within its first 17 bytes: "Sent <<< ...",
/// "送信 <<< ..." (a short word may come before the arrow).
fn arrow_at(line: &str) -> Option<usize> {
    let head = &line.as_bytes()[..line.len().min(16 + 3)];
    head.windows(3).position(|w| w == b">>>" || w == b"<<<")
}

/// A forwarded bounce quotes every line with "> ": read it without them.
fn unquote(text: &str) -> Cow<'_, str> {
    let lines = text.lines().filter(|l| !l.trim().is_empty());
    let (mut quoted, mut all) = (0usize, 0usize);
    for l in lines.take(400) {
        all += 1;
        if l.starts_with('>') && !l.starts_with(">>>") {
            quoted += 1;
        }
    }
    if all == 0 || quoted * 2 < all {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for l in text.lines() {
        let l = l.strip_prefix('>').map_or(l, |r| r.strip_prefix(' ').unwrap_or(r));
        out.push_str(l);
        out.push('\n');
    }
    Cow::Owned(out)
}

/// The last lines of a text holding `n` non-empty ones (blank lines kept: they end replies).
fn last_lines(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut seen = 0;
    let from = (0..lines.len())
        .rev()
        .find(|&i| {
            seen += usize::from(!lines[i].is_empty());
            seen == n
        })
        .unwrap_or(0);
    lines[from..].iter().map(|l| l.to_string()).collect()
}

/// At most `max` bytes, cut at a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_lines() {
        let rl = |l: &str| recipient_line(l).map(|(a, r, _)| (a, r));
        assert_eq!(rl("<a@b.example>:").map(|r| r.0), Some("a@b.example".into()));
        assert_eq!(rl("  <a@b.example>: 550 5.1.1 no such user"), Some(("a@b.example".into(), "550 5.1.1 no such user".into())));
        assert_eq!(rl("a@b.example on Thu, 29 Apr 2010 00:00:00 -0000"), Some(("a@b.example".into(), String::new())));
        assert_eq!(rl("a@b.example<mailto:a@b.example>"), Some(("a@b.example".into(), String::new())));
        assert_eq!(rl("    Recipient: <a@b.example>").map(|r| r.0), Some("a@b.example".into()));
        assert_eq!(
            rl("User mailbox exceeds allowed size: a@b.example"),
            Some(("a@b.example".into(), "User mailbox exceeds allowed size".into()))
        );
        assert_eq!(recipient_line("Reply-To: a@b.example"), None);
        assert_eq!(recipient_line("Please contact a@b.example for help"), None);
        // A phrase of nine words names a recipient; a sentence of ten does not.
        let nine = "Mail for this user could not be delivered here";
        assert_eq!(rl(&format!("{nine}: a@b.example")).map(|r| r.1), Some(nine.to_string()));
        assert_eq!(recipient_line(&format!("So {nine}: a@b.example")), None);
        assert_eq!(recipient_line(">>> RCPT To:<a@b.example>").map(|r| r.0), Some("a@b.example".into()));
    }

    #[test]
    fn blocks_follow_their_recipient() {
        let p = scan(
            "Hi. This is the qmail-send program at example.org.\n\
             I'm afraid I wasn't able to deliver your message to the following addresses.\n\n\
             <a@b.example>:\n192.0.2.1 does not like recipient.\nRemote host said: 550 5.1.1 unknown user\n\
             Giving up on 192.0.2.1.\n\n<c@d.example>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n\
             --- Below this line is a copy of the message.\n\nReturn-Path: <x@y.example>\nTo: a@b.example\n",
        );
        assert_eq!(p.family(), Some("qmail"));
        assert_eq!(p.recipients.len(), 2);
        assert_eq!(p.recipients[0].reply(&p).text, "550 5.1.1 unknown user");
        assert_eq!(p.recipients[1].reply(&p).text, "Sorry, no mailbox here by that name. (#5.1.1)");
        assert!(p.original_at.is_some());
    }

    #[test]
    fn transcript_replies_belong_to_their_recipient() {
        let p = scan(
            "   ----- Transcript of session follows -----\n... while talking to mx.example.org.:\n\
             >>> RCPT To:<a@example.org>\n<<< 550 5.1.1 <a@example.org>... no such user\n\
             550 5.1.1 <a@example.org>... User unknown\n>>> RCPT To:<b@example.org>\n\
             <<< 452 4.2.2 <b@example.org>... mailbox full\n",
        );
        let reply_of = |addr: &str| p.find(addr).map(|n| n.reply(&p).text);
        assert_eq!(reply_of("a@example.org").as_deref(), Some("550 5.1.1 <a@example.org>... no such user"));
        assert_eq!(reply_of("b@example.org").as_deref(), Some("452 4.2.2 <b@example.org>... mailbox full"));
        assert_eq!(
            p.transcript_reply(Some("b@example.org"), 0).as_deref(),
            Some("452 4.2.2 <b@example.org>... mailbox full")
        );
    }

    #[test]
    fn transcripts() {
        let t = transcript(">>> DATA\n<<< 552-5.7.0 first\n<<< 552 5.7.0 second\n554 5.0.0 Service unavailable\n");
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].reply, "552 5.7.0 first second");
        assert_eq!(t[0].command.as_deref(), Some("DATA"));
    }

    /// An arrow counts within the first 17 bytes of the line, the earlier of the two kinds.
    #[test]
    fn arrows_start_a_line_or_follow_a_short_word() {
        assert_eq!(arrow_at(">>> RCPT TO:<a@b>"), Some(0));
        assert_eq!(arrow_at("Sent <<< RCPT TO:<a@b>"), Some(5));
        assert_eq!(arrow_at("送信 <<< RCPT TO:<a@b>"), Some(7));
        assert_eq!(arrow_at("0123456789abcdef>>> x <<<"), Some(16));
        assert_eq!(arrow_at("0123456789abcdefg>>> x"), None);
        assert_eq!(arrow_at("a <<< b >>> c"), Some(2));
        assert_eq!(arrow_at(">> <<"), None);
        assert_eq!(arrow_at(""), None);
    }
}
