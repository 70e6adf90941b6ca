"""Crash guarantees with real processes: SIGKILL after acknowledgement, and a real short write."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from mailmgr.spool.record import Damage, scan
from mailmgr.spool.store import SpoolStore

ROOT = Path(__file__).resolve().parents[2]

CHILD_PRELUDE = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from pathlib import Path
    from mailmgr.message import Envelope, InboundMessage, ProcessingState, SessionFacts
    from mailmgr.message import new_message_id
    from mailmgr.spool.store import SpoolStore
    from mailmgr.errors import SpoolError

    SESSION = SessionFacts(ingress_point_id="inp-1", ingress_point_name="m", peer_ip="127.0.0.1")

    def message(size):
        content = b"Subject: x\\r\\n\\r\\n" + os.urandom(size)
        env = Envelope(mail_from="a@example.com", rcpt_to=("b@example.org",))
        return InboundMessage(new_message_id(), time.time(), env, SESSION, content)

    def say(*parts):
        sys.stdout.write(" ".join(str(p) for p in parts) + "\\n")
        sys.stdout.flush()
    """
)

SIGKILL_CHILD = CHILD_PRELUDE + textwrap.dedent(
    """
    async def main():
        store = SpoolStore(Path(sys.argv[1]), segment_size=256 * 1024)
        await store.open()
        say("READY")

        async def one_client(k):
            n = 0
            while True:
                m = message(10 * 1024)
                await store.commit(m)
                say("ACK", m.id)
                n += 1
                if n % 3 == 0:
                    await store.checkpoint(m.id, ProcessingState(rule_index=1, attempts=n))
                    say("STATE", m.id, n)
                if n % 4 == 0:
                    await store.finish(m.id)
                    say("DONE", m.id)

        await asyncio.gather(*(one_client(k) for k in range(16)))

    asyncio.run(main())
    """
)


def test_sigkill_loses_no_acknowledged_message(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGKILL_CHILD, str(directory)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    acked: list[str] = []
    states: dict[str, int] = {}
    done: set[str] = set()
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + 30
        while len(acked) < 1500 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            parts = line.split()
            if parts[0] == "ACK":
                acked.append(parts[1])
            elif parts[0] == "STATE":
                states[parts[1]] = int(parts[2])
            elif parts[0] == "DONE":
                done.add(parts[1])
        # Killed while it keeps committing: some batches are mid-write right now.
        os.kill(proc.pid, signal.SIGKILL)
        tail = proc.stdout.read()  # whatever was acknowledged before the kill counts too
    finally:
        proc.kill()
        proc.wait()
    for line in tail.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "ACK":
            acked.append(parts[1])
        elif len(parts) == 3 and parts[0] == "STATE":
            states[parts[1]] = int(parts[2])
        elif len(parts) == 2 and parts[0] == "DONE":
            done.add(parts[1])
    assert len(acked) >= 300, "the child did not get going"

    async def reopen() -> tuple[list[str], dict[str, int]]:
        store = SpoolStore(directory, segment_size=256 * 1024)
        ids = await store.open()
        try:
            return ids, {i: store.peek_state(i).attempts for i in states if i in ids}
        finally:
            await store.close()

    ids, recovered_states = asyncio.run(reopen())
    pending = set(ids)
    for mid in acked:
        assert mid in pending or mid in done, f"acknowledged {mid} was lost"
    assert done.isdisjoint(pending), "a finished message came back"
    for mid, attempts in states.items():
        if mid not in done:
            assert recovered_states[mid] >= attempts


RLIMIT_CHILD = CHILD_PRELUDE + textwrap.dedent(
    """
    import resource, signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of dying
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))

    async def main():
        store = SpoolStore(Path(sys.argv[1]), segment_size=10**9)
        await store.open()
        async def client():
            for _ in range(12):
                m = message(7000)
                try:
                    await store.commit(m)
                    say("ACK", m.id)
                except SpoolError:
                    say("FAIL", m.id)
        await asyncio.gather(*(client() for _ in range(8)))
        await store.close()

    asyncio.run(main())
    """
)


def test_short_write_on_full_file_is_rolled_back(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes the kernel accept only part of a batch (a real short write, then
    EFBIG), like a filling disk: failed commits raise and leave no partial record behind."""
    directory = tmp_path / "spool"
    out = subprocess.run(
        [sys.executable, "-c", RLIMIT_CHILD, str(directory)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split("\n")
    acked = {line.split()[1] for line in out if line.startswith("ACK")}
    failed = {line.split()[1] for line in out if line.startswith("FAIL")}
    assert failed and acked, out
    for path in (directory / "segments").glob("*.seg"):
        assert not [d for d in scan(path.read_bytes()) if isinstance(d, Damage)], path

    async def reopen() -> list[str]:
        store = SpoolStore(directory)
        try:
            return await store.open()
        finally:
            await store.close()

    assert set(asyncio.run(reopen())) == acked
