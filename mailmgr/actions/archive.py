"""The Archive action: hand the message to the configured archive sink.

Owns only the error mapping (local I/O, the shared index unreachable → temporary, unknown archive
→ permanent; S3 failures arrive already classified by mailmgr.aws); storage, indexing and
idempotence belong to the sink (mailmgr.archive).
"""

from __future__ import annotations

import sqlite3

from mailmgr.actions.base import Action, ActionInput, ActionResult, Resources
from mailmgr.archive.store import ArchiveClosedError
from mailmgr.config.models import ArchiveAction
from mailmgr.errors import PermanentActionError, TemporaryActionError
from mailmgr.state.postgres import SharedStateError


class _Archive:
    name = "Archive"

    def __init__(self, action: ArchiveAction, resources: Resources) -> None:
        self._archive_id = action.archive_id
        self._resources = resources

    async def run(self, item: ActionInput) -> ActionResult:
        sink = self._resources.archives.get(self._archive_id)
        if sink is None:
            raise PermanentActionError(
                f"archive {self._archive_id!r} is not available", code="ArchiveNotFound"
            )
        try:
            archived_id = await sink.put(item)
        except (OSError, sqlite3.Error, ArchiveClosedError, SharedStateError) as exc:
            # A full or failing disk, a locked index, PostgreSQL unreachable or a shutdown in
            # progress: the spool keeps the message and retries; the sink is idempotent (the
            # same file or S3 key is re-written, the row inserted once), so a retry is safe.
            code = type(exc).__name__
            raise TemporaryActionError(f"archive {self._archive_id}: {exc}", code=code) from exc
        return ActionResult(
            details={"archive_id": self._archive_id, "archived_message_id": archived_id}
        )


def build(action: ArchiveAction, resources: Resources) -> Action:
    """The Archive action for `action.archive_id` (already resolved to an archive ID)."""
    return _Archive(action, resources)
