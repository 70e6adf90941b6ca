"""Spool shards of a multi-process server: worker n of N owns `spool/<n>/`; at start-up it adopts
the shards no worker owns any more (N shrank) and worker 0 the single-process `spool/` segments,
so changing `Server.Processes` never strands an accepted message.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from mailmgr import logs
from mailmgr.message import ProcessingState
from mailmgr.spool.store import SpoolStore

_ADOPT_CHUNK = 256  # commits in flight at once: they share the group commit's fdatasync


@dataclass(frozen=True)
class Shard:
    """This process's place among the server's processes: `index` in 0..count-1."""

    index: int = 0
    count: int = 1

    def directory(self, spool: Path) -> Path:
        """The spool folder this process owns: `spool` itself with one process, else
        `spool/<index>`."""
        return spool if self.count == 1 else spool / str(self.index)

    def adoptable(self, spool: Path) -> list[Path]:
        """Spool folders whose messages this process takes over at start-up: with one process
        every `spool/<m>/`; with N, `spool/<m>/` for m >= N and m % N == index, and for worker
        0 also the single-process `spool/` itself. Only folders holding segments."""
        found: list[Path] = []
        if self.count > 1 and self.index == 0 and (spool / "segments").is_dir():
            found.append(spool)
        if not spool.is_dir():
            return found
        shards = sorted((int(p.name), p) for p in spool.iterdir()
                        if p.name.isdigit() and (p / "segments").is_dir())
        for m, path in shards:
            if self.count == 1 or (m >= self.count and m % self.count == self.index):
                found.append(path)
        return found


async def adopt(source: Path, target: SpoolStore, *, lock_wait: float = 0.0) -> list[str]:
    """Move every unfinished message of the spool at `source` into `target` (open): committed
    (durable) in `target` with its processing state first, then finished in `source`, so a crash
    in between leaves it in both, never in neither (the next start skips an ID `target` still
    holds). Returns the IDs moved, in arrival order. Raises OSError (EBUSY: `source` is locked
    by another process) or SpoolError."""
    foreign = SpoolStore(source)
    ids = await foreign.open(lock_wait=lock_wait)
    moved: list[str] = []
    fresh = ProcessingState()

    async def move(message_id: str) -> None:
        if not target.is_pending(message_id):
            entry = await foreign.load(message_id)
            await target.commit(entry.message)
            if entry.state != fresh:
                await target.checkpoint(message_id, entry.state)
            moved.append(message_id)
        await foreign.finish(message_id)

    try:
        for start in range(0, len(ids), _ADOPT_CHUNK):
            await asyncio.gather(*(move(i) for i in ids[start:start + _ADOPT_CHUNK]))
    finally:
        await foreign.close()
    if ids:
        logs.event("spool.shard_adopted", directory=str(source), messages=len(moved))
    order = {mid: n for n, mid in enumerate(ids)}
    return sorted(moved, key=order.__getitem__)
