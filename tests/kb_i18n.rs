//! Translations of the cause texts (config/kb/lang/*.toml): every built-in cause is
//! translated completely into each shipped language, with formal address throughout.

use plainbounce::footer::ascii_safe;
use plainbounce::kb::{Cause, KnowledgeBase, Texts};
use std::sync::LazyLock;

/// The languages shipped with translations of every cause.
const LANGS: &[&str] = &["de", "fr", "es"];

/// Titles that may read the same as in English, as (language, cause id). Keep it short.
const SAME_TITLE_OK: &[(&str, &str)] = &[];

/// Words of informal address, per language; the texts use "Sie", "vous" and "usted".
const INFORMAL: &[(&str, &[&str])] = &[
    ("de", &["du", "dich", "dir", "dein", "deine", "deinen", "deinem", "deiner", "deines", "euch", "euer", "eure"]),
    ("fr", &["tu", "toi", "ton", "ta", "tes"]),
    ("es", &["tú", "tu", "tus", "ti", "te", "contigo", "vosotros", "os"]),
];

static KB: LazyLock<KnowledgeBase> = LazyLock::new(|| KnowledgeBase::builtin().expect("built-in knowledge base loads"));

fn fields(t: &Texts) -> [(&'static str, &str); 4] {
    [
        ("title", t.title.as_str()),
        ("explanation", t.explanation.as_str()),
        ("remedy", t.remedy.as_str()),
        ("admin_note", t.admin_note.as_str()),
    ]
}

fn translation<'a>(c: &'a Cause, lang: &str) -> Option<&'a Texts> {
    c.translations.iter().find(|(l, _)| l == lang).map(|(_, t)| t)
}

/// Every (language, cause, texts) of the shipped languages.
fn translated() -> impl Iterator<Item = (&'static str, &'static Cause, &'static Texts)> {
    LANGS.iter().flat_map(|lang| KB.causes().iter().filter_map(move |c| translation(c, lang).map(|t| (*lang, c, t))))
}

/// The texts the sender reads (admin notes may quote English server replies).
fn sender_fields(t: &Texts) -> [(&'static str, &str); 3] {
    let [title, explanation, remedy, _] = fields(t);
    [title, explanation, remedy]
}

#[test]
fn builtin_loads_with_translations() {
    assert!(KB.causes().len() >= 60, "only {} causes", KB.causes().len());
    for lang in LANGS {
        let translated = KB.causes().iter().filter(|c| translation(c, lang).is_some()).count();
        assert!(translated > 0, "no cause has a [{lang}] translation");
    }
}

#[test]
fn every_cause_is_fully_translated() {
    let mut problems = Vec::new();
    for lang in LANGS {
        for c in KB.causes() {
            let Some(t) = translation(c, lang) else {
                problems.push(format!("[{lang}] {}: no translation", c.id));
                continue;
            };
            for ((field, text), (_, en)) in fields(t).into_iter().zip(fields(&c.en)) {
                if text.trim().is_empty() {
                    problems.push(format!("[{lang}] {}: {field} is empty", c.id));
                } else if text.trim() == en.trim() && !(field == "title" && SAME_TITLE_OK.contains(&(*lang, c.id.as_str()))) {
                    problems.push(format!("[{lang}] {}: {field} is still English: {text:?}", c.id));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn texts_are_tidy() {
    let mut problems = Vec::new();
    for (lang, c, t) in translated() {
        for (field, text) in fields(t) {
            if text != text.trim() || text.contains("  ") || text.contains('\n') {
                problems.push(format!("[{lang}] {}: {field} has stray whitespace", c.id));
            }
        }
        if t.title.ends_with('.') {
            problems.push(format!("[{lang}] {}: title ends with a full stop", c.id));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn sender_texts_use_formal_address() {
    let mut problems = Vec::new();
    for (lang, c, t) in translated() {
        let (_, informal) = INFORMAL.iter().find(|(l, _)| *l == lang).expect("informal words listed for each language");
        for (field, text) in sender_fields(t) {
            let lower = text.to_lowercase();
            for word in lower.split(|ch: char| !ch.is_alphabetic()) {
                if informal.contains(&word) {
                    problems.push(format!("[{lang}] {}: {field} uses informal {word:?}: {text}", c.id));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Postfix footers carry the texts as ASCII; every letter used must transliterate, or it
/// would silently vanish from the footer.
#[test]
fn every_character_survives_the_footer() {
    let mut problems = Vec::new();
    for (lang, c, t) in translated() {
        for (field, text) in sender_fields(t) {
            for ch in text.chars().filter(|ch| !ch.is_ascii() && ascii_safe(&ch.to_string()).is_empty()) {
                problems.push(format!("[{lang}] {}: {field} has {ch:?}, which footers drop", c.id));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Each file under lang/ holds only its own language, so a misplaced section is caught.
#[test]
fn each_language_file_holds_only_its_language() {
    for lang in LANGS {
        let path = format!("{}/config/kb/lang/{lang}.toml", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let doc: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        let keys: Vec<&String> = doc.keys().collect();
        assert_eq!(keys, ["lang"], "{path}: only [lang.{lang}.*] sections belong here");
        let langs: Vec<&String> = doc["lang"].as_table().expect("lang is a table").keys().collect();
        assert_eq!(langs, [lang], "{path}: sections for another language");
    }
}

#[test]
fn translation_of_an_unknown_cause_is_refused() {
    let causes = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/kb/causes.toml")).unwrap();
    let extra = "[lang.de.no-such-cause]\ntitle = \"Gibt es nicht\"\n".to_string();
    let sources = [("causes.toml".to_string(), causes), ("extra.toml".to_string(), extra)];
    let err = KnowledgeBase::from_sources(&sources).err().expect("unknown cause must be refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("no-such-cause"), "error does not name the cause: {msg}");
}
