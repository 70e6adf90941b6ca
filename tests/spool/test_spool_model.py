"""Random operation sequences against a plain dict model: after every restart the spool holds
exactly the unfinished messages with their latest states, and dead segments go away."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from mailmgr.message import InboundMessage, ProcessingState
from mailmgr.spool.store import SpoolStore

Factory = Callable[..., InboundMessage]
SEGMENT = 24 * 1024


async def check(store: SpoolStore, live: dict[str, tuple[InboundMessage, ProcessingState]]) -> None:
    assert sorted(store.pending_ids()) == sorted(live)
    for mid, (message, state) in live.items():
        entry = await store.load(mid)
        assert entry.message == message
        assert entry.state == state


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_random_operations_match_model(
    tmp_path: Path, message_factory: Factory, seed: int
) -> None:
    rng = random.Random(seed)
    directory = tmp_path / "spool"
    live: dict[str, tuple[InboundMessage, ProcessingState]] = {}
    store = SpoolStore(directory, segment_size=SEGMENT)
    await store.open()
    try:
        for step in range(400):
            op = rng.random()
            if op < 0.35 or not live:
                batch = [
                    message_factory(size=rng.randint(0, 6000)) for _ in range(rng.randint(1, 5))
                ]
                await asyncio.gather(*(store.commit(m) for m in batch))
                live.update({m.id: (m, ProcessingState()) for m in batch})
            elif op < 0.65:
                mid = rng.choice(sorted(live))
                state = ProcessingState(rule_index=step, attempts=rng.randint(0, 9))
                await store.checkpoint(mid, state)
                live[mid] = (live[mid][0], state)
            elif op < 0.9:
                mid = rng.choice(sorted(live))
                await store.finish(mid)
                del live[mid]
            elif op < 0.96:
                await store.compact(min_age=0.0)
            else:
                await store.close()
                store = SpoolStore(directory, segment_size=SEGMENT)
                ids = await store.open()
                assert sorted(ids) == sorted(live)
                await check(store, live)
        await check(store, live)
        for mid in list(live):
            await store.finish(mid)
            del live[mid]
        await store.compact(min_age=0.0)
    finally:
        await store.close()
    # Everything finished: at most the last (active) segment is left.
    assert len(list((directory / "segments").glob("*.seg"))) <= 1
    store = SpoolStore(directory, segment_size=SEGMENT)
    try:
        assert await store.open() == []
    finally:
        await store.close()
