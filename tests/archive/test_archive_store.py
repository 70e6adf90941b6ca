"""LocalArchive.put/get/search against real files and a real SQLite index."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from archive_samples import (
    DEFAULT,
    PLAIN,
    RULE_SET_ARN,
    MakeItem,
    multipart_alternative,
    with_attachment,
)

from mailmgr.archive import ArchiveClosedError, LocalArchive, archived_message_id
from mailmgr.config.models import Config


def eml_files(archive: LocalArchive) -> list[Path]:
    return sorted((archive.directory / "messages").rglob("*.eml"))


def row_count(archive: LocalArchive) -> int:
    with sqlite3.connect(archive.index_path) as conn:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])


async def test_put_stores_exact_bytes_and_every_field(
    archive: LocalArchive, make_item: MakeItem
) -> None:
    item = make_item(PLAIN)
    archived_id = await archive.put(item)

    assert archived_id == f"{item.message.id}r1a1"
    assert archived_id.isalnum() and archived_id == archived_id.lower()
    [path] = eml_files(archive)
    assert path.read_bytes() == item.content
    day = datetime.fromtimestamp(item.message.received_at, UTC)
    assert path.relative_to(archive.directory).as_posix() == (
        f"messages/{day:%Y/%m/%d}/{archived_id}.eml"
    )
    assert path.stat().st_mode & 0o077 == 0

    row = await archive.row(archived_id)
    assert row is not None
    assert row.message_id == item.message.id
    assert (row.rule_index, row.action_index) == (1, 1)
    assert row.received_timestamp == item.message.received_at
    assert row.from_ == "Jörg Sender <jorg@sender.test>"
    assert row.to == "Alice <alice@example.test>, Élise <elise@example.test>"
    assert row.cc == "Bob <bob@example.test>"
    assert row.subject == "Quarterly réport is ready"
    assert row.date == "Sat, 21 Nov 2026 09:59:58 +0000"
    assert row.message_id_header == "<q3-report@sender.test>"
    assert row.in_reply_to == "<q2-report@sender.test>"
    assert row.x_mailer == "TestMailer 1.0"
    assert row.x_original_mailer == "OrigMailer 2"
    assert row.x_priority == "1 (Highest)"
    assert row.has_attachments is False
    assert row.received_headers == (
        "from client.sender.test (client [192.0.2.7])\tby mx.example.test with ESMTP;"
        " Sat, 21 Nov 2026 10:00:00 +0000",
        "from laptop by client.sender.test; Sat, 21 Nov 2026 09:59:58 +0000",
    )
    assert row.ingress_point_id == "inp-inbound"
    assert row.sender_ip_address == "192.0.2.7"
    assert row.sender_hostname == "client.sender.test"
    assert row.envelope_helo == "client.sender.test"
    assert row.envelope_from == "bounce@sender.test"
    assert row.envelope_to == ("alice@example.test", "hidden@example.test")
    assert row.rule_set_id == "rs-main"
    assert row.source_arn == RULE_SET_ARN
    assert row.size == len(PLAIN)

    aws = row.to_aws_json()
    assert aws["ArchivedMessageId"] == archived_id
    assert aws["MessageId"] == "<q3-report@sender.test>"
    assert aws["HasAttachments"] is False
    assert aws["Envelope"] == {
        "Helo": "client.sender.test",
        "From": "bounce@sender.test",
        "To": ["alice@example.test", "hidden@example.test"],
    }
    assert aws["ReceivedTimestamp"].endswith("Z")


async def test_has_attachments_follows_mime_structure(
    archive: LocalArchive, make_item: MakeItem
) -> None:
    with_file = await archive.put(make_item(with_attachment()))
    alternative = await archive.put(make_item(multipart_alternative()))
    headers_only = await archive.put(make_item(b"Subject: no body at all\r\n"))

    rows = {i: await archive.row(i) for i in (with_file, alternative, headers_only)}
    flags = {i: r.has_attachments for i, r in rows.items() if r is not None}
    assert flags == {with_file: True, alternative: False, headers_only: False}
    bare = rows[headers_only]
    assert bare is not None and bare.subject == "no body at all" and bare.from_ is None


async def test_put_twice_is_idempotent(archive: LocalArchive, make_item: MakeItem) -> None:
    item = make_item()
    first = await archive.put(item)
    second = await archive.put(item)
    assert first == second
    assert row_count(archive) == 1
    assert len(eml_files(archive)) == 1

    # Another action of the same rule is another archived message.
    other = await archive.put(make_item(message_id=item.message.id, action_index=2))
    assert other == f"{item.message.id}r1a2" and other != first
    assert row_count(archive) == 2


async def test_rerun_after_crash_between_file_and_row(
    archive: LocalArchive, make_item: MakeItem
) -> None:
    item = make_item()
    archived_id = await archive.put(item)
    # The crash: the file is durable, the row never committed.
    with sqlite3.connect(archive.index_path) as conn:
        conn.execute("DELETE FROM messages")
    assert await archive.get(archived_id) is None

    assert await archive.put(item) == archived_id
    assert row_count(archive) == 1
    assert [p.name for p in eml_files(archive)] == [f"{archived_id}.eml"]
    assert not list(archive.directory.rglob("*.tmp"))
    assert await archive.get(archived_id) == item.content


async def test_concurrent_puts_do_not_duplicate(archive: LocalArchive, make_item: MakeItem) -> None:
    item = make_item()
    ids = await asyncio.gather(*(archive.put(item) for _ in range(5)))
    assert len(set(ids)) == 1
    assert row_count(archive) == 1
    assert len(eml_files(archive)) == 1


async def test_get_returns_bytes_or_none(archive: LocalArchive, make_item: MakeItem) -> None:
    item = make_item(with_attachment())
    archived_id = await archive.put(item)
    assert await archive.get(archived_id) == item.content
    assert await archive.get("doesnotexist0r1a1") is None


async def test_search_filters(archive: LocalArchive, make_item: MakeItem) -> None:
    t0 = 1_795_000_000.0
    report = await archive.put(make_item(PLAIN, received_at=t0))
    invoice = await archive.put(make_item(with_attachment(), received_at=t0 + 3600))
    plain = await archive.put(
        make_item(multipart_alternative(), received_at=t0 + 7200, rcpt_to=("zed@other.test",))
    )

    async def ids(**kwargs: object) -> list[str]:
        return [r.archived_message_id for r in await archive.search(**kwargs)]  # type: ignore[arg-type]

    assert await ids() == [plain, invoice, report]  # newest first
    assert await ids(limit=2) == [plain, invoice]
    assert await ids(from_="JÖRG") == [report]  # decoded, case-insensitive
    assert await ids(from_="bounce@SENDER") == [plain, invoice, report]  # envelope sender
    assert await ids(to="élise") == [report]
    assert await ids(to="bob@example") == [report]  # Cc
    assert await ids(to="hidden@") == [invoice, report]  # envelope recipient (Bcc)
    assert await ids(to="zed@") == [plain]
    assert await ids(subject="RÉPORT is") == [report]
    assert await ids(subject="%") == []  # no LIKE wildcards
    assert await ids(subject="invoice", to="dave") == [invoice]
    assert await ids(subject="invoice", to="zed") == []
    since = datetime.fromtimestamp(t0 + 3600, UTC)
    until = datetime.fromtimestamp(t0 + 7200, UTC)
    assert await ids(since=since) == [plain, invoice]
    assert await ids(until=until) == [invoice, report]
    assert await ids(since=since, until=until) == [invoice]
    naive = datetime.fromtimestamp(t0 + 3600, UTC).replace(tzinfo=None)
    assert await ids(since=naive) == [plain, invoice]


async def test_archived_id_is_stable_and_alphanumeric() -> None:
    assert archived_message_id("abc123def456", 3, 2) == "abc123def456r3a2"
    odd = archived_message_id("Not/An-ID", 1, 1)
    assert odd == archived_message_id("Not/An-ID", 1, 1)
    assert odd.isalnum() and odd == odd.lower() and odd.endswith("r1a1")


async def test_lazy_open_and_closed_archive(tmp_path: Path, make_item: MakeItem) -> None:
    store = LocalArchive(DEFAULT, tmp_path / "a")
    archived_id = await store.put(make_item())  # opens on first use
    assert (tmp_path / "a" / "index.sqlite3").exists()
    await store.close()
    try:
        await store.put(make_item())
    except ArchiveClosedError:
        pass
    else:
        raise AssertionError("put after close must fail")
    reopened = LocalArchive(DEFAULT, tmp_path / "a")
    assert await reopened.get(archived_id) is not None
    await reopened.close()


async def test_reconfigure_follows_new_rule_set_arns_and_retention(
    config: Config, archive: LocalArchive, make_item: MakeItem
) -> None:
    new_arn = "arn:aws:ses:eu-west-1:123456789012:mailmanager-rule-set/rs-main"
    changed = replace(
        config,
        rule_sets=(replace(config.rule_sets[0], arn=new_arn),),
        archives=tuple(replace(a, retention="PERMANENT") if a.id == archive.archive.id else a
                       for a in config.archives),
    )
    archive.reconfigure(changed)
    archived_id = await archive.put(make_item())
    row = await archive.row(archived_id)
    assert row is not None and row.source_arn == new_arn
    assert archive.archive.retention_days is None
