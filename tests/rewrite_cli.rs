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

/// A configuration file; the time budget is generous because debug builds on a busy
/// test machine are slow (the timeout has its own test).
fn write_config(tag: &str, extra: &str) -> String {
    let dir = temp_dir(tag, &[("plainbounce.toml", &format!("socket = \"inet:8890@127.0.0.1\"\nmax_body = 10485760\ntimeout_ms = 60000\nlog_level = \"info\"\n{extra}"))]);
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

/// Most mail through a transport filter is not a bounce: that is told before the engine
/// (knowledge base, templates) is built, so a template error does not even come up for it.
#[test]
fn rewrite_tells_non_bounces_before_building_the_engine() {
    let broken_templates = temp_dir("cli-broken-early", &[("bounce.html.hbs", "{{#if}}")]);
    let config = write_config("cli-early", &format!("template_dir = {broken_templates:?}\n"));
    let plain = fixture("plain-message.eml");
    let o = plainbounce(&["rewrite", "--config", &config], &plain);
    assert_eq!(o.stdout, plain);
    assert!(stderr(&o).contains("passed unchanged: not a bounce") && !stderr(&o).contains("bounce.html.hbs"), "{}", stderr(&o));
    let bounce = fixture("postfix-userunknown.eml");
    let o = plainbounce(&["rewrite", "--config", &config], &bounce);
    assert_eq!(o.stdout, bounce);
    assert!(stderr(&o).contains("bounce.html.hbs"), "{}", stderr(&o));
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

#[test]
fn rewrite_rewrites_bounces_once() {
    let config = write_config("cli-bounces", "");
    for name in BOUNCES {
        let raw = fixture(name);
        let o = plainbounce(&["rewrite", "--config", &config], &raw);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains("rewritten"), "{name}: {}", stderr(&o));
        assert_eq!(header(&o.stdout, "X-Plainbounce").len(), 1, "{name}");
        let (before, after) = (top_parts(&raw), top_parts(&o.stdout));
        assert!(after.ends_with(&before[1.min(before.len())..]), "{name}: the original's later parts are kept");
        // Through the filter a second time: nothing changes. (Once: each run of the
        // debug binary spends seconds compiling the knowledge base.)
        if *name == "multi-recipient.crlf.eml" {
            let again = plainbounce(&["rewrite", "--config", &config], &o.stdout);
            assert_eq!(again.stdout, o.stdout, "{name}");
            assert!(stderr(&again).contains("already handled"), "{}", stderr(&again));
        }
    }
}

#[test]
fn rewrite_passes_the_original_on_timeout() {
    let config = write_config("cli-timeout", "").replace("plainbounce.toml", "timeout.toml");
    std::fs::write(&config, "socket = \"inet:8890@127.0.0.1\"\nmax_body = 10485760\ntimeout_ms = 0\nlog_level = \"info\"\n").unwrap();
    let raw = fixture("multi-recipient.crlf.eml");
    let o = plainbounce(&["rewrite", "--config", &config], &raw);
    assert!(o.status.success());
    assert_eq!(o.stdout, raw);
    assert!(stderr(&o).contains("took longer than timeout_ms"), "{}", stderr(&o));
}

#[test]
fn preview_writes_the_message_and_its_html() {
    let dir = temp_dir("cli-preview", &[]);
    let html_path = dir.join("out.html");
    let config = write_config("cli-preview-config", "[domains.\"example.com\"]\norganisation = \"Example Corp\"\nlanguage = \"es\"\n");
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/postfix-userunknown.eml");
    let html_arg = html_path.display().to_string();
    let o = plainbounce(&["preview", "--file", file, "--html", &html_arg, "--config", &config, "--domain", "example.com"], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let (text, html) = notification(&o.stdout);
    assert!(text.contains("Su mensaje a bob@example.net no se pudo entregar") && text.contains("Example Corp"), "{text}");
    assert_eq!(std::fs::read_to_string(&html_path).unwrap(), html);
    let o = plainbounce(&["preview", "--file", file, "--lang", "de"], b"");
    assert!(notification(&o.stdout).0.contains("Ihre Nachricht an bob@example.net"));
}
