//! What the milter costs per message, driven through the milter protocol on loopback.
//!
//!     cargo run --release --example milter_bench [CONNECTIONS] [MESSAGES_PER_CONNECTION]
//!
//! Over a unix socket, and over TCP on 127.0.0.1. The test client (indymilter-test) does
//! not set TCP_NODELAY, so over TCP a large body chunk from the client can stall on
//! Nagle + delayed ACK (about 40 ms); the unix socket shows the milter's own cost.
//!
//! Three cases: ordinary mail let go at MAIL FROM (what every non-bounce costs), the same
//! mail if the milter took the whole message instead (what that early exit saves), and a
//! bounce rewritten by a stand-in rewriter (milter overhead only, not the engine's).
//! Client and milter share this process and its cores; compare the cases, not machines.

use indymilter_test::{MacroStage, Status, TestConnection};
use plainbounce::config::Config;
use plainbounce::engine::{HeaderEdit, Modification, Outcome};
use plainbounce::milter::{Milter, Rewriter};
use std::sync::Arc;
use std::time::{Duration, Instant};
use indymilter::EitherListener;
use tokio::net::{TcpListener, UnixListener};

/// Stands in for the engine: passes, or returns a fixed rewrite.
struct StandIn {
    modify: bool,
}

impl Rewriter for StandIn {
    fn process(&self, raw: &[u8], _recipient: Option<&str>) -> Outcome {
        if !self.modify {
            return Outcome::Pass("stand-in".into());
        }
        Outcome::Modify(Modification {
            header_edits: vec![
                HeaderEdit::Set { name: "X-Plainbounce".into(), value: "rewritten; reason=bench".into() },
                HeaderEdit::Set { name: "Content-Type".into(), value: "multipart/report; boundary=x".into() },
            ],
            body: Some(raw[raw.len() / 2..].to_vec()),
            summary: "bench".into(),
        })
    }
}

#[derive(Clone, Copy)]
enum Case {
    LetGoAtMailFrom,
    WholeMessage,
    BounceRewritten,
}

async fn one_message(conn: &mut TestConnection, case: Case, body: &[u8]) {
    let sender = match case {
        Case::BounceRewritten => "<>",
        _ => "<someone@example.org>",
    };
    let status = conn.mail([sender, "SIZE=24000"]).await.unwrap();
    if let Case::LetGoAtMailFrom = case {
        assert_eq!(status, Status::Accept);
        return;
    }
    conn.rcpt(["<rcpt@example.net>"]).await.unwrap();
    for i in 0..15 {
        conn.header(format!("X-Header-{i}"), "a typical header value of some length").await.unwrap();
    }
    conn.body(body.to_vec()).await.unwrap();
    conn.macros(MacroStage::Eom, [("i", "BENCH")]).await.unwrap();
    let (actions, _) = conn.eom().await.unwrap();
    assert_eq!(actions.actions.is_empty(), !matches!(case, Case::BounceRewritten));
}

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Unix,
    Tcp,
}

async fn open(transport: Transport, tcp: std::net::SocketAddr, unix: &std::path::Path) -> TestConnection {
    match transport {
        Transport::Tcp => TestConnection::open(tcp).await.unwrap(),
        Transport::Unix => TestConnection::configure().open_unix(unix).await.unwrap(),
    }
}

async fn run(case: Case, transport: Transport, connections: usize, per_connection: usize) -> Duration {
    let mut config = Config::embedded();
    config.only_null_sender = !matches!(case, Case::WholeMessage);
    config.max_connections = connections + 10;
    let modify = matches!(case, Case::BounceRewritten);
    let milter = Arc::new(Milter::new(config, move |_| Ok(StandIn { modify })).unwrap());
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let path: Arc<std::path::Path> = std::env::temp_dir().join(format!("milter-bench-{}.sock", std::process::id())).into();
    let _ = std::fs::remove_file(&path);
    let listener = match transport {
        Transport::Tcp => EitherListener::Tcp(tcp),
        Transport::Unix => EitherListener::Unix(UnixListener::bind(&path).unwrap()),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(milter.run(listener, connections + 10, async move {
        let _ = stopped.await;
    }));
    let body: Arc<[u8]> = "a line of body text, as a bounce or a newsletter would have it\r\n".repeat(320).into_bytes().into();

    let started = Instant::now();
    let clients: Vec<_> = (0..connections)
        .map(|_| {
            let (body, path) = (body.clone(), path.clone());
            tokio::spawn(async move {
                let mut conn = open(transport, addr, &path).await;
                for _ in 0..per_connection {
                    one_message(&mut conn, case, &body).await;
                }
                conn.close().await.unwrap();
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let elapsed = started.elapsed();
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    let _ = std::fs::remove_file(&path);
    elapsed
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("a number"));
    let connections = args.next().unwrap_or(20);
    let per_connection = args.next().unwrap_or(500);
    let total = connections * per_connection;
    println!("{connections} connections x {per_connection} messages (body ~20 KB, 15 headers)");
    for (transport, tname) in [(Transport::Unix, "unix"), (Transport::Tcp, "tcp")] {
        for (name, case) in [
            ("ordinary mail, let go at MAIL FROM", Case::LetGoAtMailFrom),
            ("ordinary mail, whole message taken", Case::WholeMessage),
            ("bounce, rewritten (stand-in rewriter)", Case::BounceRewritten),
        ] {
            let t = run(case, transport, connections, per_connection).await;
            let rate = total as f64 / t.as_secs_f64();
            let per = t.as_secs_f64() * 1e6 * connections as f64 / total as f64;
            println!("{tname:<5} {name:<40} {rate:>9.0} msg/s {per:>10.1} µs/message on a connection");
        }
    }
}
