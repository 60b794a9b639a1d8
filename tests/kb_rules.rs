//! The built-in knowledge base: it loads, its rules recognise their own examples, every
//! cause is reachable, and the most specific evidence wins.

use plainbounce::classify::explain_text;
use plainbounce::kb::{Evidence, KnowledgeBase, Query, REASONS};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

/// Compiled once for all tests of this file.
static KB: LazyLock<KnowledgeBase> = LazyLock::new(|| KnowledgeBase::builtin().expect("built-in knowledge base loads"));

fn kb() -> &'static KnowledgeBase {
    &KB
}

/// Causes that code (not a rule) chooses: the generic fallbacks and the report kinds.
const USED_BY_CODE: &[&str] =
    &["unknown-permanent", "unknown-temporary", "feedback-report", "auto-reply", "delivered", "expired"];

#[test]
fn every_example_is_matched_by_its_own_rule() {
    let bad = kb().failing_examples();
    assert!(bad.is_empty(), "rules not matching their examples:\n{}", bad.join("\n"));
}

#[test]
fn causes_have_valid_reasons_and_full_texts() {
    let kb = kb();
    assert!(kb.causes().len() >= 60, "only {} causes", kb.causes().len());
    for c in kb.causes() {
        assert!(REASONS.contains(&c.reason.as_str()), "{}: reason {}", c.id, c.reason);
        for (field, text) in [
            ("title", &c.en.title),
            ("explanation", &c.en.explanation),
            ("remedy", &c.en.remedy),
            ("admin_note", &c.en.admin_note),
        ] {
            assert!(text.trim().len() >= 10, "{}: {field} too short: {text:?}", c.id);
        }
    }
}

#[test]
fn required_causes_exist_with_their_reasons() {
    let kb = kb();
    for (id, reason) in [
        ("unknown-permanent", "onhold"),
        ("unknown-temporary", "onhold"),
        ("relay-auth-required", "norelaying"),
        ("feedback-report", "feedback"),
        ("auto-reply", "vacation"),
        ("delivered", "delivered"),
        ("expired", "expired"),
        ("user-unknown", "userunknown"),
        ("host-unknown", "hostunknown"),
        ("mailbox-full", "mailboxfull"),
    ] {
        let c = kb.cause(id).unwrap_or_else(|| panic!("missing cause {id}"));
        assert_eq!(c.reason, reason, "cause {id}");
    }
}

#[test]
fn every_cause_is_used() {
    let kb = kb();
    let used: BTreeSet<&str> = kb.rules().iter().map(|r| r.cause.as_str()).chain(USED_BY_CODE.iter().copied()).collect();
    let unused: Vec<&str> = kb.causes().iter().map(|c| c.id.as_str()).filter(|id| !used.contains(id)).collect();
    assert!(unused.is_empty(), "causes no rule refers to: {unused:?}");
}

#[test]
fn pattern_rules_name_their_provider_and_give_examples() {
    let kb = kb();
    let mut by_provider: BTreeMap<&str, usize> = BTreeMap::new();
    for r in kb.rules().iter().filter(|r| r.pattern.is_some()) {
        let p = r.provider.as_deref().unwrap_or_else(|| panic!("pattern rule {} has no provider", r.id));
        assert!(!r.examples.is_empty(), "pattern rule {} has no example", r.id);
        *by_provider.entry(p).or_default() += 1;
    }
    let total: usize = by_provider.values().sum();
    assert!(total >= 80, "only {total} pattern rules: {by_provider:?}");
    for p in ["gmail", "microsoft", "yahoo", "icloud", "postfix", "exim", "qmail", "exchange", "spamhaus", "barracuda", "spamcop"] {
        assert!(by_provider.contains_key(p), "no pattern rule for {p}: {by_provider:?}");
    }
}

#[test]
fn every_basic_reply_code_of_rfc_5321_has_a_rule() {
    let kb = kb();
    let rfc5321 = [
        211, 214, 220, 221, 250, 251, 252, 354, 421, 450, 451, 452, 455, 500, 501, 502, 503, 504, 550, 551, 552,
        553, 554, 555,
    ];
    let others = [432, 454, 521, 530, 534, 535, 538, 556]; // RFC 4954, RFC 3207, RFC 7504
    for code in rfc5321.into_iter().chain(others) {
        let id = format!("rfc5321-{code}");
        let rule = kb.rules().iter().find(|r| r.id == id).unwrap_or_else(|| panic!("missing rule {id}"));
        assert_eq!(rule.codes, vec![code], "{id}");
        assert_eq!(rule.evidence(), Evidence::ReplyCode, "{id}");
        let q = Query { reply_code: Some(code), status: None, text: "", ..Query::default() };
        assert_eq!(kb.lookup(&q).map(|m| m.rule.id.as_str()), Some(id.as_str()));
    }
}

fn matched(kb: &KnowledgeBase, text: &str) -> String {
    explain_text(kb, text).matched().to_string()
}

#[test]
fn text_beats_status_beats_reply_code() {
    let kb = kb();
    // qmail says "over quota" but tags it #5.1.1 (bad mailbox): the words win.
    let over_quota = "552 sorry, mailbox alan@example.com is over quota temporarily (#5.1.1)";
    assert_eq!(matched(kb, over_quota), "generic-mailbox-full");
    assert_eq!(explain_text(kb, over_quota).cause.id, "mailbox-full");
    assert_eq!(matched(kb, "552 (#5.1.1)"), "rfc3463-x.1.1");
    // No telling words: the enhanced code beats the basic code.
    let twitter = "554 5.7.1 <bob@example.com>: Recipient address rejected";
    assert_eq!(matched(kb, twitter), "rfc3463-x.7.1");
    assert_eq!(matched(kb, "554 <bob@example.com>"), "rfc5321-554");
    // And the reply code is better than nothing.
    assert_eq!(matched(kb, "no codes, no known words"), "generic");
}

#[test]
fn provider_codes_that_reuse_registry_numbers_need_their_text() {
    let kb = kb();
    // Gmail's 5.7.30 means "DKIM did not pass"; the registry's means REQUIRETLS.
    let gmail = "550-5.7.30 Your email has been blocked because DKIM authentication didn't pass for this message. - gsmtp";
    assert_eq!(explain_text(kb, gmail).cause.id, "dkim-failed");
    assert_eq!(explain_text(kb, "550 5.7.30").cause.id, "requiretls-unsupported");
    // Gmail's 4.7.27 means "SPF did not pass"; the registry's X.7.27 is a sender null MX.
    let gmail = "421-4.7.27 Your email has been rate limited because SPF authentication didn't pass for this message. - gsmtp";
    assert_eq!(explain_text(kb, gmail).cause.id, "spf-failed");
    assert_eq!(explain_text(kb, "550 5.7.27").cause.id, "sender-null-mx");
    // Microsoft's 5.7.606 is a banned IP only with Microsoft's words.
    let ms = "550 5.7.606 Access denied, banned sending IP [198.51.100.222]. To request removal from this list please visit https://sender.office.com/";
    assert_eq!(explain_text(kb, ms).cause.id, "blocklist-microsoft");
    assert_ne!(explain_text(kb, "550 5.7.606").cause.id, "blocklist-microsoft");
    // Microsoft's 5.4.1 is an unknown recipient (directory-based edge blocking); alone it is routing.
    let ms = "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)";
    assert_eq!(explain_text(kb, ms).cause.id, "user-unknown");
    assert_eq!(matched(kb, "550 5.4.1"), "rfc3463-x.4.1");
}

#[test]
fn relaying_denied_from_your_location_asks_the_sender_to_log_in() {
    let kb = kb();
    let e = explain_text(kb, "553 sorry, relaying denied from your location");
    assert_eq!(e.cause.id, "relay-auth-required");
    assert_eq!(e.cause.reason, "norelaying");
    assert!(e.permanent);
    let remedy = &e.cause.en.remedy;
    assert!(remedy.contains("SMTP authentication"), "{remedy}");
    assert!(remedy.contains("outgoing server of the provider"), "{remedy}");
}

#[test]
fn an_admin_file_overrides_texts_and_disables_rules() {
    let admin = r#"
[[cause]]
id = "mailbox-full"
title = "Postfach voll (local wording)"

[[rule]]
id = "generic-mailbox-full"
disabled = true

[[rule]]
id = "local-quota"
cause = "mailbox-full"
pattern = 'storage of our mail archive is used up'
provider = "local"
examples = ["452 4.2.2 storage of our mail archive is used up"]
"#;
    let path = std::env::temp_dir().join(format!("plainbounce-kb-override-{}.toml", std::process::id()));
    std::fs::write(&path, admin).unwrap();
    let kb = &KnowledgeBase::with_files(&[&path]).expect("admin file loads");
    std::fs::remove_file(&path).ok();

    let full = kb.cause("mailbox-full").unwrap();
    assert_eq!(full.en.title, "Postfach voll (local wording)");
    assert!(full.en.remedy.contains("send the message again later"), "untouched fields stay");
    assert!(kb.rules().iter().all(|r| r.id != "generic-mailbox-full"));
    // Without the disabled rule, the words no longer decide: the status code does.
    assert_eq!(matched(kb, "550 5.2.2 <kijitora@example.jp>... Mailbox Full"), "rfc3463-x.2.2");
    assert_eq!(matched(kb, "452 4.2.2 storage of our mail archive is used up"), "local-quota");
    assert!(kb.failing_examples().is_empty(), "{:?}", kb.failing_examples());
    assert_eq!(matched(self::kb(), "550 5.2.2 <kijitora@example.jp>... Mailbox Full"), "generic-mailbox-full");
}
