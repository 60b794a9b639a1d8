use std::process::ExitCode;

fn main() -> ExitCode {
    plainbounce_cli::main()
}

#[path = "cli/mod.rs"]
mod plainbounce_cli;
