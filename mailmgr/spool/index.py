"""In-memory index of the spool: where each unfinished message and its latest state live, and
which segments are still needed. Pure bookkeeping in log order; must not do I/O.

A segment is needed while it holds (a) the MESSAGE record an unfinished message points to, (b) the
latest STATE of an unfinished message, or (c) a DONE record whose message still has a MESSAGE
record in another existing segment (deleting it would bring the message back at recovery).
Each reason counts one reference; a segment with none that is not being written is deletable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailmgr.message import ProcessingState
from mailmgr.spool.committer import Location


@dataclass
class LiveMessage:
    location: Location  # the MESSAGE record to load
    received_at: float
    state: ProcessingState
    state_segment: int | None = None  # the segment holding the latest STATE record
    segments: set[int] = field(default_factory=set)  # every segment with a MESSAGE record of it
    inflight: int = 0  # checkpoints/compactions queued but not yet durable
    finishing: bool = False


@dataclass
class SegmentInfo:
    seq: int
    last_write: float
    refs: int = 0
    live_bytes: int = 0  # bytes of MESSAGE records unfinished messages point to
    message_ids: set[str] = field(default_factory=set)
    quarantined: bool = False
    active: bool = False
    deleting: bool = False


@dataclass
class _Tombstone:
    done_segment: int
    message_segments: set[int]


class SpoolIndex:
    def __init__(self) -> None:
        self.live: dict[str, LiveMessage] = {}
        self.segments: dict[int, SegmentInfo] = {}
        self._tombstones: dict[str, _Tombstone] = {}
        self._maybe_dead: set[int] = set()

    def add_segment(
        self, seq: int, last_write: float, *, quarantined: bool = False, active: bool = False
    ) -> None:
        self.segments[seq] = SegmentInfo(seq, last_write, quarantined=quarantined, active=active)
        self._maybe_dead.add(seq)

    def retire_segment(self, seq: int) -> None:
        info = self.segments.get(seq)
        if info is not None:
            info.active = False
            self._maybe_dead.add(seq)

    def _ref(self, seq: int | None, delta: int) -> None:
        if seq is None:
            return
        info = self.segments.get(seq)
        if info is None:
            return
        info.refs += delta
        if info.refs <= 0:
            self._maybe_dead.add(seq)

    def _touch(self, seq: int, now: float) -> None:
        info = self.segments.get(seq)
        if info is not None:
            info.last_write = max(info.last_write, now)

    def put_message(self, message_id: str, loc: Location, received_at: float, now: float) -> None:
        """A MESSAGE record became durable (first commit or a compaction copy)."""
        seg = self.segments.get(loc.segment)
        if seg is not None:
            seg.message_ids.add(message_id)
            seg.live_bytes += loc.length
        self._touch(loc.segment, now)
        entry = self.live.get(message_id)
        if entry is not None:
            old = entry.location
            old_seg = self.segments.get(old.segment)
            if old_seg is not None:
                old_seg.live_bytes -= old.length
            self._ref(old.segment, -1)
            entry.location = loc
            entry.segments.add(loc.segment)
            self._ref(loc.segment, +1)
            return
        segments = {loc.segment}
        tomb = self._tombstones.pop(message_id, None)
        if tomb is not None:  # an id reused after DONE: the newer record wins
            segments |= tomb.message_segments
            self._ref(tomb.done_segment, -1)
        self.live[message_id] = LiveMessage(loc, received_at, ProcessingState(), None, segments)
        self._ref(loc.segment, +1)

    def put_state(self, message_id: str, state: ProcessingState, seq: int, now: float) -> None:
        self._touch(seq, now)
        entry = self.live.get(message_id)
        if entry is None:
            return  # an orphan STATE whose message is finished and gone
        self._ref(entry.state_segment, -1)
        entry.state = state
        entry.state_segment = seq
        self._ref(seq, +1)

    def put_done(self, message_id: str, seq: int, now: float) -> None:
        self._touch(seq, now)
        entry = self.live.pop(message_id, None)
        if entry is None:
            return
        seg = self.segments.get(entry.location.segment)
        if seg is not None:
            seg.live_bytes -= entry.location.length
        self._ref(entry.location.segment, -1)
        self._ref(entry.state_segment, -1)
        elsewhere = {s for s in entry.segments if s != seq and s in self.segments}
        if elsewhere:
            self._tombstones[message_id] = _Tombstone(seq, elsewhere)
            self._ref(seq, +1)

    def drop_segment(self, seq: int) -> None:
        """The segment file is gone for good (unlink made durable)."""
        info = self.segments.pop(seq, None)
        self._maybe_dead.discard(seq)
        if info is None:
            return
        for message_id in info.message_ids:
            entry = self.live.get(message_id)
            if entry is not None:
                entry.segments.discard(seq)
                continue
            tomb = self._tombstones.get(message_id)
            if tomb is not None:
                tomb.message_segments.discard(seq)
                if not tomb.message_segments:
                    del self._tombstones[message_id]
                    self._ref(tomb.done_segment, -1)

    def take_dead(self) -> list[int]:
        """Segments that became deletable since the last call (marked as deleting)."""
        dead = []
        for seq in sorted(self._maybe_dead):
            info = self.segments.get(seq)
            if info is not None and info.refs <= 0 and not info.active and not info.deleting:
                info.deleting = True
                dead.append(seq)
        self._maybe_dead.clear()
        return dead

    def undelete(self, seq: int) -> None:
        info = self.segments.get(seq)
        if info is not None:
            info.deleting = False

    def compaction_candidates(self, now: float, min_age: float, max_live_bytes: int) -> list[str]:
        """Unfinished, idle messages that alone keep an old (or quarantined) segment alive."""
        old = {
            s.seq
            for s in self.segments.values()
            if not s.active
            and not s.deleting
            and s.refs > 0
            and (
                s.quarantined or (now - s.last_write >= min_age and s.live_bytes <= max_live_bytes)
            )
        }
        if not old:
            return []
        return [
            mid
            for mid, e in self.live.items()
            if (e.location.segment in old or e.state_segment in old)
            and e.inflight == 0
            and not e.finishing
        ]
