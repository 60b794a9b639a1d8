//! The milter driven as an MTA would, through indymilter-test, with fake rewriters.

mod milter_support;

use indymilter_test::{Actions, MacroStage, ProtoOpts, Status, TestConnection};
use milter_support::*;
use plainbounce::engine::Outcome;
use plainbounce::milter::{rewrite_slots, Milter, Rewriter};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

#[tokio::test]
async fn negotiates_only_what_it_needs() {
    let (running, _) = start_scripted(config("t")).await;
    let conn = running.connect().await;
    assert_eq!(conn.negotiated_actions(), Actions::ADD_HEADER | Actions::CHANGE_HEADER | Actions::REPLACE_BODY);
    let opts = conn.negotiated_opts();
    for skipped in [ProtoOpts::NO_CONNECT, ProtoOpts::NO_HELO, ProtoOpts::NO_EOH, ProtoOpts::NO_UNKNOWN] {
        assert!(opts.contains(skipped), "{skipped:?} not negotiated away: {opts:?}");
    }
    // DATA is answered (see `Milter::callbacks`), and no stage is left without a reply.
    for needed in [ProtoOpts::NO_MAIL, ProtoOpts::NO_RCPT, ProtoOpts::NO_DATA, ProtoOpts::NO_HEADER, ProtoOpts::NO_BODY, ProtoOpts::NOREPLY_DATA] {
        assert!(!opts.contains(needed), "{needed:?}");
    }
    assert_eq!(conn.requested_macros().get(&MacroStage::Eom).map(|m| m.to_str().unwrap()), Some("i"));
}

#[tokio::test]
async fn bounce_gets_new_body_and_header_changes() {
    let (running, seen) = start_scripted(config("t")).await;
    let mut conn = running.connect().await;
    let (actions, status) = Bounce::default().send(&mut conn).await.expect("a bounce is kept");
    assert_eq!(status, Status::Continue);
    assert_rewritten(&actions, "Undelivered Mail", "t");
    // The rewriter saw the message as received: headers, blank line, body, all CRLF.
    let raw = seen.lock().unwrap()[0].clone();
    let expected = "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\nSubject: Undelivered Mail\r\n\
        X-Remove-Me: 1\r\nX-Test: modify\r\nx-remove-me: 2\r\n\r\nThe mail system\r\n";
    assert_eq!(String::from_utf8(raw).unwrap(), expected);
}

#[tokio::test]
async fn postfix_internal_null_sender_is_a_bounce_too() {
    let (running, _) = start_scripted(config("t")).await;
    let mut conn = running.connect().await;
    let (actions, _) = Bounce { sender: "", ..Bounce::default() }.send(&mut conn).await.expect("kept");
    assert_rewritten(&actions, "Undelivered Mail", "t");
}

#[tokio::test]
async fn ordinary_mail_is_let_go_at_mail_from() {
    let (running, seen) = start_scripted(config("t")).await;
    let mut conn = running.connect().await;
    assert_eq!(conn.mail(["<bob@example.org>", "SIZE=10"]).await.unwrap(), Status::Accept);
    assert_eq!(running.milter.in_flight(), 0);
    // The connection goes on with the next message, which is a bounce.
    let (actions, _) = Bounce::default().send(&mut conn).await.expect("kept");
    assert_rewritten(&actions, "Undelivered Mail", "t");
    assert_eq!(seen.lock().unwrap().len(), 1, "the ordinary message never reached the rewriter");
}

#[tokio::test]
async fn every_sender_when_only_null_sender_is_off() {
    let mut c = config("t");
    c.only_null_sender = false;
    let (running, _) = start_scripted(c).await;
    let mut conn = running.connect().await;
    let (actions, _) = Bounce { sender: "<bob@example.org>", ..Bounce::default() }.send(&mut conn).await.expect("kept");
    assert_rewritten(&actions, "Undelivered Mail", "t");
}

#[tokio::test]
async fn engine_pass_means_no_modification() {
    let (running, _) = start_scripted(config("t")).await;
    let mut conn = running.connect().await;
    let (actions, status) = Bounce { test: "pass", ..Bounce::default() }.send(&mut conn).await.unwrap();
    assert_eq!(status, Status::Continue);
    assert!(actions.actions.is_empty(), "{actions:?}");
}

#[tokio::test]
async fn several_messages_on_one_connection() {
    let (running, seen) = start_scripted(config("t")).await;
    let mut conn = running.connect().await;
    for i in 0..5 {
        let subject = format!("bounce {i}");
        let body = format!("body {i}\r\n");
        let b = Bounce { subject: &subject, body: body.as_bytes(), ..Bounce::default() };
        let (actions, _) = b.send(&mut conn).await.unwrap();
        assert_rewritten(&actions, &subject, "t");
        // Each message starts from an empty buffer.
        let raw = String::from_utf8(seen.lock().unwrap()[i].clone()).unwrap();
        assert!(raw.ends_with(&format!("\r\n\r\n{body}")) && raw.matches("Subject:").count() == 1, "{raw}");
    }
    conn.close().await.unwrap();
}

#[tokio::test]
async fn abort_mid_message_resets_the_state() {
    let (running, seen) = start_scripted(config("t")).await;
    let mut conn = running.connect().await;
    let first = Bounce { subject: "aborted", ..Bounce::default() };
    first.send_head(&mut conn).await;
    conn.body(b"half a bo".to_vec()).await.unwrap();
    assert_eq!(running.milter.in_flight(), 1);
    conn.abort().await.unwrap();
    // Abort has no reply; the buffer is dropped (and no longer counted) soon after.
    eventually(|| running.milter.in_flight() == 0).await;
    let (actions, _) = Bounce { subject: "second", ..Bounce::default() }.send(&mut conn).await.unwrap();
    assert_rewritten(&actions, "second", "t");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let raw = String::from_utf8_lossy(&seen[0]);
    assert!(!raw.contains("aborted") && !raw.contains("half a bo"), "{raw}");
    assert_eq!(running.milter.in_flight(), 0);
}

#[tokio::test]
async fn a_dropped_connection_frees_its_message() {
    let (running, seen) = start_scripted(config("t")).await;
    let mut conn = running.connect().await;
    Bounce::default().send_head(&mut conn).await;
    assert_eq!(running.milter.in_flight(), 1);
    drop(conn);
    // Otherwise a graceful shutdown would wait for it.
    eventually(|| running.milter.in_flight() == 0).await;
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_new_mail_from_without_abort_also_resets() {
    let (running, seen) = start_scripted(config("t")).await;
    let mut conn = running.connect().await;
    Bounce { subject: "dropped", ..Bounce::default() }.send_head(&mut conn).await;
    let (actions, _) = Bounce { subject: "kept", ..Bounce::default() }.send(&mut conn).await.unwrap();
    assert_rewritten(&actions, "kept", "t");
    assert!(!String::from_utf8_lossy(&seen.lock().unwrap()[0]).contains("dropped"));
}

#[tokio::test]
async fn body_over_the_cap_is_skipped_and_passes() {
    let mut c = config("t");
    c.max_body = 1000;
    let (running, seen) = start_scripted(c).await;
    let mut conn = running.connect().await;
    let b = Bounce::default();
    b.send_head(&mut conn).await;
    assert_eq!(conn.body(vec![b'x'; 600]).await.unwrap(), Status::Continue);
    // The chunk that crosses the cap: the MTA may skip the rest of the body.
    assert_eq!(conn.body(vec![b'x'; 600]).await.unwrap(), Status::Skip);
    conn.macros(MacroStage::Eom, [("i", "BIG1")]).await.unwrap();
    let (actions, status) = conn.eom().await.unwrap();
    assert_eq!(status, Status::Continue);
    assert!(actions.actions.is_empty());
    assert!(seen.lock().unwrap().is_empty(), "an over-cap message never reaches the rewriter");
    // The next message on the connection is handled normally.
    let (actions, _) = b.send(&mut conn).await.unwrap();
    assert_rewritten(&actions, "Undelivered Mail", "t");
}

#[tokio::test]
async fn body_over_the_cap_without_skip_is_accepted() {
    let mut c = config("t");
    c.max_body = 1000;
    let (running, seen) = start_scripted(c).await;
    let opts = ProtoOpts::all().difference(ProtoOpts::SKIP);
    let mut conn = TestConnection::configure().available_opts(opts).open_tcp(running.addr).await.unwrap();
    let b = Bounce::default();
    b.send_head(&mut conn).await;
    assert_eq!(conn.body(vec![b'x'; 1001]).await.unwrap(), Status::Accept);
    assert_eq!(running.milter.in_flight(), 0);
    let (actions, _) = b.send(&mut conn).await.unwrap();
    assert_rewritten(&actions, "Undelivered Mail", "t");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn panicking_rewriter_passes_the_message_and_the_connection_lives_on() {
    let (running, _) = start_scripted(config("t")).await;
    let mut conn = running.connect().await;
    let (actions, status) = Bounce { test: "panic", ..Bounce::default() }.send(&mut conn).await.unwrap();
    assert_eq!(status, Status::Continue);
    assert!(actions.actions.is_empty(), "{actions:?}");
    let (actions, _) = Bounce::default().send(&mut conn).await.unwrap();
    assert_rewritten(&actions, "Undelivered Mail", "t");
}

#[tokio::test]
async fn slow_rewriter_over_the_budget_passes_the_message() {
    let mut c = config("t");
    c.timeout_ms = 100;
    let (running, _) = start_scripted(c).await;
    let mut conn = running.connect().await;
    // The scripted rewriter sleeps 1.5 s and then asks for changes; none may arrive.
    let (actions, status) = Bounce { test: "sleep", ..Bounce::default() }.send(&mut conn).await.unwrap();
    assert_eq!(status, Status::Continue);
    assert!(actions.actions.is_empty(), "{actions:?}");
    let (actions, _) = Bounce::default().send(&mut conn).await.unwrap();
    assert_rewritten(&actions, "Undelivered Mail", "t");
}

#[tokio::test]
async fn changes_the_mta_does_not_allow_are_not_half_applied() {
    let (running, _) = start_scripted(config("t")).await;
    let offered = Actions::ADD_HEADER | Actions::CHANGE_HEADER;
    let mut conn = TestConnection::configure().available_actions(offered).open_tcp(running.addr).await.unwrap();
    assert_eq!(conn.negotiated_actions(), offered);
    let (actions, status) = Bounce::default().send(&mut conn).await.unwrap();
    assert_eq!(status, Status::Continue);
    assert!(actions.actions.is_empty(), "without body replacement nothing is changed: {actions:?}");
}

#[tokio::test]
async fn folded_header_values_reach_the_rewriter_with_crlf() {
    let (running, seen) = start_scripted(config("t")).await;
    let mut conn = running.connect().await;
    conn.mail(["<>"]).await.unwrap();
    conn.rcpt(["<a@example.org>"]).await.unwrap();
    conn.header("Subject", "first line\n\tsecond line").await.unwrap();
    conn.body(b"b\r\n".to_vec()).await.unwrap();
    let (actions, _) = conn.eom().await.unwrap();
    assert!(actions.has_change_header("Subject", 1, "Explained: first line"));
    assert_eq!(seen.lock().unwrap()[0], b"Subject: first line\r\n\tsecond line\r\n\r\nb\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_connections_at_once_keep_their_messages_apart() {
    let (running, seen) = start_scripted(config("t")).await;
    let mut clients = Vec::new();
    for c in 0..100 {
        let addr = running.addr;
        clients.push(tokio::spawn(async move {
            let mut conn = TestConnection::open(addr).await.unwrap();
            for m in 0..4 {
                let subject = format!("conn {c} message {m}");
                let body = format!("{subject}\r\n").repeat(50);
                let sender = if m % 2 == 0 { "<>" } else { "<someone@example.org>" };
                let b = Bounce { sender, subject: &subject, body: body.as_bytes(), ..Bounce::default() };
                match b.send(&mut conn).await {
                    Some((actions, _)) => assert_rewritten(&actions, &subject, "t"),
                    None => assert_eq!(sender, "<someone@example.org>"),
                }
            }
            conn.close().await.unwrap();
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(seen.lock().unwrap().len(), 200);
    assert_eq!(running.milter.in_flight(), 0);
}

/// Counts the rewrites running at once: (running now, most at once).
struct Counting {
    inner: Scripted,
    counts: Arc<(AtomicUsize, AtomicUsize)>,
}

impl Rewriter for Counting {
    fn process(&self, raw: &[u8], recipient: Option<&str>) -> Outcome {
        let now = self.counts.0.fetch_add(1, SeqCst) + 1;
        self.counts.1.fetch_max(now, SeqCst);
        // Long enough for the other sessions' messages to arrive meanwhile.
        std::thread::sleep(std::time::Duration::from_millis(30));
        self.counts.0.fetch_sub(1, SeqCst);
        self.inner.process(raw, recipient)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rewrites_run_at_most_one_per_cpu_at_once() {
    let mut c = config("t");
    c.timeout_ms = 60_000;
    let counts = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let (seen, shared) = (Seen::default(), counts.clone());
    let build = move |config| Ok(Counting { inner: scripted(seen.clone())(config)?, counts: shared.clone() });
    let running = start(Milter::new(c, build).unwrap(), 100).await;
    let mut clients = Vec::new();
    for i in 0..24 {
        let addr = running.addr;
        clients.push(tokio::spawn(async move {
            let mut conn = TestConnection::open(addr).await.unwrap();
            let subject = format!("message {i}");
            let (actions, _) = Bounce { subject: &subject, ..Bounce::default() }.send(&mut conn).await.unwrap();
            assert_rewritten(&actions, &subject, "t");
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let most = counts.1.load(SeqCst);
    assert!((1..=rewrite_slots()).contains(&most), "{most} rewrites at once, {} slots", rewrite_slots());
}
