"""Helpers for the hostile config tests: write a config, run the real `mailmgr check-config` /
`mailmgr serve` as subprocesses (with a memory ceiling) and read their problem lines."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support import ROOT, basic_config

# Far above what check-config needs (~100 MB), far below what the alias bomb took (2.4 GB).
MEMORY_CEILING = 1_500_000_000


@dataclass(frozen=True)
class Run:
    status: int
    output: str  # stdout + stderr
    seconds: float

    @property
    def problem_lines(self) -> list[str]:
        """The indented problem lines check-config and serve print."""
        return [line.strip() for line in self.output.splitlines() if line.startswith("  ")]


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CEILING, MEMORY_CEILING))


def mailmgr(command: str, config: Path, timeout: float = 60) -> Run:
    """`python -m mailmgr COMMAND --config CONFIG`, under MEMORY_CEILING."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mailmgr", command, "--config", str(config)],
        capture_output=True, text=True, cwd=ROOT, timeout=timeout, stdin=subprocess.DEVNULL,
        preexec_fn=_limit_memory,
    )
    return Run(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started)


def config_text(tmp_path: Path, **changes: Any) -> str:
    """tests.support.basic_config as YAML; `changes` replace keys of its ingress point."""
    data = basic_config(tmp_path)
    data["IngressPoints"][0].update(changes)
    return yaml.safe_dump(data, sort_keys=False)


def write(tmp_path: Path, text: str, name: str = "mailmgr.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_refused(run: Run, status: int, *expected: str) -> str:
    """One problem line, the exit status, no traceback; the line contains every `expected`."""
    assert "Traceback" not in run.output, run.output[-3000:]
    assert run.status == status, run.output[-3000:]
    lines = run.problem_lines
    assert len(lines) == 1, run.output[-3000:]
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert max(len(line) for line in run.output.splitlines()) < 2000
    return lines[0]
