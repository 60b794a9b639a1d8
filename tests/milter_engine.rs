//! The milter with the real engine, over the whole corpus: what an MTA ends up with after
//! applying the milter's actions equals what the engine's own `apply` makes of the same
//! message (the milter and the filter door give the same result), and messages the
//! engine leaves alone get no action at all.

mod milter_support;

use indymilter_test::{EomAction, MacroStage, Status, TestConnection};
use plainbounce::config::Config;
use plainbounce::engine::{self, Engine, Options, Outcome};
use plainbounce::milter::{Milter, QUIET};
use std::ffi::CString;
use std::path::PathBuf;

const RECIPIENT: &str = "postmaster@example.org";

/// A header block and body as an MTA hands them to a milter.
struct Message {
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

impl Message {
    /// Split a file: header fields (folded lines joined with LF, as Postfix passes them),
    /// and the body with CRLF line ends.
    fn parse(file: &[u8]) -> Message {
        let mut headers: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut rest = file;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
            if line.starts_with(b" ") || line.starts_with(b"\t") {
                match headers.last_mut() {
                    Some((_, value)) => {
                        value.push(b'\n');
                        value.extend_from_slice(line);
                    }
                    None => break,
                }
            } else if let Some(colon) = line.iter().position(|&b| b == b':').filter(|&c| c > 0) {
                let value = line[colon + 1..].trim_ascii_start();
                headers.push((line[..colon].trim_ascii_end().to_vec(), value.to_vec()));
            } else {
                if line.is_empty() {
                    rest = &rest[end + 1..];
                }
                break;
            }
            rest = &rest[end + 1..];
        }
        Message { headers, body: crlf(rest) }
    }

    /// The bytes the milter hands to the engine: "Name: value" lines, CRLF everywhere.
    fn raw(&self) -> Vec<u8> {
        let mut raw = Vec::new();
        for (name, value) in &self.headers {
            raw.extend_from_slice(name);
            raw.extend_from_slice(b": ");
            raw.extend_from_slice(&crlf(value));
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(&self.body);
        raw
    }

    /// What the MTA makes of the message after the milter's actions.
    fn apply(&self, actions: &[EomAction]) -> (Vec<(String, String)>, Vec<u8>) {
        let mut headers: Vec<(String, String)> =
            self.headers.iter().map(|(n, v)| (lossy(n), unfold(&lossy(&crlf(v))))).collect();
        let mut body: Option<Vec<u8>> = None;
        for action in actions {
            match action {
                EomAction::AddHeader { name, value } => headers.push((lossy(name.to_bytes()), lossy(value.to_bytes()))),
                EomAction::InsertHeader { index, name, value } => {
                    let at = (*index).clamp(0, headers.len() as i32) as usize;
                    headers.insert(at, (lossy(name.to_bytes()), lossy(value.to_bytes())));
                }
                EomAction::ChangeHeader { name, index, value } => {
                    let i = nth(&headers, name, *index).expect("change of a header that is there");
                    headers[i].1 = lossy(value.to_bytes());
                }
                EomAction::DeleteHeader { name, index } => {
                    let i = nth(&headers, name, *index).expect("deletion of a header that is there");
                    headers.remove(i);
                }
                EomAction::ReplaceBody { chunk } => body.get_or_insert_with(Vec::new).extend_from_slice(chunk),
                other => panic!("action the milter never asks for: {other:?}"),
            }
        }
        (headers, body.unwrap_or_else(|| self.body.clone()))
    }
}

/// The `index`-th (1-based) header called `name`.
fn nth(headers: &[(String, String)], name: &CString, index: i32) -> Option<usize> {
    let name = name.to_str().unwrap();
    let mut seen = 0;
    headers.iter().position(|(n, _)| {
        seen += i32::from(n.eq_ignore_ascii_case(name));
        n.eq_ignore_ascii_case(name) && seen == index
    })
}

/// Header fields and body of a message in bytes, values unfolded.
fn split(raw: &[u8]) -> (Vec<(String, String)>, Vec<u8>) {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
    let head = lossy(&raw[..end]);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            fields.last_mut().unwrap().1.push_str(&format!("\r\n{line}"));
        } else {
            let (name, value) = line.split_once(':').unwrap();
            fields.push((name.to_string(), value.trim_start().to_string()));
        }
    }
    let fields = fields.into_iter().map(|(n, v)| (n, unfold(&v))).collect();
    (fields, raw[end + 4..].to_vec())
}

fn lower_names(fields: Vec<(String, String)>) -> Vec<(String, String)> {
    fields.into_iter().map(|(n, v)| (n.to_ascii_lowercase(), v)).collect()
}

fn unfold(value: &str) -> String {
    value.replace("\r\n", "").trim().to_string()
}

fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 40);
    let mut prev = 0;
    for &b in bytes {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn c(bytes: &[u8]) -> CString {
    CString::new(bytes.iter().map(|&b| if b == 0 { b' ' } else { b }).collect::<Vec<_>>()).unwrap()
}

/// Every .eml file under the corpus's emails/ (negatives/ included).
fn corpus_files() -> Vec<PathBuf> {
    let mut dirs = vec![plainbounce::eval::locate_corpus().expect("the bounce corpus").join("emails")];
    let mut files = Vec::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "eml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_milter_applies_exactly_what_the_engine_decides() {
    let (config, engine) = engine();
    let running = milter_support::start(Milter::with_engine(config).unwrap(), 10).await;
    let mut conn = TestConnection::open(running.addr).await.unwrap();
    // On TCP every stage is answered (see listen::Unanswered).
    assert!(!conn.negotiated_opts().intersects(QUIET), "{:?}", conn.negotiated_opts());
    corpus_through(&mut conn, &engine, Status::Continue).await;
}

/// The same over a unix socket, where RCPT, DATA and the headers go unanswered: the
/// milter must still see all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_over_a_unix_socket_with_unanswered_stages() {
    let (config, engine) = engine();
    let path = std::env::temp_dir().join(format!("plainbounce-milter-engine-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let milter = std::sync::Arc::new(Milter::with_engine(config).unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(milter.run(listener, 10, async move {
        let _ = stopped.await;
    }));
    let mut conn = TestConnection::configure().open_unix(&path).await.unwrap();
    assert!(conn.negotiated_opts().contains(QUIET), "{:?}", conn.negotiated_opts());
    corpus_through(&mut conn, &engine, Status::Noreply).await;
    conn.close().await.unwrap();
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    let _ = std::fs::remove_file(&path);
}

fn engine() -> (Config, std::sync::Arc<Engine>) {
    let mut config = Config::embedded();
    config.timeout_ms = 120_000; // a debug build on a busy machine; the budget is not under test here
    let engine = std::sync::Arc::new(Engine::new(config.clone()).unwrap());
    (config, engine)
}

/// Every corpus message through the milter on `conn`, compared with what the engine
/// makes of it; `quiet` is the status RCPT, DATA and headers get.
async fn corpus_through(conn: &mut TestConnection, engine: &std::sync::Arc<Engine>, quiet: Status) {
    let (mut modified, mut passed) = (0, 0);
    for file in corpus_files() {
        let message = Message::parse(&std::fs::read(&file).unwrap());
        let name = file.file_name().unwrap().to_string_lossy();
        // The engine's own answer, worked out meanwhile on another core.
        let raw = message.raw();
        let direct = tokio::task::spawn_blocking({
            let (engine, raw) = (engine.clone(), raw.clone());
            move || {
                let outcome = engine.process_with(&raw, &Options { recipient: Some(RECIPIENT), ..Options::default() });
                let applied = match &outcome {
                    Outcome::Modify(m) => Some(split(&engine::apply(&raw, m))),
                    Outcome::Pass(_) => None,
                };
                (outcome, applied)
            }
        });
        assert_eq!(conn.mail(["<>"]).await.unwrap(), Status::Continue);
        assert_eq!(conn.rcpt([format!("<{RECIPIENT}>")]).await.unwrap(), quiet);
        assert_eq!(conn.data().await.unwrap(), quiet);
        for (n, v) in &message.headers {
            assert_eq!(conn.header(c(n), c(v)).await.unwrap(), quiet, "{name}");
        }
        if !message.body.is_empty() {
            assert_eq!(conn.body(message.body.clone()).await.unwrap(), Status::Continue, "{name}");
        }
        conn.macros(MacroStage::Eom, [("i", name.as_ref())]).await.unwrap();
        let (actions, status) = conn.eom().await.unwrap();
        assert_eq!(status, Status::Continue, "{name}");

        match direct.await.unwrap() {
            (Outcome::Pass(why), _) => {
                assert!(actions.actions.is_empty(), "{name}: engine passes ({why}) but the milter changed {actions:?}");
                passed += 1;
            }
            (Outcome::Modify(_), expected) => {
                let expected = expected.unwrap();
                let (headers, body) = message.apply(&actions.actions);
                // Field names compare without case: an MTA keeps the name as it was.
                assert_eq!(lower_names(headers), lower_names(expected.0), "{name}: headers differ");
                assert!(body == expected.1, "{name}: body differs");
                modified += 1;
            }
        }
    }
    eprintln!("corpus through the milter: {modified} modified, {passed} passed");
    assert!(modified > 0 && passed > 0, "{modified} modified, {passed} passed");
}
