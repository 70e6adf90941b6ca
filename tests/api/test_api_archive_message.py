"""Archived messages through the Mail Manager API: GetArchiveMessage's download link serves the
archived bytes (and refuses forged, altered and expired tokens), its Metadata and Envelope;
GetArchiveMessageContent gives the decoded text and HTML bodies."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from archive_api_support import send
from botocore.exceptions import ClientError

from mailmgr.admin.api.archive_links import LINK_SECONDS, LinkError, LinkTarget, sign, verify
from tests.support import cli


def fetch(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_download_link_serves_the_archived_bytes(api_server: Any) -> None:
    client = api_server.client()
    server = api_server.server
    archived = send(server, subject="Link test", mail_from="carol@sender.test",
                    to="dave@example.test", body="the archived body\n")
    got = client.get_archive_message(ArchivedMessageId=archived)
    link = got["MessageDownloadLink"]
    assert link.startswith(f"{api_server.url}/api/archive-messages/")
    assert got["Envelope"] == {"Helo": "client.sender.test", "From": "carol@sender.test",
                               "To": ["dave@example.test"]}
    metadata = got["Metadata"]
    ingress = client.list_ingress_points()["IngressPoints"][0]
    assert metadata["IngressPointId"] == ingress["IngressPointId"]
    assert metadata["TrafficPolicyId"] == client.get_ingress_point(
        IngressPointId=ingress["IngressPointId"])["TrafficPolicyId"]
    assert metadata["RuleSetId"] == client.list_rule_sets()["RuleSets"][0]["RuleSetId"]
    assert metadata["SenderIpAddress"] == "127.0.0.1"
    assert abs(time.time() - metadata["Timestamp"].timestamp()) < 60

    status, content_type, body = fetch(link)
    assert (status, content_type) == (200, "message/rfc822")
    stored = cli(server.config_file, "archive", "get", archived)
    assert stored.returncode == 0
    assert body.decode().replace("\r\n", "\n") == stored.stdout  # the same bytes
    assert b"X-Mailmgr-Processed: yes" in body and b"the archived body" in body

    # The token is the only credential: altered, truncated or re-targeted, it is refused.
    base, token = link.rsplit("/", 1)
    payload, signature = token.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    for bad in (f"{payload}.{flipped}", payload, f"{payload[:-4]}.{signature}", "x.y.z", "%00"):
        status, _, answer = fetch(f"{base}/{bad}")
        assert status == 403, bad
        assert b"AccessDenied" in answer and b"From:" not in answer


def test_link_tokens_expire_and_are_bound_to_their_key() -> None:
    key = b"k" * 32
    target = LinkTarget("a-default", "0abcr1a1", expires=1_000_000 + LINK_SECONDS)
    token = sign(key, target)
    assert verify(key, token, now=1_000_000) == target
    assert verify(key, token, now=1_000_000 + LINK_SECONDS - 1) == target
    with pytest.raises(LinkError, match="expired"):
        verify(key, token, now=1_000_000 + LINK_SECONDS)
    with pytest.raises(LinkError, match="signature"):
        verify(b"o" * 32, token, now=1_000_000)  # another process's key
    assert LINK_SECONDS == 15 * 60


def test_message_content_is_decoded(api_server: Any) -> None:
    client = api_server.client()
    server = api_server.server
    alternative = send(server, subject="Content test", body="Grüße, plain\n",
                       html="<p>Grüße, <b>html</b></p>\n")
    body = client.get_archive_message_content(ArchivedMessageId=alternative)["Body"]
    assert body == {"Text": "Grüße, plain\r\n", "Html": "<p>Grüße, <b>html</b></p>\r\n",
                    "MessageMalformed": False}
    plain = send(server, subject="Plain only", body="just text\n")
    body = client.get_archive_message_content(ArchivedMessageId=plain)["Body"]
    assert body == {"Text": "just text\r\n", "MessageMalformed": False}

    for call in (client.get_archive_message, client.get_archive_message_content):
        with pytest.raises(ClientError) as caught:
            call(ArchivedMessageId="0nosuchmessager1a1")
        assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
        assert "0nosuchmessager1a1" in caught.value.response["Error"]["Message"]
