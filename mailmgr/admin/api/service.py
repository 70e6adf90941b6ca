"""The Mail Manager API's state machine: read the resources, change them under one lock,
validate the result exactly like a config file, persist it, apply it like a SIGHUP reload.

Nothing here speaks HTTP (protocol.py) or knows an operation's shape (the operation modules).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import pickle
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mailmgr.admin.api import preflight
from mailmgr.admin.api.errors import ApiError, conflict, validation
from mailmgr.config.fields import one_line
from mailmgr.config.ids import KINDS, ResourceKind
from mailmgr.config.loader import load_resources, load_shared
from mailmgr.config.models import Config
from mailmgr.config.overlay import entry_id
from mailmgr.errors import ConfigError
from mailmgr.state.api_store import ApiState, ApiStore

if TYPE_CHECKING:
    from aiohttp import web

T = TypeVar("T")
_BASE_URL: contextvars.ContextVar[str] = contextvars.ContextVar("mailmgr_api_base_url",
                                                                 default="")
# ClientToken answers are kept this long and at most this many (oldest dropped first).
TOKEN_SECONDS = 24 * 3600
MAX_TOKENS = 1000
_MAX_PROBLEMS_SHOWN = 5


@dataclass(frozen=True)
class Focus:
    """The entry a change is about, so that problems found in it are reported relative to the
    request (`Rules[0].Actions[1]…`) rather than to the document."""

    kind: ResourceKind
    resource_id: str


Change = Callable[[ApiState], tuple[ApiState, dict[str, Any]]]


class ApiService:
    """What every operation handler works through.

    `store` persists; `apply` makes a validated config live (App: the reload path; a
    supervisor: SIGHUP to its workers); `current` is the running config (for IDs, ARNs and
    references as the loader resolved them); `shared` says which loader validates (a pushed
    document is merged with this host's file like a replica does)."""

    def __init__(self, config_path: Path, store: ApiStore,
                 apply: Callable[[Config], Awaitable[None]], current: Callable[[], Config],
                 *, shared: bool = False, archives: Callable[[], Mapping[str, Any]] | None = None,
                 listeners: Callable[[str], list[str]] | None = None,
                 fixed_ports: bool = False) -> None:
        self.config_path = config_path
        self.store = store
        self._apply = apply
        self.current = current
        self.shared = shared
        self.fixed_ports = fixed_ports  # Processes > 1: no new port-0 listeners (preflight)
        self.archives = archives or (lambda: {})
        # The bound `host:port` addresses of an ingress point by ID (port 0 resolved); empty
        # where this process does not serve it (a supervisor).
        self.listeners = listeners or (lambda point_id: [])
        # Answers archive operations elsewhere (a multi-process supervisor: its worker 0,
        # where the archives, the searches and the download links live); None: here.
        self.delegate: Callable[[web.Request, bytes], Awaitable[web.Response]] | None = None
        self._lock = asyncio.Lock()
        self._cached: ApiState | None = None
        self._validated: Config | None = None  # what the last change built
        self.extra: dict[str, Any] = {}  # per-process state of operation modules (searches, ...)

    @property
    def base_url(self) -> str:
        """`scheme://host:port` of the admin listener as the current request reached it (for
        pre-signed URLs); per request, so concurrent requests never see another's."""
        return _BASE_URL.get()

    @base_url.setter
    def base_url(self, value: str) -> None:
        _BASE_URL.set(value)

    def invalidate(self) -> None:
        """The config changed outside the API (SIGHUP, a push): read it again next time."""
        self._cached = None
        self._validated = None
        self.store.forget()

    def config(self) -> Config:
        """The config the resources were last built into (IDs resolved, ARNs, status)."""
        return self._validated or self.current()

    async def state(self) -> ApiState:
        """The resources and metadata as last persisted. Raises ApiError on a store failure."""
        if self._cached is None:
            self._cached = await self._read()
        return self._cached

    async def _read(self) -> ApiState:
        try:
            return await self.store.read()
        except ConfigError as exc:
            # The operator's file is broken: a client retrying (as SDKs do on 5xx) cannot help,
            # so it is a 400 that says what to fix.
            raise validation("the server's configuration cannot be read, so nothing can be "
                             "changed until it is fixed: "
                             + one_line(str(exc.problems[0]), 300)) from None
        except Exception as exc:
            raise ApiError("InternalFailure", f"the API state cannot be read: "
                           f"{one_line(str(exc), 300)}") from None

    async def mutate(self, operation: str, params: Mapping[str, Any], change: Change, *,
                     focus: Focus | None = None, deleting: bool = False) -> dict[str, Any]:
        """Run `change` on a copy of the state under the API's lock, validate the new
        resources like a config file, persist and apply them, and return `change`'s answer.

        A `ClientToken` in `params` makes the call idempotent: the same token with the same
        parameters answers what the first call answered without changing anything; with other
        parameters it is a ConflictException. Raises ApiError (ValidationException with the
        problems, relative to the request when `focus` is given; ConflictException when a
        deletion would break a reference)."""
        async with self._lock:
            # Read afresh, never from the cache: the operator may have edited the config file
            # since (a failed SIGHUP leaves the running config behind the file). A change is
            # made to what the file and the state file say now, so it never writes back stale
            # copies of the file's resources.
            state = await self._read()
            self._cached = state
            token = params.get("ClientToken")
            key = f"{operation}:{token}" if isinstance(token, str) else None
            digest = _digest(params)
            if key is not None:
                seen = state.meta.get("ClientTokens", {}).get(key)
                if seen is not None and seen.get("At", 0) > time.time() - TOKEN_SECONDS:
                    if seen.get("Hash") != digest:
                        raise conflict(f"ClientToken {token!r} was already used with "
                                       "different parameters")
                    return dict(seen.get("Response") or {})
            new, answer = change(ApiState(_copy(state.resources), _copy(state.meta)))
            if key is not None:
                _remember(new.meta, key, digest, answer)
            config = await self._validate(new.resources, focus, deleting)
            try:
                await self.store.write(new)
            except Exception as exc:
                raise ApiError("InternalFailure", "the change could not be stored: "
                               f"{one_line(str(exc), 300)}; nothing changed") from None
            self._cached = new
            self._validated = config
            await self._apply(config)
            return answer

    async def _validate(self, resources: dict[str, Any], focus: Focus | None,
                        deleting: bool) -> Config:
        label = "request"
        loader = load_shared if self.shared else load_resources
        loop = asyncio.get_running_loop()
        try:
            config = await loop.run_in_executor(None, loader, self.config_path, resources, label)
            found = await loop.run_in_executor(None, lambda: preflight.problems(
                config, self.config(), fixed_ports=self.fixed_ports))
            if found:
                raise validation(one_line("; ".join(found[:_MAX_PROBLEMS_SHOWN]), 4000))
            return config
        except ConfigError as exc:
            where = _focus_index(resources, focus)
            lines = [_relative(p.path, where) + ": " + p.message if p.file == label
                     else str(p) for p in exc.problems]
            shown = "; ".join(lines[:_MAX_PROBLEMS_SHOWN])
            more = len(lines) - _MAX_PROBLEMS_SHOWN
            text = one_line(shown + (f" (and {more} more)" if more > 0 else ""), 4000)
            if deleting:
                raise conflict(f"the resource is in use: {text}") from None
            raise validation(text) from None


def _copy(value: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of JSON-shaped data; pickle is ~2x faster than copy.deepcopy on it (a 10,000-
    member list: measured), and the state holds nothing pickle cannot copy."""
    copied: dict[str, Any] = pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))
    return copied


def _digest(params: Mapping[str, Any]) -> str:
    data = {k: v for k, v in params.items() if k != "ClientToken"}
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _remember(meta: dict[str, Any], key: str, digest: str, answer: dict[str, Any]) -> None:
    tokens = meta.setdefault("ClientTokens", {})
    cutoff = time.time() - TOKEN_SECONDS
    for old in [k for k, v in tokens.items() if v.get("At", 0) < cutoff]:
        del tokens[old]
    while len(tokens) >= MAX_TOKENS:
        del tokens[next(iter(tokens))]
    tokens[key] = {"Hash": digest, "At": time.time(),
                   "Response": json.loads(json.dumps(answer, default=str))}


def _focus_index(resources: dict[str, Any], focus: Focus | None) -> str | None:
    if focus is None:
        return None
    section = KINDS[focus.kind].section
    for i, entry in enumerate(resources.get(section) or []):
        if entry_id(focus.kind, entry) == focus.resource_id:
            return f"$.{section}[{i}]"
    return None


def _relative(path: str, where: str | None) -> str:
    """`$.RuleSets[2].Rules[0]` -> `Rules[0]` when the change was RuleSets[2]."""
    if where is not None and (path == where or path.startswith(where + ".")
                              or path.startswith(where + "[")):
        rest = path[len(where):].lstrip(".")
        return rest or "(request)"
    return path
