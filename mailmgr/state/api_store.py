"""Where the Mail Manager API keeps what it changed (interface.md; the admin API issue):

- `FileApiStore` (no `Server.SharedState`): `DataDirectory/api-state.json`, per-resource changes
  on top of the config file (mailmgr.config.overlay), written atomically and fsynced;
- `SharedApiStore` (`Server.SharedState`): the resources as the fleet's next shared document
  (config_store.push, so every replica applies them) and the metadata in `mailmgr_api_meta`.

Both also keep the API's metadata (`ApiState.meta`: creation times, ClientToken answers, jobs).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mailmgr.config import load
from mailmgr.config.loader import load_resources
from mailmgr.config.models import Config
from mailmgr.config.overlay import Overlay, apply, difference
from mailmgr.config.shared import shareable_document
from mailmgr.errors import ConfigError, ConfigProblem

STATE_FILE = "api-state.json"
FORMAT_VERSION = 1
MAX_STATE_BYTES = 256 * 1024 * 1024  # far above any real config (interface: 16 MiB documents)


class StateFileError(Exception):
    """The state file exists but cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class ApiState:
    """`resources`: the complete resource document the server runs (config-file sections,
    every address list's members inline); `meta`: JSON-able metadata by namespace
    (`Resources`: {id: {"Created": epoch s, "Modified": epoch s}}, `ClientTokens`, ...)."""

    resources: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


class ApiStore(Protocol):
    async def read(self) -> ApiState:
        """Raises ConfigError (the config file), StateFileError or SharedStateError."""

    async def write(self, state: ApiState) -> None:
        """Durable when it returns. Raises OSError or SharedStateError."""

    def forget(self) -> None:
        """Drop what is cached from the config file (a reload happened)."""


def state_path(config: Config) -> Path:
    return config.server.data_directory / STATE_FILE


def _read_state_file(path: Path) -> tuple[Overlay, dict[str, Any]] | None:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_STATE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_STATE_BYTES:
        raise StateFileError(f"{path}: larger than {MAX_STATE_BYTES} bytes")
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("Version") != FORMAT_VERSION:
            raise ValueError(f"expected a mapping with Version {FORMAT_VERSION}")
        meta = doc.get("Meta") or {}
        if not isinstance(meta, dict) or not all(isinstance(v, dict) for v in meta.values()):
            raise ValueError("Meta must be a mapping of mappings")
        return Overlay.from_json(doc.get("Resources") or {}), meta
    except (ValueError, RecursionError) as exc:
        raise StateFileError(f"{path}: not a mailmgr API state file: {exc}") from None


def _write_state_file(path: Path, overlay: Overlay, meta: dict[str, Any]) -> None:
    """Atomic replace: a crash leaves the old or the new file, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"Version": FORMAT_VERSION, "Resources": overlay.to_json(), "Meta": meta},
                      ensure_ascii=False, separators=(",", ":"), default=str)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_with_overlay(path: Path) -> Config:
    """The config a server started with `path` runs without SharedState: the file, with the
    API's state file (under its DataDirectory) on top when there is one. Blocking. Raises
    ConfigError (a state file that cannot be used is reported as a problem of that file)."""
    config = load(path)
    state = state_path(config)
    try:
        found = _read_state_file(state)
    except StateFileError as exc:
        raise ConfigError([ConfigProblem(str(state), "$", str(exc))]) from None
    if found is None or found[0].empty:
        return config
    document = apply(shareable_document(path), found[0])
    return load_resources(path, document, f"{state} (changes made through the API)")


def api_overlay(config: Config) -> tuple[dict[str, Any], bool]:
    """(the resources a server without SharedState runs: the file's with the API's state file
    on top, whether the state file changed anything). Blocking. Raises StateFileError."""
    found = _read_state_file(state_path(config))
    base = shareable_document(config.source)
    if found is None or found[0].empty:
        return base, False
    return apply(base, found[0]), True


class FileApiStore:
    """The state file of a server without SharedState. Reads and writes run in the default
    executor (file I/O and fsync stay off the event loop). The config file's resources, which
    every write diffs against, are parsed once per version of the file (its size and mtime)."""

    def __init__(self, config_path: Path, state_file: Path) -> None:
        self.config_path = config_path
        self.state_file = state_file
        self._base: tuple[tuple[int, int], dict[str, Any]] | None = None

    def forget(self) -> None:
        """Parse the config file again next time (a reload: files it imports may have
        changed without it)."""
        self._base = None

    def _base_document(self) -> dict[str, Any]:
        try:
            info = self.config_path.stat()
            key = (info.st_mtime_ns, info.st_size)
        except OSError:
            key = (0, -1)
        if self._base is None or self._base[0] != key:
            self._base = (key, shareable_document(self.config_path))
        return self._base[1]

    def _read(self) -> ApiState:
        base = self._base_document()
        found = _read_state_file(self.state_file)
        if found is None:
            return ApiState(copy.deepcopy(base), {})
        return ApiState(apply(base, found[0]), found[1])

    def _write(self, state: ApiState) -> None:
        _write_state_file(self.state_file, difference(self._base_document(), state.resources),
                          state.meta)

    async def read(self) -> ApiState:
        return await asyncio.get_running_loop().run_in_executor(None, self._read)

    async def write(self, state: ApiState) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._write, state)


class SharedApiStore:
    """The fleet's shared document (mailmgr.state.config_store) and the `mailmgr_api_meta`
    row. A write pushes the resources as a new version (NOTIFY: every replica reloads)."""

    def __init__(self, config_path: Path, pool: Any) -> None:
        self.config_path = config_path
        self.pool = pool

    def forget(self) -> None:
        return None  # nothing cached: every read asks PostgreSQL

    async def read(self) -> ApiState:
        from mailmgr.state import config_store
        from mailmgr.state.postgres import SharedStateError

        stored = await config_store.active(self.pool)
        if stored is None:
            loop = asyncio.get_running_loop()
            resources = await loop.run_in_executor(None, shareable_document, self.config_path)
        else:
            resources = stored.document
        try:
            async with self.pool.connection(timeout=config_store.QUERY_TIMEOUT) as conn:
                cursor = await conn.execute(
                    "SELECT value FROM mailmgr_api_meta WHERE name = 'meta'")
                row = await cursor.fetchone()
        except Exception as exc:
            raise SharedStateError(f"PostgreSQL: {type(exc).__name__}") from None
        meta = json.loads(row[0]) if row else {}
        return ApiState(resources, meta if isinstance(meta, dict) else {})

    async def write(self, state: ApiState) -> None:
        from mailmgr.state import config_store
        from mailmgr.state.postgres import SharedStateError

        text = json.dumps(state.meta, ensure_ascii=False, default=str)
        try:
            async with self.pool.connection(timeout=config_store.QUERY_TIMEOUT) as conn:
                await conn.execute(
                    "INSERT INTO mailmgr_api_meta (name, value) VALUES ('meta', %s) "
                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
                    "updated_at = now()", (text,))
        except Exception as exc:
            raise SharedStateError(f"PostgreSQL: {type(exc).__name__}") from None
        await config_store.push(self.pool, state.resources, f"mailmgr-api@{_host()}")


def _host() -> str:
    return os.uname().nodename
