"""`mailmgr explain` with add-ons: `--analysis ANALYZER:FIELD=VALUE` overrides (by Name or ARN,
no engine runs), the `analysis` key of --json, and a live run against a real clamd."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailmgr.config import load
from mailmgr.explain import ExplainOptions, configured_analysis, explain
from tests.analysis.engines import EICAR, ClamdInstance, clamd_fixture  # noqa: F401
from tests.support import ROOT

EXAMPLE = ROOT / "config/examples/addons.yaml"
SPAMHAUS_ARN = "arn:aws:ses:us-east-1:123456789012:addon-instance/ai-spamhaus"
MESSAGE = b"From: alice@sender.test\r\nTo: a@example.test\r\nSubject: hi\r\n\r\nhello\r\n"
ALL_CLEAN = ("spamhaus:isListed=false", "vade:verdict=PASS", "vade:isPassed=true",
             "trendmicro:isPassed=true")


def _explain(tmp_path: Path, *analysis: str) -> subprocess.CompletedProcess[str]:
    eml = tmp_path / "m.eml"
    eml.write_bytes(MESSAGE)
    args = [sys.executable, "-m", "mailmgr", "explain", "--config", str(EXAMPLE), "--eml",
            str(eml), "--rcpt", "a@example.test", "--spf", "PASS", "--json"]
    for item in analysis:
        args += ["--analysis", item]
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=60,
                          stdin=subprocess.DEVNULL)


def _json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_virus_override_drops_and_spam_override_tags(tmp_path: Path) -> None:
    result = _json(_explain(tmp_path, "spamhaus:isListed=false", "trendmicro:isPassed=false",
                            "vade:verdict=FAIL"))
    recipient = result["recipients"]["a@example.test"]
    assert recipient["traffic_policy"] == {"decision": "ALLOW", "statement": None}
    assert recipient["rules"][0] == {"index": 1, "name": "drop-virus", "matched": True}
    assert recipient["dropped"] is True and result["final_recipients"] == []
    assert result["analysis"] == {"spamhaus": {"isListed": False},
                                  "trendmicro": {"isPassed": False},
                                  "vade": {"verdict": "FAIL"}}
    assert result["verdicts"]["virus"] == "FAIL" and result["verdicts"]["spam"] == "FAIL"


def test_clean_overrides_archive_untagged(tmp_path: Path) -> None:
    result = _json(_explain(tmp_path, *ALL_CLEAN))
    actions = [a["action"] for a in result["actions"]]
    assert actions == ["Archive"]  # not dropped, not tagged
    assert result["verdicts"]["spam"] == "PASS" and result["verdicts"]["virus"] == "PASS"


def test_listed_by_arn_is_denied_at_rcpt(tmp_path: Path) -> None:
    result = _json(_explain(tmp_path, f"{SPAMHAUS_ARN}:addon.isListed=true",
                            *ALL_CLEAN[1:]))
    recipient = result["recipients"]["a@example.test"]
    assert recipient["traffic_policy"] == {"decision": "DENY", "statement": 1}
    assert result["actions"] == [] and result["final_recipients"] == []
    assert result["analysis"]["spamhaus"] == {"isListed": True}


@pytest.mark.parametrize(("override", "message"), [
    ("nobody:isListed=true", "unknown analyzer 'nobody' (configured: spamhaus, vade, trendmicro)"),
    ("spamhaus:isPassed=true", "spamhaus (Dnsbl) has no result field 'isPassed'"),
    ("spamhaus:isListed=maybe", "spamhaus:isListed takes true or false, got 'maybe'"),
    ("vade:verdict=SPAM", "vade:verdict takes PASS|FAIL|GRAY|PROCESSING_FAILED, got 'SPAM'"),
    ("spamhaus-isListed=true", "expected ANALYZER:FIELD=VALUE"),
    ("spamhaus:isListed", "expected ANALYZER:FIELD=VALUE"),
])
def test_bad_overrides_exit_2_with_the_reason(tmp_path: Path, override: str,
                                              message: str) -> None:
    done = _explain(tmp_path, override)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


async def test_live_explain_runs_the_engines(tmp_path: Path, clamd: ClamdInstance) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["Server"]["DataDirectory"] = str(tmp_path / "var")
    data["Analyzers"] = [a for a in data["Analyzers"] if a["Name"] == "trendmicro"]
    data["Analyzers"][0]["Clamav"]["Address"] = clamd.address
    data["TrafficPolicies"][0]["PolicyStatements"] = []
    data["RuleSets"][0]["Rules"] = [r for r in data["RuleSets"][0]["Rules"]
                                    if r["Name"] in ("drop-virus", "archive-all")]
    data["IngressPoints"][0].pop("TlsCertificate")
    path = tmp_path / "addons.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load(path)
    content = MESSAGE + b"attached: " + EICAR + b"\r\n"
    result = await explain(config, content, ExplainOptions(rcpts=("a@example.test",)),
                           live_analysis=configured_analysis(config))
    assert result["analysis"]["trendmicro"]["isPassed"] is False
    assert result["analysis"]["trendmicro"]["category"].endswith(".UNOFFICIAL")
    assert result["recipients"]["a@example.test"]["dropped"] is True
    assert result["verdicts"]["virus"] == "FAIL" and "spam" not in result["verdicts"]


def _unreachable_engines(tmp_path: Path, nameserver: str) -> Path:
    """The example config with rspamd on a closed port, clamd on a missing socket and the DNS
    lists on `nameserver`."""
    from tests.analysis.engines import free_port

    data = yaml.safe_load(EXAMPLE.read_text())
    data["Server"]["DataDirectory"] = str(tmp_path / "var")
    data["Server"]["Dns"] = {"Nameservers": [nameserver]}
    data["IngressPoints"][0].pop("TlsCertificate")
    for analyzer in data["Analyzers"]:
        if "Rspamd" in analyzer:
            analyzer["Rspamd"]["Url"] = f"http://127.0.0.1:{free_port()}"
        if "Clamav" in analyzer:
            analyzer["Clamav"]["Address"] = f"unix:{tmp_path / 'no-clamd.sock'}"
        if "Dnsbl" in analyzer:
            analyzer["Dnsbl"]["Timeout"] = 3
    path = tmp_path / "unreachable.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _explain_with(config: Path, tmp_path: Path, *analysis: str
                  ) -> subprocess.CompletedProcess[str]:
    eml = tmp_path / "m.eml"
    eml.write_bytes(MESSAGE)
    args = [sys.executable, "-m", "mailmgr", "explain", "--config", str(config), "--eml",
            str(eml), "--rcpt", "a@example.test", "--spf", "PASS"]
    for item in analysis:
        args += ["--analysis", item]
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_a_bad_override_is_refused_before_any_engine_runs(
    tmp_path: Path, dns_server: Any, zone: Any
) -> None:
    """A typo in --analysis is reported at once, not after the live engines' timeouts."""
    import time

    zone.timeout.add("sender.test.dbl.spamhaus.org")
    config = _unreachable_engines(tmp_path, dns_server.address)
    started = time.monotonic()
    done = _explain_with(config, tmp_path, "nope:isPassed=true")
    assert done.returncode == 2, done.stderr
    assert "unknown analyzer 'nope'" in done.stderr
    assert "analysis.failed" not in done.stderr  # nothing ran
    assert time.monotonic() - started < 2.5


def test_a_failed_engine_says_which_and_why(tmp_path: Path, dns_server: Any) -> None:
    """An engine explain could not reach is named with its reason on stderr, not as a bare
    'analysis.failed' line."""
    config = _unreachable_engines(tmp_path, dns_server.address)
    done = _explain_with(config, tmp_path, "spamhaus:isListed=false")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "analysis.failed" in line]
    assert len(lines) == 2, done.stderr
    assert any("analyzer=vade" in line and "reason=connect" in line for line in lines)
    assert any("analyzer=trendmicro" in line and "reason=connect" in line for line in lines)


def test_a_cert_that_is_not_pem_exits_2_without_a_traceback(tmp_path: Path) -> None:
    eml = tmp_path / "m.eml"
    eml.write_bytes(MESSAGE)
    done = subprocess.run(
        [sys.executable, "-m", "mailmgr", "explain", "--config", str(EXAMPLE), "--eml",
         str(eml), "--cert", str(eml), *(a for o in ALL_CLEAN for a in ("--analysis", o))],
        capture_output=True, text=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "--cert" in done.stderr
