//! `plainbounce explain --file` as a postmaster runs it: one JSON line per file in the
//! files' order, whatever the number of jobs; unreadable files get an error line and exit
//! status 1 while the others are still explained.

use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_plainbounce");

/// $PLAINBOUNCE_CORPUS, else ../shared/corpus next to the crate, else /work/shared/corpus.
fn emails() -> PathBuf {
    [std::env::var_os("PLAINBOUNCE_CORPUS").map(PathBuf::from), Some(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus"))), Some(PathBuf::from("/work/shared/corpus"))]
        .into_iter()
        .flatten()
        .map(|p| p.join("emails"))
        .find(|p| p.is_dir())
        .expect("bounce corpus not found: set PLAINBOUNCE_CORPUS")
}

fn explain(args: &[&str]) -> Output {
    Command::new(BIN).arg("explain").args(args).output().expect("run plainbounce")
}

fn files_named(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line")["file"].as_str().expect("file").to_string())
        .collect()
}

#[test]
fn parallel_output_equals_serial_output_in_file_order() {
    let dir = emails();
    let dir = dir.to_str().unwrap();
    let serial = explain(&["--json", "--jobs", "1", "--file", dir]);
    let parallel = explain(&["--json", "--jobs", "3", "--file", dir]);
    assert!(serial.status.success() && parallel.status.success());
    assert_eq!(serial.stdout, parallel.stdout, "--jobs 3 printed something else than --jobs 1");
    let named = files_named(&serial.stdout);
    let mut sorted = named.clone();
    sorted.sort();
    assert_eq!(named, sorted, "files out of order");
    assert!(named.len() > 200, "only {} files explained", named.len());
    let bounces = String::from_utf8_lossy(&serial.stdout).lines().filter(|l| l.contains(r#""bounce":true"#)).count();
    assert!(bounces * 10 > named.len() * 9, "{bounces} of {} files read as bounces", named.len());
}

#[test]
fn unreadable_files_get_an_error_line_and_exit_status_1() {
    let dir = emails();
    let good = dir.join("lhost-postfix-01.eml");
    let missing = dir.join("no-such-file.eml");
    let out = explain(&["--json", "--jobs", "2", "--file", missing.to_str().unwrap(), good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].contains(r#""error""#) && lines[0].contains("no-such-file.eml"), "{}", lines[0]);
    assert!(lines[1].contains(r#""bounce":true"#), "{}", lines[1]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-file.eml"));
}
