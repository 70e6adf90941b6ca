"""Readiness requires a writable spool: a real AdminServer over HTTP in front of a real
SpoolStore whose next write fails (the store's own test seam: half a batch, then EIO)."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp

from mailmgr.admin.metrics import Metrics
from mailmgr.admin.server import AdminServer
from mailmgr.config.server_models import AdminSettings, ListenAddress
from mailmgr.errors import SpoolError
from mailmgr.message import Envelope, InboundMessage, ProcessingState, SessionFacts, new_message_id
from mailmgr.queue.service import QueueService
from mailmgr.spool.store import SpoolStore

SESSION = SessionFacts(ingress_point_id="inp-1", ingress_point_name="main", peer_ip="192.0.2.7")


def _message() -> InboundMessage:
    return InboundMessage(new_message_id(), time.time(),
                          Envelope("a@example.com", ("b@example.org",)), SESSION,
                          b"Subject: t\r\n\r\nhello\r\n")


async def _get(base: str, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(base + path) as response:
        return response.status, await response.text()


async def test_ready_is_503_after_a_failed_spool_write_until_one_succeeds(tmp_path: Path
                                                                          ) -> None:
    store = SpoolStore(tmp_path / "spool")
    await store.open()
    metrics = Metrics()
    metrics.watch_spool(store.counts)
    admin = AdminServer(AdminSettings(listen=(ListenAddress("127.0.0.1", 0),)), metrics,
                        queue=QueueService(store, None))
    try:
        (address,) = await admin.start()
        base = f"http://{address}"
        admin.ready = True
        assert await _get(base, "/healthz/ready") == (200, "ready\n")
        await store.commit(_message())
        store.fail_next_write()
        try:
            await store.commit(_message())
        except SpoolError:
            pass
        else:
            raise AssertionError("the seam did not fail the write")
        assert await _get(base, "/healthz/ready") == (503, "spool not writable\n")
        assert (await _get(base, "/healthz/live"))[0] == 200
        later = _message()
        await store.commit(later)  # the next batch goes to a fresh segment and succeeds
        assert await _get(base, "/healthz/ready") == (200, "ready\n")

        # the spool gauges, read at scrape time: one retrying (attempts > 0), one pending
        mid = store.pending_ids()[0]
        await store.checkpoint(mid, ProcessingState(attempts=1, next_attempt_at=time.time()
                                                    + 60, last_error="451 4.3.0 try later"))
        status, text = await _get(base, "/metrics")
        assert status == 200
        assert 'mailmgr_spool_messages{state="pending"} 1.0' in text
        assert 'mailmgr_spool_messages{state="retrying"} 1.0' in text
        age = [line for line in text.splitlines()
               if line.startswith("mailmgr_spool_oldest_message_age_seconds ")]
        assert len(age) == 1 and 0 < float(age[0].split()[1]) < 30
        status, body = await _get(base, "/queue?state=retrying")
        assert status == 200 and '"last_error": "451 4.3.0 try later"' in body
        assert (await _get(base, "/queue?state=bogus"))[0] == 400
        admin.draining = True  # draining still wins
        assert await _get(base, "/healthz/ready") == (503, "draining\n")
    finally:
        await admin.close()
        await store.close()


def test_last_error_is_optional_in_old_state_records() -> None:
    old = ProcessingState(attempts=2).to_json()
    del old["last_error"]
    assert ProcessingState.from_json(old).last_error is None
    state = ProcessingState(attempts=1, last_error="Timeout")
    assert ProcessingState.from_json(state.to_json()) == state
