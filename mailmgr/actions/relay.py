"""Relay: deliver the message by SMTP to a configured relay, one transaction per attempt.

Owns per-recipient outcomes (accepted / refused / deferred, kept in the resume data so nobody is
sent twice) and the per-relay connection pools; the SMTP protocol itself is mailmgr.smtpclient.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import weakref
from dataclasses import dataclass, field, replace
from typing import Any

from mailmgr import logs
from mailmgr.actions.base import Action, ActionInput, ActionResult, Resources
from mailmgr.admin.metrics import METRICS
from mailmgr.aws import SecretStore
from mailmgr.config.models import MailFrom, Relay, RelayAction, RuleAction
from mailmgr.errors import ActionError, PermanentActionError, TemporaryActionError
from mailmgr.mime.headers import header_end
from mailmgr.smtpclient import (
    RFC5321_TIMEOUTS,
    ConnectionPool,
    SmtpConnection,
    SmtpError,
    SmtpReplyError,
    SmtpTimeouts,
    Transaction,
    has_8bit,
    tls_context,
    to_wire,
)
from mailmgr.smtpclient.pool import IDLE_SECONDS, MAX_CONNECTIONS

# The executor decides exhaustion from its own first-failure time, taken a moment after ours:
# finishing per recipient slightly early keeps that decision ours (delivered ones stay live).
EXHAUSTION_MARGIN = 1.0
# The `outcome` of mailmgr_relay_attempts_total, by precedence: no connection (or no session:
# TLS, AUTH, credentials) -> connect_failed; any recipient deferred -> temporary; any refused
# -> permanent; every recipient accepted -> delivered.
OUTCOMES = ("delivered", "temporary", "permanent", "connect_failed")


@dataclass(frozen=True)
class Progress:
    """What earlier attempts settled (the resume JSON): never send to `accepted` again."""

    accepted: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()  # recipient -> the reply (or reason) refusing it
    first_deferred_at: float | None = None

    @classmethod
    def load(cls, text: str | None) -> Progress:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(
            accepted=tuple(data.get("accepted", ())),
            refused=tuple((str(k), str(v)) for k, v in data.get("refused", {}).items()),
            first_deferred_at=data.get("first_deferred_at"),
        )

    def dump(self) -> str:
        return json.dumps({"accepted": list(self.accepted), "refused": dict(self.refused),
                           "first_deferred_at": self.first_deferred_at})

    def settled(self, recipient: str) -> bool:
        return recipient in self.accepted or any(r == recipient for r, _ in self.refused)


@dataclass
class Attempt:
    """One attempt's per-recipient outcome (values: the reply or error text)."""

    accepted: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    deferred: dict[str, str] = field(default_factory=dict)
    code: str = ""  # the last significant reply code (or error name), for the log
    deferred_code: str = ""

    def fail(self, recipients: list[str], why: str, code: str, permanent: bool) -> None:
        target = self.refused if permanent else self.deferred
        hit = [r for r in recipients if r not in self.accepted and r not in self.refused]
        if not hit:
            return
        for rcpt in hit:
            target[rcpt] = why
        self.code = code
        if not permanent:
            self.deferred_code = self.deferred_code or code


class RelayClient:
    """Everything shared by the actions that use one relay: TLS context, credentials, pool."""

    def __init__(self, relay: Relay, helo_name: str, secrets: SecretStore | None, *,
                 timeouts: SmtpTimeouts, max_connections: int, idle_seconds: float) -> None:
        self.relay = relay
        self._helo = helo_name
        self._secrets = secrets
        self._timeouts = timeouts
        self._context: ssl.SSLContext | None = None
        self._refresh_secret = False
        self.pool = ConnectionPool(self._open, max_connections=max_connections,
                                   idle_seconds=idle_seconds)
        self.attempts = {o: METRICS.relay_attempts.labels(relay.name, o) for o in OUTCOMES}

    async def _open(self) -> SmtpConnection:
        relay = self.relay
        if self._context is None:  # reads CA files: not on the event loop
            self._context = await asyncio.to_thread(tls_context, relay.tls.verify,
                                                    relay.tls.ca_file)
        credentials = await self._credentials()
        conn = await SmtpConnection.open(
            relay.server_name, relay.server_port, helo_name=self._helo,
            timeouts=self._timeouts, context=self._context, tls_required=relay.tls.required,
            server_name=relay.server_name)
        if credentials is None:
            return conn
        try:
            await conn.auth(*credentials)
        except SmtpReplyError:
            self._refresh_secret = True  # maybe rotated: fetch it anew next time
            await conn.quit()
            raise
        except BaseException:
            await conn.quit()
            raise
        return conn

    async def _credentials(self) -> tuple[str, str] | None:
        arn = self.relay.secret_arn
        if arn is None:
            return None
        if self._secrets is None:
            raise PermanentActionError(f"relay {self.relay.name}: no secret store for {arn}",
                                       "NoSecretStore")
        secret = await self._secrets.get(arn, refresh=self._refresh_secret)
        self._refresh_secret = False
        if "username" not in secret or "password" not in secret:
            raise PermanentActionError(f"secret {arn} lacks 'username' or 'password'",
                                       "InvalidSecretFormat")
        return secret["username"], secret["password"]


_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Relay, RelayClient]] = (
    weakref.WeakKeyDictionary())


def relay_client(relay: Relay, helo_name: str, secrets: SecretStore | None, *,
                 timeouts: SmtpTimeouts = RFC5321_TIMEOUTS,
                 max_connections: int = MAX_CONNECTIONS,
                 idle_seconds: float = IDLE_SECONDS) -> RelayClient:
    """The running loop's client for `relay` (created on first use, shared by every action
    that names the same relay, so the concurrency cap and the idle pool are per relay)."""
    clients = _CLIENTS.setdefault(asyncio.get_running_loop(), {})
    client = clients.get(relay)
    if client is None:
        client = clients[relay] = RelayClient(
            relay, helo_name, secrets, timeouts=timeouts, max_connections=max_connections,
            idle_seconds=idle_seconds)
    return client


async def close_pools() -> None:
    """Close every idle relay connection of the running loop (call at shutdown)."""
    clients = _CLIENTS.pop(asyncio.get_running_loop(), {})
    await asyncio.gather(*(c.pool.close() for c in clients.values()))


class RelayDelivery:
    name = "Relay"

    def __init__(self, action: RelayAction, relay: Relay, resources: Resources, *,
                 timeouts: SmtpTimeouts = RFC5321_TIMEOUTS,
                 max_connections: int = MAX_CONNECTIONS,
                 idle_seconds: float = IDLE_SECONDS) -> None:
        self._action = action
        self._relay = relay
        self._server = resources.config.server
        self._secrets = resources.secrets
        self._pool_settings: dict[str, Any] = {
            "timeouts": timeouts, "max_connections": max_connections,
            "idle_seconds": idle_seconds}

    def sender(self, item: ActionInput) -> str:
        if self._action.mail_from is MailFrom.PRESERVE:
            return item.message.envelope.mail_from  # "" stays the null reverse-path
        return self._relay.mail_from_replacement or f"postmaster@{self._server.hostname}"

    async def run(self, item: ActionInput) -> ActionResult:
        progress = Progress.load(item.resume)
        todo = [r for r in item.recipients if not progress.settled(r)]
        attempt = await self._attempt(item, todo) if todo else Attempt()
        progress = replace(
            progress,
            accepted=(*progress.accepted, *attempt.accepted),
            refused=(*progress.refused, *attempt.refused.items()),
        )
        if attempt.deferred:
            now = time.time()
            first = progress.first_deferred_at if progress.first_deferred_at is not None else now
            if now - first + EXHAUSTION_MARGIN <= self._server.retry.max_age:
                progress = replace(progress, first_deferred_at=first)
                why = next(iter(attempt.deferred.values()))
                raise TemporaryActionError(
                    f"relay {self._relay.name} deferred {sorted(attempt.deferred)}: {why}",
                    attempt.deferred_code, resume=progress.dump())
            exhausted = {r: f"retries exhausted: {w}" for r, w in attempt.deferred.items()}
            progress = replace(progress, refused=(*progress.refused, *exhausted.items()))
        return self._finish(item, progress)

    def _finish(self, item: ActionInput, progress: Progress) -> ActionResult:
        refused = dict(progress.refused)
        failed = {r: refused[r] for r in item.recipients if r in refused}
        delivered = tuple(r for r in item.recipients if r in progress.accepted)
        details: dict[str, Any] = {"relay": self._relay.name, "delivered": list(delivered)}
        if not failed:
            return ActionResult(details=details)
        if not delivered:  # everyone failed: the executor applies the policy to all of them
            why = next(iter(failed.values()))
            raise PermanentActionError(f"relay {self._relay.name} refused {sorted(failed)}: "
                                       f"{why}", why[:3] if why[:3].isdigit() else "Refused")
        # Partial failure: the executor applies ActionFailurePolicy to the failed ones only.
        details["refused"] = sorted(failed)
        reason = "; ".join(f"{r}: {why}" for r, why in sorted(failed.items()))
        return ActionResult(failed=tuple(failed), failure_reason=reason, details=details)

    async def _attempt(self, item: ActionInput, todo: list[str]) -> Attempt:
        client = relay_client(self._relay, self._server.hostname, self._secrets,
                              **self._pool_settings)
        attempt = Attempt()
        started = time.monotonic()
        reused = tls = leased = False
        error: str | None = None
        try:
            async with client.pool.connection() as lease:
                reused, tls, leased = lease.reused, lease.connection.tls, True
                await self._transact(lease.connection, item, todo, attempt)
        except ActionError as exc:  # credentials: classified by the secret store
            error = f"{exc.code}: {exc}"
            attempt.fail(todo, error, exc.code, permanent=not exc.temporary)
        except SmtpError as exc:
            error = str(exc)
            attempt.fail(todo, error, exc.code, permanent=not exc.temporary)
        except (OSError, TimeoutError) as exc:  # incl. ssl errors (certificate verification)
            error = f"{type(exc).__name__}: {exc}"
            attempt.fail(todo, error, type(exc).__name__, permanent=False)
        fields: dict[str, Any] = {
            "message_id": item.message.id, "relay": self._relay.name,
            "relay_id": self._relay.id,
            "server": f"{self._relay.server_name}:{self._relay.server_port}",
            "rule_name": item.rule_name, "action_index": item.action_index,
            "code": attempt.code, "latency_ms": round((time.monotonic() - started) * 1000, 1),
            "accepted": attempt.accepted, "refused": sorted(attempt.refused),
            "deferred": sorted(attempt.deferred), "tls": tls, "reused": reused,
        }
        if error is not None:
            fields["error"] = error
        client.attempts[_outcome(attempt, leased)].inc()
        if attempt.refused or attempt.deferred:
            logs.warning("relay.attempt", **fields)
        else:
            logs.event("relay.attempt", **fields)
        return attempt

    async def _transact(self, conn: SmtpConnection, item: ActionInput, todo: list[str],
                        attempt: Attempt) -> None:
        envelope = item.message.envelope
        sender = self.sender(item)
        payload = to_wire(item.content)
        params: list[str] = []
        ext = conn.extensions
        limit = ext.get("SIZE", "").strip()
        if limit.isdigit() and 0 < int(limit) < len(payload):
            attempt.fail(todo, f"552 5.3.4 message size {len(payload)} exceeds the relay's "
                         f"limit {limit}", "552", permanent=True)
            return
        if "SIZE" in ext:
            params.append(f"SIZE={len(payload)}")
        if envelope.body_8bit or has_8bit(item.content):
            if "8BITMIME" in ext:
                params.append("BODY=8BITMIME")
            else:  # what MTAs do: most servers take 8-bit data anyway; say so
                logs.warning("relay.8bit_without_8bitmime", message_id=item.message.id,
                             relay=self._relay.name)
        headers_utf8 = envelope.smtputf8 and has_8bit(item.content[:header_end(item.content)])
        if "SMTPUTF8" in ext:
            if envelope.smtputf8 or not sender.isascii() or not all(r.isascii() for r in todo):
                params.append("SMTPUTF8")
        else:
            why = "553 5.6.7 the relay does not support SMTPUTF8"
            if headers_utf8 or not sender.isascii():
                attempt.fail(todo, why, "553", permanent=True)
                return
            attempt.fail([r for r in todo if not r.isascii()], why, "553", permanent=True)
            todo = [r for r in todo if r.isascii()]
            if not todo:
                return
        try:
            result = await conn.transaction(sender, todo, payload, params)
        except ValueError as exc:  # a CR/LF in an address: nothing was sent for it
            attempt.fail(todo, f"553 5.1.3 {exc}", "553", permanent=True)
            return
        _classify(result, todo, attempt)


def _outcome(attempt: Attempt, leased: bool) -> str:
    """One of OUTCOMES for an attempt; `leased`: a connection was obtained."""
    if not leased:
        return "connect_failed"
    if attempt.deferred:
        return "temporary"
    return "permanent" if attempt.refused else "delivered"


def _classify(result: Transaction, todo: list[str], attempt: Attempt) -> None:
    """Per-recipient fates from one transaction's replies."""
    if not result.mail.positive:
        attempt.fail(todo, str(result.mail), str(result.mail.code), result.mail.permanent)
        return
    candidates: list[str] = []
    for rcpt, reply in result.rcpt:
        if reply.positive:
            candidates.append(rcpt)
        else:
            attempt.fail([rcpt], str(reply), str(reply.code), reply.permanent)
    final = result.data
    if candidates and final is not None:
        if final.positive:
            attempt.accepted.extend(candidates)
            attempt.code = attempt.code or str(final.code)
        else:
            attempt.fail(candidates, str(final), str(final.code), final.permanent)
    # Not reached: the connection went away (421) part-way; retry those later.
    unsettled = [r for r in todo if r not in attempt.accepted and r not in attempt.refused
                 and r not in attempt.deferred]
    if unsettled:
        last = result.data or (result.rcpt[-1][1] if result.rcpt else result.mail)
        attempt.fail(unsettled, f"not completed: {last}", str(last.code), permanent=False)


def build(action: RuleAction, resources: Resources) -> Action:
    if not isinstance(action, RelayAction):
        raise TypeError(f"Relay cannot be built from {type(action).__name__}")
    return RelayDelivery(action, resources.config.relay(action.relay_id), resources)
