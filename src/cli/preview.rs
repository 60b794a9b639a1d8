//! `plainbounce preview`: show what plainbounce would make of a bounce, with a chosen
//! domain policy and language, so an admin can see their templates at work.

use anyhow::{bail, Context, Result};
use mail_parser::{MessageParser, MimeHeaders, PartType};
use plainbounce::config::Config;
use plainbounce::engine::{apply, Engine, Options, Outcome};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The bounce message to rewrite.
    #[arg(long, value_name = "BOUNCE")]
    file: PathBuf,
    /// Use this domain's policy (default: the domain of the bounce's To: address).
    #[arg(long, value_name = "DOMAIN")]
    domain: Option<String>,
    /// Write in this language (default: as the policy decides).
    #[arg(long, value_name = "LANG")]
    lang: Option<String>,
    /// Also write the HTML part, decoded, to this file.
    #[arg(long, value_name = "OUT.html")]
    html: Option<PathBuf>,
    /// Configuration file (default: the built-in configuration).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded(),
    };
    let engine = Engine::new(config)?;
    let raw = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    if let Some(lang) = &args.lang {
        let available = engine.languages(args.domain.as_deref().unwrap_or(""));
        if !available.iter().any(|l| l.eq_ignore_ascii_case(lang)) {
            bail!("language {lang:?} is not available (available: {})", available.join(", "));
        }
    }
    let opts = Options { domain: args.domain.as_deref(), lang: args.lang.as_deref(), ..Default::default() };
    let m = match engine.process_with(&raw, &opts) {
        Outcome::Modify(m) => m,
        Outcome::Pass(why) => {
            eprintln!("{}: left unchanged: {why}", args.file.display());
            return Ok(ExitCode::from(1));
        }
    };
    let out = apply(&raw, &m);
    std::io::stdout().lock().write_all(&out)?;
    eprintln!("{}: {}", args.file.display(), m.summary);
    if let Some(path) = &args.html {
        let html = html_part(&out).context("the result has no HTML part (annotate mode?)")?;
        std::fs::write(path, html).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The first text/html part, decoded.
fn html_part(message: &[u8]) -> Option<String> {
    let msg = MessageParser::new().parse(message)?;
    msg.parts.iter().find_map(|p| match &p.body {
        PartType::Html(h) if p.content_type().is_some_and(|c| c.subtype() == Some("html")) => Some(h.to_string()),
        _ => None,
    })
}
