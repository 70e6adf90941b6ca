"""The fleet recipe in deploy/ is checked offline: Kubernetes manifests against the bundled
Kubernetes JSON schemas (kubernetes-validate, strict), the compose file against the Compose spec
(check-jsonschema) and for dangling references, both HAProxy configs with `haproxy -c`, every
mailmgr config with `mailmgr check-config`, and the numbers that must agree across files
(ports, drain and grace times, mounted secret paths). Each validator is also shown a broken copy,
so a check that silently passes everything would fail here."""

from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT, ServerProcess, basic_config

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
COMPOSE_CONFIG = DEPLOY / "compose" / "mailmgr.yaml"
COMPOSE_HAPROXY = DEPLOY / "compose" / "haproxy.cfg"
K8S = DEPLOY / "k8s"
K8S_VERSION = "1.30"  # the oldest Kubernetes the manifests promise to work on
# The Deployment's environment for the in-cluster HAProxy config (POD_NAMESPACE, CLUSTER_DOMAIN).
K8S_HAPROXY_ENV = {"POD_NAMESPACE": "mail", "CLUSTER_DOMAIN": "cluster.local"}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in _documents(path):
            if doc["kind"] != "Kustomization":  # kustomize's file, not an API object
                found.append((f"{path.relative_to(K8S)}:{doc['kind']}/{doc['metadata']['name']}",
                              doc))
    return found


MANIFESTS = _manifests()


def _object(kind: str, name: str) -> dict[str, Any]:
    for _, doc in MANIFESTS:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind}/{name} in deploy/k8s")


def _k8s_config_text() -> str:
    return str(_object("ConfigMap", "mailmgr-config")["data"]["mailmgr.yaml"])


def _k8s_haproxy_cfg() -> str:
    return str(_object("ConfigMap", "mailmgr-haproxy")["data"]["haproxy.cfg"])


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


# --- Kubernetes manifests ------------------------------------------------------------------------

def _k8s_validate(doc: dict[str, Any]) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed")
    kv.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("doc", [d for _, d in MANIFESTS], ids=[i for i, _ in MANIFESTS])
def test_kubernetes_manifest_matches_schema(doc: dict[str, Any]) -> None:
    _k8s_validate(doc)


def test_kubernetes_validator_rejects_a_broken_statefulset() -> None:
    broken = copy.deepcopy(_object("StatefulSet", "mailmgr"))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # misspelled
    with pytest.raises(Exception, match="readinesProbe"):
        _k8s_validate(broken)
    broken = copy.deepcopy(_object("StatefulSet", "mailmgr"))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(Exception, match="two"):
        _k8s_validate(broken)


def test_kustomizations_list_existing_files() -> None:
    for path in K8S.rglob("kustomization.yaml"):
        for entry in yaml.safe_load(path.read_text())["resources"]:
            assert (path.parent / entry).exists(), f"{path}: {entry} does not exist"
    # The default and the alternative differ only in the way in; the Secret template is in neither.
    default = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    alternative = yaml.safe_load((K8S / "haproxy" / "kustomization.yaml").read_text())["resources"]
    assert "base" in default and "../base" in alternative
    assert not any("secret" in entry for entry in default + alternative)


def test_statefulset_gives_each_replica_its_own_volume_and_probes_the_admin_listener() -> None:
    sts = _object("StatefulSet", "mailmgr")
    spec, pod = sts["spec"], sts["spec"]["template"]["spec"]
    container = _container(sts)
    config = yaml.safe_load(_k8s_config_text())
    server = config["Server"]
    assert spec["replicas"] == 2
    assert spec["serviceName"] == "mailmgr"
    assert _object("Service", "mailmgr")["spec"]["clusterIP"] == "None"
    # A PVC per replica, mounted at DataDirectory, kept on scale-down.
    claims = {t["metadata"]["name"] for t in spec["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[server["DataDirectory"]] in claims
    assert spec["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"
    # Probes on the admin listener's port, the paths interface.md fixes.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert [_port(a) for a in server["Admin"]["Listen"]] == [ports["admin"]] == [9025]
    assert server["Admin"]["Listen"] == ["0.0.0.0:9025"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": "admin"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz/live", "port": "admin"}
    ingress = config["IngressPoints"][0]
    assert [_port(a) for a in ingress["Listen"]] == [ports["smtp"]]
    # Draining instead of a preStop hook; the grace period covers drain and session grace.
    assert "lifecycle" not in container
    drain = server["Admin"]["DrainSeconds"]
    assert pod["terminationGracePeriodSeconds"] > drain + server["ShutdownGraceSeconds"]
    # The readiness probe notices the drain well before the listeners close.
    probe = container["readinessProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] < drain
    # Non-root, read-only root filesystem; /tmp is the only other writable place.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "/tmp" in mounts
    resources = container["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"]  # Guaranteed: a cpuset
    assert resources["requests"]["memory"] == resources["limits"]["memory"]


def test_statefulset_mounts_what_the_config_refers_to() -> None:
    sts = _object("StatefulSet", "mailmgr")
    container = _container(sts)
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]
              if m["name"] in volumes}
    env = {e["name"]: e.get("value") for e in container["env"]}
    config_path = Path(env["MAILMGR_CONFIG"])
    config_volume = mounts[str(config_path.parent)]
    assert config_volume["configMap"]["name"] == "mailmgr-config"
    assert config_path.name in _object("ConfigMap", "mailmgr-config")["data"]
    server = yaml.safe_load(_k8s_config_text())["Server"]
    dsn_file = Path(server["SharedState"]["PostgreSQL"]["DsnFile"])
    secret_name = mounts[str(dsn_file.parent)]["secret"]["secretName"]
    assert dsn_file.name in _object("Secret", secret_name)["stringData"]
    certificate = yaml.safe_load(_k8s_config_text())["IngressPoints"][0]["TlsCertificate"]
    for file in certificate.values():
        assert "secret" in mounts[str(Path(file).parent)]


def test_kubernetes_ways_in() -> None:
    smtp = _object("Service", "mailmgr-smtp")["spec"]
    assert smtp["type"] == "LoadBalancer"
    assert smtp["externalTrafficPolicy"] == "Local"
    assert smtp["ports"][0]["port"] == 25
    haproxy_service = _object("Service", "mailmgr-haproxy")["spec"]
    assert haproxy_service["externalTrafficPolicy"] == "Local"
    pdb = _object("PodDisruptionBudget", "mailmgr")["spec"]
    assert pdb["minAvailable"] == 1
    labels = _object("StatefulSet", "mailmgr")["spec"]["template"]["metadata"]["labels"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    # The HAProxy Deployment provides the environment its config refers to.
    env = {e["name"] for e in _container(_object("Deployment", "mailmgr-haproxy"))["env"]}
    assert env == set(K8S_HAPROXY_ENV)
    cfg = _k8s_haproxy_cfg()
    assert "send-proxy-v2" in cfg and "port 9025" in cfg and "uri /healthz/ready" in cfg
    for _, doc in MANIFESTS:  # namespace-agnostic
        assert "namespace" not in doc["metadata"]


# --- HAProxy -------------------------------------------------------------------------------------

def _haproxy_check(cfg: str, tmp_path: Path, env: dict[str, str] | None = None
                   ) -> subprocess.CompletedProcess[str]:
    haproxy = shutil.which("haproxy") or ("/usr/sbin/haproxy"
                                          if Path("/usr/sbin/haproxy").exists() else None)
    if haproxy is None:
        pytest.skip("haproxy not installed (scripts/test installs the Debian package)")
    file = tmp_path / "haproxy.cfg"
    file.write_text(cfg)
    return subprocess.run([haproxy, "-c", "-f", str(file)], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("which", ["compose", "k8s"])
def test_haproxy_config_is_valid(which: str, tmp_path: Path) -> None:
    cfg = COMPOSE_HAPROXY.read_text() if which == "compose" else _k8s_haproxy_cfg()
    result = _haproxy_check(cfg, tmp_path, K8S_HAPROXY_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout
    assert "WARNING" not in result.stderr + result.stdout, result.stderr  # warnings are mistakes


def test_haproxy_check_rejects_a_broken_config(tmp_path: Path) -> None:
    cfg = COMPOSE_HAPROXY.read_text().replace("send-proxy-v2", "send-proxy-v3")
    assert _haproxy_check(cfg, tmp_path).returncode != 0


@pytest.mark.parametrize("which", ["compose", "k8s"])
def test_haproxy_takes_a_draining_replica_out_before_it_stops_accepting(which: str) -> None:
    """HAProxy's `inter` x `fall` must be shorter than mailmgr's DrainSeconds."""
    cfg = COMPOSE_HAPROXY.read_text() if which == "compose" else _k8s_haproxy_cfg()
    text = COMPOSE_CONFIG.read_text() if which == "compose" else _k8s_config_text()
    server = yaml.safe_load(text)["Server"]
    line = next(ln.split() for ln in cfg.splitlines() if ln.strip().startswith("default-server"))
    inter = float(line[line.index("inter") + 1].rstrip("s"))
    fall = int(line[line.index("fall") + 1])
    assert inter * fall < server["Admin"]["DrainSeconds"]
    assert f"port {_port(server['Admin']['Listen'][0])}" in " ".join(line)
    smtp_port = _port(yaml.safe_load(text)["IngressPoints"][0]["Listen"][0])
    servers = [ln for ln in cfg.splitlines() if ln.strip().startswith(("server ", "server-"))]
    assert servers and all(f":{smtp_port}" in ln for ln in servers)


# --- docker-compose ------------------------------------------------------------------------------

def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def _compose_spec_check(path: Path) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.skip("check-jsonschema not installed")
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(path)], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_compose_file_matches_the_compose_spec() -> None:
    result = _compose_spec_check(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_spec_check_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = _compose()
    broken["services"]["mailmgr-1"]["stop_grace_periode"] = "45s"  # misspelled
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(broken))
    assert _compose_spec_check(tmp_path / "docker-compose.yml").returncode != 0


def _compose_problems(compose: dict[str, Any]) -> list[str]:
    """What `docker compose config` would refuse: references to undefined services, volumes,
    secrets and configs, services without image or build, config files that do not exist."""
    problems: list[str] = []
    services = compose["services"]
    for kind in ("volumes", "secrets", "configs"):
        defined = set(compose.get(kind) or {})
        for name, service in services.items():
            for entry in service.get(kind, []):
                ref = entry if isinstance(entry, str) else entry.get("source", "")
                if isinstance(entry, str) and kind == "volumes":
                    ref = entry.split(":", 1)[0]
                    if ref.startswith((".", "/")):  # a bind mount, not a named volume
                        continue
                if ref not in defined:
                    problems.append(f"{name}: {kind} '{ref}' is not defined")
    for name, service in services.items():
        if "image" not in service and "build" not in service:
            problems.append(f"{name}: neither image nor build")
        for dependency in service.get("depends_on", {}):
            if dependency not in services:
                problems.append(f"{name}: depends_on unknown service '{dependency}'")
    for name, config in (compose.get("configs") or {}).items():
        if not (COMPOSE.parent / config["file"]).is_file():
            problems.append(f"config '{name}': {config['file']} does not exist")
    return problems


def test_compose_references_are_defined() -> None:
    compose = _compose()
    assert _compose_problems(compose) == []
    broken = copy.deepcopy(compose)
    broken["services"]["mailmgr-2"]["volumes"] = ["mailmgr-3-data:/var/lib/mailmgr"]
    broken["services"]["mailmgr-2"]["secrets"] = ["postgres-dns"]
    assert len(_compose_problems(broken)) == 2


def test_compose_replicas_have_their_own_volumes_and_drain_in_time() -> None:
    compose = _compose()
    services = compose["services"]
    server = yaml.safe_load(COMPOSE_CONFIG.read_text())["Server"]
    seen: set[str] = set()
    for name in ("mailmgr-1", "mailmgr-2"):
        service = services[name]
        volumes = dict(reversed(v.split(":", 1)) for v in service["volumes"])
        for path in (server["DataDirectory"], f"{server['DataDirectory']}/spool"):
            assert volumes[path] in compose["volumes"], (name, path)
            assert volumes[path] not in seen, f"{volumes[path]} is shared"
            seen.add(volumes[path])
        # The DSN comes from a secret this service has.
        dsn_file = Path(server["SharedState"]["PostgreSQL"]["DsnFile"])
        assert dsn_file.parent == Path("/run/secrets")
        assert dsn_file.name in service["secrets"]
        assert service["configs"][0]["target"] == service["environment"]["MAILMGR_CONFIG"]
        assert service["environment"]["AWS_ENDPOINT_URL_S3"].startswith("${S3_ENDPOINT_URL")
        grace = float(service["stop_grace_period"].rstrip("s"))
        assert grace > server["Admin"]["DrainSeconds"] + server["ShutdownGraceSeconds"]
        assert "/healthz/ready" in " ".join(service["healthcheck"]["test"])
        assert "ports" not in service  # only HAProxy is published
    assert services["haproxy"]["configs"][0]["source"] == "haproxy-config"


def test_make_secrets_writes_every_secret_the_compose_file_reads(tmp_path: Path) -> None:
    target = tmp_path / "secrets"
    subprocess.run(["sh", str(DEPLOY / "make-secrets.sh"), str(target)], check=True,
                   capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    for name, secret in _compose()["secrets"].items():
        assert secret["file"].startswith("./secrets/"), name
        assert (target / Path(secret["file"]).name).stat().st_size > 0, name
    password = (target / "postgres-password").read_text().strip()
    assert len(password) >= 32
    assert f":{password}@postgres:5432/mailmgr" in (target / "postgres-dsn").read_text()
    credentials = (target / "aws-credentials").read_text()
    assert (target / "minio-root-password").read_text().strip() in credentials
    # A second run keeps what the first wrote (the database already has that password).
    subprocess.run(["sh", str(DEPLOY / "make-secrets.sh"), str(target)], check=True,
                   capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert (target / "postgres-password").read_text().strip() == password


# --- mailmgr configs -----------------------------------------------------------------------------

@pytest.fixture
def dsn_file(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """Stands in for the mounted secret: a real, empty database when PostgreSQL is installed
    (check-config may connect to the shared store), with a password that trust authentication
    ignores and that must never be printed."""
    try:
        dsn = request.getfixturevalue("postgres").fresh_database()
    except pytest.skip.Exception:  # no PostgreSQL here: the file's syntax is still checked
        dsn = "postgresql://mailmgr@127.0.0.1:9/mailmgr"
    file = tmp_path / "postgres-dsn"
    file.write_text(dsn.replace("mailmgr@", "mailmgr:s3cr3t-pw@", 1) + "\n")
    yield file


def _check_config(text: str, dsn: Path, tmp_path: Path, *, local_archives: bool
                  ) -> subprocess.CompletedProcess[str]:
    config = yaml.safe_load(text)
    config["Server"]["SharedState"]["PostgreSQL"]["DsnFile"] = str(dsn)
    if local_archives:
        for archive in config["Archives"]:
            archive["Storage"] = {"Local": {}}
    file = tmp_path / "mailmgr.yaml"  # every path in the deploy configs is absolute
    file.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "mailmgr", "check-config", "--config", str(file)],
        capture_output=True, text=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL)


def _config_text(which: str) -> str:
    return COMPOSE_CONFIG.read_text() if which == "compose" else _k8s_config_text()


@pytest.mark.parametrize("which", ["compose", "k8s"])
def test_mailmgr_config_loads_apart_from_s3_storage(which: str, dsn_file: Path,
                                                    tmp_path: Path) -> None:
    """Everything but the S3 archive storage: Processes, SharedState, ProxyProtocol, Admin."""
    result = _check_config(_config_text(which), dsn_file, tmp_path, local_archives=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "configuration is valid" in result.stdout
    assert "s3cr3t-pw" not in result.stdout + result.stderr  # the DSN's password never shows


@pytest.mark.parametrize("which", ["compose", "k8s"])
def test_mailmgr_config_loads(which: str, dsn_file: Path, tmp_path: Path) -> None:
    result = _check_config(_config_text(which), dsn_file, tmp_path, local_archives=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "configuration is valid" in result.stdout


def test_every_mailmgr_config_in_deploy_is_checked() -> None:
    """A new config file under deploy/ must be added to the checks above."""
    configs = {path for path in DEPLOY.rglob("*.yaml")
               if any("Server" in doc for doc in _documents(path))}
    assert configs == {COMPOSE_CONFIG}
    holders = [doc for _, doc in MANIFESTS if doc["kind"] == "ConfigMap"
               and any(key.endswith(".yaml") for key in doc.get("data", {}))]
    assert [doc["metadata"]["name"] for doc in holders] == ["mailmgr-config"]


# --- the shipped HAProxy config, running ---------------------------------------------------------

CLIENT = "127.0.0.2"  # the client behind HAProxy; HAProxy reaches the replicas from 127.0.0.1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _local_haproxy_cfg(replicas: list[ServerProcess], smtp_port: int, stats: Path) -> str:
    """deploy/compose/haproxy.cfg with Docker's names and DNS swapped for loopback addresses;
    everything that matters (balance, health checks, PROXY v2, timeouts) is kept as shipped."""
    lines: list[str] = []
    skipping = False
    for line in COMPOSE_HAPROXY.read_text().splitlines():
        if line.startswith("resolvers "):
            skipping = True  # Docker's embedded DNS: absent here
            continue
        if skipping and line and not line[0].isspace():
            skipping = False
        if skipping:
            continue
        if line == "global":
            lines += [line, f"  stats socket {stats} level admin"]
            continue
        if line.strip() == "bind :2525":
            line = f"  bind 127.0.0.1:{smtp_port}"
        elif line.strip() == "bind :8404":
            line = f"  bind 127.0.0.1:{_free_port()}"
        elif line.strip().startswith("default-server"):
            assert " resolvers docker init-addr none" in line
            line = line.replace(" resolvers docker init-addr none", "")
        elif line.strip().startswith("server mailmgr-"):
            index = int(line.split()[1].rsplit("-", 1)[1]) - 1
            replica = replicas[index]
            # The admin port differs per replica on one host; the shipped config has 9025 for all.
            line = (f"  server mailmgr-{index + 1} 127.0.0.1:{replica.port} "
                    f"port {replica.admin_port}")
        lines.append(line)
    text = "\n".join(lines) + "\n"
    assert text.count("server mailmgr-") == len(replicas) and "send-proxy-v2" in text
    return text


def _haproxy_status(stats: Path) -> dict[str, str]:
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(stats))
            sock.sendall(b"show stat\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError:
        return {}
    rows = b"".join(chunks).decode().splitlines()
    if not rows:
        return {}
    fields = rows[0].lstrip("# ").split(",")
    parsed = [dict(zip(fields, row.split(","), strict=False)) for row in rows[1:] if row]
    return {r["svname"]: r["status"] for r in parsed if r["pxname"] == "mailmgr"
            and r["svname"].startswith("mailmgr-")}


def _wait_status(stats: Path, want: dict[str, str], timeout: float) -> float:
    start = time.monotonic()
    while (status := _haproxy_status(stats)) != want:
        assert time.monotonic() - start < timeout, f"HAProxy says {status}, expected {want}"
        time.sleep(0.1)
    return time.monotonic() - start


def _send(port: int, subject: str) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=(CLIENT, 0)) as smtp:
        smtp.ehlo("client.example.com")
        assert smtp.mail("a@sender.example")[0] == 250
        assert smtp.rcpt("bob@rcpt.test")[0] == 250
        code, reply = smtp.data(f"Subject: {subject}\r\n\r\nbody\r\n".encode())
        assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[1]


def _served_by(replicas: list[ServerProcess], message_id: str) -> int:
    """1 or 2: the replica whose `smtp.accepted` line has this ID (it may trail the 250)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for n, replica in enumerate(replicas, 1):
            if any(e.get("event") == "smtp.accepted" and e.get("message_id") == message_id
                   for e in list(replica.events)):
                return n
        time.sleep(0.05)
    raise AssertionError(f"no replica logged {message_id}")


@pytest.mark.slow
def test_shipped_haproxy_config_balances_and_drains(tmp_path: Path, server_factory: Any) -> None:
    """Two real replicas behind the shipped HAProxy config: the /healthz/ready checks on the
    admin port bring both UP, PROXY v2 carries the client address, both replicas get mail, and
    a replica told to stop (SIGTERM) is taken out of rotation while it still accepts."""
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        pytest.skip("haproxy not installed (scripts/test installs the Debian package)")
    shipped = yaml.safe_load(COMPOSE_CONFIG.read_text())["Server"]
    drain = float(shipped["Admin"]["DrainSeconds"])
    replicas = []
    for n in (1, 2):
        config = basic_config(tmp_path / f"r{n}")
        config["Server"]["Admin"]["DrainSeconds"] = drain  # as shipped
        config["IngressPoints"][0]["ProxyProtocol"] = {"TrustedSources": ["127.0.0.1/32"]}
        replicas.append(server_factory(config, f"mailmgr-{n}.yaml").start())
    stats, smtp_port = tmp_path / "haproxy.sock", _free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(_local_haproxy_cfg(replicas, smtp_port, stats))
    proc = subprocess.Popen([haproxy, "-db", "-f", str(cfg)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_status(stats, {"mailmgr-1": "UP", "mailmgr-2": "UP"}, 15)
        ids = [_send(smtp_port, f"fleet {i}") for i in range(4)]
        seen = {message_id: _served_by(replicas, message_id) for message_id in ids}
        assert sorted(set(seen.values())) == [1, 2], seen  # both replicas served
        for replica in replicas:
            for event in replica.events:
                if event.get("event") == "smtp.accepted":
                    assert event["peer_ip"] == CLIENT  # PROXY v2, not HAProxy's address

        # SIGTERM: readiness 503 at once; HAProxy marks the replica DOWN within its checks,
        # before the replica's SMTP listener closes after DrainSeconds.
        replicas[0].proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        replicas[0].wait_for("server.draining", 5)
        took = _wait_status(stats, {"mailmgr-1": "DOWN", "mailmgr-2": "UP"}, drain)
        assert took < drain
        assert not any(e.get("event") == "server.listeners_closed" for e in replicas[0].events)
        for i in range(3):  # the survivor takes everything, with no failed connection
            message_id = _send(smtp_port, f"after drain {i}")
            replicas[1].wait_for("smtp.accepted", 5, message_id=message_id)
        replicas[0].wait_for("server.listeners_closed", drain + 5)
    finally:
        proc.terminate()
        proc.wait(10)
