"""`archive search` / `archive get` command functions: output, JSON shape, exit codes."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest
from archive_samples import DEFAULT, FOREVER, PLAIN, MakeItem, with_attachment

from mailmgr.archive import LocalArchive
from mailmgr.archive.commands import UsageError, get_command, parse_time, search_command
from mailmgr.config.models import Config

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC).timestamp()


def search(config: Config, **options: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    args: dict[str, object] = {
        "archive": None,
        "from_": None,
        "to": None,
        "subject": None,
        "since": None,
        "until": None,
        "as_json": False,
    }
    args.update(options)
    code = search_command(config, out=out, err=err, **args)  # type: ignore[arg-type]
    return code, out.getvalue(), err.getvalue()


INVOICE = with_attachment()  # the MIME boundary is random: build it once


@pytest.fixture
async def filled(
    archive: LocalArchive, forever: LocalArchive, make_item: MakeItem
) -> dict[str, str]:
    ids = {
        "report": await archive.put(make_item(PLAIN, received_at=T0)),
        "invoice": await archive.put(make_item(INVOICE, received_at=T0 + 86400)),
        "kept": await forever.put(make_item(PLAIN, received_at=T0 + 2 * 86400)),
    }
    await archive.close()  # the CLI must also read an index nobody has open
    return ids


async def test_search_text_table(config: Config, filled: dict[str, str]) -> None:
    code, out, err = search(config, archive="default")
    assert (code, err) == (0, "")
    header, first, second = out.splitlines()
    assert header.split() == ["RECEIVED", "ARCHIVED", "ID", "FROM", "TO", "SUBJECT"]
    assert first.startswith("2026-11-22T10:00:00Z  " + filled["invoice"])
    assert "Carol <carol@sender.test>" in first and "Invoice attached" in first
    assert second.startswith("2026-11-21T10:00:00Z  " + filled["report"])
    assert "Jörg Sender" in second and "Quarterly réport is ready" in second


async def test_search_all_archives_json(config: Config, filled: dict[str, str]) -> None:
    code, out, _ = search(config, to="alice", as_json=True)
    assert code == 0
    rows = json.loads(out)
    assert [r["ArchivedMessageId"] for r in rows] == [
        filled["kept"],
        filled["invoice"],
        filled["report"],
    ]
    assert [r["ArchiveId"] for r in rows] == [FOREVER.id, DEFAULT.id, DEFAULT.id]
    report = rows[2]
    assert report["From"] == "Jörg Sender <jorg@sender.test>"
    assert report["Subject"] == "Quarterly réport is ready"
    assert report["MessageId"] == "<q3-report@sender.test>"
    assert report["HasAttachments"] is False and rows[1]["HasAttachments"] is True
    assert report["ReceivedTimestamp"] == "2026-11-21T10:00:00.000Z"
    assert report["IngressPointId"] == "inp-inbound"
    assert report["SenderIpAddress"] == "192.0.2.7"
    assert report["Envelope"]["To"] == ["alice@example.test", "hidden@example.test"]
    assert set(report) >= {"Date", "To", "Cc", "ReceivedHeaders", "XMailer", "XPriority"}


async def test_search_filters_and_time_bounds(config: Config, filled: dict[str, str]) -> None:
    def ids(**options: object) -> list[str]:
        code, out, _ = search(config, as_json=True, **options)
        assert code == 0
        return [r["ArchivedMessageId"] for r in json.loads(out)]

    assert ids(subject="INVOICE") == [filled["invoice"]]
    assert ids(from_="jörg") == [filled["kept"], filled["report"]]
    assert ids(since="2026-11-22") == [filled["kept"], filled["invoice"]]
    assert ids(until="2026-11-21") == [filled["report"]]  # a bare date includes its day
    assert ids(since="2026-11-21T10:00:01Z", until="2026-11-22T10:00:01+00:00") == [
        filled["invoice"]
    ]
    everything = [filled["kept"], filled["invoice"], filled["report"]]
    assert ids(since="36500d") == everything  # relative: 100 years before now
    assert ids(until="36500d") == []
    assert ids(subject="nothing like this") == []
    code, out, _ = search(config, subject="nothing like this")
    assert (code, out) == (0, "no archived messages match\n")


@pytest.mark.parametrize(
    ("option", "value"), [("since", "yesterday"), ("until", "2026-13-45"), ("since", "5y")]
)
async def test_bad_time_is_usage_error(
    config: Config, filled: dict[str, str], option: str, value: str
) -> None:
    code, out, err = search(config, **{option: value})
    assert code == 2 and out == ""
    assert err.startswith(f"mailmgr: --{option}: cannot read {value!r}")
    assert err.count("\n") == 1 and "Traceback" not in err


async def test_unknown_and_remote_archive(config: Config, filled: dict[str, str]) -> None:
    code, _, err = search(config, archive="nope")
    assert code == 2 and "no archive 'nope'" in err
    code, out, _ = search(config, archive="remote")  # S3 storage, nothing archived there yet
    assert code == 0 and out == "no archived messages match\n"
    code, out, _ = search(config, archive=FOREVER.arn, as_json=True)
    assert code == 0 and [r["ArchivedMessageId"] for r in json.loads(out)] == [filled["kept"]]


async def test_get_command(config: Config, filled: dict[str, str]) -> None:
    out, err = io.BytesIO(), io.StringIO()
    assert get_command(config, filled["invoice"], archive=None, out=out, err=err) == 0
    assert out.getvalue() == INVOICE

    out = io.BytesIO()
    assert get_command(config, filled["kept"], archive="a-forever", out=out, err=err) == 0
    assert out.getvalue() == PLAIN

    out = io.BytesIO()
    assert get_command(config, filled["kept"], archive="default", out=out, err=err) == 1
    assert out.getvalue() == b"" and "not found" in err.getvalue()

    err = io.StringIO()
    assert get_command(config, "missing0r1a1", archive="nope", out=out, err=err) == 2


async def test_search_while_archive_is_open(
    config: Config, archive: LocalArchive, make_item: MakeItem
) -> None:
    archived_id = await archive.put(make_item(received_at=T0))
    code, out, _ = search(config, archive="default", as_json=True)
    assert code == 0 and [r["ArchivedMessageId"] for r in json.loads(out)] == [archived_id]


def test_search_before_anything_was_archived(config: Config) -> None:
    assert search(config) == (0, "no archived messages match\n", "")
    err = io.StringIO()
    assert get_command(config, "abcr1a1", archive=None, out=io.BytesIO(), err=err) == 1


def test_parse_time_forms() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert parse_time("2h", "--since", end=False, now=now) == datetime(2026, 11, 21, 10, tzinfo=UTC)
    assert parse_time("2d", "--since", end=False, now=now).day == 19
    assert parse_time("2026-11-21", "--since", end=False) == datetime(2026, 11, 21, tzinfo=UTC)
    assert parse_time("2026-11-21", "--until", end=True) == datetime(2026, 11, 22, tzinfo=UTC)
    assert parse_time("2026-11-21T10:00:00", "--since", end=False).tzinfo is not None
    assert parse_time("2026-11-21T10:00:00+02:00", "--since", end=False) == datetime(
        2026, 11, 21, 8, tzinfo=UTC
    )
    with pytest.raises(UsageError):
        parse_time("soon", "--since", end=False)


async def test_max_results_says_when_rows_were_left_out(
    config: Config, filled: dict[str, str]
) -> None:
    code, out, err = search(config, as_json=True, limit=2)
    assert code == 0
    assert [r["ArchivedMessageId"] for r in json.loads(out)] == [filled["kept"], filled["invoice"]]
    assert "more than 2 archived messages match; showing the newest 2" in err
    code, out, err = search(config, as_json=True, limit=3)
    assert (code, err) == (0, "") and len(json.loads(out)) == 3  # all shown: nothing said


def test_max_results_option_is_bounded_like_aws(tmp_path: object) -> None:
    import subprocess
    import sys

    for bad in ("0", "1001", "x"):
        done = subprocess.run([sys.executable, "-m", "mailmgr", "archive", "search",
                               "--max-results", bad], capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)
        assert done.returncode == 2 and "from 1 to 1000" in done.stderr, done.stderr
