//! An MTA's side of a milter session (indymilter-test), for the milter hostile tests and
//! the soak (examples/soak.rs): send a message as Postfix would, put the milter's changes
//! back together as the MTA would, and judge them against the engine's own answer.
//!
//! Includers must have `hostile_support` and `invariants` modules at their crate root.

#![allow(dead_code)] // each includer uses a different subset

use crate::{hostile_support, invariants};
use indymilter_test::{EomAction, EomActions, Status, TestConnection, TestError};
use plainbounce::engine::{Engine, HeaderEdit, Modification, Options, Outcome};
use std::ffi::CString;

/// One test message as the MTA hands it to the milter.
pub struct Sample {
    pub name: String,
    pub sender: &'static str,
    /// Header fields as (name, value) without the colon and the one leading space.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Body with CRLF line ends.
    pub body: Vec<u8>,
    /// The message as the milter reassembles it: what the engine sees.
    pub canonical: Vec<u8>,
    /// The in-process engine's answer on `canonical`, if the milter will let it rewrite
    /// (null sender, body within `max_body`).
    pub expected: Option<Modification>,
}

/// The envelope recipient every sample is sent to (the bounce's recipient: the policy and
/// the greeting follow it).
pub const RECIPIENT: &str = "alice@example.org";

/// `None` for messages an MTA could not pass on as headers (NULs, nameless lines).
pub fn sample(name: String, raw: &[u8], null_sender: bool, max_body: usize, engine: &Engine) -> Option<Sample> {
    let raw = hostile_support::with_eol(raw.to_vec(), "\r\n");
    let e = invariants::split_entity(&raw);
    let mut headers = Vec::new();
    for f in invariants::header_fields(e.header) {
        let colon = f.iter().position(|&c| c == b':')?;
        let value = f[colon + 1..].strip_suffix(b"\r\n").unwrap_or(&f[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        let name = f[..colon].to_vec();
        if name.is_empty() || name.contains(&0) || value.contains(&0) || name.iter().any(|c| c.is_ascii_whitespace()) {
            return None;
        }
        headers.push((name, value.to_vec()));
    }
    let body = e.body.to_vec();
    let canonical = canonical(&headers, &body);
    let opts = Options { recipient: Some(RECIPIENT), ..Options::default() };
    let expected = match (null_sender && body.len() <= max_body, engine.process_with(&canonical, &opts)) {
        (true, Outcome::Modify(m)) => Some(m),
        _ => None,
    };
    Some(Sample { name, sender: if null_sender { "<>" } else { "<alice@example.org>" }, headers, body, canonical, expected })
}

/// "Name: value" CRLF lines, a blank line, the body: how the milter reassembles a message.
pub fn canonical(headers: &[(Vec<u8>, Vec<u8>)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in headers {
        out.extend_from_slice(n);
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// How far a message gets before the client stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fate {
    Complete,
    Abort,
    Drop,
    /// Everything but the end of message (the caller sends it).
    Hold,
}

/// How a message ended on the client's side.
#[derive(Debug)]
pub enum Sent {
    /// Let go at MAIL FROM (the milter wants no more of it).
    LetGo,
    /// End of message answered with these changes and this status.
    Answered(EomActions, Status),
    /// The client stopped mid-message, as `Fate` said.
    Stopped,
}

/// Send one message as far as `fate` says; `pick(n)` chooses in 0..n (where to stop,
/// body chunk sizes). `Err` when the milter answers what it never may, or not at all.
pub async fn send(conn: &mut TestConnection, s: &Sample, fate: Fate, pick: &mut impl FnMut(usize) -> usize) -> Result<Sent, String> {
    let go_on = |st: &Status| matches!(st, Status::Continue | Status::Noreply);
    let st = conn.mail([s.sender, "SIZE=1000"]).await.map_err(|e| format!("{}: mail: {e:?}", s.name))?;
    if st == Status::Accept {
        return Ok(Sent::LetGo);
    }
    if !go_on(&st) {
        return Err(format!("{}: MAIL answered {st:?}", s.name));
    }
    let st = conn.rcpt([format!("<{RECIPIENT}>")]).await.map_err(|e| format!("{}: rcpt: {e:?}", s.name))?;
    if !go_on(&st) {
        return Err(format!("{}: RCPT answered {st:?}", s.name));
    }
    match conn.data().await {
        Ok(st) if go_on(&st) => {}
        Ok(st) => return Err(format!("{}: DATA answered {st:?}", s.name)),
        Err(TestError::MilterUsage) => {}
        Err(e) => return Err(format!("{}: data: {e:?}", s.name)),
    }
    let stop_at = if matches!(fate, Fate::Complete | Fate::Hold) { usize::MAX } else { pick(s.headers.len() + 2) };
    for (i, (n, v)) in s.headers.iter().enumerate() {
        if i == stop_at {
            return Ok(Sent::Stopped);
        }
        let (n, v) = (CString::new(n.clone()).unwrap(), CString::new(v.clone()).unwrap());
        let st = conn.header(n, v).await.map_err(|e| format!("{}: header: {e:?}", s.name))?;
        if !go_on(&st) {
            return Err(format!("{}: header answered {st:?}", s.name));
        }
    }
    // A milter without an end-of-headers callback negotiates the stage away.
    match conn.eoh().await {
        Ok(_) | Err(TestError::MilterUsage) => {}
        Err(e) => return Err(format!("{}: eoh: {e:?}", s.name)),
    }
    // Body in MTA-sized chunks of varying length.
    let mut rest = &s.body[..];
    while !rest.is_empty() {
        let n = rest.len().min(1 + pick(65_535));
        let st = conn.body(rest[..n].to_vec()).await.map_err(|e| format!("{}: body: {e:?}", s.name))?;
        if st == Status::Skip {
            break;
        }
        if !go_on(&st) {
            return Err(format!("{}: body answered {st:?}", s.name));
        }
        rest = &rest[n..];
    }
    if fate != Fate::Complete {
        return Ok(Sent::Stopped);
    }
    let (actions, st) = conn.eom().await.map_err(|e| format!("{}: eom: {e:?}", s.name))?;
    if !matches!(st, Status::Continue | Status::Accept) {
        return Err(format!("{}: end of message answered {st:?}", s.name));
    }
    Ok(Sent::Answered(actions, st))
}

/// What became of a message the milter answered.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Rewritten,
    Unchanged,
    /// A rewrite was expected but the message passed unchanged (fail-open, e.g. timeout).
    PassedInstead,
    Corrupted(String),
}

/// Compare the milter's changes with the engine's in-process answer on the same bytes.
pub fn judge(s: &Sample, actions: &EomActions) -> Verdict {
    let changed = actions.actions.iter().any(|a| !matches!(a, EomAction::Progress));
    let Some(expected) = &s.expected else {
        return if changed { Verdict::Corrupted(format!("{}: not to be rewritten, yet changed: {:?}", s.name, actions.actions)) } else { Verdict::Unchanged };
    };
    if !changed {
        return Verdict::PassedInstead;
    }
    let (m, out) = reassemble(s, actions);
    let check = invariants::check_rewrite(&s.canonical, &m, &out).and_then(|()| {
        if m.body == expected.body {
            Ok(())
        } else {
            Err("body differs from the filter's rewrite of the same message".into())
        }
    });
    match check {
        Ok(()) => Verdict::Rewritten,
        Err(e) => Verdict::Corrupted(format!("{}: {e}", s.name)),
    }
}

/// Apply the milter's actions as the MTA would; also express them as a `Modification`.
pub fn reassemble(s: &Sample, actions: &EomActions) -> (Modification, Vec<u8>) {
    let mut headers = s.headers.clone();
    let mut edits = Vec::new();
    let mut body: Option<Vec<u8>> = None;
    let text = |c: &std::ffi::CStr| String::from_utf8_lossy(c.to_bytes()).into_owned();
    let nth = |h: &[(Vec<u8>, Vec<u8>)], name: &[u8], index: i32| {
        h.iter().enumerate().filter(|(_, (n, _))| n.eq_ignore_ascii_case(name)).nth((index - 1).max(0) as usize).map(|(i, _)| i)
    };
    for a in &actions.actions {
        match a {
            EomAction::AddHeader { name, value } => {
                headers.push((name.to_bytes().to_vec(), value.to_bytes().to_vec()));
                edits.push(HeaderEdit::Add { name: text(name), value: text(value) });
            }
            EomAction::InsertHeader { index, name, value } => {
                let at = (*index).clamp(0, headers.len() as i32) as usize;
                headers.insert(at, (name.to_bytes().to_vec(), value.to_bytes().to_vec()));
                edits.push(HeaderEdit::Add { name: text(name), value: text(value) });
            }
            EomAction::ChangeHeader { name, index, value } => {
                match nth(&headers, name.to_bytes(), *index) {
                    Some(i) => headers[i].1 = value.to_bytes().to_vec(),
                    None => headers.push((name.to_bytes().to_vec(), value.to_bytes().to_vec())),
                }
                edits.push(HeaderEdit::Set { name: text(name), value: text(value) });
            }
            EomAction::DeleteHeader { name, index } => {
                if let Some(i) = nth(&headers, name.to_bytes(), *index) {
                    headers.remove(i);
                }
                edits.push(HeaderEdit::Remove { name: text(name) });
            }
            EomAction::ReplaceBody { chunk } => body.get_or_insert_with(Vec::new).extend_from_slice(chunk),
            // Anything else (recipients, sender, quarantine) is never asked for: flag it.
            other => edits.push(HeaderEdit::Add { name: format!("unexpected-action:{other:?}"), value: String::new() }),
        }
    }
    let out = canonical(&headers, body.as_deref().unwrap_or(&s.body));
    (Modification { header_edits: edits, body, summary: String::new() }, out)
}

/// A running `plainbounce serve` on 127.0.0.1 with a config file; killed on drop.
pub struct Server {
    child: std::sync::Mutex<std::process::Child>,
    pub pid: u32,
    pub addr: String,
    pub port: u16,
    pub dir: std::path::PathBuf,
}

impl Server {
    /// Start `binary serve` with `config(port)` as its configuration file.
    pub fn start(binary: &std::path::Path, tag: &str, config: impl Fn(u16) -> String) -> Result<Server, String> {
        let dir = std::env::temp_dir().join(format!("plainbounce-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        std::fs::write(dir.join("plainbounce.toml"), config(port)).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
        let child = std::process::Command::new(binary)
            .args(["serve", "--config"])
            .arg(dir.join("plainbounce.toml"))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let pid = child.id();
        let server = Server { child: std::sync::Mutex::new(child), pid, addr: format!("127.0.0.1:{port}"), port, dir };
        server.wait_listening()?;
        Ok(server)
    }

    /// The exit status once the server has ended.
    pub fn exited(&self) -> Option<std::process::ExitStatus> {
        self.child.lock().unwrap().try_wait().ok().flatten()
    }

    fn wait_listening(&self) -> Result<(), String> {
        for _ in 0..200 {
            if let Some(st) = self.exited() {
                return Err(format!("server exited at start: {st}; log: {}", self.log()));
            }
            if std::net::TcpStream::connect(&self.addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err("server did not listen within 20 s".into())
    }

    pub fn config_path(&self) -> std::path::PathBuf {
        self.dir.join("plainbounce.toml")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let _ = std::process::Command::new("kill").arg(format!("-{sig}")).arg(self.pid.to_string()).status();
    }

    pub async fn connect(&self) -> Result<TestConnection, String> {
        TestConnection::configure()
            .read_timeout(std::time::Duration::from_secs(60))
            .write_timeout(std::time::Duration::from_secs(60))
            .open_tcp(self.addr.as_str())
            .await
            .map_err(|e| format!("connect: {e:?}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap();
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
