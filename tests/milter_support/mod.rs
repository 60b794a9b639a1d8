//! Shared helpers for the milter tests: a scripted fake rewriter, an in-process milter on
//! 127.0.0.1:0, and an MTA-like client driving one message.
#![allow(dead_code)]

use anyhow::{bail, Result};
use indymilter_test::{EomActions, MacroStage, ProtoOpts, Status, TestConnection};
use plainbounce::config::Config;
use plainbounce::engine::{HeaderEdit, Modification, Outcome};
use plainbounce::milter::{Milter, Rewriter};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Every message a fake rewriter was given, across reloads.
pub type Seen = Arc<Mutex<Vec<Vec<u8>>>>;

/// Acts on the message's `X-Test` header: `panic`, `sleep` (1.5 s, then modify),
/// `pass`; anything else gets a modification that names the message's Subject, its
/// envelope recipient and the rewriter's tag (taken from `template_dir`, so reloads are
/// visible).
pub struct Scripted {
    pub tag: String,
    pub seen: Seen,
}

impl Rewriter for Scripted {
    fn process(&self, raw: &[u8], recipient: Option<&str>) -> Outcome {
        self.seen.lock().unwrap().push(raw.to_vec());
        let text = String::from_utf8_lossy(raw);
        match header(&text, "X-Test").as_deref() {
            Some("panic") => panic!("scripted panic"),
            Some("sleep") => std::thread::sleep(Duration::from_millis(1500)),
            Some("pass") => return Outcome::Pass("scripted pass".into()),
            _ => {}
        }
        let subject = header(&text, "Subject").unwrap_or_default();
        Outcome::Modify(Modification {
            header_edits: vec![
                HeaderEdit::Set { name: "Subject".into(), value: format!("Explained: {subject}") },
                HeaderEdit::Set { name: "X-Plainbounce".into(), value: format!("rewritten; tag={}", self.tag) },
                HeaderEdit::Add { name: "X-Note".into(), value: "one\r\nBcc: injected@example.org".into() },
                HeaderEdit::Remove { name: "X-Remove-Me".into() },
                HeaderEdit::Add { name: "X-Envelope-Recipient".into(), value: recipient.unwrap_or("none").into() },
            ],
            body: Some(expected_body(&subject, &self.tag).into_bytes()),
            summary: format!("scripted rewrite of {subject:?}"),
        })
    }
}

/// The body `Scripted` writes for a message.
pub fn expected_body(subject: &str, tag: &str) -> String {
    format!("NEW BODY for {subject} by {tag}\r\n")
}

fn header(text: &str, name: &str) -> Option<String> {
    let head = text.split("\r\n\r\n").next()?;
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// Builds a `Scripted` from a config; `template_dir = "broken"` fails like a bad engine.
pub fn scripted(seen: Seen) -> impl Fn(Config) -> Result<Scripted> + Send + Sync + 'static {
    move |config: Config| {
        let tag = config.template_dir.as_ref().map_or("default".into(), |p| p.display().to_string());
        if tag == "broken" {
            bail!("scripted build failure");
        }
        Ok(Scripted { tag, seen: seen.clone() })
    }
}

pub fn config(tag: &str) -> Config {
    let mut c = Config::embedded();
    c.template_dir = Some(tag.into());
    c
}

/// A milter running in this process.
pub struct Running<R> {
    pub addr: SocketAddr,
    pub milter: Arc<Milter<R>>,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl<R: Rewriter> Running<R> {
    /// Start graceful shutdown (as SIGTERM does).
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn connect(&self) -> TestConnection {
        TestConnection::open(self.addr).await.expect("connect to the milter")
    }
}

pub async fn start<R: Rewriter>(milter: Milter<R>, max_connections: usize) -> Running<R> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let milter = Arc::new(milter);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(milter.clone().run(listener, max_connections, async move {
        let _ = stopped.await;
    }));
    Running { addr, milter, stop: Some(stop), task }
}

pub async fn start_scripted(config: Config) -> (Running<Scripted>, Seen) {
    let seen = Seen::default();
    let milter = Milter::new(config, scripted(seen.clone())).unwrap();
    (start(milter, 100).await, seen)
}

/// A bounce as an MTA hands it over.
pub struct Bounce<'a> {
    pub sender: &'a str,
    pub subject: &'a str,
    pub test: &'a str,
    pub body: &'a [u8],
    pub queue_id: &'a str,
}

impl Default for Bounce<'_> {
    fn default() -> Self {
        Bounce { sender: "<>", subject: "Undelivered Mail", test: "modify", body: b"The mail system\r\n", queue_id: "4XyZ1" }
    }
}

impl Bounce<'_> {
    /// MAIL FROM up to the last header; stops early if the milter lets go at MAIL.
    pub async fn send_head(&self, conn: &mut TestConnection) -> Status {
        let status = conn.mail([self.sender, "SIZE=1234"]).await.unwrap();
        if status != Status::Continue {
            return status;
        }
        for rcpt in ["<Alice@Example.ORG>", "<second@example.net>"] {
            assert_eq!(conn.rcpt([rcpt, "NOTIFY=NEVER"]).await.unwrap(), answer(conn, ProtoOpts::NOREPLY_RCPT));
        }
        // As Postfix does: DATA, which the milter answers (on TCP).
        assert_eq!(conn.data().await.unwrap(), answer(conn, ProtoOpts::NOREPLY_DATA));
        for (name, value) in [
            ("From", "Mail Delivery System <MAILER-DAEMON@mx.example.net>"),
            ("Subject", self.subject),
            ("X-Remove-Me", "1"),
            ("X-Test", self.test),
            ("x-remove-me", "2"),
        ] {
            assert_eq!(conn.header(name, value).await.unwrap(), answer(conn, ProtoOpts::NOREPLY_HEADER));
        }
        Status::Continue
    }

    /// Body and end of message.
    pub async fn send_rest(&self, conn: &mut TestConnection) -> (EomActions, Status) {
        let status = conn.body(self.body.to_vec()).await.unwrap();
        assert_eq!(status, Status::Continue);
        conn.macros(MacroStage::Eom, [("i", self.queue_id)]).await.unwrap();
        conn.eom().await.unwrap()
    }

    /// The whole message; `None` if the milter let it go at MAIL FROM.
    pub async fn send(&self, conn: &mut TestConnection) -> Option<(EomActions, Status)> {
        match self.send_head(conn).await {
            Status::Continue => Some(self.send_rest(conn).await),
            Status::Accept => None,
            other => panic!("unexpected status at MAIL FROM: {other:?}"),
        }
    }
}

/// What a stage the milter always continues on gets: no reply where that was negotiated
/// (on unix sockets), "continue" elsewhere.
pub fn answer(conn: &TestConnection, no_reply: ProtoOpts) -> Status {
    if conn.negotiated_opts().contains(no_reply) {
        Status::Noreply
    } else {
        Status::Continue
    }
}

/// The modifications `Scripted` asks for, as the MTA must see them.
pub fn assert_rewritten(actions: &EomActions, subject: &str, tag: &str) {
    assert!(actions.has_change_header("Subject", 1, format!("Explained: {subject}").as_str()), "{actions:?}");
    assert!(actions.has_insert_header(0, "X-Plainbounce", format!("rewritten; tag={tag}").as_str()), "{actions:?}");
    // CR LF in a value never reaches the MTA.
    assert!(actions.has_insert_header(1, "X-Note", "one  Bcc: injected@example.org"), "{actions:?}");
    assert!(actions.has_delete_header("X-Remove-Me", 2) && actions.has_delete_header("X-Remove-Me", 1), "{actions:?}");
    assert!(actions.has_replaced_body(expected_body(subject, tag).as_str()), "{actions:?}");
    // The first RCPT TO, as the MTA gave it (angle brackets off); new fields go on top, in order.
    assert!(actions.has_insert_header(2, "X-Envelope-Recipient", "Alice@Example.ORG"), "{actions:?}");
    assert_eq!(actions.actions.len(), 7, "{actions:?}");
}

/// The embedded default configuration with some top-level keys set (as a file's text).
pub fn config_text(set: &[(&str, toml::Value)]) -> String {
    let mut table: toml::Table = plainbounce::config::EMBEDDED.parse().unwrap();
    for (key, value) in set {
        table.insert(key.to_string(), value.clone());
    }
    toml::to_string(&table).unwrap()
}

/// Wait (up to 10 s) for a condition that follows from a command without a reply.
pub async fn eventually(cond: impl Fn() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached");
}
