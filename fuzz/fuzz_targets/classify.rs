//! Classification of arbitrary text: never panics, and the decision is consistent with
//! the codes found (the winning rule's constraints hold, 5xx is permanent, 4xx is not).
#![no_main]

use libfuzzer_sys::fuzz_target;
use plainbounce::classify::{self, Explanation};
use plainbounce::dsn::RecipientFacts;
use plainbounce::kb::{self, KnowledgeBase};
use std::sync::LazyLock;

static KB: LazyLock<KnowledgeBase> = LazyLock::new(|| KnowledgeBase::builtin().expect("built-in knowledge base"));

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check(&classify::explain_text(&KB, &text), None);
    // The same bytes as a parsed recipient: "status\0action\0diagnostic".
    let mut fields = text.splitn(3, '\0');
    let (status, action, diagnostic) = (fields.next(), fields.next(), fields.next());
    let facts = RecipientFacts {
        status: status.map(str::to_string),
        action: action.map(str::to_string),
        diagnostic: diagnostic.map(str::to_string),
        ..Default::default()
    };
    check(&classify::classify(&KB, &facts), facts.action.as_deref());
});

fn check(e: &Explanation, action: Option<&str>) {
    if let Some(rule) = e.rule {
        assert_eq!(rule.cause, e.cause.id, "rule and cause disagree");
        if let Some(p) = &rule.status {
            let s = e.status.as_deref();
            let holds = match p.strip_prefix('!') {
                Some(not) => s.is_none_or(|s| !kb::status_matches(not, s)),
                None => s.is_some_and(|s| kb::status_matches(p, s)),
            };
            assert!(holds, "rule {} wants status {p}, got {s:?}", rule.id);
        }
        if !rule.codes.is_empty() {
            assert!(e.reply_code.is_some_and(|c| rule.codes.contains(&c)), "rule {} wants codes {:?}, got {:?}", rule.id, rule.codes, e.reply_code);
        }
    }
    if let Some(c) = e.reply_code {
        assert!((100..600).contains(&c), "reply code {c}");
    }
    // An expiry follows the report's action (a "failed" 4xx is final, a 4.4.7 delay not).
    if e.cause.id == "expired" {
        return;
    }
    if action.is_some_and(|a| a.eq_ignore_ascii_case("delayed")) {
        assert!(!e.permanent, "a delayed report is not permanent");
        return;
    }
    let class = e.status.as_deref().and_then(|s| s.chars().next());
    let class = class.or_else(|| e.reply_code.and_then(|c| char::from_digit(u32::from(c / 100), 10)));
    match class {
        Some('5') => assert!(e.permanent, "class 5 must be permanent"),
        Some('4') => assert!(!e.permanent, "class 4 must be temporary"),
        _ => {}
    }
}
