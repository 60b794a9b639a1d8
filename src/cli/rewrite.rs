//! `plainbounce rewrite`: one message on stdin, the same message on stdout, rewritten if it
//! is a bounce. This is the door for Exim's transport_filter and for scripts, so it never
//! loses mail: on any problem (bad config, template error, panic, timeout) the original
//! bytes go out unchanged, the exit status is 0 and the reason goes to stderr.

use anyhow::Result;
use plainbounce::config::Config;
use plainbounce::dsn::{self, Detection};
use plainbounce::engine::{apply, Engine, Options, Outcome};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// sysexits.h: the MTA should try again later.
const EX_TEMPFAIL: u8 = 75;
const EX_IOERR: u8 = 74;

#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (default: the built-in configuration).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let config = args.config.as_deref().map_or_else(|| Ok(Config::embedded()), Config::load);
    // Read at most max_body + 1 bytes: a larger message streams through unread, so memory
    // stays bounded by the cap whatever the message size.
    let limit = config.as_ref().map_or(0, |c| c.max_body as u64 + 1);
    let mut stdin = std::io::stdin().lock();
    let mut raw = Vec::new();
    if let Err(e) = (&mut stdin).take(limit).read_to_end(&mut raw) {
        // Without the whole message there is nothing safe to write: let the MTA retry.
        eprintln!("plainbounce: cannot read the message: {e}");
        return Ok(ExitCode::from(EX_TEMPFAIL));
    }
    let raw = Arc::new(raw);
    let (out, note) = match config {
        Err(e) => (None, format!("passed unchanged: {e:#}")),
        Ok(c) if raw.len() as u64 >= limit => (None, format!("passed unchanged: message larger than max_body ({} bytes)", c.max_body)),
        Ok(c) => filter(&raw, c),
    };
    let mut stdout = std::io::stdout().lock();
    let written = stdout.write_all(out.as_deref().unwrap_or(&raw));
    // The rest of an unread message (over the cap, or config unreadable) follows as it comes.
    if let Err(e) = written.and_then(|()| std::io::copy(&mut stdin, &mut stdout)).and_then(|_| stdout.flush()) {
        eprintln!("plainbounce: cannot write the message: {e}");
        return Ok(ExitCode::from(EX_IOERR));
    }
    eprintln!("plainbounce: {note}");
    Ok(ExitCode::SUCCESS)
}

/// The rewritten message (`None`: send the original) and what happened. Most mail through
/// a transport filter is not a bounce, so that is told first: building the engine (the
/// knowledge base, the templates and their trial render) is most of a run's cost.
fn filter(raw: &Arc<Vec<u8>>, config: Config) -> (Option<Vec<u8>>, String) {
    let timeout_ms = config.timeout_ms;
    // The budget is for the message's own work; building the engine is not counted.
    let mut budget = Duration::from_millis(timeout_ms);
    let input = Arc::clone(raw);
    let started = Instant::now();
    let bounce = match within(budget, timeout_ms, move || dsn::parse(&input)) {
        Err(why) => return (None, format!("passed unchanged: {why}")),
        Ok(Detection::NotBounce(why)) => return (None, format!("passed unchanged: not a bounce: {why}")),
        Ok(Detection::Bounce(b)) => b,
    };
    budget = budget.saturating_sub(started.elapsed());
    let engine = match Engine::new(config) {
        Ok(e) => e,
        Err(e) => return (None, format!("passed unchanged: {e:#}")),
    };
    let input = Arc::clone(raw);
    let done = within(budget, timeout_ms, move || match engine.process_bounce(&input, &bounce, &Options::default()) {
        Outcome::Modify(m) => (Some(apply(&input, &m)), format!("rewritten: {}", m.summary)),
        Outcome::Pass(why) => (None, format!("passed unchanged: {why}")),
    });
    done.unwrap_or_else(|why| (None, format!("passed unchanged: {why}")))
}

/// `work`'s result, run in its own thread so that a hang cannot hold the mail: over the
/// budget (or on a panic) the reason instead, and the original goes out; the process then
/// exits, ending the thread.
fn within<T: Send + 'static>(budget: Duration, timeout_ms: u64, work: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
        let _ = tx.send(result.map_err(|_| "internal error (panic)".to_string()));
    });
    match rx.recv_timeout(budget) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("took longer than timeout_ms ({timeout_ms} ms)")),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("internal error".into()),
    }
}
