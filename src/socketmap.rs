//! Postfix socketmap server (socketmap_table(5)) answering `smtpd_reject_footer_maps`
//! lookups with footers from the knowledge base.
//!
//! Protocol: the client sends netstrings `name <space> key` and gets one netstring back
//! per request: `OK <data>`, `NOTFOUND `, `TEMP <reason>`, `TIMEOUT <reason>` or
//! `PERM <reason>`. Postfix keeps a connection open for several requests (it closes it
//! after 10 s idle or 100 s in all) and waits up to 100 s for an answer, so a lookup must
//! never stall. A malformed netstring loses the framing: it gets `PERM` and the
//! connection is closed. Lookup failures never reach mail flow: Postfix then sends its
//! reply without a footer.

use crate::config::{Config, FooterConfig};
use crate::footer::{Answer, Footers};
use crate::milter::listen::{self, Bound, SocketSpec};
use anyhow::{bail, Context, Result};
use arc_swap::ArcSwap;
use indymilter::{EitherListener, Listener};
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{timeout, Instant};
use tracing::{debug, info, warn};

/// Largest request accepted (payload octets). Postfix's own socketmap client takes
/// replies up to 100000 octets; requests (a reply text) are far smaller.
pub const MAX_REQUEST: usize = 100_000;

/// Most digits a length prefix may have (leading zeros included).
const MAX_LENGTH_DIGITS: usize = 10;

// ---------------------------------------------------------------------------------------
// Netstrings (http://cr.yp.to/proto/netstrings.txt): "<decimal length>:<payload>,"

/// Why a byte stream is not a valid netstring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetstringError {
    /// The length prefix is empty, not decimal, or has too many digits.
    BadLength,
    /// The announced length is over the limit.
    TooLong { len: usize, max: usize },
    /// The payload is not followed by a comma.
    MissingComma,
}

impl fmt::Display for NetstringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetstringError::BadLength => write!(f, "malformed netstring length"),
            NetstringError::TooLong { len, max } => write!(f, "netstring of {len} octets exceeds the limit of {max}"),
            NetstringError::MissingComma => write!(f, "netstring not terminated by a comma"),
        }
    }
}

impl std::error::Error for NetstringError {}

/// One netstring holding `payload`.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(payload);
    out.push(b',');
    out
}

/// Take one complete netstring off the front of `buf`. `Ok(None)` means more bytes are
/// needed; an error is reported as soon as the bytes seen so far prove it (an oversized
/// length is refused before its payload arrives).
pub fn decode(buf: &mut Vec<u8>, max: usize) -> Result<Option<Vec<u8>>, NetstringError> {
    let mut len: usize = 0;
    let mut colon = None;
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b'0'..=b'9' if i < MAX_LENGTH_DIGITS => {
                len = len * 10 + usize::from(b - b'0');
                if len > max {
                    return Err(NetstringError::TooLong { len, max });
                }
            }
            b':' if i > 0 => {
                colon = Some(i);
                break;
            }
            _ => return Err(NetstringError::BadLength),
        }
    }
    let Some(colon) = colon else { return Ok(None) };
    let end = colon + 1 + len;
    if buf.len() <= end {
        return Ok(None);
    }
    if buf[end] != b',' {
        return Err(NetstringError::MissingComma);
    }
    let payload = buf[colon + 1..end].to_vec();
    buf.drain(..=end);
    Ok(Some(payload))
}

// ---------------------------------------------------------------------------------------
// Requests and replies

/// A socketmap reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ok(String),
    NotFound,
    Temp(String),
    Timeout(String),
    Perm(String),
}

impl Reply {
    /// The reply as sent inside its netstring.
    pub fn payload(&self) -> String {
        match self {
            Reply::Ok(data) => format!("OK {data}"),
            Reply::NotFound => "NOTFOUND ".to_string(),
            Reply::Temp(why) => format!("TEMP {why}"),
            Reply::Timeout(why) => format!("TIMEOUT {why}"),
            Reply::Perm(why) => format!("PERM {why}"),
        }
    }
}

/// Answer one request payload (`name <space> key`). Never panics: a panic inside the
/// lookup becomes `TEMP`.
pub fn answer(footers: &Footers, request: &[u8]) -> Reply {
    let Some(space) = request.iter().position(|&b| b == b' ') else {
        return Reply::Perm("request is not \"name key\"".into());
    };
    let (name, key) = (&request[..space], &request[space + 1..]);
    let Ok(name) = std::str::from_utf8(name) else {
        return Reply::Perm("map name is not text".into());
    };
    let key = String::from_utf8_lossy(key);
    match catch_unwind(AssertUnwindSafe(|| footers.lookup(name, &key))) {
        Ok(Answer::Footer(f)) => Reply::Ok(f),
        Ok(Answer::NotFound) => Reply::NotFound,
        Ok(Answer::UnknownMap) => Reply::Perm(format!("unknown map name {:?}", printable(name))),
        Err(_) => Reply::Temp("internal error".into()),
    }
}

/// Untrusted text for a reply or a log line: printable ASCII, at most 100 characters.
fn printable(s: &str) -> String {
    s.chars().take(100).map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect()
}

// ---------------------------------------------------------------------------------------
// Server

/// Limits of the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Time to receive one whole request once its first byte has arrived (also the
    /// time allowed to write a reply).
    pub request_timeout: Duration,
    /// An idle connection is closed after this long.
    pub idle_timeout: Duration,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
    /// Largest request payload.
    pub max_request: usize,
}

impl ServerOptions {
    pub fn from_config(c: &FooterConfig) -> ServerOptions {
        ServerOptions {
            request_timeout: Duration::from_millis(c.request_timeout_ms),
            idle_timeout: Duration::from_millis(c.idle_timeout_ms),
            max_connections: c.max_connections.max(1),
            max_request: MAX_REQUEST,
        }
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions::from_config(&FooterConfig::default())
    }
}

/// Where the socketmap listens: TCP or a Unix socket, bound like the milter's socket
/// (same address syntax; a unix socket gets `socket_mode` and is removed at shutdown).
pub struct SocketmapListener {
    bound: Bound,
}

impl SocketmapListener {
    /// Bind `inet:PORT@HOST` or `unix:/path`; `mode` is the unix socket's permissions.
    pub async fn bind(spec: &str, mode: u32) -> Result<SocketmapListener> {
        let spec = SocketSpec::parse(spec).context("socketmap")?;
        Ok(SocketmapListener { bound: listen::bind(&spec, mode).await? })
    }

    /// The bound TCP address (for tests and logs).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match &self.bound.listener {
            EitherListener::Tcp(l) => l.local_addr().ok(),
            EitherListener::Unix(_) => None,
        }
    }
}

/// Footers that a reload can replace while the server runs; a request in flight keeps
/// the footers it started with.
pub struct SharedFooters(ArcSwap<Footers>);

impl SharedFooters {
    pub fn new(footers: Footers) -> Arc<SharedFooters> {
        Arc::new(SharedFooters(ArcSwap::from_pointee(footers)))
    }

    pub fn get(&self) -> Arc<Footers> {
        self.0.load_full()
    }

    pub fn replace(&self, footers: Footers) {
        self.0.store(Arc::new(footers));
    }
}

/// Footers for a configuration, with a warning when its language has no texts.
pub fn footers_for(config: &Config) -> Result<Footers> {
    let footers = Footers::from_config(config)?;
    let lang = &config.footer.lang;
    if !footers.languages().iter().any(|l| l.eq_ignore_ascii_case(lang)) {
        warn!(lang = %lang, known = %footers.languages().join(","), "socketmap: no texts in this language, footers will be in English");
    }
    Ok(footers)
}

/// Bind the configured `socketmap` address and serve footers from the configured
/// knowledge base until `shutdown` completes. This is the one call `serve` needs;
/// `run_shared` takes footers that the caller replaces on reload.
pub async fn run(config: &Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    run_shared(config, SharedFooters::new(footers_for(config)?), shutdown).await
}

pub async fn run_shared(config: &Config, footers: Arc<SharedFooters>, shutdown: impl Future<Output = ()>) -> Result<()> {
    let Some(spec) = &config.socketmap else {
        bail!("no socketmap address configured (socketmap = \"inet:PORT@HOST\")");
    };
    let listener = SocketmapListener::bind(spec, listen::parse_mode(&config.socket_mode)?).await?;
    let options = ServerOptions::from_config(&config.footer);
    serve_socketmap(listener, options, move || footers.get(), shutdown).await?;
    Ok(())
}

/// Serve socketmap requests on `listener` until `shutdown` completes. `footers` is
/// called once per request, so a reload takes effect at once.
pub async fn serve_socketmap<P>(
    mut listener: SocketmapListener,
    options: ServerOptions,
    footers: P,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    P: Fn() -> Arc<Footers> + Send + Sync + 'static,
{
    let name = listener.bound.local.clone();
    info!(listener = %name, "socketmap: serving map \"footer\"");
    let footers = Arc::new(footers);
    let options = Arc::new(options);
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = poll_fn(|cx| listener.bound.listener.poll_accept(cx)) => {
                let stream = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        warn!(error = %e, "socketmap: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    warn!(limit = options.max_connections, "socketmap: too many connections, closing a new one");
                    continue;
                };
                let (footers, options) = (footers.clone(), options.clone());
                tasks.spawn(async move {
                    let _slot = slot;
                    if let Err(e) = serve_connection(stream, &options, &*footers).await {
                        debug!(error = %e, "socketmap: connection ended");
                    }
                });
            }
        }
    }
    tasks.shutdown().await;
    drop(listener); // removes a unix socket file
    info!(listener = %name, "socketmap: stopped");
    Ok(())
}

/// Answer requests on one connection until the client closes it, stays idle too long,
/// is too slow with a request, or breaks the framing.
async fn serve_connection<S, P>(mut stream: S, options: &ServerOptions, footers: &P) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    P: Fn() -> Arc<Footers>,
{
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 8192];
    let mut request_started: Option<Instant> = None;
    loop {
        // Answer every complete request already buffered (pipelining).
        loop {
            match decode(&mut buf, options.max_request) {
                Ok(Some(request)) => {
                    let reply = answer(&footers(), &request);
                    debug!(request = %printable(&String::from_utf8_lossy(&request)), reply = %printable(&reply.payload()), "socketmap: lookup");
                    send(&mut stream, &reply, options).await?;
                    request_started = None;
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(error = %e, "socketmap: protocol error, closing the connection");
                    let _ = send(&mut stream, &Reply::Perm(e.to_string()), options).await;
                    return Ok(());
                }
            }
        }
        if !buf.is_empty() && request_started.is_none() {
            request_started = Some(Instant::now());
        }
        let wait = match request_started {
            None => options.idle_timeout,
            Some(t) => options.request_timeout.saturating_sub(t.elapsed()),
        };
        match timeout(wait, stream.read(&mut chunk)).await {
            Ok(Ok(0)) => {
                if !buf.is_empty() {
                    debug!("socketmap: client closed the connection in the middle of a request");
                }
                return Ok(());
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return Err(e),
            Err(_) if request_started.is_none() => return Ok(()),
            Err(_) => {
                warn!("socketmap: request not completed in time, closing the connection");
                let _ = send(&mut stream, &Reply::Timeout("request not completed in time".into()), options).await;
                return Ok(());
            }
        }
    }
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, reply: &Reply, options: &ServerOptions) -> io::Result<()> {
    let bytes = encode(reply.payload().as_bytes());
    match timeout(options.request_timeout, async {
        stream.write_all(&bytes).await?;
        stream.flush().await
    })
    .await
    {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "writing a reply timed out")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_payloads() {
        assert_eq!(Reply::Ok("x".into()).payload(), "OK x");
        assert_eq!(Reply::NotFound.payload(), "NOTFOUND ");
        assert_eq!(Reply::Perm("no".into()).payload(), "PERM no");
    }
}
