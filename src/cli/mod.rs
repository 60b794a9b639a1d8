//! Command line: one subcommand per door or tool.

mod explain;
mod serve;

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
    /// Run the milter for Postfix or Sendmail.
    Serve(serve::Args),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Explain(args) => explain::run(args),
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("plainbounce: {e:#}");
            ExitCode::from(2)
        }
    }
}
