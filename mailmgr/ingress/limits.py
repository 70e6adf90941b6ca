"""Bounded work per connection and per client address (`Server.Limits`): the one table of
per-address state (connections, per-minute rates, AUTH failures, refusal log), DATA timeouts and
rate, the file-descriptor budget and the rate-limited log of accept() failures.

Connection-level limits answer `421 4.7.0` (timeouts `421 4.4.2`) and close: MaxConnections,
MaxConnectionsPerAddress, ConnectionsPerAddressPerMinute, ErrorsPerSession, MessagesPerConnection
and, at the next MAIL, a spent RecipientsPerConnection (as Postfix's anvil answers connection
count and rate). Transaction-level limits answer `451 4.7.1` and keep the session usable, so a
legitimate sender retries later: MessagesPerAddressPerMinute at MAIL, RecipientsPerConnection and
RecipientsPerAddressPerMinute at RCPT (Postfix: `450 4.7.1` for smtpd_client_message_rate_limit
and smtpd_client_recipient_rate_limit; maddy: `451` at MAIL). Every refusal is counted in
`mailmgr_limit_refusals_total{limit}` and logged (`limits.refused`) once per address per minute.
"""

from __future__ import annotations

import asyncio
import errno
import resource
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import replace
from enum import Enum
from typing import Any, Protocol

from mailmgr import logs
from mailmgr.admin.metrics import METRICS
from mailmgr.config.models import ServerLimits
from mailmgr.ingress import replies
from mailmgr.ingress.replies import Reply

Limits = ServerLimits
MINUTE = 60.0
# The table forgets the least recently seen addresses beyond this many (~250 B each); entries
# with open connections are never forgotten (MaxConnections bounds those).
MAX_ADDRESSES = 50_000
# fds kept out of the connection budget: listeners, spool and archive files, SQLite, AWS and
# DNS sockets, relay pools, worker threads' files.
FD_RESERVE = 128
# DATA rate (slowloris defence): bytes received over the last RATE_WINDOW seconds (or
# DataTimeoutSeconds when shorter: a transfer is never judged over more time than it may stall),
# checked once a transfer is that old; a stalled transfer ends after DataTimeoutSeconds.
RATE_WINDOW = 10.0
# After a timeout's 421 the peer has this long to take it before the connection is aborted
# (close() alone waits forever for a peer that does not read).
ABORT_GRACE = 2.0
ACCEPT_LOG_INTERVAL = 10.0
# Commands that do no work for the client (Postfix's smtpd_junk_command_limit, default 100,
# plus repeated greetings and RCPTs past the recipient limit): past JUNK_COMMANDS in one session
# each counts as an error (ErrorsPerSession), so a client cannot pipeline millions of them and
# keep the server busy answering while it never reads the replies.
JUNK_VERBS = frozenset({"NOOP", "RSET", "VRFY", "EXPN", "HELP", "HELO", "EHLO"})
JUNK_COMMANDS = 100
_ACCEPT_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Limit(Enum):
    """A limit that can refuse or end a session; the value is its `Server.Limits` key (and the
    `limit` label of mailmgr_limit_refusals_total)."""

    MAX_CONNECTIONS = "MaxConnections"
    MAX_CONNECTIONS_PER_ADDRESS = "MaxConnectionsPerAddress"
    CONNECTIONS_PER_ADDRESS_PER_MINUTE = "ConnectionsPerAddressPerMinute"
    MESSAGES_PER_CONNECTION = "MessagesPerConnection"
    MESSAGES_PER_ADDRESS_PER_MINUTE = "MessagesPerAddressPerMinute"
    RECIPIENTS_PER_CONNECTION = "RecipientsPerConnection"
    RECIPIENTS_PER_ADDRESS_PER_MINUTE = "RecipientsPerAddressPerMinute"
    ERRORS_PER_SESSION = "ErrorsPerSession"
    COMMAND_TIMEOUT = "CommandTimeoutSeconds"
    DATA_TIMEOUT = "DataTimeoutSeconds"
    MIN_DATA_RATE = "MinDataRateBytesPerSecond"
    SESSION_TIMEOUT = "SessionTimeoutSeconds"
    WRITE_TIMEOUT = "WriteTimeoutSeconds"


# Pre-bound counter children (labels() takes a lock and builds a tuple: once, here); every
# series exists from the start, at 0.
_REFUSALS = {limit: METRICS.limit_refusals.labels(limit.value) for limit in Limit}
# The timeouts' replies, for ConnectionTimers.expire (a 421 not listed is no limit's, e.g.
# shutdown's 421 4.3.2).
_TIMEOUTS = {
    replies.TIMEOUT: Limit.COMMAND_TIMEOUT,
    replies.DATA_TIMEOUT: Limit.DATA_TIMEOUT,
    replies.DATA_TOO_SLOW: Limit.MIN_DATA_RATE,
    replies.SESSION_TIMEOUT: Limit.SESSION_TIMEOUT,
}


def address_key(ip: str) -> str:
    """The unit that limits count: an IPv4 address, or the /64 of an IPv6 address (one host or
    LAN usually holds a whole /64, so per-address limits on full IPv6 addresses are void)."""
    if ":" not in ip:
        return ip
    try:
        prefix = socket.inet_pton(socket.AF_INET6, ip)[:8]
    except OSError:
        return ip
    return prefix.hex(":", 2) + "::/64"  # e.g. 2001:0db8:0000:0001::/64


class _Entry:
    __slots__ = ("auth_failures", "auth_last", "auth_reserved", "connections", "minute",
                 "minute_connections", "minute_messages", "minute_recipients", "refused_logged",
                 "refused_quiet")

    def __init__(self, now: float) -> None:
        self.connections = 0
        self.minute = now
        self.minute_connections = 0
        self.minute_messages = 0
        self.minute_recipients = 0
        self.auth_failures = 0
        self.auth_reserved = 0
        self.auth_last = 0.0
        self.refused_logged = -MINUTE  # when the last limits.refused line was written
        self.refused_quiet = 0  # refusals since then that were only counted

    def tick(self, now: float) -> None:
        if now - self.minute >= MINUTE:  # fixed one-minute windows
            self.minute = now
            self.minute_connections = 0
            self.minute_messages = 0
            self.minute_recipients = 0

    def idle(self) -> bool:
        return self.connections == 0 and self.auth_reserved == 0


class AddressTable:
    """Per-client-address state shared by every listener of the process.

    Memory is bounded: beyond `max_addresses` the least recently seen address without open
    connections or pending AUTH checks is forgotten (its rate windows and AUTH failures too).
    All methods are synchronous, so each check-and-update is atomic on the event loop.
    """

    def __init__(self, *, max_addresses: int = MAX_ADDRESSES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recently seen first
        self._max = max_addresses
        self.clock = clock
        self.connections = 0  # open connections, all addresses

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, key: str, *, touch: bool = True) -> _Entry:
        entries = self._entries
        found = entries.get(key)
        if found is None:
            if len(entries) >= self._max:
                self._evict()
            found = entries[key] = _Entry(self.clock())
        elif touch:
            entries.move_to_end(key)
        return found

    def peek(self, key: str) -> _Entry | None:
        return self._entries.get(key)

    def _evict(self) -> None:
        entries = self._entries
        for _ in range(8):  # bounded work; live entries go to the end, the table may grow
            key, victim = entries.popitem(last=False)
            if victim.idle():
                return
            entries[key] = victim

    def refuse(self, key: str, limit: Limit, reply: Reply | None) -> Reply | None:
        """Count a refusal by `limit` and log it, at most once per address per MINUTE (the
        next line says how many were only counted); returns `reply` (None: an abort)."""
        _REFUSALS[limit].inc()
        entry = self.entry(key, touch=False)
        now = self.clock()
        if now - entry.refused_logged < MINUTE:
            entry.refused_quiet += 1
            return reply
        logs.warning("limits.refused", limit=limit.value, address=key,
                     reply=f"{reply.code} {reply.enhanced}" if reply else "abort",
                     unlogged=entry.refused_quiet)
        entry.refused_logged = now
        entry.refused_quiet = 0
        return reply

    def admit(self, key: str, limits: Limits) -> Reply | None:
        """Count a new connection from `key`, or return the 421 that refuses it."""
        if self.connections >= limits.max_connections:
            return self.refuse(key, Limit.MAX_CONNECTIONS, replies.TOO_MANY_CONNECTIONS)
        entry = self.entry(key)
        if entry.connections >= limits.max_connections_per_address:
            return self.refuse(key, Limit.MAX_CONNECTIONS_PER_ADDRESS,
                               replies.TOO_MANY_CONNECTIONS_FROM_ADDRESS)
        entry.tick(self.clock())
        if entry.minute_connections >= limits.connections_per_address_per_minute:
            return self.refuse(key, Limit.CONNECTIONS_PER_ADDRESS_PER_MINUTE,
                               replies.CONNECTION_RATE_EXCEEDED)
        entry.minute_connections += 1
        entry.connections += 1
        self.connections += 1
        return None

    def release(self, key: str) -> None:
        """A connection counted by `admit` has ended."""
        self.connections -= 1
        entry = self._entries.get(key)
        if entry is not None and entry.connections > 0:
            entry.connections -= 1

    def mail(self, key: str, messages: int, recipients: int, limits: Limits) -> Reply | None:
        """A MAIL from `key` whose session already opened `messages` transactions and asked
        for `recipients` recipients: None (counted: go ahead), a 421 when the session's
        budget is spent, or 451 4.7.1 when the address's per-minute one is."""
        if messages >= limits.messages_per_connection:
            return self.refuse(key, Limit.MESSAGES_PER_CONNECTION, replies.TOO_MANY_MESSAGES)
        if recipients >= limits.recipients_per_connection:
            return self.refuse(key, Limit.RECIPIENTS_PER_CONNECTION,
                               replies.TOO_MANY_RECIPIENTS_IN_SESSION)
        entry = self.entry(key, touch=False)
        entry.tick(self.clock())
        if entry.minute_messages >= limits.messages_per_address_per_minute:
            return self.refuse(key, Limit.MESSAGES_PER_ADDRESS_PER_MINUTE,
                               replies.MESSAGE_RATE_EXCEEDED)
        entry.minute_messages += 1
        return None

    def recipient(self, key: str, recipients: int, limits: Limits) -> Reply | None:
        """A RCPT from `key` whose session already asked for `recipients` recipients: None
        (counted: go ahead) or 451 4.7.1 (the session stays usable; accepted recipients of the
        transaction still get their DATA)."""
        if recipients >= limits.recipients_per_connection:
            return self.refuse(key, Limit.RECIPIENTS_PER_CONNECTION,
                               replies.SESSION_RECIPIENTS_SPENT)
        entry = self.entry(key, touch=False)
        entry.tick(self.clock())
        if entry.minute_recipients >= limits.recipients_per_address_per_minute:
            return self.refuse(key, Limit.RECIPIENTS_PER_ADDRESS_PER_MINUTE,
                               replies.RECIPIENT_RATE_EXCEEDED)
        entry.minute_recipients += 1
        return None


def fit_to_fd_limit(limits: Limits) -> Limits:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit and keep MaxConnections (plus
    FD_RESERVE) below it, with one warning when the configured value had to be lowered."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return limits
    usable = max(1, soft - FD_RESERVE)
    if limits.max_connections <= usable:
        return limits
    logs.warning("server.connection_cap_lowered", configured=limits.max_connections,
                 effective=usable, nofile=soft, reserve=FD_RESERVE,
                 note="Server.Limits.MaxConnections exceeds the file-descriptor limit")
    return replace(limits, max_connections=usable,
                   max_connections_per_address=min(usable, limits.max_connections_per_address))


class AcceptErrorLog:
    """A loop exception handler: accept() failing for lack of fds or memory (asyncio retries
    after 1 s by itself, see selector_events._accept_connection) becomes at most one log line
    per ACCEPT_LOG_INTERVAL with a count, instead of a traceback per failed accept()."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = -ACCEPT_LOG_INTERVAL
        self.count = 0  # failures since the last log line
        self.total = 0

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        previous = loop.get_exception_handler()

        def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            error = context.get("exception")
            if isinstance(error, OSError) and error.errno in _ACCEPT_ERRNOS:
                return self.record(error)
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handle)

    def record(self, error: OSError) -> None:
        self.count += 1
        self.total += 1
        now = self._clock()
        if now - self._last >= ACCEPT_LOG_INTERVAL:
            logs.warning("ingress.accept_failed", error=errno.errorcode.get(error.errno or 0, ""),
                         failures=self.count, total=self.total,
                         note="out of file descriptors or memory; accept retried after 1 s")
            self._last = now
            self.count = 0


class CommandTimer(Protocol):
    """aiosmtpd's command (idle) timeout of a session, as DataWatch pauses it."""

    loop: asyncio.AbstractEventLoop
    _timeout_handle: asyncio.TimerHandle | None

    def _reset_timeout(self, duration: float | None = None) -> None: ...


class DataWatch:
    """Ends a DATA transfer that stalls for DataTimeoutSeconds, or that brings fewer than
    MinDataRateBytesPerSecond over the last min(RATE_WINDOW, DataTimeoutSeconds) seconds
    (checked once the transfer is that old). One timer per transfer, ticking at most once a
    second; `expire` gets the 421 to send and must end the connection."""

    __slots__ = ("_consumed", "_expire", "_handle", "_last", "_last_total", "_limits",
                 "_loop", "_reader", "_samples", "_session", "_start", "_step", "_window")

    def __init__(self, session: CommandTimer, reader: asyncio.StreamReader,
                 limits: Limits, expire: Callable[[Reply], None]) -> None:
        """The command timeout is off while the watch runs and re-armed by `stop`: the watch's
        timer takes the session's timer slot (so connection_lost cancels it too, and `stop`
        cancels it by re-arming), no second timer per transfer."""
        self._session = session
        loop = self._loop = session.loop
        self._reader = reader
        self._limits = limits
        self._expire = expire
        self._consumed = 0
        self._start = self._last = loop.time()
        self._last_total = 0
        # Made at the first tick: most transfers end before one (hot path).
        self._samples: deque[tuple[float, int]] | None = None
        self._step = min(1.0, limits.data_timeout / 2)
        self._window = min(RATE_WINDOW, limits.data_timeout)
        if session._timeout_handle is not None:
            session._timeout_handle.cancel()
        self._handle: asyncio.TimerHandle | None = loop.call_later(self._step, self._tick)
        session._timeout_handle = self._handle

    def progress(self, consumed: int) -> None:
        """`consumed`: raw body bytes taken from the reader so far."""
        self._consumed = consumed

    def stop(self) -> None:
        if self._handle is not None:
            self._handle = None
            self._session._reset_timeout()  # cancels our timer (in the session's slot)

    def _tick(self) -> None:
        now = self._loop.time()
        total = self._consumed + len(self._reader._buffer)  # type: ignore[attr-defined]
        moving = total > self._last_total
        if moving:
            self._last, self._last_total = now, total
        elif now - self._last >= self._limits.data_timeout:
            self._handle = None
            return self._expire(replies.DATA_TIMEOUT)
        samples = self._samples
        if samples is None:
            samples = self._samples = deque(((self._start, 0),))
        samples.append((now, total))
        window = self._window
        while len(samples) > 2 and samples[1][0] <= now - window:
            samples.popleft()
        minimum = self._limits.min_data_rate
        # Judged while bytes still come: a transfer that stopped is the DATA timeout's.
        if moving and minimum > 0 and now - self._start >= window:
            then, before = samples[0]
            if (total - before) < minimum * (now - then):
                self._handle = None
                return self._expire(replies.DATA_TOO_SLOW)
        self._handle = self._session._timeout_handle = self._loop.call_later(self._step,
                                                                              self._tick)


class ConnectionTimers:
    """One connection's deadlines: SessionTimeoutSeconds for the whole session,
    WriteTimeoutSeconds while its writing is paused (the peer does not read), and the
    timeouts' ending: 421, close, and abort after ABORT_GRACE (close() alone waits for a peer
    that never reads, keeping the connection and its buffers)."""

    __slots__ = ("_limits", "_loop", "_say", "_session", "_stall", "_table", "_transport",
                 "peer_ip")

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: Limits,
                 transport: Callable[[], asyncio.BaseTransport | None],
                 say: Callable[[Reply], None], table: AddressTable | None = None) -> None:
        """`transport()`: the connection's outermost transport now; `say(reply)`: write a
        reply if the session can still be written to; `table`: where timeouts are counted
        and logged as refusals (None: nowhere)."""
        self._loop = loop
        self._limits = limits
        self._transport = transport
        self._say = say
        self._table = table
        self._session: asyncio.TimerHandle | None = None
        self._stall: asyncio.TimerHandle | None = None
        self.peer_ip = ""

    def start(self, peer_ip: str) -> None:
        self.peer_ip = peer_ip
        self._session = self._loop.call_later(
            self._limits.session_timeout, self.expire, replies.SESSION_TIMEOUT
        )

    def expire(self, reply: Reply) -> None:
        """Send `reply` (a 421), close, and abort if the peer does not take it."""
        transport = self._transport()
        if transport is None or transport.is_closing():
            return
        limit = _TIMEOUTS.get(reply)
        if limit is not None and self._table is not None:
            self._table.refuse(address_key(self.peer_ip), limit, reply)
        self._say(reply)
        transport.close()
        self._loop.call_later(min(ABORT_GRACE, self._limits.write_timeout), self.abort)

    def paused(self) -> None:
        if self._stall is None:
            self._stall = self._loop.call_later(self._limits.write_timeout, self._stalled)

    def resumed(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _stalled(self) -> None:
        self._stall = None
        logs.warning("smtp.write_timeout", peer_ip=self.peer_ip,
                     write_timeout=self._limits.write_timeout)
        if self._table is not None:
            self._table.refuse(address_key(self.peer_ip), Limit.WRITE_TIMEOUT, None)
        self.abort()

    def abort(self) -> None:
        """End the connection now, dropping unsent data."""
        transport = self._transport()
        if isinstance(transport, asyncio.WriteTransport):
            transport.abort()

    def stop(self) -> None:
        for timer in (self._session, self._stall):
            if timer is not None:
                timer.cancel()
        self._session = self._stall = None
