"""Address-list import jobs: CreateAddressListImportJob (a job and its pre-signed upload URL),
StartAddressListImportJob (imports in the background, one job at a time), Get/List/Stop.

Job records live in `meta["AddressListImportJobs"]` (so Get/List survive a restart; at most
MAX_JOBS, the oldest finished dropped first). A job a restart interrupted ends FAILED.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from mailmgr import logs
from mailmgr.admin.api.errors import ApiError, conflict, not_found, quota, validation
from mailmgr.admin.api.import_upload import (
    ACTIVE_UPLOADS,
    ROUTE,
    UPLOAD_DIRECTORY,
    ImportFile,
    UploadRoute,
    UploadTarget,
    presigned_url,
    read_import_file,
    remove_uploads,
    signing_key,
    sweep,
    upload_path,
)
from mailmgr.admin.api.member_state import MAX_MEMBERS, prune, raw_members, record
from mailmgr.admin.api.registry import Handler
from mailmgr.admin.api.resources import find, touch
from mailmgr.admin.api.service import ApiService, Focus
from mailmgr.admin.api.shapes import paginate
from mailmgr.config.ids import ResourceKind
from mailmgr.state.api_store import ApiState

JOBS = "AddressListImportJobs"  # meta namespace: {JobId: record}, oldest first
MAX_JOBS = 200
MAX_QUEUED = 10  # jobs PROCESSING (running or waiting for the one running) per process
FINISHED = ("COMPLETED", "FAILED", "STOPPED")
_PAGE_SIZE = 50  # ListAddressListImportJobs' default and the model's maximum
_KIND = ResourceKind.ADDRESS_LIST
# Who runs a PROCESSING job: this host, and this process (random per start).
_HOST = socket.gethostname()
_OWNER = f"{_HOST}:{os.getpid()}:{secrets.token_hex(4)}"
_TASKS = "import_jobs.tasks"  # service.extra: {JobId: asyncio.Task}
_GATE = "import_jobs.gate"  # service.extra: asyncio.Semaphore(1): one import at a time
_RECOVERED = "import_jobs.recovered"  # service.extra: interrupted jobs were marked FAILED
_MISSING = "import_jobs.missing_list"  # start's change -> start: the job's list is gone
INTERRUPTED = "the import was interrupted by a restart of mailmgr; start a new job"


def _jobs(state: ApiState) -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = state.meta.setdefault(JOBS, {})
    return jobs


def _job(state: ApiState, job_id: str) -> dict[str, Any]:
    job = state.meta.get(JOBS, {}).get(job_id)
    if not isinstance(job, dict):
        raise not_found(f"import job {job_id!r} not found")
    return job


def _tasks(service: ApiService) -> dict[str, asyncio.Task[None]]:
    tasks: dict[str, asyncio.Task[None]] = service.extra.setdefault(_TASKS, {})
    return tasks


def _describe(service: ApiService, job: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in job.items() if k != "Owner"}
    out["PreSignedUrl"] = presigned_url(service.base_url, signing_key(service.extra),
                                        job["JobId"])
    return out


def _finish(job: dict[str, Any], status: str, error: str | None = None) -> None:
    job["Status"] = status
    job["CompletedTimestamp"] = time.time()
    job.pop("Owner", None)
    if error is not None:
        job["Error"] = error


async def _recover(service: ApiService) -> None:
    """Once per process: jobs this host was running when it stopped end FAILED (a job of
    another replica sharing the store is left to that replica), and upload files no job is
    waiting for are removed."""
    if service.extra.get(_RECOVERED):
        return
    state = await service.state()
    stale = [j for j, job in state.meta.get(JOBS, {}).items()
             if job.get("Status") == "PROCESSING" and job.get("Owner") != _OWNER
             and str(job.get("Owner", "")).split(":")[0] == _HOST]
    if stale:
        def change(state: ApiState) -> tuple[ApiState, dict[str, Any]]:
            for job_id in stale:
                job = _jobs(state).get(job_id)
                if job is not None and job.get("Status") == "PROCESSING":
                    _finish(job, "FAILED", INTERRUPTED)
            return state, {}

        await service.mutate("GetAddressListImportJob", {}, change)
    state = await service.state()
    keep = {j for j, job in state.meta.get(JOBS, {}).items()
            if job.get("Status") in ("CREATED", "PROCESSING")}
    directory = service.config().server.data_directory / UPLOAD_DIRECTORY
    await asyncio.get_running_loop().run_in_executor(None, sweep, directory, keep, time.time())
    service.extra[_RECOVERED] = True


async def create(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    """{JobId, PreSignedUrl}: a CREATED job; PUT the file to the URL, then start the job.
    Raises ResourceNotFoundException (list), ValidationException (MAX_JOBS unfinished)."""
    await _recover(service)
    list_id = params["AddressListId"]
    job_id = str(uuid.uuid4())
    url = presigned_url(service.base_url, signing_key(service.extra), job_id)

    def change(state: ApiState) -> tuple[ApiState, dict[str, Any]]:
        find(state, _KIND, list_id)
        jobs = _jobs(state)
        while len(jobs) >= MAX_JOBS:
            oldest = next((j for j, job in jobs.items() if job.get("Status") in FINISHED), None)
            if oldest is None:
                raise validation(f"{MAX_JOBS} import jobs are waiting or running: start or "
                                 "stop some before creating more")
            del jobs[oldest]
        jobs[job_id] = {"JobId": job_id, "Name": params["Name"], "AddressListId": list_id,
                        "ImportDataFormat": dict(params["ImportDataFormat"]),
                        "Status": "CREATED", "CreatedTimestamp": time.time()}
        return state, {"JobId": job_id, "PreSignedUrl": url}

    return await service.mutate("CreateAddressListImportJob", params, change)


async def get(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    """The job, with a fresh PreSignedUrl. Raises ResourceNotFoundException."""
    await _recover(service)
    state = await service.state()
    return _describe(service, _job(state, params["JobId"]))


async def list_jobs(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    """The list's jobs, oldest first. Raises ResourceNotFoundException (list)."""
    await _recover(service)
    list_id = params["AddressListId"]
    state = await service.state()
    find(state, _KIND, list_id)
    own = [job for job in state.meta.get(JOBS, {}).values()
           if job.get("AddressListId") == list_id]
    page, token = paginate(own, params, scope=f"ListAddressListImportJobs:{list_id}",
                           default=_PAGE_SIZE)
    return {"ImportJobs": [_describe(service, job) for job in page], "NextToken": token}


async def start(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    """CREATED -> PROCESSING; the import runs in the background. Raises
    ResourceNotFoundException (the job, or its address list: a CREATED job whose list was
    deleted ends FAILED saying so), ConflictException (not CREATED, or an upload in flight),
    ValidationException (nothing uploaded yet), ServiceQuotaExceededException (MAX_QUEUED)."""
    await _recover(service)
    job_id = params["JobId"]
    state = await service.state()
    job = _job(state, job_id)
    path = upload_path(service.config().server.data_directory, job_id,
                       job["ImportDataFormat"]["ImportDataType"])
    loop = asyncio.get_running_loop()
    uploaded = await loop.run_in_executor(None, path.is_file)
    tasks = _tasks(service)

    def change(state: ApiState) -> tuple[ApiState, dict[str, Any]]:
        job = _job(state, job_id)
        list_id = str(job.get("AddressListId"))
        try:
            find(state, _KIND, list_id)
        except ApiError as exc:
            # Checked here, not when the import commits: the caller learns it at once. The
            # change still commits, so the job record says why it can never run.
            if job.get("Status") == "CREATED":
                _finish(job, "FAILED", f"address list {list_id!r} was deleted before the "
                                       "job started")
            return state, {_MISSING: exc.message}
        if job.get("Status") != "CREATED":
            raise conflict(f"import job {job_id!r} is {job.get('Status')}; only a CREATED job "
                           "can be started")
        if job_id in service.extra.get(ACTIVE_UPLOADS, ()):
            raise conflict("an upload to the job's PreSignedUrl is still in progress")
        if not uploaded:
            raise validation("nothing has been uploaded to the job's PreSignedUrl yet: PUT "
                             "the CSV or JSON file there first")
        if len(tasks) >= MAX_QUEUED:
            raise quota(f"{MAX_QUEUED} import jobs are already running or waiting")
        job["Status"] = "PROCESSING"
        job["StartTimestamp"] = time.time()
        job["Owner"] = _OWNER
        return state, {}

    answer = await service.mutate("StartAddressListImportJob", params, change)
    if _MISSING in answer:
        await loop.run_in_executor(None, remove_uploads,
                                   service.config().server.data_directory, job_id)
        raise not_found(f"{answer[_MISSING]}: the import job's address list was deleted")
    tasks[job_id] = asyncio.create_task(_run(service, job_id, path))
    return answer


async def stop(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    """CREATED or PROCESSING -> STOPPED (nothing of it is imported). Raises
    ResourceNotFoundException, ConflictException (already finished)."""
    await _recover(service)
    job_id = params["JobId"]

    def change(state: ApiState) -> tuple[ApiState, dict[str, Any]]:
        job = _job(state, job_id)
        if job.get("Status") in FINISHED:
            raise conflict(f"import job {job_id!r} has already finished ({job['Status']})")
        _finish(job, "STOPPED")
        return state, {}

    answer = await service.mutate("StopAddressListImportJob", params, change)
    # A running import is not cancelled (that could cut its change in half): it finds the job
    # STOPPED when it commits and changes nothing.
    await asyncio.get_running_loop().run_in_executor(
        None, remove_uploads, service.config().server.data_directory, job_id)
    return answer


async def _run(service: ApiService, job_id: str, path: Path) -> None:
    """Reads the file (executor), then adds its members and finishes the job in one change.
    Never raises: a failure ends the job FAILED with the reason."""
    gate: asyncio.Semaphore = service.extra.setdefault(_GATE, asyncio.Semaphore(1))
    loop = asyncio.get_running_loop()
    try:
        async with gate:
            result = await loop.run_in_executor(None, read_import_file, path)
            await _commit(service, job_id, result)
    except ApiError as exc:
        await _fail(service, job_id, exc.message)
    except Exception as exc:
        logs.error("api.import_failed", job=job_id, error=f"{type(exc).__name__}: {exc}")
        await _fail(service, job_id, "mailmgr failed to run the import; the server log has "
                                     "the details (api.import_failed)")
    finally:
        _tasks(service).pop(job_id, None)
        await loop.run_in_executor(None, path.unlink, True)


async def _commit(service: ApiService, job_id: str, result: ImportFile) -> None:
    state = await service.state()
    list_id = str(_job(state, job_id)["AddressListId"])

    def change(state: ApiState) -> tuple[ApiState, dict[str, Any]]:
        job = _jobs(state).get(job_id)
        if job is None or job.get("Status") != "PROCESSING":
            return state, {}  # stopped (or dropped) meanwhile
        if result.error is not None:
            _finish(job, "FAILED", result.error)
            return state, {}
        try:
            entry = find(state, _KIND, list_id)
        except ApiError:
            _finish(job, "FAILED", f"address list {list_id!r} was deleted")
            return state, {}
        members = raw_members(entry)
        present = {m.lower() for m in members if isinstance(m, str)}
        room = max(0, MAX_MEMBERS - len(present))
        new = [m for m in result.members if m not in present]
        added, over = new[:room], len(new) - min(room, len(new))
        members.extend(added)
        record(state, list_id, added)
        prune(state, list_id, present.union(added))
        touch(state, list_id)
        job["ImportedItemsCount"] = len(result.members) - over
        job["FailedItemsCount"] = result.failed + over
        _finish(job, "COMPLETED", None if not over else
                f"{over} addresses were not imported: the list holds at most {MAX_MEMBERS}")
        return state, {"imported": job["ImportedItemsCount"], "failed": job["FailedItemsCount"]}

    done = await service.mutate("StartAddressListImportJob", {}, change,
                                focus=Focus(_KIND, list_id))
    if done:
        logs.event("api.import_completed", job=job_id, **done)


async def _fail(service: ApiService, job_id: str, message: str) -> None:
    def change(state: ApiState) -> tuple[ApiState, dict[str, Any]]:
        job = _jobs(state).get(job_id)
        if job is not None and job.get("Status") == "PROCESSING":
            _finish(job, "FAILED", message)
        return state, {}

    try:
        await service.mutate("StartAddressListImportJob", {}, change)
    except ApiError as exc:  # the config no longer validates at all: a restart will tell
        logs.error("api.import_failed", job=job_id, error=exc.message)


async def _target(service: ApiService, job_id: str) -> UploadTarget | None:
    state = await service.state()
    job = state.meta.get(JOBS, {}).get(job_id)
    if not isinstance(job, dict):
        return None
    path = upload_path(service.config().server.data_directory, job_id,
                       job["ImportDataFormat"]["ImportDataType"])
    status = job.get("Status")
    return UploadTarget(path, None if status == "CREATED" else
                        f"the import job is {status}: files are accepted only before it starts")


def register_routes(router: Any, service: ApiService) -> None:
    route = UploadRoute(service.extra, lambda job_id: _target(service, job_id))
    router.add_put(ROUTE, route.put)


OPERATIONS: dict[str, Handler] = {
    "CreateAddressListImportJob": create,
    "StartAddressListImportJob": start,
    "GetAddressListImportJob": get,
    "StopAddressListImportJob": stop,
    "ListAddressListImportJobs": list_jobs,
}
