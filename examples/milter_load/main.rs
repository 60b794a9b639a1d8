//! Milter load generator: plays the MTA side of the milter protocol (`mta.rs`) against a
//! running milter, with N concurrent sessions sending the same message over and over, and
//! reports throughput and latency as one JSON line.
//!
//! Usage:
//!   milter_load --addr 127.0.0.1:PORT --file MSG [--sessions N] [--messages M]
//!               [--max-seconds S] [--rate R] [--sender ADDR] [--pad-to BYTES]
//!
//! Each session opens one milter connection (negotiation, connect and HELO are not timed)
//! and then sends messages one after another, as an MTA does on one connection: MAIL,
//! RCPT, DATA, headers, end of headers, body, end of message (with the queue id if the
//! milter asked for it), skipping the stages the milter negotiated away.
//! A message's latency runs from MAIL to the milter's final end-of-message reply.
//! The run stops after M messages in all or S seconds, whichever comes first.
//! Without `--rate` each session sends the next message as soon as the last is done
//! (closed loop: the milter's maximum throughput, where latency is mostly queueing).
//! With `--rate R` the sessions together offer R messages per second, evenly spread
//! (latency at a given load).
//! `--pad-to` grows a bounce to about that many bytes by adding lines to the end of its
//! returned message (the last MIME part), to test large bounces.

mod mta;

use mta::{End, Mail, Mta};
use serde_json::json;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    addr: String,
    file: String,
    sessions: usize,
    messages: u64,
    max_seconds: f64,
    /// Offered load in messages per second for all sessions together (0: closed loop).
    rate: f64,
    sender: Option<String>,
    pad_to: usize,
}

/// The message and its size in the file (after padding).
struct Message {
    mail: Mail,
    size: usize,
}

/// What one session saw.
#[derive(Default)]
struct SessionResult {
    latencies: Vec<Duration>,
    rewritten: u64,
    header_changes: u64,
    not_continued: u64,
    error: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("milter_load: {e}");
            return ExitCode::from(2);
        }
    };
    let msg = match load_message(&args) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            eprintln!("milter_load: {}: {e}", args.file);
            return ExitCode::from(2);
        }
    };

    let mut conns = Vec::with_capacity(args.sessions);
    for _ in 0..args.sessions {
        let opened = match Mta::open(&args.addr).await {
            Ok(mut c) => c.greet().await.map(|()| c),
            Err(e) => Err(e),
        };
        match opened {
            Ok(c) => conns.push(c),
            Err(e) => {
                eprintln!("milter_load: cannot open a milter session on {}: {e}", args.addr);
                return ExitCode::from(1);
            }
        }
    }

    let stages = conns[0].stages();
    let tickets = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.max_seconds);
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            let pace = pacing(args.rate, args.sessions, i, start);
            tokio::spawn(session(conn, msg.clone(), tickets.clone(), args.messages, deadline, pace))
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for t in tasks {
        results.push(t.await.expect("session task"));
    }
    let elapsed = start.elapsed();
    report(&args, &msg, &stages, &results, elapsed)
}

/// For session `i` of `n` at `rate` messages/s in all: when to send its first message and
/// the interval between its messages. `None` for a closed loop.
fn pacing(rate: f64, n: usize, i: usize, start: Instant) -> Option<(Instant, Duration)> {
    if rate <= 0.0 {
        return None;
    }
    let first = start + Duration::from_secs_f64(i as f64 / rate);
    Some((first, Duration::from_secs_f64(n as f64 / rate)))
}

/// One MTA connection (already greeted): messages until the tickets or the time run out.
async fn session(
    mut conn: Mta,
    msg: Arc<Message>,
    tickets: Arc<AtomicU64>,
    max: u64,
    deadline: Instant,
    pace: Option<(Instant, Duration)>,
) -> SessionResult {
    let mut res = SessionResult::default();
    for k in 0u32.. {
        if let Some((first, every)) = pace {
            let at = first + every * k;
            if at >= deadline {
                break;
            }
            tokio::time::sleep_until(at.into()).await;
        }
        let n = tickets.fetch_add(1, Ordering::Relaxed);
        if n >= max || Instant::now() >= deadline {
            break;
        }
        let t0 = Instant::now();
        match conn.send(&msg.mail).await {
            Ok(end) => {
                res.latencies.push(t0.elapsed());
                match end {
                    End::Eom { replaced_body, changed_headers } => {
                        res.rewritten += u64::from(replaced_body);
                        res.header_changes += u64::from(changed_headers);
                    }
                    End::Early => res.not_continued += 1,
                }
            }
            Err(e) => {
                res.error = Some(e.to_string());
                return res;
            }
        }
    }
    let _ = conn.close().await;
    res
}

fn report(args: &Args, msg: &Message, stages: &str, results: &[SessionResult], elapsed: Duration) -> ExitCode {
    let mut lat: Vec<Duration> = results.iter().flat_map(|r| r.latencies.iter().copied()).collect();
    lat.sort_unstable();
    let done = lat.len() as u64;
    let errors: Vec<&str> = results.iter().filter_map(|r| r.error.as_deref()).collect();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((p / 100.0) * (lat.len() - 1) as f64).round() as usize;
        lat[i].as_secs_f64() * 1000.0
    };
    let secs = elapsed.as_secs_f64();
    let line = json!({
        "addr": args.addr,
        "file": args.file,
        "message_bytes": msg.size,
        "sessions": args.sessions,
        "rate": args.rate,
        "stages": stages,
        "messages": done,
        "seconds": secs,
        "msgs_per_s": done as f64 / secs,
        "p50_ms": pct(50.0),
        "p99_ms": pct(99.0),
        "max_ms": pct(100.0),
        "rewritten": results.iter().map(|r| r.rewritten).sum::<u64>(),
        "header_changes": results.iter().map(|r| r.header_changes).sum::<u64>(),
        "ended_early": results.iter().map(|r| r.not_continued).sum::<u64>(),
        "errors": errors.len(),
        "first_error": errors.first(),
    });
    println!("{line}");
    if errors.is_empty() && done > 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("milter_load: {} session error(s), {done} message(s) done", errors.len());
        ExitCode::from(1)
    }
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: String::new(),
        file: String::new(),
        sessions: 1,
        messages: 1000,
        max_seconds: 30.0,
        rate: 0.0,
        sender: None,
        pad_to: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let bad = |v: &str| format!("bad value for {flag}: {v}");
        match flag.as_str() {
            "--addr" => args.addr = value()?,
            "--file" => args.file = value()?,
            "--sessions" => args.sessions = value()?.parse().map_err(|_| bad("sessions"))?,
            "--messages" => args.messages = value()?.parse().map_err(|_| bad("messages"))?,
            "--max-seconds" => args.max_seconds = value()?.parse().map_err(|_| bad("seconds"))?,
            "--rate" => args.rate = value()?.parse().map_err(|_| bad("rate"))?,
            "--sender" => args.sender = Some(value()?),
            "--pad-to" => args.pad_to = value()?.parse().map_err(|_| bad("bytes"))?,
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if args.addr.is_empty() || args.file.is_empty() {
        return Err("need --addr HOST:PORT and --file MESSAGE".into());
    }
    // NaN and infinity too: Duration::from_secs_f64 would panic on them.
    if args.sessions == 0 || !args.max_seconds.is_finite() || args.max_seconds <= 0.0 {
        return Err("--sessions and --max-seconds must be positive (and finite)".into());
    }
    Ok(args)
}

fn load_message(args: &Args) -> Result<Message, String> {
    let raw = std::fs::read(&args.file).map_err(|e| e.to_string())?;
    let raw = if args.pad_to > raw.len() { pad_returned_message(&raw, args.pad_to)? } else { raw };
    let (head, body) = split_message(&raw);
    let headers = header_fields(head);
    let find = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string());
    // A bounce comes from the null sender; anything else from its Return-Path or From.
    let sender = args.sender.clone().or_else(|| find("Return-Path")).unwrap_or_else(|| "<sender@bench.invalid>".into());
    let recipient = find("To").and_then(|v| angle_addr(&v)).unwrap_or_else(|| "<rcpt@bench.invalid>".into());
    // Leaked once, so that every session sends it without copies.
    let body = Vec::leak(to_crlf(body));
    Ok(Message { mail: Mail { sender, recipient, headers, body }, size: raw.len() })
}

/// Header block and body, split at the first empty line.
fn split_message(raw: &[u8]) -> (&[u8], &[u8]) {
    for (sep, skip) in [(&b"\r\n\r\n"[..], 4), (&b"\n\n"[..], 2)] {
        if let Some(i) = raw.windows(sep.len()).position(|w| w == sep) {
            return (&raw[..i], &raw[i + skip..]);
        }
    }
    (raw, &[])
}

/// (name, value) pairs; a folded value keeps its line breaks as LF, as Postfix sends them.
fn header_fields(head: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(head);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push('\n');
                last.1.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.to_string(), value.trim_start().to_string()));
        }
    }
    out
}

/// The address in a To: value, as `<addr>`: `Name <a@b>` or a bare `a@b`.
fn angle_addr(v: &str) -> Option<String> {
    if let Some(start) = v.find('<') {
        let end = start + v[start..].find('>')?;
        return Some(v[start..=end].to_string());
    }
    let bare = v.split([',', ' ', '\t', '\n']).find(|w| w.contains('@'))?;
    Some(format!("<{bare}>"))
}

fn to_crlf(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 32);
    let mut prev = 0u8;
    for &b in body {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// Grow a multipart bounce to about `target` bytes by adding text lines at the end of its
/// last part (the returned message), just before the closing boundary.
fn pad_returned_message(raw: &[u8], target: usize) -> Result<Vec<u8>, String> {
    let (head, _) = split_message(raw);
    let head = String::from_utf8_lossy(head);
    let boundary = boundary_of(&head).ok_or("no MIME boundary to pad inside")?;
    let closing = format!("\n--{boundary}--");
    let at = find_last(raw, closing.as_bytes()).ok_or("no closing MIME boundary")?;
    let line = b"This line pads the returned message so that the bounce is large (benchmark).\n";
    let lines = (target - raw.len()) / line.len() + 1;
    let mut out = Vec::with_capacity(target + line.len());
    out.extend_from_slice(&raw[..=at]);
    for _ in 0..lines {
        out.extend_from_slice(line);
    }
    out.extend_from_slice(&raw[at + 1..]);
    Ok(out)
}

fn boundary_of(head: &str) -> Option<String> {
    let lower = head.to_ascii_lowercase();
    let i = lower.find("boundary=")? + "boundary=".len();
    let rest = &head[i..];
    let value = match rest.strip_prefix('"') {
        Some(q) => &q[..q.find('"')?],
        None => rest.split(|c: char| c == ';' || c.is_whitespace()).next()?,
    };
    Some(value.to_string())
}

fn find_last(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}
