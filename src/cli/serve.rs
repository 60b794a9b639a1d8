//! `plainbounce serve`: the milter daemon. SIGTERM or SIGINT stop it gracefully (no new
//! connections, messages in flight finish); SIGHUP reloads the configuration, and a
//! broken one is refused while the running one stays. With a socketmap address (option or
//! config), the Postfix reply-footer map runs beside the milter and follows the same
//! signals.

use anyhow::{Context, Result};
use plainbounce::config::Config;
use plainbounce::engine::Engine;
use plainbounce::logging::{self, LogFormat, LogHandle};
use plainbounce::milter::listen::{self, SocketSpec};
use plainbounce::milter::{self, Milter};
use plainbounce::socketmap::{self, SharedFooters};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (without one, the embedded default).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen here instead of the configured socket: inet:PORT@HOST or unix:/path.
    #[arg(long, value_name = "SOCKET")]
    socket: Option<String>,
    /// Also serve the Postfix reply-footer socketmap here: inet:PORT@HOST or unix:/path.
    #[arg(long, value_name = "SOCKET")]
    socketmap: Option<String>,
    /// Log lines as text or JSON.
    #[arg(long, value_enum, default_value_t)]
    log_format: LogFormat,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded(),
    };
    if let Some(socket) = &args.socket {
        config.socket = socket.clone();
    }
    if args.socketmap.is_some() {
        config.socketmap = args.socketmap.clone();
    }
    let spec = SocketSpec::parse(&config.socket)?;
    let mode = listen::parse_mode(&config.socket_mode)?;
    let log = logging::init(args.log_format, &config.log_level)?;
    let milter = Arc::new(Milter::new(config.clone(), build)?);
    let footers = match config.socketmap {
        Some(_) => Some(SharedFooters::new(socketmap::footers_for(&config)?)),
        None => None,
    };
    // Blocking threads run rewrites (bounded by the milter's slots) and reloads: no need
    // for tokio's default of 512, each with its own allocator arena and caches.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(milter::rewrite_slots() + 2)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let result = runtime.block_on(serve(milter, &spec, mode, Startup { config, args, log, footers }));
    // A rewriter that overran its budget may still be running on a blocking thread; its
    // message has long gone out unchanged, so it must not hold up the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Build an engine from a configuration that is fit to run with (also on reload, so a
/// config accepted now will not stop the next start). Every pattern is compiled here:
/// a pattern too big to compile is refused now, and no message pays for compiling.
fn build(config: Config) -> Result<Engine> {
    SocketSpec::parse(&config.socket)?;
    listen::parse_mode(&config.socket_mode)?;
    logging::filter(&config.log_level)?;
    let engine = Engine::new(config)?;
    engine.kb().compile_all()?;
    Ok(engine)
}

/// What the daemon started with: settings a reload cannot change, and the logger.
struct Startup {
    config: Config,
    args: Args,
    log: LogHandle,
    /// The footer socketmap's texts, when it runs.
    footers: Option<Arc<SharedFooters>>,
}

async fn serve(milter: Arc<Milter<Engine>>, spec: &SocketSpec, mode: u32, startup: Startup) -> Result<()> {
    // Handlers first: a SIGHUP's default action would end the process.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let bound = listen::bind(spec, mode).await?;
    let max_connections = startup.config.max_connections;
    tracing::info!(socket = %bound.local, max_connections, "listening");

    let (stopping, stopped) = tokio::sync::watch::channel(false);
    let footer_map = startup.footers.clone().map(|footers| {
        let (config, mut stopped) = (startup.config.clone(), stopped.clone());
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|&s| s).await;
            };
            if let Err(e) = socketmap::run_shared(&config, footers, shutdown).await {
                tracing::error!(error = format!("{e:#}"), "socketmap stopped");
            }
        })
    });
    drop(stopped);
    let reloader = tokio::spawn({
        let milter = milter.clone();
        let startup = Arc::new(startup);
        async move {
            while hup.recv().await.is_some() {
                let (milter, startup) = (milter.clone(), startup.clone());
                // Building an engine compiles patterns and templates: not on a runtime thread.
                let _ = tokio::task::spawn_blocking(move || reload(&milter, &startup)).await;
            }
        }
    });
    let stop = async {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "stopping");
        let _ = stopping.send(true);
    };
    let result = milter.run(bound.listener, max_connections, stop).await;
    reloader.abort();
    if let Some(task) = footer_map {
        let _ = task.await;
    }
    drop(bound.socket_file);
    result.context("the milter stopped accepting connections")?;
    tracing::info!("stopped");
    Ok(())
}

fn reload(milter: &Milter<Engine>, startup: &Startup) {
    let path = startup.args.config.as_deref();
    match milter.reload(path) {
        Ok(new) => {
            if let Err(e) = startup.log.set_level(&new.log_level) {
                tracing::error!(error = format!("{e:#}"), "log level unchanged");
            }
            warn_restart_only(&startup.config, &new, &startup.args);
            reload_footers(startup, &new);
            tracing::info!(config = %shown(path), "configuration reloaded");
        }
        Err(e) => tracing::error!(config = %shown(path), error = format!("{e:#}"), "reload refused; the running configuration stays"),
    }
}

/// New footer texts for the socketmap (its listener and limits stay as started).
fn reload_footers(startup: &Startup, new: &Config) {
    let Some(footers) = &startup.footers else { return };
    match socketmap::footers_for(new) {
        Ok(f) => footers.replace(f),
        Err(e) => tracing::error!(error = format!("{e:#}"), "socketmap: footers unchanged"),
    }
}

/// The socket and connection limit are fixed while running.
fn warn_restart_only(running: &Config, new: &Config, args: &Args) {
    let socket_changed = args.socket.is_none() && new.socket != running.socket;
    if socket_changed || new.socket_mode != running.socket_mode || new.max_connections != running.max_connections {
        tracing::warn!("socket, socket_mode and max_connections changes take effect only after a restart");
    }
}

fn shown(path: Option<&Path>) -> String {
    path.map_or_else(|| "embedded default".into(), |p| p.display().to_string())
}
