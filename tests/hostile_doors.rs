//! Fail-open at the filter door: the `plainbounce rewrite` binary, driven as Exim's
//! transport_filter drives it. Whatever the input or the failure, the message comes out
//! (unchanged unless it is a bounce that was rewritten) and the exit status is 0.

mod hostile_support;
#[path = "../fuzz/src/invariants.rs"]
mod invariants;

use hostile_support::{arf_report, auto_reply, corpus_files, plain_message, recipient, Dsn};
use plainbounce::config::Config;
use plainbounce::engine::{self, Engine, Outcome};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_plainbounce");

/// Run the filter on `input`; returns (exit code, stdout, stderr).
fn filter(input: &[u8], config: Option<&Path>) -> (i32, Vec<u8>, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("rewrite");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (out.status.code().unwrap_or(-1), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn assert_unchanged(input: &[u8], config: Option<&Path>, why: &str) -> String {
    let (code, out, err) = filter(input, config);
    assert_eq!(code, 0, "{why}: exit status; stderr: {err}");
    assert!(out == input, "{why}: output differs from input ({} vs {} bytes); stderr: {err}", out.len(), input.len());
    assert!(err.contains("passed unchanged"), "{why}: the reason goes to stderr: {err}");
    err
}

fn config_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("plainbounce-hostile-doors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn with(set: &str) -> String {
    format!("{}\n{set}\n", plainbounce::config::EMBEDDED.lines().filter(|l| !l.starts_with(set.split('=').next().unwrap())).collect::<Vec<_>>().join("\n"))
}

#[test]
fn non_bounces_and_garbage_pass_byte_identical() {
    let mut x: u32 = 7;
    let noise: Vec<u8> = (0..100_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("blank lines", b"\r\n\r\n\n".to_vec()),
        ("no header", b"just a line without a colon\n".to_vec()),
        ("plain message", plain_message()),
        ("ARF report", arf_report()),
        ("auto-reply", auto_reply()),
        ("random bytes", noise),
        ("NUL bytes", vec![0; 4096]),
    ];
    for (why, input) in &inputs {
        assert_unchanged(input, None, why);
    }
    for f in corpus_files().iter().filter(|f| f.to_string_lossy().contains("/negatives/")) {
        assert_unchanged(&std::fs::read(f).unwrap(), None, &f.display().to_string());
    }
}

#[test]
fn a_bounce_comes_out_as_the_library_rewrites_it() {
    let raw = Dsn::new("550 5.1.1 <bob@remote.example>: Recipient address rejected: User unknown").build();
    let Outcome::Modify(m) = Engine::new(Config::embedded()).unwrap().process(&raw) else { panic!("not rewritten in-process") };
    let expected = engine::apply(&raw, &m);
    invariants::check_rewrite(&raw, &m, &expected).unwrap();
    let (code, out, err) = filter(&raw, None);
    assert_eq!(code, 0, "{err}");
    assert!(out == expected, "the filter's output differs from the engine's; stderr: {err}");
}

#[test]
fn unreadable_or_broken_config_passes_unchanged() {
    let raw = Dsn::new("550 5.1.1 user unknown").build();
    assert_unchanged(&raw, Some(Path::new("/nonexistent/plainbounce.toml")), "missing config");
    assert_unchanged(&raw, Some(&config_file("broken.toml", "socket = [not toml\n")), "broken config");
    assert_unchanged(&raw, Some(&config_file("unknown-key.toml", &with("no_such_key = 1"))), "unknown key");
    let templates = config_file("missing-templates.toml", &with("template_dir = \"/nonexistent/templates\""));
    assert_unchanged(&raw, Some(&templates), "missing template directory");
}

#[test]
fn over_the_body_cap_passes_unchanged() {
    let raw = Dsn::new("550 5.1.1 user unknown").build();
    let err = assert_unchanged(&raw, Some(&config_file("small-cap.toml", &with("max_body = 1000"))), "over max_body");
    assert!(err.contains("max_body"), "{err}");
}

#[test]
fn over_the_time_budget_passes_unchanged() {
    let mut dsn = Dsn::new("x");
    dsn.recipients = (0..1000).map(|i| recipient(&format!("u{i}@r{i}.example"), "5.1.1", "550 5.1.1 user unknown")).collect();
    let raw = dsn.build();
    let err = assert_unchanged(&raw, Some(&config_file("tiny-budget.toml", &with("timeout_ms = 1"))), "over timeout_ms");
    assert!(err.contains("timeout_ms"), "{err}");
}

/// A message far over the cap must stream through: the filter's memory may not grow with
/// it. RLIMIT_DATA (ulimit -d) makes a filter that buffers everything fail outright.
#[test]
fn memory_is_bounded_by_the_body_cap() {
    const TOTAL: usize = 400 << 20;
    let script = format!("ulimit -d {}; exec \"$0\" rewrite", 160 * 1024);
    let mut child = Command::new("sh")
        .args(["-c", &script, BIN])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let mut msg = plain_message();
        msg.extend(std::iter::repeat_n(b'x', 1 << 20));
        let mut sent = 0;
        while sent < TOTAL && stdin.write_all(&msg[..(TOTAL - sent).min(msg.len())]).is_ok() {
            sent += msg.len().min(TOTAL - sent);
            msg = vec![b'y'; 1 << 20];
        }
        sent
    });
    let mut stdout = child.stdout.take().unwrap();
    let mut received = 0usize;
    let mut first = Vec::new();
    let mut buf = vec![0; 1 << 16];
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        if first.len() < 64 {
            first.extend_from_slice(&buf[..n.min(64)]);
        }
        received += n;
    }
    let sent = writer.join().unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "filter failed under a 160 MB data limit: {status}; stderr: {err}");
    assert_eq!(sent, TOTAL);
    assert_eq!(received, TOTAL, "stderr: {err}");
    assert!(first.starts_with(b"From: alice@example.org"));
}
