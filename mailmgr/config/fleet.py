"""`Server.Processes` and `Server.SharedState`: how many worker processes serve, and where the
fleet's shared state lives (PostgreSQL). Parsing only; the supervisor and mailmgr.state use them.
"""

from __future__ import annotations

import os
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from mailmgr.config.fields import Ctx, check_keys, key_path, mapping, opt_str
from mailmgr.config.files import read_file
from mailmgr.config.server_models import SharedStateSettings

MAX_PROCESSES = 1024
MAX_DSN_FILE_BYTES = 4096
DEFAULT_POOL_SIZE = 4


def usable_cores() -> int:
    """The cores this process may run on (the affinity mask, e.g. a container's cpuset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def parse_processes(ctx: Ctx, server: dict[Any, Any], path: str) -> int:
    """`Processes: N | auto` (auto: the usable cores); 1 keeps the single-process path."""
    value = server.get("Processes")
    where = key_path(path, "Processes")
    if value is None:
        return 1
    if value == "auto":
        return usable_cores()
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PROCESSES:
        ctx.problem(where, f"Processes must be a whole number from 1 to {MAX_PROCESSES}, or "
                           f"'auto' (got {value!r})")
        return 1
    return value


def parse_shared_state(ctx: Ctx, server: dict[Any, Any], path: str
                       ) -> SharedStateSettings | None:
    """`SharedState: {PostgreSQL: {Dsn | DsnFile, PoolSize}}`; absent: the embedded default.
    The DSN (it may hold a password) never appears in a problem message or a log line."""
    raw = server.get("SharedState")
    if raw is None:
        return None
    where = key_path(path, "SharedState")
    section = mapping(ctx, raw, where)
    if section is None:
        return None
    check_keys(ctx, section, ("PostgreSQL",), where)
    pg_where = key_path(where, "PostgreSQL")
    pg = mapping(ctx, section.get("PostgreSQL"), pg_where) if "PostgreSQL" in section else None
    if pg is None:
        if "PostgreSQL" not in section:
            ctx.problem(where, "missing required key 'PostgreSQL'")
        return None
    check_keys(ctx, pg, ("Dsn", "DsnFile", "PoolSize"), pg_where)
    dsn = opt_str(ctx, pg, "Dsn", pg_where)
    dsn_file = opt_str(ctx, pg, "DsnFile", pg_where)
    if (dsn is None) == (dsn_file is None):
        ctx.problem(pg_where, "give exactly one of Dsn and DsnFile")
        return None
    if dsn_file is not None:
        dsn = _read_dsn(ctx, dsn_file, key_path(pg_where, "DsnFile"))
    elif dsn is not None and not _looks_like_dsn(dsn):
        ctx.problem(key_path(pg_where, "Dsn"),
                    "expected a valid postgresql:// URI or key=value connection string "
                    "(libpq cannot parse it; details withheld as they may quote the password)")
        return None
    pool = pg.get("PoolSize", DEFAULT_POOL_SIZE)
    if isinstance(pool, bool) or not isinstance(pool, int) or not 1 <= pool <= 100:
        ctx.problem(key_path(pg_where, "PoolSize"), "PoolSize must be a whole number from 1 "
                                                     "to 100")
        pool = DEFAULT_POOL_SIZE
    if dsn is None:
        return None
    return SharedStateSettings(dsn=dsn, pool_size=pool)


def _looks_like_dsn(text: str) -> bool:
    """A connection string libpq can parse. libpq's own parse errors quote the offending token,
    which may be the password, so they are never shown: the caller reports a fixed message."""
    if not (text.startswith(("postgresql://", "postgres://")) or "=" in text):
        return False
    try:
        conninfo_to_dict(text)
    except Exception:
        return False
    return True


def _read_dsn(ctx: Ctx, name: str, where: str) -> str | None:
    file = ctx.resolve(name)
    data = read_file(ctx, file, where, MAX_DSN_FILE_BYTES)
    if data is None:
        return None
    text = data.decode("utf-8", "replace").strip()
    if not text or not _looks_like_dsn(text):
        ctx.problem(where, f"'{file}' must hold one PostgreSQL connection string "
                           f"(at most {MAX_DSN_FILE_BYTES} bytes)")
        return None
    return text
