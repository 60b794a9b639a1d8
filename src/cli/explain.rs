//! `plainbounce explain`: what a reply or a bounce means, for people or as JSON.

use anyhow::{bail, Result};
use plainbounce::classify::{self, Explanation};
use plainbounce::dsn::{self, Bounce, Detection, RecipientFacts};
use plainbounce::kb::KnowledgeBase;
use serde_json::{json, Map, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON (one object; JSON Lines with --file).
    #[arg(long)]
    json: bool,
    /// Explain bounce messages: files, directories of files, or - for stdin.
    #[arg(long = "file", value_name = "PATH", num_args = 1..)]
    files: Vec<PathBuf>,
    /// Language of the texts (en, de, fr, es).
    #[arg(long, default_value = "en")]
    lang: String,
    /// Explain the text as a server's own reply to the client sending through it (at RCPT
    /// TO), as the Postfix reply footers do: "Relay access denied" then means "log in".
    #[arg(long)]
    smtpd: bool,
    /// Extra knowledge-base files that extend or override the built-in one.
    #[arg(long = "kb", value_name = "FILE")]
    kb_files: Vec<PathBuf>,
    /// The reply or diagnostic text (several words are joined with spaces).
    text: Vec<String>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let kb = KnowledgeBase::with_files(&args.kb_files)?;
    let out = &mut std::io::stdout().lock();
    if !args.files.is_empty() {
        return explain_files(&kb, &args, out);
    }
    if args.text.is_empty() {
        bail!("give a reply text to explain, or --file PATH");
    }
    let text = args.text.join(" ");
    let e = if args.smtpd {
        classify::explain_reply_to(&kb, &text, "RCPT", Some(plainbounce::footer::SMTPD_CONTEXT))
    } else {
        classify::explain_text(&kb, &text)
    };
    if args.json {
        let mut obj = explanation_json(&e, &args.lang);
        obj.insert("input".into(), json!(text));
        writeln!(out, "{}", Value::Object(obj))?;
    } else {
        write_human(out, &e, &args.lang, "")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The fields of the `explain` contract that describe an explanation.
pub fn explanation_json(e: &Explanation, lang: &str) -> Map<String, Value> {
    let t = e.cause.texts(lang);
    let v = json!({
        "reason": e.cause.reason,
        "cause": e.cause.id,
        "title": t.title,
        "explanation": t.explanation,
        "remedy": t.remedy,
        "admin_note": t.admin_note,
        "who": e.cause.who.as_str(),
        "permanent": e.permanent,
        "matched": e.matched(),
        "evidence": e.evidence(),
        "reply_code": e.reply_code,
        "status": e.status,
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!("json! of an object literal"),
    }
}

fn write_human(out: &mut impl Write, e: &Explanation, lang: &str, indent: &str) -> Result<()> {
    let t = e.cause.texts(lang);
    let kind = if e.permanent { "permanent" } else { "temporary" };
    writeln!(out, "{indent}{} ({}, {kind})", t.title, e.cause.reason)?;
    writeln!(out, "{indent}  What happened: {}", t.explanation)?;
    writeln!(out, "{indent}  What to do:    {}", t.remedy)?;
    writeln!(out, "{indent}  For admins:    {}", t.admin_note)?;
    writeln!(out, "{indent}  Who must act:  {}", e.cause.who.as_str())?;
    let codes = [e.reply_code.map(|c| c.to_string()), e.status.clone()];
    let codes: Vec<String> = codes.into_iter().flatten().collect();
    writeln!(out, "{indent}  Matched rule:  {} (codes: {})", e.matched(), if codes.is_empty() { "none".into() } else { codes.join(" ") })?;
    Ok(())
}

fn explain_files(kb: &KnowledgeBase, args: &Args, out: &mut impl Write) -> Result<ExitCode> {
    let mut failed = false;
    for path in expand(&args.files) {
        let name = path.display().to_string();
        match read_input(&path) {
            Ok(raw) => explain_message(kb, args, &name, &raw, out)?,
            Err(e) => {
                failed = true;
                eprintln!("plainbounce: {name}: {e}");
                if args.json {
                    writeln!(out, "{}", json!({"file": name, "error": e.to_string()}))?;
                }
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn explain_message(kb: &KnowledgeBase, args: &Args, name: &str, raw: &[u8], out: &mut impl Write) -> Result<()> {
    let detection = dsn::parse(raw);
    if args.json {
        let obj = match &detection {
            Detection::NotBounce(why) => json!({"file": name, "bounce": false, "why": why, "recipients": []}),
            Detection::Bounce(b) => {
                let recipients: Vec<Value> = b.recipients.iter().map(|r| recipient_json(kb, b, r, &args.lang)).collect();
                json!({"file": name, "bounce": true, "format": b.format, "recipients": recipients})
            }
        };
        writeln!(out, "{obj}")?;
        return Ok(());
    }
    match &detection {
        Detection::NotBounce(why) => writeln!(out, "{name}: not a bounce ({why})")?,
        Detection::Bounce(b) => {
            writeln!(out, "{name}: bounce ({}), {} recipient(s)", b.format, b.recipients.len())?;
            for r in &b.recipients {
                writeln!(out, "- {} [{}]", r.address.as_deref().unwrap_or("(recipient not named)"), r.action.as_deref().unwrap_or("failed"))?;
                if let Some(d) = &r.diagnostic {
                    writeln!(out, "  Server said:   {d}")?;
                }
                write_human(out, &classify::classify_in(kb, b, r), &args.lang, "  ")?;
            }
        }
    }
    Ok(())
}

fn recipient_json(kb: &KnowledgeBase, b: &Bounce, r: &RecipientFacts, lang: &str) -> Value {
    let e = classify::classify_in(kb, b, r);
    let mut obj = explanation_json(&e, lang);
    obj.insert("address".into(), json!(r.address));
    obj.insert("action".into(), json!(r.action));
    obj.insert("diagnostic".into(), json!(r.diagnostic));
    obj.insert("remote_mta".into(), json!(r.remote_mta));
    obj.insert("command".into(), json!(r.command));
    // "status" is the report's own Status field when it has one.
    if r.status.is_some() {
        obj.insert("status".into(), json!(r.status));
    }
    Value::Object(obj)
}

/// Files as given, directories expanded to their files (sorted, recursively).
fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = match std::fs::read_dir(p) {
                Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
                Err(_) => vec![],
            };
            entries.sort();
            out.extend(expand(&entries));
        } else {
            out.push(p.clone());
        }
    }
    out
}

fn read_input(path: &Path) -> std::io::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin().lock().read_to_end(&mut buf)?;
        return Ok(buf);
    }
    std::fs::read(path)
}
