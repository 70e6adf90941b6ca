"""The AUTH command of an AUTH ingress point (RFC 4954): preconditions, the SASL exchange,
the password check and the throttling of failures, turned into one reply.

Sees only plain values and a callback for 334 challenges, never the aiosmtpd protocol; logs
attempts and counters, never credentials.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from mailmgr import logs
from mailmgr.ingress import replies
from mailmgr.ingress.auth import (
    AUTH_LINE_LIMIT,
    MECHANISMS,
    Ask,
    Outcome,
    SaslError,
    read_credentials,
)
from mailmgr.ingress.data import discard_line
from mailmgr.ingress.replies import Reply
from mailmgr.ingress.settings import SmtpSettings

_SASL_REPLIES = {
    "cancelled": replies.AUTH_CANCELLED,
    "undecodable": replies.AUTH_UNDECODABLE,
    "malformed": replies.AUTH_MALFORMED,
    "too_long": replies.AUTH_LINE_TOO_LONG,
    "identity": replies.AUTH_BAD_IDENTITY,
}


@dataclass(frozen=True, slots=True)
class AuthState:
    """What the session knows when AUTH arrives."""

    ingress_point: str
    peer_ip: str
    extended: bool  # EHLO was used (AUTH is an ESMTP extension)
    tls: bool  # STARTTLS or implicit TLS
    authenticated: bool
    in_transaction: bool


async def authenticate(
    arg: str | None, settings: SmtpSettings, state: AuthState, ask: Ask
) -> tuple[Reply, str | None]:
    """The reply to `AUTH arg`, and the authenticated user name when it succeeded.

    AUTH in plaintext gets 538 5.7.11 (RFC 4954 §6: encryption required for the mechanism):
    on REQUIRED/FIPS points the STARTTLS rule answers first with 530 5.7.0.
    """
    auth = settings.auth
    if auth is None:
        return replies.AUTH_NOT_ENABLED, None
    if not state.extended:
        return replies.NEED_EHLO, None
    if not state.tls:
        return replies.AUTH_ENCRYPTION_REQUIRED, None
    if state.authenticated:
        return replies.AUTH_ALREADY, None
    if state.in_transaction:
        return replies.AUTH_IN_TRANSACTION, None
    mechanism, _, initial = (arg or "").partition(" ")
    mechanism = mechanism.upper()
    if not mechanism:
        return replies.AUTH_SYNTAX, None
    if mechanism not in MECHANISMS:
        return replies.AUTH_UNKNOWN_MECHANISM, None
    ip, throttle = state.peer_ip, settings.throttle
    if throttle.blocked(ip):
        logs.warning("auth.throttled", ingress_point=state.ingress_point, peer_ip=ip,
                     failures=throttle.failures(ip))
        return replies.AUTH_TOO_MANY_FAILURES, None
    try:
        credentials = await read_credentials(mechanism, initial.strip() or None, ask)
    except SaslError as error:
        return _SASL_REPLIES[error.kind], None
    # The budget is taken now, atomically, and the check runs under it: exchanges that all
    # passed the gate above cannot get more than the budget's number of checks between them.
    if not throttle.reserve(ip):
        logs.warning("auth.throttled", ingress_point=state.ingress_point, peer_ip=ip,
                     failures=throttle.failures(ip))
        return replies.AUTH_TOO_MANY_FAILURES, None
    try:
        outcome = await auth.verify(credentials)
    except BaseException:
        throttle.release(ip)
        raise
    if outcome is Outcome.OK:
        throttle.succeeded(ip)
        logs.event("auth.succeeded", ingress_point=state.ingress_point, peer_ip=ip,
                   mechanism=mechanism)
        return replies.AUTH_OK, auth.ingress_point_id
    if outcome is Outcome.UNAVAILABLE:
        throttle.release(ip)
        return replies.AUTH_TEMPORARY_FAILURE, None
    penalty = throttle.failed(ip)
    logs.warning("auth.failed", ingress_point=state.ingress_point, peer_ip=ip,
                 mechanism=mechanism, failures=penalty.failures, delay=penalty.delay,
                 disconnect=penalty.disconnect, tracked_ips=throttle.tracked)
    if penalty.disconnect:
        return replies.AUTH_TOO_MANY_FAILURES, None
    await throttle.wait(penalty)
    return replies.AUTH_FAILED, None


async def read_response(reader: asyncio.StreamReader) -> str:
    """One SASL response line (RFC 4954 §4), without its CRLF; SaslError("too_long") when it
    exceeds AUTH_LINE_LIMIT (the rest of the line is read and dropped)."""
    try:
        line: bytes = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError as overrun:
        await discard_line(reader, overrun.consumed)
        raise SaslError("too_long") from None
    if len(line) > AUTH_LINE_LIMIT:
        raise SaslError("too_long")
    return line.rstrip(b"\r\n").decode("ascii", "replace").strip()
