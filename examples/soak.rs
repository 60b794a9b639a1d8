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

use indymilter_test::{EomAction, EomActions, Status, TestConnection, TestError};
use plainbounce::config::Config;
use plainbounce::engine::{Engine, HeaderEdit, Modification, Outcome};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Cap on buffered bodies in the soak configuration; one test message is larger.
const MAX_BODY: usize = 256 * 1024;
/// A client waits this long for any answer before it counts the message as lost.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

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

/// One test message as the MTA hands it to the milter, and what must come back.
struct Sample {
    name: String,
    sender: &'static str,
    /// Header fields as (name, value) without the colon and the one leading space.
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Body with CRLF line ends.
    body: Vec<u8>,
    /// The message as the milter reassembles it: what the engine sees.
    canonical: Vec<u8>,
    /// The in-process engine's answer on `canonical` with the same configuration.
    expected: Option<Modification>,
}

fn sample(name: String, raw: &[u8], null: bool, engine: &Engine) -> Option<Sample> {
    let raw = hostile_support::with_eol(raw.to_vec(), "\r\n");
    let e = invariants::split_entity(&raw);
    let mut headers = Vec::new();
    for f in invariants::header_fields(e.header) {
        let colon = f.iter().position(|&c| c == b':')?;
        let value = f[colon + 1..].strip_suffix(b"\r\n").unwrap_or(&f[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        let name = f[..colon].to_vec();
        // An MTA passes neither NULs nor nameless headers: such samples test nothing here.
        if name.is_empty() || name.contains(&0) || value.contains(&0) || name.iter().any(|c| c.is_ascii_whitespace()) {
            return None;
        }
        headers.push((name, value.to_vec()));
    }
    let body = e.body.to_vec();
    let canonical = canonical(&headers, &body);
    let expected = match (null && body.len() <= MAX_BODY, engine.process(&canonical)) {
        (true, Outcome::Modify(m)) => Some(m),
        _ => None,
    };
    Some(Sample { name, sender: if null { "<>" } else { "<alice@example.org>" }, headers, body, canonical, expected })
}

fn canonical(headers: &[(Vec<u8>, Vec<u8>)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in headers {
        out.extend_from_slice(n);
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
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
    let mut out: Vec<Sample> = raw.into_iter().filter_map(|(n, r)| sample(n.clone(), &r, !n.contains("negatives/"), engine)).collect();
    out.extend(sample("generated-plain".into(), &hostile_support::plain_message(), false, engine));
    out
}

#[derive(Default)]
struct Counts {
    sessions: AtomicU64,
    messages: AtomicU64,
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
    addr: String,
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

/// How far a message gets before the client stops.
#[derive(Clone, Copy, PartialEq)]
enum Fate {
    Complete,
    Abort,
    Drop,
}

/// How a message ended on the client's side.
#[derive(PartialEq)]
enum Sent {
    /// End of message sent and answered, or let go at MAIL FROM.
    Answered,
    /// The client stopped mid-message, as `Fate` said.
    Stopped,
}

/// Send one message as far as `fate` says.
async fn send(conn: &mut TestConnection, s: &Sample, fate: Fate, rng: &mut Rng, sh: &Shared) -> Result<Sent, String> {
    let go_on = |st: Status| matches!(st, Status::Continue | Status::Noreply);
    let st = conn.mail([s.sender, "SIZE=1000"]).await.map_err(|e| format!("mail: {e:?}"))?;
    if st == Status::Accept {
        bump(&sh.counts.let_go_at_mail);
        return Ok(Sent::Answered);
    }
    if !go_on(st.clone()) {
        return Err(format!("{}: MAIL answered {st:?}", s.name));
    }
    let st = conn.rcpt(["<alice@example.org>"]).await.map_err(|e| format!("rcpt: {e:?}"))?;
    if !go_on(st.clone()) {
        return Err(format!("{}: RCPT answered {st:?}", s.name));
    }
    let stop_at = if fate == Fate::Complete { usize::MAX } else { rng.below(s.headers.len() + 2) };
    for (i, (n, v)) in s.headers.iter().enumerate() {
        if i == stop_at {
            return Ok(Sent::Stopped);
        }
        let (n, v) = (std::ffi::CString::new(n.clone()).unwrap(), std::ffi::CString::new(v.clone()).unwrap());
        let st = conn.header(n, v).await.map_err(|e| format!("header: {e:?}"))?;
        if !go_on(st.clone()) {
            return Err(format!("{}: header answered {st:?}", s.name));
        }
    }
    // A milter without an end-of-headers callback negotiates the stage away.
    match conn.eoh().await {
        Ok(_) | Err(TestError::MilterUsage) => {}
        Err(e) => return Err(format!("eoh: {e:?}")),
    }
    // Body in MTA-sized chunks of varying length.
    let mut rest = &s.body[..];
    while !rest.is_empty() {
        let n = rest.len().min(1 + rng.below(65_535));
        let st = conn.body(rest[..n].to_vec()).await.map_err(|e| format!("body: {e:?}"))?;
        if st == Status::Skip {
            break;
        }
        if !go_on(st.clone()) {
            return Err(format!("{}: body answered {st:?}", s.name));
        }
        rest = &rest[n..];
    }
    if fate != Fate::Complete {
        return Ok(Sent::Stopped);
    }
    let (actions, st) = conn.eom().await.map_err(|e| format!("eom: {e:?}"))?;
    if !matches!(st, Status::Continue | Status::Accept) {
        sh.problem(&sh.counts.corrupted, format!("{}: end of message answered {st:?}", s.name));
        return Ok(Sent::Answered);
    }
    judge(s, &actions, sh);
    Ok(Sent::Answered)
}

/// Compare the milter's changes with what the engine decides in-process.
fn judge(s: &Sample, actions: &EomActions, sh: &Shared) {
    bump(&sh.counts.messages);
    let changed = actions.actions.iter().any(|a| !matches!(a, EomAction::Progress));
    match (&s.expected, changed) {
        (_, false) if s.expected.is_some() => bump(&sh.counts.passed_instead),
        (_, false) => bump(&sh.counts.unchanged),
        (None, true) => sh.problem(&sh.counts.corrupted, format!("{}: not a bounce, yet changed: {:?}", s.name, actions.actions)),
        (Some(expected), true) => {
            let (m, out) = reassemble(s, actions);
            let check = invariants::check_rewrite(&s.canonical, &m, &out).and_then(|()| {
                if m.body == expected.body {
                    Ok(())
                } else {
                    Err("body differs from the filter's rewrite of the same message".into())
                }
            });
            match check {
                Ok(()) => bump(&sh.counts.rewritten),
                Err(e) => sh.problem(&sh.counts.corrupted, format!("{}: {e}", s.name)),
            }
        }
    }
}

/// Apply the milter's actions as the MTA would; also express them as a `Modification`.
fn reassemble(s: &Sample, actions: &EomActions) -> (Modification, Vec<u8>) {
    let mut headers = s.headers.clone();
    let mut edits = Vec::new();
    let mut body: Option<Vec<u8>> = None;
    let text = |c: &std::ffi::CStr| String::from_utf8_lossy(c.to_bytes()).into_owned();
    let nth = |h: &[(Vec<u8>, Vec<u8>)], name: &[u8], index: i32| {
        h.iter().enumerate().filter(|(_, (n, _))| n.eq_ignore_ascii_case(name)).nth((index - 1).max(0) as usize).map(|(i, _)| i)
    };
    for a in &actions.actions {
        match a {
            EomAction::AddHeader { name, value } => {
                headers.push((name.to_bytes().to_vec(), value.to_bytes().to_vec()));
                edits.push(HeaderEdit::Add { name: text(name), value: text(value) });
            }
            EomAction::InsertHeader { index, name, value } => {
                let at = (*index).clamp(0, headers.len() as i32) as usize;
                headers.insert(at, (name.to_bytes().to_vec(), value.to_bytes().to_vec()));
                edits.push(HeaderEdit::Add { name: text(name), value: text(value) });
            }
            EomAction::ChangeHeader { name, index, value } => {
                match nth(&headers, name.to_bytes(), *index) {
                    Some(i) => headers[i].1 = value.to_bytes().to_vec(),
                    None => headers.push((name.to_bytes().to_vec(), value.to_bytes().to_vec())),
                }
                edits.push(HeaderEdit::Set { name: text(name), value: text(value) });
            }
            EomAction::DeleteHeader { name, index } => {
                if let Some(i) = nth(&headers, name.to_bytes(), *index) {
                    headers.remove(i);
                }
                edits.push(HeaderEdit::Remove { name: text(name) });
            }
            EomAction::ReplaceBody { chunk } => body.get_or_insert_with(Vec::new).extend_from_slice(chunk),
            other => edits.push(HeaderEdit::Add { name: format!("unexpected-action-{other:?}"), value: String::new() }),
        }
    }
    let out = canonical(&headers, body.as_deref().unwrap_or(&s.body));
    (Modification { header_edits: edits, body, summary: String::new() }, out)
}

/// One client: sessions of mixed fate until the deadline (or SIGTERM).
async fn client(id: usize, sh: Arc<Shared>, deadline: Instant) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    while Instant::now() < deadline && !sh.terminating.load(Ordering::Relaxed) {
        let term_before = sh.terminating.load(Ordering::Relaxed);
        let conn = TestConnection::configure()
            .read_timeout(ANSWER_TIMEOUT)
            .write_timeout(ANSWER_TIMEOUT)
            .open_tcp(sh.addr.as_str())
            .await;
        let mut conn = match conn {
            Ok(c) => c,
            Err(e) => {
                if sh.terminating.load(Ordering::Relaxed) {
                    bump(&sh.counts.after_term);
                } else {
                    sh.problem(&sh.counts.lost, format!("connect: {e:?}"));
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
            match send(&mut conn, s, fate, &mut rng, &sh).await {
                Ok(Sent::Answered) => {}
                Ok(Sent::Stopped) if fate == Fate::Abort => {
                    bump(&sh.counts.aborted);
                    alive = conn.abort().await.is_ok();
                }
                Ok(Sent::Stopped) => {
                    bump(&sh.counts.dropped);
                    alive = false;
                }
                Err(e) => {
                    if sh.terminating.load(Ordering::Relaxed) || term_before {
                        bump(&sh.counts.after_term);
                    } else {
                        sh.problem(&sh.counts.lost, e);
                    }
                    alive = false;
                    break;
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

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(child.id().to_string()).status();
}

fn config_text(port: u16, log_level: &str) -> String {
    format!(
        "socket = \"inet:{port}@127.0.0.1\"\nmax_connections = 512\nmax_body = {MAX_BODY}\n\
         timeout_ms = 10000\nlog_level = \"{log_level}\"\n"
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

async fn wait_for_port(addr: &str, child: &mut Child) -> Result<(), String> {
    for _ in 0..200 {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("server exited at start: {st}"));
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("server did not listen within 20 s".into())
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

async fn run() -> Result<(), String> {
    let o = opts()?;
    let dir = std::env::temp_dir().join(format!("plainbounce-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let port = free_port();
    let config_path = dir.join("plainbounce.toml");
    let write_config = |text: &str| std::fs::write(&config_path, text).map_err(|e| e.to_string());
    write_config(&config_text(port, "warn"))?;
    let config = Config::load(&config_path).map_err(|e| format!("{e:#}"))?;
    let engine = Engine::new(config).map_err(|e| format!("{e:#}"))?;
    let samples = samples(&engine);
    let bounces = samples.iter().filter(|s| s.expected.is_some()).count();
    println!("soak: {} messages ({bounces} to be rewritten), {} sessions for {} s", samples.len(), o.sessions, o.seconds);

    let log_path = dir.join("server.log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let mut child = Command::new(&o.binary)
        .args(["serve", "--config"])
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", o.binary.display()))?;
    let pid = child.id();
    let addr = format!("127.0.0.1:{port}");
    let result = drive(&o, &mut child, &addr, samples, &write_config, port, pid).await;
    if child.try_wait().ok().flatten().is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let tail: Vec<&str> = log_text.lines().rev().take(15).collect();
    if result.is_err() {
        eprintln!("soak: server log ({}), last lines:\n{}", log_path.display(), tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn drive(
    o: &Opts,
    child: &mut Child,
    addr: &str,
    samples: Vec<Sample>,
    write_config: &dyn Fn(&str) -> Result<(), String>,
    port: u16,
    pid: u32,
) -> Result<(), String> {
    wait_for_port(addr, child).await?;
    let sh = Arc::new(Shared {
        addr: addr.to_string(),
        samples,
        counts: Counts::default(),
        terminating: AtomicBool::new(false),
        problems: Default::default(),
    });
    let start = Instant::now();
    let deadline = start + Duration::from_secs(o.seconds);
    let clients: Vec<_> = (0..o.sessions).map(|i| tokio::spawn(client(i, sh.clone(), deadline + Duration::from_secs(3600)))).collect();

    // Sample memory twice a second; reload at 1/3 (good), 1/2 (broken), 2/3 (good again).
    let mut rss = Vec::new();
    let schedule = [(1.0 / 3.0, "good"), (0.5, "broken"), (2.0 / 3.0, "restored")];
    let mut done_reloads = Vec::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("server died during load: {st}"));
        }
        rss.extend(vm_rss_kb(pid));
        let elapsed = start.elapsed().as_secs_f64() / o.seconds as f64;
        if let Some(&(at, what)) = schedule.get(done_reloads.len()) {
            if elapsed >= at {
                write_config(&match what {
                    "broken" => "socket = [this is not a configuration\n".to_string(),
                    "good" => config_text(port, "error"),
                    _ => config_text(port, "warn"),
                })?;
                signal(child, "HUP");
                done_reloads.push(what);
            }
        }
    }
    // SIGTERM while the clients are still sending: sessions in flight must finish.
    sh.terminating.store(true, Ordering::SeqCst);
    let term_at = Instant::now();
    signal(child, "TERM");
    let exit = loop {
        if let Ok(Some(st)) = child.try_wait() {
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

    let c = &sh.counts;
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "soak: {} s, {} sessions, {} messages answered at end of message ({} rewritten, {} unchanged, {} passed unchanged instead of rewritten), {} let go at MAIL FROM, {} aborted, {} dropped connections, {} cut by SIGTERM",
        o.seconds,
        n(&c.sessions),
        n(&c.messages),
        n(&c.rewritten),
        n(&c.unchanged),
        n(&c.passed_instead),
        n(&c.let_go_at_mail),
        n(&c.aborted),
        n(&c.dropped),
        n(&c.after_term),
    );
    println!("soak: reloads sent: {done_reloads:?}; SIGTERM: exit {exit} after {:.1} s", drained_in.as_secs_f64());
    let mem = memory_flat(&rss);
    println!("soak: {}", mem.as_ref().unwrap_or_else(|e| e));
    println!("soak: lost {}, corrupted {}", n(&c.lost), n(&c.corrupted));
    for p in sh.problems.lock().unwrap().iter() {
        println!("soak: problem: {p}");
    }
    let mut failures = Vec::new();
    if n(&c.lost) > 0 || n(&c.corrupted) > 0 {
        failures.push(format!("{} lost, {} corrupted", n(&c.lost), n(&c.corrupted)));
    }
    if n(&c.messages) == 0 {
        failures.push("no message was answered".into());
    }
    if done_reloads.len() != 3 {
        failures.push(format!("only {} reloads sent (run longer)", done_reloads.len()));
    }
    if !exit.success() {
        failures.push(format!("server exit {exit} after SIGTERM"));
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
