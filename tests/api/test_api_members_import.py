"""Address-list import jobs end to end with boto3 and real HTTP uploads to the pre-signed URL:
CSV and JSON files, counts, members listed; forged, expired and oversized uploads refused;
members and job records kept across a restart; a job a restart interrupted ends FAILED."""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mailmgr.admin.api.import_upload import MAX_UPLOAD_BYTES, refusal, signature
from tests.api.conftest import ApiServer
from tests.support import ServerProcess, basic_config

CSV = ("address\n" + "".join(f"csv{i}@import.test\n" for i in range(50))
       + "not an address\n" + "CSV0@IMPORT.TEST\n" + "\n" + "two@@import.test\n")
JSON_DOC = {"items": [{"address": f"json{i}@import.test"} for i in range(30)]
            + [{"address": "*@wild.import.test"}, {"address": 42}, {"name": "no address"}]}


def _put(url: str, data: bytes) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _wait(client: Any, job_id: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get_address_list_import_job(JobId=job_id)
        if job["Status"] not in ("CREATED", "PROCESSING"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['Status']} after {timeout}s")


def _members(client: Any, list_id: str) -> list[str]:
    page = client.list_members_of_address_list(AddressListId=list_id, PageSize=1000)
    return [a["Address"] for a in page["Addresses"]]


def _uploads(tmp_path: Path) -> list[Path]:
    directory = tmp_path / "var" / "api-imports"
    return sorted(directory.iterdir()) if directory.exists() else []


def test_import_csv_and_json(api_server: ApiServer) -> None:
    client = api_server.client()
    list_id = client.create_address_list(AddressListName="imported")["AddressListId"]
    client.register_member_to_address_list(AddressListId=list_id, Address="csv1@import.test")

    created = client.create_address_list_import_job(
        AddressListId=list_id, Name="from-csv", ImportDataFormat={"ImportDataType": "CSV"},
        ClientToken="csv-once")
    job_id = created["JobId"]
    url = created["PreSignedUrl"]
    assert url.startswith(api_server.url + "/api/")
    # the ClientToken replay is the same job
    again = client.create_address_list_import_job(
        AddressListId=list_id, Name="from-csv", ImportDataFormat={"ImportDataType": "CSV"},
        ClientToken="csv-once")
    assert again["JobId"] == job_id
    job = client.get_address_list_import_job(JobId=job_id)
    assert job["Status"] == "CREATED" and job["Name"] == "from-csv"
    with pytest.raises(ClientError) as info:  # nothing uploaded yet
        client.start_address_list_import_job(JobId=job_id)
    assert info.value.response["Error"]["Code"] == "ValidationException"

    assert _put(url, CSV.encode())[0] == 200
    client.start_address_list_import_job(JobId=job_id)
    done = _wait(client, job_id)
    assert done["Status"] == "COMPLETED", done
    # 50 rows + one duplicate in another case are imported, two invalid rows failed
    assert (done["ImportedItemsCount"], done["FailedItemsCount"]) == (50, 2)
    assert done["StartTimestamp"] <= done["CompletedTimestamp"]
    assert "Error" not in done
    assert _uploads(api_server.tmp_path) == []  # the file is gone once imported
    with pytest.raises(ClientError) as info:
        client.start_address_list_import_job(JobId=job_id)
    assert info.value.response["Error"]["Code"] == "ConflictException"
    assert _put(done["PreSignedUrl"], b"address\nlate@import.test\n")[0] == 409

    # JSON through `requests`-style PUT of a file: items that are not addresses fail
    created = client.create_address_list_import_job(
        AddressListId=list_id, Name="from-json", ImportDataFormat={"ImportDataType": "JSON"})
    assert _put(created["PreSignedUrl"], json.dumps(JSON_DOC).encode())[0] == 200
    client.start_address_list_import_job(JobId=created["JobId"])
    done = _wait(client, created["JobId"])
    assert (done["Status"], done["ImportedItemsCount"], done["FailedItemsCount"]) == (
        "COMPLETED", 31, 2)

    members = _members(client, list_id)
    assert len(members) == 81
    assert {f"csv{i}@import.test" for i in range(50)} <= set(members)
    assert {f"json{i}@import.test" for i in range(30)} <= set(members)
    assert "*@wild.import.test" in members

    # a file that is not in the declared format fails the job, not the server
    created = client.create_address_list_import_job(
        AddressListId=list_id, Name="bad-header", ImportDataFormat={"ImportDataType": "CSV"})
    assert _put(created["PreSignedUrl"], b"email\nx@import.test\n")[0] == 200
    client.start_address_list_import_job(JobId=created["JobId"])
    failed = _wait(client, created["JobId"])
    assert failed["Status"] == "FAILED"
    assert "header" in failed["Error"]

    # Stop before start: STOPPED, and the upload is refused afterwards
    created = client.create_address_list_import_job(
        AddressListId=list_id, Name="stopped", ImportDataFormat={"ImportDataType": "CSV"})
    client.stop_address_list_import_job(JobId=created["JobId"])
    assert client.get_address_list_import_job(JobId=created["JobId"])["Status"] == "STOPPED"
    assert _put(created["PreSignedUrl"], CSV.encode())[0] == 409
    with pytest.raises(ClientError) as info:
        client.stop_address_list_import_job(JobId=created["JobId"])
    assert info.value.response["Error"]["Code"] == "ConflictException"

    jobs = client.list_address_list_import_jobs(AddressListId=list_id, PageSize=2)
    names = [j["Name"] for j in jobs["ImportJobs"]]
    rest = client.list_address_list_import_jobs(AddressListId=list_id,
                                                NextToken=jobs["NextToken"])
    assert names + [j["Name"] for j in rest["ImportJobs"]] == [
        "from-csv", "from-json", "bad-header", "stopped"]
    for call, args in ((client.get_address_list_import_job, {"JobId": "nope"}),
                       (client.list_address_list_import_jobs, {"AddressListId": "al-nope"}),
                       (client.create_address_list_import_job, {
                           "AddressListId": "al-nope", "Name": "x",
                           "ImportDataFormat": {"ImportDataType": "CSV"}})):
        with pytest.raises(ClientError) as info:
            call(**args)
        assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"


def _with(url: str, **changes: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query.update(changes)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def test_upload_refusals(api_server: ApiServer) -> None:
    client = api_server.client()
    list_id = client.create_address_list(AddressListName="guarded")["AddressListId"]
    created = client.create_address_list_import_job(
        AddressListId=list_id, Name="guarded", ImportDataFormat={"ImportDataType": "CSV"})
    url = created["PreSignedUrl"]
    expires = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["Expires"][0]
    body = b"address\na@guarded.test\n"
    forged = [
        _with(url, Signature="0" * 64),
        _with(url, Expires=str(int(expires) + 86400)),  # a longer life is not signed
        url.split("?")[0],
        url.replace(created["JobId"], "00000000-0000-0000-0000-000000000000"),
    ]
    for bad in forged:
        status, text = _put(bad, body)
        assert status == 403, (bad, status, text)
    assert _uploads(api_server.tmp_path) == []

    # oversized, declared: refused before any byte is read
    host, port = "127.0.0.1", api_server.server.admin_port
    path = url.split(f":{port}", 1)[1]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.putrequest("PUT", path)
    conn.putheader("Content-Length", str(MAX_UPLOAD_BYTES + 1))
    conn.endheaders()
    answer = conn.getresponse()
    assert answer.status == 413
    conn.close()
    # oversized, streamed without a length: cut off at the limit, nothing kept
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.putrequest("PUT", path)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    chunk = b"address\n" + b"x" * (1024 * 1024 - 8)
    try:
        for _ in range(MAX_UPLOAD_BYTES // len(chunk) + 2):
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed while we were still sending
    assert conn.getresponse().status == 413
    conn.close()
    assert _uploads(api_server.tmp_path) == []
    # the same URL still takes a good file
    assert _put(url, body)[0] == 200
    assert [p.name for p in _uploads(api_server.tmp_path)] == [f"{created['JobId']}.csv"]


def test_expired_url_refused() -> None:
    key = b"k" * 32
    job = "0b9c1a2e-0000-4000-8000-000000000000"
    expires = 1_000_000
    good = signature(key, job, expires)
    assert refusal(key, job, str(expires), good, now=expires - 1) is None
    assert "expired" in (refusal(key, job, str(expires), good, now=expires + 1) or "")
    assert "signature" in (refusal(key, job, str(expires + 1), good, now=0) or "")
    assert "signature" in (refusal(b"other" * 7, job, str(expires), good, now=0) or "")
    assert refusal(key, job, None, good, now=0) is not None


def _state_file(tmp_path: Path) -> Path:
    return tmp_path / "var" / "api-state.json"


def test_restart_keeps_members_and_jobs(
        api_server_factory: Callable[[dict[str, Any]], ApiServer],
        server_factory: Callable[..., ServerProcess], tmp_path: Path) -> None:
    config = basic_config(tmp_path)
    api = api_server_factory(config)
    client = api.client()
    list_id = client.create_address_list(AddressListName="durable")["AddressListId"]
    client.register_member_to_address_list(AddressListId=list_id, Address="kept@durable.test")
    registered = client.get_member_of_address_list(AddressListId=list_id,
                                                   Address="kept@durable.test")
    created = client.create_address_list_import_job(
        AddressListId=list_id, Name="durable", ImportDataFormat={"ImportDataType": "CSV"})
    assert _put(created["PreSignedUrl"], b"address\nimported@durable.test\n")[0] == 200
    client.start_address_list_import_job(JobId=created["JobId"])
    assert _wait(client, created["JobId"])["Status"] == "COMPLETED"
    waiting = client.create_address_list_import_job(
        AddressListId=list_id, Name="waiting", ImportDataFormat={"ImportDataType": "CSV"})
    api.server.stop()

    # a job the stopped server was running (as a crash leaves it) ends FAILED after the start
    state = json.loads(_state_file(tmp_path).read_text())
    state["Meta"]["AddressListImportJobs"]["interrupted-1"] = {
        "JobId": "interrupted-1", "Name": "interrupted", "AddressListId": list_id,
        "ImportDataFormat": {"ImportDataType": "CSV"}, "Status": "PROCESSING",
        "CreatedTimestamp": time.time() - 5, "StartTimestamp": time.time() - 4,
        "Owner": f"{socket.gethostname()}:1:dead"}
    _state_file(tmp_path).write_text(json.dumps(state))
    uploads = tmp_path / "var" / "api-imports"
    uploads.mkdir(exist_ok=True)
    for name in ("interrupted-1.csv", "no-such-job.json"):  # left by a crash
        (uploads / name).write_text("address\nleft@durable.test\n")

    again = ApiServer(server_factory(config).start(), tmp_path)
    client = again.client()
    assert sorted(_members(client, list_id)) == ["imported@durable.test", "kept@durable.test"]
    assert client.get_member_of_address_list(
        AddressListId=list_id, Address="kept@durable.test")["CreatedTimestamp"] == registered[
        "CreatedTimestamp"]
    done = client.get_address_list_import_job(JobId=created["JobId"])
    assert (done["Status"], done["ImportedItemsCount"]) == ("COMPLETED", 1)
    interrupted = client.get_address_list_import_job(JobId="interrupted-1")
    assert interrupted["Status"] == "FAILED"
    assert "interrupted by a restart" in interrupted["Error"]
    assert _uploads(tmp_path) == []
    # the URL handed out before the restart (on the new port) no longer works; a fresh one
    # from Get does
    old = waiting["PreSignedUrl"].replace(api.url, again.url)
    assert _put(old, b"address\nlate@durable.test\n")[0] == 403
    fresh = client.get_address_list_import_job(JobId=waiting["JobId"])["PreSignedUrl"]
    assert _put(fresh, b"address\nlate@durable.test\n")[0] == 200
    client.start_address_list_import_job(JobId=waiting["JobId"])
    assert _wait(client, waiting["JobId"])["Status"] == "COMPLETED"
    assert "late@durable.test" in _members(client, list_id)


def test_start_after_the_list_was_deleted(api_server: ApiServer) -> None:
    client = api_server.client()
    list_id = client.create_address_list(AddressListName="short-lived")["AddressListId"]
    created = client.create_address_list_import_job(
        AddressListId=list_id, Name="orphan", ImportDataFormat={"ImportDataType": "CSV"})
    assert _put(created["PreSignedUrl"], CSV.encode())[0] == 200
    client.delete_address_list(AddressListId=list_id)

    with pytest.raises(ClientError) as info:
        client.start_address_list_import_job(JobId=created["JobId"])
    error = info.value.response["Error"]
    assert error["Code"] == "ResourceNotFoundException"
    assert list_id in error["Message"]
    job = client.get_address_list_import_job(JobId=created["JobId"])
    assert job["Status"] == "FAILED"
    assert job["Error"] == f"address list {list_id!r} was deleted before the job started"
    assert "ImportedItemsCount" not in job
    assert _uploads(api_server.tmp_path) == []  # the uploaded file is not kept for nothing
    with pytest.raises(ClientError) as info:  # and it stays that way
        client.start_address_list_import_job(JobId=created["JobId"])
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
