"""ClamavEngine against a real clamd (local EICAR signature), a clamd with a small stream limit,
and loopback servers that hang or misbehave."""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from mailmgr.analysis.base import AnalysisError
from mailmgr.analysis.clamav import CHUNK_BYTES, ClamavEngine
from mailmgr.message import AnalysisResult, AnalysisStatus, Verdict
from tests.analysis.engines import (  # noqa: F401
    CLAMD,
    CLAMD_MISSING,
    EICAR,
    EICAR_FOUND,
    HASH_FOUND,
    HASH_PAYLOAD,
    ClamdInstance,
    Handler,
    clamav_analyzer,
    clamd_fixture,
    clamd_instance,
    clamd_small_stream_fixture,
    free_port,
    inbound,
    mail,
    stream_server,
)


async def scan(content: bytes, **settings: Any) -> AnalysisResult:
    engine = ClamavEngine(clamav_analyzer(**settings))
    try:
        return await engine.analyze(inbound(content), None)
    finally:
        await engine.close()


async def test_eicar_in_a_message_fails_with_the_signature_name(clamd: ClamdInstance) -> None:
    result = await scan(mail(EICAR + b"\r\n"), unix_path=clamd.socket_path)
    assert result.status is AnalysisStatus.OK
    assert result.verdict is Verdict.FAIL
    assert result.value("isPassed") is False
    assert result.value("category") == EICAR_FOUND
    assert result.engine == "Clamav" and result.analyzer == "trendmicro"


async def test_eicar_in_a_base64_attachment_is_found(clamd: ClamdInstance) -> None:
    # clamd decodes MIME parts: the signature is not in the raw bytes, only in the attachment.
    encoded = base64.encodebytes(EICAR).decode().replace("\n", "\r\n")
    body = ("--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
            "--b1\r\nContent-Type: application/octet-stream\r\n"
            "Content-Disposition: attachment; filename=eicar.com\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n{encoded}--b1--\r\n")
    content = mail(body, headers='Content-Type: multipart/mixed; boundary="b1"\r\n')
    assert EICAR not in content
    result = await scan(content, unix_path=clamd.socket_path)
    assert result.value("category") == EICAR_FOUND


async def test_a_hash_signature_finds_an_attachment(clamd: ClamdInstance) -> None:
    encoded = base64.encodebytes(HASH_PAYLOAD).decode().replace("\n", "\r\n")
    body = ("--b1\r\nContent-Type: text/plain\r\n\r\nthe report\r\n"
            "--b1\r\nContent-Type: application/pdf\r\n"
            "Content-Disposition: attachment; filename=report.pdf\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n{encoded}--b1--\r\n")
    content = mail(body, headers='Content-Type: multipart/mixed; boundary="b1"\r\n')
    result = await scan(content, unix_path=clamd.socket_path)
    assert result.value("isPassed") is False
    assert result.value("category") == HASH_FOUND


async def test_a_clean_message_passes(clamd: ClamdInstance) -> None:
    result = await scan(mail(), unix_path=clamd.socket_path)
    assert result.status is AnalysisStatus.OK
    assert result.verdict is Verdict.PASS
    assert result.fields == (("isPassed", True), ("category", "clean"))


@pytest.mark.parametrize("offset", [-1, -30, -67])
async def test_eicar_across_a_chunk_boundary_is_found(clamd: ClamdInstance, offset: int) -> None:
    head = mail("")
    padding = b"x" * (CHUNK_BYTES + offset - len(head) - 2) + b"\r\n"
    content = head + padding + EICAR + b"\r\n" + b"y" * 1000 + b"\r\n"
    start = content.index(EICAR)
    assert start < CHUNK_BYTES < start + len(EICAR)  # the string straddles two chunks
    result = await scan(content, unix_path=clamd.socket_path)
    assert result.value("category") == EICAR_FOUND


async def test_a_message_of_several_chunks_is_clean(clamd: ClamdInstance) -> None:
    content = mail(("lorem ipsum dolor sit amet " * 40 + "\r\n") * 300)  # ~320 KiB
    assert len(content) > 4 * CHUNK_BYTES
    result = await scan(content, unix_path=clamd.socket_path)
    assert result.value("isPassed") is True


async def test_the_tcp_address_works(clamd: ClamdInstance) -> None:
    assert clamd.tcp is not None
    result = await scan(mail(EICAR), tcp=clamd.tcp)
    assert result.value("category") == EICAR_FOUND
    clean = await scan(mail(), tcp=clamd.tcp)
    assert clean.value("category") == "clean"


async def test_a_message_over_our_limit_is_skipped_without_contacting_clamd(
        tmp_path: Path) -> None:
    # No clamd at that path: a scan would fail to connect, a skip never tries.
    content = mail("z" * 2000)
    result = await scan(content, unix_path=str(tmp_path / "absent.sock"),
                        max_stream_bytes=1000)
    assert result.status is AnalysisStatus.SKIPPED
    assert result.verdict is Verdict.PROCESSING_FAILED
    assert result.fields == ()
    assert result.detail == (
        f"message of {len(content)} bytes exceeds the clamd stream limit of 1000 bytes")


async def test_a_message_at_our_limit_is_scanned(clamd: ClamdInstance) -> None:
    content = mail(EICAR)
    result = await scan(content, unix_path=clamd.socket_path, max_stream_bytes=len(content))
    assert result.value("category") == EICAR_FOUND


async def test_clamds_own_stream_limit_is_an_error(clamd_small_stream: ClamdInstance) -> None:
    # Our limit set above clamd's StreamMaxLength (64 KiB): clamd refuses the stream.
    content = mail("w" * (clamd_small_stream.stream_max_bytes + 10_000))
    with pytest.raises(AnalysisError) as caught:
        await scan(content, unix_path=clamd_small_stream.socket_path,
                   max_stream_bytes=10 * 1024 * 1024)
    assert caught.value.reason == "refused"
    assert "size limit exceeded" in caught.value.detail
    # ... and the same clamd still scans what fits.
    small = await scan(mail(EICAR), unix_path=clamd_small_stream.socket_path)
    assert small.value("category") == EICAR_FOUND


async def test_a_missing_socket_is_a_connect_error(tmp_path: Path) -> None:
    path = str(tmp_path / "clamd.ctl")
    with pytest.raises(AnalysisError) as caught:
        await scan(mail(), unix_path=path)
    assert caught.value.reason == "connect"
    assert path in caught.value.detail


async def test_a_closed_tcp_port_is_a_connect_error() -> None:
    with pytest.raises(AnalysisError) as caught:
        await scan(mail(), tcp=("127.0.0.1", free_port()))
    assert caught.value.reason == "connect"


def _serve(handler: Handler, tmp_path: Path) -> AbstractAsyncContextManager[str]:
    return stream_server(handler, str(tmp_path / "fake.sock"))


async def _read_instream(reader: asyncio.StreamReader) -> bytes:
    assert await reader.readexactly(10) == b"zINSTREAM\0"
    data = b""
    while size := struct.unpack(">I", await reader.readexactly(4))[0]:
        data += await reader.readexactly(size)
    return data


async def test_a_hung_clamd_is_a_timeout_error(tmp_path: Path) -> None:
    received: list[bytes] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await _read_instream(reader))
        await reader.read()  # never answers; returns when the client gives up
        writer.close()

    content = mail()
    async with _serve(hang, tmp_path) as path:
        started = time.monotonic()
        with pytest.raises(AnalysisError) as caught:
            await scan(content, unix_path=path, timeout=0.5)
        elapsed = time.monotonic() - started
    assert caught.value.reason == "timeout"
    assert 0.4 < elapsed < 2.0
    assert received == [content]  # the whole message went out, as chunks and a zero chunk


async def test_a_clamd_that_stops_reading_is_a_timeout_error(tmp_path: Path) -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)  # reads nothing: the client's writes back up
        writer.close()

    big = mail("v" * (8 * 1024 * 1024))
    async with _serve(stall, tmp_path) as path:
        started = time.monotonic()
        with pytest.raises(AnalysisError) as caught:
            await scan(big, unix_path=path, timeout=0.5)
        elapsed = time.monotonic() - started
    assert caught.value.reason == "timeout"
    assert 0.4 < elapsed < 2.0


@pytest.mark.parametrize(("reply", "reason"), [
    (b"stream: who knows\0", "protocol"),
    (b"", "protocol"),
    (b"UNKNOWN COMMAND\0", "protocol"),
    (b"stream: Can't allocate memory ERROR\0", "refused"),
    (b"stream:  FOUND\0", "protocol"),
])
async def test_an_unexpected_reply_is_an_error(tmp_path: Path, reply: bytes, reason: str) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_instream(reader)
        writer.write(reply)
        await writer.drain()
        writer.close()

    async with _serve(answer, tmp_path) as path:
        with pytest.raises(AnalysisError) as caught:
            await scan(mail(), unix_path=path)
    assert caught.value.reason == reason


async def test_extended_detection_info_is_not_part_of_the_category(tmp_path: Path) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_instream(reader)
        writer.write(b"stream: Win.Test.EICAR_HDB-1(44d88612fea8a8f36de82e1278abb02f:68) FOUND\0")
        await writer.drain()
        writer.close()

    async with _serve(answer, tmp_path) as path:
        result = await scan(mail(), unix_path=path)
    assert result.value("category") == "Win.Test.EICAR_HDB-1"
    assert result.detail == "found Win.Test.EICAR_HDB-1(44d88612fea8a8f36de82e1278abb02f:68)"


async def test_scans_in_flight_stay_within_max_concurrency(tmp_path: Path) -> None:
    active = peak = 0

    async def slow_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await _read_instream(reader)
        await asyncio.sleep(0.05)
        active -= 1
        writer.write(b"stream: OK\0")
        await writer.drain()
        writer.close()

    async with _serve(slow_ok, tmp_path) as path:
        engine = ClamavEngine(clamav_analyzer(unix_path=path, max_concurrency=3))
        results = await asyncio.gather(*(engine.analyze(inbound(mail()), None)
                                         for _ in range(10)))
        await engine.close()
    assert [r.value("isPassed") for r in results] == [True] * 10
    assert peak == 3


def test_the_fixture_leaves_no_process_or_folder_behind() -> None:
    if CLAMD is None:
        pytest.skip(CLAMD_MISSING)
    with clamd_instance() as clamd:
        assert clamd.command(b"PING") == b"PONG"
        assert clamd.directory.exists()
    assert clamd.proc.poll() is not None
    assert not clamd.directory.exists()
