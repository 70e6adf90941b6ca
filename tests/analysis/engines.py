"""Real clamd and rspamd for tests: context managers that start one in its own temp folder on
free loopback ports (offline: a local EICAR signature, DNS on the test server) and stop it by
PID, and session fixtures built on them that skip when the binary is not installed.

Fixtures `clamd`, `clamd_small_stream` and `rspamd` (functions `*_fixture`): import the function
into a test module; each engine starts once per session however many modules import it:

    from tests.analysis.engines import clamd_fixture, rspamd_fixture  # noqa: F401
    async def test_x(clamd: ClamdInstance, rspamd: RspamdInstance) -> None: ...

or `with clamd_instance() as clamd:` / `with rspamd_instance(dns.address) as rspamd:` anywhere.
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import TypeVar, cast

import pytest

from mailmgr.config.models import (
    Analyzer,
    AnalyzerEngine,
    ClamavSettings,
    ListenAddress,
    RspamdSettings,
)
from mailmgr.message import Envelope, InboundMessage, SessionFacts
from tests.verdicts.dns_server import DnsServer

# The EICAR anti-virus test file (68 bytes), written so no scanner flags this source file.
EICAR = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")
EICAR_SIGNATURE = "Mailmgr.Test.EICAR"
EICAR_FOUND = f"{EICAR_SIGNATURE}.UNOFFICIAL"  # clamd names local signatures so
# A whole-file hash signature (.hdb), found in an attachment that decodes to HASH_PAYLOAD.
HASH_PAYLOAD = b"MAILMGR-TEST-HASH-PAYLOAD\n" * 8
HASH_SIGNATURE = "Mailmgr.Test.Hash"
HASH_FOUND = f"{HASH_SIGNATURE}.UNOFFICIAL"

# rspamd: markers in a message body, and the symbol (score) each adds.
SPAM_MARKER = "MAILMGR-TEST-SPAM-MARKER"  # MAILMGR_TEST_SPAM (50): action reject
PHISH_MARKER = "MAILMGR-TEST-PHISH-MARKER"  # PHISHED_MAILMGR_TEST (50): reject, phishing
GRAY_MARKER = "MAILMGR-TEST-GRAY-MARKER"  # MAILMGR_TEST_GRAY (15): greylist (10 to 20)
# Envelope and session probes: each matching value adds a symbol of score 0.01.
PROBE_IP = "192.0.2.77"  # MAILMGR_TEST_IP
PROBE_HELO = "probe.mailmgr.test"  # MAILMGR_TEST_HELO
PROBE_FROM = "probe@example.com"  # MAILMGR_TEST_FROM (envelope sender)
PROBE_RCPT = "second@example.org"  # MAILMGR_TEST_RCPT (any envelope recipient)
PROBE_USER = "probe-user"  # MAILMGR_TEST_USER (SMTP AUTH identity)
PROBE_QUEUE_ID = "PROBEQUEUEID"  # MAILMGR_TEST_QUEUEID

CLAMD = shutil.which("clamd") or ("/usr/sbin/clamd" if os.path.exists("/usr/sbin/clamd")
                                  else None)
RSPAMD = shutil.which("rspamd")
CLAMD_MISSING = "clamd is not installed (Debian package clamav-daemon)"
RSPAMD_MISSING = "rspamd is not installed (Debian package rspamd)"

_running: dict[int, subprocess.Popen[bytes]] = {}


def _kill_leftovers() -> None:
    for proc in list(_running.values()):
        _stop(proc)


atexit.register(_kill_leftovers)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # Linux: the engine gets SIGTERM if pytest itself is killed (no teardown, no atexit).
    with suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent)
    _running[proc.pid] = proc
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process we started, then SIGKILL its process group (rspamd's workers)."""
    _running.pop(proc.pid, None)
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
    # The group is this process's own session (start_new_session): only what it forked.
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def _wait_ready(proc: subprocess.Popen[bytes], ready: Callable[[], bool], what: str,
                log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {_tail(log)}")
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready within {timeout:g} s: {_tail(log)}")


def _tail(log: Path) -> str:
    with suppress(OSError):
        return log.read_text(errors="replace")[-2000:]
    return ""


# ---------------------------------------------------------------------------------- clamd


@dataclass
class ClamdInstance:
    """A running clamd: `socket_path` (UNIX), `tcp` ((host, port) or None), its
    StreamMaxLength in bytes, the folder it owns."""

    proc: subprocess.Popen[bytes]
    directory: Path
    socket_path: str
    tcp: tuple[str, int] | None
    stream_max_bytes: int

    @property
    def address(self) -> str:
        """The analyzer `Address` form: "unix:/path"."""
        return f"unix:{self.socket_path}"

    def command(self, command: bytes) -> bytes:
        """One z-command (b"PING") over the UNIX socket; the reply without its NUL."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(self.socket_path)
            sock.sendall(b"z" + command + b"\0")
            reply = b""
            while not reply.endswith(b"\0"):
                data = sock.recv(4096)
                if not data:
                    break
                reply += data
        return reply.rstrip(b"\0")


def _clamd_ready(socket_path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(socket_path)
            sock.sendall(b"zPING\0")
            return sock.recv(16).startswith(b"PONG")
    except OSError:
        return False


@contextmanager
def clamd_instance(*, tcp: bool = False, stream_max_bytes: int = 25 * 1024 * 1024,
                   extended_detection_info: bool = True, timeout: float = 60.0
                   ) -> Iterator[ClamdInstance]:
    """Start `clamd --foreground` with a database of one EICAR body signature and one file
    hash signature (HASH_PAYLOAD) — no download —
    a UNIX socket in a fresh temp folder (short path: sun_path holds 108 bytes) and, with
    `tcp`, a loopback TCP port, ExtendedDetectionInfo as Debian ships it (on, unless
    `extended_detection_info` is false); ready once PING answers PONG. Stopped and removed on exit.
    Raises RuntimeError when clamd exits or is not ready within `timeout` seconds."""
    if CLAMD is None:
        raise RuntimeError(CLAMD_MISSING)
    directory = Path(tempfile.mkdtemp(prefix="mailmgr-clamd-"))
    proc = None
    try:
        database = directory / "db"
        database.mkdir()
        (database / "mailmgr-test.ndb").write_text(f"{EICAR_SIGNATURE}:0:*:{EICAR.hex()}\n")
        digest = hashlib.md5(HASH_PAYLOAD).hexdigest()  # clamd .hdb signatures are MD5
        (database / "mailmgr-test.hdb").write_text(
            f"{digest}:{len(HASH_PAYLOAD)}:{HASH_SIGNATURE}\n")
        socket_path = str(directory / "clamd.sock")
        tcp_address = ("127.0.0.1", free_port()) if tcp else None
        lines = [
            f"LocalSocket {socket_path}",
            f"DatabaseDirectory {database}",
            f"LogFile {directory / 'clamd.log'}",
            f"TemporaryDirectory {directory}",
            f"StreamMaxLength {stream_max_bytes}",
            "Foreground yes",
            "SelfCheck 3600",
            # Debian's clamd.conf turns it on; clamd 1.4 logs "Name(md5:size)", replies "Name".
            f"ExtendedDetectionInfo {'yes' if extended_detection_info else 'no'}",
        ]
        if tcp_address:
            lines += [f"TCPAddr {tcp_address[0]}", f"TCPSocket {tcp_address[1]}"]
        config = directory / "clamd.conf"
        config.write_text("\n".join(lines) + "\n")
        log = directory / "clamd.out"
        proc = _start([CLAMD, "--foreground", f"--config-file={config}"], log)
        _wait_ready(proc, lambda: _clamd_ready(socket_path), "clamd", log, timeout)
        yield ClamdInstance(proc, directory, socket_path, tcp_address, stream_max_bytes)
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(directory, ignore_errors=True)


# --------------------------------------------------------------------------------- rspamd


@dataclass
class RspamdInstance:
    """A running rspamd: `url` of its normal worker (the analyzer `Url`), `controller_url`."""

    proc: subprocess.Popen[bytes]
    directory: Path
    url: str
    controller_url: str
    log: Path = field(repr=False)


_RSPAMD_CONF = """\
.include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}}
logging {{
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "info";
}}
worker "normal" {{
    bind_socket = "127.0.0.1:{normal}";
    .include "$CONFDIR/worker-normal.inc"
    count = 1;
}}
worker "controller" {{
    bind_socket = "127.0.0.1:{controller}";
    .include "$CONFDIR/worker-controller.inc"
    count = 1;
}}
"""

# A short public-suffix list: rspamd's start-up spends about 9 s compiling the full one.
_OPTIONS = """\
url_tld = "{tld}";
dns {{
    nameserver = ["{dns}"];
    timeout = 0.5s;
    retransmits = 1;
}}
"""

# Thresholds well above the few points a test message scores without rDNS or SPF, so a clean
# message is "no action" whatever the client address; the markers score past them.
_ACTIONS = """\
greylist = 10;
add_header = 20;
rewrite_subject = null;
reject = 30;
"""

_MULTIMAP = """\
MAILMGR_TEST_SPAM {{ type = "content"; filter = "body"; regexp = true; score = 50.0;
    map = ["{d}/spam.map"]; }}
PHISHED_MAILMGR_TEST {{ type = "content"; filter = "body"; regexp = true; score = 50.0;
    map = ["{d}/phish.map"]; }}
MAILMGR_TEST_GRAY {{ type = "content"; filter = "body"; regexp = true; score = 15.0;
    map = ["{d}/gray.map"]; }}
MAILMGR_TEST_IP {{ type = "ip"; score = 0.01; map = ["{d}/ip.map"]; }}
MAILMGR_TEST_HELO {{ type = "selector"; selector = "helo"; score = 0.01;
    map = ["{d}/helo.map"]; }}
MAILMGR_TEST_FROM {{ type = "selector"; selector = "from('smtp'):addr"; score = 0.01;
    map = ["{d}/from.map"]; }}
MAILMGR_TEST_RCPT {{ type = "selector"; selector = "rcpts:addr"; score = 0.01;
    map = ["{d}/rcpt.map"]; }}
MAILMGR_TEST_USER {{ type = "selector"; selector = "user"; score = 0.01;
    map = ["{d}/user.map"]; }}
MAILMGR_TEST_QUEUEID {{ type = "selector"; selector = "queueid"; score = 0.01;
    map = ["{d}/queueid.map"]; }}
"""


def _rspamd_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
            return bool(response.read().strip() == b"pong")
    except OSError:
        return False


@contextmanager
def rspamd_instance(dns_address: str = "127.0.0.1:1", *, timeout: float = 90.0
                    ) -> Iterator[RspamdInstance]:
    """Start `rspamd -f -i` (`-i`: workers may run as root, as in CI) with the stock rules, a
    normal and a controller worker on free loopback ports, every folder in a fresh temp folder,
    DNS at `dns_address` ("127.0.0.1:PORT" of the test DNS server; the default answers nothing,
    which makes every lookup time out), and test rules on the markers and probes above. Ready
    when the normal worker answers /ping (about 7 s the first time). Stopped and removed on
    exit; raises RuntimeError when rspamd exits or is not ready within `timeout` seconds."""
    if RSPAMD is None:
        raise RuntimeError(RSPAMD_MISSING)
    directory = Path(tempfile.mkdtemp(prefix="mailmgr-rspamd-"))
    proc = None
    try:
        local = directory / "local"
        (local / "local.d").mkdir(parents=True)
        for sub in ("db", "run", "log", "maps"):
            (directory / sub).mkdir()
        maps = directory / "maps"
        for name, value in (("spam", f"/{SPAM_MARKER}/"), ("phish", f"/{PHISH_MARKER}/"),
                            ("gray", f"/{GRAY_MARKER}/"), ("ip", PROBE_IP),
                            ("helo", PROBE_HELO), ("from", PROBE_FROM), ("rcpt", PROBE_RCPT),
                            ("user", PROBE_USER), ("queueid", PROBE_QUEUE_ID)):
            (maps / f"{name}.map").write_text(value + "\n")
        (maps / "tld.dat").write_text("com\norg\nnet\ntest\nexample\ninvalid\n")
        (local / "local.d" / "options.inc").write_text(
            _OPTIONS.format(dns=dns_address, tld=maps / "tld.dat"))
        (local / "local.d" / "actions.conf").write_text(_ACTIONS)
        # hfilter scores a test client's HELO, rDNS and sender domain up to ~9 points at random.
        (local / "local.d" / "hfilter.conf").write_text("enabled = false;\n")
        (local / "local.d" / "multimap.conf").write_text(_MULTIMAP.format(d=maps))
        normal, controller = free_port(), free_port()
        config = directory / "rspamd.conf"
        config.write_text(_RSPAMD_CONF.format(normal=normal, controller=controller))
        log = directory / "log" / "rspamd.log"
        argv = [RSPAMD, "-f", "-i", "-c", str(config)]
        argv += [f"--var={name}={directory / sub}" for name, sub in (
            ("DBDIR", "db"), ("RUNDIR", "run"), ("LOGDIR", "log"), ("LOCAL_CONFDIR", "local"))]
        proc = _start(argv, directory / "rspamd.out")
        url = f"http://127.0.0.1:{normal}"
        _wait_ready(proc, lambda: _rspamd_ready(url), "rspamd", log, timeout)
        yield RspamdInstance(proc, directory, url, f"http://127.0.0.1:{controller}", log)
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(directory, ignore_errors=True)


# ------------------------------------------------------------------------------- fixtures


T = TypeVar("T")


@dataclass
class _Shared:
    """One running instance and how many fixture definitions use it."""

    value: object = None
    users: int = 0
    manager: AbstractContextManager[object] | None = None


# One instance per test session however many modules import a fixture (each import is its own
# FixtureDef, each set up once): the last teardown stops it.
_shared: dict[str, _Shared] = {}


def _shared_instance(key: str, start: Callable[[], AbstractContextManager[T]]) -> Iterator[T]:
    entry = _shared.setdefault(key, _Shared())
    if entry.users == 0:
        manager = start()
        entry.value = manager.__enter__()
        entry.manager = manager
    entry.users += 1
    try:
        yield cast(T, entry.value)
    finally:
        entry.users -= 1
        running = entry.manager
        if entry.users == 0 and running is not None:
            entry.manager, entry.value = None, None
            running.__exit__(None, None, None)


@pytest.fixture(scope="session", name="clamd")
def clamd_fixture() -> Iterator[ClamdInstance]:
    """clamd on a UNIX socket and a loopback TCP port, default StreamMaxLength (25 MiB)."""
    if CLAMD is None:
        pytest.skip(CLAMD_MISSING)
    yield from _shared_instance(
        "clamd", lambda: clamd_instance(tcp=True))


@pytest.fixture(scope="session", name="clamd_small_stream")
def clamd_small_stream_fixture() -> Iterator[ClamdInstance]:
    """clamd on a UNIX socket with StreamMaxLength 64 KiB, to reach clamd's own limit, and
    ExtendedDetectionInfo off (plain "stream: Name FOUND")."""
    if CLAMD is None:
        pytest.skip(CLAMD_MISSING)
    yield from _shared_instance(
        "clamd_small_stream",
        lambda: clamd_instance(stream_max_bytes=64 * 1024, extended_detection_info=False))


@pytest.fixture(scope="session", name="rspamd")
def rspamd_fixture(dns_server: DnsServer) -> Iterator[RspamdInstance]:
    """rspamd with DNS at the session's loopback test DNS server (tests/conftest.py)."""
    if RSPAMD is None:
        pytest.skip(RSPAMD_MISSING)
    yield from _shared_instance(
        "rspamd", lambda: rspamd_instance(dns_server.address))


# --------------------------------------------------------------------- analyzers, messages


def rspamd_analyzer(url: str, *, timeout: float = 5.0, max_concurrency: int = 16,
                    name: str = "vade") -> Analyzer:
    return Analyzer(name=name, arn="", engine=AnalyzerEngine.RSPAMD,
                    settings=RspamdSettings(url=url, timeout=timeout,
                                            max_concurrency=max_concurrency))


def clamav_analyzer(*, unix_path: str | None = None, tcp: tuple[str, int] | None = None,
                    timeout: float = 10.0, max_stream_bytes: int = 25 * 1024 * 1024,
                    max_concurrency: int = 8, name: str = "trendmicro") -> Analyzer:
    return Analyzer(name=name, arn="", engine=AnalyzerEngine.CLAMAV,
                    settings=ClamavSettings(
                        unix_path=unix_path,
                        tcp=ListenAddress(*tcp) if tcp else None,
                        timeout=timeout, max_stream_bytes=max_stream_bytes,
                        max_concurrency=max_concurrency))


def mail(body: str | bytes = "Hello, this is a perfectly ordinary message.\r\n", *,
         subject: str = "Test message", headers: str = "") -> bytes:
    """A small RFC 5322 message from a@example.com to b@example.org with `body`, dated now
    (rspamd scores a date in the past)."""
    head = (f"From: a@example.com\r\nTo: b@example.org\r\nSubject: {subject}\r\n"
            f"Message-ID: <test.1@example.com>\r\nDate: {formatdate()}\r\n"
            f"MIME-Version: 1.0\r\n{headers}\r\n").encode()
    return head + (body.encode() if isinstance(body, str) else body)


def inbound(content: bytes, *, message_id: str = "0000000000000001-test",
            mail_from: str = "a@example.com", rcpt_to: tuple[str, ...] = ("b@example.org",),
            peer_ip: str = "127.0.0.1", helo: str = "client.example.com",
            auth_user: str | None = None) -> InboundMessage:
    """An accepted message as the pipeline hands it to an engine."""
    return InboundMessage(
        id=message_id, received_at=time.time(),
        envelope=Envelope(mail_from=mail_from, rcpt_to=rcpt_to),
        session=SessionFacts(ingress_point_id="inp-test", ingress_point_name="inbound",
                             peer_ip=peer_ip, peer_port=40000, helo=helo,
                             auth_user=auth_user),
        content=content,
    )


# ------------------------------------------------------------------ misbehaving servers

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def stream_server(handler: Handler, unix_path: str | None = None) -> AsyncIterator[str]:
    """A loopback server running `handler` per connection (a fake clamd or rspamd that hangs,
    stalls or answers garbage); yields its UNIX path, or "127.0.0.1:PORT". On exit every
    handler still running is cancelled and every connection closed."""
    tasks: set[asyncio.Task[None]] = set()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    if unix_path is not None:
        server = await asyncio.start_unix_server(run, unix_path)
        address = unix_path
    else:
        server = await asyncio.start_server(run, "127.0.0.1", 0)
        address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield address
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
