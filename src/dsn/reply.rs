//! The remote server's reply as bounces quote it: cleaned up, multi-line replies joined,
//! and picked out of the prose around it ("Remote host said: ...", "host X said: ...",
//! "(reason: ...)", "<<< ...", "returned '...'").

use regex::Regex;
use std::sync::LazyLock;

/// What a block of bounce text says about the remote reply.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Reply {
    /// The reply (or, when there is none, the block's own explanation), one line.
    pub text: String,
    /// True when `text` is a reply quoted from a server (it carries a reply or status code).
    pub quoted: bool,
    pub command: Option<&'static str>,
    pub remote_mta: Option<String>,
}

/// Control characters removed, whitespace collapsed, trimmed.
pub(crate) fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        // A run of printable ASCII (most of any text) is taken whole; else one character.
        let run = rest.bytes().take_while(|b| (0x21..0x7f).contains(b)).count();
        let (piece, after) = rest.split_at(run.max(c.len_utf8()));
        rest = after;
        if c == '\u{fffd}' {
            continue;
        }
        if c.is_whitespace() || c.is_control() || c == '\u{feff}' {
            space = !out.is_empty();
            continue;
        }
        if std::mem::take(&mut space) {
            out.push(' ');
        }
        out.push_str(piece);
    }
    out
}

static DIAG_TYPE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\s*[A-Za-z][A-Za-z0-9._-]{0,23}\s*;\s*").unwrap());

/// A Diagnostic-Code value without its type (`smtp;`, `X-Postfix;`, `x-unix;`, ...),
/// unfolded and with a multi-line reply joined.
pub(crate) fn clean_diagnostic(raw: &str) -> String {
    let s = sanitize(raw);
    let s = match DIAG_TYPE.find(&s) {
        Some(m) => &s[m.end()..],
        None => &s,
    };
    join_multiline(s)
}

static LEAD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([245]\d\d)[ -]#?(?:([245]\.\d{1,3}\.\d{1,3})\s+)?").unwrap());
static REPEAT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\s([245]\d\d)[ -]#?(?:([245]\.\d{1,3}\.\d{1,3})(?:\s+|$))?").unwrap());

/// A multi-line reply written on one line keeps its code on every line:
/// "550-5.1.1 A 550-5.1.1 B 550 5.1.1 C" becomes "550 5.1.1 A B C".
pub(crate) fn join_multiline(s: &str) -> String {
    let Some(lead) = LEAD.captures(s) else { return s.to_string() };
    let code = lead[1].to_string();
    let status = lead.get(2).map(|m| m.as_str().to_string());
    let rest = &s[lead.get(0).map_or(0, |m| m.end())..];
    // Only a reply written over several lines repeats its code ("550-...", last "550 ...");
    // elsewhere a code in the text is the text ("... -> 550 : User unknown").
    let multiline = s.as_bytes().get(3) == Some(&b'-') || rest.contains(&format!("{code}-"));
    let joined = REPEAT.replace_all(rest, |c: &regex::Captures| {
        let same_code = c[1] == code;
        let same_status = match (c.get(2), &status) {
            (Some(a), Some(b)) => a.as_str() == b,
            (None, _) => multiline,
            (Some(_), None) => false,
        };
        let hyphen = c[0].trim_start().as_bytes().get(3) == Some(&b'-');
        if same_code && same_status && (multiline || hyphen || c.get(2).is_some()) {
            " ".to_string()
        } else {
            c[0].to_string()
        }
    });
    let head = match &status {
        Some(st) => format!("{code} {st} "),
        None => format!("{code} "),
    };
    sanitize(&(head + &joined))
}

/// Where a quoted reply begins, after the words that announce it.
static MARKER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)
        remote\ host\ said(?:\[response\ message\])?:\s*
        | (?-u:\b)said:\s*
        | remote\ server\ (?:at\ \S+\ (?:\([^)]*\)\ )?)?returned\ '
        | responded\ with\ failure:\s*
        | \(reason:\s*
        | (?-u:\b)reason:\s*
        | ^\s*(?:\S{1,16}\s+)?(?:<<<|>>>)\s*
        | the\ error\ that\ the\ other\ server\ returned\ was:\s*
        | the\ response\ (?:from\ the\ remote\ server\ )?was:\s*
        | error\ message:\s*\[?
        | reported\ error:\s*
        | (?:^|\s)diagnostic[\ -]code:\s*(?:smtp;\s*)?
        | server\ message\s*$
        ",
    )
    .unwrap()
});

/// A reply or status code where a reply could begin.
static CODE_START: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?:^|[\s:'"(\[>])(?:[245]\d\d(?:[ -]|$)|[245]\.\d{1,3}\.\d{1,3}\s)"#).unwrap()
});

/// A line that starts with a basic reply code.
static REPLY_CODE_START: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[245]\d\d(?:[ -]|$)").unwrap());

/// Lines that end a quoted reply: the bounce's own words after it.
static TRAILER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)^\s*(?:
          giving\ up\ on | i'm\ not\ going\ to\ try\ again | this\ has\ been\ a\ permanent\ failure
        | message\ will\ be\ deleted | message\ could\ not\ be\ delivered\ for | no\ action\ is\ required
        | please\ note\ that\ this\ is\ only | the\ message\ is\ kept\ in\ the\ queue | you\ do\ not\ need
        | рекомендуем | step: | technical\ report: | original\ message | dsn\ generated\ by | message\ hops
        | (?:reporting-mta|final-recipient|original-recipient|action|status|remote-mta|diagnostic-code
          |last-attempt-date|will-retry-until|arrival-date|received-from-mta):
        | -{3,} | \*{3,} | ={3,} | _{3,} | >>> | \.\.\.\ while\ talking
        )",
    )
    .unwrap()
});

/// Lines of a bounce's own wording that say nothing about the failure.
static BOILERPLATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)^\s*(?:
          technical\ details\ of\ (?:permanent|temporary)\ failure:?
        | technical\ details:? | diagnostic\ information\ for\ administrators:? | generating\ server:.*
        | because:? | for\ the\ following\ reason:? | this\ is\ an\ automatically\ generated\ delivery\ status\ notification\.?
        | this\ message\ was\ created\ automatically\ by\ mail\ delivery\ software\.? | hi!? | -+\s*server\ message | -+\s*smtp\ command.* | [-*=_\#\s]*
        )$",
    )
    .unwrap()
});

static COMMAND: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)
        (?:(?-u:\b)after|in\ reply\ to|did\ not\ like\ our|(?-u:\b)for)\s+
          (rcpt\ to|mail\ from|end\ of\ data|data|ehlo|helo|initial\ connection|text\ command|pipelined\ data)
        | (does\ not\ like\ recipient) | (failed\ after\ i\ sent\ the\ message|failed\ on\ data\ command)
        | \[(rcpt_to|mail_from|data)\] | but\ (sender)\ was\ rejected | but\ (my\ name)\ was\ rejected
        | but\ (greeting)\ failed | (lmtp)\ error\ after
        ",
    )
    .unwrap()
});

static REMOTE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)
          (?-u:\b)host\s+([A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9])\s*\[[^\]]*\]
        | (?-u:\b)host:\s*([A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9])
        | remote\ server\ at\ ([A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9])
        | ^\s*([A-Za-z0-9][A-Za-z0-9.:-]*[A-Za-z0-9])\s+(?:does\ not\ like\ recipient|failed\ after\ i\ sent)
        | while\ talking\ to\ ([A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9])
        | smtp\ server\ <([^>\s]+)>
        | ^\s*([A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9])\s+\[[^\]]*\]\s+did\ not\ like
        | (?-u:\b)connect\ to\ ([A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9])\[
        | ^\s*connected\ to\ ([A-Za-z0-9][A-Za-z0-9.:-]*[A-Za-z0-9])\ but
        | remote\ host\ ([A-Za-z0-9][A-Za-z0-9.:-]*[A-Za-z0-9])\ said
        ",
    )
    .unwrap()
});

static IN_REPLY_TO: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\s*\(in reply to [^)]*\)\s*").unwrap());

/// A basic reply code standing as a word: not inside a number, a host or an IPv6
/// address ("[2606:2800:220:6d::1]" holds no reply).
static REPLY_CODE_WORD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?:^|[\s'"(\[<>=#]|[^0-9A-Fa-f]:)([245]\d\d)(?:[ ,;)-]|$)"#).unwrap());

/// The reply code of a diagnostic: the one it starts with, else the first one standing
/// as a word.
pub(crate) fn reply_code(diagnostic: &str) -> Option<u16> {
    REPLY_CODE_WORD.captures(diagnostic).and_then(|c| c[1].parse().ok())
}

/// The SMTP command a text says the failure followed.
pub(crate) fn command_in(text: &str) -> Option<&'static str> {
    let c = COMMAND.captures(text)?;
    let word = c.iter().skip(1).flatten().next()?.as_str().to_ascii_lowercase();
    Some(match word.as_str() {
        "rcpt to" | "rcpt_to" | "does not like recipient" => "RCPT",
        "mail from" | "mail_from" | "sender" => "MAIL",
        "ehlo" | "helo" | "my name" => "EHLO",
        "initial connection" | "greeting" => "CONN",
        _ => "DATA",
    })
}

/// The remote host a text names.
pub(crate) fn remote_in(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| REMOTE.captures(l).and_then(|c| c.iter().skip(1).flatten().next().map(|m| m.as_str().to_string())))
}

/// The reply quoted in a block of lines (the recipient's part of a bounce), or the
/// block's own explanation when it quotes none.
pub(crate) fn from_block(lines: &[&str]) -> Reply {
    let joined = lines.join("\n");
    let command = command_in(&joined);
    let remote_mta = remote_in(&joined);
    match quoted_reply(lines) {
        Some(text) => Reply { text, quoted: true, command, remote_mta },
        None => {
            // The block's own words, up to the bounce's closing words (separators and
            // headings before them are skipped).
            let mut kept: Vec<&str> = Vec::new();
            for l in lines {
                let trailer = TRAILER.is_match(l);
                if trailer && !kept.is_empty() {
                    break;
                }
                if !trailer && !BOILERPLATE.is_match(l) {
                    kept.push(l);
                }
            }
            Reply { text: sanitize(&kept.join(" ")), quoted: false, command, remote_mta }
        }
    }
}

/// Find the first quoted reply in the lines and gather its continuation lines.
fn quoted_reply(lines: &[&str]) -> Option<String> {
    let (start_line, start_col, after_quote, in_parens) = find_start(lines)?;
    let first = &lines[start_line][start_col..];
    let mut parts = vec![first.trim_end()];
    let multi = LEAD.captures(first.trim_start()).filter(|c| c[0].as_bytes().get(3) == Some(&b'-'));
    let code = multi.as_ref().map(|c| c[1].to_string());
    let first_indent = indent(lines[start_line]);
    // "(reason: ...)" closed on its own line is the whole reply.
    let closed = in_parens && first.contains(')');
    for line in lines.iter().skip(start_line + 1).take(if closed { 0 } else { 20 }) {
        let t = line.trim();
        if t.is_empty() || TRAILER.is_match(t) || MARKER.is_match(t) && !t.starts_with(code.as_deref().unwrap_or("\0")) {
            break;
        }
        // A wrapped reply keeps its indentation; a line further left is something else.
        if indent(line) < first_indent {
            break;
        }
        match &code {
            // A multi-line reply runs to the line that carries "NNN " (its last line).
            Some(c) => {
                let t = t.trim_start_matches("<<<").trim_start();
                parts.push(t);
                if t.starts_with(&format!("{c} ")) {
                    break;
                }
            }
            // A new reply code starts another reply (a bare status may continue one).
            None if REPLY_CODE_START.is_match(t) => break,
            None => parts.push(t),
        }
    }
    let mut text = sanitize(&parts.join(" "));
    if after_quote {
        if let Some(end) = text.rfind('\'') {
            text.truncate(end);
        }
    }
    if in_parens && text.ends_with(')') {
        text.pop();
    }
    let text = IN_REPLY_TO.replace_all(&text, " ");
    let text = join_multiline(&sanitize(&text.replace("<<< ", " ")));
    Some(text).filter(|t| !t.is_empty())
}

/// (line, column, the reply is in single quotes, the reply is in parentheses)
///
/// Words that announce a reply win over a bare code elsewhere ("see DSN 5.1.10" in
/// Exchange's prose is not the reply); when the announced text is not itself a reply
/// ("Delay reason: SMTP error from ...:"), the reply is the code line just below.
fn find_start(lines: &[&str]) -> Option<(usize, usize, bool, bool)> {
    let starts_with_code = |s: &str| CODE_START.find(s.trim_start()).is_some_and(|m| m.start() == 0);
    let code_line_below = |i: usize| {
        (i + 1..lines.len().min(i + 4)).find(|&j| starts_with_code(lines[j])).map(|j| (j, indent(lines[j]), false, false))
    };
    for (i, line) in lines.iter().enumerate() {
        let Some(m) = MARKER.find(line) else { continue };
        let marker = m.as_str();
        let rest = &line[m.end()..];
        if (marker.contains(">>>") || marker.contains("<<<")) && !starts_with_code(rest) {
            // A transcript's command line, not a reply.
            continue;
        }
        if rest.trim().is_empty() {
            // The reply is on the next non-empty line.
            if let Some(j) = (i + 1..lines.len()).find(|&j| !lines[j].trim().is_empty()) {
                return Some((j, indent(lines[j]), false, false));
            }
            continue;
        }
        if !starts_with_code(rest) {
            if let Some(found) = code_line_below(i) {
                return Some(found);
            }
        }
        return Some((i, m.end(), marker.ends_with('\''), marker.starts_with("(reason")));
    }
    lines.iter().enumerate().find_map(|(i, line)| {
        CODE_START.find(line).map(|m| (i, m.start() + m.as_str().find(|c: char| c.is_ascii_digit()).unwrap_or(0), false, false))
    })
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sanitize` as first written, a character at a time: the reference.
    fn sanitize_by_char(s: &str) -> String {
        let mut out = String::new();
        let mut space = false;
        for c in s.chars().filter(|&c| c != '\u{fffd}') {
            if c.is_whitespace() || c.is_control() || c == '\u{feff}' {
                space = !out.is_empty();
            } else {
                if std::mem::take(&mut space) {
                    out.push(' ');
                }
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn sanitize_matches_the_character_by_character_reference() {
        let mut texts: Vec<String> = ["", " ", "a", " a\tb\r\n c ", "\u{feff}x\u{fffd}y\u{0}z\u{7f}", "é\u{2028}ü\u{a0}\u{85}."]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/emails");
        for entry in std::fs::read_dir(&corpus).into_iter().flatten().flatten() {
            if let Ok(raw) = std::fs::read(entry.path()) {
                texts.push(String::from_utf8_lossy(&raw).into_owned());
            }
        }
        assert!(texts.len() > 200, "corpus not found at {}", corpus.display());
        for t in &texts {
            assert_eq!(sanitize(t), sanitize_by_char(t), "{:?}", t.get(..200));
        }
    }

    #[test]
    fn multiline_replies_are_joined() {
        assert_eq!(
            join_multiline("550-5.7.26 Unauthenticated email 550-5.7.26 DMARC policy. 550 5.7.26 https://x - gsmtp"),
            "550 5.7.26 Unauthenticated email DMARC policy. https://x - gsmtp"
        );
        // A single-line reply that quotes a code keeps it.
        assert_eq!(join_multiline("554 Message not allowed - 554 Message not allowed"), "554 Message not allowed - 554 Message not allowed");
        assert_eq!(join_multiline("550 5.1.351 returned unknown recipient -> 550 : User unknown"), "550 5.1.351 returned unknown recipient -> 550 : User unknown");
        assert_eq!(join_multiline("550 5.1.1 user unknown"), "550 5.1.1 user unknown");
        assert_eq!(join_multiline("no code here"), "no code here");
    }

    #[test]
    fn reply_codes_stand_as_words() {
        assert_eq!(reply_code("550 5.1.1 user unknown"), Some(550));
        assert_eq!(reply_code("5.1.0 - Unknown address error 550-'5.7.1 Access denied'"), Some(550));
        assert_eq!(reply_code("[(0) example.com. [2606:2800:220:6d:26bf::aa7]:25: socket error]"), None);
        assert_eq!(reply_code("host 192.0.2.250 said nothing"), None);
        assert_eq!(reply_code("Error, ERROR_CODE :421, Host not reachable."), Some(421));
    }

    #[test]
    fn diagnostic_types_are_stripped() {
        assert_eq!(clean_diagnostic("smtp; 550 5.1.1 <a@b>... User\n    Unknown"), "550 5.1.1 <a@b>... User Unknown");
        assert_eq!(clean_diagnostic("X-Postfix; Host or domain name not found"), "Host or domain name not found");
        assert_eq!(clean_diagnostic("X-Unix; 77"), "77");
    }

    #[test]
    fn replies_are_found_in_prose() {
        let r = from_block(&[
            "192.0.2.135 does not like recipient.",
            "Remote host said: 450 4.2.2 <k@example.jp>... Mailbox Full",
            "Giving up on 192.0.2.135.",
        ]);
        assert_eq!(r.text, "450 4.2.2 <k@example.jp>... Mailbox Full");
        assert_eq!(r.command, Some("RCPT"));
        assert_eq!(r.remote_mta.as_deref(), Some("192.0.2.135"));
        let r = from_block(&[
            "  SMTP error from remote mail server after RCPT TO:",
            "  <k@example.jp>:",
            "  host mx49.example.jp [192.0.2.82]:",
            "  553 5.1.1 unknown or illegal user:",
            "  k@example.jp",
        ]);
        assert_eq!(r.text, "553 5.1.1 unknown or illegal user: k@example.jp");
        assert_eq!(r.remote_mta.as_deref(), Some("mx49.example.jp"));
        let r = from_block(&["Remote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'"]);
        assert_eq!(r.text, "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found");
        let r = from_block(&["Sorry, no mailbox here by that name. (#5.1.1)"]);
        assert!(!r.quoted);
        assert_eq!(r.text, "Sorry, no mailbox here by that name. (#5.1.1)");
    }
}
