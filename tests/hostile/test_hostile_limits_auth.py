"""Hostile case 02 and its class: the AUTH failure budget is reserved before a password is
checked, so parallel exchanges get at most the budget's number of checks, and a locked-out
address gets 421 even with the right password; control characters in AUTH identities."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections import Counter
from pathlib import Path

import pytest
from limits_support import PASSWORD, USER, limited_server, raw_client

from mailmgr.config.models import ServerLimits
from tests.ingress.ingress_support import Certs, RawClient, make_certs

BUDGET = 5  # AuthThrottle's default failures per address and 15 minutes


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(Path(tmp_path_factory.mktemp("certs")))


def b64(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw) + b"\r\n"


def plain(authzid: str, authcid: str, password: str) -> str:
    """`AUTH PLAIN <initial response>` (RFC 4616)."""
    return "AUTH PLAIN " + base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode()).decode()


async def _tls_client(port: int, certs: Certs, source: str = "127.0.0.1") -> RawClient:
    client = await raw_client(port, source)
    assert (await client.reply())[0] == 220
    await client.command("EHLO c.test")
    assert (await client.command("STARTTLS"))[0] == 220
    await client.writer.start_tls(certs.client_context(), server_hostname="localhost")
    assert (await client.command("EHLO c.test"))[0] == 250
    return client


async def _login_gate(port: int, certs: Certs) -> RawClient:
    """AUTH LOGIN and the user name: the exchange now waits for the password."""
    client = await _tls_client(port, certs)
    assert (await client.command("AUTH LOGIN"))[0] == 334
    await client.send(b64(USER))
    assert (await client.reply())[0] == 334
    return client


async def test_parallel_login_exchanges_get_at_most_the_budget_of_checks(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    async with limited_server(ServerLimits(), certs=certs, auth=True) as server:
        port = server.addresses()[0][1]
        clients = [await _login_gate(port, certs) for _ in range(30)]

        async def guess(client: RawClient, password: str) -> int:
            await client.send(b64(password))
            code = (await client.reply(wait=15))[0]
            await client.close()
            return code

        with caplog.at_level(logging.INFO, logger="mailmgr"):
            wrong = await asyncio.gather(
                *(guess(c, f"wrong-{i}") for i, c in enumerate(clients[:-1]))
            )
            right = await guess(clients[-1], PASSWORD)
        checks = [r for r in caplog.records if r.msg in ("auth.failed", "auth.succeeded")]
        assert len(checks) <= BUDGET, Counter(wrong)
        assert Counter(wrong)[535] <= BUDGET - 1
        assert set(wrong) <= {535, 421}
        assert right == 421  # locked out: the right password is not even checked
        fresh = await _tls_client(port, certs)
        assert await fresh.command(plain("", USER, PASSWORD)) == (
            421, ["4.7.0 Too many authentication failures, closing connection"])
        await fresh.close()
        other = await _tls_client(port, certs, source="127.0.0.2")  # another address: fine
        assert (await other.command(
            plain("", USER, PASSWORD)))[0] == 235
        await other.close()


async def test_success_refunds_the_reservation(certs: Certs) -> None:
    async with limited_server(ServerLimits(), certs=certs, auth=True) as server:
        port = server.addresses()[0][1]
        for _ in range(BUDGET + 2):  # many successes never use the failure budget up
            client = await _tls_client(port, certs)
            assert (await client.command(
                plain("", USER, PASSWORD)))[0] == 235
            await client.close()


@pytest.mark.parametrize("identity", [
    f"{USER}\r\nX-Injected: yes", f"{USER}\n", f"{USER}\x00", f"{USER}\x1b[31m", f"{USER}\x7f",
    f"{USER}\u0085",
])
async def test_control_characters_in_login_user_are_refused_before_any_check(
    certs: Certs, identity: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with limited_server(ServerLimits(), certs=certs, auth=True) as server:
        client = await _tls_client(server.addresses()[0][1], certs)
        with caplog.at_level(logging.INFO, logger="mailmgr"):
            assert (await client.command("AUTH LOGIN"))[0] == 334
            await client.send(b64(identity))
            assert await client.reply() == (
                501, ["5.5.2 Control characters not allowed in authentication identity"])
        assert not [r for r in caplog.records if r.msg.startswith("auth.")]
        await client.close()


@pytest.mark.parametrize("authzid,authcid", [
    ("", f"{USER}\r"), (f"{USER}\n", USER), ("", f"\x01{USER}"),
])
async def test_control_characters_in_plain_identities_are_refused(
    certs: Certs, authzid: str, authcid: str
) -> None:
    async with limited_server(ServerLimits(), certs=certs, auth=True) as server:
        client = await _tls_client(server.addresses()[0][1], certs)
        assert await client.command(plain(authzid, authcid, PASSWORD)) == (
            501, ["5.5.2 Control characters not allowed in authentication identity"])
        # ...and nothing was counted against the address: the right login still works.
        assert (await client.command(plain("", USER, PASSWORD)))[0] == 235
        await client.close()
