//! `plainbounce serve-socketmap`: only the Postfix footer socketmap, without the milter.

use anyhow::{Context, Result};
use plainbounce::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Listen on "inet:PORT@HOST" or "unix:/path" (default: socketmap in the configuration).
    #[arg(long)]
    socketmap: Option<String>,
    /// Configuration file (default: the built-in configuration).
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded(),
    };
    if args.socketmap.is_some() {
        config.socketmap = args.socketmap;
    }
    init_logging(&config.log_level);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(plainbounce::socketmap::run(&config, shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
