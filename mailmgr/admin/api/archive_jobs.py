"""Archive searches and exports as bounded background tasks of one process: at most MAX_RUNNING
run at once, MAX_ACTIVE of a kind may wait or run, MAX_KEPT of a kind are remembered (the oldest
finished dropped first). Transient: kept in `ApiService.extra`, gone after a restart."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from mailmgr import logs
from mailmgr.admin.api.errors import quota
from mailmgr.archive.index import ArchiveRow

if TYPE_CHECKING:
    from mailmgr.admin.api.service import ApiService

MAX_RUNNING = 2  # searches and exports running at once in this process (the rest are QUEUED)
MAX_ACTIVE = 10  # of one kind QUEUED or running at once: more is ServiceQuotaExceededException
MAX_KEPT = 20  # of one kind remembered (a search keeps up to 1,000 rows)
FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
_EXTRA_KEY = "ArchiveJobs"

Kind = Literal["search", "export"]


class JobError(Exception):
    """A job failed for a reason its ErrorMessage states as is (no traceback logged)."""


@dataclass(eq=False)
class Job:
    """One search or export. Mutable, owned by its task and by `Jobs` (never crosses modules
    as data: handlers read it to answer). `request`: the Start request's members that the Get
    operation echoes (timestamps as datetimes)."""

    job_id: str
    kind: Kind
    archive_id: str
    request: dict[str, Any]
    submitted: float = field(default_factory=time.time)
    state: str = "QUEUED"
    completed: float | None = None
    error: str | None = None
    rows: list[ArchiveRow] = field(default_factory=list)  # a search's results
    task: asyncio.Task[None] | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def status(self) -> dict[str, Any]:
        """The SearchStatus / ExportStatus shape (epoch seconds; unset members absent)."""
        return {"SubmissionTimestamp": self.submitted, "CompletionTimestamp": self.completed,
                "State": self.state, "ErrorMessage": self.error}


Work = Callable[[Job], Awaitable[None]]


class Jobs:
    """The searches and exports of one process, by ID in submission order."""

    def __init__(self) -> None:
        self.slots = asyncio.Semaphore(MAX_RUNNING)
        self.jobs: dict[str, Job] = {}

    def start(self, kind: Kind, archive_id: str, request: dict[str, Any], work: Work,
              *, running_state: str = "RUNNING") -> Job:
        """Queue `work` as a new job and return it. Raises ApiError
        (ServiceQuotaExceededException) when MAX_ACTIVE jobs of this kind are not finished."""
        same = [j for j in self.jobs.values() if j.kind == kind]
        if sum(not j.finished for j in same) >= MAX_ACTIVE:
            plural = "searches" if kind == "search" else "exports"
            raise quota(f"at most {MAX_ACTIVE} archive {plural} may be queued or running at "
                        "once in one mailmgr process; wait for one to finish or stop one")
        finished = [j for j in same if j.finished]
        while len(same) >= MAX_KEPT and finished:
            dropped = finished.pop(0)
            same.remove(dropped)
            del self.jobs[dropped.job_id]
        job = Job(str(uuid.uuid4()), kind, archive_id, request)
        self.jobs[job.job_id] = job
        job.task = asyncio.get_running_loop().create_task(
            self._run(job, work, running_state), name=f"archive-{kind}-{job.job_id}")
        return job

    async def _run(self, job: Job, work: Work, running_state: str) -> None:
        try:
            async with self.slots:
                if job.finished:  # stopped while queued
                    return
                job.state = running_state
                await work(job)
            outcome, error = "COMPLETED", None
        except asyncio.CancelledError:
            outcome, error = "CANCELLED", None
        except JobError as exc:
            outcome, error = "FAILED", str(exc)
        except Exception as exc:
            logs.error("api.archive_job_failed", kind=job.kind, job_id=job.job_id,
                       archive_id=job.archive_id, error=f"{type(exc).__name__}: {exc}")
            outcome, error = "FAILED", f"the {job.kind} failed: {type(exc).__name__}"
        if not job.finished:  # StopArchive* already said CANCELLED
            job.state, job.error, job.completed = outcome, error, time.time()

    def get(self, kind: Kind, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        return job if job is not None and job.kind == kind else None

    def of_archive(self, kind: Kind, archive_id: str) -> list[Job]:
        """This archive's jobs of `kind`, newest first."""
        return [j for j in reversed(self.jobs.values())
                if j.kind == kind and j.archive_id == archive_id]

    @staticmethod
    def stop(job: Job) -> None:
        """Cancel a queued or running job (CANCELLED now); a finished one is left as it is."""
        if job.finished:
            return
        job.state, job.completed = "CANCELLED", time.time()
        if job.task is not None:
            job.task.cancel()


def jobs(service: ApiService) -> Jobs:
    """The process's job table, created on first use."""
    table = service.extra.get(_EXTRA_KEY)
    if not isinstance(table, Jobs):
        table = service.extra[_EXTRA_KEY] = Jobs()
    return table
