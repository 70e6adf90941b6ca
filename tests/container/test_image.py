"""The container image, built and run: podman builds the Dockerfile on a Debian bookworm base
bootstrapped here (no registry is reachable), runs it with config/container.yaml and checks the
SMTP banner, one archived message, the HEALTHCHECK (/healthz/live) and a non-root process.

Recipe: docs/testing.md, "Containers". The bootstrapped base (a tar and a podman image) is cached
under ${XDG_CACHE_HOME:-~/.cache}/mailmgr-test/ so later runs skip mmdebstrap; the built image and
the container are removed afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT

BASE_IMAGE = "localhost/mailmgr-test-base:bookworm"
BASE_PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CONTAINERS_CONF = """\
[engine]
runtime = "runc"

[containers]
default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"]
"""

pytestmark = pytest.mark.slow


def _skip(config: pytest.Config, reason: str) -> None:
    """Skip with the reason in pytest's summary and a NOTICE line on the real stderr (past
    pytest's capture), so CI's log shows that the image was not tested."""
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"NOTICE: container test skipped: {reason}", file=sys.stderr)
    pytest.skip(reason)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mailmgr-test"


class Podman:
    """`podman` with a containers.conf of our own (runc, ulimits the VM allows); the host's
    containers.conf stays untouched."""

    def __init__(self, conf: Path) -> None:
        self.env = dict(os.environ, CONTAINERS_CONF=str(conf))

    def run(self, *args: str, timeout: float = 120, check: bool = True,
            ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["podman", *args], capture_output=True, text=True, env=self.env, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args[:3])} failed ({done.returncode}):\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done


def _base_image(podman: Podman, config: pytest.Config) -> None:
    """The cached base image, or import it from the cached tar, or bootstrap the tar first."""
    if podman.run("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    tar = cache / "bookworm-python.tar"
    if not tar.exists():
        if shutil.which("mmdebstrap") is None:
            _skip(config, "mmdebstrap is not installed (scripts/test installs it)")
        partial = tar.with_suffix(".partial")
        done = subprocess.run(
            ["mmdebstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "--format=tar",
             "--quiet", "bookworm", str(partial)],
            capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            partial.unlink(missing_ok=True)
            _skip(config, f"mmdebstrap could not bootstrap Debian bookworm: {done.stderr[-500:]}")
        partial.rename(tar)
    podman.run("import", str(tar), BASE_IMAGE, timeout=300)


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Podman:
    if shutil.which("podman") is None:
        _skip(pytestconfig,
              "podman is not installed (scripts/test installs podman, runc and mmdebstrap)")
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    tool = Podman(conf)
    info = tool.run("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False, timeout=60)
    if info.returncode != 0:
        _skip(pytestconfig, f"podman cannot run here: {info.stderr.strip()[-500:]}")
    return tool


@pytest.fixture(scope="module")
def image(podman: Podman, pytestconfig: pytest.Config) -> Iterator[str]:
    _base_image(podman, pytestconfig)
    tag = f"localhost/mailmgr-test:{uuid.uuid4().hex[:12]}"
    args = ["build", "--format", "docker", "--isolation=chroot", "--layers=false",
            "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "-t", tag, "-f", "Dockerfile"]
    if CA_BUNDLE.exists():  # pip behind a TLS-inspecting proxy: a secret, never in a layer
        args += ["--secret", f"id=pip_ca,src={CA_BUNDLE}"]
    try:
        podman.run(*args, str(ROOT), timeout=600)
        yield tag
    finally:
        podman.run("rmi", "--force", tag, check=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def container(podman: Podman, image: str) -> Iterator[tuple[str, int]]:
    name = f"mailmgr-test-{uuid.uuid4().hex[:12]}"
    port = _free_port()
    try:
        podman.run("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:2525", image)
        yield name, port
    finally:
        logs = podman.run("logs", name, check=False)
        sys.stderr.write(logs.stdout[-4000:] + logs.stderr[-4000:])
        podman.run("rm", "--force", "--volumes", name, check=False, timeout=60)


def _banner(port: int) -> smtplib.SMTP:
    deadline = time.monotonic() + 30
    while True:
        try:
            smtp = smtplib.SMTP("127.0.0.1", port, timeout=10)
            return smtp
        except (OSError, smtplib.SMTPServerDisconnected):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _until(check: Podman, what: str, *args: str, seconds: float = 30,
           ) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + seconds
    while True:
        done = check.run(*args, check=False)
        if done.returncode == 0 or time.monotonic() > deadline:
            assert done.returncode == 0, f"{what}: {done.stdout}{done.stderr}"
            return done
        time.sleep(0.5)


def test_image_serves_archives_passes_healthcheck_as_non_root(
    podman: Podman, image: str, container: tuple[str, int]
) -> None:
    name, port = container
    # The HEALTHCHECK travels in the image (docker format; OCI would drop it).
    inspect = json.loads(podman.run("image", "inspect", image).stdout)[0]
    health = inspect.get("Healthcheck") or (inspect.get("Config") or {}).get("Healthcheck")
    assert health and "/healthz/live" in " ".join(health["Test"])
    assert "/opt/mailmgr/venv/bin/python" in health["Test"]

    with _banner(port) as smtp:
        code, banner = smtp.ehlo("client.example.com")
        assert code == 250 and banner.startswith(b"mx.mailmgr.test")
        smtp.sendmail("alice@sender.example", ["bob@rcpt.example"],
                      b"Subject: container hello\r\n\r\nfrom the image test\r\n")

    deadline = time.monotonic() + 30
    rows: list[object] = []
    while not rows and time.monotonic() < deadline:  # the worker archives it asynchronously
        found = podman.run("exec", name, "mailmgr", "archive", "search", "--json",
                           "--subject", "container hello")
        rows = json.loads(found.stdout or "[]")
        time.sleep(0 if rows else 0.5)
    assert len(rows) == 1

    _until(podman, "podman healthcheck run", "healthcheck", "run", name)

    status = podman.run("exec", name, "cat", "/proc/1/status").stdout
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert uids and all(uid != "0" for uid in uids), status
    assert "mailmgr" in podman.run("exec", name, "cat", "/proc/1/cmdline").stdout
