"""The ClamAV engine behind TRENDMICRO_VSAPI: clamd's `zINSTREAM` over a UNIX or TCP socket.

A message larger than `max_stream_bytes` (clamd's StreamMaxLength) is not sent at all: the result
is SKIPPED with verdict PROCESSING_FAILED, as Haraka's clamd plugin skips above its max_size,
rather than a scan clamd would abort half-way with "INSTREAM size limit exceeded".
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import struct
from typing import Any

from mailmgr.analysis.base import AnalysisError
from mailmgr.config.models import Analyzer, AnalyzerEngine, ClamavSettings
from mailmgr.message import AnalysisResult, AnalysisStatus, InboundMessage, Verdict

log = logging.getLogger(__name__)

ENGINE = AnalyzerEngine.CLAMAV.value
CHUNK_BYTES = 64 * 1024  # one INSTREAM chunk; clamd reads chunks of any size up to its limit
MAX_REPLY_BYTES = 4096  # "stream: <signature name> FOUND" is far shorter
MAX_DETAIL = 200
_END = struct.pack(">I", 0)
_EXTENDED_INFO = re.compile(r"\([0-9a-fA-F]+:\d+\)$")


class ClamavEngine:
    """One `Clamav` analyzer: a connection per scan to one clamd, at most `max_concurrency`
    scans at once (the rest wait; the service's overall timeout bounds the wait), each scan
    (connect, send, reply) bounded by `timeout` seconds."""

    def __init__(self, analyzer: Analyzer) -> None:
        settings = analyzer.settings
        if not isinstance(settings, ClamavSettings):
            raise TypeError(f"analyzer {analyzer.name} is not a Clamav analyzer")
        if (settings.unix_path is None) == (settings.tcp is None):
            raise ValueError(f"analyzer {analyzer.name}: give exactly one of unix_path and tcp")
        self.analyzer = analyzer
        self.settings: ClamavSettings = settings
        self.address = (f"unix:{settings.unix_path}" if settings.unix_path is not None
                        else str(settings.tcp))
        self._semaphore = asyncio.Semaphore(max(1, settings.max_concurrency))

    async def analyze(self, message: InboundMessage, early: AnalysisResult | None
                      ) -> AnalysisResult:
        """clamd's answer for `message`: OK with isPassed and category (the signature name, or
        "clean"); SKIPPED when the message exceeds `max_stream_bytes`. Raises AnalysisError:
        connect (no socket, refused), timeout (no reply within `timeout` seconds), refused
        (clamd answered "… ERROR", e.g. its own stream limit), protocol (any other reply)."""
        size = len(message.content)
        limit = self.settings.max_stream_bytes
        if size > limit:
            return AnalysisResult(
                analyzer=self.analyzer.name, engine=ENGINE, status=AnalysisStatus.SKIPPED,
                verdict=Verdict.PROCESSING_FAILED,
                detail=f"message of {size} bytes exceeds the clamd stream limit of {limit} bytes",
            )
        async with self._semaphore:
            try:
                async with asyncio.timeout(self.settings.timeout):
                    reply = await self._scan(message.content)
            except TimeoutError as exc:
                raise AnalysisError(
                    "timeout", f"no reply from {self.address} within {self.settings.timeout:g} s"
                ) from exc
        log.debug("clamd %s: %r for %s", self.analyzer.name, reply, message.id)
        return result_from_reply(self.analyzer.name, reply)

    async def _connect(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        try:
            if self.settings.unix_path is not None:
                targets: list[tuple[int, Any]] = [(socket.AF_UNIX, self.settings.unix_path)]
            else:
                assert self.settings.tcp is not None
                targets = await _tcp_targets(self.settings.tcp.host, self.settings.tcp.port)
            failure: OSError = OSError(f"no address for {self.address}")
            for family, address in targets:
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    await loop.sock_connect(sock, address)
                    return sock
                except OSError as exc:
                    sock.close()
                    failure = exc
                except BaseException:
                    sock.close()
                    raise
            raise failure
        except OSError as exc:
            raise AnalysisError("connect", f"{self.address}: {exc.strerror or exc}") from exc

    async def _scan(self, content: bytes) -> str:
        # Plain non-blocking socket calls rather than streams: when clamd refuses a stream it
        # writes its reason and closes, and our next write fails with EPIPE; a stream transport
        # would then drop the unread reason, a socket still lets us read it.
        loop = asyncio.get_running_loop()
        sock = await self._connect()
        try:
            send_error: OSError | None = None
            try:
                await _send(loop, sock, content)
            except OSError as exc:
                send_error = exc
            raw = await _read_reply(loop, sock)
        finally:
            sock.close()
        if not raw:
            during = (f" during the stream ({send_error.strerror or send_error})"
                      if send_error is not None else "")
            raise AnalysisError("protocol",
                                f"{self.address} closed the connection{during} without a reply")
        return raw.decode("utf-8", "replace").strip()

    async def close(self) -> None:
        """Nothing to release: every scan opens and closes its own connection."""


async def _tcp_targets(host: str, port: int) -> list[tuple[int, Any]]:
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port,
                                                             type=socket.SOCK_STREAM)
        return [(family, address) for family, _, _, _, address in infos]
    family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
    return [(family, (host, port))]


async def _send(loop: asyncio.AbstractEventLoop, sock: socket.socket, content: bytes) -> None:
    # memoryview slices: the chunks go out without copying the message.
    view = memoryview(content)
    await loop.sock_sendall(sock, b"zINSTREAM\0")
    for start in range(0, len(view), CHUNK_BYTES):
        chunk = view[start:start + CHUNK_BYTES]
        await loop.sock_sendall(sock, struct.pack(">I", len(chunk)))
        await loop.sock_sendall(sock, chunk)
    await loop.sock_sendall(sock, _END)


async def _read_reply(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    """clamd's reply up to its NUL (or the connection's end); b"" when there is none."""
    reply = bytearray()
    while True:
        try:
            data = await loop.sock_recv(sock, 4096)
        except OSError:
            break  # reset after a refusal: what arrived before is the answer
        if not data:
            break
        reply += data
        end = reply.find(b"\0")
        if end >= 0:
            return bytes(reply[:end])
        if len(reply) > MAX_REPLY_BYTES:
            raise AnalysisError("protocol", "clamd's reply is too long")
    return bytes(reply)


def result_from_reply(analyzer: str, reply: str) -> AnalysisResult:
    """The OK result for clamd's reply to INSTREAM ("stream: OK", "stream: <Name> FOUND").
    Raises AnalysisError: refused for "… ERROR", protocol for anything else."""
    text = reply[len("stream:"):].strip() if reply.startswith("stream:") else reply
    if text == "OK":
        return AnalysisResult(analyzer=analyzer, engine=ENGINE, status=AnalysisStatus.OK,
                              verdict=Verdict.PASS,
                              fields=(("isPassed", True), ("category", "clean")),
                              detail="clean")
    if reply.startswith("stream:") and text.endswith(" FOUND"):
        found = text[:-len(" FOUND")].strip()
        # ExtendedDetectionInfo may add "(md5:size)" to a hash signature's name.
        name = _EXTENDED_INFO.sub("", found)
        if name:
            return AnalysisResult(analyzer=analyzer, engine=ENGINE, status=AnalysisStatus.OK,
                                  verdict=Verdict.FAIL,
                                  fields=(("isPassed", False), ("category", name)),
                                  detail=f"found {found}"[:MAX_DETAIL])
    if reply.endswith("ERROR"):
        raise AnalysisError("refused", reply[:MAX_DETAIL])
    raise AnalysisError("protocol", f"unexpected clamd reply {reply[:80]!r}")
