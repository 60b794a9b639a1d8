//! Reload, graceful shutdown and unix sockets, in process.

mod milter_support;

use indymilter_test::{Status, TestConnection};
use milter_support::*;
use plainbounce::config::Config;
use plainbounce::milter::listen::{self, SocketSpec};
use plainbounce::milter::Milter;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("plainbounce-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn rewritten_by(conn: &mut TestConnection, subject: &str) -> String {
    let (actions, _) = Bounce { subject, ..Bounce::default() }.send(conn).await.unwrap();
    for tag in ["v1", "v2", "v3"] {
        if actions.has_insert_header(0, "X-Plainbounce", format!("rewritten; tag={tag}").as_str()) {
            assert_rewritten(&actions, subject, tag);
            return tag.into();
        }
    }
    panic!("no tag in {actions:?}");
}

#[tokio::test]
async fn reload_swaps_the_rewriter_and_refuses_bad_configs() {
    let dir = scratch_dir("reload");
    let (running, _) = start_scripted(config("v1")).await;
    let mut conn = running.connect().await;
    assert_eq!(rewritten_by(&mut conn, "a").await, "v1");

    // Not TOML, unknown key, missing file, a config the rewriter cannot be built from.
    let bad_toml = dir.join("bad.toml");
    std::fs::write(&bad_toml, "socket = [unterminated").unwrap();
    let unknown_key = dir.join("unknown.toml");
    std::fs::write(&unknown_key, config_text(&[("no_such_key", 1.into())])).unwrap();
    let broken_engine = dir.join("broken.toml");
    std::fs::write(&broken_engine, config_text(&[("template_dir", "broken".into())])).unwrap();
    for bad in [&bad_toml, &unknown_key, &dir.join("missing.toml"), &broken_engine] {
        assert!(running.milter.reload(Some(bad)).is_err(), "{} accepted", bad.display());
        assert_eq!(rewritten_by(&mut conn, "b").await, "v1", "after {}", bad.display());
    }

    let good = dir.join("good.toml");
    std::fs::write(&good, config_text(&[("template_dir", "v2".into()), ("max_body", 5000.into())])).unwrap();
    let new = running.milter.reload(Some(&good)).unwrap();
    assert_eq!(new.max_body, 5000);
    assert_eq!(running.milter.settings().max_body, 5000);
    assert_eq!(rewritten_by(&mut conn, "c").await, "v2");
}

#[tokio::test]
async fn a_message_in_flight_keeps_the_rewriter_it_started_with() {
    let (running, _) = start_scripted(config("v1")).await;
    let mut conn = running.connect().await;
    let b = Bounce { subject: "started before", ..Bounce::default() };
    b.send_head(&mut conn).await;
    running.milter.install(config("v2")).unwrap();
    let (actions, _) = b.send_rest(&mut conn).await;
    assert_rewritten(&actions, "started before", "v1");
    assert_eq!(rewritten_by(&mut conn, "started after").await, "v2");
}

#[tokio::test]
async fn reload_with_the_real_engine() {
    let dir = scratch_dir("engine");
    let milter = Milter::with_engine(Config::embedded()).unwrap();
    let missing_kb = dir.join("missing-kb.toml");
    let nope = dir.join("nope.toml").display().to_string();
    std::fs::write(&missing_kb, config_text(&[("kb_files", vec![nope].into()), ("timeout_ms", 900.into())])).unwrap();
    let before = milter.settings();
    assert!(milter.reload(Some(&missing_kb)).is_err());
    assert_eq!(milter.settings(), before);
    let good = dir.join("good.toml");
    std::fs::write(&good, config_text(&[("timeout_ms", 900.into())])).unwrap();
    milter.reload(Some(&good)).unwrap();
    assert_eq!(milter.settings().timeout, Duration::from_millis(900));
}

/// Shutdown stops new connections, lets a message in flight finish (modified), lets
/// idle connections start no new bounce, and then returns.
#[tokio::test]
async fn graceful_shutdown_drains_messages_in_flight() {
    let (mut running, _) = start_scripted(config("v1")).await;
    let mut busy = running.connect().await;
    let mut idle = running.connect().await;
    let b = Bounce { subject: "in flight", ..Bounce::default() };
    b.send_head(&mut busy).await;
    assert_eq!(running.milter.in_flight(), 1);

    running.stop();
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(running.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "still accepting connections after shutdown began");

    // An idle connection may still start a message, but it is let go untouched.
    assert_eq!(idle.mail(["<>"]).await.unwrap(), Status::Accept);
    assert!(!running.task.is_finished(), "shutdown did not wait for the message in flight");

    let (actions, status) = b.send_rest(&mut busy).await;
    assert_eq!(status, Status::Continue);
    assert_rewritten(&actions, "in flight", "v1");
    let result = tokio::time::timeout(Duration::from_secs(10), &mut running.task).await;
    result.expect("run returns once drained").unwrap().unwrap();
}

#[tokio::test]
async fn unix_socket_replaces_a_stale_file_and_applies_its_mode() {
    let dir = scratch_dir("unix");
    let path = dir.join("milter.sock");
    // A socket file left behind by a process that is gone.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());

    let spec = SocketSpec::parse(&format!("unix:{}", path.display())).unwrap();
    let bound = listen::bind(&spec, 0o640).await.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);

    // A live socket is not taken over.
    assert!(listen::bind(&spec, 0o640).await.is_err());

    let seen = Seen::default();
    let milter = Arc::new(Milter::new(config("v1"), scripted(seen)).unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(milter.run(bound.listener, 10, async move {
        let _ = stopped.await;
    }));
    let mut conn = TestConnection::configure().open_unix(&path).await.unwrap();
    assert_eq!(rewritten_by(&mut conn, "over unix").await, "v1");
    drop(conn);
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    drop(bound.socket_file);
    assert!(!path.exists(), "socket file removed on shutdown");
}

#[tokio::test]
async fn a_file_that_is_not_a_socket_is_left_alone() {
    let dir = scratch_dir("notsocket");
    let path = dir.join("important.txt");
    std::fs::write(&path, "keep me").unwrap();
    let Err(err) = listen::bind(&SocketSpec::Unix(path.clone()), 0o660).await else { panic!("bound over a file") };
    assert!(format!("{err:#}").contains("not a socket"), "{err:#}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
}
