//! Milter sockets: parse the libmilter-style address, bind it (removing a stale unix
//! socket, applying its permissions), and a listener that can stop accepting on demand.

use anyhow::{bail, Context as _, Result};
use indymilter::{EitherListener, EitherStream, Listener};
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::time::Sleep;

/// Where to listen, as Postfix and Sendmail write it.
#[derive(Debug, Clone, PartialEq)]
pub enum SocketSpec {
    /// `inet:PORT@HOST`, `inet6:PORT@HOST`; `inet:PORT` means every interface.
    Inet { host: String, port: u16 },
    /// `unix:/path`, `local:/path` or a bare absolute path.
    Unix(PathBuf),
}

impl SocketSpec {
    pub fn parse(spec: &str) -> Result<SocketSpec> {
        let (kind, rest) = spec.split_once(':').unwrap_or(("unix", spec));
        match kind {
            "unix" | "local" if rest.starts_with('/') => Ok(SocketSpec::Unix(PathBuf::from(rest))),
            "inet" | "inet6" => {
                let (port, host) = rest.split_once('@').unwrap_or((rest, if kind == "inet" { "0.0.0.0" } else { "::" }));
                let port = port.parse().with_context(|| format!("socket {spec:?}: bad port {port:?}"))?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                if host.is_empty() {
                    bail!("socket {spec:?}: empty host");
                }
                Ok(SocketSpec::Inet { host: host.into(), port })
            }
            _ => bail!("socket {spec:?}: expected inet:PORT@HOST, inet6:PORT@HOST or unix:/absolute/path"),
        }
    }
}

/// Parse a permission string such as "0660".
pub fn parse_mode(mode: &str) -> Result<u32> {
    let digits = mode.strip_prefix("0o").unwrap_or(mode);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 && !digits.is_empty() => Ok(m),
        _ => bail!("socket_mode {mode:?}: expected octal permissions such as \"0660\""),
    }
}

pub type AnyListener = EitherListener<TcpListener, UnixListener>;

/// A bound socket.
pub struct Bound {
    pub listener: AnyListener,
    /// The address actually bound (for the log; port 0 becomes the real port).
    pub local: String,
    pub socket_file: SocketFile,
}

/// Removes a unix socket file when dropped (after the milter has stopped).
pub struct SocketFile(Option<PathBuf>);

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

/// Bind the socket. Must be called inside a tokio runtime.
pub async fn bind(spec: &SocketSpec, mode: u32) -> Result<Bound> {
    match spec {
        SocketSpec::Inet { host, port } => {
            let l = TcpListener::bind((host.as_str(), *port))
                .await
                .with_context(|| format!("cannot listen on {host} port {port}"))?;
            let local = l.local_addr()?.to_string();
            Ok(Bound { listener: EitherListener::Tcp(l), local, socket_file: SocketFile(None) })
        }
        SocketSpec::Unix(path) => {
            remove_stale(path)?;
            let l = UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
            let socket_file = SocketFile(Some(path.clone()));
            let bound = Bound { listener: EitherListener::Unix(l), local: path.display().to_string(), socket_file };
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .with_context(|| format!("cannot set permissions of {}", path.display()))?;
            Ok(bound)
        }
    }
}

/// A socket file left behind by a crash is removed; one a live milter answers on, or a
/// file that is not a socket at all, is an error.
fn remove_stale(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot inspect {}", path.display())),
        Ok(md) if md.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                bail!("{} is in use by a running process", path.display());
            }
            fs::remove_file(path).with_context(|| format!("cannot remove stale socket {}", path.display()))
        }
        Ok(_) => bail!("{} exists and is not a socket; not touching it", path.display()),
    }
}

/// Tells a [`Closable`] listener to stop accepting.
#[derive(Default)]
pub struct CloseSignal {
    closed: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl CloseSignal {
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(w) = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            w.wake();
        }
    }
}

/// A listener that drops its socket once closed, so the MTA gets "connection refused"
/// (and applies its default action) while running sessions finish. An accept error
/// (such as running out of file descriptors) is logged and retried after a pause:
/// indymilter would otherwise stop the whole milter.
pub struct Closable<L> {
    inner: Option<L>,
    signal: Arc<CloseSignal>,
    pause: Option<Pin<Box<Sleep>>>,
}

/// How long to wait after a failed accept.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

impl<L> Closable<L> {
    pub fn new(inner: L, signal: Arc<CloseSignal>) -> Closable<L> {
        Closable { inner: Some(inner), signal, pause: None }
    }
}

impl<L: Listener> Listener for Closable<L>
where
    L::Io: NoDelay,
{
    type Io = L::Io;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<L::Io>> {
        // Register first, then check: `close` sets the flag before taking the waker.
        *self.signal.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        if self.signal.closed.load(Ordering::SeqCst) {
            self.inner = None;
        }
        loop {
            if let Some(pause) = &mut self.pause {
                ready!(pause.as_mut().poll(cx));
                self.pause = None;
            }
            let Some(listener) = &mut self.inner else { return Poll::Pending };
            match ready!(listener.poll_accept(cx)) {
                Ok(stream) => {
                    stream.no_delay();
                    return Poll::Ready(Ok(stream));
                }
                Err(e) => {
                    tracing::warn!(error = e.to_string(), "cannot accept a connection; retrying");
                    self.pause = Some(Box::pin(tokio::time::sleep(ACCEPT_PAUSE)));
                }
            }
        }
    }
}

/// Replies go out as a 5-byte length and then the payload; with Nagle's algorithm a
/// large reply's tail would wait for the MTA's delayed ACK (40 ms) on TCP.
pub trait NoDelay {
    fn no_delay(&self);
}

impl NoDelay for TcpStream {
    fn no_delay(&self) {
        let _ = self.set_nodelay(true);
    }
}

impl NoDelay for UnixStream {
    fn no_delay(&self) {}
}

impl NoDelay for EitherStream<TcpStream, UnixStream> {
    fn no_delay(&self) {
        if let EitherStream::Tcp(s) = self {
            s.no_delay();
        }
    }
}

/// Whether the MTA may send commands without waiting for our reply on this socket.
/// On TCP it may not: Postfix leaves Nagle's algorithm on for milter sockets, so a
/// command written while the one before is still unacknowledged waits for our delayed
/// ACK (40 ms; the DATA-stage stall in BENCHMARKS.md, fix 4). On a unix socket writes
/// go at once, and the stages we always continue on are asked for without replies.
pub trait Unanswered {
    fn unanswered_ok(&self) -> bool;
}

impl Unanswered for TcpListener {
    fn unanswered_ok(&self) -> bool {
        false
    }
}

impl Unanswered for UnixListener {
    fn unanswered_ok(&self) -> bool {
        true
    }
}

impl Unanswered for AnyListener {
    fn unanswered_ok(&self) -> bool {
        matches!(self, EitherListener::Unix(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_socket_specs() {
        assert_eq!(SocketSpec::parse("inet:8890@127.0.0.1").unwrap(), SocketSpec::Inet { host: "127.0.0.1".into(), port: 8890 });
        assert_eq!(SocketSpec::parse("inet6:8890@[::1]").unwrap(), SocketSpec::Inet { host: "::1".into(), port: 8890 });
        assert_eq!(SocketSpec::parse("inet:25").unwrap(), SocketSpec::Inet { host: "0.0.0.0".into(), port: 25 });
        assert_eq!(SocketSpec::parse("unix:/run/pb.sock").unwrap(), SocketSpec::Unix("/run/pb.sock".into()));
        assert_eq!(SocketSpec::parse("local:/run/pb.sock").unwrap(), SocketSpec::Unix("/run/pb.sock".into()));
        assert_eq!(SocketSpec::parse("/run/pb.sock").unwrap(), SocketSpec::Unix("/run/pb.sock".into()));
        for bad in ["inet:x@h", "inet:99999@h", "inet:25@", "unix:relative", "tcp:1@h", "relative"] {
            assert!(SocketSpec::parse(bad).is_err(), "{bad}");
        }
    }

    /// Fails once, then hands out one stream, then nothing.
    struct Flaky(Vec<io::Result<tokio::io::DuplexStream>>);

    impl Listener for Flaky {
        type Io = tokio::io::DuplexStream;
        fn poll_accept(&mut self, _: &mut Context<'_>) -> Poll<io::Result<Self::Io>> {
            self.0.pop().map_or(Poll::Pending, Poll::Ready)
        }
    }

    impl NoDelay for tokio::io::DuplexStream {
        fn no_delay(&self) {}
    }

    #[tokio::test]
    async fn accept_errors_are_retried_and_close_stops_accepting() {
        let (stream, _other) = tokio::io::duplex(8);
        let flaky = Flaky(vec![Ok(stream), Err(io::Error::from_raw_os_error(24))]);
        let signal = Arc::new(CloseSignal::default());
        let mut l = Closable::new(flaky, signal.clone());
        assert!(l.accept().await.is_ok(), "the error was passed on instead of retried");
        signal.close();
        assert!(tokio::time::timeout(Duration::from_millis(50), l.accept()).await.is_err());
        assert!(l.inner.is_none(), "socket kept open after close");
    }

    #[test]
    fn parses_modes() {
        assert_eq!(parse_mode("0660").unwrap(), 0o660);
        assert_eq!(parse_mode("600").unwrap(), 0o600);
        assert_eq!(parse_mode("0o777").unwrap(), 0o777);
        for bad in ["", "0999", "rw-rw----", "01777"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }
}
