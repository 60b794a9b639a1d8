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

use indymilter::{Actions, Callbacks, Config, Context, ProtoOpts, Status};
use std::process::ExitCode;
use std::os::unix::fs::PermissionsExt;
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main]
async fn main() -> ExitCode {
    let (socket, stages) = match parse_args() {
        Ok(a) => a,
        Err(e) => return usage(&e),
    };
    let served = match socket {
        Socket::Inet(addr) => match TcpListener::bind(&addr).await {
            Ok(l) => serve(l, &stages, false).await,
            Err(e) => return usage(&format!("cannot listen on {addr}: {e}")),
        },
        Socket::Unix(path) => {
            let _ = std::fs::remove_file(&path);
            let bound = UnixListener::bind(&path)
                .and_then(|l| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).map(|()| l));
            let served = match bound {
                Ok(l) => serve(l, &stages, true).await,
                Err(e) => return usage(&format!("cannot listen on {path}: {e}")),
            };
            let _ = std::fs::remove_file(&path);
            served
        }
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => usage(&format!("milter failed: {e}")),
    }
}

enum Socket {
    Inet(String),
    Unix(String),
}

const ACTIONS: Actions = Actions::ADD_HEADER.union(Actions::CHANGE_HEADER).union(Actions::REPLACE_BODY);

/// The stages plainbounce leaves unanswered on a unix socket.
const QUIET: ProtoOpts = ProtoOpts::NOREPLY_RCPT.union(ProtoOpts::NOREPLY_DATA).union(ProtoOpts::NOREPLY_HEADER);

async fn serve(listener: impl indymilter::Listener, stages: &[String], unix: bool) -> std::io::Result<()> {
    let config = Config { actions: ACTIONS, ..Default::default() };
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    indymilter::run(listener, callbacks(stages, unix), config, shutdown).await
}

const DEFAULT_STAGES: &str = "mail,rcpt,data,header,eoh,body";

fn parse_args() -> Result<(Socket, Vec<String>), String> {
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
    let socket = match socket.strip_prefix("unix:") {
        Some(path) if path.starts_with('/') => Socket::Unix(path.to_string()),
        _ => Socket::Inet(inet_addr(&socket).ok_or_else(|| format!("not an inet:PORT@HOST or unix:/PATH socket: {socket}"))?),
    };
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
