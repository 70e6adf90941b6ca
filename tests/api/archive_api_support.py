"""Helpers of the archive API tests: mail sent over SMTP until it is archived, and polling a
search or export until it finishes."""

from __future__ import annotations

import smtplib
import time
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

from tests.support import ServerProcess


def send(server: ServerProcess, *, subject: str, mail_from: str = "alice@sender.test",
         to: str = "bob@example.test", body: str = "hello", html: str | None = None,
         attachment: bytes | None = None) -> str:
    """Send one message over SMTP and return its archived message ID once it is archived."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = mail_from, to, subject
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="octet-stream",
                           filename="data.bin")
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
        smtp.ehlo("client.sender.test")
        assert smtp.mail(mail_from)[0] == 250 and smtp.rcpt(to)[0] == 250
        code, reply = smtp.data(msg.as_bytes(policy=SMTP))
    assert code == 250, reply
    queue_id = reply.decode().rsplit(" ", 1)[1]
    stored = server.wait_for("archive_stored", 15, message_id=queue_id)
    return str(stored["archived_message_id"])


def archive_id(client: Any) -> str:
    """The ID of the basic config's archive `default`."""
    archives = client.list_archives()["Archives"]
    return str(next(a["ArchiveId"] for a in archives if a["ArchiveName"] == "default"))


def wait_search(client: Any, search_id: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        got: dict[str, Any] = client.get_archive_search(SearchId=search_id)
        if got["Status"]["State"] not in ("QUEUED", "RUNNING") or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def wait_export(client: Any, export_id: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        got: dict[str, Any] = client.get_archive_export(ExportId=export_id)
        if got["Status"]["State"] in ("COMPLETED", "FAILED", "CANCELLED") \
                or time.monotonic() > deadline:
            return got
        time.sleep(0.05)
