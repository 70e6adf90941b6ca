"""Sample messages, archives and configs shared by the archive tests."""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

from mailmgr.actions.base import ActionInput
from mailmgr.config.models import Archive, Config, RuleSet, S3Storage, ServerConfig

RULE_SET_ARN = "arn:aws:ses:us-east-1:000000000000:mailmanager-rule-set/rs-main"

PLAIN = (
    b"Received: from client.sender.test (client [192.0.2.7])\r\n"
    b"\tby mx.example.test with ESMTP; Sat, 21 Nov 2026 10:00:00 +0000\r\n"
    b"Received: from laptop by client.sender.test; Sat, 21 Nov 2026 09:59:58 +0000\r\n"
    b"From: =?utf-8?q?J=C3=B6rg_Sender?= <jorg@sender.test>\r\n"
    b"To: Alice <alice@example.test>, =?utf-8?b?w4lsaXNl?= <elise@example.test>\r\n"
    b"Cc: Bob <bob@example.test>\r\n"
    b"Subject: =?utf-8?q?Quarterly_r=C3=A9port?=\r\n"
    b" is ready\r\n"
    b"Date: Sat, 21 Nov 2026 09:59:58 +0000\r\n"
    b"Message-ID: <q3-report@sender.test>\r\n"
    b"In-Reply-To: <q2-report@sender.test>\r\n"
    b"X-Mailer: TestMailer 1.0\r\n"
    b"X-Original-Mailer: OrigMailer 2\r\n"
    b"X-Priority: 1 (Highest)\r\n"
    b"\r\n"
    b"Hello,\r\nsee the figures below.\r\n"
)


def with_attachment() -> bytes:
    msg = EmailMessage()
    msg["From"] = "Carol <carol@sender.test>"
    msg["To"] = "dave@example.test"
    msg["Subject"] = "Invoice attached"
    msg["Message-ID"] = "<invoice-1@sender.test>"
    msg.set_content("The invoice is attached.")
    msg.add_attachment(
        b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="invoice.pdf"
    )
    return msg.as_bytes()


def multipart_alternative() -> bytes:
    msg = EmailMessage()
    msg["From"] = "erin@sender.test"
    msg["To"] = "frank@example.test"
    msg["Subject"] = "No attachments here"
    msg.set_content("plain")
    msg.add_alternative("<p>html</p>", subtype="html")
    return msg.as_bytes()


def make_config(data_directory: Path, *archives: Archive) -> Config:
    return Config(
        source=data_directory / "mailmgr.yaml",
        server=ServerConfig(hostname="mx.example.test", data_directory=data_directory),
        ingress_points=(),
        traffic_policies=(),
        rule_sets=(RuleSet(id="rs-main", name="main", arn=RULE_SET_ARN, rules=()),),
        archives=archives,
    )


DEFAULT = Archive(
    id="a-default",
    name="default",
    arn="arn:aws:ses:us-east-1:000000000000:mailmanager-archive/a-default",
)
FOREVER = Archive(
    id="a-forever",
    name="forever",
    arn="arn:aws:ses:us-east-1:000000000000:mailmanager-archive/a-forever",
    retention="PERMANENT",
)
REMOTE = Archive(
    id="a-remote",
    name="remote",
    arn="arn:aws:ses:us-east-1:000000000000:mailmanager-archive/a-remote",
    storage=S3Storage(bucket="archive-bucket"),
)


MakeItem = Callable[..., ActionInput]  # the make_item fixture's type
