"""`mailmgr config push | show | export` against a real PostgreSQL, as real CLI processes; and
how a replica's local file and a pushed document combine (loader.load_shared)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from mailmgr.config.loader import load_shared
from mailmgr.config.shared import shareable_document
from tests.fleet.fleet_config_support import (
    PASSWORD,
    cli,
    database,
    local_config,
    secret_dsn,
    shared_config,
)
from tests.state.postgres_support import PostgresInstance
from tests.support import write_config


def _stored_rows(postgres: PostgresInstance, dsn: str) -> str:
    return postgres.psql("SELECT count(*) FROM mailmgr_config_documents", database(dsn))


def test_invalid_push_prints_located_problems_and_stores_nothing(
        tmp_path: Path, postgres: PostgresInstance) -> None:
    dsn = secret_dsn(postgres)
    local = write_config(tmp_path / "local.yaml", local_config(tmp_path, dsn, "r1"))
    bad = shared_config(tmp_path, "one")
    bad["RuleSets"][0]["Rules"][0]["Actions"][0] = {"AddHeader": {"HeaderName": "X-Fleet"}}
    bad["IngressPoints"][0]["TrafficPolicyId"] = "no-such-policy"
    pushed = write_config(tmp_path / "bad.yaml", bad)

    result = cli("config", "push", str(pushed), config=local)

    assert result.returncode == 2, result
    assert "nothing was stored" in result.stderr
    assert f"{pushed}: $.RuleSets[0].Rules[0].Actions[0].AddHeader" in result.stderr
    assert f"{pushed}: $.IngressPoints[0].TrafficPolicyId" in result.stderr
    assert "Traceback" not in result.stderr
    shown = cli("config", "show", config=local)
    assert shown.returncode == 1
    assert "no configuration has been pushed yet" in shown.stderr
    assert _stored_rows(postgres, dsn) == "0"


def test_push_show_and_identical_push(tmp_path: Path, postgres: PostgresInstance) -> None:
    dsn = secret_dsn(postgres)
    local = write_config(tmp_path / "local.yaml", local_config(tmp_path, dsn, "r1"))
    first = write_config(tmp_path / "one.yaml", shared_config(tmp_path, "one"))

    pushed = cli("config", "push", str(first), config=local)
    assert pushed.returncode == 0, pushed.stderr
    assert "version 1" in pushed.stdout

    shown = cli("config", "show", config=local)
    assert shown.returncode == 0, shown.stderr
    header, _, body = shown.stdout.partition("\n")
    assert header.startswith("# shared configuration version 1, sha256 ")
    document = yaml.safe_load(body)
    assert "Server" not in document  # the pushed file's Server section is never stored
    assert document["RuleSets"][0]["Rules"][0]["Actions"][0]["AddHeader"]["HeaderValue"] == "one"

    as_json = json.loads(cli("config", "show", "--json", config=local).stdout)
    assert as_json["version"] == 1 and len(as_json["sha256"]) == 64
    assert as_json["document"] == document

    # The same resources written differently (key order, JSON instead of YAML): a no-op.
    reordered = {k: v for k, v in reversed(list(yaml.safe_load(first.read_text()).items()))}
    same = tmp_path / "same.json"
    same.write_text(json.dumps(reordered))
    again = cli("config", "push", str(same), config=local)
    assert again.returncode == 0, again.stderr
    assert "unchanged" in again.stdout and "nothing stored" in again.stdout
    assert _stored_rows(postgres, dsn) == "1"

    second = write_config(tmp_path / "two.yaml", shared_config(tmp_path, "two"))
    result = json.loads(cli("config", "push", "--json", str(second), config=local).stdout)
    assert result["version"] == 2 and result["created"] is True
    assert result["sha256"] != as_json["sha256"]
    assert json.loads(cli("config", "show", "--json", config=local).stdout)["version"] == 2
    for output in (pushed, shown, again):
        assert PASSWORD not in output.stdout + output.stderr
        assert database(dsn) not in output.stdout + output.stderr


def test_address_list_imports_are_inlined(tmp_path: Path, postgres: PostgresInstance) -> None:
    dsn = secret_dsn(postgres)
    local = write_config(tmp_path / "local.yaml", local_config(tmp_path, dsn, "r1"))
    data = shared_config(tmp_path, "one")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "vip.csv").write_text("address\nceo@example.test\ncfo@example.test\n")
    data["AddressLists"] = [{"AddressListName": "vip", "Members": ["cfo@example.test"],
                             "File": "lists/vip.csv"}]
    pushed = write_config(tmp_path / "with-list.yaml", data)

    assert cli("config", "push", str(pushed), config=local).returncode == 0
    (tmp_path / "lists" / "vip.csv").unlink()  # replicas do not need the file

    document = json.loads(cli("config", "show", "--json", config=local).stdout)["document"]
    assert document["AddressLists"] == [{"AddressListName": "vip",
                                         "Members": ["cfo@example.test", "ceo@example.test"]}]


def test_show_without_shared_state_says_so(tmp_path: Path) -> None:
    data = local_config(tmp_path, "postgresql://mailmgr@127.0.0.1:1/x", "r1")
    del data["Server"]["SharedState"]
    local = write_config(tmp_path / "local.yaml", data)
    result = cli("config", "show", config=local)
    assert result.returncode == 1
    assert "Server.SharedState is not configured" in result.stderr
    pushed = cli("config", "push", str(local), config=local)
    assert pushed.returncode == 1
    assert "Server.SharedState is not configured" in pushed.stderr


def test_unreachable_store_is_a_clear_error(tmp_path: Path) -> None:
    dsn = f"postgresql://mailmgr:{PASSWORD}@127.0.0.1:1/mailmgr"
    local = write_config(tmp_path / "local.yaml", local_config(tmp_path, dsn, "r1"))
    result = cli("config", "show", config=local)
    assert result.returncode == 1
    assert "cannot connect to PostgreSQL" in result.stderr
    assert PASSWORD not in result.stderr and "Traceback" not in result.stderr


def test_local_server_and_host_bound_keys_win(tmp_path: Path) -> None:
    local_data = local_config(tmp_path, "postgresql://mailmgr@127.0.0.1:1/x", "r1")
    local_data["IngressPoints"][0]["Listen"] = ["127.0.0.1:2601"]
    local_data["IngressPoints"][0]["ProxyProtocol"] = {"TrustedSources": ["10.0.0.0/8"]}
    local_data["RuleSets"][0]["Rules"] = []  # the local file's resources are not used
    local = write_config(tmp_path / "local.yaml", local_data)
    pushed = shared_config(tmp_path, "shared", listen_port=2700)
    pushed["IngressPoints"][0]["TlsWrappedListen"] = ["127.0.0.1:2701"]
    pushed["IngressPoints"].append({**pushed["IngressPoints"][0], "IngressPointName": "extra",
                                    "Listen": ["127.0.0.1:2702"], "TlsWrappedListen": []})
    file = write_config(tmp_path / "pushed.yaml", pushed)

    config = load_shared(local, shareable_document(file), "shared config v1")

    assert config.server.hostname == "r1.test.example"
    assert config.server.shared_state is not None
    inbound, extra = config.ingress_points
    assert [a.port for a in inbound.listen] == [2601]
    assert inbound.tls_wrapped_listen == ()  # host-bound: absent locally, absent
    assert inbound.proxy_protocol is not None
    assert [a.port for a in extra.listen] == [2702]  # no local point: the document's keys
    actions = config.rule_sets[0].rules[0].actions
    assert len(config.rule_sets[0].rules) == 1 and len(actions) == 2


def test_export_prints_the_merged_config_without_the_dsn(
        tmp_path: Path, postgres: PostgresInstance) -> None:
    dsn = secret_dsn(postgres)
    local_data = local_config(tmp_path, dsn, "r1")
    local_data["IngressPoints"][0]["Listen"] = ["127.0.0.1:2601"]
    local = write_config(tmp_path / "local.yaml", local_data)
    pushed = write_config(tmp_path / "one.yaml", shared_config(tmp_path, "one", 2700))
    assert cli("config", "push", str(pushed), config=local).returncode == 0

    result = cli("config", "export", "--json", config=local)

    assert result.returncode == 0, result.stderr
    merged = json.loads(result.stdout)
    assert merged["Server"]["Hostname"] == "r1.test.example"
    assert merged["Server"]["SharedState"]["PostgreSQL"]["Dsn"] == "<redacted>"
    assert merged["IngressPoints"][0]["Listen"] == ["127.0.0.1:2601"]
    assert PASSWORD not in result.stdout


def test_archive_commands_see_the_pushed_archives(tmp_path: Path,
                                                  postgres: PostgresInstance) -> None:
    """`archive search/get` on a replica use the configuration it runs (local file + pushed
    document), as `serve` does: an archive only the pushed document defines is found, and one
    the document redefines (Local -> S3) is read as the document says."""
    dsn = secret_dsn(postgres)
    local = write_config(tmp_path / "local.yaml", local_config(tmp_path, dsn, "r1"))
    before = cli("archive", "search", "--json", "--archive", "pushed-only", config=local)
    assert before.returncode == 2 and "no archive 'pushed-only'" in before.stderr
    document = shared_config(tmp_path, "one")
    document["Archives"].append({"ArchiveName": "pushed-only", "Storage": {"Local": {}}})
    pushed = write_config(tmp_path / "one.yaml", document)
    assert cli("config", "push", str(pushed), config=local).returncode == 0

    found = cli("archive", "search", "--json", "--archive", "pushed-only", config=local)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout) == []
    assert PASSWORD not in found.stdout + found.stderr
