"""Header-reading benchmark (not a test): per-message cost, in µs, of the one header reader
(mailmgr.mime) against the path before it (the code on main at 4576c39: compat32 HeaderParser
+ email.utils.getaddresses for rule facts and DMARC, archive/fields._Headers + the header
registry's decoding), on a typical 10 KB message.

    .venv/bin/python bench/bench_headers.py [-n 5000]

Reports: the reader alone (cold: a new message version each time) against HeaderParser alone,
and the three per-message consumers (rule facts, DMARC From domains, archive fields) together.
"""

from __future__ import annotations

import argparse
import email.policy
import re
import time
from collections.abc import Callable
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser, HeaderParser
from email.policy import compat32
from email.utils import getaddresses

from mailmgr.archive.fields import extract
from mailmgr.message import Envelope, InboundMessage, SessionFacts
from mailmgr.mime import addresses, headers
from mailmgr.rules.facts import MessageFacts
from mailmgr.verdicts.dmarc import from_domains

HEADER = (
    b"Return-Path: <bounce-123@mail.example.com>\r\n"
    b"Received: from mail.example.com (mail.example.com [192.0.2.10])\r\n"
    b"\tby mx.example.net with ESMTPS id 4Xyz; Mon, 30 Nov 2026 10:00:00 +0000\r\n"
    b"Received: from app.internal (app.internal [10.0.0.5])\r\n"
    b"\tby mail.example.com with ESMTP id abc123; Mon, 30 Nov 2026 09:59:59 +0000\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=sel;\r\n"
    b"\th=from:to:cc:subject:date:message-id:mime-version:content-type;\r\n"
    b"\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n"
    b"\tb=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgaXQgaGFzIHRoZSByaWdodCBsZW5ndGg\r\n"
    b"\t gYW5kIHNoYXBlIGZvciBhIGJlbmNobWFyayBvZiBoZWFkZXIgcGFyc2luZyBjb3N0cyBvbmx5Lg==\r\n"
    b"From: \"Example Sales\" <sales@example.com>\r\n"
    b"To: Bob Smith <bob@example.net>, carol@example.org\r\n"
    b"Cc: dave@example.org\r\n"
    b"Subject: =?utf-8?q?Your_invoice_for_November_=E2=80=94_caf=C3=A9?=\r\n"
    b"Date: Mon, 30 Nov 2026 09:59:58 +0000\r\n"
    b"Message-ID: <20261130095958.abc123@mail.example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"X-Mailer: bench 1.0\r\n"
    b"\r\n"
)
CONTENT = HEADER + (b"Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 160)[:10240
                                                                                     - len(HEADER)]


# ---------------------------------------------------------------- today's path (main, 4576c39)

_BLANK_LINE = re.compile(rb"\r\n\r\n|\n\n")


def old_header_end(content: bytes) -> int:
    found = _BLANK_LINE.search(content)
    if found is None:
        return len(content)
    return found.start() + (2 if found.group() == b"\r\n\r\n" else 1)


def old_facts(content: bytes) -> tuple[object, ...]:
    text = content[: old_header_end(content)].decode("utf-8", errors="replace")
    msg = HeaderParser(policy=compat32).parsestr(text, headersonly=True)

    def addrs(name: str) -> tuple[str, ...]:
        values = [str(v).replace("\r", "").replace("\n", "").strip()
                  for v in msg.get_all(name, [])]
        return tuple(dict.fromkeys(a for _n, a in getaddresses(values) if "@" in a))

    subject = tuple(str(make_header(decode_header(str(v).strip())))
                    for v in msg.get_all("Subject", []))
    x_headers = [(k.lower(), v) for k, v in msg.items() if k.lower().startswith("x-")]
    return addrs("From"), addrs("Sender"), addrs("To"), addrs("Cc"), subject, x_headers


def old_from_domains(content: bytes) -> tuple[str, ...]:
    msg = BytesHeaderParser(policy=compat32).parsebytes(content[: old_header_end(content)],
                                                        headersonly=True)
    values = [str(v) for v in msg.get_all("From", [])]
    return tuple(dict.fromkeys(a.rpartition("@")[2].lower() for _n, a in getaddresses(values)
                               if "@" in a))


_FOLD = re.compile(r"\r?\n(?=[ \t])")
_HEADER_LINE = re.compile(r"^(From |[\041-\071\073-\176]*:|[\t ])")
_LINES = re.compile(r"(?<=\r\n)|(?<=\r)(?!\n)|(?<=\n)")


def old_archive(content: bytes) -> dict[str, str | None]:
    text = content[: old_header_end(content)].decode("utf-8", errors="replace")
    fields: list[tuple[str, str]] = []
    name: str | None = None
    value: list[str] = []
    for line in (x for x in _LINES.split(text) if x):
        if not _HEADER_LINE.match(line):
            break
        if line[0] in " \t":
            value.append(line)
            continue
        if name is not None:
            fields.append((name, "".join(value).split(":", 1)[1].strip()))
        colon = line.find(":")
        name, value = (line[:colon], [line]) if colon > 0 else (None, [])
    if name is not None:
        fields.append((name, "".join(value).split(":", 1)[1].strip()))
    out: dict[str, str | None] = {}
    for wanted in ("Date", "To", "From", "Cc", "Subject", "Message-ID", "X-Mailer"):
        raw = next((v for n, v in fields if n.lower() == wanted.lower()), None)
        if raw is None:
            out[wanted] = None
            continue
        raw = _FOLD.sub("", raw).strip()
        out[wanted] = str(email.policy.default.header_factory(wanted, raw))
    return out


# ---------------------------------------------------------------- the new path


def new_consumers(message: InboundMessage) -> None:
    MessageFacts.build(message)
    from_domains(message.content)
    extract(message.content)


def per_message(fn: Callable[[], object], n: int) -> float:
    """Best of 5 batches of n/5 runs (the machine is shared: the minimum is the cost)."""
    fn()
    batch = max(1, n // 5)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(batch):
            fn()
        best = min(best, (time.perf_counter() - started) / batch)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=5000)
    n = parser.parse_args().n
    message = InboundMessage("benchmsg0001", 0.0, Envelope("a@example.com", ("b@example.net",)),
                             SessionFacts("inp-bench", "bench", "192.0.2.1"), CONTENT)

    def cold_read() -> object:
        headers._cache.clear()  # a new message version each time
        return headers.read(CONTENT)

    def old_parse() -> object:
        text = CONTENT[: old_header_end(CONTENT)].decode("utf-8", errors="replace")
        return HeaderParser(policy=compat32).parsestr(text, headersonly=True)

    def cold_consumers() -> None:
        headers._cache.clear()
        addresses._parse_cached.cache_clear()  # new values too: nothing reused
        new_consumers(message)

    def old_consumers() -> None:
        old_facts(CONTENT)
        old_from_domains(CONTENT)
        old_archive(CONTENT)

    print(f"message: {len(CONTENT)} bytes, header section {len(HEADER)} bytes, "
          f"{len(headers.read(CONTENT).fields)} fields; {n} runs each")
    rows = [
        ("parse the header section: HeaderParser (today)", per_message(old_parse, n)),
        ("parse the header section: mailmgr.mime.headers.read", per_message(cold_read, n)),
        ("re-read of the same version (cache hit)", per_message(lambda: headers.read(CONTENT),
                                                                 n)),
        ("facts + DMARC From + archive fields: today", per_message(old_consumers, n)),
        ("facts + DMARC From + archive fields: one reader", per_message(cold_consumers, n)),
        ("  the same, again for the same version (rules re-run)",
         per_message(lambda: new_consumers(message), n)),
    ]
    for label, micros in rows:
        print(f"  {label:55s} {micros:8.1f} µs/message")


if __name__ == "__main__":
    main()
