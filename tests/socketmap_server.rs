//! The socketmap server over real sockets on 127.0.0.1 (and a Unix socket).

mod socketmap_support;

use plainbounce::classify;
use plainbounce::config::FooterStyle;
use plainbounce::footer::Footers;
use plainbounce::socketmap::{decode, encode, serve_socketmap, ServerOptions, SocketmapListener};
use socketmap_support::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Server {
    addr: SocketAddr,
    footers: Arc<Footers>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(options: ServerOptions) -> Server {
        let footers = Arc::new(test_footers(FooterStyle::Short));
        let listener = SocketmapListener::bind("inet:0@127.0.0.1", 0o600).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let f = footers.clone();
        let task = tokio::spawn(serve_socketmap(listener, options, move || f.clone(), async {
            let _ = stopped.await;
        }));
        Server { addr, footers, stop: Some(stop), task }
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.task).await.expect("server stops").unwrap().unwrap();
    }

    async fn connect(&self) -> Client {
        Client { stream: TcpStream::connect(self.addr).await.unwrap(), buf: Vec::new() }
    }
}

/// Generous limits, so that a loaded test machine does not trip them.
fn quick() -> ServerOptions {
    ServerOptions { request_timeout: Duration::from_secs(5), idle_timeout: Duration::from_secs(10), ..Default::default() }
}

struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next reply, or None when the server closed the connection.
    async fn reply(&mut self) -> Option<String> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(p) = decode(&mut self.buf, 1 << 20).expect("server sends valid netstrings") {
                return Some(String::from_utf8(p).expect("reply is text"));
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk)).await.expect("reply in time").ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn lookup(&mut self, request: &str) -> String {
        self.send_raw(&encode(request.as_bytes())).await;
        self.reply().await.expect("a reply")
    }
}

/// What the server must answer for `footer KEY`, from the knowledge base itself.
fn expected_ok(footers: &Footers, key: &str, lang: &str) -> String {
    let fully = footers.footer_for_reply(key, lang).expect("a footer for this key");
    format!("OK {fully}")
}

#[tokio::test]
async fn relay_denied_gets_the_relay_footer() {
    let server = Server::start(quick()).await;
    let mut c = server.connect().await;
    let reply = c.lookup(&format!("footer {RELAY_DENIED}")).await;
    assert_eq!(reply, expected_ok(&server.footers, RELAY_DENIED, "en"));
    // What the client will see: the reply, then the relay cause's headline and remedy.
    // Explained as the footers explain it: Postfix's own reply to the sending client.
    let e = classify::explain_reply_to(server.footers.kb(), RELAY_DENIED, "RCPT", Some(plainbounce::footer::SMTPD_CONTEXT));
    assert_eq!(e.cause.reason, "norelaying");
    assert!(e.cause.en.title.contains("log in"), "{}", e.cause.en.title);
    let lines = postfix_expand(RELAY_DENIED, reply.strip_prefix("OK ").unwrap());
    assert!(lines[0].starts_with(RELAY_DENIED));
    let seen = lines.iter().map(|l| l.get(10..).unwrap_or("")).collect::<Vec<_>>().join(" ");
    let title = plainbounce::footer::ascii_safe(e.cause.en.title.trim_end_matches('.'));
    assert!(seen.contains(&title), "{seen}");
    server.stop().await;
}

#[tokio::test]
async fn unexplained_replies_are_not_found() {
    let server = Server::start(quick()).await;
    let mut c = server.connect().await;
    // No rule at all (generic), a bare reply code, an X.0.0 status: no footer.
    for key in ["599 9.9.9 qqq zzz", "571 go away", "550 5.0.0 <x@y>: something odd", "not a reply"] {
        assert_eq!(c.lookup(&format!("footer {key}")).await, "NOTFOUND ", "{key}");
    }
    server.stop().await;
}

#[tokio::test]
async fn wrong_map_name_is_perm_and_the_connection_goes_on() {
    let server = Server::start(quick()).await;
    let mut c = server.connect().await;
    let reply = c.lookup(&format!("virtual {RELAY_DENIED}")).await;
    assert!(reply.starts_with("PERM "), "{reply}");
    assert!(c.lookup("footer-xx 554 5.7.1 x").await.starts_with("PERM "));
    assert!(c.lookup("no-space-here").await.starts_with("PERM "));
    assert_eq!(c.lookup(&format!("footer {RELAY_DENIED}")).await, expected_ok(&server.footers, RELAY_DENIED, "en"));
    server.stop().await;
}

#[tokio::test]
async fn map_name_picks_the_language() {
    let server = Server::start(quick()).await;
    let mut c = server.connect().await;
    let key = "452 4.2.2 <kim@example.org>: Recipient address rejected: mailbox full";
    let reply = c.lookup(&format!("footer-de {key}")).await;
    assert_eq!(reply, expected_ok(&server.footers, key, "de"));
    assert!(reply.contains("Empfaengers"), "umlaut transliterated: {reply}");
    assert!(reply.is_ascii());
    assert_ne!(reply, c.lookup(&format!("footer {key}")).await);
    server.stop().await;
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_perm_and_a_close() {
    let server = Server::start(quick()).await;
    for bad in [&b"GET / HTTP/1.0\r\n\r\n"[..], b"200000:", b"5:abcde;", b"99999999999:"] {
        let mut c = server.connect().await;
        c.send_raw(bad).await;
        let reply = c.reply().await.expect("an error reply");
        assert!(reply.starts_with("PERM "), "{reply}");
        assert_eq!(c.reply().await, None, "closed after {:?}", String::from_utf8_lossy(bad));
    }
    // The server still serves.
    let mut c = server.connect().await;
    assert!(c.lookup(&format!("footer {RELAY_DENIED}")).await.starts_with("OK "));
    server.stop().await;
}

#[tokio::test]
async fn slow_client_times_out() {
    let server = Server::start(ServerOptions { request_timeout: Duration::from_millis(300), ..quick() }).await;
    let mut c = server.connect().await;
    let started = Instant::now();
    c.send_raw(b"40:footer 554 5.7.1 ").await; // and never the rest
    assert_eq!(c.reply().await.as_deref(), Some("TIMEOUT request not completed in time"));
    assert_eq!(c.reply().await, None);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Dribbling bytes does not extend the deadline: the answer comes long before the
    // request could be complete (one byte per 50 ms, 300 ms allowed).
    let mut c = server.connect().await;
    let mut got = None;
    let mut sent = 0;
    for b in b"40:footer 554 5.7.1 <bob@example.net>: Relay".iter() {
        if c.stream.write_all(&[*b]).await.is_err() {
            break;
        }
        sent += 1;
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(50), c.reply()).await {
            got = r;
            break;
        }
    }
    assert_eq!(got.as_deref(), Some("TIMEOUT request not completed in time"), "after {sent} bytes");
    assert!(sent < 40, "timed out only after {sent} bytes");
    server.stop().await;
}

#[tokio::test]
async fn idle_connection_is_closed() {
    let options = ServerOptions { idle_timeout: Duration::from_millis(200), ..quick() };
    let server = Server::start(options).await;
    let mut c = server.connect().await;
    assert!(c.lookup(&format!("footer {RELAY_DENIED}")).await.starts_with("OK "));
    assert_eq!(c.reply().await, None, "closed when idle");
    server.stop().await;
}

#[tokio::test]
async fn many_requests_on_one_connection_and_pipelined() {
    let server = Server::start(quick()).await;
    let ok = expected_ok(&server.footers, RELAY_DENIED, "en");
    let mut c = server.connect().await;
    for i in 0..500 {
        let (key, want) = if i % 2 == 0 { (RELAY_DENIED, ok.as_str()) } else { ("599 9.9.9 qqq", "NOTFOUND ") };
        assert_eq!(c.lookup(&format!("footer {key}")).await, want, "request {i}");
    }
    // 200 requests in one write, answered in order.
    let batch: Vec<u8> = (0..200).flat_map(|i| encode(if i % 3 == 0 { b"footer 599 9.9.9 qqq" } else { b"footer 554 5.7.1 <bob@example.net>: Relay access denied" })).collect();
    c.send_raw(&batch).await;
    for i in 0..200 {
        let want = if i % 3 == 0 { "NOTFOUND " } else { ok.as_str() };
        assert_eq!(c.reply().await.as_deref(), Some(want), "pipelined {i}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients() {
    let server = Server::start(quick()).await;
    let ok = expected_ok(&server.footers, RELAY_DENIED, "en");
    let mut clients = Vec::new();
    for n in 0..20 {
        let mut c = server.connect().await;
        let ok = ok.clone();
        clients.push(tokio::spawn(async move {
            for i in 0..50 {
                let key = format!("554 5.7.1 <u{n}-{i}@example.net>: Relay access denied");
                let reply = c.lookup(&format!("footer {key}")).await;
                assert_eq!(reply, ok);
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_are_closed() {
    let options = ServerOptions { max_connections: 2, ..quick() };
    let server = Server::start(options).await;
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    assert!(a.lookup(&format!("footer {RELAY_DENIED}")).await.starts_with("OK "));
    assert!(b.lookup(&format!("footer {RELAY_DENIED}")).await.starts_with("OK "));
    let mut third = server.connect().await;
    third.send_raw(&encode(format!("footer {RELAY_DENIED}").as_bytes())).await;
    assert_eq!(third.reply().await, None, "third connection closed");
    drop(a);
    // A slot frees up once the server notices the close.
    let mut fourth = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut c = server.connect().await;
        c.send_raw(&encode(format!("footer {RELAY_DENIED}").as_bytes())).await;
        if let Some(r) = c.reply().await {
            fourth = Some(r);
            break;
        }
    }
    assert!(fourth.is_some_and(|r| r.starts_with("OK ")), "a connection is served again");
    assert!(b.lookup(&format!("footer {RELAY_DENIED}")).await.starts_with("OK "));
    server.stop().await;
}

#[tokio::test]
async fn unix_socket() {
    let path = std::env::temp_dir().join(format!("plainbounce-socketmap-test-{}.sock", std::process::id()));
    let spec = format!("unix:{}", path.display());
    let footers = Arc::new(test_footers(FooterStyle::Short));
    let listener = SocketmapListener::bind(&spec, 0o600).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let f = footers.clone();
    let task = tokio::spawn(serve_socketmap(listener, quick(), move || f.clone(), async {
        let _ = stopped.await;
    }));
    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    s.write_all(&encode(format!("footer {RELAY_DENIED}").as_bytes())).await.unwrap();
    let mut buf = Vec::new();
    let reply = loop {
        if let Some(p) = decode(&mut buf, 1 << 20).unwrap() {
            break String::from_utf8(p).unwrap();
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    };
    assert_eq!(reply, expected_ok(&footers, RELAY_DENIED, "en"));
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert!(!path.exists(), "socket file removed at shutdown");
    // Binding again over a stale socket file works; over a regular file it does not.
    let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(stale);
    drop(SocketmapListener::bind(&spec, 0o600).await.expect("stale socket replaced"));
    assert!(!path.exists(), "socket file removed with the listener");
    std::fs::write(&path, b"not a socket").unwrap();
    assert!(SocketmapListener::bind(&spec, 0o600).await.is_err());
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn bad_listener_specs() {
    for spec in ["tcp:8890", "inet:notaport@127.0.0.1", "8890"] {
        assert!(SocketmapListener::bind(spec, 0o600).await.is_err(), "{spec}");
    }
}

/// Postfix's own socketmap client (postmap -q) against the server, when installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_client_gets_the_footer() {
    let Some(postmap) = postmap() else {
        eprintln!("note: postmap not found (install postfix or set PLAINBOUNCE_POSTMAP); skipping the real-client check");
        return;
    };
    let server = Server::start(quick()).await;
    let table = format!("socketmap:inet:127.0.0.1:{}:footer", server.addr.port());
    let want = server.footers.footer_for_reply(RELAY_DENIED, "en").unwrap();
    let postmap = std::sync::Arc::new(postmap);
    let (t, p) = (table.clone(), postmap.clone());
    let found = tokio::task::spawn_blocking(move || postmap_query(&p, RELAY_DENIED, &t)).await.unwrap();
    assert_eq!(found, Ok(Some(want)));
    let (t, p) = (table.clone(), postmap.clone());
    let missing = tokio::task::spawn_blocking(move || postmap_query(&p, "599 9.9.9 qqq", &t)).await.unwrap();
    assert_eq!(missing, Ok(None));
    server.stop().await;
}
