//! `plainbounce serve-socketmap`: only the Postfix footer socketmap, without the milter.
//! SIGTERM or SIGINT stop it; SIGHUP reloads the configuration and knowledge base (a
//! broken one is refused and the running one stays).

use anyhow::{Context, Result};
use plainbounce::config::Config;
use plainbounce::logging::{self, LogFormat};
use plainbounce::socketmap::{self, SharedFooters};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

#[derive(clap::Args)]
pub struct Args {
    /// Listen on "inet:PORT@HOST" or "unix:/path" (default: socketmap in the configuration).
    #[arg(long)]
    socketmap: Option<String>,
    /// Configuration file (default: the built-in configuration).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log lines as text or JSON.
    #[arg(long, value_enum, default_value_t)]
    log_format: LogFormat,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut config = load(args.config.as_deref())?;
    if args.socketmap.is_some() {
        config.socketmap = args.socketmap.clone();
    }
    logging::init(args.log_format, &config.log_level)?;
    let footers = SharedFooters::new(socketmap::footers_for(&config)?);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let reloader = tokio::spawn({
            let (footers, path) = (footers.clone(), args.config.clone());
            async move {
                while hup.recv().await.is_some() {
                    let (footers, path) = (footers.clone(), path.clone());
                    // Compiling a knowledge base is not work for a runtime thread.
                    let _ = tokio::task::spawn_blocking(move || reload(&footers, path.as_deref())).await;
                }
            }
        });
        let stop = async {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        let result = socketmap::run_shared(&config, footers, stop).await;
        reloader.abort();
        result
    })?;
    Ok(ExitCode::SUCCESS)
}

fn load(path: Option<&Path>) -> Result<Config> {
    match path {
        Some(path) => Config::load(path),
        None => Ok(Config::embedded()),
    }
}

/// New footers from the configuration file; the listener and limits stay as started.
fn reload(footers: &Arc<SharedFooters>, path: Option<&Path>) {
    match load(path).and_then(|c| socketmap::footers_for(&c)) {
        Ok(new) => {
            footers.replace(new);
            tracing::info!("socketmap: configuration reloaded");
        }
        Err(e) => tracing::error!(error = format!("{e:#}"), "socketmap: reload refused; the running configuration stays"),
    }
}
