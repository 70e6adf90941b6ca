"""The archive job table (searches and exports of one process): bounded concurrency, a quota on
unfinished jobs, the oldest finished dropped first, stopping queued and running jobs, and
GetArchiveSearchResults answering ConflictException until a search is COMPLETED."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mailmgr.admin.api import archive_jobs
from mailmgr.admin.api.archive_jobs import MAX_ACTIVE, MAX_KEPT, MAX_RUNNING, Job, JobError, jobs
from mailmgr.admin.api.archive_ops import get_search_results
from mailmgr.admin.api.errors import ApiError
from mailmgr.admin.api.service import ApiService
from mailmgr.config.models import Config
from mailmgr.state.api_store import FileApiStore


def service(tmp_path: Path) -> ApiService:
    async def apply(config: Config) -> None:
        return None

    def current() -> Config:
        raise AssertionError("not needed")

    return ApiService(tmp_path / "mailmgr.yaml", FileApiStore(
        tmp_path / "mailmgr.yaml", tmp_path / "api-state.json"), apply, current)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_concurrency_quota_and_stop(tmp_path: Path) -> None:
    table = archive_jobs.Jobs()
    gate = asyncio.Event()

    async def blocked(job: Job) -> None:
        await gate.wait()

    started = [table.start("export", "a-x", {}, blocked, running_state="PREPROCESSING")
               for _ in range(MAX_ACTIVE)]
    await settle()
    assert [j.state for j in started].count("PREPROCESSING") == MAX_RUNNING
    assert [j.state for j in started].count("QUEUED") == MAX_ACTIVE - MAX_RUNNING
    with pytest.raises(ApiError) as caught:
        table.start("export", "a-x", {}, blocked)
    assert caught.value.code == "ServiceQuotaExceededException"
    assert "at most 10 archive exports" in caught.value.message
    table.start("search", "a-x", {}, blocked)  # the quota is per kind

    table.stop(started[0])  # running: cancelled
    table.stop(started[-1])  # queued: never runs
    await settle()
    assert started[0].state == started[-1].state == "CANCELLED"
    assert started[0].completed is not None
    assert started[2].state == "PREPROCESSING"  # took the freed slot
    gate.set()
    await settle()
    assert {j.state for j in started[1:-1]} == {"COMPLETED"}
    assert started[-1].state == "CANCELLED"


async def test_failures_and_the_kept_bound() -> None:
    table = archive_jobs.Jobs()

    async def fails(job: Job) -> None:
        raise JobError("the destination refused it")

    async def crashes(job: Job) -> None:
        raise RuntimeError("boom")

    failed = table.start("export", "a-x", {}, fails)
    crashed = table.start("export", "a-x", {}, crashes)
    await settle()
    assert (failed.state, failed.error) == ("FAILED", "the destination refused it")
    assert (crashed.state, crashed.error) == ("FAILED", "the export failed: RuntimeError")

    async def done(job: Job) -> None:
        return None

    for _ in range(MAX_KEPT + 5):
        table.start("search", "a-x", {}, done)
        await settle()
    searches = table.of_archive("search", "a-x")
    assert len(searches) == MAX_KEPT
    assert table.get("export", failed.job_id) is failed  # the other kind is kept apart
    assert table.get("search", failed.job_id) is None


async def test_results_conflict_until_completed(tmp_path: Path) -> None:
    api = service(tmp_path)
    gate = asyncio.Event()

    async def slow(job: Job) -> None:
        await gate.wait()

    job = jobs(api).start("search", "a-x", {}, slow)
    await settle()
    with pytest.raises(ApiError) as caught:
        await get_search_results(api, {"SearchId": job.job_id})
    assert caught.value.code == "ConflictException" and caught.value.status == 409
    assert "RUNNING" in caught.value.message
    gate.set()
    await settle()
    assert await get_search_results(api, {"SearchId": job.job_id}) == {"Rows": []}
