"""Hostile 06 end to end, scaled for CI: messages of 100,000 MIME parts through the real
`mailmgr serve` with an Archive rule cost milliseconds each (bounded walk), and a probe sent
after them is archived within seconds."""

from __future__ import annotations

import os
import smtplib
import threading
import time
from pathlib import Path
from typing import Any

from mailmgr.actions import qbusiness
from mailmgr.actions.base import ActionInput
from mailmgr.archive.fields import extract
from mailmgr.message import Envelope, InboundMessage, SessionFacts, Verdicts
from tests.support import ServerProcess, basic_config
from tests.verdicts.dns_server import DnsServer, Zone

PARTS = 100_000


def many_parts(n: int) -> bytes:
    parts = "".join(f"--B\r\nContent-Type: text/plain\r\n\r\np{i}\r\n" for i in range(n))
    return (parts + "--B\r\nContent-Disposition: attachment; filename=a.bin\r\n\r\nx\r\n"
            "--B--\r\n").encode()


def send(port: int, subject: str, body: bytes = b"x\r\n", ctype: str | None = None) -> str:
    head = f"From: a@b.test\r\nTo: bob@example.test\r\nSubject: {subject}\r\n"
    if ctype:
        head += f"Content-Type: {ctype}\r\n"
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as smtp:
        smtp.ehlo("c.test")
        smtp.mail("a@b.test")
        smtp.rcpt("bob@example.test")
        code, reply = smtp.data(head.encode() + b"\r\n" + body)
    assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[1]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_many_part_messages_do_not_delay_other_mail(
    tmp_path: Path, server_factory: Any, dns_server: DnsServer, zone: Zone
) -> None:
    config = basic_config(tmp_path, Dns={"Nameservers": [dns_server.address], "Timeout": 1})
    config["TrafficPolicies"][0]["MaxMessageSizeBytes"] = 20_000_000
    server: ServerProcess = server_factory(config).start()
    assert server.proc is not None
    body = many_parts(PARTS)
    assert len(body) > 4_000_000
    ids: list[str] = []
    before = cpu_seconds(server.proc.pid)
    threads = [threading.Thread(target=lambda i=i: ids.append(
        send(server.port, f"mime-{i}", body, "multipart/mixed; boundary=B"))) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 3
    sent = time.monotonic()
    probe = send(server.port, "probe")
    server.wait_for("archive_stored", 10, message_id=probe)
    assert time.monotonic() - sent < 10
    for mid in ids:
        server.wait_for("archive_stored", 30, message_id=mid)
    # 3 x 4 MB through SMTP, spool, verdicts and archive: the parse is no longer the cost
    # (it was ~17.5 s of CPU per message)
    assert cpu_seconds(server.proc.pid) - before < 10


def _input(content: bytes) -> ActionInput:
    message = InboundMessage("0abc123def456ghi789", 1_700_000_000.0,
                             Envelope("a@b.test", ("bob@example.test",)),
                             SessionFacts("inp-1", "in", "192.0.2.1", helo="c.test"), content)
    return ActionInput(message, content, ("bob@example.test",), Verdicts(), "rs-1", "main", 1,
                       "r1", 1)


def test_q_business_document_of_a_100k_part_message_is_bounded() -> None:
    content = (b"From: a@b.test\r\nSubject: many\r\nContent-Type: multipart/mixed; boundary=B"
               b"\r\n\r\n" + many_parts(PARTS))
    started = time.process_time()
    doc = qbusiness.document(_input(content))
    assert time.process_time() - started < 0.5
    assert doc.content == b"p0" and doc.content_type == "PLAIN_TEXT" and doc.title == "many"


def test_archive_fields_of_hostile_shapes_are_bounded() -> None:
    shapes = [
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n" + many_parts(PARTS),
        "".join(f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
                for i in range(10_000)).encode(),
        b"Content-Type: message/rfc822\r\n\r\n" * 50_000,
        b"Content-Type: multipart/mixed; boundary=Z\r\n\r\n--Z\r\n" + b"--Zx\r\n" * 500_000,
    ]
    for content in shapes:
        started = time.process_time()
        extract(b"From: a@b.test\r\nSubject: s\r\n" + content)
        assert time.process_time() - started < 0.5
