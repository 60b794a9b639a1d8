#!/usr/bin/env python3
"""Send test mail and check delivered messages, for the end-to-end scripts (stdlib only).

  check.py send PORT SENDER FILE RCPT...       SMTP to 127.0.0.1:PORT ("" = null sender)
  check.py rewritten DELIVERED [options]       a bounce that plainbounce rewrote
  check.py unchanged DELIVERED ORIGINAL        a message that arrived byte-identical
  check.py explain PLAINBOUNCE REPLY           the knowledge base's texts for a reply
  check.py rcpt PORT SENDER RCPT               print the raw reply lines to RCPT TO
  check.py footer REPLYFILE --reply R [opts]   a reply as Postfix sent it, with(out) a footer

Exit status 0 when the check holds; otherwise the reasons go to stderr. Line endings
are compared as LF (MTAs store mail with LF whatever came in over SMTP).
"""

import argparse
import email
import email.policy
import json
import re
import smtplib
import socket
import subprocess
import sys


def lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def split_message(raw: bytes):
    """(header block, body) of a message, split at the first blank line."""
    raw = lf(raw)
    head, sep, body = raw.partition(b"\n\n")
    return head + b"\n", body


def drop_header(raw: bytes, name: str) -> bytes:
    """The message without header NAME (and its continuation lines)."""
    head, body = split_message(raw)
    keep, dropping = [], False
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                keep.append(line)
            continue
        dropping = line.lower().startswith(name.lower().encode() + b":")
        if not dropping:
            keep.append(line)
    return b"".join(keep) + b"\n" + body


def header_values(raw: bytes, name: str):
    msg = email.message_from_bytes(split_message(raw)[0] + b"\n", policy=email.policy.compat32)
    return [str(v) for v in msg.get_all(name, [])]


def parts(raw: bytes):
    """Raw bytes of each top-level MIME part (headers + body), by the top boundary."""
    msg = email.message_from_bytes(lf(raw), policy=email.policy.compat32)
    boundary = msg.get_boundary()
    if not boundary:
        return []
    _, body = split_message(raw)
    delim = re.compile(rb"^--" + re.escape(boundary.encode()) + rb"(--)?[ \t]*$", re.M)
    pieces, last = [], None
    for m in delim.finditer(body):
        if last is not None:
            # The line break before a delimiter belongs to the delimiter (RFC 2046).
            pieces.append(body[last : m.start()].removesuffix(b"\n"))
        last = m.end() + 1
        if m.group(1):
            break
    return pieces


def epilogue(raw: bytes) -> bytes:
    """What follows the top-level close delimiter (normally nothing)."""
    msg = email.message_from_bytes(lf(raw), policy=email.policy.compat32)
    boundary = msg.get_boundary()
    _, body = split_message(raw)
    close = re.compile(rb"^--" + re.escape((boundary or "").encode()) + rb"--[ \t]*$", re.M)
    found = list(close.finditer(body)) if boundary else []
    return body[found[0].end():].lstrip(b"\n") if found else b""


def part_type(part: bytes) -> str:
    msg = email.message_from_bytes(part, policy=email.policy.compat32)
    return msg.get_content_type()


def text_of(part: bytes) -> str:
    """All decoded text/plain content of a part (walking nested multiparts)."""
    msg = email.message_from_bytes(part, policy=email.policy.compat32)
    out = []
    for sub in msg.walk():
        if sub.get_content_type() == "text/plain":
            payload = sub.get_payload(decode=True) or b""
            out.append(payload.decode(sub.get_content_charset() or "utf-8", "replace"))
    return "\n".join(out)


def squash(text: str) -> str:
    return " ".join(text.split())


def check_rewritten(args) -> list:
    raw = open(args.delivered, "rb").read()
    errors = []
    marks = header_values(raw, "X-Plainbounce")
    if len(marks) != 1 or not marks[0].strip().startswith("rewritten"):
        errors.append(f"expected one 'X-Plainbounce: rewritten; ...' header, found {marks}")
    ctype = " ".join(header_values(raw, "Content-Type"))
    if not re.search(r"multipart/report", ctype, re.I) or not re.search(
        r"report-type=\"?delivery-status", ctype, re.I
    ):
        errors.append(f"top-level Content-Type lost multipart/report; report-type: {ctype!r}")
    got = parts(raw)
    if len(got) < 2:
        return errors + [f"expected a multipart/report with at least 2 parts, found {len(got)}"]
    status = [p for p in got if part_type(p) in ("message/delivery-status", "message/global-delivery-status")]
    if len(status) != 1:
        errors.append(f"expected one delivery-status part, found {len(status)}")
    if args.original:
        orig = parts(open(args.original, "rb").read())
        if got[1:] != orig[1:]:
            errors.append("parts 2..n differ from the original's (must be byte-identical)")
            for i, (a, b) in enumerate(zip(got[1:], orig[1:]), 2):
                if a != b:
                    errors.append(f"  part {i}: delivered {a[:300]!r}...\n  original {b[:300]!r}...")
        if squash(text_of(got[0])) == squash(text_of(orig[0])):
            errors.append("the human-readable part is unchanged")
    want_epilogue = epilogue(open(args.original, "rb").read()) if args.original else b""
    if epilogue(raw).strip() != want_epilogue.strip():
        errors.append(f"text after the closing MIME boundary: {epilogue(raw)[:300]!r}")
    dsn = status[0].decode("utf-8", "replace") if status else ""
    for rcpt in args.recipient:
        if not re.search(r"^Final-Recipient:\s*rfc822;\s*" + re.escape(rcpt) + r"\s*$", dsn, re.M | re.I):
            errors.append(f"delivery-status part has no Final-Recipient: rfc822; {rcpt}")
    for field in args.dsn_field:
        if field not in dsn:
            errors.append(f"delivery-status part lacks {field!r}")
    if status and not re.search(r"^Status:\s*\d\.\d{1,3}\.\d{1,3}", dsn, re.M):
        errors.append("delivery-status part has no Status: field")
    text = squash(text_of(got[0]))
    for want in args.expect:
        if squash(want) not in text:
            errors.append(f"human-readable part lacks {want!r}")
    if errors:
        errors.append("---- human-readable text part as delivered:\n" + text_of(got[0])[:3000])
    return errors


def check_unchanged(args) -> list:
    raw = lf(open(args.delivered, "rb").read())
    orig = lf(open(args.original, "rb").read())
    errors = []
    for name in args.without_header:
        orig = drop_header(orig, name)
    if not raw.endswith(orig):
        errors.append("delivered message does not end with the original's bytes (headers + body)")
        _, body = split_message(raw)
        _, obody = split_message(orig)
        if body != obody:
            errors.append(f"body differs: delivered {len(body)} bytes, original {len(obody)} bytes")
    if header_values(raw, "X-Plainbounce") and not header_values(orig, "X-Plainbounce"):
        errors.append(f"unexpected X-Plainbounce header: {header_values(raw, 'X-Plainbounce')}")
    return errors


def send(args) -> list:
    data = open(args.file, "rb").read()
    with smtplib.SMTP("127.0.0.1", args.port, local_hostname="client.local.test", timeout=60) as s:
        refused = s.sendmail(args.sender, args.rcpt, data)
    return [f"refused: {refused}"] if refused else []


def explain(args) -> list:
    out = subprocess.run([args.plainbounce, "explain", "--json", args.reply], check=True,
                         capture_output=True, text=True).stdout
    facts = json.loads(out)
    print(facts["explanation"])
    return []


def rcpt(args) -> list:
    """EHLO, MAIL FROM, RCPT TO over a plain socket; print RCPT's reply exactly as sent."""
    with socket.create_connection(("127.0.0.1", args.port), timeout=60) as sock:
        f = sock.makefile("rb")

        def reply():
            lines = []
            while True:
                line = f.readline()
                if not line:
                    raise SystemExit("connection closed")
                lines.append(line)
                if line[3:4] != b"-":
                    return lines

        reply()
        for cmd in (b"EHLO client.local.test", f"MAIL FROM:<{args.sender}>".encode(),
                    f"RCPT TO:<{args.rcpt}>".encode()):
            sock.sendall(cmd + b"\r\n")
            lines = reply()
        sock.sendall(b"QUIT\r\n")
    sys.stdout.buffer.write(b"".join(lines))
    return []


def check_footer(args) -> list:
    """REPLYFILE holds Postfix's reply lines (CRLF). Without --explained-by the reply must
    be exactly --reply; with it, --reply followed by a footer that carries the knowledge
    base's title and remedy for --reply, on well-formed lines within SMTP's limits."""
    raw = open(args.replyfile, "rb").read()
    want = args.reply.encode()
    if args.explained_by is None:
        return [] if raw == want + b"\r\n" else [f"expected exactly {want!r}, got {raw!r}"]
    errors = []
    lines = raw.split(b"\r\n")
    if lines[-1] != b"":
        errors.append("reply does not end with CRLF")
    lines = lines[:-1]
    prefix = want[:4 + want[4:].index(b" ")]  # e.g. b"554 5.7.1"
    for i, line in enumerate(lines):
        sep = b" " if i == len(lines) - 1 else b"-"
        if not line.startswith(prefix[:3] + sep + prefix[4:] + b" "):
            errors.append(f"line {i + 1} does not start with {prefix!r} ({sep!r}): {line!r}")
        if len(line) + 2 > 512:
            errors.append(f"line {i + 1} is {len(line) + 2} octets with CRLF (over 512)")
        if any(c < 32 or c > 126 for c in line):
            errors.append(f"line {i + 1} has a non-printable or non-ASCII octet: {line!r}")
    text = " ".join(line[len(prefix) + 1:].decode("ascii", "replace") for line in lines)
    original = args.reply[len(prefix) + 1:]
    if not text.startswith(original) or squash(text) == squash(original):
        errors.append(f"no footer after {original!r}: {text!r}")
    footer = squash(text[len(original):])
    facts = json.loads(subprocess.run([args.explained_by, "explain", "--json", "--smtpd", args.reply],
                                      check=True, capture_output=True, text=True).stdout)
    for key in ("title", "remedy"):
        if squash(facts[key]) not in footer:
            errors.append(f"footer lacks the knowledge base's {key} {facts[key]!r}: {footer!r}")
    for phrase in args.phrase:
        if phrase not in footer:
            errors.append(f"footer lacks {phrase!r}: {footer!r}")
    if errors:
        errors.append("reply as sent:\n" + raw.decode("ascii", "replace"))
    return errors


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send")
    s.add_argument("port", type=int)
    s.add_argument("sender")
    s.add_argument("file")
    s.add_argument("rcpt", nargs="+")
    r = sub.add_parser("rewritten")
    r.add_argument("delivered")
    r.add_argument("--original", help="the bounce as sent: parts 2..n must be byte-identical")
    r.add_argument("--recipient", action="append", default=[], help="expected Final-Recipient")
    r.add_argument("--dsn-field", action="append", default=[], help="text the delivery-status part has")
    r.add_argument("--expect", action="append", default=[], help="text the human-readable part has")
    u = sub.add_parser("unchanged")
    u.add_argument("delivered")
    u.add_argument("original")
    u.add_argument("--without-header", action="append", default=[], metavar="NAME",
                   help="a header the MTA itself drops (e.g. Return-Path): not expected")
    e = sub.add_parser("explain")
    e.add_argument("plainbounce")
    e.add_argument("reply")
    c = sub.add_parser("rcpt")
    c.add_argument("port", type=int)
    c.add_argument("sender")
    c.add_argument("rcpt")
    f = sub.add_parser("footer")
    f.add_argument("replyfile")
    f.add_argument("--reply", required=True, help="Postfix's reply without a footer")
    f.add_argument("--explained-by", metavar="PLAINBOUNCE",
                   help="expect a footer with this plainbounce's explanation of --reply")
    f.add_argument("--phrase", action="append", default=[], help="text the footer has")
    args = p.parse_args()
    errors = {"send": send, "rewritten": check_rewritten, "unchanged": check_unchanged,
              "explain": explain, "rcpt": rcpt, "footer": check_footer}[args.cmd](args)
    for line in errors:
        print(line, file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
