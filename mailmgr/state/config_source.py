"""Where a running server's configuration comes from: its file with the Mail Manager API's
changes on top (`FileSource`), or its file plus
the fleet's shared document in PostgreSQL (`shared_source.SharedSource`, which also watches for
pushes). Both feed App.reload, the path SIGHUP uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from mailmgr.config.models import Config
from mailmgr.state.api_store import load_with_overlay, state_path


class ConfigSource(Protocol):
    """What App.reload loads from. `load` raises ConfigError (with every problem) or OSError."""

    async def load(self) -> Config: ...

    def watch(self, on_change: Callable[[], None]) -> None:
        """Call `on_change` (in the event loop) when the source has something new."""

    async def close(self) -> None: ...


class FileSource:
    """The config file alone: SIGHUP is the only change signal."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def load(self) -> Config:
        """The file with the Mail Manager API's state file on top (mailmgr.state.api_store)."""
        return await asyncio.get_running_loop().run_in_executor(
            None, load_with_overlay, self.path)

    def watch(self, on_change: Callable[[], None]) -> None:
        return None

    async def close(self) -> None:
        return None


async def open_source(config: Config) -> tuple[ConfigSource, Config]:
    """The source for `config` (as loaded from its local file) and the config to start with:
    the file itself, or with `Server.SharedState` the file merged with the shared document.
    PostgreSQL unreachable at start-up raises SharedStateError (the server does not start); a
    shared document this host cannot load is a ConfigError."""
    settings = config.server.shared_state
    if settings is None:
        local = FileSource(config.source)
        if not state_path(config).exists():
            return local, config
        return local, await local.load()
    from mailmgr.state.postgres import SharedStateError  # the driver: only with SharedState
    from mailmgr.state.shared_source import SharedSource

    try:
        source = await SharedSource.open(config.source, settings)
    except SharedStateError as exc:
        # An operational failure, like a port in use: `serve` logs server.start_failed and
        # exits 1 (a config problem exits 2).
        raise SharedStateError(
            f"{exc} (Server.SharedState: the shared configuration store is required at "
            "start-up)") from None
    try:
        return source, await source.load()
    except BaseException:
        await source.close()
        raise
