//! The milter door (`plainbounce serve`): a thin indymilter adapter around the engine.
//!
//! Per message: at MAIL FROM anything but the null sender is let go at once (`Accept`,
//! so the MTA sends us nothing more of it); a bounce is taken up to `max_body` (its first
//! 128 KB in memory, the rest in an unlinked temp file), and at end of message the
//! rewriter runs on a blocking thread, one per CPU at most, within `timeout_ms`. Whatever
//! goes wrong, the message passes unchanged: the milter never rejects, and tempfails in
//! one case only, when the spilled body cannot be read back after part of the new body
//! went out (the MTA then drops the changes and keeps the message, instead of delivering
//! it truncated).

mod apply;
pub mod listen;
mod message;

use crate::config::Config;
use crate::engine::{Engine, HeadOutcome, Options, Outcome, Tail};
use crate::rewrite::Splice;
use anyhow::Result;
use arc_swap::ArcSwap;
use indymilter::{Actions, Callbacks, Context, EomContext, Listener, MacroStage, NegotiateContext, ProtoOpts, Status};
use message::{Message, MessageBuffer, Unbuffered};
use std::any::Any;
use std::ffi::CString;
use std::future::{ready, Future};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::time::{timeout_at, Instant};

/// What the milter needs from the engine; tests plug in fakes that modify, panic or hang.
pub trait Rewriter: Send + Sync + 'static {
    /// `recipient` is the bounce's envelope recipient (the first RCPT TO).
    fn process(&self, raw: &[u8], recipient: Option<&str>) -> Outcome;

    /// Decide on the head of a message when `tail` follows; by default only whole
    /// messages are processed.
    fn process_head(&self, head: &[u8], tail: &Tail, recipient: Option<&str>) -> HeadOutcome {
        if tail.len > 0 {
            return HeadOutcome::NeedsWhole("this rewriter takes whole messages".into());
        }
        HeadOutcome::Decided(self.process(head, recipient).map_body(|b| Splice::whole(b, head)))
    }
}

impl Rewriter for Engine {
    fn process(&self, raw: &[u8], recipient: Option<&str>) -> Outcome {
        self.process_with(raw, &Options { recipient, ..Options::default() })
    }

    fn process_head(&self, head: &[u8], tail: &Tail, recipient: Option<&str>) -> HeadOutcome {
        Engine::process_head(self, head, tail, &Options { recipient, ..Options::default() })
    }
}

/// The actions a rewrite may need; nothing else is asked of the MTA.
pub const ACTIONS: Actions = Actions::ADD_HEADER.union(Actions::CHANGE_HEADER).union(Actions::REPLACE_BODY);

/// How long shutdown waits for messages in flight before closing their connections.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Per-message limits from the configuration, swapped together with the rewriter.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub max_body: usize,
    pub timeout: Duration,
    pub only_null_sender: bool,
}

impl Settings {
    pub fn from_config(c: &Config) -> Settings {
        Settings { max_body: c.max_body, timeout: Duration::from_millis(c.timeout_ms), only_null_sender: c.only_null_sender }
    }
}

/// A rewriter and its settings: what one message uses from start to end.
struct Loaded<R> {
    rewriter: R,
    settings: Settings,
}

type Build<R> = Box<dyn Fn(Config) -> Result<R> + Send + Sync>;

/// The milter: the current rewriter (swapped atomically on reload) and the count of
/// messages in flight (for a graceful shutdown).
pub struct Milter<R> {
    current: ArcSwap<Loaded<R>>,
    build: Build<R>,
    in_flight: Arc<watch::Sender<usize>>,
    draining: AtomicBool,
    /// Rewrites running at once: more than the CPUs cannot run anyway, and each one
    /// running holds its working set and fills its thread's caches.
    slots: Arc<Semaphore>,
}

/// How many rewrites may run at once: the number of CPUs.
pub fn rewrite_slots() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

impl Milter<Engine> {
    /// The real thing: an `Engine` built from the configuration.
    pub fn with_engine(config: Config) -> Result<Milter<Engine>> {
        Milter::new(config, Engine::new)
    }
}

impl<R: Rewriter> Milter<R> {
    /// Build the first rewriter now; `build` is used again on every reload.
    pub fn new(config: Config, build: impl Fn(Config) -> Result<R> + Send + Sync + 'static) -> Result<Milter<R>> {
        let loaded = load(&build, config)?;
        Ok(Milter {
            current: ArcSwap::from_pointee(loaded),
            build: Box::new(build),
            in_flight: Arc::new(watch::Sender::new(0)),
            draining: AtomicBool::new(false),
            slots: Arc::new(Semaphore::new(rewrite_slots())),
        })
    }

    /// Re-read the configuration (the embedded default without a file) and swap in a new
    /// rewriter. On error nothing changes. Messages in flight finish with the old one.
    pub fn reload(&self, path: Option<&Path>) -> Result<Config> {
        let config = match path {
            Some(path) => Config::load(path)?,
            None => Config::embedded(),
        };
        self.install(config.clone())?;
        Ok(config)
    }

    /// Swap in a rewriter built from `config`, or keep the current one if that fails.
    pub fn install(&self, config: Config) -> Result<()> {
        let loaded = load(&self.build, config)?;
        self.current.store(Arc::new(loaded));
        Ok(())
    }

    /// The settings new messages get.
    pub fn settings(&self) -> Settings {
        self.current.load().settings.clone()
    }

    /// Messages buffered or being rewritten right now.
    pub fn in_flight(&self) -> usize {
        *self.in_flight.borrow()
    }

    /// Serve MTA connections until `stop` completes, then stop accepting, let messages
    /// in flight finish (at most [`DRAIN_TIMEOUT`]) and return.
    pub async fn run<L>(self: Arc<Self>, listener: L, max_connections: usize, stop: impl Future) -> io::Result<()>
    where
        L: Listener + listen::Unanswered,
        L::Io: listen::NoDelay,
    {
        let quiet_ok = listener.unanswered_ok();
        let close = Arc::new(listen::CloseSignal::default());
        let listener = listen::Closable::new(listener, close.clone());
        let config = indymilter::Config { max_connections, actions: ACTIONS, ..Default::default() };
        let me = self.clone();
        let shutdown = async move {
            stop.await;
            close.close();
            me.draining.store(true, Ordering::SeqCst);
            tracing::info!(in_flight = me.in_flight(), "shutting down: no new connections, finishing messages in flight");
            let mut rx = me.in_flight.subscribe();
            if tokio::time::timeout(DRAIN_TIMEOUT, rx.wait_for(|n| *n == 0)).await.is_err() {
                tracing::warn!(in_flight = me.in_flight(), "messages still in flight after {DRAIN_TIMEOUT:?}; closing anyway");
            }
        };
        indymilter::run(listener, self.callbacks(quiet_ok), config, shutdown).await
    }

    fn callbacks(self: Arc<Self>, quiet_ok: bool) -> Callbacks<Connection<R>> {
        let slots = self.slots.clone();
        Callbacks::new()
            .on_negotiate(move |cx, actions, opts| Box::pin(ready(negotiate(cx, actions, opts, quiet_ok))))
            .on_mail(move |cx, args| Box::pin(ready(self.mail(cx, &args))))
            .on_rcpt(|cx, args| Box::pin(ready(rcpt(cx, &args))))
            // Postfix sends the DATA macros even with the stage negotiated away, unanswered,
            // and its next write then waits for our delayed ACK (40 ms per message): an
            // answer to DATA avoids that on TCP (on a unix socket no reply is asked for).
            .on_data(|cx| Box::pin(ready(go_on(cx))))
            .on_header(|cx, name, value| Box::pin(ready(header(cx, name, &value))))
            .on_body(|cx, chunk| Box::pin(ready(body(cx, &chunk))))
            .on_eom(move |cx| Box::pin(eom(cx, slots.clone())))
            .on_abort(|cx| Box::pin(ready(abort(cx))))
    }

    /// A new message: reset the connection's state; keep only bounces.
    fn mail(&self, cx: &mut Context<Connection<R>>, args: &[CString]) -> Status {
        let conn = cx.data.get_or_insert_with(Connection::default);
        conn.message = None;
        if self.draining.load(Ordering::Relaxed) {
            return Status::Accept;
        }
        let loaded = self.current.load();
        if loaded.settings.only_null_sender && !message::is_null_sender(args) {
            tracing::trace!("sender is not null: not a bounce, let go");
            return Status::Accept;
        }
        self.in_flight.send_modify(|n| *n += 1);
        conn.message = Some(Pending {
            content: Ok(MessageBuffer::new(loaded.settings.max_body, message::size_hint(args))),
            loaded: arc_swap::Guard::into_inner(loaded),
            recipient: None,
            _in_flight: InFlight(self.in_flight.clone()),
        });
        Status::Continue
    }
}

fn load<R>(build: &impl Fn(Config) -> Result<R>, config: Config) -> Result<Loaded<R>> {
    let settings = Settings::from_config(&config);
    Ok(Loaded { rewriter: build(config)?, settings })
}

/// Per-connection state (one connection carries any number of messages).
pub struct Connection<R> {
    actions: Actions,
    skip: bool,
    /// No replies at RCPT, DATA and headers (negotiated on unix sockets).
    quiet: bool,
    message: Option<Pending<R>>,
}

impl<R> Default for Connection<R> {
    fn default() -> Self {
        Connection { actions: ACTIONS, skip: false, quiet: false, message: None }
    }
}

/// A bounce being received.
struct Pending<R> {
    loaded: Arc<Loaded<R>>,
    /// The buffered message, or why buffering stopped.
    content: Result<MessageBuffer, Unbuffered>,
    /// The first envelope recipient.
    recipient: Option<String>,
    _in_flight: InFlight,
}

/// Counts a message in flight until dropped (at end, abort or lost connection).
struct InFlight(Arc<watch::Sender<usize>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// Ask only for the actions we use, as far as the MTA offers them (asking for more
/// would end the session), for the queue id at end of message, and, where `quiet_ok`
/// (see [`listen::Unanswered`]), for no replies at RCPT, DATA and each header: a bounce's
/// twenty-odd headers then cost the MTA no round trip each.
fn negotiate<R: Rewriter>(cx: &mut NegotiateContext<Connection<R>>, offered: Actions, opts: ProtoOpts, quiet_ok: bool) -> Status {
    cx.requested_actions = ACTIONS & offered;
    cx.requested_macros.insert(MacroStage::Eom, c"i".into());
    let skip = opts.contains(ProtoOpts::SKIP);
    let quiet = quiet_ok && opts.contains(QUIET);
    if quiet {
        cx.requested_opts |= QUIET;
    }
    tracing::debug!(unanswered = quiet, "session negotiated");
    cx.data = Some(Connection { actions: cx.requested_actions, skip, quiet, message: None });
    Status::Continue
}

/// The stages whose answer is always "continue": negotiated without replies where the
/// socket allows it.
pub const QUIET: ProtoOpts = ProtoOpts::NOREPLY_RCPT.union(ProtoOpts::NOREPLY_DATA).union(ProtoOpts::NOREPLY_HEADER);

/// "Continue", or no reply at all where that was negotiated.
fn go_on<R: Rewriter>(cx: &Context<Connection<R>>) -> Status {
    if cx.data.as_ref().is_some_and(|c| c.quiet) { Status::Noreply } else { Status::Continue }
}

fn pending<R: Rewriter>(cx: &mut Context<Connection<R>>) -> Option<&mut Pending<R>> {
    cx.data.as_mut()?.message.as_mut()
}

fn rcpt<R: Rewriter>(cx: &mut Context<Connection<R>>, args: &[CString]) -> Status {
    if let Some(p) = pending(cx) {
        if p.recipient.is_none() {
            p.recipient = message::recipient_address(args);
        }
    }
    go_on(cx)
}

fn header<R: Rewriter>(cx: &mut Context<Connection<R>>, name: CString, value: &CString) -> Status {
    if let Some(p) = pending(cx) {
        if let Ok(buffer) = &mut p.content {
            if let Err(e) = buffer.add_header(name, value) {
                p.content = Err(e);
            }
        }
    }
    go_on(cx)
}

fn body<R: Rewriter>(cx: &mut Context<Connection<R>>, chunk: &[u8]) -> Status {
    let Some(conn) = cx.data.as_mut() else { return Status::Continue };
    let Some(p) = conn.message.as_mut() else { return Status::Continue };
    if let Ok(buffer) = &mut p.content {
        if let Err(e) = buffer.add_body(chunk) {
            p.content = Err(e); // frees the buffer now
        }
    }
    if p.content.is_ok() {
        return Status::Continue;
    }
    // Over the cap: the MTA skips the rest of the body (we log at end of message, when
    // the queue id is known), or, if it cannot skip, stops calling us for this message.
    if conn.skip {
        return Status::Skip;
    }
    if let Some(p) = conn.message.take() {
        log_too_large(None, &p);
    }
    Status::Accept
}

fn abort<R: Rewriter>(cx: &mut Context<Connection<R>>) -> Status {
    if let Some(conn) = cx.data.as_mut() {
        if conn.message.take().is_some() {
            tracing::debug!("message aborted by the MTA");
        }
    }
    Status::Continue
}

async fn eom<R: Rewriter>(cx: &mut EomContext<Connection<R>>, slots: Arc<Semaphore>) -> Status {
    let Some(conn) = cx.data.as_mut() else { return Status::Continue };
    let Some(p) = conn.message.take() else { return Status::Continue };
    let queue_id = cx.macros.get(c"i").map(|v| v.to_string_lossy().into_owned());
    let queue_id = queue_id.as_deref();
    let buffer = match p.content {
        Ok(buffer) => buffer,
        Err(_) => {
            log_too_large(queue_id, &p);
            return Status::Continue;
        }
    };
    let (message, header_names) = buffer.finish();
    let domain = p.recipient.as_deref().and_then(message::domain);
    let domain = domain.as_deref();
    match rewrite(p.loaded.clone(), slots, message, p.recipient.clone()).await {
        Ok((Outcome::Pass(why), _)) => log(queue_id, domain, "unchanged", &why),
        Ok((Outcome::Modify(m), message)) => match apply::plan(&m, &header_names) {
            Ok(plan) if conn.actions.contains(plan.needs) => match apply::send(&plan, &message, &cx.actions).await {
                Ok(()) => log(queue_id, domain, "modified", &m.summary),
                // Part of the new body is out: continuing would deliver it truncated.
                // Tempfail makes the MTA drop every change and keep the message queued.
                Err(e) if e.body_started => {
                    log(queue_id, domain, "tempfail", &e.why);
                    return Status::Tempfail;
                }
                Err(e) => log(queue_id, domain, "failed-open", &e.why),
            },
            Ok(plan) => {
                let missing = plan.needs.difference(conn.actions);
                log(queue_id, domain, "failed-open", &format!("the MTA does not allow {missing:?}"))
            }
            Err(e) => log(queue_id, domain, "failed-open", &format!("unusable rewrite: {e}")),
        },
        Err(e) => log(queue_id, domain, "failed-open", &e),
    }
    Status::Continue
}

/// Run the rewriter on a blocking thread, once a slot is free, all within the time
/// budget. A panic is caught by the blocking task (like `catch_unwind`); a rewriter over
/// time is left to finish on its own (keeping its slot) and its result dropped.
async fn rewrite<R: Rewriter>(
    loaded: Arc<Loaded<R>>,
    slots: Arc<Semaphore>,
    message: Message,
    recipient: Option<String>,
) -> Result<(Outcome<Splice>, Message), String> {
    let budget = loaded.settings.timeout;
    let deadline = Instant::now() + budget;
    let over = |what: &str| format!("{what} longer than timeout_ms = {}", budget.as_millis());
    let slot = match timeout_at(deadline, slots.acquire_owned()).await {
        Ok(Ok(slot)) => slot,
        Ok(Err(_)) => return Err("no rewrite slots (closed)".into()),
        Err(_) => return Err(over("all rewrite slots were busy for")),
    };
    let task = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let outcome = process(&loaded.rewriter, &message, recipient.as_deref());
        outcome.map(|o| (o, message))
    });
    match timeout_at(deadline, task).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) if e.is_panic() => Err(format!("rewriter panicked: {}", panic_text(&*e.into_panic()))),
        Ok(Err(e)) => Err(format!("rewriter failed: {e}")),
        Err(_) => Err(over("rewriting took")),
    }
}

/// The head alone when it is enough, else the whole message read back (memory for it
/// is taken only here, within a rewrite slot).
fn process<R: Rewriter>(rewriter: &R, message: &Message, recipient: Option<&str>) -> Result<Outcome<Splice>, String> {
    match rewriter.process_head(&message.head, &message.tail(), recipient) {
        HeadOutcome::Decided(outcome) => Ok(outcome),
        HeadOutcome::NeedsWhole(why) => {
            tracing::debug!(size = message.len(), "rewriting the whole message: {why}");
            let raw = message.whole().map_err(|e| format!("cannot read the spilled body back: {e}"))?;
            Ok(rewriter.process(&raw, recipient).map_body(|b| Splice::whole(b, &raw)))
        }
    }
}

fn panic_text(payload: &(dyn Any + Send)) -> &str {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => s,
        (_, Some(s)) => s,
        _ => "(no message)",
    }
}

fn log_too_large<R>(queue_id: Option<&str>, p: &Pending<R>) {
    if let Err(e) = &p.content {
        let reason = format!("{}: passed untouched", e.0);
        let domain = p.recipient.as_deref().and_then(message::domain);
        log(queue_id, domain.as_deref(), "too-large", &reason);
    }
}

/// The one log line per handled bounce.
fn log(queue_id: Option<&str>, rcpt_domain: Option<&str>, action: &str, reason: &str) {
    let (queue_id, rcpt_domain) = (queue_id.unwrap_or("-"), rcpt_domain.unwrap_or("-"));
    if action == "failed-open" {
        tracing::error!(queue_id, rcpt_domain, action, reason, "message passed unchanged after an error");
    } else {
        tracing::info!(queue_id, rcpt_domain, action, reason, "message handled");
    }
}
