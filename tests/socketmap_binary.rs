//! The real `plainbounce serve-socketmap` process: listening, answering, SIGHUP reloads
//! (good and broken config), SIGTERM exiting 0; and the socketmap beside the milter in
//! `plainbounce serve --socketmap`.

use plainbounce::socketmap::{decode, encode};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
const KEY: &str = "452 4.2.2 <kim@example.org>: Recipient address rejected: mailbox full";

struct Daemon {
    child: Child,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Daemon {
    fn spawn(config: &Path) -> Daemon {
        Self::spawn_with(&["serve-socketmap"], config)
    }

    fn spawn_with(command: &[&str], config: &Path) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_plainbounce"))
            .args(command)
            .args(["--log-format", "json", "--config"])
            .arg(config)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start plainbounce serve-socketmap");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Daemon { child, lines, seen: Vec::new() }
    }

    fn wait_for(&mut self, message: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(v) if v["message"] == message => return v,
                Ok(v) => self.seen.push(v),
                Err(_) => panic!("no log line {message:?}; got:\n{:#?}", self.seen),
            }
        }
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(ok.success());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(path: &Path, footer: &str) {
    let base = plainbounce::config::EMBEDDED.split("\n[footer]").next().unwrap();
    let kb = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/socketmap_kb.toml");
    let text = format!("socketmap = \"inet:0@127.0.0.1\"\nkb_files = [{kb:?}]\n{base}\n[footer]\n{footer}\n");
    std::fs::write(path, text).unwrap();
}

fn lookup(addr: &str, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(&encode(request.as_bytes())).unwrap();
    let mut buf = Vec::new();
    loop {
        if let Some(p) = decode(&mut buf, 1 << 20).unwrap() {
            return String::from_utf8(p).unwrap();
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed without a reply");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn serves_reloads_and_stops() {
    let dir: PathBuf = std::env::temp_dir().join(format!("plainbounce-smbin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("plainbounce.toml");
    write_config(&config, "lang = \"en\"");
    let mut d = Daemon::spawn(&config);
    let started = d.wait_for("socketmap: serving map \"footer\"");
    let addr = started["listener"].as_str().expect("listener address").to_string();

    let en = lookup(&addr, &format!("footer {KEY}"));
    assert!(en.starts_with("OK \\c. The recipient's mailbox is full."), "{en}");

    write_config(&config, "lang = \"de\"");
    d.signal("HUP");
    d.wait_for("socketmap: configuration reloaded");
    let de = lookup(&addr, &format!("footer {KEY}"));
    assert!(de.starts_with("OK \\c. Das Postfach des Empfaengers ist voll."), "{de}");

    std::fs::write(&config, "this is not toml [").unwrap();
    d.signal("HUP");
    d.wait_for("socketmap: reload refused; the running configuration stays");
    assert_eq!(lookup(&addr, &format!("footer {KEY}")), de);

    d.signal("TERM");
    d.wait_for("socketmap: stopped");
    let status = d.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn serve_runs_the_socketmap_beside_the_milter() {
    let dir: PathBuf = std::env::temp_dir().join(format!("plainbounce-smserve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("plainbounce.toml");
    write_config(&config, "lang = \"en\"");
    let mut d = Daemon::spawn_with(&["serve", "--socket", "inet:0@127.0.0.1", "--socketmap", "inet:0@127.0.0.1"], &config);
    let started = d.wait_for("socketmap: serving map \"footer\"");
    let addr = started["listener"].as_str().expect("listener address").to_string();
    let en = lookup(&addr, &format!("footer {KEY}"));
    assert!(en.starts_with("OK \\c. The recipient's mailbox is full."), "{en}");

    // A reload reaches the socketmap too.
    write_config(&config, "lang = \"de\"");
    d.signal("HUP");
    d.wait_for("configuration reloaded");
    let de = lookup(&addr, &format!("footer {KEY}"));
    assert!(de.starts_with("OK \\c. Das Postfach des Empfaengers ist voll."), "{de}");

    d.signal("TERM");
    d.wait_for("socketmap: stopped");
    let status = d.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
