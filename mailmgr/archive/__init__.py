"""Archives: message bodies in an ArchiveStore (local files | S3) plus a search index in an
ArchiveIndex (SQLite | PostgreSQL) of AWS archive-search fields."""

from mailmgr.archive.index import ArchiveRow, SearchQuery
from mailmgr.archive.store import (
    ArchiveClosedError,
    LocalArchive,
    MessageArchive,
    archived_message_id,
    build_archives,
    local_archives,
    run_retention,
)

__all__ = [
    "ArchiveClosedError",
    "ArchiveRow",
    "LocalArchive",
    "MessageArchive",
    "SearchQuery",
    "archived_message_id",
    "build_archives",
    "local_archives",
    "run_retention",
]
