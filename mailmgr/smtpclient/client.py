"""One outbound SMTP connection: greeting, EHLO/HELO, STARTTLS, AUTH and transactions.

Owns the RFC 5321 §4.5.3.2 timeouts; must not decide what a reply means for a message (the
caller classifies per-recipient outcomes) and never logs credentials.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mailmgr.smtpclient.wire import (
    Reply,
    SmtpReplyError,
    TlsUnavailable,
    command_arg,
    read_reply,
)


@dataclass(frozen=True)
class SmtpTimeouts:
    """Seconds; the reply timeouts are RFC 5321 §4.5.3.2's minimums."""

    connect: float = 60.0  # not in the RFC: TCP connect plus TLS handshake
    greeting: float = 300.0  # initial 220
    command: float = 300.0  # EHLO, STARTTLS, AUTH, RSET, NOOP, QUIT
    mail: float = 300.0
    rcpt: float = 300.0
    data_init: float = 120.0  # DATA → 354
    data_block: float = 180.0  # each write of the payload
    data_end: float = 600.0  # final "." → reply


RFC5321_TIMEOUTS = SmtpTimeouts()
DATA_CHUNK = 64 * 1024


def tls_context(verify: bool, ca_file: Path | None) -> ssl.SSLContext:
    """Client context: system CAs (or `ca_file`), hostname checking unless `verify` is off.
    Blocking (reads CA files): call it in a thread."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True)
class Transaction:
    """The replies of one MAIL/RCPT/DATA exchange. `rcpt` is in recipient order; `data` is
    the final reply after the payload (or the DATA command's refusal), None if DATA was not
    attempted because MAIL or every RCPT was refused."""

    mail: Reply
    rcpt: tuple[tuple[str, Reply], ...] = ()
    data: Reply | None = None


@dataclass
class SmtpConnection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    timeouts: SmtpTimeouts
    greeting: Reply
    extensions: dict[str, str] = field(default_factory=dict)
    tls: bool = False
    authenticated: bool = False
    last_reply: Reply | None = None
    broken: bool = False  # state unknown (timeout, error, 421): never reuse

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        helo_name: str,
        timeouts: SmtpTimeouts = RFC5321_TIMEOUTS,
        context: ssl.SSLContext | None = None,
        tls_required: bool = False,
        server_name: str | None = None,
    ) -> SmtpConnection:
        """Connect, read the greeting, EHLO (HELO if refused), STARTTLS when offered and a
        context is given (TlsUnavailable when required and not offered), EHLO again."""
        async with asyncio.timeout(timeouts.connect):
            reader, writer = await asyncio.open_connection(host, port, limit=64 * 1024)
        conn = cls(reader, writer, timeouts, Reply(0, ()))
        try:
            conn.greeting = await conn.reply(timeouts.greeting)
            if conn.greeting.code != 220:
                raise SmtpReplyError("greeting", conn.greeting)
            await conn.hello(helo_name)
            if context is not None and "STARTTLS" in conn.extensions:
                reply = await conn.command("STARTTLS", timeouts.command)
                if reply.code != 220:
                    raise SmtpReplyError("STARTTLS", reply)
                async with asyncio.timeout(timeouts.connect):
                    await writer.start_tls(context, server_hostname=server_name or host)
                conn.tls = True
                await conn.hello(helo_name)  # RFC 3207: forget what was learnt before TLS
            elif tls_required:
                raise TlsUnavailable(f"{host}:{port} does not offer STARTTLS and Tls.Required")
        except BaseException:
            conn.abort()
            raise
        return conn

    @property
    def peer_is_loopback(self) -> bool:
        peer = self.writer.get_extra_info("peername")
        try:
            return bool(peer) and ipaddress.ip_address(peer[0]).is_loopback
        except ValueError:
            return False

    async def reply(self, seconds: float) -> Reply:
        try:
            reply = await read_reply(self.reader, seconds)
        except BaseException:
            self.broken = True
            raise
        self.last_reply = reply
        if reply.code == 421:  # the server is closing the channel
            self.broken = True
        return reply

    async def send(self, data: bytes, seconds: float) -> None:
        try:
            self.writer.write(data)
            async with asyncio.timeout(seconds):
                await self.writer.drain()
        except BaseException:
            self.broken = True
            raise

    async def command(self, line: str, seconds: float) -> Reply:
        await self.send(line.encode("utf-8") + b"\r\n", seconds)
        return await self.reply(seconds)

    async def hello(self, name: str) -> None:
        reply = await self.command(f"EHLO {command_arg(name)}", self.timeouts.command)
        if reply.code == 250:
            self.extensions = {}
            for line in reply.lines[1:]:
                keyword, _, params = line.partition(" ")
                self.extensions[keyword.upper()] = params
            return
        if reply.code == 421:
            raise SmtpReplyError("EHLO", reply)
        reply = await self.command(f"HELO {command_arg(name)}", self.timeouts.command)
        if reply.code != 250:
            raise SmtpReplyError("HELO", reply)
        self.extensions = {}

    def auth_mechanisms(self) -> set[str]:
        return {m.upper() for m in self.extensions.get("AUTH", "").split()}

    async def auth(self, username: str, password: str) -> None:
        """AUTH PLAIN, else LOGIN. Raises SmtpReplyError (stage AUTH) or TlsUnavailable."""
        if not self.tls and not self.peer_is_loopback:
            raise TlsUnavailable("refusing to send credentials without TLS", "AuthRequiresTls")
        mechanisms = self.auth_mechanisms()
        timeout = self.timeouts.command
        if "PLAIN" in mechanisms:
            token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
            reply = await self.command(f"AUTH PLAIN {token}", timeout)
        elif "LOGIN" in mechanisms:
            reply = await self.command("AUTH LOGIN", timeout)
            for value in (username, password):
                if reply.code != 334:
                    break
                reply = await self.command(base64.b64encode(value.encode()).decode(), timeout)
        else:
            offered = f"no PLAIN or LOGIN among {sorted(mechanisms)}"
            raise SmtpReplyError("AUTH", Reply(504, (offered,)))
        if reply.code != 235:
            if reply.code == 334:  # a challenge we cannot answer: cancel the exchange
                self.broken = True
            raise SmtpReplyError("AUTH", reply)
        self.authenticated = True

    async def transaction(
        self,
        sender: str,
        recipients: Sequence[str],
        payload: bytes,
        mail_params: Sequence[str] = (),
    ) -> Transaction:
        """MAIL, RCPT per recipient, DATA with `payload` (already wire-encoded, terminator
        included) if any recipient was accepted. Replies are returned, not raised; I/O errors
        and timeouts propagate (the connection is then broken)."""
        t = self.timeouts
        params = "".join(" " + command_arg(p) for p in mail_params)
        mail = await self.command(f"MAIL FROM:<{command_arg(sender)}>{params}", t.mail)
        if not mail.positive:
            return Transaction(mail)
        replies: list[tuple[str, Reply]] = []
        for rcpt in recipients:
            replies.append((rcpt, await self.command(f"RCPT TO:<{command_arg(rcpt)}>", t.rcpt)))
            if self.broken:
                return Transaction(mail, tuple(replies))
        if not any(r.positive for _, r in replies):
            return Transaction(mail, tuple(replies))
        start = await self.command("DATA", t.data_init)
        if start.code != 354:
            return Transaction(mail, tuple(replies), start)
        for offset in range(0, len(payload), DATA_CHUNK):  # the data-block timeout is per write
            await self.send(payload[offset:offset + DATA_CHUNK], t.data_block)
        return Transaction(mail, tuple(replies), await self.reply(t.data_end))

    async def rset(self) -> Reply:
        return await self.command("RSET", self.timeouts.command)

    async def noop(self) -> Reply:
        return await self.command("NOOP", self.timeouts.command)

    async def quit(self) -> None:
        """Polite close; errors are irrelevant at this point."""
        with contextlib.suppress(Exception):
            if not self.broken:
                await self.command("QUIT", min(self.timeouts.command, 10.0))
        await self.close()

    async def close(self) -> None:
        self.broken = True
        self.writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5.0):
                await self.writer.wait_closed()

    def abort(self) -> None:
        self.broken = True
        self.writer.transport.abort()
