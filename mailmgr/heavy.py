"""Per-message CPU work off the event loop: which messages are "heavy" (by size, known before
processing) and the one bounded thread pool their parsing runs in.

HEAVY_BYTES (1 MiB): a message at least this large is heavy. Its MIME walk, archive fields and
text extraction run in PARSE_THREADS (2) threads, so the loop only waits; lighter ones run where
they are (microseconds). The spool worker runs at most half its workers on heavy messages.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

HEAVY_BYTES = 1 << 20
PARSE_THREADS = 2
T = TypeVar("T")
_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def is_heavy(size: int) -> bool:
    return size >= HEAVY_BYTES


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=PARSE_THREADS, thread_name_prefix="parse")
        return _pool


async def run(size: int, fn: Callable[..., T], *args: object) -> T:
    """fn(*args): inline when `size` (the message's bytes) is below HEAVY_BYTES, else in the
    bounded parse pool (at most PARSE_THREADS at once; others queue). Exceptions propagate."""
    if not is_heavy(size):
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(_executor(), fn, *args)
