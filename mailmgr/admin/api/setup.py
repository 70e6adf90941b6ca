"""Building a server's ApiService: the store that fits its config (the state file, or the shared
PostgreSQL store with `Server.SharedState`) and how its changes go live."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from mailmgr.admin.api.service import ApiService
from mailmgr.config.models import Config
from mailmgr.state.api_store import ApiStore, FileApiStore, SharedApiStore, state_path


def api_service(config: Config, apply: Callable[[Config], Awaitable[None]],
                current: Callable[[], Config], *, pool: Any = None,
                archives: Callable[[], Mapping[str, Any]] | None = None,
                listeners: Callable[[str], list[str]] | None = None,
                fixed_ports: bool = False) -> ApiService:
    """`pool`: the psycopg pool of `Server.SharedState` (required when it is set)."""
    store: ApiStore
    if config.server.shared_state is not None:
        if pool is None:
            raise ValueError("Server.SharedState is set: the API needs its pool")
        store = SharedApiStore(config.source, pool)
    else:
        store = FileApiStore(config.source, state_path(config))
    return ApiService(config.source, store, apply, current, shared=pool is not None,
                      archives=archives, listeners=listeners, fixed_ports=fixed_ports)
