"""`mailmgr config push FILE | show | export`: the fleet's shared configuration document in
PostgreSQL, reached through the local config's `Server.SharedState`; `export` also prints the
Mail Manager API's changes on top of a file without it. Output and exit statuses
are documented in the README (shared configuration); the DSN is never printed.
"""

from __future__ import annotations

import asyncio
import copy
import getpass
import json
import socket
import sys
from pathlib import Path
from typing import Any, TextIO

import yaml

from mailmgr.config import load
from mailmgr.config.documents import load_document
from mailmgr.config.fields import Ctx, Sink
from mailmgr.config.loader import load_shared
from mailmgr.config.models import Config, SharedStateSettings
from mailmgr.config.shared import RESOURCE_KEYS, merge_resources, shareable_document
from mailmgr.errors import ConfigError
from mailmgr.state import config_store
from mailmgr.state.api_store import StateFileError, api_overlay, load_with_overlay, state_path
from mailmgr.state.config_store import PushResult, StoredConfig
from mailmgr.state.postgres import SharedStateError, migrate, open_pool

EXIT_INVALID = 2  # FILE has problems: nothing stored
EXIT_UNAVAILABLE = 1  # no SharedState, PostgreSQL down, nothing pushed yet
CONNECT_WAIT = 5.0  # seconds a command waits for PostgreSQL before saying it is unreachable


class NotConfigured(Exception):
    """The local config has no Server.SharedState."""


def _settings(local: Path) -> SharedStateSettings:
    settings = load(local).server.shared_state
    if settings is None:
        raise NotConfigured(f"{local}: Server.SharedState is not configured, so there is no "
                            "shared configuration store (see the README: shared configuration)")
    return settings


def _pushed_by() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


async def _push(settings: SharedStateSettings, document: dict[str, Any]) -> PushResult:
    pool = await open_pool(settings, name="mailmgr-config-push", connect_wait=CONNECT_WAIT)
    try:
        await migrate(pool)
        return await config_store.push(pool, document, _pushed_by())
    finally:
        await pool.close()


async def _active(settings: SharedStateSettings) -> StoredConfig | None:
    pool = await open_pool(settings, name="mailmgr-config-show", connect_wait=CONNECT_WAIT)
    try:
        await migrate(pool)
        return await config_store.active(pool)
    finally:
        await pool.close()


def _describe(stored: StoredConfig) -> str:
    when = stored.pushed_at.isoformat(timespec="seconds")
    return f"version {stored.version}, sha256 {stored.sha256}, pushed {when} by {stored.pushed_by}"


def _meta(stored: StoredConfig) -> dict[str, Any]:
    return {"version": stored.version, "sha256": stored.sha256,
            "pushed_at": stored.pushed_at.isoformat(), "pushed_by": stored.pushed_by}


def _problems(exc: ConfigError, err: TextIO) -> None:
    n = len(exc.problems)
    print(f"mailmgr config push: {n} configuration problem{'s' if n != 1 else ''} "
          "(nothing was stored):", file=err)
    for problem in exc.problems:
        print(f"  {problem}", file=err)


def push_command(file: Path, local: Path, *, as_json: bool, out: TextIO = sys.stdout,
                 err: TextIO = sys.stderr) -> int:
    """Validate `file` with the normal loader and store its resources (without `Server`,
    address-list and rule-set `File:` imports inlined) as the next version. Exit 0 stored or
    unchanged, 2 invalid (every problem printed), 1 no SharedState or PostgreSQL down."""
    try:
        load(file)
        document = shareable_document(file)
    except ConfigError as exc:
        _problems(exc, err)
        return EXIT_INVALID
    try:
        settings = _settings(local)
        result = asyncio.run(_push(settings, document))
    except NotConfigured as exc:
        print(f"mailmgr config push: {exc}", file=err)
        return EXIT_UNAVAILABLE
    except SharedStateError as exc:
        print(f"mailmgr config push: {exc}", file=err)
        return EXIT_UNAVAILABLE
    stored = result.stored
    if as_json:
        print(json.dumps({**_meta(stored), "created": result.created}), file=out)
    elif result.created:
        print(f"{file}: stored as the shared configuration ({_describe(stored)}); replicas "
              "apply it within 10 s", file=out)
    else:
        print(f"{file}: unchanged: identical to the active shared configuration "
              f"({_describe(stored)}); nothing stored", file=out)
    return 0


def show_command(local: Path, *, as_json: bool, out: TextIO = sys.stdout,
                 err: TextIO = sys.stderr) -> int:
    """Print the active shared document (YAML after a `#` header line, or JSON). Exit 0, or 1
    when nothing was pushed, SharedState is not configured or PostgreSQL is down."""
    try:
        stored = asyncio.run(_active(_settings(local)))
    except (NotConfigured, SharedStateError) as exc:
        print(f"mailmgr config show: {exc}", file=err)
        return EXIT_UNAVAILABLE
    if stored is None:
        print("mailmgr config show: no configuration has been pushed yet (mailmgr config push "
              "FILE); replicas use their local files", file=err)
        return EXIT_UNAVAILABLE
    if as_json:
        print(json.dumps({**_meta(stored), "document": stored.document}, indent=2), file=out)
    else:
        print(f"# shared configuration {_describe(stored)}", file=out)
        print(yaml.safe_dump(stored.document, sort_keys=False, allow_unicode=True), end="",
              file=out)
    return 0


def _redacted_server(server: Any) -> Any:
    server = copy.deepcopy(server)
    pg = (server.get("SharedState") or {}).get("PostgreSQL") if isinstance(server, dict) else None
    if isinstance(pg, dict) and "Dsn" in pg:
        pg["Dsn"] = "<redacted>"
    return server


def export_command(local: Path, *, as_json: bool, out: TextIO = sys.stdout,
                   err: TextIO = sys.stderr) -> int:
    """Print the configuration this host runs, in config-file form: the local `Server` section
    (Dsn redacted) with the resources as the server loads them: with SharedState the shared
    document merged as a replica merges it (the local file's resources when nothing was
    pushed); without, the local file with the Mail Manager API's state file on top. Exit 0, or
    1 when PostgreSQL is down or the API state file cannot be used."""
    sink = Sink()
    ok, data = load_document(Ctx(str(local), local.parent, sink), local, "$")
    if not ok or not isinstance(data, dict):
        raise ConfigError(sink.report())
    config = load(local)
    if config.server.shared_state is None:
        try:
            resources, changes = api_overlay(config)
        except StateFileError as exc:
            print(f"mailmgr config export: {exc}", file=err)
            return EXIT_UNAVAILABLE
        origin = (f"with the API's changes in {state_path(config)}" if changes
                  else "local file only")
    else:
        try:
            stored = asyncio.run(_active(config.server.shared_state))
        except SharedStateError as exc:
            print(f"mailmgr config export: {exc}", file=err)
            return EXIT_UNAVAILABLE
        resources = data if stored is None else merge_resources(data, stored.document)
        origin = "local file only" if stored is None else f"shared version {stored.version}"
    merged = {"Server": _redacted_server(data.get("Server") or {}),
              **{k: v for k, v in resources.items() if k in RESOURCE_KEYS and v is not None}}
    if as_json:
        print(json.dumps(merged, indent=2, default=str), file=out)
    else:
        print(f"# effective configuration of {local} ({origin})", file=out)
        print(yaml.safe_dump(merged, sort_keys=False, allow_unicode=True), end="", file=out)
    return 0


def effective_config(local: Path) -> Config:
    """The configuration a replica with this local file runs, for the commands that read
    resources (archive, explain): the local file alone without `Server.SharedState`, else the
    local file merged with the active shared document (the local file's resources when nothing
    was pushed, or, with a warning on stderr, when this host cannot load the pushed document).
    Raises ConfigError (the local file's problems) and SharedStateError (PostgreSQL
    unreachable; the DSN is not in the message)."""
    config = load(local)
    settings = config.server.shared_state
    if settings is None:
        return load_with_overlay(local)  # with the Mail Manager API's changes
    stored = asyncio.run(_active(settings))
    if stored is None:
        return config
    try:
        return load_shared(local, stored.document, f"shared config v{stored.version}")
    except ConfigError as exc:
        # A running replica keeps its previous configuration in this case (config.reload_failed):
        # say so and go on with the local file rather than refuse to search or explain.
        print(f"mailmgr: the active shared configuration (version {stored.version}) cannot be "
              f"loaded on this host ({len(exc.problems)} problem(s), first: "
              f"{exc.problems[0]}); using {local} alone", file=sys.stderr)
        return config
