//! `plainbounce explain`: what a reply or a bounce means, for people or as JSON.

use anyhow::{bail, Result};
use plainbounce::classify::{self, Explanation};
use plainbounce::dsn::{self, Detection, RecipientFacts};
use plainbounce::kb::{Evidence, KnowledgeBase};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Condvar, Mutex};

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
    /// Files explained at once (default: one per CPU). The output keeps the files' order.
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
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
        let input = Some(text.as_str());
        write_json_line(out, &ExplanationJson { input, ..ExplanationJson::new(&e, &args.lang) })?;
    } else {
        write_human(out, &e, &args.lang, "")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// An explanation in the `explain --json` contract. The keys are in alphabetical order,
/// as they always were; the recipient keys are `None` (and left out) for a reply text,
/// `input` for a bounce's recipient.
#[derive(Serialize)]
struct ExplanationJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<Option<&'a str>>,
    admin_note: &'a str,
    cause: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    diagnostic: Option<Option<&'a str>>,
    evidence: Option<Evidence>,
    explanation: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<&'a str>,
    matched: String,
    permanent: bool,
    reason: &'a str,
    remedy: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote_mta: Option<Option<&'a str>>,
    reply_code: Option<u16>,
    status: Option<&'a str>,
    title: &'a str,
    who: &'a str,
}

impl<'a> ExplanationJson<'a> {
    fn new(e: &'a Explanation, lang: &str) -> Self {
        let t = e.cause.texts(lang);
        ExplanationJson {
            action: None,
            address: None,
            admin_note: &t.admin_note,
            cause: &e.cause.id,
            command: None,
            diagnostic: None,
            evidence: e.evidence(),
            explanation: &t.explanation,
            input: None,
            matched: e.matched(),
            permanent: e.permanent,
            reason: &e.cause.reason,
            remedy: &t.remedy,
            remote_mta: None,
            reply_code: e.reply_code,
            status: e.status.as_deref(),
            title: &t.title,
            who: e.cause.who.as_str(),
        }
    }

    /// A bounce's recipient: what the report says about it, and "status" the report's
    /// own Status field when it has one.
    fn recipient(e: &'a Explanation, r: &'a RecipientFacts, lang: &str) -> Self {
        let base = ExplanationJson::new(e, lang);
        ExplanationJson {
            action: Some(r.action.as_deref()),
            address: Some(r.address.as_deref()),
            command: Some(r.command.as_deref()),
            diagnostic: Some(r.diagnostic.as_deref()),
            remote_mta: Some(r.remote_mta.as_deref()),
            status: r.status.as_deref().or(base.status),
            ..base
        }
    }
}

/// One line of `explain --file --json`.
#[derive(Serialize)]
struct MessageJson<'a> {
    bounce: bool,
    file: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<&'a str>,
    recipients: Vec<ExplanationJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    why: Option<&'a str>,
}

fn write_json_line(out: &mut impl Write, value: &impl Serialize) -> Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")?;
    Ok(())
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
    let paths = expand(&args.files);
    // One write per buffer, not per line: a run over many files writes a line each.
    let out = &mut std::io::BufWriter::new(out);
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).clamp(1, paths.len().max(1));
    let mut failed = false;
    in_order(&paths, jobs, |path| explain_file(kb, args, path), |done| {
        if let Some(err) = &done.error {
            failed = true;
            eprintln!("plainbounce: {}: {err}", done.name);
        }
        out.write_all(&done.output)
    })?;
    out.flush()?;
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// One file's explanation, ready to print.
struct Explained {
    name: String,
    output: Vec<u8>,
    error: Option<String>,
}

fn explain_file(kb: &KnowledgeBase, args: &Args, path: &Path) -> Explained {
    let name = path.display().to_string();
    let mut output = Vec::new();
    let error = match read_input(path) {
        Ok(raw) => explain_message(kb, args, &name, &raw, &mut output).err().map(|e| e.to_string()),
        Err(e) => {
            if args.json {
                let _ = writeln!(output, "{}", json!({"file": name, "error": e.to_string()}));
            }
            Some(e.to_string())
        }
    };
    Explained { name, output, error }
}

/// Items a worker takes at a time: fewer hand-overs between threads (each one can cost
/// a wake-up of the writer and of a waiting worker).
const CHUNK: usize = 8;

/// Run `work` on every item on `jobs` threads and hand the results to `emit` in the
/// items' order. A worker takes a chunk of items only while its end is at most `window`
/// ahead of the last one emitted, so memory stays bounded however many items there are.
fn in_order<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> R + Sync,
    mut emit: impl FnMut(R) -> std::io::Result<()>,
) -> std::io::Result<()> {
    if jobs <= 1 {
        return items.iter().try_for_each(|item| emit(work(item)));
    }
    let window = jobs * 16;
    let state = Mutex::new(Progress::default());
    let moved = Condvar::new();
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Vec<R>)>();
    // Where the chunk a worker would take next ends.
    let end = |s: &Progress| (s.next + CHUNK).min(items.len());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let tx = tx.clone();
            let (state, moved, work) = (&state, &moved, &work);
            scope.spawn(move || loop {
                let chunk = {
                    let mut s = moved.wait_while(state.lock().unwrap(), |s| !s.stop && end(s) > s.emitted + window).unwrap();
                    if s.stop || s.next >= items.len() {
                        return;
                    }
                    let chunk = s.next..end(&s);
                    s.next = chunk.end;
                    chunk
                };
                let start = chunk.start;
                if tx.send((start, items[chunk].iter().map(work).collect())).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        let result = emit_in_order(rx, &mut emit, |emitted| {
            state.lock().unwrap().emitted = emitted;
            moved.notify_all();
        });
        // On a write error, let the workers go.
        state.lock().unwrap().stop = true;
        moved.notify_all();
        result
    })
}

/// Shared by `in_order`'s workers and writer.
#[derive(Default)]
struct Progress {
    /// The next item to take.
    next: usize,
    /// Items written so far.
    emitted: usize,
    /// The writer failed: take no more.
    stop: bool,
}

/// Chunks of results as they come, each tagged with its first item's index, emitted in
/// index order; `progress` hears the count emitted.
fn emit_in_order<R>(
    rx: std::sync::mpsc::Receiver<(usize, Vec<R>)>,
    emit: &mut impl FnMut(R) -> std::io::Result<()>,
    progress: impl Fn(usize),
) -> std::io::Result<()> {
    let mut waiting = BTreeMap::new();
    let mut want = 0;
    for (i, chunk) in rx {
        waiting.insert(i, chunk);
        while let Some(chunk) = waiting.remove(&want) {
            want += chunk.len();
            chunk.into_iter().try_for_each(&mut *emit)?;
        }
        progress(want);
    }
    Ok(())
}

fn explain_message(kb: &KnowledgeBase, args: &Args, name: &str, raw: &[u8], out: &mut impl Write) -> Result<()> {
    let detection = dsn::parse(raw);
    if args.json {
        return match &detection {
            Detection::NotBounce(why) => {
                let line = MessageJson { bounce: false, file: name, format: None, recipients: vec![], why: Some(why) };
                write_json_line(out, &line)
            }
            Detection::Bounce(b) => {
                let explained: Vec<Explanation> = b.recipients.iter().map(|r| classify::classify_in(kb, b, r)).collect();
                let recipients = explained
                    .iter()
                    .zip(&b.recipients)
                    .map(|(e, r)| ExplanationJson::recipient(e, r, &args.lang))
                    .collect();
                let line = MessageJson { bounce: true, file: name, format: Some(b.format), recipients, why: None };
                write_json_line(out, &line)
            }
        };
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

/// Files as given, directories expanded to their files (sorted, recursively).
fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            out.extend(directory(p));
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// A directory's files, sorted by name, those of its subdirectories in their place. The
/// entry's own type saves a `stat` per file (symbolic links are followed), and names
/// compare as bytes: a path comparison splits both paths into components each time.
fn directory(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut entries: Vec<(std::ffi::OsString, PathBuf, bool)> = rd
        .flatten()
        .map(|e| {
            let path = e.path();
            let is_dir = match e.file_type() {
                Ok(t) if t.is_symlink() => path.is_dir(),
                Ok(t) => t.is_dir(),
                Err(_) => path.is_dir(),
            };
            (e.file_name(), path, is_dir)
        })
        .collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::with_capacity(entries.len());
    for (_, path, is_dir) in entries {
        if is_dir {
            out.extend(directory(&path));
        } else {
            out.push(path);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Directories expand as sorting whole paths and recursing would: by name, each
    /// subdirectory's files (or a linked directory's) in its place.
    #[test]
    fn directories_expand_to_their_files_by_name() {
        let root = std::env::temp_dir().join(format!("plainbounce-expand-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for d in ["b", "a.d/z", "c"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in ["b/2", "b/10", "a.d/z/x", "a.d/y", "a", "A", "c/k"] {
            std::fs::write(root.join(f), "x").unwrap();
        }
        std::os::unix::fs::symlink(root.join("c"), root.join("l")).unwrap();
        let got = expand(&[root.clone(), root.join("a")]);
        let names: Vec<String> = got.iter().map(|p| p.strip_prefix(&root).unwrap().display().to_string()).collect();
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(names, ["A", "a", "a.d/y", "a.d/z/x", "b/10", "b/2", "c/k", "l/k", "a"]);
    }

    #[test]
    fn results_come_in_order_and_workers_stay_within_the_window() {
        let items: Vec<usize> = (0..500).collect();
        let emitted = AtomicUsize::new(0);
        let furthest_ahead = AtomicUsize::new(0);
        let mut out = Vec::new();
        in_order(
            &items,
            3,
            |&i| {
                // Uneven work, so results arrive out of order.
                std::thread::sleep(std::time::Duration::from_micros(((i * 7919) % 13) as u64 * 50));
                furthest_ahead.fetch_max(i.saturating_sub(emitted.load(Ordering::SeqCst)), Ordering::SeqCst);
                i * 2
            },
            |r| {
                out.push(r);
                emitted.fetch_add(1, Ordering::SeqCst);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        let ahead = furthest_ahead.load(Ordering::SeqCst);
        assert!(ahead > 0 && ahead <= 3 * 16, "a worker ran {ahead} items ahead");
    }

    #[test]
    fn a_write_error_stops_the_workers() {
        let items: Vec<usize> = (0..10_000).collect();
        let worked = AtomicUsize::new(0);
        let err = in_order(
            &items,
            2,
            |&i| {
                worked.fetch_add(1, Ordering::SeqCst);
                i
            },
            |i| if i == 5 { Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe)) } else { Ok(()) },
        )
        .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
        assert!(worked.load(Ordering::SeqCst) < 200, "workers went on: {}", worked.load(Ordering::SeqCst));
    }
}
