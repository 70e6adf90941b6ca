"""check-config refuses listen addresses that cannot all be bound (serve would fail with
'address already in use'): proven against real sockets bound the way mailmgr binds them."""

from __future__ import annotations

import asyncio
import copy
import socket
from pathlib import Path
from typing import Any

import pytest
from config_helpers import Problems, base, find, problems_of, write

from mailmgr import config

POINT0 = "$.IngressPoints[0]"
POINT1 = "$.IngressPoints[1]"


def _two_points(first: dict[str, Any], second: dict[str, Any], **server: Any) -> dict[str, Any]:
    data = base()
    data["Server"].update(server)
    other = copy.deepcopy(data["IngressPoints"][0])
    other["IngressPointName"] = "submission"
    data["IngressPoints"][0].update(first)
    other.update(second)
    data["IngressPoints"].append(other)
    return data


def _cert(tmp_path: Path) -> dict[str, str]:
    return {"CertificateFile": str(tmp_path / "c.pem"), "PrivateKeyFile": str(tmp_path / "c.key")}


def test_same_address_on_two_points(problems: Problems) -> None:
    found = problems(_two_points({"Listen": ["127.0.0.1:2525"]},
                                 {"Listen": ["127.0.0.1:2526", "127.0.0.1:2525"]}))
    (p,) = found
    assert p.path == f"{POINT1}.Listen[1]"
    assert "127.0.0.1:2525 is already used by ingress point 'inbound' at " \
           f"{POINT0}.Listen[0]" in p.message


def test_listen_and_tls_wrapped_listen_clash(problems: Problems, tmp_path: Path) -> None:
    found = problems(_two_points(
        {"Listen": ["127.0.0.1:2525"]},
        {"Listen": ["127.0.0.1:0"], "TlsWrappedListen": ["127.0.0.1:2525"],
         "TlsCertificate": _cert(tmp_path)}))
    find(found, f"{POINT1}.TlsWrappedListen[0]", f"at {POINT0}.Listen[0]")
    # and within one point
    data = base()
    data["IngressPoints"][0].update(Listen=["127.0.0.1:4650"], TlsWrappedListen=["127.0.0.1:4650"],
                                    TlsCertificate=_cert(tmp_path))
    find(problems(data), f"{POINT0}.TlsWrappedListen[0]", f"at {POINT0}.Listen[0]")


def test_point_on_the_admin_address(problems: Problems) -> None:
    # the default admin address (Server.Admin absent in base())
    (p,) = problems(_two_points({"Listen": ["127.0.0.1:9025"]}, {}))
    assert p.path == f"{POINT0}.Listen[0]"
    assert "the admin listener (default address) at $.Server.Admin.Listen" in p.message
    # an explicit one
    data = _two_points({}, {"Listen": ["[::1]:8080"]},
                       Admin={"Listen": ["127.0.0.1:0", "[::1]:8080"]})
    find(problems(data), f"{POINT1}.Listen[0]",
         "is already used by the admin listener at $.Server.Admin.Listen[1]")


@pytest.mark.parametrize(("first", "second"), [
    ("0.0.0.0:2525", "127.0.0.1:2525"),
    ("127.0.0.1:2525", "0.0.0.0:2525"),
    ("[::]:2525", "[::1]:2525"),
    ("localhost:2525", "[::1]:2525"),
    ("MX.example.test:2525", "mx.example.test:2525"),
])
def test_overlapping_binds(problems: Problems, first: str, second: str) -> None:
    (p,) = problems(_two_points({"Listen": [first]}, {"Listen": [second]}))
    assert p.path == f"{POINT1}.Listen[0]"
    assert f"at {POINT0}.Listen[0]" in p.message and "address already in use" in p.message


@pytest.mark.parametrize(("first", "second"), [
    ("127.0.0.1:0", "127.0.0.1:0"),  # port 0: a free port each
    ("0.0.0.0:2525", "[::]:2525"),  # IPv6 sockets are V6ONLY
    ("127.0.0.1:2525", "127.0.0.2:2525"),
    ("127.0.0.1:2525", "127.0.0.1:2526"),
    ("0.0.0.0:2525", "[::1]:2525"),
])
def test_binds_that_coexist(tmp_path: Path, first: str, second: str) -> None:
    cfg = config.load(write(tmp_path, _two_points({"Listen": [first]}, {"Listen": [second]})))
    assert [str(p.listen[0]) for p in cfg.ingress_points] == [first, second]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _bind_both(first: str, second: str) -> OSError | None:
    """Bind like IngressServer.start (asyncio create_server, SO_REUSEADDR)."""
    loop = asyncio.get_running_loop()
    servers = []
    try:
        for text in (first, second):
            host, _, port = text.rpartition(":")
            servers.append(await loop.create_server(
                asyncio.Protocol, host=host.strip("[]"), port=int(port), reuse_address=True))
    except OSError as exc:
        return exc
    finally:
        for server in servers:
            server.close()
    return None


@pytest.mark.parametrize(("first", "second"), [
    ("0.0.0.0:{}", "127.0.0.1:{}"), ("127.0.0.1:{}", "127.0.0.1:{}"),
    ("127.0.0.1:{}", "0.0.0.0:{}"),
])
def test_the_check_matches_real_binds(tmp_path: Path, first: str, second: str) -> None:
    port = _free_port()
    first, second = first.format(port), second.format(port)
    error = asyncio.run(_bind_both(first, second))
    assert error is not None and "in use" in str(error)
    found = write(tmp_path, _two_points({"Listen": [first]}, {"Listen": [second]}))
    (p,) = problems_of(found)
    assert p.path == f"{POINT1}.Listen[0]"
    assert asyncio.run(_bind_both(f"0.0.0.0:{port}", f"[::]:{port}")) is None
