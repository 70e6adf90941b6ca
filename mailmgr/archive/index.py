"""The SQLite index of one local archive: schema, ArchiveRow, and synchronous queries.

Every function takes the connection it must use and blocks; callers own threading (the store
runs them in its single database thread, the CLI calls them directly). No file I/O here.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    archived_message_id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    rule_index INTEGER NOT NULL,
    action_index INTEGER NOT NULL,
    received_timestamp REAL NOT NULL,
    date TEXT,
    to_header TEXT,
    from_header TEXT,
    cc_header TEXT,
    subject TEXT,
    message_id_header TEXT,
    has_attachments INTEGER NOT NULL,
    received_headers TEXT NOT NULL,
    in_reply_to TEXT,
    x_mailer TEXT,
    x_original_mailer TEXT,
    x_priority TEXT,
    ingress_point_id TEXT NOT NULL,
    sender_hostname TEXT,
    sender_ip_address TEXT NOT NULL,
    envelope_helo TEXT NOT NULL,
    envelope_from TEXT NOT NULL,
    envelope_to TEXT NOT NULL,
    rule_set_id TEXT NOT NULL,
    source_arn TEXT,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    UNIQUE (message_id, rule_index, action_index)
);
CREATE INDEX IF NOT EXISTS messages_received ON messages (received_timestamp);
"""


@dataclass(frozen=True)
class ArchiveRow:
    """One archived message as AWS archive search returns it, plus where mailmgr keeps it.

    Field order matches the `messages` columns. Header fields are decoded text, None when the
    header is absent; `path` is relative to the archive directory."""

    archived_message_id: str
    message_id: str  # mailmgr's message ID (the spool key)
    rule_index: int
    action_index: int
    received_timestamp: float  # epoch seconds, when the message was accepted
    date: str | None
    to: str | None
    from_: str | None
    cc: str | None
    subject: str | None
    message_id_header: str | None  # the Message-ID header
    has_attachments: bool
    received_headers: tuple[str, ...]
    in_reply_to: str | None
    x_mailer: str | None
    x_original_mailer: str | None
    x_priority: str | None
    ingress_point_id: str
    sender_hostname: str | None
    sender_ip_address: str
    envelope_helo: str
    envelope_from: str
    envelope_to: tuple[str, ...]
    rule_set_id: str
    source_arn: str | None
    path: str
    size: int

    @property
    def received(self) -> datetime:
        return datetime.fromtimestamp(self.received_timestamp, UTC)

    def to_aws_json(self) -> dict[str, Any]:
        """The AWS `Row` shape (absent fields omitted, as AWS does); timestamps in ISO 8601."""
        data: dict[str, Any] = {
            "ArchivedMessageId": self.archived_message_id,
            "ReceivedTimestamp": iso(self.received),
            "Date": self.date,
            "To": self.to,
            "From": self.from_,
            "Cc": self.cc,
            "Subject": self.subject,
            "MessageId": self.message_id_header,
            "HasAttachments": self.has_attachments,
            "ReceivedHeaders": list(self.received_headers),
            "InReplyTo": self.in_reply_to,
            "XMailer": self.x_mailer,
            "XOriginalMailer": self.x_original_mailer,
            "XPriority": self.x_priority,
            "IngressPointId": self.ingress_point_id,
            "SenderHostname": self.sender_hostname,
            "SenderIpAddress": self.sender_ip_address,
            "Envelope": {
                "Helo": self.envelope_helo,
                "From": self.envelope_from,
                "To": list(self.envelope_to),
            },
            "SourceArn": self.source_arn,
        }
        return {k: v for k, v in data.items() if v is not None}


# The attributes of AWS archive filters (ArchiveStringEmailAttribute, ArchiveBooleanEmailAttribute)
# and the column each one tests. ENVELOPE_TO tests the JSON list of envelope recipients.
STRING_ATTRIBUTES = {"TO": "to_header", "FROM": "from_header", "CC": "cc_header",
                     "SUBJECT": "subject", "ENVELOPE_TO": "envelope_to",
                     "ENVELOPE_FROM": "envelope_from"}
BOOLEAN_ATTRIBUTES = {"HAS_ATTACHMENTS": "has_attachments"}


@dataclass(frozen=True)
class Condition:
    """One AWS archive filter condition: the `attribute` (a STRING_ATTRIBUTES key) contains any
    of `values` (case-insensitive substrings, as CONTAINS), or the boolean `attribute` (a
    BOOLEAN_ATTRIBUTES key) equals `flag`. Raises ValueError for another attribute."""

    attribute: str
    values: tuple[str, ...] = ()
    flag: bool | None = None

    def __post_init__(self) -> None:
        if self.attribute in STRING_ATTRIBUTES and self.values and self.flag is None:
            return
        if self.attribute in BOOLEAN_ATTRIBUTES and self.flag is not None and not self.values:
            return
        raise ValueError(f"no archive search condition on {self.attribute!r} with "
                         f"values={self.values!r} flag={self.flag!r}")


@dataclass(frozen=True)
class SearchQuery:
    """Filters are case-insensitive substrings; `since` inclusive, `until` exclusive (epoch).
    `include`: every condition holds (AWS ArchiveFilters.Include); `unless`: no condition holds
    (ArchiveFilters.Unless). `before` = (received_timestamp, archived_message_id) of the last row
    of the previous page: only rows after it in newest-first order (keyset paging)."""

    from_: str | None = None
    to: str | None = None
    subject: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 100
    include: tuple[Condition, ...] = ()
    unless: tuple[Condition, ...] = ()
    before: tuple[float, str] | None = None


_COLUMNS = (
    "archived_message_id, message_id, rule_index, action_index, received_timestamp, date, "
    "to_header, from_header, cc_header, subject, message_id_header, has_attachments, "
    "received_headers, in_reply_to, x_mailer, x_original_mailer, x_priority, ingress_point_id, "
    "sender_hostname, sender_ip_address, envelope_helo, envelope_from, envelope_to, "
    "rule_set_id, source_arn, path, size"
)
assert _COLUMNS.count(",") + 1 == len(fields(ArchiveRow))
_SELECT = f"SELECT {_COLUMNS} FROM messages"


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _contains(haystack: str | None, needle: str | None) -> bool:
    # Python casefold, not SQLite LIKE: LIKE folds ASCII only and treats % and _ as wildcards.
    return haystack is not None and needle is not None and needle.casefold() in haystack.casefold()


def _prepare(conn: sqlite3.Connection) -> sqlite3.Connection:
    conn.create_function("mm_contains", 2, _contains, deterministic=True)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the index read-write: WAL, synchronous=FULL so a committed
    row survives power loss (the spool has already moved past the action by then)."""
    conn = _prepare(sqlite3.connect(path, isolation_level=None))
    # Switching a new file to WAL while another process (a second worker of a multi-process
    # server) does the same can fail with "database is locked" without SQLite's busy handler
    # being asked: retry it, bounded like busy_timeout.
    deadline = time.monotonic() + 5.0
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(0.02)
    conn.execute("PRAGMA synchronous = FULL")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        conn.close()
        raise sqlite3.DatabaseError(f"{path}: index schema {version} is newer than this mailmgr")
    conn.executescript(_SCHEMA)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return conn


def connect_readonly(path: Path) -> sqlite3.Connection:
    """Open an existing index read-only (for the CLI, while `serve` may be writing)."""
    return _prepare(sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True))


def _to_row(values: Sequence[Any]) -> ArchiveRow:
    v = list(values)
    v[11] = bool(v[11])
    v[12] = tuple(json.loads(v[12]))
    v[22] = tuple(json.loads(v[22]))
    return ArchiveRow(*v)


def insert(conn: sqlite3.Connection, row: ArchiveRow) -> None:
    """Insert `row` unless its ID or (message, rule, action) is already indexed."""
    values = list(astuple(row))
    values[11] = int(row.has_attachments)
    values[12] = json.dumps(list(row.received_headers), ensure_ascii=False)
    values[22] = json.dumps(list(row.envelope_to), ensure_ascii=False)
    marks = ", ".join("?" * len(values))
    conn.execute(f"INSERT OR IGNORE INTO messages ({_COLUMNS}) VALUES ({marks})", values)


def insert_many(conn: sqlite3.Connection, rows: Sequence[ArchiveRow]) -> None:
    """Insert `rows` (skipping any already indexed) in one transaction: one commit to sync."""
    if not rows:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for row in rows:
            insert(conn, row)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def existing(conn: sqlite3.Connection, archived_message_ids: Sequence[str]) -> set[str]:
    """Which of these archived message IDs are already indexed."""
    if not archived_message_ids:
        return set()
    marks = ", ".join("?" * len(archived_message_ids))
    cursor = conn.execute(
        f"SELECT archived_message_id FROM messages WHERE archived_message_id IN ({marks})",
        list(archived_message_ids),
    )
    return {str(a) for (a,) in cursor}


def lookup(conn: sqlite3.Connection, archived_message_id: str) -> ArchiveRow | None:
    found = conn.execute(
        f"{_SELECT} WHERE archived_message_id = ?", (archived_message_id,)
    ).fetchone()
    return _to_row(found) if found else None


def where_terms(query: SearchQuery, contains: Callable[[str], str], mark: str
                ) -> tuple[list[str], list[Any]]:
    """The WHERE terms and parameters for `query`'s filters (not its limit), in the SQL dialect
    given by `contains` (one case-insensitive substring test of a column) and `mark` (the
    parameter placeholder). Shared by the SQLite index and the PostgreSQL one
    (mailmgr.state.archive_index), so both match exactly alike. `to` matches the To and Cc
    headers and the envelope recipients; `from_` the From header and the envelope sender."""
    where: list[str] = []
    params: list[Any] = []
    for value, columns in ((query.from_, ("from_header", "envelope_from")),
                           (query.to, ("to_header", "cc_header", "envelope_to")),
                           (query.subject, ("subject",))):
        if value:
            where.append("(" + " OR ".join(contains(c) for c in columns) + ")")
            params += [value] * len(columns)
    if query.since is not None:
        where.append(f"received_timestamp >= {mark}")
        params.append(query.since)
    if query.until is not None:
        where.append(f"received_timestamp < {mark}")
        params.append(query.until)
    for condition in query.include:
        term, values = _condition(condition, contains, mark)
        where.append(term)
        params += values
    for condition in query.unless:
        term, values = _condition(condition, contains, mark)
        # A NULL column (header absent) does not match, so NOT must not turn it into NULL.
        where.append(f"NOT COALESCE({term}, FALSE)")
        params += values
    if query.before is not None:
        where.append(f"(received_timestamp < {mark} OR (received_timestamp = {mark}"
                     f" AND archived_message_id < {mark}))")
        params += [query.before[0], query.before[0], query.before[1]]
    return where, params


def _condition(condition: Condition, contains: Callable[[str], str], mark: str
               ) -> tuple[str, list[Any]]:
    if condition.flag is not None:
        return f"(has_attachments = {mark})", [condition.flag]
    column = STRING_ATTRIBUTES[condition.attribute]
    return ("(" + " OR ".join(contains(column) for _ in condition.values) + ")",
            list(condition.values))


def search(conn: sqlite3.Connection, query: SearchQuery) -> list[ArchiveRow]:
    """Rows matching every given filter (where_terms), newest first."""
    where, params = where_terms(query, lambda column: f"mm_contains({column}, ?)", "?")
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY received_timestamp DESC, archived_message_id DESC LIMIT ?"
    params.append(max(0, query.limit))
    return [_to_row(r) for r in conn.execute(sql, params)]


def expired(conn: sqlite3.Connection, cutoff: float, limit: int) -> list[tuple[str, str]]:
    """Up to `limit` (archived ID, path) pairs received before `cutoff`, oldest first."""
    cursor = conn.execute(
        "SELECT archived_message_id, path FROM messages WHERE received_timestamp < ?"
        " ORDER BY received_timestamp LIMIT ?",
        (cutoff, limit),
    )
    return [(str(a), str(p)) for a, p in cursor]


def delete(conn: sqlite3.Connection, archived_message_ids: Sequence[str]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "DELETE FROM messages WHERE archived_message_id = ?",
            [(a,) for a in archived_message_ids],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
