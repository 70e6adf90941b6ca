"""Field 08 (AddHeader lands after the body when the blank line is missing; later rules miss it)
through the real server, with the archived copy as the downstream view, plus other members of
the class (LF-only, header-only messages, an mbox line, a NUL in a would-be name)."""

from __future__ import annotations

import email
import email.errors
from email import policy
from pathlib import Path
from typing import Any

import pytest

from mailmgr.mime.headers import read
from tests.hostile.headers_support import CASES, archived, send
from tests.support import ServerProcess, basic_config

pytestmark = pytest.mark.slow
FIELD08 = CASES / "field/08-missing-header-separator-addheader"


@pytest.fixture
def server(tmp_path: Path, server_factory: Any) -> ServerProcess:
    data = basic_config(tmp_path)
    data["RuleSets"][0]["Rules"] = [
        {"Name": "tag", "Actions": [{"AddHeader": {"HeaderName": "X-Tag", "HeaderValue": "yes"}}]},
        {"Name": "seen-tag",
         "Conditions": [{"StringExpression": {"Evaluate": {"MimeHeaderAttribute": "X-Tag"},
                                              "Operator": "EQUALS", "Values": ["yes"]}}],
         "Actions": [{"AddHeader": {"HeaderName": "X-Seen-Tag", "HeaderValue": "yes"}}]},
        {"Name": "archive", "Actions": [{"Archive": {"TargetArchive": "default"}}]},
    ]
    started: ServerProcess = server_factory(data).start()
    return started


NO_SEPARATOR = ((FIELD08 / "no-separator.eml").read_bytes() if FIELD08.exists() else
                b"From: a@example.test\r\nTo: b@example.test\r\nSubject: no separator\r\n"
                b"Hello world, this is the body.\r\nSecond line.\r\n")
CASES_08 = [
    NO_SEPARATOR,
    b"From: a@example.test\nSubject: lf only case\nbody line one\n",
    b"From: a@example.test\r\nSubject: header only case\r\n",
    b"From: a@example.test\r\nSubject: nul name case\r\nX\x00Y: not a field\r\n",
    b"From: a@example.test\r\nSubject: colon-less case\r\nhttp no colon here\r\nX-After: b\r\n",
    b"From sender@x Mon Nov 30 10:00:00 2026\r\nSubject: mbox line case\r\nbody\r\n",
]


def test_field_08_added_fields_go_before_the_body(server: ServerProcess) -> None:
    for content in CASES_08:
        sent = content if content.endswith(b"\r\n") else content + b"\r\n"  # as smtplib sends
        body = sent[read(sent).body_start:]
        subject = read(content).first("Subject")
        assert subject is not None
        send(server, content, mail_from="a@example.test")
        _row, stored = archived(server, subject)
        section = read(stored)
        names = [f.name for f in section.fields]
        assert "X-Tag" in names and "X-Seen-Tag" in names, (subject, names)
        assert section.separator, subject
        assert stored[section.body_start:] == body, subject
        parsed = email.message_from_bytes(stored, policy=policy.default)
        assert parsed["X-Tag"] == "yes" and parsed["X-Seen-Tag"] == "yes"
        missing = [d for d in parsed.defects
                   if isinstance(d, email.errors.MissingHeaderBodySeparatorDefect)]
        assert not missing, (subject, parsed.defects)
    assert server.stop() == 0
