"""Hostile 03 (RFC 2047 decoding of 10,000 adjacent encoded words took the server to ~1 GB RSS)
through the real server's Archive action, plus the decoder's class members at function level:
other headers, other encodings, adjacent-word shapes."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mailmgr.archive.fields import decode_value, extract
from tests.hostile.headers_support import archived, cli, send
from tests.support import ServerProcess, basic_config


def rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
    return 0


@pytest.mark.slow
def test_hostile_03_encoded_word_subject_is_archived_in_bounded_memory(
    tmp_path: Path, server_factory: Any
) -> None:
    server: ServerProcess = server_factory(basic_config(tmp_path)).start()
    assert server.proc is not None
    pid = server.proc.pid
    base = rss_mb(pid)
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    n = 10_000
    subject = "tag " + " ".join("=?utf-8?Q?a=C3=A9?=" for _ in range(n))
    names = " ".join("=?utf-8?B?w6k=?=" for _ in range(n // 2))
    content = (f"From: {names} <a@sender.test>\r\nTo: bob@example.test\r\n"
               f"Subject: {subject}\r\n\r\nbody\r\n").encode()
    try:
        send(server, content, mail_from="a@sender.test", rcpt="bob@example.test")
        row, _stored = archived(server, "tag a\u00e9a\u00e9", timeout=30)
    finally:
        stop.set()
    assert "a\u00e9" * n in str(row)
    grown = peak[0] - base
    assert grown < 150, f"RSS grew {grown} MB for a {len(content) // 1024} KB message"
    assert server.stop() == 0


@pytest.mark.parametrize("name", ["Subject", "From", "To", "Cc", "X-Mailer", "In-Reply-To"])
@pytest.mark.parametrize("word", ["=?utf-8?Q?a=C3=A9?=", "=?iso-8859-1?B?6Q==?=",
                                  "=?no-such?Q?x?=", "=?utf-8?Q?=?="])
def test_decoding_any_header_is_linear(name: str, word: str) -> None:
    small = " ".join([word] * 2_000)
    large = " ".join([word] * 20_000)
    timings = []
    for value in (small, large):
        started = time.perf_counter()
        decode_value(name, value)
        timings.append(time.perf_counter() - started)
    assert timings[1] < 1.0
    assert timings[1] < 30 * timings[0] + 0.05, timings  # 10x input: ~10x time, not 100x


def test_archive_fields_decode_per_section_6_2() -> None:
    content = (b"Subject: =?utf-8?q?caf=C3=A9?= =?utf-8?q?_au?=  lait\r\n"
               b"From: =?utf-8?q?J=C3=B6rg?= <j@x.test>\r\n\r\nb\r\n")
    assert extract(content).subject == "caf\u00e9 au  lait"
    assert extract(content).from_ == "J\u00f6rg <j@x.test>"


@pytest.mark.parametrize("encoded", ["=?utf-8?q?=1B[2J=1B[31mred?=", "=?utf-8?q?a=0D=0AX-Evil:_1?=",
                                     "=?utf-8?b?AAEC?=", "=?iso-8859-1?q?=9B31m?="])
def test_decoded_text_carries_no_control_character(encoded: str) -> None:
    """Found in review: an encoded word can carry ESC, CR/LF, NUL or C1; decoded header text
    reaches archive rows, events and terminals, so they are replaced (TAB stays)."""
    text = decode_value("Subject", f"x {encoded}")
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text), repr(text)


@pytest.mark.slow
def test_archive_search_never_prints_a_terminal_escape(
    tmp_path: Path, server_factory: Any
) -> None:
    server: ServerProcess = server_factory(basic_config(tmp_path)).start()
    send(server, b"From: =?utf-8?q?=1B]0;pwned=07?= <a@sender.test>\r\n"
                 b"Subject: esc =?utf-8?q?=1B[2J=1B[31mred?= \x1b[1mraw\r\n\r\nbody\r\n",
         mail_from="a@sender.test", rcpt="bob@example.test")
    archived(server, "esc", timeout=30)
    table = cli(server.config_file, "archive", "search", "--subject", "esc")
    assert table.returncode == 0 and "esc" in table.stdout
    assert "\x1b" not in table.stdout and "\x07" not in table.stdout
