"""The small secret files a config names (Admin.TokenFile, SharedState.PostgreSQL.DsnFile) are
read through the one bounded file reader: a FIFO or a device is refused at once (reading one
would block start-up or never end), a missing or oversized file is a located problem, and the
content never appears in a problem."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from config_helpers import base, problems_of, write

CASES = [
    ("Admin", "TokenFile", lambda f: {"Admin": {"TokenFile": f}}),
    ("SharedState", "DsnFile", lambda f: {"SharedState": {"PostgreSQL": {"DsnFile": f}}}),
]


def _config(tmp_path: Path, server: dict[str, Any]) -> Path:
    data = base()
    data["Server"] = {**data.get("Server", {}), **server}
    return write(tmp_path, data)


@pytest.mark.parametrize(("section", "key", "server"), CASES)
def test_a_fifo_is_refused_without_blocking(tmp_path: Path, section: str, key: str,
                                            server: Any) -> None:
    fifo = tmp_path / "secret.fifo"
    os.mkfifo(fifo)  # no writer: opening it for reading would block for ever
    problems = problems_of(_config(tmp_path, server(str(fifo))))
    assert [p for p in problems if p.path.endswith(f".{key}") and "not a regular file"
            in p.message], problems


@pytest.mark.parametrize(("section", "key", "server"), CASES)
def test_missing_and_oversized_files_are_located(tmp_path: Path, section: str, key: str,
                                                 server: Any) -> None:
    problems = problems_of(_config(tmp_path, server(str(tmp_path / "absent"))))
    assert [p for p in problems if p.path.endswith(f".{key}")
            and "No such file" in p.message], problems
    big = tmp_path / "big"
    big.write_text("postgresql://u:s3cretpass@h/db " + "x" * 10_000)
    problems = problems_of(_config(tmp_path, server(str(big))))
    located = [p for p in problems if p.path.endswith(f".{key}")]
    assert located and all("s3cretpass" not in p.message for p in problems), problems
