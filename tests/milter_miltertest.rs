//! `plainbounce serve` driven by miltertest (OpenDKIM's milter client, Debian package
//! `miltertest`): a second MTA-side implementation besides indymilter-test. The checks
//! are in tests/miltertest/serve.lua.
//!
//!     apt-get install miltertest
//!     cargo test --test milter_miltertest -- --ignored   (.ci/run does both)

mod milter_support;

use milter_support::config_text;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
#[ignore = "needs the miltertest program (apt-get install miltertest)"]
fn miltertest_script_passes() {
    let dir = std::env::temp_dir().join(format!("plainbounce-miltertest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("plainbounce.toml");
    std::fs::write(&config, config_text(&[("max_body", 2000.into()), ("log_level", "debug".into())])).unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_plainbounce"))
        .args(["serve", "--socket", "inet:0@127.0.0.1", "--log-format", "json", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // At debug level other lines come first: the port is on the first line naming a socket.
    let mut log = BufReader::new(daemon.stderr.take().unwrap()).lines();
    let socket = log
        .by_ref()
        .map(|line| serde_json::from_str::<serde_json::Value>(&line.unwrap()).unwrap())
        .find_map(|entry| entry["socket"].as_str().map(str::to_string))
        .expect("the daemon logs the socket it listens on");
    let port = socket.rsplit(':').next().unwrap().to_string();
    // Keep reading the log, so the daemon never blocks on a full pipe.
    std::thread::spawn(move || log.for_each(drop));

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/miltertest/serve.lua");
    let out = Command::new("miltertest")
        .args(["-v", "-D", &format!("socket=inet:{port}@127.0.0.1"), "-s", script])
        .output()
        .expect("run miltertest (apt-get install miltertest)");
    let _ = daemon.kill();
    let _ = daemon.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "miltertest failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("miltertest: all checks passed"), "{stdout}");
}
