//! Runs the engine over messages, over and over: a steady per-message workload for
//! profiling (`bench/profile` runs it under callgrind), without the start-up dominating.
//!
//! Usage: `engine_loop [--repeat N] FILE...` — prints how many runs modified a message.

use plainbounce::config::Config;
use plainbounce::engine::{self, Engine, Outcome};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut repeat = 1usize;
    if args.first().map(String::as_str) == Some("--repeat") && args.len() > 1 {
        match args[1].parse() {
            Ok(n) => repeat = n,
            Err(_) => return fail(&format!("bad --repeat {}", args[1])),
        }
        args.drain(..2);
    }
    if args.is_empty() {
        return fail("usage: engine_loop [--repeat N] FILE...");
    }
    let mut messages = Vec::new();
    for path in &args {
        match std::fs::read(path) {
            Ok(raw) => messages.push(raw),
            Err(e) => return fail(&format!("{path}: {e}")),
        }
    }
    let engine = match Engine::new(Config::embedded()) {
        Ok(e) => e,
        Err(e) => return fail(&format!("{e:#}")),
    };
    let mut modified = 0usize;
    for _ in 0..repeat {
        for raw in &messages {
            if let Outcome::Modify(m) = engine.process(raw) {
                modified += usize::from(!engine::apply(raw, &m).is_empty());
            }
        }
    }
    println!("{modified} of {} runs modified the message", repeat * messages.len());
    ExitCode::SUCCESS
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("engine_loop: {msg}");
    ExitCode::from(2)
}
