//! Command line: one subcommand per door or tool.

mod check_config;
mod explain;
mod preview;
mod rewrite;
mod serve;
mod footers;
mod socketmap;

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
    /// Run the milter for Postfix or Sendmail.
    Serve(serve::Args),
    /// Print a pcre:/regexp: table of reply footers for Postfix's smtpd_reject_footer_maps.
    PostfixFooters(footers::Args),
    /// Serve only the Postfix socketmap of reply footers (smtpd_reject_footer_maps).
    ServeSocketmap(socketmap::Args),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Explain(args) => explain::run(args),
        Command::Rewrite(args) => rewrite::run(args),
        Command::Preview(args) => preview::run(args),
        Command::CheckConfig(args) => check_config::run(args),
        Command::Serve(args) => serve::run(args),
        Command::PostfixFooters(args) => footers::run(args),
        Command::ServeSocketmap(args) => socketmap::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("plainbounce: {e:#}");
            ExitCode::from(2)
        }
    }
}
