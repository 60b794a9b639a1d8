//! Micro-benchmarks of the per-message path: parse, classify, render, rewrite (the whole
//! `Engine::process` + `apply`), over a few representative corpus messages read at bench
//! time (never copied into the repository), and start-up.
//!
//! Run: `cargo bench --bench engine` (or `bench/run`, which also prints the medians).
//! Corpus: $PLAINBOUNCE_CORPUS, else ../shared/corpus, else /work/shared/corpus.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use plainbounce::classify;
use plainbounce::config::Config;
use plainbounce::dsn::{self, Detection, RecipientFacts};
use plainbounce::engine::{self, Engine, Outcome};
use plainbounce::kb::KnowledgeBase;
use plainbounce::render::{Original, RecipientView, TemplateSet, View};
use std::hint::black_box;
use std::path::PathBuf;

/// Bounces from different MTAs and sizes, and one ordinary message.
const SAMPLES: &[&str] = &[
    "lhost-postfix-01.eml",
    "lhost-exim-05.eml",
    "lhost-qmail-06.eml",
    "lhost-office365-01.eml",
    "lhost-gmail-09.eml",
    "rhost-aol-02.eml",
    "negatives/is-not-bounce-01.eml",
];

/// Typical remote replies, for classifying text on its own.
const REPLIES: &[&str] = &[
    "550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown in virtual mailbox table",
    "552 5.2.2 The email account that you tried to reach is over quota.",
    "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
    "451 4.7.1 Greylisting in action, please come back later",
    "553 sorry, relaying denied from your location",
];

fn corpus_dir() -> PathBuf {
    let candidates = [
        std::env::var_os("PLAINBOUNCE_CORPUS").map(PathBuf::from),
        Some(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus"))),
        Some(PathBuf::from("/work/shared/corpus")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("emails").is_dir())
        .expect("corpus not found: set PLAINBOUNCE_CORPUS")
}

fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let emails = corpus_dir().join("emails");
    SAMPLES
        .iter()
        .map(|name| {
            let raw = std::fs::read(emails.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            (*name, raw)
        })
        .collect()
}

/// Every message of the corpus (bounces and not), for the corpus-wide benchmarks.
fn corpus() -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    let mut dirs = vec![corpus_dir().join("emails")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("corpus directory").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(std::fs::read(&path).expect("corpus file"));
            }
        }
    }
    files
}

fn recipients(raw: &[u8]) -> Vec<RecipientFacts> {
    match dsn::parse(raw) {
        Detection::Bounce(b) => b.recipients,
        Detection::NotBounce(_) => Vec::new(),
    }
}

fn bench_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    for (name, raw) in samples() {
        g.throughput(Throughput::Bytes(raw.len() as u64));
        g.bench_function(name, |b| b.iter(|| dsn::parse(black_box(&raw))));
    }
    let all = corpus();
    g.throughput(Throughput::Elements(all.len() as u64));
    g.bench_function("whole-corpus", |b| b.iter(|| all.iter().filter(|raw| matches!(dsn::parse(black_box(raw)), dsn::Detection::Bounce(_))).count()));
    g.finish();
}

fn bench_classify(c: &mut Criterion) {
    let kb = KnowledgeBase::builtin().expect("built-in knowledge base");
    let mut g = c.benchmark_group("classify");
    for (name, raw) in samples() {
        let facts = recipients(&raw);
        if facts.is_empty() {
            continue;
        }
        g.bench_function(name, |b| {
            b.iter(|| facts.iter().filter(|f| classify::classify(&kb, black_box(f)).permanent).count())
        });
    }
    // Many different texts, as in real traffic: one text repeated keeps the regex
    // engines' lazy caches warm and flatters them.
    let all: Vec<RecipientFacts> = corpus().iter().flat_map(|raw| recipients(raw)).collect();
    g.throughput(Throughput::Elements(all.len() as u64));
    g.bench_function("whole-corpus", |b| b.iter(|| all.iter().filter(|f| classify::classify(&kb, black_box(f)).permanent).count()));
    g.throughput(Throughput::Elements(REPLIES.len() as u64));
    g.bench_function("reply-texts", |b| {
        b.iter(|| REPLIES.iter().filter(|t| classify::explain_text(&kb, black_box(t)).permanent).count())
    });
    g.finish();
}

/// What the templates get for a parsed bounce: a plain view of each classified recipient
/// (the engine builds a richer one; this one exercises the same templates and helpers).
fn view(kb: &KnowledgeBase, facts: &[RecipientFacts]) -> View {
    let recipients = facts
        .iter()
        .map(|f| {
            let e = classify::classify(kb, f);
            let t = e.cause.texts("en");
            let delayed = f.action.as_deref() == Some("delayed");
            RecipientView {
                address: f.address.clone().unwrap_or_default(),
                action: if delayed { "delayed" } else { "failed" }.into(),
                failed: !delayed,
                delayed,
                title: t.title.clone(),
                explanation: t.explanation.clone(),
                remedy: t.remedy.clone(),
                admin_note: t.admin_note.clone(),
                reason: e.cause.reason.clone(),
                cause: e.cause.id.clone(),
                rule: e.matched().to_string(),
                who: e.cause.who.as_str(),
                who_key: format!("who_{}", e.cause.who.as_str()),
                retry_key: if delayed { "retry_yes" } else { "retry_no" },
                permanent: e.permanent,
                status: e.status.clone(),
                reply_code: e.reply_code,
                remote_mta: f.remote_mta.clone(),
                command: f.command.clone(),
                diagnostic: f.diagnostic.clone(),
                last_attempt: f.last_attempt.clone(),
                will_retry_until: f.will_retry_until.clone(),
                server: f.remote_mta.clone().unwrap_or_default(),
                refused: !delayed,
                unreachable: false,
            }
        })
        .collect();
    View {
        lang: "en".into(),
        organisation: "Example".into(),
        helpdesk: None,
        helpdesk_url: None,
        links: Vec::new(),
        has_help: false,
        sender: "sender@example.org".into(),
        original: Original::default(),
        reporting_mta: None,
        intro_key: "intro_failed",
        recipients,
    }
}

fn bench_render(c: &mut Criterion) {
    let kb = KnowledgeBase::builtin().expect("built-in knowledge base");
    let templates = TemplateSet::load(&[]).expect("built-in templates");
    let mut g = c.benchmark_group("render");
    for (name, raw) in samples() {
        let facts = recipients(&raw);
        if facts.is_empty() {
            continue;
        }
        let view = view(&kb, &facts);
        g.bench_function(name, |b| b.iter(|| templates.render("bounce", black_box(&view)).expect("renders")));
    }
    g.finish();
}

/// The whole engine: decide, and build the new message when it changes.
fn bench_rewrite(c: &mut Criterion) {
    let engine = Engine::new(Config::embedded()).expect("engine with the embedded config");
    let mut g = c.benchmark_group("rewrite");
    for (name, raw) in samples() {
        g.throughput(Throughput::Bytes(raw.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| match engine.process(black_box(&raw)) {
                Outcome::Modify(m) => engine::apply(&raw, &m).len(),
                Outcome::Pass(_) => 0,
            })
        });
    }
    g.finish();
}

fn bench_startup(c: &mut Criterion) {
    let mut g = c.benchmark_group("startup");
    g.sample_size(10);
    g.bench_function("knowledge-base", |b| b.iter(|| KnowledgeBase::builtin().expect("kb")));
    g.bench_function("engine", |b| b.iter(|| Engine::new(Config::embedded()).expect("engine")));
    g.finish();
}

criterion_group!(benches, bench_parse, bench_classify, bench_render, bench_rewrite, bench_startup);
criterion_main!(benches);
