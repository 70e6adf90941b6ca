"""What `mailmgr queue` does to the spool: list, show, retry, delete. The same code runs inside
the server (admin API, with its SpoolWorker, so scheduling stays consistent) and in the CLI
against a stopped server's spool (no worker: changes are written as spool records).

States: `retrying` = a temporary action failure is recorded (attempts > 0) or the next attempt
is scheduled for later (next_attempt_at > now); `pending` = every other unfinished message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from mailmgr import logs
from mailmgr.errors import SpoolError
from mailmgr.message import ProcessingState
from mailmgr.spool.store import SpoolEntry, SpoolStore
from mailmgr.spool.worker import STARTS_KEY, InFlight, SpoolWorker

STATES = ("pending", "retrying", "all")

__all__ = ["STATES", "InFlight", "QueueItem", "QueueService", "UnknownMessage"]


class UnknownMessage(KeyError):
    """No unfinished message has this ID (never spooled, or finished/deleted already)."""


def _is_retrying(state: ProcessingState, now: float) -> bool:
    return state.attempts > 0 or state.next_attempt_at > now


@dataclass(frozen=True)
class QueueItem:
    """One row of `mailmgr queue list`. Times are epoch seconds; `size` is in bytes.

    `status` is where the running server has it (queued, in-flight, scheduled, parked,
    waiting) or `stopped` when read from a stopped server's spool."""

    id: str
    received_at: float
    size: int
    mail_from: str
    live: tuple[str, ...]  # recipients still to be processed
    attempts: int
    next_attempt_at: float | None  # None: due now (or running)
    last_error: str | None
    state: str  # pending | retrying
    status: str

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "received_at": self.received_at,
            "age_seconds": round(max(0.0, now - self.received_at), 3),
            "size": self.size,
            "mail_from": self.mail_from,
            "recipients": list(self.live),
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
            "last_error": self.last_error,
            "state": self.state,
            "status": self.status,
        }


def _progress(state: ProcessingState) -> dict[str, Any]:
    """Checkpointed progress: the rule/action reached and each action's resume data
    (action_data keys are "<rule index>.<action index>", 0-based)."""
    actions: list[dict[str, Any]] = []
    starts = 0
    for key, value in state.action_data:
        if key == STARTS_KEY:
            starts = int(value) if value.isdigit() else 0
            continue
        rule, _, action = key.partition(".")
        if not (rule.isdigit() and action.isdigit()):
            continue  # other reserved bookkeeping keys
        try:
            resume: Any = json.loads(value)
        except ValueError:
            resume = value
        actions.append({"rule_index": int(rule), "action_index": int(action),
                        "resume": resume})
    return {
        "rule_index": state.rule_index,
        "action_index": state.action_index,
        "live": list(state.live) if state.live is not None else None,
        "matched": list(state.matched) if state.matched is not None else None,
        "dropped": list(state.dropped),
        "stopped": list(state.stopped),
        "added_headers": [list(h) for h in state.added_headers],
        "attempts": state.attempts,
        "first_failure_at": state.first_failure_at,
        "next_attempt_at": state.next_attempt_at or None,
        "last_error": state.last_error,
        "unfinished_starts": starts,
        "actions": actions,
    }


class QueueService:
    """Operator commands on one open SpoolStore. `worker` is the running server's worker, or
    None when the CLI opened the spool of a stopped server itself.

    Errors: UnknownMessage (no such unfinished ID), InFlight (delete while a worker runs the
    message: refused, try again), SpoolError (the spool could not be read or written)."""

    def __init__(self, store: SpoolStore, worker: SpoolWorker | None,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._worker = worker
        self._clock = clock

    @property
    def writable(self) -> bool:
        return self._store.writable

    def _status(self, mid: str, state: ProcessingState) -> tuple[str, float | None]:
        if self._worker is None:
            when = state.next_attempt_at if state.next_attempt_at > self._clock() else None
            return "stopped", when
        return self._worker.status(mid)

    async def _load(self, mid: str) -> SpoolEntry:
        try:
            return await self._store.load(mid)
        except KeyError:
            raise UnknownMessage(mid) from None

    async def list(self, state: str = "all") -> list[QueueItem]:
        """Unfinished messages in arrival order, filtered by `state` (pending|retrying|all)."""
        if state not in STATES:
            raise ValueError(f"unknown state {state!r} (pending, retrying or all)")
        now = self._clock()
        items = []
        for mid in self._store.pending_ids():
            try:
                peek = self._store.peek_state(mid)
            except KeyError:
                continue
            retrying = _is_retrying(peek, now)
            if state != "all" and retrying != (state == "retrying"):
                continue
            try:
                entry = await self._store.load(mid)
            except KeyError:
                continue  # finished while we listed
            message, current = entry.message, entry.state
            status, when = self._status(mid, current)
            items.append(QueueItem(
                id=mid, received_at=message.received_at, size=message.size,
                mail_from=message.envelope.mail_from,
                live=current.live if current.live is not None else message.envelope.rcpt_to,
                attempts=current.attempts, next_attempt_at=when,
                last_error=current.last_error,
                state="retrying" if _is_retrying(current, now) else "pending", status=status,
            ))
        return items

    async def show(self, mid: str) -> dict[str, Any]:
        """Everything about one message but its content: {id, received_at, age_seconds, size,
        state, status, next_attempt_at, envelope, session, verdicts, progress}."""
        entry = await self._load(mid)
        now = self._clock()
        message, state = entry.message, entry.state
        status, when = self._status(mid, state)
        return {
            "id": mid,
            "received_at": message.received_at,
            "age_seconds": round(max(0.0, now - message.received_at), 3),
            "size": message.size,
            "state": "retrying" if _is_retrying(state, now) else "pending",
            "status": status,
            "next_attempt_at": when,
            "envelope": message.envelope.to_json(),
            "session": message.session.to_json(),
            "verdicts": state.verdicts.to_json() if state.verdicts else None,
            "progress": _progress(state),
        }

    async def retry(self, mid: str) -> str:
        """Make one message due now. Running: its timer entry moves to now (attempts are kept;
        the next attempt counts as one more). Stopped: a STATE record with next_attempt_at 0 is
        written, so the next start runs it at once. Returns its status before."""
        if not self._store.is_pending(mid):
            raise UnknownMessage(mid)
        if self._worker is not None:
            try:
                return self._worker.retry_now(mid)
            except KeyError:
                raise UnknownMessage(mid) from None
        state = self._store.peek_state(mid)
        if state.next_attempt_at:
            await self._checkpoint(mid, replace(state, next_attempt_at=0.0))
        return "stopped"

    async def retry_all(self) -> int:
        """`retry` for every message scheduled for later; returns how many were moved."""
        if self._worker is not None:
            return self._worker.retry_all()
        moved = 0
        now = self._clock()
        for mid in self._store.pending_ids():
            state = self._store.peek_state(mid)
            if state.next_attempt_at > now:
                await self._checkpoint(mid, replace(state, next_attempt_at=0.0))
                moved += 1
        return moved

    async def _checkpoint(self, mid: str, state: ProcessingState) -> None:
        try:
            await self._store.checkpoint(mid, state)
        except KeyError:
            raise UnknownMessage(mid) from None

    async def delete(self, mid: str) -> None:
        """Finish a message unprocessed: one DONE record, durable on return (recovery never
        brings it back), logged as `queue.deleted`. Refused (InFlight) while a worker runs it."""
        entry = await self._load(mid)
        message = entry.message
        if self._worker is not None:
            try:
                await self._worker.delete(mid)
            except KeyError:
                raise UnknownMessage(mid) from None
        else:
            if not self._store.is_pending(mid):
                raise UnknownMessage(mid)
            await self._store.finish(mid)
        if self._store.is_pending(mid):
            raise SpoolError(f"message {mid} is still pending after its DONE record")
        logs.event("queue.deleted", message_id=mid, size=message.size,
                   recipients=len(message.envelope.rcpt_to), attempts=entry.state.attempts,
                   server_running=self._worker is not None)
