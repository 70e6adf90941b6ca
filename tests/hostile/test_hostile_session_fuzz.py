"""Fuzz of the SMTP command-argument grammar (issue 10 classes 1 and 2): random printable,
control and non-ASCII characters in EHLO, MAIL FROM and RCPT TO.

Properties: the parser never raises; every reply is one of the allowed codes (never 451, which
means an exception); a value that is accepted and stored carries no control or line-breaking
character. Bounded for CI; MAILMGR_FUZZ_EXAMPLES=5000 for a longer run.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import unicodedata
from collections.abc import Iterator

import pytest
from hostile_session_support import start
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailmgr.ingress import syntax
from mailmgr.ingress.replies import Reply
from tests.ingress.ingress_support import Running

EXAMPLES = int(os.environ.get("MAILMGR_FUZZ_EXAMPLES", "300"))
SOCKET_EXAMPLES = max(EXAMPLES // 3, 50)

FRAGMENTS = ["<", ">", "@", "a", "b.c", "x-y", '"', "\\", "[", "]", "IPv6:", "::1", "1.2.3.4",
             " ", "  ", ":", ",", ".", "..", "@r.test,", "Postmaster", " SIZE=1", " AUTH=<>",
             " AUTH=a+2Bb", " SMTPUTF8", " BODY=8BITMIME", " NOTIFY=NEVER", "=", "\r", "\x00",
             "\t", "\x7f", "\x1b", "\x85", "é", "ü", "\u2028", "\u202e", "\ufeff", "_", "-"]
CHARS = st.characters(codec="utf-8", exclude_categories=["Cs"])
ARGS = st.one_of(
    st.text(CHARS, max_size=80),
    st.lists(st.sampled_from(FRAGMENTS), max_size=25).map("".join),
)


def _clean(value: str) -> bool:
    """No C0/C1 control, DEL, line or paragraph separator, or format character (but ZWNJ/ZWJ)."""
    return all(
        c in "\u200c\u200d"
        or unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")
        for c in value
    )


# ---------------------------------------------------------------- the pure grammar

MAIL_CODES = {501, 552, 553, 555}
RCPT_CODES = {501, 553, 555}


@settings(max_examples=EXAMPLES, deadline=None)
@given(arg=ARGS, extended=st.booleans(), auth=st.booleans(), utf8=st.booleans())
def test_grammar_accepts_only_clean_values_and_refuses_with_allowed_codes(
    arg: str, extended: bool, auth: bool, utf8: bool
) -> None:
    mail = syntax.mail_command("FROM:" + arg, extended=extended, auth_offered=auth, max_size=10)
    if isinstance(mail, Reply):
        assert mail.code in MAIL_CODES
    else:
        assert _clean(mail.mail_from) and " " not in mail.mail_from.split("@")[-1]
    rcpt = syntax.rcpt_command("TO:" + arg, extended=extended, smtputf8=utf8)
    if isinstance(rcpt, Reply):
        assert rcpt.code in RCPT_CODES
    else:
        assert rcpt and _clean(rcpt)
    helo = syntax.helo_domain(arg)
    if isinstance(helo, Reply):
        assert helo.code == 501
    else:
        assert _clean(helo) and " " not in helo and len(helo.encode()) <= 255


@settings(max_examples=EXAMPLES, deadline=None)
@given(arg=ARGS)
def test_the_fast_path_accepts_nothing_the_full_grammar_refuses(arg: str) -> None:
    plain = syntax._PLAIN_PATH.match(arg)
    if plain is not None and syntax._path(arg, False) is not None:
        assert syntax._mailbox(plain.group(1) + "@" + plain.group(2), False)


ATOM = st.text("abcXYZ019!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=8)
LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
QTEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=10).map(
    lambda text: '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
LOCAL = st.one_of(st.lists(ATOM, min_size=1, max_size=4).map(".".join), QTEXT)
DOMAIN = st.one_of(
    st.lists(LABEL, min_size=1, max_size=4).map(".".join),
    st.ip_addresses(v=4).map(lambda ip: f"[{ip}]"),
    st.ip_addresses(v=6).map(lambda ip: f"[IPv6:{ip}]"),
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(local=LOCAL, domain=DOMAIN, route=st.lists(LABEL, max_size=2))
def test_valid_paths_are_accepted_and_kept_as_sent(
    local: str, domain: str, route: list[str]
) -> None:
    mailbox = f"{local}@{domain}"
    hops = ",".join(f"@{hop}" for hop in route) + (":" if route else "")
    mail = syntax.mail_command(f"FROM:<{hops}{mailbox}> SIZE=1", extended=True,
                               auth_offered=False, max_size=10)
    assert not isinstance(mail, Reply), mail
    assert mail.mail_from == mailbox and mail.size == 1
    assert syntax.rcpt_command(f"TO:<{hops}{mailbox}>", extended=True, smtputf8=False) == mailbox


# ---------------------------------------------------------------- the real server


@pytest.fixture(scope="module")
def threaded_server() -> Iterator[Running]:
    """One OPEN server on port 0 in its own event loop thread, for synchronous sockets."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    running = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    yield running
    asyncio.run_coroutine_threadsafe(running.server.stop(grace=1.0), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def _replies(sock: socket.socket, count: int) -> list[int]:
    buffer = b""
    codes: list[int] = []
    while len(codes) < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\r\n")
        codes += [int(line[:3]) for line in lines if line[3:4] == b" "]
    return codes


LINE_ARGS = ARGS.map(lambda text: text.replace("\n", ""))


@settings(max_examples=SOCKET_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ehlo=LINE_ARGS, mail=LINE_ARGS, rcpt=LINE_ARGS)
def test_server_replies_are_allowed_and_what_it_stores_is_clean(
    threaded_server: Running, ehlo: str, mail: str, rcpt: str
) -> None:
    lines = [f"EHLO {ehlo}", f"MAIL FROM:{mail}", f"RCPT TO:{rcpt}"]
    with socket.create_connection((threaded_server.host, threaded_server.port), 10) as sock:
        assert _replies(sock, 1) == [220]
        sock.sendall(b"".join(line.encode() + b"\r\n" for line in lines))
        ehlo_code, mail_code, rcpt_code = _replies(sock, 3)
        assert ehlo_code in (250, 500, 501)
        assert mail_code in (250, 500, 501, 503, 552, 553, 555)
        assert rcpt_code in (250, 500, 501, 503, 553, 555)
        if rcpt_code == 250:
            sock.sendall(b"DATA\r\nSubject: f\r\n\r\nx\r\n.\r\n")
            assert _replies(sock, 2) == [354, 250]
        sock.sendall(b"QUIT\r\n")
    for facts, recipient in threaded_server.policy.asked:
        assert _clean(facts.helo) and _clean(recipient)
    for accepted in threaded_server.acceptor.accepted:
        assert _clean(accepted.envelope.mail_from) and _clean(accepted.session.helo)
        assert all(_clean(r) for r in accepted.envelope.rcpt_to)
