"""`mailmgr archive search` and `mailmgr archive get`: read-only CLI paths.

Embedded: opens each archive's SQLite index read-only (safe while `serve` writes). With
`Server.SharedState`: searches the PostgreSQL index, so any replica finds mail any replica
archived. Bodies come from local files or S3. Never creates, changes or purges anything. Usage
errors are one line on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, TextIO

from mailmgr.archive import index, shared_cli
from mailmgr.archive.index import ArchiveRow, SearchQuery
from mailmgr.archive.local import INDEX_NAME, local_location, read_message
from mailmgr.config.models import Archive, Config, S3Storage
from mailmgr.errors import ActionError
from mailmgr.state.postgres import SharedStateError

_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_WIDTHS = {"from": 32, "to": 32, "subject": 60}


class UsageError(Exception):
    """A bad option value; the message is printed as is."""


def parse_time(value: str, option: str, *, end: bool, now: datetime | None = None) -> datetime:
    """An aware UTC datetime from an ISO 8601 date or datetime or a relative age (`90s`, `30m`,
    `1h`, `2d`, `1w` = that long before now). Naive times are UTC. A bare date means its
    midnight, or for an end bound (`--until`) the following midnight, so the day is included."""
    now = now or datetime.now(UTC)
    relative = _RELATIVE.match(value)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2).lower()
        return now - timedelta(**{_UNITS[unit]: amount})
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{option}: cannot read {value!r}; use an ISO 8601 date or time "
            "(2026-11-21, 2026-11-21T10:00:00Z) or an age like 30m, 1h, 2d"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def select_archives(config: Config, selector: str | None) -> list[Archive]:
    """The archive named by `selector` (name, ID or ARN), or every archive when None."""
    if selector is None:
        return list(config.archives)
    for archive in config.archives:
        if selector in (archive.id, archive.name, archive.arn):
            return [archive]
    known = ", ".join(a.name for a in config.archives) or "none configured"
    raise UsageError(f"--archive: no archive {selector!r} (archives: {known})")


def _directory(config: Config, archive: Archive) -> Path:
    return config.server.archive_directory / archive.id


def _open(config: Config, archive: Archive) -> sqlite3.Connection | None:
    path = _directory(config, archive) / INDEX_NAME
    return index.connect_readonly(path) if path.exists() else None


_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")


def _clip(text: str | None, width: int) -> str:
    # Header text comes from senders: a control character (ESC sequences) must never reach the
    # operator's terminal, whatever the archive row holds.
    text = " ".join(_CONTROLS.sub("?", text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(results: list[tuple[Archive, ArchiveRow]], out: TextIO) -> None:
    if not results:
        out.write("no archived messages match\n")
        return
    many = len({a.id for a, _ in results}) > 1
    lines = []
    for archive, row in results:
        cells = [
            index.iso(row.received).replace(".000Z", "Z"),
            row.archived_message_id,
            _clip(row.from_ or row.envelope_from or "<>", _WIDTHS["from"]),
            _clip(row.to or ", ".join(row.envelope_to), _WIDTHS["to"]),
            _clip(row.subject, _WIDTHS["subject"]),
        ]
        lines.append(([archive.name] if many else []) + cells)
    header = (["ARCHIVE"] if many else []) + ["RECEIVED", "ARCHIVED ID", "FROM", "TO", "SUBJECT"]
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    for cells in [header, *lines]:
        out.write("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        out.write("\n")


DEFAULT_RESULTS = 100  # AWS StartArchiveSearch MaxResults: default 100, 1-1000
MAX_RESULTS = 1000


def search_command(
    config: Config,
    *,
    archive: str | None,
    from_: str | None,
    to: str | None,
    subject: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
    out: TextIO,
    limit: int = DEFAULT_RESULTS,
    err: TextIO | None = None,
) -> int:
    """Search one archive (`--archive` name, ID or ARN) or, by default, every Local archive;
    print up to `limit` rows newest first, saying on `err` when more matched. Exit 0 (even with
    no match), 2 on a bad option, 1 when an index cannot be read."""
    err = err or sys.stderr
    try:
        query = SearchQuery(
            from_=from_,
            to=to,
            subject=subject,
            since=parse_time(since, "--since", end=False).timestamp() if since else None,
            until=parse_time(until, "--until", end=True).timestamp() if until else None,
            limit=limit + 1,  # one more than shown: tells whether rows were left out
        )
        archives = select_archives(config, archive)
    except UsageError as exc:
        err.write(f"mailmgr: {exc}\n")
        return 2
    results: list[tuple[Archive, ArchiveRow]] = []
    if config.server.shared_state is not None:
        try:
            results = asyncio.run(shared_cli.search(config, archives, query))
        except SharedStateError as exc:
            err.write(f"mailmgr: cannot search the shared archive index: {exc}\n")
            return 1
    for target in archives if config.server.shared_state is None else ():
        try:
            conn = _open(config, target)
            if conn is None:
                continue
            try:
                results += [(target, row) for row in index.search(conn, query)]
            finally:
                conn.close()
        except sqlite3.Error as exc:
            err.write(f"mailmgr: archive {target.name}: cannot read its index: {exc}\n")
            return 1
    results.sort(key=lambda r: (r[1].received_timestamp, r[1].archived_message_id), reverse=True)
    if len(results) > limit:
        err.write(f"mailmgr: more than {limit} archived messages match; showing the newest "
                  f"{limit} (--max-results, at most {MAX_RESULTS})\n")
    results = results[: max(0, limit)]
    if as_json:
        rows = [{**row.to_aws_json(), "ArchiveId": a.id} for a, row in results]
        out.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    else:
        _table(results, out)
    return 0


def get_command(
    config: Config,
    archived_id: str,
    *,
    archive: str | None,
    out: BinaryIO,
    err: TextIO | None = None,
) -> int:
    """Write the archived message's bytes to `out`, looking in `--archive` or in every
    archive (the shared index with `Server.SharedState`). Exit 0 found, 1 not found, unreadable
    or held by another replica (the message says which), 2 on a bad --archive."""
    err = err or sys.stderr
    try:
        archives = select_archives(config, archive)
    except UsageError as exc:
        err.write(f"mailmgr: {exc}\n")
        return 2
    wanted = archived_id.strip().lower()
    try:
        found = _find(config, archives, wanted)
    except (SharedStateError, sqlite3.Error) as exc:
        err.write(f"mailmgr: cannot read the archive index: {exc}\n")
        return 1
    for target, row, location in found:
        try:
            content = _read_body(config, target, row, location)
        except _ElsewhereError as exc:
            err.write(f"mailmgr: archive {target.name}: {exc}\n")
            return 1
        except (OSError, ActionError) as exc:
            err.write(f"mailmgr: archive {target.name}: cannot read {row.path}: {exc}\n")
            return 1
        if content is not None:
            out.write(content)
            out.flush()
            return 0
    err.write(f"mailmgr: archived message {archived_id} not found\n")
    return 1


class _ElsewhereError(Exception):
    """A local body kept by another replica."""


def _find(config: Config, archives: list[Archive], archived_id: str
          ) -> list[tuple[Archive, ArchiveRow, str | None]]:
    """(archive, row, body location or None when embedded) for each archive indexing the ID."""
    if config.server.shared_state is not None:
        hit = asyncio.run(shared_cli.lookup(config, archives, archived_id))
        return [hit] if hit else []
    found: list[tuple[Archive, ArchiveRow, str | None]] = []
    for target in archives:
        conn = _open(config, target)
        if conn is None:
            continue
        try:
            row = index.lookup(conn, archived_id)
        finally:
            conn.close()
        if row is not None:
            found.append((target, row, None))
    return found


def _read_body(config: Config, target: Archive, row: ArchiveRow, location: str | None
               ) -> bytes | None:
    if isinstance(target.storage, S3Storage) and (location is None or location.startswith("s3:")):
        return asyncio.run(shared_cli.read_s3(config, target, row.path))
    directory = _directory(config, target)
    if location is not None and location != local_location(directory):
        _, host, where = [*location.split(":", 2), "", ""][:3]
        raise _ElsewhereError(
            f"message {row.archived_message_id} is stored on replica {host or '?'} in {where}"
            " (Local storage); run `mailmgr archive get` there")
    return read_message(directory, row.path)
