"""The PROXY header parser on generated input: valid headers of every form round-trip, every
proper prefix is incomplete (never an error, never a header), and any bytes give an answer."""

from __future__ import annotations

import ipaddress
import os
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from mailmgr.ingress.proxy import (
    V1_MAX,
    V2_SIGNATURE,
    Incomplete,
    Malformed,
    ProxyHeader,
    parse,
)

EXAMPLES = int(os.environ.get("MAILMGR_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None)

ipv4 = st.ip_addresses(v=4)
ipv6 = st.ip_addresses(v=6)
ports = st.integers(0, 65535)


def _v1(src: ipaddress.IPv4Address | ipaddress.IPv6Address, dst: str, sport: int) -> bytes:
    family = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {family} {src} {dst} {sport} 25\r\n".encode()


def _v2(src: ipaddress.IPv4Address | ipaddress.IPv6Address, sport: int, tlv: bytes) -> bytes:
    pad = 4 if src.version == 4 else 16
    body = src.packed + bytes(pad) + struct.pack("!HH", sport, 25) + tlv
    fam = 0x11 if src.version == 4 else 0x21
    return V2_SIGNATURE + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body


@FUZZ
@given(st.one_of(ipv4, ipv6), ports, st.binary(max_size=40), st.binary(max_size=40),
       st.booleans())
def test_valid_headers_round_trip_and_prefixes_are_incomplete(
    src: ipaddress.IPv4Address | ipaddress.IPv6Address, sport: int, tlv: bytes, rest: bytes,
    binary: bool,
) -> None:
    dst = "192.0.2.1" if src.version == 4 else "2001:db8::1"
    header = _v2(src, sport, tlv) if binary else _v1(src, dst, sport)
    assert parse(header + rest) == ProxyHeader(2 if binary else 1, (str(src), sport), len(header))
    assert len(header) <= (V1_MAX if not binary else len(header))
    for cut in range(len(header)):
        assert isinstance(parse(header[:cut]), Incomplete)


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_get_an_answer(data: bytes) -> None:
    result = parse(data)
    assert isinstance(result, ProxyHeader | Incomplete | Malformed)
    if isinstance(result, ProxyHeader):
        assert result.length <= len(data)
    if isinstance(result, Incomplete):
        # v1 never waits past 107 bytes; v2 only up to its announced length
        assert len(data) < V1_MAX or data.startswith(V2_SIGNATURE)


@FUZZ
@given(st.binary(min_size=1, max_size=200).filter(lambda b: b"\r\n" not in b))
def test_v1_without_crlf_is_refused_by_107_bytes(tail: bytes) -> None:
    data = (b"PROXY TCP4 " + tail * 200)[:V1_MAX + 5]
    assert isinstance(parse(data), Malformed)
