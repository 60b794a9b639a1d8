//! Logging for the daemon: one line per event on stderr (journald or the service
//! manager adds the rest), as text or JSON, with a filter that a reload can change.

use anyhow::{Context, Result};
use std::io::{self, IsTerminal};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `timestamp LEVEL target: message key=value ...`
    #[default]
    Text,
    /// One JSON object per line, the event's fields at top level.
    Json,
}

/// Changes the filter of the installed logger.
pub struct LogHandle(reload::Handle<EnvFilter, Registry>);

impl LogHandle {
    pub fn set_level(&self, level: &str) -> Result<()> {
        self.0.reload(filter(level)?).context("cannot change the log filter")
    }
}

/// Parse a log filter such as "info" or "plainbounce=debug,warn".
pub fn filter(level: &str) -> Result<EnvFilter> {
    EnvFilter::builder().parse(level).with_context(|| format!("log_level {level:?} is not a valid log filter"))
}

/// Install the global logger; panics are logged through it too, as one line.
pub fn init(format: LogFormat, level: &str) -> Result<LogHandle> {
    let (filter, handle) = reload::Layer::new(filter(level)?);
    let text = (format == LogFormat::Text)
        .then(|| fmt::layer().with_writer(io::stderr).with_ansi(io::stderr().is_terminal()));
    let json = (format == LogFormat::Json).then(|| {
        fmt::layer().json().flatten_event(true).with_current_span(false).with_span_list(false).with_writer(io::stderr)
    });
    tracing_subscriber::registry().with(filter).with(text).with(json).try_init().context("a logger is already installed")?;
    // As a string field, so text output escapes whatever the panic message contains.
    std::panic::set_hook(Box::new(|info| tracing::error!(panic = info.to_string(), "panic")));
    Ok(LogHandle(handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked() {
        assert!(filter("info").is_ok());
        assert!(filter("plainbounce=debug,warn").is_ok());
        assert!(filter("plainbounce=loud").is_err());
    }
}
