//! `plainbounce check-config`: load a configuration the way the doors do (templates, knowledge
//! base, a trial render of every template in every language) and report clearly.

use anyhow::Result;
use plainbounce::config::Config;
use plainbounce::engine::Engine;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The configuration file (default: check the built-in configuration).
    file: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let name = args.file.as_ref().map_or_else(|| "built-in configuration".to_string(), |p| p.display().to_string());
    let checked = args
        .file
        .as_deref()
        .map_or_else(|| Ok(Config::embedded()), Config::load)
        .and_then(Engine::new)
        .and_then(|e| e.kb().compile_all().map(|()| e));
    let engine = match checked {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{name}: error: {e:#}");
            return Ok(ExitCode::from(1));
        }
    };
    for bad in engine.kb().failing_examples() {
        eprintln!("{name}: warning: knowledge-base example does not match its rule: {bad}");
    }
    let c = engine.config();
    println!(
        "{name}: OK ({} domain policies, languages {}, {} skip patterns, {} causes and {} rules in the knowledge base)",
        c.domains.len(),
        engine.languages("").join(" "),
        c.skip_patterns.len(),
        engine.kb().causes().len(),
        engine.kb().rules().len(),
    );
    Ok(ExitCode::SUCCESS)
}
