//! The `rewrite`, `check-config` and `preview` commands as an MTA or an admin runs them.

mod rewrite_support;

use rewrite_support::*;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn plainbounce(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plainbounce"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write_config(tag: &str, extra: &str) -> String {
    let dir = temp_dir(tag, &[("plainbounce.toml", &format!("socket = \"inet:8890@127.0.0.1\"\nmax_body = 10485760\ntimeout_ms = 2000\nlog_level = \"info\"\n{extra}"))]);
    dir.join("plainbounce.toml").display().to_string()
}

#[test]
fn rewrite_passes_non_bounces_byte_for_byte() {
    let mut inputs: Vec<Vec<u8>> = ["plain-message.eml", "autoreply.eml", "arf-feedback.eml", "success-dsn.eml"].iter().map(|n| fixture(n)).collect();
    inputs.push(crlf(&fixture("plain-message.eml")));
    inputs.push(Vec::new());
    inputs.push(b"no header, no newline".to_vec());
    inputs.push((0..=255u8).cycle().take(5000).collect());
    for input in &inputs {
        let o = plainbounce(&["rewrite"], input);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(o.stdout, *input, "{}", stderr(&o));
        assert!(stderr(&o).contains("passed unchanged"), "{}", stderr(&o));
    }
}

#[test]
fn rewrite_fails_open_on_a_bad_configuration() {
    let bounce = fixture("postfix-userunknown.eml");
    let broken_templates = temp_dir("cli-broken", &[("bounce.html.hbs", "{{#if}}")]);
    for (config, why) in [
        ("/nonexistent/plainbounce.toml".to_string(), "cannot read config"),
        (write_config("cli-unknown", "colour = \"blue\"\n"), "colour"),
        (write_config("cli-templates", &format!("template_dir = {broken_templates:?}\n")), "bounce.html.hbs"),
    ] {
        let o = plainbounce(&["rewrite", "--config", &config], &bounce);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(o.stdout, bounce);
        assert!(stderr(&o).contains(why), "{why}: {}", stderr(&o));
    }
    // Larger than max_body: passed on as it is.
    let small = write_config("cli-small", "").replace("plainbounce.toml", "small.toml");
    std::fs::write(&small, "socket = \"inet:8890@127.0.0.1\"\nmax_body = 100\ntimeout_ms = 2000\nlog_level = \"info\"\n").unwrap();
    let o = plainbounce(&["rewrite", "--config", &small], &bounce);
    assert_eq!(o.stdout, bounce);
    assert!(stderr(&o).contains("max_body"), "{}", stderr(&o));
}

#[test]
fn check_config_accepts_good_files_and_explains_bad_ones() {
    let o = plainbounce(&["check-config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/plainbounce.toml")], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("OK"));
    let o = plainbounce(&["check-config"], b"");
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("built-in configuration: OK"));

    let missing_template = temp_dir("cli-missing", &[]);
    for (extra, expect) in [
        ("colour = \"blue\"\n", "unknown field `colour`"),
        ("skip_patterns = ['(']\n", "skip_patterns: invalid regular expression"),
        ("[default]\nlanguage = \"Deutsch!\"\n", "is not a language tag"),
        ("[default]\nlanguage = \"nl\"\n", "language \"nl\" has no strings"),
        ("[default]\nmode = \"loud\"\n", "unknown variant `loud`"),
        (&format!("[domains.\"example.org\"]\ntemplate = \"custom\"\ntemplate_dir = {missing_template:?}\n"), "template \"custom\" not found"),
        ("kb_files = [\"/nonexistent/kb.toml\"]\n", "cannot read knowledge base /nonexistent/kb.toml"),
    ] {
        let path = write_config("cli-check", extra);
        let o = plainbounce(&["check-config", &path], b"");
        assert_eq!(o.status.code(), Some(1), "{extra}: {}", stderr(&o));
        assert!(stderr(&o).contains(expect), "{extra}: want {expect:?} in {}", stderr(&o));
        assert!(stderr(&o).starts_with(&path), "names the file");
    }
}

#[test]
fn preview_explains_why_it_did_not_rewrite() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/plain-message.eml");
    let o = plainbounce(&["preview", "--file", file], b"");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("left unchanged: not a bounce"), "{}", stderr(&o));
    let o = plainbounce(&["preview", "--file", file, "--lang", "xx"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("language \"xx\" is not available"), "{}", stderr(&o));
    let o = plainbounce(&["preview", "--file", "/nonexistent.eml"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read /nonexistent.eml"), "{}", stderr(&o));
}
