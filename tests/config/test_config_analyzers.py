"""The `Analyzers` section and `Server.Analysis`: models built, every problem at its JSON path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from config_helpers import Problems, base, find, write

from mailmgr import config
from mailmgr.config.models import (
    AnalysisSettings,
    Analyzer,
    AnalyzerEngine,
    ClamavSettings,
    DnsblSettings,
    DnsblZone,
    DnsblZoneType,
    ListenAddress,
    RspamdSettings,
)
from mailmgr.config.summary import summary
from mailmgr.reload import config_hash
from tests.support import ROOT

ARN = "arn:aws:ses:us-east-1:123456789012:addon-instance/ai-spamhaus"
SPAMHAUS: dict[str, Any] = {
    "Name": "spamhaus",
    "AnalyzerArn": ARN,
    "Dnsbl": {"Zones": [
        {"Zone": "dbl.example.test", "Type": "DOMAIN", "Codes": {"127.0.1.2": "spam-domain"}},
        {"Zone": "zen.example.test.", "Type": "IP"},
    ], "IncludePrivate": True, "MaxBodyDomains": 5, "Timeout": 2.5},
}
VADE: dict[str, Any] = {"Name": "vade", "Rspamd": {"Url": "http://127.0.0.1:11333"}}
CLAMAV: dict[str, Any] = {"Name": "trendmicro",
                          "Clamav": {"Address": "unix:/run/clamav/clamd.ctl", "Timeout": 10}}
AT = "$.Analyzers[0]"


def with_analyzers(*entries: Any, **server: Any) -> dict[str, Any]:
    data = base()
    data["Analyzers"] = list(entries)
    data["Server"].update(server)
    return data


def test_full_section_loads_into_models(tmp_path: Path) -> None:
    tcp = {"Name": "clam-tcp", "Clamav": {"Address": "[::1]:3310", "MaxStreamBytes": 1024,
                                          "MaxConcurrency": 2, "Timeout": 1}}
    rspamd = {"Name": "r.2", "Rspamd": {"Url": "https://rspamd.example.test:8443/base/",
                                         "Timeout": 0.5, "MaxConcurrency": 1024}}
    cfg = config.load(write(tmp_path, with_analyzers(SPAMHAUS, VADE, CLAMAV, tcp, rspamd)))
    assert cfg.analyzers == (
        Analyzer("spamhaus", ARN, AnalyzerEngine.DNSBL, DnsblSettings(
            zones=(DnsblZone("dbl.example.test", DnsblZoneType.DOMAIN,
                             (("127.0.1.2", "spam-domain"),)),
                   DnsblZone("zen.example.test", DnsblZoneType.IP)),
            include_private=True, max_body_domains=5, timeout=2.5)),
        Analyzer("vade", "", AnalyzerEngine.RSPAMD, RspamdSettings("http://127.0.0.1:11333")),
        Analyzer("trendmicro", "", AnalyzerEngine.CLAMAV,
                 ClamavSettings(unix_path="/run/clamav/clamd.ctl", timeout=10.0)),
        Analyzer("clam-tcp", "", AnalyzerEngine.CLAMAV, ClamavSettings(
            tcp=ListenAddress("::1", 3310), timeout=1.0, max_stream_bytes=1024,
            max_concurrency=2)),
        Analyzer("r.2", "", AnalyzerEngine.RSPAMD, RspamdSettings(
            "https://rspamd.example.test:8443/base", timeout=0.5, max_concurrency=1024)),
    )
    assert cfg.analyzer("vade").engine is AnalyzerEngine.RSPAMD
    # Engine defaults (interface.md; the README lists them).
    dnsbl = config.load(write(tmp_path, with_analyzers(
        {"Name": "d", "Dnsbl": {"Zones": [{"Zone": "z.test", "Type": "IP"}]}}))).analyzers[0]
    assert dnsbl.settings == DnsblSettings(zones=(DnsblZone("z.test", DnsblZoneType.IP),),
                                           include_private=False, max_body_domains=20,
                                           timeout=5.0)
    assert RspamdSettings("u") == RspamdSettings("u", timeout=5.0, max_concurrency=16)
    assert ClamavSettings() == ClamavSettings(timeout=10.0, max_stream_bytes=26214400,
                                              max_concurrency=8)


def test_relative_unix_socket_is_relative_to_the_config_folder(tmp_path: Path) -> None:
    entry = {"Name": "c", "Clamav": {"Address": "unix:run/clamd.sock"}}
    cfg = config.load(write(tmp_path, with_analyzers(entry)))
    settings = cfg.analyzers[0].settings
    assert isinstance(settings, ClamavSettings)
    assert settings.unix_path == str(tmp_path / "run" / "clamd.sock") and settings.tcp is None


def test_no_analyzers_and_server_analysis_defaults(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, base()))
    assert cfg.analyzers == ()
    assert cfg.server.analysis == AnalysisSettings(add_headers=False, timeout=15.0)


def test_server_analysis_values(tmp_path: Path) -> None:
    data = with_analyzers(Analysis={"AddHeaders": True, "Timeout": 3.5})
    assert config.load(write(tmp_path, data)).server.analysis == AnalysisSettings(True, 3.5)


@pytest.mark.parametrize(("value", "path", "reason"), [
    ({"AddHeaders": "yes"}, ".AddHeaders", "expected true or false"),
    ({"Timeout": 0}, ".Timeout", "greater than 0"),
    ({"Timeout": -1}, ".Timeout", "minimum"),
    ({"Timeout": 301}, ".Timeout", "maximum"),
    ({"Timeout": "15"}, ".Timeout", "expected a number"),
    ({"Headers": True}, "", "unknown key 'Headers'"),
    ([], "", "expected a mapping"),
])
def test_bad_server_analysis(problems: Problems, value: Any, path: str, reason: str) -> None:
    find(problems(with_analyzers(Analysis=value)), f"$.Server.Analysis{path}", reason)


def _dnsbl(**settings: Any) -> dict[str, Any]:
    return {"Name": "d", "Dnsbl": {"Zones": [{"Zone": "z.test", "Type": "IP"}], **settings}}


def _zone(**zone: Any) -> dict[str, Any]:
    return {"Name": "d", "Dnsbl": {"Zones": [{"Zone": "z.test", "Type": "IP", **zone}]}}


ZONE = f"{AT}.Dnsbl.Zones[0]"


@pytest.mark.parametrize(("entry", "path", "reason"), [
    # the entry
    ({"Dnsbl": _dnsbl()["Dnsbl"]}, AT, "missing required key 'Name'"),
    ({**_dnsbl(), "Name": "has space"}, f"{AT}.Name", "does not match pattern"),
    ({**_dnsbl(), "Name": "x" * 65}, f"{AT}.Name", "does not match pattern"),
    ({**_dnsbl(), "Name": "arn:aws:x"}, f"{AT}.Name", "does not match pattern"),
    ({**_dnsbl(), "Name": 7}, f"{AT}.Name", "does not match pattern"),
    ({**_dnsbl(), "AnalyzerArn": "ai-1"}, f"{AT}.AnalyzerArn", "is not an add-on instance ARN"),
    ({**_dnsbl(), "AnalyzerArn": "arn:aws:ses:us-east-1:123456789012:addon-subscription/as-1"},
     f"{AT}.AnalyzerArn", "is not an add-on instance ARN"),
    ({**_dnsbl(), "AnalyzerArn": "arn:aws:s3:us-east-1:123456789012:addon-instance/ai-1"},
     f"{AT}.AnalyzerArn", "is not an add-on instance ARN"),
    ({"Name": "n"}, AT, "exactly one of Dnsbl, Rspamd, Clamav must be set"),
    ({**_dnsbl(), **VADE}, AT, "exactly one of Dnsbl, Rspamd, Clamav must be set (got Dnsbl, "
                               "Rspamd)"),
    ({**_dnsbl(), "Engine": "x"}, AT, "unknown key 'Engine' (allowed: Name, AnalyzerArn"),
    ("spamhaus", AT, "expected a mapping, got string"),
    # Dnsbl
    ({"Name": "d", "Dnsbl": {}}, f"{AT}.Dnsbl", "missing required key 'Zones'"),
    ({"Name": "d", "Dnsbl": {"Zones": []}}, f"{AT}.Dnsbl.Zones", "non-empty list"),
    ({"Name": "d", "Dnsbl": []}, f"{AT}.Dnsbl", "expected a mapping"),
    (_dnsbl(Other=1), f"{AT}.Dnsbl", "unknown key 'Other'"),
    (_dnsbl(IncludePrivate="no"), f"{AT}.Dnsbl.IncludePrivate", "expected true or false"),
    (_dnsbl(MaxBodyDomains=-1), f"{AT}.Dnsbl.MaxBodyDomains", "minimum"),
    (_dnsbl(MaxBodyDomains=1.5), f"{AT}.Dnsbl.MaxBodyDomains", "expected an integer"),
    (_dnsbl(Timeout=0), f"{AT}.Dnsbl.Timeout", "greater than 0"),
    (_dnsbl(Timeout=301), f"{AT}.Dnsbl.Timeout", "maximum 300"),
    (_zone(Zone="bad..zone"), f"{ZONE}.Zone", "is not a valid DNS name"),
    (_zone(Zone="-a.test"), f"{ZONE}.Zone", "is not a valid DNS name"),
    (_zone(Zone="a b.test"), f"{ZONE}.Zone", "is not a valid DNS name"),
    (_zone(Zone="x" * 64 + ".test"), f"{ZONE}.Zone", "is not a valid DNS name"),
    (_zone(Zone=5), f"{ZONE}.Zone", "expected a non-empty string"),
    (_zone(Type="ASN"), f"{ZONE}.Type", "Type must be one of IP, DOMAIN, got 'ASN'"),
    ({"Name": "d", "Dnsbl": {"Zones": [{"Zone": "z.test"}]}}, ZONE,
     "missing required key 'Type'"),
    ({"Name": "d", "Dnsbl": {"Zones": [{"Type": "IP"}]}}, ZONE, "missing required key 'Zone'"),
    (_zone(Extra=1), ZONE, "unknown key 'Extra' (allowed: Zone, Type, Codes)"),
    ({"Name": "d", "Dnsbl": {"Zones": [{"Zone": "z.test", "Type": "IP"}] * 2}},
     f"{AT}.Dnsbl.Zones[1]", "duplicate zone 'z.test' of Type IP"),
    (_zone(Codes=["127.0.0.2"]), f"{ZONE}.Codes", "expected a mapping of answer address"),
    (_zone(Codes={"10.0.0.2": "x"}), f"{ZONE}.Codes['10.0.0.2']", "is not a listing code"),
    (_zone(Codes={"127.255.255.254": "x"}), f"{ZONE}.Codes['127.255.255.254']",
     "127.255.255.0/24 means an error"),
    (_zone(Codes={"127.0.0.256": "x"}), f"{ZONE}.Codes['127.0.0.256']",
     "is not an IPv4 answer address"),
    (_zone(Codes={"::1": "x"}), f"{ZONE}.Codes['::1']", "is not an IPv4 answer address"),
    (_zone(Codes={"127.0.0.2": "a,b"}), f"{ZONE}.Codes['127.0.0.2']", "without commas"),
    (_zone(Codes={"127.0.0.2": "a b"}), f"{ZONE}.Codes['127.0.0.2']", "or whitespace"),
    (_zone(Codes={"127.0.0.2": ""}), f"{ZONE}.Codes['127.0.0.2']", "1-100 characters"),
    (_zone(Codes={"127.0.0.2": 2}), f"{ZONE}.Codes['127.0.0.2']", "list name 2"),
    # Rspamd
    ({"Name": "r", "Rspamd": {}}, f"{AT}.Rspamd", "missing required key 'Url'"),
    ({"Name": "r", "Rspamd": {"Url": "ftp://h"}}, f"{AT}.Rspamd.Url", "not an http:// or"),
    ({"Name": "r", "Rspamd": {"Url": "127.0.0.1:11333"}}, f"{AT}.Rspamd.Url",
     "not an http:// or"),
    ({"Name": "r", "Rspamd": {"Url": "http://"}}, f"{AT}.Rspamd.Url", "has no host"),
    ({"Name": "r", "Rspamd": {"Url": "http://h:99999"}}, f"{AT}.Rspamd.Url", "invalid port"),
    ({"Name": "r", "Rspamd": {"Url": "http://h:0"}}, f"{AT}.Rspamd.Url", "invalid port"),
    ({"Name": "r", "Rspamd": {"Url": "http://h/?a=1"}}, f"{AT}.Rspamd.Url", "query"),
    ({"Name": "r", "Rspamd": {"Url": "http://h/#f"}}, f"{AT}.Rspamd.Url", "fragment"),
    ({"Name": "r", "Rspamd": {"Url": "http://u:p@h/"}}, f"{AT}.Rspamd.Url", "credentials"),
    # a malformed bracketed host is the Url's problem, not an internal error of the loader
    ({"Name": "r", "Rspamd": {"Url": "http://[::1"}}, f"{AT}.Rspamd.Url", "is not a valid URL"),
    ({"Name": "r", "Rspamd": {"Url": "http://[zz]:80"}}, f"{AT}.Rspamd.Url",
     "is not a valid URL"),
    ({"Name": "r", "Rspamd": {"Url": "http://h\x00x"}}, f"{AT}.Rspamd.Url",
     "control character"),
    ({"Name": "r", "Rspamd": {"Url": "http://h", "Timeout": -1}}, f"{AT}.Rspamd.Timeout",
     "minimum"),
    ({"Name": "r", "Rspamd": {"Url": "http://h", "MaxConcurrency": 0}},
     f"{AT}.Rspamd.MaxConcurrency", "minimum 1"),
    ({"Name": "r", "Rspamd": {"Url": "http://h", "MaxConcurrency": 1025}},
     f"{AT}.Rspamd.MaxConcurrency", "maximum 1024"),
    ({"Name": "r", "Rspamd": {"Url": "http://h", "Password": "x"}}, f"{AT}.Rspamd",
     "unknown key 'Password'"),
    # Clamav
    ({"Name": "c", "Clamav": {}}, f"{AT}.Clamav", "missing required key 'Address'"),
    ({"Name": "c", "Clamav": {"Address": "unix:"}}, f"{AT}.Clamav.Address",
     "needs a socket path"),
    ({"Name": "c", "Clamav": {"Address": "unix:/" + "x" * 120}}, f"{AT}.Clamav.Address",
     "AF_UNIX limit"),
    ({"Name": "c", "Clamav": {"Address": "localhost"}}, f"{AT}.Clamav.Address",
     "is not host:port"),
    ({"Name": "c", "Clamav": {"Address": "::1:3310"}}, f"{AT}.Clamav.Address",
     "write IPv6 addresses as [address]:port"),
    ({"Name": "c", "Clamav": {"Address": "[zz]:3310"}}, f"{AT}.Clamav.Address",
     "only an IPv6 address goes in [brackets]"),
    ({"Name": "c", "Clamav": {"Address": "127.0.0.1:0"}}, f"{AT}.Clamav.Address",
     "invalid port"),
    ({"Name": "c", "Clamav": {"Address": "127.0.0.1:3310", "MaxStreamBytes": 0}},
     f"{AT}.Clamav.MaxStreamBytes", "minimum 1"),
    ({"Name": "c", "Clamav": {"Address": "127.0.0.1:3310", "MaxStreamBytes": 4 * 1024**3}},
     f"{AT}.Clamav.MaxStreamBytes", "maximum"),
    ({"Name": "c", "Clamav": {"Address": "127.0.0.1:3310", "Timeout": 0}},
     f"{AT}.Clamav.Timeout", "greater than 0"),
    ({"Name": "c", "Clamav": {"Address": "127.0.0.1:3310", "MaxConcurrency": 2000}},
     f"{AT}.Clamav.MaxConcurrency", "maximum 1024"),
])
def test_bad_analyzer(problems: Problems, entry: Any, path: str, reason: str) -> None:
    find(problems(with_analyzers(entry)), path, reason)


def test_analyzers_not_a_list(problems: Problems) -> None:
    data = base()
    data["Analyzers"] = {"Name": "x"}
    find(problems(data), "$.Analyzers", "expected a list, got mapping")


def test_duplicates_and_every_problem_at_once(problems: Problems) -> None:
    other_account = ARN.replace("123456789012", "210987654321")
    found = problems(with_analyzers(
        SPAMHAUS,
        {**VADE, "Name": "spamhaus", "AnalyzerArn": ARN},
        {**CLAMAV, "AnalyzerArn": other_account},
        {"Name": "bad", "Rspamd": {"Url": "gopher://x", "Timeout": 0}},
    ))
    find(found, "$.Analyzers[1].Name", "duplicate analyzer Name 'spamhaus' (also at "
                                       "$.Analyzers[0])")
    find(found, "$.Analyzers[1].AnalyzerArn", f"duplicate AnalyzerArn '{ARN}'")
    # The same instance ID in another account would make a reference by ARN ambiguous.
    find(found, "$.Analyzers[2].AnalyzerArn",
         "add-on instance ID 'ai-spamhaus' is also used by the AnalyzerArn at $.Analyzers[0]")
    find(found, "$.Analyzers[3].Rspamd.Url", "not an http:// or https:// URL")
    find(found, "$.Analyzers[3].Rspamd.Timeout", "greater than 0")
    assert all(p.file.endswith("mailmgr.yaml") for p in found)


def test_top_level_key_is_known(problems: Problems) -> None:
    data = base()
    data["Analyzer"] = []
    find(problems(data), "$", "unknown key 'Analyzer' (allowed: Server, IngressPoints, "
                              "TrafficPolicies, RuleSets, Relays, AddressLists, Archives, "
                              "Mailboxes, Analyzers)")


def test_example_file_loads() -> None:
    path = ROOT / "config" / "examples" / "addons.yaml"
    cfg = config.load(path)
    engines = {a.name: a.engine for a in cfg.analyzers}
    assert engines == {"spamhaus": AnalyzerEngine.DNSBL, "vade": AnalyzerEngine.RSPAMD,
                       "trendmicro": AnalyzerEngine.CLAMAV}
    dnsbl = cfg.analyzer("spamhaus").settings
    assert isinstance(dnsbl, DnsblSettings)
    assert {z.type for z in dnsbl.zones} == {DnsblZoneType.IP, DnsblZoneType.DOMAIN}
    assert all(z.codes for z in dnsbl.zones)
    clamd = cfg.analyzer("trendmicro").settings
    assert isinstance(clamd, ClamavSettings) and clamd.unix_path == "/run/clamav/clamd.ctl"
    (statement,) = cfg.traffic_policies[0].statements
    (condition,) = statement.conditions
    assert statement.action == "DENY"
    assert getattr(condition, "analysis", None) is not None
    assert condition.analysis.analyzer == "spamhaus"  # type: ignore[union-attr]
    rules = {r.name: r for r in cfg.rule_sets[0].rules}
    drop = rules["drop-virus"]
    assert drop.actions[0].aws_name == "Drop"
    assert drop.conditions[0].analysis.analyzer == "trendmicro"  # type: ignore[union-attr]
    spam = rules["tag-spam"].conditions[0]
    assert (spam.analysis.analyzer, spam.analysis.result_field) == (  # type: ignore[union-attr]
        "vade", "verdict")
    assert cfg.server.analysis.add_headers is True


def test_check_config_lists_analyzers(tmp_path: Path) -> None:
    path = write(tmp_path, with_analyzers(SPAMHAUS, VADE, CLAMAV))
    text = summary(config.load(path))
    assert "Analyzers (3): message timeout 15 s, X-Mailmgr-Spam/-Virus headers off" in text
    assert f"  spamhaus  Dnsbl  arn {ARN}" in text
    assert "    zone dbl.example.test (DOMAIN) codes 127.0.1.2=spam-domain" in text
    assert "    http://127.0.0.1:11333/checkv2, timeout 5 s, at most 16 in flight" in text
    assert "    clamd unix:/run/clamav/clamd.ctl, timeout 10 s" in text
    result = subprocess.run(
        [sys.executable, "-m", "mailmgr", "check-config", "--config", str(path)],
        capture_output=True, text=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "  vade  Rspamd" in result.stdout


def test_config_hash_changes_with_analyzers_and_server_analysis(tmp_path: Path) -> None:
    """A reload sees an analyzer change: the config's identity covers the whole section."""
    def digest(data: dict[str, Any]) -> str:
        return config_hash(config.load(write(tmp_path, data)))

    first = digest(with_analyzers(SPAMHAUS, VADE))
    assert digest(with_analyzers(SPAMHAUS, VADE)) == first
    slower = {**VADE, "Rspamd": {**VADE["Rspamd"], "Timeout": 6}}
    assert digest(with_analyzers(SPAMHAUS, slower)) != first
    assert digest(with_analyzers(SPAMHAUS)) != first
    assert digest(with_analyzers(SPAMHAUS, VADE, Analysis={"AddHeaders": True})) != first
