//! Fail-open at the milter door: the real `plainbounce serve` binary on 127.0.0.1, driven
//! by an MTA-like client (indymilter-test). Every hostile message gets a final answer that
//! is never reject, tempfail or discard; a change re-assembles into sound MIME equal to
//! the filter's; what may not be changed (over the cap, over the time budget, no bounce)
//! passes unchanged.

mod hostile_support;
#[path = "../fuzz/src/invariants.rs"]
mod invariants;
#[path = "hostile_support/milter_client.rs"]
mod milter_client;

use hostile_support::{arf_report, auto_reply, plain_message, recipient, Dsn};
use milter_client::{sample, send, Fate, Sample, Sent, Server, Verdict};
use plainbounce::config::{Config, EMBEDDED};
use plainbounce::engine::Engine;
use std::path::Path;

const BIN: &str = env!("CARGO_BIN_EXE_plainbounce");

/// The embedded default with the socket and one `key = value` of our own (top-level keys
/// come first in the file, before any table).
fn config(port: u16, extra: &str) -> String {
    let key = extra.split('=').next().unwrap().trim();
    let kept: Vec<&str> = EMBEDDED.lines().filter(|l| !l.starts_with("socket =") && l.split('=').next().unwrap().trim() != key).collect();
    format!("socket = \"inet:{port}@127.0.0.1\"\n{extra}\n{}", kept.join("\n"))
}

/// Hostile messages, generated: (name, raw, null sender).
fn hostile() -> Vec<(String, Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut add = |name: &str, raw: Vec<u8>, null: bool| out.push((name.to_string(), raw, null));
    add("crlf-nul", Dsn::new("550 5.1.1 no such user\r\nX-Injected: yes\0\x1b[31m").build(), true);
    add("html-script", Dsn::new("550 5.7.1 <script>alert(1)</script> {{> evil}} {{{raw}}}").build(), true);
    let b = Dsn::new("x").boundary;
    add("boundary-in-diagnostic", Dsn::new(&format!("550 5.1.1 gone --{b}\n --{b}--")).build(), true);
    let mut long = Dsn::new(&format!("550 5.1.1 {}", "x".repeat(1 << 20)));
    // A milter packet holds at most 64 KB: no MTA passes a longer header line.
    long.headers.push(format!("X-Long: {}", "y".repeat(60_000)));
    add("long-lines", long.build(), true);
    let mut many = Dsn::new("x");
    many.recipients = (0..10_000).map(|i| recipient(&format!("u{i}@r.example"), "5.1.1", "550 5.1.1 user unknown")).collect();
    add("10000-recipients", many.build(), true);
    let mut big = Dsn::new("552 5.3.4 too big");
    big.returned = Some(format!("Content-Type: message/rfc822\n\nSubject: big\n\n{}", ("A".repeat(76) + "\n").repeat(50 * 1024 * 1024 / 77)));
    add("50MB-body", big.build(), true);
    // Larger than the milter keeps in memory (128 KB): the returned message goes to its
    // spill file and comes back from there into the new body.
    let mut big = Dsn::new("550 5.1.1 user unknown");
    big.returned = Some(format!("Content-Type: message/rfc822\n\nSubject: big\n\n{}", ("B".repeat(76) + "\n").repeat(1024 * 1024 / 77)));
    add("1MB-returned", big.build(), true);
    // The cut falls in part 1: the milter must read the whole message back.
    let mut long_human = Dsn::new("550 5.1.1 user unknown");
    long_human.human = format!("Content-Type: text/plain\n\n{}", ("The mail system could not deliver.\n").repeat(300 * 1024 / 35));
    add("300KB-part-1", long_human.build(), true);
    let full = Dsn::new("550 5.1.1 user unknown").build();
    add("truncated", full[..full.len() * 2 / 3].to_vec(), true);
    add("arf", arf_report(), true);
    add("auto-reply", auto_reply(), true);
    add("plain-null-sender", plain_message(), true);
    add("plain", plain_message(), false);
    let mut marked = Dsn::new("550 5.1.1 user unknown");
    marked.headers.push("X-Plainbounce: rewritten; reason=userunknown".into());
    add("already-rewritten", marked.build(), true);
    out
}

fn samples(config_text: &str) -> Vec<Sample> {
    let config = Config::parse(config_text, "test").unwrap();
    let (engine, cap) = (Engine::new(config.clone()).unwrap(), config.max_body);
    hostile().into_iter().filter_map(|(n, raw, null)| sample(n, &raw, null, cap, &engine)).collect()
}

/// Send each sample on one connection; the verdicts by name.
async fn run(server: &Server, samples: &[Sample]) -> Vec<(String, Verdict)> {
    let mut conn = server.connect().await.unwrap();
    let mut pick = |n: usize| n / 2;
    let mut out = Vec::new();
    for s in samples {
        let verdict = match send(&mut conn, s, Fate::Complete, &mut pick).await {
            Ok(Sent::Answered(actions, _)) => milter_client::judge(s, &actions),
            Ok(Sent::LetGo) => Verdict::Unchanged,
            Ok(Sent::Stopped) => unreachable!("complete messages are never stopped"),
            Err(e) => panic!("{e}\nserver log:\n{}", server.log()),
        };
        out.push((s.name.clone(), verdict));
    }
    out
}

fn verdict<'a>(vs: &'a [(String, Verdict)], name: &str) -> &'a Verdict {
    &vs.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no verdict for {name}")).1
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_messages_through_the_milter() {
    let server = Server::start(Path::new(BIN), "hostile-milter", |p| config(p, "timeout_ms = 30000")).unwrap();
    let samples = samples(&std::fs::read_to_string(server.config_path()).unwrap());
    let vs = run(&server, &samples).await;
    for (name, v) in &vs {
        assert!(!matches!(v, Verdict::Corrupted(_)), "{name}: {v:?}");
    }
    for name in ["crlf-nul", "html-script", "boundary-in-diagnostic", "long-lines", "10000-recipients", "1MB-returned", "300KB-part-1"] {
        assert_eq!(verdict(&vs, name), &Verdict::Rewritten, "{name}");
    }
    for name in ["50MB-body", "arf", "auto-reply", "plain-null-sender", "plain", "already-rewritten"] {
        assert_eq!(verdict(&vs, name), &Verdict::Unchanged, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn over_the_time_budget_the_milter_passes_unchanged() {
    let server = Server::start(Path::new(BIN), "hostile-milter-budget", |p| config(p, "timeout_ms = 1")).unwrap();
    let samples = samples(&std::fs::read_to_string(server.config_path()).unwrap());
    let vs = run(&server, &samples).await;
    // A small bounce may be rewritten within 1 ms on a fast machine (that is no timing
    // assert): whatever finishes must be sound, whatever does not must pass unchanged.
    for (name, v) in &vs {
        assert!(!matches!(v, Verdict::Corrupted(_)), "{name}: {v:?}");
    }
    assert_eq!(verdict(&vs, "10000-recipients"), &Verdict::PassedInstead, "1000 recipients cannot be rewritten in 1 ms");
}

/// The one tempfail: a bounce larger than the milter keeps in memory is rewritten with its
/// tail read back from the spill file while the new body goes out. If that read fails
/// midway, Continue would deliver a truncated body; tempfail makes the MTA drop every
/// change and keep the message. The failure is injected by truncating the (unlinked)
/// spill file through /proc before the end of message.
#[tokio::test(flavor = "multi_thread")]
async fn a_spill_file_that_cannot_be_read_back_tempfails_instead_of_truncating() {
    let server = Server::start(Path::new(BIN), "hostile-milter-spill", |p| config(p, "timeout_ms = 30000")).unwrap();
    let config = Config::parse(&std::fs::read_to_string(server.config_path()).unwrap(), "test").unwrap();
    let engine = Engine::new(config).unwrap();
    let mut big = Dsn::new("550 5.1.1 user unknown");
    big.returned = Some(format!("Content-Type: message/rfc822\n\nSubject: big\n\n{}", ("C".repeat(76) + "\n").repeat(1024 * 1024 / 77)));
    let s = sample("spill".into(), &big.build(), true, usize::MAX, &engine).unwrap();
    let mut pick = |_: usize| 65_534;

    // Untouched, the same message is rewritten: the injection below is what changes it.
    let mut conn = server.connect().await.unwrap();
    let Ok(Sent::Answered(actions, _)) = send(&mut conn, &s, Fate::Complete, &mut pick).await else { panic!("no answer") };
    assert_eq!(milter_client::judge(&s, &actions), Verdict::Rewritten);

    assert!(matches!(send(&mut conn, &s, Fate::Hold, &mut pick).await, Ok(Sent::Stopped)));
    let spills = spill_files(server.pid);
    assert_eq!(spills.len(), 1, "one message in flight, one spill file: {spills:?}");
    std::fs::OpenOptions::new().write(true).open(&spills[0]).unwrap().set_len(0).unwrap();
    let (actions, status) = conn.eom().await.unwrap();
    assert!(matches!(status, indymilter_test::Status::Tempfail { .. }), "{status:?} {actions:?}");
    assert!(server.log().contains("tempfail"), "{}", server.log());
}

/// The server's open spill files, as /proc/PID/fd links (they are unlinked at creation).
fn spill_files(pid: u32) -> Vec<std::path::PathBuf> {
    let dir = format!("/proc/{pid}/fd");
    std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| std::fs::read_link(p).is_ok_and(|t| t.to_string_lossy().contains(".plainbounce-spill-")))
        .collect()
}
