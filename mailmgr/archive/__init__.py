"""Local archive: durable message files plus an SQLite index of AWS archive-search fields."""

from mailmgr.archive.index import ArchiveRow, SearchQuery
from mailmgr.archive.store import (
    ArchiveClosedError,
    LocalArchive,
    archived_message_id,
    local_archives,
    run_retention,
)

__all__ = [
    "ArchiveClosedError",
    "ArchiveRow",
    "LocalArchive",
    "SearchQuery",
    "archived_message_id",
    "local_archives",
    "run_retention",
]
