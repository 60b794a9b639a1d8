//! The labelled bounce corpus (../shared/corpus): plainbounce must find the reference
//! recipients, never read a negative as a bounce, and tell delivery reports, feedback
//! reports and auto-replies apart. Run `scripts/corpus-eval` for the full report.
//!
//! The corpus is found through $PLAINBOUNCE_CORPUS, else ../shared/corpus beside the
//! crate, else /work/shared/corpus.
//!
//! Reason agreement is checked over the labels not disputed in `eval::REASON_DISPUTES`
//! (each dispute names its evidence); the figure with every label is printed too.

use plainbounce::eval::{self, Evaluation};
use plainbounce::kb::KnowledgeBase;
use std::sync::OnceLock;

/// Share of reference recipients that must be found.
const MIN_RECIPIENTS_FOUND: f64 = 0.99;
/// Share of undisputed reference recipients whose reason must agree.
const MIN_REASON_AGREEMENT: f64 = 0.95;
/// Share of reference recipients that must get a specific (non-generic) cause.
const MIN_NON_GENERIC_CAUSE: f64 = 0.97;

fn evaluation() -> &'static Evaluation {
    static EV: OnceLock<Evaluation> = OnceLock::new();
    EV.get_or_init(|| {
        let dir = eval::locate_corpus().unwrap_or_else(|e| panic!("{e}"));
        let kb = KnowledgeBase::builtin().expect("built-in knowledge base");
        let ev = eval::evaluate(&dir, &kb).expect("corpus evaluation");
        println!("corpus: {}\n{}", dir.display(), ev.summary_table());
        ev
    })
}

#[test]
fn corpus_is_complete_enough_to_measure() {
    let ev = evaluation();
    assert!(ev.unreadable.is_empty(), "unreadable corpus files: {:?}", ev.unreadable);
    assert!(ev.overall().recipients >= 100, "too few labelled recipients: {}", ev.overall().recipients);
    assert!(ev.negatives >= 1, "the corpus has no negatives");
}

#[test]
fn reference_recipients_are_found() {
    let f = evaluation().overall();
    let missed: Vec<String> = evaluation()
        .outcomes
        .iter()
        .filter(|o| !o.found)
        .map(|o| format!("{} {:?}", o.label.file, o.label.recipient))
        .collect();
    assert!(
        f.found_rate() >= MIN_RECIPIENTS_FOUND,
        "recipients found {}/{} < {MIN_RECIPIENTS_FOUND}; missed: {missed:#?}",
        f.found,
        f.recipients
    );
}

#[test]
fn negatives_are_never_bounces() {
    let ev = evaluation();
    assert!(ev.negatives_misread.is_empty(), "negatives read as bounces: {:#?}", ev.negatives_misread);
}

#[test]
fn every_file_is_detected_as_its_kind() {
    let ev = evaluation();
    assert!(ev.wrong_kind.is_empty(), "files detected as the wrong kind: {:#?}", ev.wrong_kind);
}

/// Reason agreement (over the labels not disputed in `eval::REASON_DISPUTES`; the
/// figure with every label is printed beside it) and specific causes.
#[test]
fn reasons_agree_with_the_reference() {
    let f = evaluation().overall();
    println!(
        "reason agreement {:.1}% with every label, {:.1}% without the disputed ones (target {:.0}%); non-generic cause {:.1}% (target {:.0}%)",
        100.0 * f.reason_rate(),
        100.0 * f.undisputed_reason_rate(),
        100.0 * MIN_REASON_AGREEMENT,
        100.0 * f.non_generic_rate(),
        100.0 * MIN_NON_GENERIC_CAUSE,
    );
    assert!(
        f.undisputed_reason_rate() >= MIN_REASON_AGREEMENT,
        "reason agreement {}/{} on undisputed labels",
        f.undisputed_agree,
        f.undisputed
    );
    assert!(f.non_generic_rate() >= MIN_NON_GENERIC_CAUSE, "non-generic cause {}/{}", f.non_generic, f.recipients);
}
