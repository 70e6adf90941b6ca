"""Archive search through the Mail Manager API with boto3: mail sent over SMTP is found by
StartArchiveSearch / GetArchiveSearch / GetArchiveSearchResults (subject, from, to, Unless,
HAS_ATTACHMENTS), listed by ListArchiveSearches, and bad requests get modelled errors."""

from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.request
from typing import Any

import cbor2
import pytest
from archive_api_support import archive_id, send, wait_search
from botocore.exceptions import ClientError

NOW = dt.datetime.now(dt.UTC)
WINDOW = {"FromTimestamp": NOW - dt.timedelta(hours=1), "ToTimestamp": NOW + dt.timedelta(hours=1)}


def contains(attribute: str, *values: str) -> dict[str, Any]:
    return {"StringExpression": {"Evaluate": {"Attribute": attribute}, "Operator": "CONTAINS",
                                 "Values": list(values)}}


def search(client: Any, archive: str, filters: dict[str, Any] | None = None,
           max_results: int = 100, **window: Any) -> tuple[str, list[dict[str, Any]]]:
    """Start a search, poll it to COMPLETED, return (SearchId, Rows)."""
    started = client.start_archive_search(ArchiveId=archive, MaxResults=max_results,
                                          **(window or WINDOW),
                                          **({"Filters": filters} if filters else {}))
    status = wait_search(client, started["SearchId"])
    assert status["Status"]["State"] == "COMPLETED", status
    rows = client.get_archive_search_results(SearchId=started["SearchId"])["Rows"]
    return started["SearchId"], rows


def test_search_finds_mail_sent_over_smtp(api_server: Any) -> None:
    client = api_server.client()
    server = api_server.server
    report = send(server, subject="Quarterly report", mail_from="carol@sender.test",
                  to="dave@example.test")
    invoice = send(server, subject="Invoice 42", mail_from="billing@vendor.test",
                   to="ap@example.test", attachment=b"\x00\x01 data")
    archive = archive_id(client)

    search_id, rows = search(client, archive, {"Include": [contains("SUBJECT", "quarterly")]})
    assert [r["ArchivedMessageId"] for r in rows] == [report]
    row = rows[0]
    assert row["Subject"] == "Quarterly report" and row["From"] == "carol@sender.test"
    assert row["Envelope"] == {"Helo": "client.sender.test", "From": "carol@sender.test",
                               "To": ["dave@example.test"]}
    assert row["HasAttachments"] is False and row["SenderIpAddress"] == "127.0.0.1"
    assert abs(row["ReceivedTimestamp"] - dt.datetime.now(dt.UTC)).total_seconds() < 60
    got = client.get_archive_search(SearchId=search_id)
    assert got["ArchiveId"] == archive and got["MaxResults"] == 100
    assert got["Filters"] == {"Include": [contains("SUBJECT", "quarterly")]}
    assert got["Status"]["SubmissionTimestamp"] <= got["Status"]["CompletionTimestamp"]

    assert [r["ArchivedMessageId"] for r in search(
        client, archive, {"Include": [contains("FROM", "BILLING@")]})[1]] == [invoice]
    assert [r["ArchivedMessageId"] for r in search(
        client, archive, {"Include": [contains("ENVELOPE_TO", "nobody", "dave@")]})[1]] == [report]
    assert [r["ArchivedMessageId"] for r in search(
        client, archive, {"Unless": [contains("TO", "dave")]})[1]] == [invoice]
    has_attachments = {"BooleanExpression": {"Evaluate": {"Attribute": "HAS_ATTACHMENTS"},
                                             "Operator": "IS_TRUE"}}
    assert [r["ArchivedMessageId"] for r in search(
        client, archive, {"Include": [has_attachments]})[1]] == [invoice]
    # No filter: newest first, MaxResults bounds the rows; a window before both finds none.
    assert [r["ArchivedMessageId"] for r in search(client, archive)[1]] == [invoice, report]
    assert [r["ArchivedMessageId"] for r in search(client, archive, max_results=1)[1]] == \
        [invoice]
    past = {"FromTimestamp": NOW - dt.timedelta(days=2), "ToTimestamp": NOW - dt.timedelta(days=1)}
    assert search(client, archive, **past)[1] == []

    listed = client.list_archive_searches(ArchiveId=archive, PageSize=3)
    assert len(listed["Searches"]) == 3 and "NextToken" in listed
    rest = client.list_archive_searches(ArchiveId=archive, NextToken=listed["NextToken"])
    ids = [s["SearchId"] for s in listed["Searches"] + rest["Searches"]]
    assert len(ids) == 8 and ids[-1] == search_id  # newest first
    assert all(s["Status"]["State"] == "COMPLETED" for s in rest["Searches"])

    # A finished search stays COMPLETED when stopped.
    client.stop_archive_search(SearchId=search_id)
    assert client.get_archive_search(SearchId=search_id)["Status"]["State"] == "COMPLETED"


def error(call: Any, **params: Any) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as caught:
        call(**params)
    response = caught.value.response
    return (response["Error"]["Code"], response["Error"]["Message"],
            response["ResponseMetadata"]["HTTPStatusCode"])


def test_bad_search_requests_get_modelled_errors(api_server: Any) -> None:
    client = api_server.client()
    archive = archive_id(client)
    code, message, status = error(client.start_archive_search, ArchiveId="a-doesnotexist",
                                  MaxResults=10, **WINDOW)
    assert (code, status) == ("ResourceNotFoundException", 404) and "a-doesnotexist" in message
    assert error(client.list_archive_searches, ArchiveId="a-doesnotexist")[0] == \
        "ResourceNotFoundException"
    for call, wanted in ((client.get_archive_search, ("ResourceNotFoundException", 404)),
                         (client.get_archive_search_results, ("ResourceNotFoundException", 404)),
                         (client.stop_archive_search, ("ValidationException", 400))):
        code, message, status = error(call, SearchId="no-such-search")
        assert (code, status) == wanted, message
        assert "no-such-search" in message
    # An attribute the model does not have: named in the answer.
    bad = {"Include": [contains("BODY", "x")]}
    code, message, _ = error(client.start_archive_search, ArchiveId=archive, MaxResults=10,
                             Filters=bad, **WINDOW)
    assert code == "ValidationException" and "Filters.Include[0]" in message, message
    code, message, _ = error(client.start_archive_search, ArchiveId=archive, MaxResults=10,
                             FromTimestamp=WINDOW["ToTimestamp"],
                             ToTimestamp=WINDOW["FromTimestamp"])
    assert code == "ValidationException" and "ToTimestamp" in message
    code, message, _ = error(client.start_archive_search, ArchiveId=archive, MaxResults=1001,
                             **WINDOW)
    assert code == "ValidationException" and "MaxResults" in message


def test_archive_search_over_rpc_v2_cbor(api_server: Any) -> None:
    archived = send(api_server.server, subject="Over CBOR")
    archive = archive_id(api_server.client())

    def call(operation: str, body: dict[str, Any]) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"{api_server.url}/service/MailManagerSvc/operation/{operation}",
            data=cbor2.dumps(body, datetime_as_timestamp=True), method="POST",
            headers={"Content-Type": "application/cbor", "Accept": "application/cbor",
                     "smithy-protocol": "rpc-v2-cbor"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, cbor2.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, cbor2.loads(exc.read())

    status, started = call("StartArchiveSearch", {
        "ArchiveId": archive, "MaxResults": 10, **WINDOW,
        "Filters": {"Include": [contains("SUBJECT", "over cbor")]}})
    assert status == 200, started
    wait_search(api_server.client(), started["SearchId"])
    status, got = call("GetArchiveSearch", {"SearchId": started["SearchId"]})
    assert status == 200 and got["Status"]["State"] == "COMPLETED"
    assert isinstance(got["Status"]["SubmissionTimestamp"], dt.datetime)  # tag 1
    status, results = call("GetArchiveSearchResults", {"SearchId": started["SearchId"]})
    assert [r["ArchivedMessageId"] for r in results["Rows"]] == [archived]
    assert isinstance(results["Rows"][0]["ReceivedTimestamp"], dt.datetime)
    status, answer = call("GetArchiveSearch", {"SearchId": "nope"})
    assert status == 404 and answer["__type"] == "ResourceNotFoundException"
