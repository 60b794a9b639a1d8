//! Command line: one subcommand per door or tool.

mod check_config;
mod explain;
mod preview;
mod rewrite;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "plainbounce", version, about = "Rewrite cryptic bounce messages into plain language")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Explain an SMTP reply text, or bounce messages with --file.
    Explain(explain::Args),
    /// Filter one message from stdin to stdout, rewriting it if it is a bounce.
    Rewrite(rewrite::Args),
    /// Show the rewritten form of a bounce (and its HTML part).
    Preview(preview::Args),
    /// Validate a configuration file, its templates and knowledge-base files.
    CheckConfig(check_config::Args),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Explain(args) => explain::run(args),
        Command::Rewrite(args) => rewrite::run(args),
        Command::Preview(args) => preview::run(args),
        Command::CheckConfig(args) => check_config::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("plainbounce: {e:#}");
            ExitCode::from(2)
        }
    }
}
