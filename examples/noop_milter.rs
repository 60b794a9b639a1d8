//! A milter that does nothing: the baseline for `bench/run`.
//!
//! It registers the stages it is told to (`bench/run` passes those `plainbounce serve`
//! negotiates, as `milter_load` reports them) and answers `continue` to each, so the MTA
//! (or `milter_load`) sends it the same packets: what it costs is the milter protocol's
//! own cost on indymilter + tokio. Stops on SIGTERM or SIGINT.
//!
//! Usage: `noop_milter --socket inet:PORT@127.0.0.1 [--stages mail,rcpt,data,header,eoh,body]`
//! (end-of-message is always registered; the default is the list shown).

use indymilter::{Actions, Callbacks, Config, Status};
use std::process::ExitCode;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main]
async fn main() -> ExitCode {
    let (addr, stages) = match parse_args() {
        Ok(a) => a,
        Err(e) => return usage(&e),
    };
    let listener = match TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => return usage(&format!("cannot listen on {addr}: {e}")),
    };
    let config = Config {
        actions: Actions::ADD_HEADER | Actions::CHANGE_HEADER | Actions::REPLACE_BODY,
        ..Default::default()
    };
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    match indymilter::run(listener, callbacks(&stages), config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => usage(&format!("milter failed: {e}")),
    }
}

const DEFAULT_STAGES: &str = "mail,rcpt,data,header,eoh,body";

fn parse_args() -> Result<(String, Vec<String>), String> {
    let mut socket = None;
    let mut stages = DEFAULT_STAGES.to_string();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--socket" => socket = Some(value),
            "--stages" => stages = value,
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    let socket = socket.ok_or("expected --socket inet:PORT@HOST")?;
    let addr = inet_addr(&socket).ok_or_else(|| format!("not an inet:PORT@HOST socket: {socket}"))?;
    let stages: Vec<String> = stages.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect();
    let known = ["connect", "helo", "mail", "rcpt", "data", "header", "eoh", "body", "eom"];
    if let Some(bad) = stages.iter().find(|s| !known.contains(&s.as_str())) {
        return Err(format!("unknown stage {bad} (known: {})", known.join(",")));
    }
    Ok((addr, stages))
}

/// The given stages (and end-of-message), each answering `continue`.
fn callbacks(stages: &[String]) -> Callbacks<()> {
    let on = |name: &str| stages.iter().any(|s| s == name);
    let mut cb = Callbacks::new()
        .on_eom(|_| Box::pin(async { Status::Continue }))
        .on_abort(|_| Box::pin(async { Status::Continue }));
    if on("connect") {
        cb = cb.on_connect(|_, _, _| Box::pin(async { Status::Continue }));
    }
    if on("helo") {
        cb = cb.on_helo(|_, _| Box::pin(async { Status::Continue }));
    }
    if on("mail") {
        cb = cb.on_mail(|_, _| Box::pin(async { Status::Continue }));
    }
    if on("rcpt") {
        cb = cb.on_rcpt(|_, _| Box::pin(async { Status::Continue }));
    }
    if on("data") {
        cb = cb.on_data(|_| Box::pin(async { Status::Continue }));
    }
    if on("header") {
        cb = cb.on_header(|_, _, _| Box::pin(async { Status::Continue }));
    }
    if on("eoh") {
        cb = cb.on_eoh(|_| Box::pin(async { Status::Continue }));
    }
    if on("body") {
        cb = cb.on_body(|_, _| Box::pin(async { Status::Continue }));
    }
    cb
}

/// "inet:PORT@HOST" → "HOST:PORT".
fn inet_addr(socket: &str) -> Option<String> {
    let (port, host) = socket.strip_prefix("inet:")?.split_once('@')?;
    port.parse::<u16>().ok()?;
    Some(format!("{host}:{port}"))
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("noop_milter: {msg}");
    ExitCode::from(2)
}
