//! The whole shared corpus of real bounces: every delivery bounce with a failed or delayed
//! recipient is rewritten, everything else passes unchanged, and the machine-readable
//! parts of every rewritten message are byte-for-byte the original's (as mail-parser
//! sees them, independently of plainbounce's own MIME code).

mod rewrite_support;

use mail_parser::{MessageParser, MimeHeaders};
use plainbounce::dsn::{self, Detection, ReportKind};
use plainbounce::engine::{apply, Engine, Outcome};
use rewrite_support::*;
use std::path::{Path, PathBuf};

/// $PLAINBOUNCE_CORPUS, else ../shared/corpus next to the crate, else /work/shared/corpus.
fn corpus() -> PathBuf {
    let candidates = [
        std::env::var_os("PLAINBOUNCE_CORPUS").map(PathBuf::from),
        Some(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus"))),
        Some(PathBuf::from("/work/shared/corpus")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("emails").is_dir())
        .expect("bounce corpus not found: set PLAINBOUNCE_CORPUS to the directory holding emails/")
}

fn messages(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    files
}

/// Does the parser say this is a bounce plainbounce must rewrite?
fn must_rewrite(d: &Detection) -> bool {
    match d {
        Detection::Bounce(b) => {
            b.kind == ReportKind::Delivery
                && b.recipients.iter().any(|r| r.action.as_deref().is_none_or(|a| a == "failed" || a == "delayed"))
        }
        Detection::NotBounce(_) => false,
    }
}

/// Is the top level a multipart whose first part plainbounce replaces (or inserts before)?
fn edited_in_place(raw: &[u8]) -> bool {
    let msg = MessageParser::new().parse_headers(raw).unwrap();
    msg.content_type()
        .is_some_and(|c| c.ctype().eq_ignore_ascii_case("multipart") && c.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report") || s.eq_ignore_ascii_case("mixed")))
        && !top_parts(raw).is_empty()
}

/// The machine-readable parts (and everything else but the notification) are unchanged.
fn check_kept(name: &str, raw: &[u8], out: &[u8]) -> Result<(), String> {
    let before = top_parts(raw);
    let after = top_parts(out);
    if edited_in_place(raw) {
        let replaced = after.len() == before.len() && after[1..] == before[1..];
        let inserted = after.len() == before.len() + 1 && after[1..] == before[..];
        if !(replaced || inserted) {
            return Err(format!("{name}: parts 2..n differ ({} parts before, {} after)", before.len(), after.len()));
        }
        if header(raw, "Content-Type") != header(out, "Content-Type") {
            return Err(format!("{name}: top-level Content-Type changed"));
        }
    } else {
        // Wrapped: the old body is the second part, verbatim.
        let body_start = header_block(raw).len() + if raw[header_block(raw).len()..].starts_with(b"\r\n") { 2 } else { 1 };
        let original_body = raw.get(body_start..).unwrap_or_default();
        let second = after.get(1).ok_or(format!("{name}: no second part"))?;
        if !second.ends_with(original_body) {
            return Err(format!("{name}: original body not kept verbatim"));
        }
    }
    Ok(())
}

fn check_message(engine: &Engine, name: &str, raw: &[u8]) -> Result<bool, String> {
    let detection = dsn::parse(raw);
    let rewrite = must_rewrite(&detection);
    match (engine.process(raw), rewrite) {
        (Outcome::Pass(_), false) => Ok(false),
        (Outcome::Pass(why), true) => Err(format!("{name}: a bounce with failed/delayed recipients was not rewritten: {why}")),
        (Outcome::Modify(m), false) => Err(format!("{name}: rewritten although not a failed/delayed delivery report: {}", m.summary)),
        (Outcome::Modify(m), true) => {
            let out = apply(raw, &m);
            check_kept(name, raw, &out)?;
            if header(&out, "X-Plainbounce").len() != 1 {
                return Err(format!("{name}: no X-Plainbounce header"));
            }
            let (text, html) = notification(&out);
            if !text.contains("couldn't be delivered") && !text.contains("hasn't been delivered yet") {
                return Err(format!("{name}: notification lacks a headline:\n{text}"));
            }
            if !html.contains("<h2 ") {
                return Err(format!("{name}: HTML lacks a headline"));
            }
            if !matches!(engine.process(&out), Outcome::Pass(_)) {
                return Err(format!("{name}: rewritten twice"));
            }
            Ok(true)
        }
    }
}

#[test]
fn whole_corpus() {
    let root = corpus().join("emails");
    // Rewrite whatever the recipient address looks like: this test is about the messages.
    let engine = engine("skip_patterns = []\n");
    let mut failures = Vec::new();
    let (mut rewritten, mut passed) = (0, 0);
    for path in messages(&root) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let raw = std::fs::read(&path).unwrap();
        for (variant, input) in [("", raw.clone()), (" (CRLF)", crlf(&raw))] {
            match check_message(&engine, &format!("{name}{variant}"), &input) {
                Ok(true) => rewritten += 1,
                Ok(false) => passed += 1,
                Err(e) => failures.push(e),
            }
        }
    }
    for path in messages(&root.join("negatives")) {
        let name = format!("negatives/{}", path.file_name().unwrap().to_string_lossy());
        let raw = std::fs::read(&path).unwrap();
        match engine.process(&raw) {
            Outcome::Pass(_) => passed += 1,
            Outcome::Modify(m) => failures.push(format!("{name}: a non-bounce was rewritten: {}", m.summary)),
        }
    }
    eprintln!("corpus: {rewritten} rewritten, {passed} passed unchanged, {} failures", failures.len());
    assert!(rewritten > 100, "the corpus has hundreds of bounces; only {rewritten} rewritten");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
