"""MAIL and RCPT parameters follow the extensions advertised (issue 10 class 2): field case 06
(AUTH= on an AUTH ingress point, RFC 4954 §5), duplicates, DSN parameters, parameters on a HELO
session, and the longer MAIL line RFC 4954 allows, against a real server on port 0."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator

import pytest
from hostile_session_support import PASSWORD, USER, dialogue, running_server

from tests.ingress.ingress_support import Certs, Running, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
async def server() -> AsyncIterator[Running]:
    async for running in running_server():
        yield running


@pytest.fixture
async def auth_server(certs: Certs) -> AsyncIterator[Running]:
    async for running in running_server(certs, auth=True):
        yield running


def _auth_session(running: Running, certs: Certs, commands: list[str]) -> list[tuple[int, str]]:
    """STARTTLS, EHLO, AUTH PLAIN with smtplib, then each command: [(code, text)]."""
    with smtplib.SMTP(running.host, running.port, timeout=10) as smtp:
        smtp.starttls(context=certs.client_context())
        smtp.ehlo("client.example.test")
        assert smtp.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        smtp.login(USER, PASSWORD)
        out = []
        for command in commands:
            code, text = smtp.docmd(command)
            out.append((code, text.decode()))
            smtp.rset()
        return out


async def test_field06_auth_parameter_is_accepted_on_an_auth_point(
    auth_server: Running, certs: Certs
) -> None:
    replies = await asyncio.to_thread(_auth_session, auth_server, certs, [
        "MAIL FROM:<alice@example.test> AUTH=<>",
        "MAIL FROM:<alice@example.test> AUTH=alice+2Bsub@example.test",
        "MAIL FROM:<alice@example.test> auth=<> SIZE=10 BODY=8BITMIME",
        "MAIL FROM:<alice@example.test> AUTH=alice+2bsub@example.test",  # lower-case hex
        "MAIL FROM:<alice@example.test> AUTH=a+0D+0AX-Injected:+20yes",  # decodes to CRLF
        "MAIL FROM:<alice@example.test> AUTH=",
        "MAIL FROM:<alice@example.test> AUTH=<> AUTH=<>",
        "MAIL FROM:<alice@example.test> AUTH=<> ENVID=x",
        # RFC 4954 §4/§5: 500 octets more for a MAIL line with AUTH= on this point.
        "MAIL FROM:<alice@example.test> AUTH=" + "x" * 900,
    ])
    assert [code for code, _ in replies] == [250, 250, 250, 501, 501, 501, 501, 555, 250]
    assert replies[4][1] == "5.5.4 AUTH= must be <> or xtext (RFC 4954)"
    assert replies[6][1] == "5.5.4 Duplicate parameter"


def _sendmail_with_auth_parameter(running: Running, certs: Certs) -> dict[str, object]:
    with smtplib.SMTP(running.host, running.port, timeout=10) as smtp:
        smtp.starttls(context=certs.client_context())
        smtp.login(USER, PASSWORD)
        message = b"From: alice@example.test\r\nSubject: t\r\n\r\nhello\r\n"
        return dict(smtp.sendmail("alice@example.test", ["bob@example.test"], message,
                                  mail_options=["AUTH=alice+2Bsub@example.test", "BODY=8BITMIME"]))


async def test_field06_a_message_sent_with_auth_parameter_is_accepted(
    auth_server: Running, certs: Certs
) -> None:
    refused = await asyncio.to_thread(_sendmail_with_auth_parameter, auth_server, certs)
    assert refused == {}
    (accepted,) = auth_server.acceptor.accepted
    assert accepted.envelope.mail_from == "alice@example.test"
    assert accepted.envelope.rcpt_to == ("bob@example.test",)
    assert accepted.session.auth_user == USER


async def test_auth_parameter_is_refused_where_auth_is_not_offered(server: Running) -> None:
    replies = await dialogue(server, [
        b"EHLO c.test",
        b"MAIL FROM:<a@b.test> AUTH=<>",
        b"MAIL FROM:<a@b.test> AUTH=" + b"x" * 600,  # no extra 500 octets without AUTH
    ])
    assert replies[1] == (555, "5.5.4 Parameter not recognized or not implemented")
    assert replies[2] == (500, "5.5.2 Line too long")


@pytest.mark.parametrize(("command", "reply"), [
    ("MAIL FROM:<a@b.test> SIZE=1 SIZE=2", (501, "5.5.4 Duplicate parameter")),
    ("MAIL FROM:<a@b.test> size=1 SIZE=1", (501, "5.5.4 Duplicate parameter")),
    ("MAIL FROM:<a@b.test> BODY=7BIT BODY=8BITMIME", (501, "5.5.4 Duplicate parameter")),
    ("MAIL FROM:<a@b.test> SMTPUTF8 smtputf8", (501, "5.5.4 Duplicate parameter")),
    ("MAIL FROM:<a@b.test> SIZE=", (501, "5.5.4 Invalid parameter syntax")),
    ("MAIL FROM:<a@b.test> SIZE==1", (501, "5.5.4 Invalid parameter syntax")),
    ("MAIL FROM:<a@b.test> -X=1", (501, "5.5.4 Invalid parameter syntax")),
    ("MAIL FROM:<a@b.test> X_Y=1", (501, "5.5.4 Invalid parameter syntax")),
    ("MAIL FROM:<a@b.test> SIZE=1\tBODY=7BIT", (501, "5.5.4 Invalid parameter syntax")),
    ("MAIL FROM:<a@b.test> SIZE=123456789012345678901", (501, "5.5.4 SIZE must be a number")),
    ("MAIL FROM:<a@b.test> RET=HDRS", (555, "5.5.4 Parameter not recognized or not implemented")),
    ("MAIL FROM:<a@b.test> ENVID=QQ314159",
     (555, "5.5.4 Parameter not recognized or not implemented")),
    ("MAIL FROM:<a@b.test> BODY=BINARYMIME", (501, "5.5.4 BODY must be 7BIT or 8BITMIME")),
    ("MAIL FROM:<a@b.test> SIZE=1  BODY=7BIT", (250, "2.1.0 Ok")),  # extra SP tolerated
])
async def test_mail_parameters(server: Running, command: str, reply: tuple[int, str]) -> None:
    replies = await dialogue(server, [b"EHLO c.test", command.encode()])
    assert replies[1] == reply


@pytest.mark.parametrize(("command", "reply"), [
    ("RCPT TO:<c@d.test> NOTIFY=NEVER", (555, "5.5.4 Parameter not recognized or not implemented")),
    ("RCPT TO:<c@d.test> ORCPT=rfc822;c@d.test",
     (555, "5.5.4 Parameter not recognized or not implemented")),
    ("RCPT TO:<c@d.test> NOTIFY=NEVER NOTIFY=NEVER", (501, "5.5.4 Duplicate parameter")),
    ("RCPT TO:<c@d.test> ORCPT=rfc822;c\x00@d.test", (501, "5.5.4 Invalid parameter syntax")),
    ("RCPT TO:<c@d.test> AUTH=<>", (555, "5.5.4 Parameter not recognized or not implemented")),
])
async def test_rcpt_parameters(server: Running, command: str, reply: tuple[int, str]) -> None:
    replies = await dialogue(server, [b"EHLO c.test", b"MAIL FROM:<a@b.test>", command.encode()])
    assert replies[2] == reply
    assert server.policy.asked == []


async def test_no_parameters_on_a_helo_session(server: Running) -> None:
    replies = await dialogue(server, [
        b"HELO c.test", b"MAIL FROM:<a@b.test> SIZE=10", b"MAIL FROM:<a@b.test> BODY=8BITMIME",
        b"MAIL FROM:<a@b.test>", b"RCPT TO:<c@d.test> NOTIFY=NEVER", b"RCPT TO:<c@d.test>",
    ])
    assert [code for code, _ in replies] == [250, 501, 501, 250, 501, 250]
