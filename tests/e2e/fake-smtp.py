#!/usr/bin/env python3
"""A fake remote SMTP server for the end-to-end tests (stdlib only).

It answers RCPT with a reply chosen by the recipient's local part, so an MTA under
test gets the failures real servers give:

    relaying@...   553 sorry, relaying denied from your location
    unknown@...    550 5.1.1 <unknown@...>: Recipient address rejected: User unknown
    full@...       452 4.2.2 Mailbox full
    greylist@...   421 4.7.0 greylisted, try again later   (and closes the connection)

Every other recipient is accepted, and accepted messages are saved to --sink as
NNNN.eml (the message bytes as received, dot-unstuffed, CRLF kept) plus NNNN.json
(envelope), so a test can check what was delivered. --reply LOCAL=TEXT adds or
overrides a rule. Listens on 127.0.0.1 only; with --port 0 it picks a free port and
writes it to --port-file.
"""

import argparse
import asyncio
import json
import os
import signal

DEFAULT_REPLIES = {
    "relaying": "553 sorry, relaying denied from your location",
    "unknown": "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown",
    "full": "452 4.2.2 Mailbox full",
    "greylist": "421 4.7.0 greylisted, try again later",
}


class Server:
    def __init__(self, replies, sink):
        self.replies = replies
        self.sink = sink
        self.count = 0

    def reply_for(self, rcpt):
        local = rcpt.split("@", 1)[0].lower()
        text = self.replies.get(local)
        return text.format(rcpt=rcpt) if text else None

    def save(self, mail_from, rcpts, data):
        if not self.sink:
            return
        self.count += 1
        base = os.path.join(self.sink, f"{self.count:04d}")
        with open(base + ".eml.tmp", "wb") as f:
            f.write(data)
        with open(base + ".json", "w") as f:
            json.dump({"mail_from": mail_from, "rcpt_to": rcpts}, f)
        os.rename(base + ".eml.tmp", base + ".eml")

    async def session(self, reader, writer):
        async def send(line):
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        mail_from, rcpts = None, []
        try:
            await send("220 fake.remote.test ESMTP fake-smtp")
            while True:
                raw = await reader.readline()
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                verb = line[:4].upper()
                arg = line[5:] if len(line) > 4 else ""
                if verb == "EHLO":
                    await send("250-fake.remote.test\r\n250-8BITMIME\r\n250 SIZE 52428800")
                elif verb == "HELO":
                    await send("250 fake.remote.test")
                elif verb == "MAIL":
                    mail_from, rcpts = address(arg), []
                    await send("250 2.1.0 Ok")
                elif verb == "RCPT":
                    rcpt = address(arg)
                    reply = self.reply_for(rcpt)
                    if reply is None:
                        rcpts.append(rcpt)
                        await send("250 2.1.5 Ok")
                    else:
                        await send(reply)
                        if reply.startswith("421"):
                            return
                elif verb == "DATA":
                    if mail_from is None or not rcpts:
                        await send("503 5.5.1 Error: need RCPT command")
                        continue
                    await send("354 End data with <CR><LF>.<CR><LF>")
                    data = await read_data(reader)
                    self.save(mail_from, rcpts, data)
                    await send(f"250 2.0.0 Ok: queued as FAKE{self.count:04d}")
                    mail_from, rcpts = None, []
                elif verb == "RSET":
                    mail_from, rcpts = None, []
                    await send("250 2.0.0 Ok")
                elif verb == "NOOP":
                    await send("250 2.0.0 Ok")
                elif verb == "QUIT":
                    await send("221 2.0.0 Bye")
                    return
                else:
                    await send("502 5.5.2 Error: command not recognized")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def address(arg):
    """The address inside <...> of a MAIL FROM:/RCPT TO: argument."""
    start, end = arg.find("<"), arg.find(">")
    if start == -1 or end < start:
        return arg.split(":", 1)[-1].strip()
    return arg[start + 1 : end]


async def read_data(reader):
    """Message bytes up to the lone dot, with dot-stuffing undone."""
    out = bytearray()
    while True:
        line = await reader.readline()
        if not line:
            raise asyncio.IncompleteReadError(bytes(out), None)
        if line in (b".\r\n", b".\n"):
            return bytes(out)
        if line.startswith(b"."):
            line = line[1:]
        out += line


async def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", help="write the listening port here once ready")
    p.add_argument("--sink", help="directory where accepted messages are saved")
    p.add_argument("--reply", action="append", default=[], metavar="LOCAL=TEXT",
                   help="reply TEXT to RCPT for this local part ({rcpt} = the address)")
    args = p.parse_args()

    replies = dict(DEFAULT_REPLIES)
    for rule in args.reply:
        local, _, text = rule.partition("=")
        replies[local.lower()] = text
    if args.sink:
        os.makedirs(args.sink, exist_ok=True)

    server = Server(replies, args.sink)
    srv = await asyncio.start_server(server.session, "127.0.0.1", args.port)
    port = srv.sockets[0].getsockname()[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(f"{port}\n")
        os.rename(args.port_file + ".tmp", args.port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with srv:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
