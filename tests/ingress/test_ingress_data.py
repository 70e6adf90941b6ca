"""DATA framing on a real StreamReader: every way of splitting the bytes gives the same message,
and bytes pipelined after the terminator stay in the reader."""

from __future__ import annotations

import asyncio
import random

import pytest

from mailmgr.ingress.data import raw_cap, read_message, unstuff

BODIES = [
    b"",
    b"\r\n",
    b"x\r\n",
    b"..\r\n",
    b".\r\n.\r\n",
    b"\r\n\r\n\r\n",
    b"\r\r\n",
    b"\r\n..\r\n...\r\n",
    b"a\n.\nb\r\n.\nc\r.\r\n",
    b"Subject: t\r\n\r\n" + b"line of text.\r\n" * 300 + b"..end\r\n",
]


def _stuff(content: bytes) -> bytes:
    stuffed = content.replace(b"\r\n.", b"\r\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


async def _feed_and_read(
    pieces: list[bytes], limit: int, reader_limit: int
) -> tuple[bytes | None, bytes]:
    reader = asyncio.StreamReader(limit=reader_limit)

    async def feed() -> None:
        for piece in pieces:
            reader.feed_data(piece)
            await asyncio.sleep(0)

    feeder = asyncio.create_task(feed())
    content = await read_message(reader, limit)
    await feeder
    rest = await reader.read(1000)
    return content, rest


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("reader_limit", [8, 64, 65536])
async def test_any_split_gives_the_same_message(body: bytes, reader_limit: int) -> None:
    wire = _stuff(body) + b".\r\n" + b"QUIT\r\n"
    rng = random.Random(len(body) * 1000 + reader_limit)
    splits = [[wire], [bytes([b]) for b in wire]]
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(wire)), min(len(wire) - 1, 5)))
        splits.append([wire[i:j] for i, j in zip([0, *cuts], [*cuts, len(wire)], strict=True)])
    for pieces in splits:
        content, rest = await _feed_and_read(pieces, 1_000_000, reader_limit)
        assert content == body
        assert rest == b"QUIT\r\n"


async def test_over_limit_reads_to_the_terminator_and_returns_none() -> None:
    wire = b"y" * 5000 + b"\r\n.\r\nNOOP\r\n"
    content, rest = await _feed_and_read(
        [wire[i : i + 700] for i in range(0, len(wire), 700)], 1000, 64
    )
    assert content is None
    assert rest == b"NOOP\r\n"


def test_unstuff_and_raw_cap() -> None:
    assert unstuff(b"..a\r\n..\r\n.b\r\n") == b".a\r\n.\r\nb\r\n"
    worst = b"..\r\n" * 1000  # the most stuffing per byte there can be
    assert len(worst) <= raw_cap(len(unstuff(worst)))
