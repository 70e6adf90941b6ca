"""Spool shards of a multi-process server: worker n of N owns `spool/<n>/`; at start-up the
shards no worker owns any more (N shrank) and the single-process `spool/` are moved into owned
ones, so changing `Server.Processes` never strands an accepted message.
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
        """With one process: every `spool/<m>/` holding segments, whose messages this process
        takes over at start-up. With several, the supervisor does it (`strays`): []."""
        if self.count != 1:
            return []
        return [path for _, path in _shards(spool)]


def has_segments(spool: Path) -> bool:
    segments = spool / "segments"
    return segments.is_dir() and any(segments.glob("*.seg"))


def _shards(spool: Path) -> list[tuple[int, Path]]:
    if not spool.is_dir():
        return []
    return sorted((int(p.name), p) for p in spool.iterdir()
                  if p.name.isdigit() and has_segments(p))


def spool_shards(spool: Path) -> list[Path]:
    """Every shard folder `spool/<n>/` holding segments, in shard order (for tools that read a
    stopped server's spools: `mailmgr queue`)."""
    return [path for _, path in _shards(spool)]


def strays(spool: Path, count: int) -> list[tuple[Path, int]]:
    """For `count` > 1 processes: the spools no worker owns and the shard taking each over:
    the single-process `spool/` itself -> 0, `spool/<m>/` with m >= count -> m % count."""
    found: list[tuple[Path, int]] = []
    if has_segments(spool):
        found.append((spool, 0))
    found += [(path, m % count) for m, path in _shards(spool) if m >= count]
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
