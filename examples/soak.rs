//! Soak test of `plainbounce serve`: hundreds of concurrent milter sessions from an
//! MTA-like client (indymilter-test) on 127.0.0.1, for a bounded time, with a mix of
//! bounces, ordinary mail, aborted messages and dropped connections; SIGHUP with a good
//! and a broken configuration during the load, SIGTERM at the end.
//!
//! Passes when: no message goes without a final answer while the server is up (lost),
//! no message is changed that should not be and every change re-assembles into valid
//! MIME with the machine-readable parts untouched (corrupted), the server's VmRSS stays
//! flat, reloads neither stop nor break it, and SIGTERM ends it cleanly.
//!
//! Run it through `scripts/soak [--seconds N] [--sessions N]`.

#[path = "../tests/hostile_support/mod.rs"]
mod hostile_support;
#[path = "../fuzz/src/invariants.rs"]
mod invariants;
#[path = "../tests/hostile_support/milter_client.rs"]
mod milter_client;

use milter_client::{sample, send, Fate, Sample, Sent, Server, Verdict};
use plainbounce::config::Config;
use plainbounce::engine::Engine;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Cap on buffered bodies in the soak configuration; one test message is larger.
const MAX_BODY: usize = 256 * 1024;

struct Opts {
    seconds: u64,
    sessions: usize,
    binary: PathBuf,
}

fn opts() -> Result<Opts, String> {
    let mut o = Opts { seconds: 30, sessions: 200, binary: PathBuf::from("target/debug/plainbounce") };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--seconds" => o.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--sessions" => o.sessions = value()?.parse().map_err(|e| format!("--sessions: {e}"))?,
            "--binary" => o.binary = value()?.into(),
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    Ok(o)
}

/// Corpus messages and generated ones, including one over the body cap. Everything but
/// the corpus's negatives and one plain message comes with the null sender, as bounces,
/// auto-replies and some ARF reports do: the engine, not the envelope, must tell them apart.
fn samples(engine: &Engine) -> Vec<Sample> {
    let mut raw: Vec<(String, Vec<u8>)> = hostile_support::corpus_files()
        .into_iter()
        .filter_map(|p| Some((p.strip_prefix(hostile_support::corpus_dir()?).ok()?.display().to_string(), std::fs::read(&p).ok()?)))
        .collect();
    let mut big = hostile_support::Dsn::new("552 5.2.2 mailbox full");
    big.returned = Some(format!("Content-Type: message/rfc822\n\nSubject: big\n\n{}", "B".repeat(76).repeat(4000)));
    raw.push(("generated-over-cap".into(), big.build()));
    raw.push(("generated-bounce".into(), hostile_support::Dsn::new("550 5.1.1 <bob@remote.example>: user unknown").build()));
    raw.push(("generated-arf".into(), hostile_support::arf_report()));
    raw.push(("generated-auto-reply".into(), hostile_support::auto_reply()));
    raw.push(("generated-plain-null-sender".into(), hostile_support::plain_message()));
    let mut out: Vec<Sample> = raw.into_iter().filter_map(|(n, r)| sample(n.clone(), &r, !n.contains("negatives/"), MAX_BODY, engine)).collect();
    out.extend(sample("generated-plain".into(), &hostile_support::plain_message(), false, MAX_BODY, engine));
    out
}

#[derive(Default)]
struct Counts {
    sessions: AtomicU64,
    rewritten: AtomicU64,
    unchanged: AtomicU64,
    /// A rewrite was expected but the message passed unchanged (fail-open, e.g. timeout).
    passed_instead: AtomicU64,
    let_go_at_mail: AtomicU64,
    aborted: AtomicU64,
    dropped: AtomicU64,
    lost: AtomicU64,
    corrupted: AtomicU64,
    /// Sessions refused or cut after SIGTERM (the MTA's default action applies).
    after_term: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A tiny deterministic PRNG (xorshift) per client task.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

struct Shared {
    samples: Vec<Sample>,
    counts: Counts,
    /// Set when SIGTERM is sent: failures after it are expected.
    terminating: AtomicBool,
    problems: std::sync::Mutex<Vec<String>>,
}

impl Shared {
    fn problem(&self, counter: &AtomicU64, what: String) {
        bump(counter);
        let mut p = self.problems.lock().unwrap();
        if p.len() < 20 {
            p.push(what);
        }
    }
}

/// One client: sessions of mixed fate until the deadline (or SIGTERM).
async fn client(id: usize, sh: Arc<Shared>, server: Arc<Server>) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    while !sh.terminating.load(Ordering::Relaxed) {
        let mut conn = match server.connect().await {
            Ok(c) => c,
            Err(e) => {
                if sh.terminating.load(Ordering::Relaxed) {
                    bump(&sh.counts.after_term);
                } else {
                    sh.problem(&sh.counts.lost, e);
                }
                continue;
            }
        };
        bump(&sh.counts.sessions);
        let kind = rng.below(100);
        let messages = 1 + rng.below(3);
        let mut alive = true;
        for m in 0..messages {
            let s = &sh.samples[rng.below(sh.samples.len())];
            let fate = match kind {
                0..=59 => Fate::Complete,
                60..=74 if m == 0 => Fate::Abort,
                75..=89 if m + 1 == messages => Fate::Drop,
                _ => Fate::Complete,
            };
            match send(&mut conn, s, fate, &mut |n| rng.below(n)).await {
                Ok(Sent::LetGo) => bump(&sh.counts.let_go_at_mail),
                Ok(Sent::Answered(actions, _)) => match milter_client::judge(s, &actions) {
                    Verdict::Rewritten => bump(&sh.counts.rewritten),
                    Verdict::Unchanged => bump(&sh.counts.unchanged),
                    Verdict::PassedInstead => bump(&sh.counts.passed_instead),
                    Verdict::Corrupted(e) => sh.problem(&sh.counts.corrupted, e),
                },
                Ok(Sent::Stopped) if fate == Fate::Abort => {
                    bump(&sh.counts.aborted);
                    alive = conn.abort().await.is_ok();
                }
                Ok(Sent::Stopped) => {
                    bump(&sh.counts.dropped);
                    alive = false;
                }
                Err(e) => {
                    if sh.terminating.load(Ordering::Relaxed) {
                        bump(&sh.counts.after_term);
                    } else {
                        sh.problem(&sh.counts.lost, e);
                    }
                    alive = false;
                }
            }
            if !alive {
                break;
            }
        }
        if alive && kind < 90 {
            let _ = conn.close().await;
        } // else: dropped without QUIT
    }
}

fn vm_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Memory is flat when the last quarter's peak is not far above the second quarter's.
fn memory_flat(samples: &[u64]) -> Result<String, String> {
    if samples.len() < 8 {
        return Err(format!("too few RSS samples ({})", samples.len()));
    }
    let q = samples.len() / 4;
    let warm = *samples[q..2 * q].iter().max().unwrap();
    let late = *samples[3 * q..].iter().max().unwrap();
    let text = format!("VmRSS kB: first {}, 2nd-quarter peak {warm}, last-quarter peak {late}, overall peak {}", samples[0], samples.iter().max().unwrap());
    if late > warm + warm / 4 + 32 * 1024 {
        Err(format!("memory grows: {text}"))
    } else {
        Ok(text)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("soak: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn config_text(port: u16, timeout_ms: u64) -> String {
    format!(
        "socket = \"inet:{port}@127.0.0.1\"\nmax_connections = 512\nmax_body = {MAX_BODY}\n\
         timeout_ms = {timeout_ms}\nlog_level = \"info\"\n"
    )
}

async fn run() -> Result<(), String> {
    let o = opts()?;
    let server = Server::start(&o.binary, "soak", |port| config_text(port, 10_000))?;
    let config = Config::load(&server.config_path()).map_err(|e| format!("{e:#}"))?;
    let engine = Engine::new(config).map_err(|e| format!("{e:#}"))?;
    let samples = samples(&engine);
    let bounces = samples.iter().filter(|s| s.expected.is_some()).count();
    println!("soak: {} messages ({bounces} to be rewritten), {} sessions for {} s", samples.len(), o.sessions, o.seconds);
    let server = Arc::new(server);
    let result = drive(&o, server.clone(), samples).await;
    if result.is_err() {
        let log = server.log();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        eprintln!("soak: server log ({}), last lines:\n{}", server.dir.display(), tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    } else {
        let _ = std::fs::remove_dir_all(&server.dir);
    }
    result
}

async fn drive(o: &Opts, server: Arc<Server>, samples: Vec<Sample>) -> Result<(), String> {
    let sh = Arc::new(Shared { samples, counts: Counts::default(), terminating: AtomicBool::new(false), problems: Default::default() });
    let pid = server.pid;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(o.seconds);
    let clients: Vec<_> = (0..o.sessions).map(|i| tokio::spawn(client(i, sh.clone(), server.clone()))).collect();

    // Sample memory twice a second; reload at 1/3 (good), 1/2 (broken), 2/3 (good again).
    let mut rss = Vec::new();
    let schedule = [(1.0 / 3.0, "good"), (0.5, "broken"), (2.0 / 3.0, "restored")];
    let mut done_reloads = Vec::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(st) = server.exited() {
            return Err(format!("server died during load: {st}"));
        }
        rss.extend(vm_rss_kb(pid));
        let elapsed = start.elapsed().as_secs_f64() / o.seconds as f64;
        if let Some(&(at, what)) = schedule.get(done_reloads.len()) {
            if elapsed >= at {
                let text = match what {
                    "broken" => "socket = [this is not a configuration\n".to_string(),
                    "good" => config_text(server.port, 9_000),
                    _ => config_text(server.port, 10_000),
                };
                std::fs::write(server.config_path(), text).map_err(|e| e.to_string())?;
                let before = reload_lines(&server.log());
                server.signal("HUP");
                done_reloads.push(what);
                // Let this reload finish (the load goes on) before the file changes again.
                let waited = Instant::now();
                while reload_lines(&server.log()) == before && waited.elapsed() < Duration::from_secs(60) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    rss.extend(vm_rss_kb(pid));
                }
            }
        }
    }
    // SIGTERM while the clients are still sending: messages in flight must finish.
    sh.terminating.store(true, Ordering::SeqCst);
    let term_at = Instant::now();
    server.signal("TERM");
    let exit = loop {
        if let Some(st) = server.exited() {
            break st;
        }
        if term_at.elapsed() > Duration::from_secs(45) {
            return Err("server still running 45 s after SIGTERM".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let drained_in = term_at.elapsed();
    for c in clients {
        let _ = tokio::time::timeout(Duration::from_secs(60), c).await;
    }
    // What the server said about the reloads (serve.rs logs both at info and error).
    report(o, &sh, &rss, (&done_reloads, reload_lines(&server.log())), drained_in, exit.success())
}

/// Reloads the server logged as (accepted, refused); serve.rs writes one line for each.
fn reload_lines(log: &str) -> (usize, usize) {
    (log.matches("configuration reloaded").count(), log.matches("reload refused").count())
}

fn report(o: &Opts, sh: &Shared, rss: &[u64], reloads: (&[&str], (usize, usize)), drained_in: Duration, exit: bool) -> Result<(), String> {
    let (reloads, (accepted, refused)) = reloads;
    let c = &sh.counts;
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "soak: {} s, {} sessions, {} messages answered at end of message ({} rewritten, {} unchanged, {} passed unchanged instead of rewritten), {} let go at MAIL FROM, {} aborted, {} dropped connections, {} cut by SIGTERM",
        o.seconds,
        n(&c.sessions),
        n(&c.rewritten) + n(&c.unchanged) + n(&c.passed_instead) + n(&c.corrupted),
        n(&c.rewritten),
        n(&c.unchanged),
        n(&c.passed_instead),
        n(&c.let_go_at_mail),
        n(&c.aborted),
        n(&c.dropped),
        n(&c.after_term),
    );
    println!("soak: reloads sent: {reloads:?} (server log: {accepted} accepted, {refused} refused); SIGTERM: stopped after {:.1} s, clean exit: {exit}", drained_in.as_secs_f64());
    let mem = memory_flat(rss);
    println!("soak: {}", mem.as_ref().unwrap_or_else(|e| e));
    println!("soak: lost {}, corrupted {}", n(&c.lost), n(&c.corrupted));
    for p in sh.problems.lock().unwrap().iter() {
        println!("soak: problem: {p}");
    }
    let mut failures = Vec::new();
    if n(&c.lost) > 0 || n(&c.corrupted) > 0 {
        failures.push(format!("{} lost, {} corrupted", n(&c.lost), n(&c.corrupted)));
    }
    if n(&c.rewritten) == 0 {
        failures.push("no message was rewritten".into());
    }
    if reloads.len() != 3 || accepted != 2 || refused != 1 {
        failures.push(format!("reloads: {} sent, {accepted} accepted (want 2), {refused} refused (want 1)", reloads.len()));
    }
    if !exit {
        failures.push("server did not exit cleanly after SIGTERM".into());
    }
    if let Err(e) = mem {
        failures.push(e);
    }
    if failures.is_empty() {
        println!("soak: ok");
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}
