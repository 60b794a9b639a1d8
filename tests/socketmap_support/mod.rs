//! Shared by the socketmap tests: the test knowledge base, Postfix's footer expansion,
//! and finding postmap(1).
#![allow(dead_code)]

use plainbounce::config::FooterStyle;
use plainbounce::footer::Footers;
use plainbounce::kb::KnowledgeBase;
use std::path::PathBuf;
use std::process::Command;

pub const RELAY_DENIED: &str = "554 5.7.1 <bob@example.net>: Relay access denied";

/// The built-in knowledge base plus tests/socketmap_kb.toml.
pub fn test_kb() -> KnowledgeBase {
    let extra = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/socketmap_kb.toml");
    KnowledgeBase::with_files(&[extra]).expect("test knowledge base loads")
}

pub fn test_footers(style: FooterStyle) -> Footers {
    Footers::new(test_kb(), "en", style)
}

/// The lines Postfix sends for `reply` with footer `template`, following
/// smtp_reply_footer() of Postfix 3.7: `\c` at the start continues the last line, each
/// `\n` starts a line with the last line's reply code and enhanced status code, `$$`
/// becomes `$`. A bare `$` (a macro Postfix would expand) fails the test.
pub fn postfix_expand(reply: &str, template: &str) -> Vec<String> {
    assert!(!template.contains(['\r', '\n']), "raw line break in footer: {template:?}");
    let mut lines: Vec<String> = reply.split("\r\n").map(str::to_string).collect();
    let last = lines.last().unwrap().clone();
    let code = &last[..3];
    let dsn: String = last[4..].split(' ').next().filter(|d| d.starts_with(['2', '4', '5']) && d.matches('.').count() == 2).unwrap_or("").to_string();
    let (mut rest, mut continues) = (template, false);
    if let Some(r) = template.strip_prefix("\\c") {
        rest = r;
        continues = true;
    }
    let pieces: Vec<&str> = rest.split("\\n").collect();
    for (i, piece) in pieces.iter().enumerate() {
        let text = unescape_dollars(piece);
        if i == 0 && continues {
            lines.last_mut().unwrap().push_str(&text);
        } else {
            let sep = if i + 1 < pieces.len() { '-' } else { ' ' };
            let dsn = if dsn.is_empty() { String::new() } else { format!("{dsn} ") };
            lines.push(format!("{code}{sep}{dsn}{text}"));
        }
    }
    // Every line but the last gets "code-".
    let n = lines.len();
    for l in lines.iter_mut().take(n - 1) {
        l.replace_range(3..4, "-");
    }
    lines
}

fn unescape_dollars(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' {
            assert_eq!(chars.next(), Some('$'), "bare $ in footer {s:?}: Postfix would expand a macro");
        }
        out.push(c);
    }
    out
}

/// A line Postfix may send: at most 510 octets plus CRLF, printable ASCII.
pub fn assert_smtp_line(line: &str) {
    assert!(line.len() <= 510, "line of {} octets: {line}", line.len());
    assert!(line.bytes().all(|b| (0x20..0x7f).contains(&b)), "not printable ASCII: {line:?}");
}

/// postmap(1), when available: `$PLAINBOUNCE_POSTMAP` (a command used as it is), else
/// `postmap` on PATH or in /usr/sbin, run with a private empty main.cf (`-c`), so that
/// neither a system configuration nor a running Postfix is needed.
pub struct Postmap {
    command: PathBuf,
    config_dir: Option<PathBuf>,
}

pub fn postmap() -> Option<Postmap> {
    if let Some(p) = std::env::var_os("PLAINBOUNCE_POSTMAP") {
        return Some(Postmap { command: PathBuf::from(p), config_dir: None });
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let command = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join("postmap"))
        .find(|p| p.is_file())?;
    let dir = std::env::temp_dir().join(format!("plainbounce-postmap-conf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::write(dir.join("main.cf"), "").ok()?;
    Some(Postmap { command, config_dir: Some(dir) })
}

/// `postmap -q KEY TABLE`: Some(result) when found, None when not found; Err when
/// postmap itself failed (e.g. the table type is not installed).
pub fn postmap_query(postmap: &Postmap, key: &str, table: &str) -> Result<Option<String>, String> {
    let mut cmd = Command::new(&postmap.command);
    if let Some(dir) = &postmap.config_dir {
        cmd.arg("-c").arg(dir);
    }
    let out = cmd.args(["-q", key, table]).output().map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    match out.status.code() {
        Some(0) => Ok(Some(String::from_utf8_lossy(&out.stdout).trim_end_matches('\n').to_string())),
        Some(1) if !stderr.contains("fatal") && !stderr.contains("error") => Ok(None),
        _ => Err(format!("postmap failed ({:?}): {stderr}", out.status)),
    }
}

/// `postmap -q - TABLE` with `keys` on stdin: the keys found, with their results.
pub fn postmap_query_many(postmap: &Postmap, keys: &[String], table: &str) -> Result<std::collections::HashMap<String, String>, String> {
    use std::io::Write;
    use std::process::Stdio;
    let mut cmd = Command::new(&postmap.command);
    if let Some(dir) = &postmap.config_dir {
        cmd.arg("-c").arg(dir);
    }
    let mut child = cmd
        .args(["-q", "-", table])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let input = keys.join("\n") + "\n";
    child.stdin.take().unwrap().write_all(input.as_bytes()).map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("fatal") || stderr.contains("warning") {
        return Err(format!("postmap: {stderr}"));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}
