//! `plainbounce postfix-footers`: a static pcre:/regexp: table for Postfix's
//! `smtpd_reject_footer_maps`, from the same knowledge base and texts as the socketmap.

use anyhow::Result;
use plainbounce::config::{Config, FooterStyle};
use plainbounce::footer::table::{self, Format};
use plainbounce::footer::Footers;
use plainbounce::kb::KnowledgeBase;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Table type: pcre (Postfix pcre:) or regexp (POSIX, Postfix regexp:).
    #[arg(long, value_enum, default_value = "pcre")]
    format: FormatArg,
    /// Language of the footers (default: [footer] lang of the configuration).
    #[arg(long)]
    lang: Option<String>,
    /// short (headline and remedy) or full (with the explanation); default from the configuration.
    #[arg(long, value_enum)]
    style: Option<StyleArg>,
    /// Configuration file (default: the built-in configuration).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Extra knowledge-base files (in addition to the configuration's kb_files).
    #[arg(long = "kb", value_name = "FILE")]
    kb_files: Vec<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Pcre,
    Regexp,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum StyleArg {
    Short,
    Full,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded(),
    };
    let mut kb_files = config.kb_files.clone();
    kb_files.extend(args.kb_files.iter().cloned());
    let kb = KnowledgeBase::with_files(&kb_files)?;
    let lang = args.lang.unwrap_or_else(|| config.footer.lang.clone());
    let style = match args.style {
        Some(StyleArg::Short) => FooterStyle::Short,
        Some(StyleArg::Full) => FooterStyle::Full,
        None => config.footer.style,
    };
    let footers = Footers::new(kb, &lang, style);
    if !footers.languages().iter().any(|l| l.eq_ignore_ascii_case(&lang)) {
        anyhow::bail!("no texts in language {lang:?} (known: {})", footers.languages().join(", "));
    }
    let format = match args.format {
        FormatArg::Pcre => Format::Pcre,
        FormatArg::Regexp => Format::Regexp,
    };
    let t = table::build(&footers, &lang, format);
    std::io::stdout().lock().write_all(t.text.as_bytes())?;
    eprintln!("plainbounce: {} rules written, {} skipped", t.written, t.skipped.len());
    Ok(ExitCode::SUCCESS)
}
