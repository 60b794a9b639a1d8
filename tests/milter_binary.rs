//! The real `plainbounce serve` process: sockets, log lines, SIGHUP reloads (good and
//! broken config), SIGTERM/SIGINT draining and exiting 0.

mod milter_support;

use indymilter_test::{Status, TestConnection};
use milter_support::{config_text, Bounce};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

struct Daemon {
    child: Child,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Daemon {
    fn spawn(args: &[&str]) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_plainbounce"))
            .arg("serve")
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start plainbounce serve");
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

    /// The next log line with this message (earlier ones are kept for failure output).
    fn wait_for(&mut self, message: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if v["message"] == message => return v,
                Ok(v) => self.seen.push(v),
                Err(_) => panic!("no log line {message:?}; got:\n{:#?}", self.seen),
            }
        }
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(ok.success(), "kill -{name}");
    }

    fn exit_status(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("plainbounce serve did not exit");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("plainbounce-bin-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_config(path: &Path, set: &[(&str, toml::Value)]) {
    std::fs::write(path, config_text(set)).unwrap();
}

/// A null-sender message that is no bounce: any engine leaves it alone.
fn plain_null_sender(queue_id: &str) -> Bounce<'_> {
    Bounce { subject: "hello", test: "none", body: b"just some text\r\n", queue_id, ..Bounce::default() }
}

/// One message through the daemon, and its log line.
async fn handled(daemon: &mut Daemon, conn: &mut TestConnection, queue_id: &str) {
    let (actions, status) = plain_null_sender(queue_id).send(conn).await.expect("kept at MAIL FROM");
    assert_eq!(status, Status::Continue);
    assert!(actions.actions.is_empty(), "{actions:?}");
    let line = daemon.wait_for("message handled");
    assert_eq!((line["queue_id"].as_str(), line["rcpt_domain"].as_str()), (Some(queue_id), Some("example.org")), "{line}");
    assert_eq!(line["action"], "unchanged", "{line}");
}

#[tokio::test]
async fn serves_reloads_on_sighup_and_drains_on_sigterm() {
    let dir = scratch_dir("signals");
    let config = dir.join("plainbounce.toml");
    write_config(&config, &[("log_level", "info".into())]);
    let config_arg = config.to_str().unwrap();
    let mut daemon = Daemon::spawn(&["--config", config_arg, "--socket", "inet:0@127.0.0.1", "--log-format", "json"]);
    let addr = daemon.wait_for("listening")["socket"].as_str().unwrap().to_string();

    let mut conn = TestConnection::open(&addr).await.unwrap();
    assert_eq!(conn.mail(["<someone@example.org>"]).await.unwrap(), Status::Accept);
    handled(&mut daemon, &mut conn, "Q1").await;

    // A good new config is taken: its debug level shows the abort of a message.
    write_config(&config, &[("log_level", "debug".into())]);
    daemon.signal("HUP");
    daemon.wait_for("configuration reloaded");
    plain_null_sender("Q2").send_head(&mut conn).await;
    conn.abort().await.unwrap();
    daemon.wait_for("message aborted by the MTA");

    // A broken one is refused, and the daemon goes on serving.
    std::fs::write(&config, "max_body = \"lots\"\n").unwrap();
    daemon.signal("HUP");
    let refused = daemon.wait_for("reload refused; the running configuration stays");
    assert!(refused["error"].as_str().unwrap().contains("invalid configuration"), "{refused}");
    handled(&mut daemon, &mut conn, "Q3").await;
    let mut second = TestConnection::open(&addr).await.unwrap();
    handled(&mut daemon, &mut second, "Q4").await;

    // SIGTERM in the middle of a message: it still completes, then the daemon exits 0.
    let busy = plain_null_sender("Q5");
    busy.send_head(&mut second).await;
    daemon.signal("TERM");
    daemon.wait_for("shutting down: no new connections, finishing messages in flight");
    let (actions, status) = busy.send_rest(&mut second).await;
    assert_eq!(status, Status::Continue);
    assert!(actions.actions.is_empty());
    daemon.wait_for("stopped");
    assert!(daemon.exit_status().success());
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err(), "still listening after exit");
}

#[tokio::test]
async fn unix_socket_from_the_config_with_its_mode() {
    let dir = scratch_dir("unix");
    let socket = dir.join("plainbounce.sock");
    let config = dir.join("plainbounce.toml");
    let spec = format!("unix:{}", socket.display());
    write_config(&config, &[("socket", spec.into()), ("socket_mode", "0600".into())]);
    let mut daemon = Daemon::spawn(&["--config", config.to_str().unwrap(), "--log-format", "json"]);
    daemon.wait_for("listening");
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o600);
    let mut conn = TestConnection::configure().open_unix(&socket).await.unwrap();
    // On a unix socket the stages that are always continued go unanswered.
    let quiet = plainbounce::milter::QUIET;
    assert!(conn.negotiated_opts().contains(quiet), "{:?}", conn.negotiated_opts());
    handled(&mut daemon, &mut conn, "U1").await;
    daemon.signal("INT");
    daemon.wait_for("stopped");
    assert!(daemon.exit_status().success());
    assert!(!socket.exists(), "socket file left behind");
}

/// A knowledge-base pattern too big to compile stops `serve` at start (it compiles every
/// pattern then), as `check-config` reports it, instead of being skipped at first use.
#[test]
fn a_pattern_too_big_to_compile_stops_the_start() {
    let dir = scratch_dir("huge-pattern");
    let kb = dir.join("local.toml");
    std::fs::write(&kb, "[[rule]]\nid = \"local-huge\"\ncause = \"user-unknown\"\npattern = '\\w{20000}'\npriority = 6\n").unwrap();
    let config = dir.join("plainbounce.toml");
    write_config(&config, &[("kb_files", vec![kb.to_str().unwrap()].into())]);
    for command in ["serve", "check-config"] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_plainbounce"));
        match command {
            "serve" => cmd.args(["serve", "--socket", "inet:0@127.0.0.1", "--config"]),
            _ => cmd.arg("check-config"),
        };
        let out = output_within(cmd.arg(&config), Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command} accepted it: {stderr}");
        assert!(stderr.contains(r"\\w{20000}") && stderr.contains("exceeded limit"), "{command}: {stderr}");
    }
}

/// The command's output; it is killed (and the test fails) if it runs longer than `limit`.
fn output_within(cmd: &mut Command, limit: Duration) -> std::process::Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("still running after {limit:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_broken_config_at_start_is_a_clear_error() {
    let dir = scratch_dir("broken");
    let config = dir.join("plainbounce.toml");
    write_config(&config, &[("socket_mode", "rw-rw----".into())]);
    let out = Command::new(env!("CARGO_BIN_EXE_plainbounce")).args(["serve", "--config", config.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("socket_mode \"rw-rw----\""), "{stderr}");
}
