"""Review of issue 13: a DSN's secrets never reach the terminal; a failed connection says why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CONFIG = """\
Server:
  Hostname: mx.test
  DataDirectory: {data}
  SharedState: {{PostgreSQL: {{Dsn: '{dsn}'}}}}
IngressPoints:
  - IngressPointName: inbound
    Type: OPEN
    RuleSetId: rules
    TrafficPolicyId: tpol
    Listen: ["127.0.0.1:0"]
TrafficPolicies:
  - TrafficPolicyName: tpol
    DefaultAction: ALLOW
    PolicyStatements: []
RuleSets:
  - RuleSetName: rules
    Rules: []
"""


def _run(tmp_path: Path, dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "mailmgr.yaml"
    config.write_text(CONFIG.format(data=tmp_path / "data", dsn=dsn))
    return subprocess.run([sys.executable, "-m", "mailmgr", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_unparseable_dsn_is_a_config_problem_that_never_quotes_the_password(
        tmp_path: Path) -> None:
    # libpq's parse error quotes the token: 'invalid percent-encoded token: "s3cret%ZZ"'.
    for dsn in ("postgresql://u:s3cret%ZZ@127.0.0.1:1/x", "host=127.0.0.1 password= s3cret x"):
        for args in (["check-config"], ["archive", "search"], ["config", "show"]):
            done = _run(tmp_path, dsn, *args)
            output = done.stdout + done.stderr
            assert "s3cret" not in output, (args, output)
            assert "$.Server.SharedState.PostgreSQL.Dsn" in output, (args, output)
            assert done.returncode != 0


def test_unreachable_database_says_why_in_one_line(tmp_path: Path) -> None:
    dsn = "postgresql://u:s3cretPW@127.0.0.1:1/x"
    for args in (["archive", "search"], ["config", "show"], ["config", "export"]):
        done = _run(tmp_path, dsn, *args)
        assert done.returncode == 1
        assert "s3cretPW" not in done.stdout + done.stderr
        # the driver's raw warnings are not printed; the reason is in the one error line
        assert "error connecting in" not in done.stderr, done.stderr
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, done.stderr
        assert "Connection refused" in lines[0], lines[0]
