//! The MTA side of the milter protocol, as much as a load test needs: negotiate, then per
//! message the stages the milter asked for, honouring its no-reply options.
//!
//! Commands are encoded with indymilter's own message types. Unlike indymilter-test, the
//! socket has TCP_NODELAY and each command (with its macros) leaves in one write, so the
//! figures show the milter's work, not Nagle's algorithm waiting for a delayed ACK.

use indymilter::message::command::{
    Command, ConnInfoPayload, EnvAddrPayload, HeaderPayload, HeloPayload, MacroPayload, OptNegPayload,
};
use indymilter::message::reply::Reply;
use indymilter::message::{Message, PROTOCOL_VERSION};
use indymilter::{Actions, MacroStage, ProtoOpts, SocketInfo};
use std::ffi::CString;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(10);
/// Body chunk size of Postfix and Sendmail (MILTER_CHUNK_SIZE).
const CHUNK: usize = 65535;
/// Refuse replies larger than this (indymilter's own limit is 1 MB).
const MAX_REPLY: usize = 2 << 20;

/// A message as the MTA hands it over.
pub struct Mail {
    pub sender: String,
    pub recipient: String,
    pub headers: Vec<(String, String)>,
    /// CRLF line ends. `'static` so that chunks go out without copies.
    pub body: &'static [u8],
}

/// How a message ended.
pub enum End {
    /// At end of message, with what the milter changed.
    Eom { replaced_body: bool, changed_headers: bool },
    /// The milter accepted, rejected or discarded it before the end.
    Early,
}

pub struct Mta {
    conn: BufReader<TcpStream>,
    out: Vec<u8>,
    opts: ProtoOpts,
    wants_queue_id: bool,
    sent: u64,
}

impl Mta {
    /// Connect and negotiate, offering every action and protocol option.
    pub async fn open(addr: &str) -> io::Result<Mta> {
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr)).await.map_err(|_| timed_out())??;
        stream.set_nodelay(true)?;
        let mut mta = Mta { conn: BufReader::new(stream), out: Vec::new(), opts: ProtoOpts::empty(), wants_queue_id: false, sent: 0 };
        let offer = OptNegPayload { version: PROTOCOL_VERSION, actions: Actions::all(), opts: ProtoOpts::all() };
        match mta.step(Command::OptNeg(offer), ProtoOpts::empty()).await? {
            Some(Reply::OptNeg { opts, macros, .. }) => {
                mta.opts = opts;
                mta.wants_queue_id = macros.contains_key(&MacroStage::Eom);
            }
            other => return Err(invalid(format!("expected a negotiation reply, got {other:?}"))),
        }
        Ok(mta)
    }

    /// The message stages the milter asked for, e.g. "mail,rcpt,header,body".
    pub fn stages(&self) -> String {
        use ProtoOpts as O;
        let all = [
            ("connect", O::NO_CONNECT),
            ("helo", O::NO_HELO),
            ("mail", O::NO_MAIL),
            ("rcpt", O::NO_RCPT),
            ("data", O::NO_DATA),
            ("header", O::NO_HEADER),
            ("eoh", O::NO_EOH),
            ("body", O::NO_BODY),
        ];
        let on: Vec<&str> = all.iter().filter(|(_, off)| !self.opts.contains(*off)).map(|(name, _)| *name).collect();
        on.join(",")
    }

    /// The connection-level stages, once per connection as an MTA sends them.
    pub async fn greet(&mut self) -> io::Result<()> {
        if !self.opts.contains(ProtoOpts::NO_CONNECT) {
            let socket_info = SocketInfo::Inet(([192, 0, 2, 25], 25).into());
            let cmd = Command::ConnInfo(ConnInfoPayload { hostname: cstr("client.bench.invalid"), socket_info });
            self.step(cmd, ProtoOpts::NOREPLY_CONNECT).await?;
        }
        if !self.opts.contains(ProtoOpts::NO_HELO) {
            let cmd = Command::Helo(HeloPayload { hostname: cstr("client.bench.invalid") });
            self.step(cmd, ProtoOpts::NOREPLY_HELO).await?;
        }
        Ok(())
    }

    /// One message, from MAIL to the final end-of-message reply.
    pub async fn send(&mut self, mail: &Mail) -> io::Result<End> {
        use ProtoOpts as O;
        self.sent += 1;
        let env = |addr: &str| EnvAddrPayload { args: vec![cstr(addr)] };
        if !self.opts.contains(O::NO_MAIL) && !go(&self.step(Command::Mail(env(&mail.sender)), O::NOREPLY_MAIL).await?) {
            return Ok(End::Early);
        }
        if !self.opts.contains(O::NO_RCPT) && !go(&self.step(Command::Rcpt(env(&mail.recipient)), O::NOREPLY_RCPT).await?) {
            return Ok(End::Early);
        }
        if !self.opts.contains(O::NO_DATA) && !go(&self.step(Command::Data, O::NOREPLY_DATA).await?) {
            return Ok(End::Early);
        }
        if !self.opts.contains(O::NO_HEADER) {
            for (name, value) in &mail.headers {
                let value = if self.opts.contains(O::LEADING_SPACE) { format!(" {value}") } else { value.clone() };
                let cmd = Command::Header(HeaderPayload { name: cstr(name), value: cstr(&value) });
                if !go(&self.step(cmd, O::NOREPLY_HEADER).await?) {
                    return Ok(End::Early);
                }
            }
        }
        if !self.opts.contains(O::NO_EOH) && !go(&self.step(Command::Eoh, O::NOREPLY_EOH).await?) {
            return Ok(End::Early);
        }
        if !self.opts.contains(O::NO_BODY) {
            for chunk in mail.body.chunks(CHUNK) {
                match self.step(Command::BodyChunk(chunk.into()), O::NOREPLY_BODY).await? {
                    None | Some(Reply::Continue) => {}
                    Some(Reply::Skip) => break,
                    Some(_) => return Ok(End::Early),
                }
            }
        }
        self.end_of_message().await
    }

    async fn end_of_message(&mut self) -> io::Result<End> {
        if self.wants_queue_id {
            let macros = vec![cstr("i"), cstr(&format!("B{:010X}", self.sent))];
            self.queue(Command::DefMacros(MacroPayload { stage: MacroStage::Eom, macros }));
        }
        self.queue(Command::BodyEnd(Default::default()));
        self.flush().await?;
        let (mut replaced_body, mut changed_headers) = (false, false);
        loop {
            match self.read().await? {
                Reply::Continue | Reply::Accept | Reply::Discard | Reply::Reject | Reply::Tempfail | Reply::ReplyCode { .. } => {
                    return Ok(End::Eom { replaced_body, changed_headers });
                }
                Reply::ReplaceBody { .. } => replaced_body = true,
                Reply::AddHeader { .. } | Reply::InsertHeader { .. } | Reply::ChangeHeader { .. } => changed_headers = true,
                Reply::Progress => {}
                other => return Err(invalid(format!("unexpected reply at end of message: {other:?}"))),
            }
        }
    }

    pub async fn close(mut self) -> io::Result<()> {
        self.queue(Command::Quit);
        self.flush().await?;
        self.conn.get_mut().shutdown().await
    }

    /// Send one command; read its reply unless the milter negotiated `noreply` for it.
    async fn step(&mut self, cmd: Command, noreply: ProtoOpts) -> io::Result<Option<Reply>> {
        self.queue(cmd);
        self.flush().await?;
        if !noreply.is_empty() && self.opts.contains(noreply) {
            return Ok(None);
        }
        self.read().await.map(Some)
    }

    fn queue(&mut self, cmd: Command) {
        let msg = cmd.into_message();
        let len = u32::try_from(msg.buffer.len() + 1).expect("milter packets are far below 4 GB");
        self.out.extend_from_slice(&len.to_be_bytes());
        self.out.push(msg.kind);
        self.out.extend_from_slice(&msg.buffer);
    }

    async fn flush(&mut self) -> io::Result<()> {
        let write = self.conn.get_mut().write_all(&self.out);
        tokio::time::timeout(TIMEOUT, write).await.map_err(|_| timed_out())??;
        self.out.clear();
        Ok(())
    }

    async fn read(&mut self) -> io::Result<Reply> {
        let conn = &mut self.conn;
        let msg = tokio::time::timeout(TIMEOUT, async {
            let len = conn.read_u32().await? as usize;
            let kind = conn.read_u8().await?;
            if len == 0 || len > MAX_REPLY {
                return Err(invalid(format!("reply of {len} bytes")));
            }
            let mut buf = vec![0; len - 1];
            conn.read_exact(&mut buf).await?;
            Ok(Message::new(kind, buf))
        })
        .await
        .map_err(|_| timed_out())??;
        Reply::parse_reply(msg).map_err(|e| invalid(e.to_string()))
    }
}

/// Go on with the message: the milter said continue, or was not asked.
fn go(reply: &Option<Reply>) -> bool {
    matches!(reply, None | Some(Reply::Continue))
}

fn cstr(s: &str) -> CString {
    CString::new(s.replace('\0', "")).expect("NUL bytes removed")
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "milter did not answer within 10 s")
}
