//! Footer texts as Postfix will send them, and the static pcre:/regexp: table.

mod socketmap_support;

use plainbounce::classify;
use plainbounce::config::{Config, FooterStyle};
use plainbounce::footer::table::{self, Format};
use plainbounce::footer::{Answer, Footers};
use plainbounce::kb::KnowledgeBase;
use socketmap_support::*;
use std::process::Command;

const FULL_KB_KEYS: &[&str] = &[
    RELAY_DENIED,
    "452 4.2.2 <kim@example.org>: Recipient address rejected: mailbox full",
    "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in local recipient table",
    "554 5.7.1 <a@b>: rejected by test policy",
];

#[test]
fn every_footer_line_fits_smtp() {
    let long_address = format!("554 5.7.1 <{}@example.net>: Relay access denied", "x".repeat(380));
    let multi_line = "550-5.1.1 first line\r\n550-5.1.1 second line\r\n550 5.1.1 <nobody@example.org>: User unknown";
    let mut keys: Vec<String> = FULL_KB_KEYS.iter().map(|k| k.to_string()).collect();
    keys.push(long_address);
    keys.push(multi_line.to_string());
    for style in [FooterStyle::Short, FooterStyle::Full] {
        let footers = test_footers(style);
        for lang in footers.languages() {
            for key in &keys {
                let template = footers.footer_for_reply(key, lang).unwrap_or_else(|| panic!("footer for {key}"));
                let lines = postfix_expand(key, &template);
                assert!(lines.len() > key.split("\r\n").count() || template.starts_with("\\c"));
                // Lines of the reply itself are Postfix's; the footer's lines must fit.
                let footer_lines = if template.starts_with("\\c") { key.split("\r\n").count() - 1 } else { key.split("\r\n").count() };
                for line in &lines[footer_lines..] {
                    assert_smtp_line(line);
                }
            }
        }
    }
}

#[test]
fn short_footer_continues_the_reply_line() {
    let footers = test_footers(FooterStyle::Short);
    let key = "452 4.2.2 <kim@example.org>: Recipient address rejected: mailbox full";
    let template = footers.footer_for_reply(key, "en").unwrap();
    let lines = postfix_expand(key, &template);
    assert_eq!(lines, vec![format!("{key}. {}", footers.text("test-mailbox-full", "en").unwrap().replace("$$", "$"))]);
}

#[test]
fn long_footer_is_wrapped_on_new_lines_with_the_codes() {
    let footers = test_footers(FooterStyle::Full);
    let key = "554 5.7.1 <a@b>: rejected by test policy";
    let template = footers.footer_for_reply(key, "en").unwrap();
    assert!(!template.starts_with("\\c"), "too long for the reply line: {template}");
    let lines = postfix_expand(key, &template);
    assert!(lines.len() >= 3, "{lines:?}");
    assert_eq!(lines[0], "554-5.7.1 <a@b>: rejected by test policy");
    for l in &lines[1..lines.len() - 1] {
        assert!(l.starts_with("554-5.7.1 "), "{l}");
    }
    assert!(lines.last().unwrap().starts_with("554 5.7.1 "));
    // Nothing lost: the words come back in order.
    let words: Vec<&str> = lines[1..].iter().flat_map(|l| l[10..].split(' ')).collect();
    let text = footers.text("test-long", "en").unwrap();
    assert_eq!(words.join(" ").replace(' ', ""), text.replace(' ', ""));
}

#[test]
fn texts_are_sanitised() {
    let footers = test_footers(FooterStyle::Short);
    let key = "452 4.2.2 <kim@example.org>: Recipient address rejected: mailbox full";
    let en = footers.footer_for_reply(key, "en").unwrap();
    // The KB text says "costs $0" and contains a literal "\n": Postfix must see neither a
    // macro nor a line break request.
    assert!(en.contains("$$0"), "{en}");
    assert!(!en[2..].contains('\\'), "only the leading \\c may be an escape: {en}");
    let de = footers.footer_for_reply(key, "de").unwrap();
    assert!(de.is_ascii());
    assert!(de.contains("Empfaengers") && de.contains("loeschen - danach"), "{de}");
    for line in postfix_expand(key, &de) {
        assert_smtp_line(&line);
    }
}

#[test]
fn only_specific_rules_give_footers() {
    let footers = test_footers(FooterStyle::Short);
    assert_eq!(footers.lookup("footer", "571 go away"), Answer::NotFound);
    assert_eq!(footers.lookup("footer", "550 5.0.0 <x@y>: something odd"), Answer::NotFound);
    assert_eq!(footers.lookup("footer", "599 9.9.9 qqq"), Answer::NotFound);
    assert!(matches!(footers.lookup("footer", "550 5.1.1 <x@y>: no such user"), Answer::Footer(_)));
    assert!(matches!(footers.lookup("footer-DE", RELAY_DENIED), Answer::Footer(_)));
    assert_eq!(footers.lookup("footerde", RELAY_DENIED), Answer::UnknownMap);
}

#[test]
fn config_picks_language_and_style() {
    let kb = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/socketmap_kb.toml");
    let base = strip_footer_section(plainbounce::config::EMBEDDED);
    let toml = format!("{base}\n[footer]\nlang = \"de\"\nstyle = \"full\"\n");
    let mut config = Config::parse(&toml, "test").unwrap();
    assert_eq!(config.footer.style, FooterStyle::Full);
    config.kb_files = vec![kb.into()];
    let footers = Footers::from_config(&config).unwrap();
    let key = "452 4.2.2 <kim@example.org>: Recipient address rejected: mailbox full";
    let Answer::Footer(f) = footers.lookup("footer", key) else { panic!("no footer") };
    assert!(f.contains("Das Postfach des Empfaengers ist voll."), "{f}");
    assert!(f.contains("The mailbox has no room"), "full style, untranslated explanation in English: {f}");
    // A language without texts falls back to English.
    let toml = format!("{base}\n[footer]\nlang = \"tlh\"\n");
    let footers = Footers::from_config(&Config::parse(&toml, "test").unwrap()).unwrap();
    let Answer::Footer(f) = footers.lookup("footer", RELAY_DENIED) else { panic!("no footer") };
    assert!(f.contains(footers.text(&as_footers_explain(footers.kb(), RELAY_DENIED).cause.id, "en").unwrap()));
    // Unknown keys in [footer] are refused.
    assert!(Config::parse(&format!("{base}\n[footer]\nlanguage = \"de\"\n"), "test").is_err());
}

/// The embedded config without its [footer] table (which is last in the file).
fn strip_footer_section(text: &str) -> &str {
    text.split("\n[footer]").next().unwrap()
}

// ---------------------------------------------------------------------------------------
// Static tables

#[test]
fn table_has_the_relay_rule_and_counts_skips() {
    let footers = test_footers(FooterStyle::Short);
    for format in [Format::Pcre, Format::Regexp] {
        let t = table::build(&footers, "en", format);
        let e = classify::explain_text(footers.kb(), RELAY_DENIED);
        let rule = e.rule.unwrap();
        assert!(t.text.contains(&format!("# {} ({})", rule.id, rule.cause)), "{}", t.text);
        assert!(t.skipped.iter().any(|(id, why)| id == "test-unicode-class" && why.contains("Unicode")), "{:?}", t.skipped);
        assert!(t.text.contains("skipped test-unicode-class"));
        // Footer-less rules: reply-code ones are left out, status ones stop the search.
        assert!(!t.text.contains("# test-code-only-rule"));
        // X.0.0 ranks below every rule that gives a footer: nothing to stop.
        assert!(!t.text.contains("# test-other-undefined"));
        assert!(t.text.contains("# test-any-permanent (test-code-only) gives no footer"));
        assert!(t.text.contains(&format!("{} rules written; {} rules skipped", t.written, t.skipped.len())));
        check_table_syntax(&t.text);
    }
}

/// Every line is a comment, an `if`/`endif`, or `/pattern/flags footer`, and the ifs nest.
fn check_table_syntax(text: &str) {
    let mut depth = 0;
    for line in text.lines() {
        assert!(line.is_ascii() && !line.contains('\t'), "{line}");
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line == "endif" {
            depth -= 1;
            assert!(depth >= 0);
            continue;
        }
        let rest = match line.strip_prefix("if ") {
            Some(r) => r.strip_prefix('!').unwrap_or(r),
            None => line,
        };
        let d = rest.chars().next().unwrap();
        assert!(!d.is_ascii_alphanumeric() && d != '#' && d != '!' && d != ' ', "{line}");
        let close = find_close(rest, d).unwrap_or_else(|| panic!("unterminated pattern: {line}"));
        if line.starts_with("if ") {
            depth += 1;
            assert!(rest[close + 1..].chars().all(|c| c.is_ascii_alphabetic()), "{line}");
        } else {
            let (_, footer) = rest[close + 1..].split_once(' ').expect("pattern then footer");
            assert!(!footer.is_empty() && !footer.starts_with(' '));
        }
    }
    assert_eq!(depth, 0);
}

/// Position of the closing delimiter, skipping backslash escapes (as Postfix does).
fn find_close(s: &str, d: char) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == d as u8 {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The table's first match is the knowledge base's answer: entries are in lookup order.
#[test]
fn table_order_follows_knowledge_base_precedence() {
    let kb = test_kb();
    let ordered = kb.rules_by_precedence();
    // Each rule alone, to ask "does this rule match?" the knowledge base's own way.
    let alone: Vec<KnowledgeBase> =
        ordered.iter().map(|r| KnowledgeBase::from_sources(&[("one".into(), single_rule_kb(r))]).unwrap()).collect();
    let mut checked = 0;
    for rule in kb.rules() {
        for ex in &rule.examples {
            let q = plainbounce::codes::query_for_text(ex);
            let want = kb.lookup(&q.as_query(ex)).map(|m| m.rule.id.clone());
            let first = ordered.iter().zip(&alone).find(|(_, one)| one.lookup(&q.as_query(ex)).is_some()).map(|(r, _)| r.id.clone());
            assert_eq!(first, want, "{ex}");
            checked += 1;
        }
    }
    assert!(checked >= 6);
}

/// A knowledge base holding only `r` (and the causes classify needs).
fn single_rule_kb(r: &plainbounce::kb::Rule) -> String {
    let mut toml = format!(
        "[[cause]]\nid = {:?}\nreason = \"undefined\"\nwho = \"sender\"\npermanent = true\ntitle = \"t\"\nexplanation = \"e\"\nremedy = \"r\"\nadmin_note = \"a\"\n\n[[rule]]\nid = {:?}\ncause = {:?}\n",
        r.cause, r.id, r.cause
    );
    if let Some(p) = &r.pattern {
        toml.push_str(&format!("pattern = {p:?}\n"));
    }
    if let Some(s) = &r.status {
        toml.push_str(&format!("status = {s:?}\n"));
    }
    if !r.codes.is_empty() {
        toml.push_str(&format!("code = {:?}\n", r.codes));
    }
    if !r.commands.is_empty() {
        toml.push_str(&format!("command = {:?}\n", r.commands));
    }
    if !r.formats.is_empty() {
        toml.push_str(&format!("format = {:?}\n", r.formats));
    }
    toml
}

#[test]
fn cli_prints_a_table() {
    let out = Command::new(env!("CARGO_BIN_EXE_plainbounce"))
        .args(["postfix-footers", "--format", "regexp", "--kb", concat!(env!("CARGO_MANIFEST_DIR"), "/tests/socketmap_kb.toml")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("# Footers for Postfix"));
    assert!(text.contains("regexp:/etc/postfix/plainbounce_footers.regexp"));
    check_table_syntax(&text);
    let bad = Command::new(env!("CARGO_BIN_EXE_plainbounce")).args(["postfix-footers", "--lang", "tlh"]).output().unwrap();
    assert!(!bad.status.success());
}

/// With Postfix installed: for every example reply of the knowledge base (and a few more),
/// the static tables read by postmap give exactly the footer the socketmap gives (laid
/// out for an unknown reply), or nothing where the socketmap says NOTFOUND. Rules the
/// table had to skip are left out of the comparison.
#[test]
fn tables_agree_with_the_socketmap() {
    let Some(postmap) = postmap() else {
        eprintln!("note: postmap not found; skipping the table/socketmap comparison");
        return;
    };
    let footers = test_footers(FooterStyle::Short);
    let kb = footers.kb();
    let mut keys: Vec<String> = kb.rules().iter().flat_map(|r| r.examples.iter().cloned()).collect();
    keys.extend(["550 5.9.9 qqq", "550 5.7.9 <x@y>: odd policy", "451 4.7.1 <x@y>: try again", "250 2.0.0 Ok"].map(String::from));
    // Keys shaped like Postfix's replies (code, then status), the only keys the table
    // gets; the table reads the status at that place, the knowledge base anywhere.
    let postfix_reply = regex::Regex::new(r"^[245][0-9][0-9][ -][245]\.[0-9]{1,3}\.[0-9]{1,3} ").unwrap();
    keys.retain(|k| postfix_reply.is_match(k) && !k.contains(['\n', '\t']));
    let dir = std::env::temp_dir().join(format!("plainbounce-agree-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (format, kind) in [(Format::Pcre, "pcre"), (Format::Regexp, "regexp")] {
        let t = table::build(&footers, "en", format);
        let file = dir.join(format!("footers.{kind}"));
        std::fs::write(&file, &t.text).unwrap();
        let found = match postmap_query_many(&postmap, &keys, &format!("{kind}:{}", file.display())) {
            Ok(found) => found,
            Err(e) if e.contains("unsupported dictionary type") => {
                eprintln!("note: postmap has no {kind}: support; skipping it");
                continue;
            }
            Err(e) => panic!("{kind}: {e}"),
        };
        let mut compared = 0;
        for key in &keys {
            let e = as_footers_explain(kb, key);
            if e.rule.is_some_and(|r| t.skipped.iter().any(|(id, _)| *id == r.id)) {
                continue;
            }
            let want = footers
                .footer_for_reply(key, "en")
                .map(|_| plainbounce::footer::layout_unknown_reply(footers.text(&e.cause.id, "en").unwrap()).replace("$$$$", "$$"));
            assert_eq!(found.get(key), want.as_ref(), "{kind}: {key} (rule {})", e.matched());
            if let Some(footer) = found.get(key) {
                let reply_lines = key.split("\r\n").count();
                postfix_expand(key, footer).iter().skip(reply_lines).for_each(|l| assert_smtp_line(l));
            }
            compared += 1;
        }
        assert!(compared >= 8, "{kind}: only {compared} keys compared");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With Postfix installed: converted patterns match the same sample replies in Postfix's
/// pcre:/regexp: tables as the Rust originals do (case-insensitively) in plainbounce.
#[test]
fn converted_patterns_match_like_rust() {
    use plainbounce::footer::regex::{convert, Dialect};
    let Some(postmap) = postmap() else {
        eprintln!("note: postmap not found; skipping the pattern comparison");
        return;
    };
    let patterns = [
        r"user (unknown|not found)",
        r"no such (user|mailbox|recipient)",
        r"mailbox (is )?(full|over ?quota)",
        r"\bspf\b.*fail",
        r"5\.7\.26",
        r"(?i)DMARC",
        r"(?-i:DMARC)",
        r"message (size )?exceeds",
        r"[^a-z]550[- ]",
        r"\d{3} \d\.\d\.\d",
        r"account .{0,40} disabled",
        r"don't|can't|it's .quoted.",
        r"a/b|x#y|<[^>]*>",
        r"\[\d+\.\d+\.\d+\.\d+\]",
        r"(?:a|b)+?c",
        r"\w+@\w+\.\w+",
        r"[[:alpha:]]+ \s+x",
        r"[\w.-]+@example",
        r"^550",
        r"denied$",
        r"\bfoo\B",
        r"[\]\[^-]x",
        r"ü",
        r"\pL",
    ];
    let samples = [
        "550 5.1.1 <bob@example.net>: User unknown",
        "550 5.1.1 no such mailbox",
        "452 4.2.2 Mailbox is over quota",
        "550 5.7.23 SPF check failed",
        "550 5.7.26 DMARC policy",
        "550 5.7.26 dmarc policy",
        "552 message size exceeds fixed limit",
        "x550 y",
        "554 5.7.1 account foo.bar disabled",
        "I can't do that",
        "it's \"quoted\"",
        "path a/b here",
        "hash x#y here",
        "client [192.0.2.1] blocked",
        "aabbc",
        "mail bob.smith@example.org now",
        "Relay   x",
        "Relay access denied",
        "foobar",
        "]x and ^x and -x",
        "Grüße",
    ];
    let dir = std::env::temp_dir().join(format!("plainbounce-patterns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys: Vec<String> = samples.iter().map(|s| s.to_string()).collect();
    let mut compared = 0;
    for (dialect, kind, flags) in [(Dialect::Pcre, "pcre", "s"), (Dialect::Posix, "regexp", "")] {
        for (i, p) in patterns.iter().enumerate() {
            let Ok(c) = convert(p, dialect) else { continue };
            let file = dir.join(format!("p{i}.{kind}"));
            // PCRE output escapes every '/'; POSIX output gets another delimiter.
            let d = if dialect == Dialect::Posix && c.pattern.contains('/') { '%' } else { '/' };
            std::fs::write(&file, format!("{d}{}{d}{flags} MATCH\n", c.pattern)).unwrap();
            let found = match postmap_query_many(&postmap, &keys, &format!("{kind}:{}", file.display())) {
                Ok(f) => f,
                Err(e) if e.contains("unsupported dictionary type") => break,
                Err(e) => panic!("{kind} {p:?} -> {:?}: {e}", c.pattern),
            };
            let rust = regex::RegexBuilder::new(p).case_insensitive(true).build().unwrap();
            for s in samples {
                assert_eq!(found.contains_key(s), rust.is_match(s), "{kind}: {p:?} (as {:?}) on {s:?}", c.pattern);
                compared += 1;
            }
        }
    }
    eprintln!("{compared} pattern/sample pairs compared with postmap");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A reply explained as the footers explain it: an answer to RCPT TO, to the sending client.
fn as_footers_explain<'k>(kb: &'k KnowledgeBase, reply: &str) -> classify::Explanation<'k> {
    classify::explain_reply_to(kb, reply, "RCPT", Some(plainbounce::footer::SMTPD_CONTEXT))
}
