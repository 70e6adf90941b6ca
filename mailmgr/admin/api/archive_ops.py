"""The Mail Manager API's archive operations: searches (Start/Get/GetResults/Stop/List), exports
(Start/Get/Stop/List, to S3 or a local directory) and archived messages (GetArchiveMessage with
a download link served here, GetArchiveMessageContent), over the running server's archives.

Searches and exports are background jobs of this process (mailmgr.admin.api.archive_jobs).
"""

from __future__ import annotations

import codecs
from typing import Any

from mailmgr import heavy
from mailmgr.admin.api import archive_links
from mailmgr.admin.api.archive_export import MAX_EXPORT_RESULTS, destination, run_export
from mailmgr.admin.api.archive_filters import query_for
from mailmgr.admin.api.archive_jobs import Job, JobError, Kind, jobs
from mailmgr.admin.api.errors import ApiError, conflict, not_found, validation
from mailmgr.admin.api.registry import Handler
from mailmgr.admin.api.service import ApiService
from mailmgr.admin.api.shapes import page_size_limits, paginate
from mailmgr.archive.index import ArchiveRow
from mailmgr.archive.local import ArchiveClosedError
from mailmgr.archive.store import MessageArchive
from mailmgr.config.schema import service_model
from mailmgr.errors import ActionError
from mailmgr.mime import walk

MAX_BODY_CHARS = 4 * 1024 * 1024  # GetArchiveMessageContent's Text and Html, each, at most
_SEARCH_ECHO = ("ArchiveId", "Filters", "FromTimestamp", "ToTimestamp", "MaxResults")
_EXPORT_ECHO = (*_SEARCH_ECHO, "ExportDestinationConfiguration")


def _missing(operation: str, message: str) -> ApiError:
    """Not found: ResourceNotFoundException for every Get*/Delete* (interface.md fixes that for
    unknown IDs, and boto3 maps the code to its modelled exception class even where an
    operation's model lists no such error) and where the operation declares it; else (Stop*)
    ValidationException."""
    errors = {e.name for e in service_model().operation_model(operation).error_shapes}
    if operation.startswith(("Get", "Delete")) or "ResourceNotFoundException" in errors:
        return not_found(message)
    return validation(message)


def _check_archive(service: ApiService, archive_id: str, operation: str) -> None:
    if not any(a.id == archive_id for a in service.config().archives):
        raise _missing(operation, f"archive {archive_id} does not exist")


def _not_here() -> ApiError:
    return validation("this mailmgr process does not run the archives (a multi-process "
                      "supervisor): use `mailmgr archive search` / `archive get` on the host, "
                      "or Server.Processes: 1")


def _archive(service: ApiService, archive_id: str, operation: str) -> MessageArchive:
    """The running archive. Raises ApiError: unknown archive (ResourceNotFoundException), or
    ValidationException where this process holds no archives."""
    _check_archive(service, archive_id, operation)
    opened: MessageArchive | None = service.archives().get(archive_id)
    if opened is None:
        raise _not_here()
    return opened


def _job(service: ApiService, kind: Kind, key: str, params: dict[str, Any],
         operation: str) -> Job:
    job = jobs(service).get(kind, params[key])
    if job is None:
        raise _missing(operation, f"{kind} {params[key]} does not exist in this mailmgr process "
                       "(archive searches and exports are kept in memory: a restart forgets "
                       "them)")
    return job


# --- searches -------------------------------------------------------------------------------


async def start_search(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    archive = _archive(service, params["ArchiveId"], "StartArchiveSearch")
    query = query_for(params, int(params["MaxResults"]))

    async def work(job: Job) -> None:
        try:
            job.rows = await archive.query(query)
        except ArchiveClosedError:
            raise JobError("the archive was removed while the search ran") from None

    job = jobs(service).start("search", params["ArchiveId"],
                              {k: params.get(k) for k in _SEARCH_ECHO}, work)
    return {"SearchId": job.job_id}


async def get_search(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    job = _job(service, "search", "SearchId", params, "GetArchiveSearch")
    return {**job.request, "Status": job.status()}


async def get_search_results(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    job = _job(service, "search", "SearchId", params, "GetArchiveSearchResults")
    if job.state != "COMPLETED":
        raise conflict(f"search {job.job_id} is {job.state}: its results are available once "
                       "it is COMPLETED")
    return {"Rows": [row.to_aws_json() for row in job.rows]}


async def stop_search(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    jobs(service).stop(_job(service, "search", "SearchId", params, "StopArchiveSearch"))
    return {}


def _listed(service: ApiService, kind: Kind, params: dict[str, Any], operation: str
            ) -> tuple[list[Job], str | None]:
    _check_archive(service, params["ArchiveId"], operation)
    found = jobs(service).of_archive(kind, params["ArchiveId"])
    return paginate(found, params, scope=f"{operation}:{params['ArchiveId']}",
                    default=page_size_limits(operation)[1])


async def list_searches(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    page, token = _listed(service, "search", params, "ListArchiveSearches")
    return {"Searches": [{"SearchId": j.job_id, "Status": j.status()} for j in page],
            "NextToken": token}


# --- exports --------------------------------------------------------------------------------


async def start_export(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    archive = _archive(service, params["ArchiveId"], "StartArchiveExport")
    limit = params.get("MaxResults")
    limit = MAX_EXPORT_RESULTS if limit is None else int(limit)
    if not 1 <= limit <= MAX_EXPORT_RESULTS:
        raise validation(f"MaxResults: an export copies 1 to {MAX_EXPORT_RESULTS} messages")
    location = (params["ExportDestinationConfiguration"].get("S3") or {}).get("S3Location")
    if not location:
        raise validation("ExportDestinationConfiguration.S3.S3Location is required")
    server = service.config().server
    where = destination(location, server.data_directory)
    query = query_for(params, limit)
    include_metadata = bool(params.get("IncludeMetadata"))

    async def work(job: Job) -> None:
        try:
            await run_export(job, archive, query, where, include_metadata, server)
        except ArchiveClosedError:
            raise JobError("the archive was removed while the export ran") from None

    job = jobs(service).start("export", params["ArchiveId"],
                              {k: params.get(k) for k in _EXPORT_ECHO}, work,
                              running_state="PREPROCESSING")
    return {"ExportId": job.job_id}


async def get_export(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    job = _job(service, "export", "ExportId", params, "GetArchiveExport")
    return {**job.request, "Status": job.status()}


async def stop_export(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    jobs(service).stop(_job(service, "export", "ExportId", params, "StopArchiveExport"))
    return {}


async def list_exports(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    page, token = _listed(service, "export", params, "ListArchiveExports")
    return {"Exports": [{"ExportId": j.job_id, "Status": j.status()} for j in page],
            "NextToken": token}


# --- archived messages ----------------------------------------------------------------------


async def _find(service: ApiService, archived_id: str, operation: str
                ) -> tuple[MessageArchive, ArchiveRow]:
    """The archive holding the message and its row. Raises ApiError (ValidationException:
    these operations declare no not-found error)."""
    opened = service.archives()
    if not opened and service.config().archives:
        raise _not_here()
    for archive in opened.values():
        try:
            row = await archive.row(archived_id)
        except ArchiveClosedError:
            continue
        if row is not None:
            return archive, row
    raise _missing(operation, f"archived message {archived_id} does not exist")


async def get_message(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    archive, row = await _find(service, params["ArchivedMessageId"], "GetArchiveMessage")
    policy = next((p.traffic_policy_id for p in service.config().ingress_points
                   if p.id == row.ingress_point_id), None)
    aws = row.to_aws_json()
    return {
        "MessageDownloadLink": archive_links.download_link(
            service, archive.archive.id, row.archived_message_id),
        "Metadata": {"Timestamp": row.received_timestamp,
                     "IngressPointId": row.ingress_point_id, "TrafficPolicyId": policy,
                     "RuleSetId": row.rule_set_id, "SenderHostname": row.sender_hostname,
                     "SenderIpAddress": row.sender_ip_address, "SourceArn": row.source_arn},
        "Envelope": aws["Envelope"],
    }


def _decode(data: bytes, charset: str) -> str:
    try:
        if codecs.lookup(charset).name in ("punycode", "idna"):  # not linear: never for bodies
            raise LookupError(charset)
        return data.decode(charset, "replace")
    except (LookupError, ValueError):
        return data.decode("utf-8", "replace")


def message_body(content: bytes) -> dict[str, Any]:
    """The MessageBody shape: the best text/plain and text/html bodies (as mailmgr.mime.walk
    chooses them), decoded, each cut at MAX_BODY_CHARS; MessageMalformed when the MIME walk
    hit one of its bounds. CPU-bound for large messages."""
    tree = walk.walk(content)
    body: dict[str, Any] = {"MessageMalformed": tree.truncated}
    for key, subtype in (("Text", "plain"), ("Html", "html")):
        part = walk.body_part(tree, (subtype,))
        if part is not None and part.subtype == subtype:
            charset = (part.content_type.param("charset") or "us-ascii").strip()
            body[key] = _decode(walk.decoded_body(content, part), charset)[:MAX_BODY_CHARS]
    return body


async def get_message_content(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    operation = "GetArchiveMessageContent"
    archive, row = await _find(service, params["ArchivedMessageId"], operation)
    try:
        content = await archive.store.read(row.path)
    except (ActionError, OSError) as exc:
        raise ApiError("InternalFailure", f"the archived message cannot be read: {exc}"
                       ) from None
    if content is None:
        raise _missing(operation, f"archived message {row.archived_message_id}'s content is "
                       "gone (purged, or kept by another replica)")
    return {"Body": await heavy.run(len(content), message_body, content)}


OPERATIONS: dict[str, Handler] = {
    "StartArchiveSearch": start_search,
    "GetArchiveSearch": get_search,
    "GetArchiveSearchResults": get_search_results,
    "StopArchiveSearch": stop_search,
    "ListArchiveSearches": list_searches,
    "StartArchiveExport": start_export,
    "GetArchiveExport": get_export,
    "StopArchiveExport": stop_export,
    "ListArchiveExports": list_exports,
    "GetArchiveMessage": get_message,
    "GetArchiveMessageContent": get_message_content,
}


def register_routes(router: Any, service: ApiService) -> None:
    """The download route of GetArchiveMessage's links."""
    archive_links.register(router, service)
