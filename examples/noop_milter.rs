//! A milter that does nothing: the baseline for `bench/run`.
//!
//! It registers the stages it is told to (`bench/run` passes those `plainbounce serve`
//! negotiates, as `milter_load` reports them) and answers `continue` to each, so the MTA
//! (or `milter_load`) sends it the same packets: what it costs is the milter protocol's
//! own cost on indymilter + tokio. Stops on SIGTERM or SIGINT.
//!
//! Usage: `noop_milter --socket inet:PORT@127.0.0.1|unix:/PATH [--stages mail,rcpt,data,header,eoh,body]`
//! (end-of-message is always registered; the default is the list shown). A unix socket
//! is made writable by all (the MTA runs as another user) and removed at exit; on one,
//! like plainbounce, it asks for no replies at RCPT, DATA and headers.

use indymilter::{Callbacks, Config, Context, Status};
use plainbounce::milter::listen::{self, SocketSpec, Unanswered};
use plainbounce::milter::{ACTIONS, QUIET};
use std::process::ExitCode;
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main]
async fn main() -> ExitCode {
    let (socket, stages) = match parse_args() {
        Ok(a) => a,
        Err(e) => return usage(&e),
    };
    // plainbounce's own binding: a unix socket file is removed again when `bound` drops.
    let bound = match listen::bind(&socket, 0o666).await {
        Ok(b) => b,
        Err(e) => return usage(&format!("{e:#}")),
    };
    let unix = bound.listener.unanswered_ok();
    let config = Config { actions: ACTIONS, ..Default::default() };
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    match indymilter::run(bound.listener, callbacks(&stages, unix), config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => usage(&format!("milter failed: {e}")),
    }
}

const DEFAULT_STAGES: &str = "mail,rcpt,data,header,eoh,body";

fn parse_args() -> Result<(SocketSpec, Vec<String>), String> {
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
    let socket = socket.ok_or("expected --socket inet:PORT@HOST or unix:/PATH")?;
    let socket = SocketSpec::parse(&socket).map_err(|e| format!("{e:#}"))?;
    let stages: Vec<String> = stages.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect();
    let known = ["connect", "helo", "mail", "rcpt", "data", "header", "eoh", "body", "eom"];
    if let Some(bad) = stages.iter().find(|s| !known.contains(&s.as_str())) {
        return Err(format!("unknown stage {bad} (known: {})", known.join(",")));
    }
    Ok((socket, stages))
}

/// The given stages (and end-of-message), each answering `continue` (or nothing, where
/// no reply was negotiated). The connection's data: whether it was.
fn callbacks(stages: &[String], unix: bool) -> Callbacks<bool> {
    let on = |name: &str| stages.iter().any(|s| s == name);
    let mut cb = Callbacks::new()
        .on_negotiate(move |cx, actions, opts| {
            cx.requested_actions = ACTIONS & actions;
            let quiet = unix && opts.contains(QUIET);
            if quiet {
                cx.requested_opts |= QUIET;
            }
            cx.data = Some(quiet);
            Box::pin(async { Status::Continue })
        })
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
        cb = cb.on_rcpt(|cx, _| Box::pin(async move { go_on(cx) }));
    }
    if on("data") {
        cb = cb.on_data(|cx| Box::pin(async move { go_on(cx) }));
    }
    if on("header") {
        cb = cb.on_header(|cx, _, _| Box::pin(async move { go_on(cx) }));
    }
    if on("eoh") {
        cb = cb.on_eoh(|_| Box::pin(async { Status::Continue }));
    }
    if on("body") {
        cb = cb.on_body(|_, _| Box::pin(async { Status::Continue }));
    }
    cb
}

fn go_on(cx: &Context<bool>) -> Status {
    if cx.data == Some(true) {
        Status::Noreply
    } else {
        Status::Continue
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("noop_milter: {msg}");
    ExitCode::from(2)
}
