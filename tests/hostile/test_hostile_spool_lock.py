"""Found in review: a second `mailmgr serve` on the same DataDirectory recovered (and moved) the
spool segments the running server was writing, and accepted mail was lost. The spool is now
locked for the process's lifetime: the second instance refuses in one line, nothing is lost."""

from __future__ import annotations

import smtplib
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support import ROOT, basic_config, write_config


def test_a_second_server_on_the_same_data_directory_refuses(
    tmp_path: Path, server_factory: Any
) -> None:
    config = basic_config(tmp_path)
    first = server_factory(config).start()
    second = write_config(tmp_path / "second.yaml", config)
    done = subprocess.run(
        [sys.executable, "-m", "mailmgr", "serve", "--config", str(second)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert done.returncode != 0
    assert "in use by another mailmgr process" in done.stderr
    assert "Traceback" not in done.stderr
    with smtplib.SMTP("127.0.0.1", first.port, timeout=10) as client:
        client.sendmail("a@example.test", ["b@example.test"],
                        b"From: a@example.test\r\nSubject: kept\r\n\r\nbody\r\n")
    first.wait_for("message.processed", 20)
    assert not any(e.get("event") == "spool.load_failed" for e in first.events)
