"""DeliverToMailbox: the `Mailboxes` mapping of a MailboxArn to LMTP or a Maildir directory.

LMTP: one transaction for the matched recipients, a reply per recipient after DATA; recipients
already settled are kept in the resume data so a retry never delivers twice. Maildir: tmp→new
with fsync, a file name derived from (message, rule, action) so a re-run finds its own file.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from mailmgr.actions.base import Action, ActionInput, ActionResult, Resources
from mailmgr.config.models import DeliverToMailboxAction, ListenAddress, Mailbox, RuleAction
from mailmgr.errors import PermanentActionError, TemporaryActionError
from mailmgr.mime.headers import read
from mailmgr.mime.render import render_field
from mailmgr.smtpclient.wire import command_arg, to_wire

LMTP_TIMEOUT = 120.0  # per reply; the DATA reply may wait for the mailbox's disk
MAX_REPLY_LINES = 100


@dataclass(frozen=True)
class Reply:
    code: int
    text: str

    @property
    def temporary(self) -> bool:
        return not 200 <= self.code < 300 and not 500 <= self.code < 600


class LmtpError(Exception):
    def __init__(self, reply: Reply, stage: str) -> None:
        super().__init__(f"LMTP {stage} refused: {reply.code} {reply.text}")
        self.reply = reply


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 timeout: float) -> None:
        self.reader, self.writer, self.timeout = reader, writer, timeout

    async def reply(self) -> tuple[Reply, list[str]]:
        lines: list[str] = []
        while len(lines) < MAX_REPLY_LINES:
            async with asyncio.timeout(self.timeout):
                raw = await self.reader.readline()
            if not raw:
                raise ConnectionError("LMTP server closed the connection")
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if len(line) < 3 or not line[:3].isdigit():
                raise ConnectionError(f"malformed LMTP reply {line[:80]!r}")
            lines.append(line[4:])
            if line[3:4] != "-":
                return Reply(int(line[:3]), " ".join(lines)), lines
        raise ConnectionError("LMTP reply too long")

    async def command(self, line: str) -> Reply:
        self.writer.write(line.encode("utf-8") + b"\r\n")
        await self.writer.drain()
        return (await self.reply())[0]


def dot_stuff(content: bytes) -> bytes:
    """CRLF line ends (a bare CR too, as the header reader reads it), leading dots doubled, and
    the terminating `.` line: the Relay action's wire encoding (smtpclient.wire.to_wire)."""
    return to_wire(content)


async def lmtp_deliver(
    address: ListenAddress,
    *,
    lhlo: str,
    mail_from: str,
    recipients: tuple[str, ...],
    content: bytes,
    body_8bit: bool = False,
    smtputf8: bool = False,
    reply_timeout: float = LMTP_TIMEOUT,
) -> dict[str, Reply]:
    """One LMTP transaction; the reply for each recipient (its RCPT reply if refused there,
    else its post-DATA reply). Raises LmtpError (MAIL/DATA refused), OSError, TimeoutError."""
    async with asyncio.timeout(reply_timeout):
        reader, writer = await asyncio.open_connection(address.host, address.port)
    conn = _Conn(reader, writer, reply_timeout)
    try:
        greeting, _ = await conn.reply()
        if greeting.code != 220:
            raise LmtpError(greeting, "greeting")
        writer.write(f"LHLO {lhlo}\r\n".encode())
        await writer.drain()
        hello, lines = await conn.reply()
        if hello.code != 250:
            raise LmtpError(hello, "LHLO")
        extensions = {ln.split(" ")[0].upper() for ln in lines[1:]}
        params = ""
        if body_8bit and "8BITMIME" in extensions:
            params += " BODY=8BITMIME"
        if smtputf8 and "SMTPUTF8" in extensions:
            params += " SMTPUTF8"
        mail = await conn.command(f"MAIL FROM:<{command_arg(mail_from)}>{params}")
        if mail.code != 250:
            raise LmtpError(mail, "MAIL FROM")
        replies: dict[str, Reply] = {}
        accepted: list[str] = []
        for rcpt in recipients:
            reply = await conn.command(f"RCPT TO:<{command_arg(rcpt)}>")
            replies[rcpt] = reply
            if reply.code in (250, 251):
                accepted.append(rcpt)
        if accepted:
            data = await conn.command("DATA")
            if data.code != 354:
                raise LmtpError(data, "DATA")
            writer.write(dot_stuff(content))
            await writer.drain()
            for rcpt in accepted:  # LMTP: one reply per accepted recipient, in order
                replies[rcpt] = (await conn.reply())[0]
        try:
            await conn.command("QUIT")
        except (OSError, TimeoutError):
            pass
        return replies
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


def maildir_name(item: ActionInput) -> str:
    host = socket.gethostname().replace("/", "\\057").replace(":", "\\072") or "localhost"
    seconds = int(item.message.received_at)
    return f"{seconds}.M{item.message.id}R{item.rule_index}A{item.action_index}.{host}"


def maildir_deliver(directory: Path, name: str, content: bytes) -> Path:
    """Write `content` to `directory/new/name` through tmp/ with fsync; a file already in new/
    or cur/ for `name` means an earlier attempt finished, so nothing is written twice."""
    for sub in ("tmp", "new", "cur"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    final = directory / "new" / name
    if final.exists() or any((directory / "cur").glob(name + ":*")) or (
            directory / "cur" / name).exists():
        return final
    tmp = directory / "tmp" / name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, final)
    dir_fd = os.open(directory / "new", os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return final


def _with_return_path(content: bytes, sender: str) -> bytes:
    eol = read(content).eol
    return render_field("Return-Path", f"<{sender}>", eol) + content


class DeliverToMailbox:
    name = "DeliverToMailbox"

    def __init__(self, action: DeliverToMailboxAction, mailbox: Mailbox, hostname: str,
                 *, timeout: float = LMTP_TIMEOUT) -> None:
        self._action = action
        self._mailbox = mailbox
        self._hostname = hostname
        self._timeout = timeout

    async def run(self, item: ActionInput) -> ActionResult:
        if self._mailbox.maildir is not None:
            content = _with_return_path(item.content, item.message.envelope.mail_from)
            try:
                path = await asyncio.to_thread(
                    maildir_deliver, self._mailbox.maildir, maildir_name(item), content)
            except OSError as exc:  # a full or unavailable disk: keep the message, retry
                raise TemporaryActionError(f"maildir delivery failed: {exc}",
                                           type(exc).__name__) from exc
            return ActionResult(details={"mailbox": self._mailbox.arn, "maildir_file": path.name})
        return await self._lmtp(item)

    async def _lmtp(self, item: ActionInput) -> ActionResult:
        address = self._mailbox.lmtp
        assert address is not None  # the config loader requires exactly one target
        settled: dict[str, str] = json.loads(item.resume) if item.resume else {}
        todo = tuple(r for r in item.recipients if r not in settled)
        env = item.message.envelope
        try:
            replies = await lmtp_deliver(
                address, lhlo=self._hostname, mail_from=env.mail_from, recipients=todo,
                content=item.content, body_8bit=env.body_8bit, smtputf8=env.smtputf8,
                reply_timeout=self._timeout) if todo else {}
        except ValueError as exc:  # a control character in a stored address: never sent
            raise PermanentActionError(f"LMTP {address}: {exc}", "553") from exc
        except LmtpError as exc:
            if exc.reply.temporary:
                raise TemporaryActionError(str(exc), str(exc.reply.code),
                                           resume=json.dumps(settled)) from exc
            raise PermanentActionError(str(exc), str(exc.reply.code)) from exc
        except (OSError, TimeoutError) as exc:
            raise TemporaryActionError(f"LMTP {address}: {type(exc).__name__}: {exc}",
                                       type(exc).__name__, resume=json.dumps(settled)) from exc
        temporary = {r: rep for r, rep in replies.items() if rep.temporary}
        for rcpt, reply in replies.items():
            if not reply.temporary:
                settled[rcpt] = f"{reply.code} {reply.text}"
        if temporary:
            first = next(iter(temporary.values()))
            raise TemporaryActionError(
                f"LMTP deferred {sorted(temporary)}: {first.code} {first.text}",
                str(first.code), resume=json.dumps(settled))
        rejected = {r: s for r, s in settled.items() if not s.startswith("2")}
        if rejected:
            raise PermanentActionError(f"LMTP rejected {rejected}",
                                       next(iter(rejected.values()))[:3])
        return ActionResult(details={"mailbox": self._mailbox.arn, "delivered": sorted(settled)})


def build(action: RuleAction, resources: Resources) -> Action:
    if not isinstance(action, DeliverToMailboxAction):
        raise TypeError(f"DeliverToMailbox cannot be built from {type(action).__name__}")
    mailbox = next((m for m in resources.config.mailboxes if m.arn == action.mailbox_arn), None)
    if mailbox is None:  # the config loader rejects unmapped ARNs; this guards direct callers
        raise ValueError(f"mailbox {action.mailbox_arn!r} is not configured in Mailboxes")
    return DeliverToMailbox(action, mailbox, resources.config.server.hostname)
