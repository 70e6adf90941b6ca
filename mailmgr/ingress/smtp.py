"""The one aiosmtpd subclass: command parsing, SMTP state and limits of one connection.

Decisions (recipient policy, acceptance) belong to the handler, DATA framing to `data`, reply
texts to `replies`; aiosmtpd's private STARTTLS machinery is reused here and nowhere else.
"""

from __future__ import annotations

import asyncio
import ssl
from asyncio import sslproto
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from aiosmtpd.smtp import SMTP, TLSSetupException

from mailmgr import logs
from mailmgr.ingress import replies
from mailmgr.ingress.auth import AUTH_LINE_LIMIT
from mailmgr.ingress.authcmd import AuthState, authenticate, read_response
from mailmgr.ingress.counters import CONNECT, DATA_END, OTHER, command_label, point_counters
from mailmgr.ingress.data import discard_line, read_message
from mailmgr.ingress.handler import IngressHandler
from mailmgr.ingress.limits import JUNK_COMMANDS, JUNK_VERBS, ConnectionTimers, DataWatch
from mailmgr.ingress.replies import Reply
from mailmgr.ingress.settings import (
    AWS_MAX_MESSAGE_SIZE,
    SessionSet,
    SmtpSettings,
    Transaction,
    effective_size_limit,
    peer_ip,
    session_facts,
)
from mailmgr.ingress.syntax import MailCommand, helo_domain, mail_command, rcpt_command
from mailmgr.ingress.tls import Refusal, SessionTls, check_session
from mailmgr.message import Envelope

__all__ = ["AWS_MAX_MESSAGE_SIZE", "SessionSet", "SmtpProtocol", "SmtpSettings",
           "effective_size_limit"]

MAX_RECIPIENTS = 100  # Mail Manager's per-message limit
COMMAND_LIMIT = 512  # RFC 5321 §4.5.3.1.4
# SIZE= (RFC 1870) adds 26 octets, SMTPUTF8 (RFC 6531) 10, BODY=8BITMIME (RFC 6152) 14.
MAIL_COMMAND_LIMIT = COMMAND_LIMIT + 26 + 10 + 14
# RFC 4954 §5: a server offering AUTH accepts MAIL lines up to 500 octets longer (AUTH=).
MAIL_AUTH_COMMAND_LIMIT = MAIL_COMMAND_LIMIT + 500
ALLOWED_BEFORE_STARTTLS = frozenset({"NOOP", "EHLO", "STARTTLS", "QUIT"})  # RFC 3207 §4
# The StreamReader limit: the DATA chunk size (command lines are limited to COMMAND_LIMIT).
_READ_CHUNK = 65536
_NO_HOOKS: dict[str, Any] = {}
_HELD_REPLIES = 256  # held back at most: a client that pipelines forever still meets drain()


Command = Callable[["SmtpProtocol", str | None], Awaitable[None]]


class SmtpProtocol(SMTP):
    """One SMTP connection of an ingress point."""

    _COMMANDS: ClassVar[dict[str, Command]] = {}

    def __init__(
        self,
        settings: SmtpSettings,
        handler: IngressHandler,
        sessions: SessionSet,
        *,
        implicit_tls: bool = False,
        closed: bool = False,
        proxied: tuple[str, int] | None = None,
    ):
        """`implicit_tls`: a TlsWrappedListen connection (TLS from the first byte);
        `closed`: the ingress point is CLOSED, so the session only gets 421; `proxied`: the
        client (ip, port) of a PROXY header, which replaces the TCP peer everywhere."""
        # SMTP.__init__ is skipped on purpose: per connection it reflects over every attribute
        # to build hook and command tables we do not use (~95 µs and ~3 KiB per connection).
        # These are the attributes the aiosmtpd methods we keep (connection_made/lost,
        # eof_received, timeouts, smtp_STARTTLS) rely on in aiosmtpd 1.4.x.
        self.loop = asyncio.get_running_loop()
        asyncio.StreamReaderProtocol.__init__(
            self,
            asyncio.StreamReader(limit=_READ_CHUNK, loop=self.loop),
            client_connected_cb=self._cb_client_connected,
            loop=self.loop,
        )
        self.event_handler = handler
        self.hostname = settings.hostname
        self.tls_context = settings.ssl_context
        self.enable_SMTPUTF8 = True
        self._timeout_duration = settings.timeout
        self._timeout_handle = None
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self._handle_hooks = _NO_HOOKS
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        self._settings = settings
        self._handler = handler
        self._sessions = sessions
        self._tx: Transaction | None = None
        self._peer = self._proxied = proxied or ("", 0)
        self._idle = False
        self._stopping = False
        self._done = False
        self._out: list[bytes] = []  # replies held back while pipelined commands are waiting
        self.implicit_tls = self._implicit = implicit_tls
        self._closed_point = closed
        # Set once a handshake (STARTTLS or implicit) has finished. aiosmtpd 1.4.6 only counts
        # STARTTLS as TLS (`_tls_protocol`, `session.ssl`: None on implicit TLS, so its AUTH
        # would refuse there): every TLS decision here (AUTH, EHLO, REQUIRED) uses this.
        self._tls: SessionTls | None = None
        self._auth_user: str | None = None
        self._errors = 0  # 5xx replies sent (and junk commands past JUNK_COMMANDS)
        self._junk = 0
        self._mails = 0  # transactions opened (MessagesPerConnection)
        self._rcpts = 0  # RCPTs that reached the recipient policy (RecipientsPerConnection)
        self._counters = point_counters(handler.ingress_point.name)
        self._analysis = handler.transaction_analysis()  # None: no RCPT-time analyzer
        self._verb = CONNECT  # the `command` label of the replies sent next
        outer = lambda: self.transport or self._original_transport  # noqa: E731
        self._timers = ConnectionTimers(self.loop, settings.limits, outer, self._say,
                                        sessions.table)

    # ------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Called for the TCP connection, then again with the TLS transport once a handshake
        # (STARTTLS, or implicit TLS started below) has finished.
        first = self.transport is None and self._original_transport is None
        if first:
            peer = self._proxied if self._proxied[0] else transport.get_extra_info("peername")
            peer = peer or ("", 0)
            self._peer = (peer_ip(str(peer[0])), int(peer[1]))
            if not self._sessions.admit(self, transport, self._peer[0], self._settings.limits):
                return  # refused before any banner (421, closed): no session starts
            self._timers.start(self._peer[0])
            if self._implicit:
                return self._start_implicit_tls(transport)
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self._tls_established(ssl_object)

    def _start_implicit_tls(self, transport: asyncio.BaseTransport) -> None:
        """Wrap the TCP connection as aiosmtpd's STARTTLS does, so TlsWrappedListen and
        STARTTLS share one handshake path (and SIGHUP's new context applies to both)."""
        context = self._settings.ssl_context
        assert context is not None and isinstance(transport, asyncio.Transport)
        waiter = self.loop.create_future()
        self._tls_protocol = sslproto.SSLProtocol(
            self.loop, self, context, waiter, server_side=True
        )
        self._original_transport = transport
        transport.set_protocol(self._tls_protocol)
        self._tls_protocol.connection_made(transport)
        waiter.add_done_callback(self._implicit_handshake_done)

    def _implicit_handshake_done(self, waiter: asyncio.Future[None]) -> None:
        error = None if waiter.cancelled() else waiter.exception()
        if error is None and not waiter.cancelled():
            return
        # The TLS layer never reported the connection, so it will not report its loss.
        self._log_handshake_failure(error)
        self._sessions.discard(self)
        self._timers.stop()
        if self._analysis is not None:
            self._analysis.close()
        if self._original_transport is not None:
            self._original_transport.close()

    def _log_handshake_failure(self, error: BaseException | None) -> None:
        reason = getattr(error, "reason", None) or type(error).__name__
        logs.event(
            "tls.handshake_failed",
            ingress_point=self._handler.ingress_point.name,
            peer_ip=self._peer[0],
            tls_wrapped=self._implicit,
            reason=str(reason),
        )

    def _tls_established(self, ssl_object: ssl.SSLObject) -> None:
        settings = self._settings
        self._tls = tls = check_session(ssl_object, fips=settings.fips, trust=settings.trust)
        self._auth_user = None
        if tls.refusal is not None:
            cert = tls.client_certificate
            logs.warning(
                "tls.session_refused",
                ingress_point=self._handler.ingress_point.name,
                peer_ip=self._peer[0],
                reason=tls.refusal.value,
                tls_protocol=tls.protocol,
                tls_cipher=tls.cipher,
                client_certificate=cert.to_json() if cert else None,
            )

    def connection_lost(self, error: Exception | None) -> None:
        self._sessions.discard(self)
        self._timers.stop()
        if self._analysis is not None:
            self._analysis.close()
        if self.session is not None:  # None: refused at accept, or a failed implicit TLS
            super().connection_lost(error)

    def pause_writing(self) -> None:  # the peer stopped reading: WriteTimeoutSeconds runs
        super().pause_writing()
        self._timers.paused()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._timers.resumed()

    def _set_rset_state(self) -> None:
        self._tx = None

    def _set_post_data_state(self) -> None:
        self._tx = None

    def begin_shutdown(self) -> None:
        """Close now when idle between transactions; otherwise after the current one."""
        self._stopping = True
        if self._idle and self._tx is None and self.transport is not None:
            self._counters.reply(OTHER, replies.SHUTTING_DOWN)
            self._write_now(replies.SHUTTING_DOWN.line())
            self.transport.close()

    def end_shutdown(self) -> None:
        """Grace over: 421 4.3.2 whatever the session does (a DATA transfer or commit not done
        by now gets no 250), close, and abort if the peer does not read it."""
        self._timers.expire(replies.SHUTTING_DOWN)

    def _timeout_cb(self) -> None:
        self._timers.expire(replies.TIMEOUT)

    def _say(self, reply: Reply) -> None:
        if self.transport is not None:
            self._counters.reply(OTHER, reply)
            self._write_now(reply.line())

    def abort(self) -> None:
        """End the connection now, dropping unsent data (its buffers are freed at once)."""
        self._timers.abort()

    def _write_now(self, data: bytes) -> None:
        """Write held-back replies and `data` with one send."""
        if self._out:
            self._out.append(data)
            data = b"".join(self._out)
            self._out.clear()
        self._writer.write(data)

    def _line_waiting(self) -> bool:
        # A complete pipelined command is already buffered, so the next read cannot block.
        return b"\n" in self._reader._buffer  # type: ignore[attr-defined]

    async def _send(self, reply: Reply, *, flush: bool = False) -> None:
        # ErrorsPerSession counts every 5xx, whichever command earned it
        if reply.code >= 500 and self._error():
            reply = replies.TOO_MANY_ERRORS
            self._done = True
        self._counters.reply(self._verb, reply)
        await self._send_bytes(reply.line(), flush=flush or reply.closes)

    def _error(self) -> bool:
        """Count one error; True once the session is past ErrorsPerSession."""
        self._errors += 1
        limit = self._settings.limits.errors_per_session
        return self._errors > limit and self._sessions.too_many_errors(self)

    async def _send_bytes(self, data: bytes, *, flush: bool = False) -> None:
        """Send one reply; while further pipelined commands are already buffered, hold it back
        so their replies leave in one write (RFC 2920 §3.1 lets the server batch them)."""
        if not flush and len(self._out) < _HELD_REPLIES and not self._stopping and (
                self._line_waiting()):
            self._out.append(data)
            return
        self._write_now(data)
        await self._writer.drain()

    async def push(self, status: Any) -> None:
        # Only aiosmtpd's smtp_STARTTLS still calls push(); keep its reply text out of our wire.
        # Flushed at once: the transport is swapped for TLS right after.
        await self._send(replies.for_library_reply(status), flush=True)

    # ------------------------------------------------------------ command loop

    async def _handle_client(self) -> None:
        try:
            if self._closed_point:
                await self._send(replies.CLOSED)
                return
            if self._tls is not None and self._tls.refusal is Refusal.FIPS_CIPHER:
                await self._send(replies.TLS_CIPHER_REFUSED)
                return
            await self._send(replies.banner(self._settings.hostname))
            while self.transport is not None and not self._done:
                self._verb = OTHER  # until a command line names its verb
                if self._stopping and self._tx is None:
                    await self._send(replies.SHUTTING_DOWN)
                    break
                if self._out and not self._line_waiting():
                    await self._send_bytes(b"", flush=True)
                self._idle = True
                try:
                    line: bytes = await self._reader.readuntil(b"\n")
                except asyncio.LimitOverrunError as overrun:
                    await discard_line(self._reader, overrun.consumed)
                    await self._send(replies.LINE_TOO_LONG)
                    continue
                finally:
                    self._idle = False
                reply = await self._command(line)
                if reply is not None:
                    await self._send(reply)
                    if reply.closes:
                        break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except TLSSetupException as error:
            self._log_handshake_failure(error.__cause__)
            # The TLS layer never reported the connection to us, so it will not report its
            # loss either: finish the connection here, as aiosmtpd does.
            if self.transport is not None:
                self.transport.close()
            self.connection_lost(None)
        finally:
            if self.transport is not None:
                if self._out:
                    self._write_now(b"")
                self.transport.close()

    async def _command(self, line: bytes) -> Reply | None:
        """Run one command line; returns the reply still to send (None: already sent)."""
        line = line.rstrip(b"\r\n")
        if not line:
            return replies.BAD_SYNTAX
        verb_bytes, _, arg_bytes = line.partition(b" ")
        if not verb_bytes.isascii():
            return replies.NOT_ASCII
        verb = verb_bytes.decode("ascii").upper()
        self._verb = command_label(verb)
        extended = self.session is not None and self.session.extended_smtp
        limit = COMMAND_LIMIT
        if extended and verb in ("MAIL", "RCPT"):
            auth = verb == "MAIL" and self._settings.auth is not None
            limit = MAIL_AUTH_COMMAND_LIMIT if auth else MAIL_COMMAND_LIMIT
        if verb == "AUTH":
            limit = AUTH_LINE_LIMIT
        if len(line) > limit:
            return replies.LINE_TOO_LONG
        # Arguments may be UTF-8 (RFC 6531); anything else could not be stored or relayed.
        try:
            arg = arg_bytes.strip().decode("utf-8") or None
        except UnicodeDecodeError:
            return replies.NOT_UTF8
        if (
            self._settings.require_tls
            and self._tls is None
            and verb not in ALLOWED_BEFORE_STARTTLS
        ):
            return replies.STARTTLS_FIRST
        method = self._COMMANDS.get(verb)
        if method is None:
            return replies.UNKNOWN_COMMAND
        if verb in JUNK_VERBS or (verb == "RCPT" and self._tx is not None
                                  and len(self._tx.recipients) >= MAX_RECIPIENTS):
            self._junk += 1
            if self._junk > JUNK_COMMANDS and self._error():
                self._done = True
                return replies.TOO_MANY_ERRORS
        self._reset_timeout()
        try:
            await method(self, arg)
        except (ConnectionError, asyncio.IncompleteReadError, TLSSetupException):
            raise
        except Exception as error:
            logs.error(
                "smtp.command_failed",
                command=verb,
                peer_ip=self._peer[0],
                error=type(error).__name__,
                detail=str(error),
            )
            self._tx = None
            return replies.for_exception(error)
        return None

    # ------------------------------------------------------------ session commands

    async def smtp_HELO(self, arg: str | None) -> None:
        domain = helo_domain(arg)
        if isinstance(domain, Reply):
            return await self._send(domain)
        assert self.session is not None
        self._tx = None
        self.session.host_name = domain
        self.session.extended_smtp = False
        await self._send(replies.helo(self._settings.hostname))

    async def smtp_EHLO(self, arg: str | None) -> None:
        domain = helo_domain(arg)
        if isinstance(domain, Reply):
            empty = domain is replies.HELO_SYNTAX
            return await self._send(replies.EHLO_SYNTAX if empty else domain)
        assert self.session is not None
        self._tx = None
        self.session.host_name = domain
        self.session.extended_smtp = True
        self._counters.reply(self._verb, replies.OK)  # the prebuilt EHLO reply: a 250
        await self._send_bytes(
            self._settings.ehlo_tls if self._tls is not None else self._settings.ehlo_plain
        )

    async def smtp_NOOP(self, arg: str | None) -> None:
        await self._send(replies.OK)

    async def smtp_RSET(self, arg: str | None) -> None:
        if arg:
            return await self._send(replies.NO_ARGUMENTS)
        self._tx = None
        await self._send(replies.OK)

    async def smtp_QUIT(self, arg: str | None) -> None:
        if arg:
            return await self._send(replies.NO_ARGUMENTS)
        await self._send(replies.BYE, flush=True)
        self._done = True

    async def smtp_HELP(self, arg: str | None) -> None:
        await self._send(replies.HELP)

    async def smtp_VRFY(self, arg: str | None) -> None:
        await self._send(replies.VRFY if arg else replies.VRFY_SYNTAX)

    async def smtp_EXPN(self, arg: str | None) -> None:
        await self._send(replies.EXPN)

    async def smtp_AUTH(self, arg: str | None) -> None:
        assert self.session is not None
        state = AuthState(ingress_point=self._handler.ingress_point.name, peer_ip=self._peer[0],
                          extended=self.session.extended_smtp, tls=self._tls is not None,
                          authenticated=self._auth_user is not None,
                          in_transaction=self._tx is not None)
        reply, user = await authenticate(arg, self._settings, state, self._ask)
        if user is not None:
            self._auth_user = user
        await self._send(reply)
        if reply.closes:
            self._done = True

    async def _ask(self, challenge: str) -> str:
        """Send a 334 challenge and read the client's response line."""
        await self._send_bytes(replies.challenge(challenge), flush=True)
        self._reset_timeout()
        return await read_response(self._reader)

    async def smtp_STARTTLS(self, arg: str | None) -> None:
        if arg:
            return await self._send(replies.NO_ARGUMENTS)
        if self._tls is not None:
            return await self._send(replies.TLS_ALREADY_ACTIVE)
        if self.tls_context is None:
            return await self._send(replies.TLS_NOT_AVAILABLE)
        # aiosmtpd swaps the transport and, once the handshake is done, connection_made()
        # empties the read buffer: commands pipelined in plaintext after STARTTLS are dropped
        # (RFC 3207 §4.2) before this coroutine resumes.
        await super().smtp_STARTTLS(None)
        if self._tls is not None and self._tls.refusal is Refusal.FIPS_CIPHER:
            await self._send(replies.TLS_CIPHER_REFUSED)
            self._done = True

    # ------------------------------------------------------------ transaction commands

    def _mail_refusal(self) -> Reply | None:
        """MTLS needs a verified, unrevoked certificate and AUTH a login before MAIL."""
        settings = self._settings
        if settings.trust is not None:
            tls = self._tls
            if tls is None or tls.client_certificate is None or tls.refusal is not None:
                return replies.CERTIFICATE_REQUIRED
        if settings.auth is not None and self._auth_user is None:
            return replies.AUTH_REQUIRED
        return None

    async def smtp_MAIL(self, arg: str | None) -> None:
        assert self.session is not None
        if not self.session.host_name:
            return await self._send(replies.NEED_HELO)
        refusal = self._mail_refusal()
        if refusal is not None:
            return await self._send(refusal)
        if self._tx is not None:
            return await self._send(replies.NESTED_MAIL)
        mail = mail_command(
            arg,
            extended=self.session.extended_smtp,
            auth_offered=self._settings.auth is not None,
            max_size=self._settings.max_message_size,
        )
        if not isinstance(mail, MailCommand):
            return await self._send(mail)
        limits = self._settings.limits
        if refusal := self._sessions.mail_refusal(self, self._mails, self._rcpts, limits):
            self._done = refusal.closes  # 421: a per-connection budget is spent
            return await self._send(refusal)
        self._mails += 1
        self._tx = Transaction(
            mail_from=mail.mail_from,
            facts=session_facts(self._handler.ingress_point, self._peer,
                                self.session.host_name or "", self._tls, self._implicit,
                                self._auth_user),
            smtputf8=mail.smtputf8,
            body_8bit=mail.body_8bit,
        )
        if self._analysis is not None:
            self._analysis.begin(self._tx.facts, mail.mail_from)
        await self._send(replies.SENDER_OK)

    async def smtp_RCPT(self, arg: str | None) -> None:
        assert self.session is not None
        if not self.session.host_name:
            return await self._send(replies.NEED_HELO)
        tx = self._tx
        if tx is None:
            return await self._send(replies.NEED_MAIL)
        address = rcpt_command(arg, extended=self.session.extended_smtp, smtputf8=tx.smtputf8)
        if isinstance(address, Reply):
            return await self._send(address)
        if len(tx.recipients) >= MAX_RECIPIENTS:
            return await self._send(replies.TOO_MANY_RECIPIENTS)
        tx.rcpt_attempted = True
        if refusal := self._sessions.rcpt_refusal(self, self._rcpts, self._settings.limits):
            return await self._send(refusal)
        self._rcpts += 1
        reply = await self._handler.recipient(tx.facts, address, tx.mail_from, self._analysis)
        if reply.positive:
            tx.recipients.append(address)
        await self._send(reply)

    async def smtp_DATA(self, arg: str | None) -> None:
        assert self.session is not None
        if not self.session.host_name:
            return await self._send(replies.NEED_HELO)
        if arg:
            return await self._send(replies.NO_ARGUMENTS)
        tx = self._tx
        if tx is None:
            return await self._send(replies.NEED_MAIL)
        if not tx.recipients:
            return await self._send(
                replies.NO_VALID_RECIPIENTS if tx.rcpt_attempted else replies.NEED_RCPT
            )
        await self._send(replies.START_DATA, flush=True)
        self._verb = DATA_END
        watch = DataWatch(self, self._reader, self._settings.limits, self._timers.expire)
        content = await read_message(self._reader, self._settings.max_message_size, watch)
        self._tx = None
        if content is None:
            return await self._send(replies.TOO_BIG)
        envelope = Envelope(
            mail_from=tx.mail_from,
            rcpt_to=tuple(tx.recipients),
            smtputf8=tx.smtputf8,
            body_8bit=tx.body_8bit,
        )
        await self._send(await self._handler.deliver(tx.facts, envelope, content, self._analysis))


SmtpProtocol._COMMANDS = {
    "HELO": SmtpProtocol.smtp_HELO,
    "EHLO": SmtpProtocol.smtp_EHLO,
    "NOOP": SmtpProtocol.smtp_NOOP,
    "RSET": SmtpProtocol.smtp_RSET,
    "QUIT": SmtpProtocol.smtp_QUIT,
    "HELP": SmtpProtocol.smtp_HELP,
    "VRFY": SmtpProtocol.smtp_VRFY,
    "EXPN": SmtpProtocol.smtp_EXPN,
    "AUTH": SmtpProtocol.smtp_AUTH,
    "STARTTLS": SmtpProtocol.smtp_STARTTLS,
    "MAIL": SmtpProtocol.smtp_MAIL,
    "RCPT": SmtpProtocol.smtp_RCPT,
    "DATA": SmtpProtocol.smtp_DATA,
}
