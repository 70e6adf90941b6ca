"""Session values are clean before they are stored (issue 10 class 1, SMTP side): field cases 01
and 07, hostile case 01, and other members of the class, against a real server on port 0.

HELO/EHLO arguments, MAIL FROM and RCPT TO paths with CR, NUL or any other control character get
501 at the command carrying them (RFC 5321 §4.1.1.1, §4.1.2, §2.3.8); paths need angle brackets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hostile_session_support import dialogue, running_server

from tests.ingress.ingress_support import Running

BODY = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: t\r\n\r\nhello\r\n."


@pytest.fixture
async def server() -> AsyncIterator[Running]:
    async for running in running_server():
        yield running


# ---------------------------------------------------------------- field 01


async def test_field01_paths_without_angle_brackets_get_501(server: Running) -> None:
    replies = await dialogue(server, [
        b"EHLO client.example.test",
        b"MAIL FROM:alice@example.test",
        b"MAIL FROM:<alice@example.test>",
        b"RCPT TO:Postmaster",
        b"RCPT TO:bob@example.test",
        b"RCPT TO:<Postmaster>",
    ])
    assert [code for code, _ in replies] == [250, 501, 250, 501, 501, 250]
    assert replies[1][1].startswith("5.1.7") and replies[3][1].startswith("5.1.3")
    assert [q[1] for q in server.policy.asked] == ["Postmaster"]


# ---------------------------------------------------------------- field 07 / hostile 01


async def test_field07_bare_cr_in_ehlo_and_quoted_mail_from_get_501(server: Running) -> None:
    replies = await dialogue(server, [
        b"EHLO x\rX-Injected-Helo: yes",
        b"MAIL FROM:<>",  # the refused EHLO set no HELO name
        b"EHLO client.example.test",
        b'MAIL FROM:<"x\rX-Injected-Mailfrom: yes"@example.test>',
        b"MAIL FROM:<a@example.test>",
        b"RCPT TO:<b@example.test>",
        b"DATA",
        BODY,
    ])
    assert [code for code, _ in replies] == [501, 503, 250, 501, 250, 250, 354, 250]
    assert replies[0][1].startswith("5.5.2") and replies[3][1].startswith("5.1.7")
    (accepted,) = server.acceptor.accepted
    assert accepted.session.helo == "client.example.test"
    assert accepted.envelope.mail_from == "a@example.test"


def _forged(authserv_id: bytes) -> bytes:
    return (b'<"x\rAuthentication-Results: ' + authserv_id + b"; spf=pass smtp.mailfrom=ceo@bank"
            b'.example; dmarc=pass header.from=bank.example\rX-Pad: "@evil.test>')


HOSTILE_01 = [
    # (EHLO, MAIL FROM, RCPT TO, index of the command that must get 501)
    (b"EHLO helo.test\rX-Injected-Helo: yes", b"<>", b"<bob@example.test>", 0),
    (b"EHLO client.test", b'<"x\rX-Injected-Mailfrom: yes"@evil.test>', b"<bob@example.test>", 1),
    (b"EHLO client.test", _forged(b"mx.ingress.test"), b"<bob@example.test>", 1),
    (b"EHLO client.test", b"<a\x00z@evil.test>", b"<bob@example.test>", 1),
    (b"EHLO client.test", b"<a@evil.test>", b"<bob\x00z@example.test>", 2),
]


@pytest.mark.parametrize(("ehlo", "mail", "rcpt", "refused"), HOSTILE_01)
async def test_hostile01_envelope_control_chars_get_501_and_nothing_is_queued(
    server: Running, ehlo: bytes, mail: bytes, rcpt: bytes, refused: int
) -> None:
    replies = await dialogue(server, [ehlo, b"MAIL FROM:" + mail, b"RCPT TO:" + rcpt])
    assert replies[refused][0] == 501, replies
    assert all(code == 250 for code, _ in replies[:refused]), replies
    assert server.acceptor.accepted == [] and len(server.policy.asked) == 0


# ---------------------------------------------------------------- other control characters

CONTROLS = ["\r", "\x00", "\t", "\x7f", "\x1b", "\x0b", "\x0c", "\x01", "\u0085", "\u009b",
            "\u2028", "\u202e", "\ufeff"]
PLACES = {
    # where the character goes, and the index of the command that must get 501
    "ehlo": ("EHLO a{c}b.test", "MAIL FROM:<a@b.test>", "RCPT TO:<c@d.test>", 0),
    "helo": ("HELO a{c}b.test", "MAIL FROM:<a@b.test>", "RCPT TO:<c@d.test>", 0),
    "mail-local": ("EHLO c.test", "MAIL FROM:<a{c}z@b.test> SMTPUTF8", "RCPT TO:<c@d.test>", 1),
    "mail-quoted": ("EHLO c.test", 'MAIL FROM:<"a{c}z"@b.test> SMTPUTF8', "RCPT TO:<c@d.test>", 1),
    "mail-quoted-pair": ("EHLO c.test", 'MAIL FROM:<"a\\{c}z"@b.test>', "RCPT TO:<c@d.test>", 1),
    "mail-domain": ("EHLO c.test", "MAIL FROM:<a@b{c}x.test> SMTPUTF8", "RCPT TO:<c@d.test>", 1),
    "mail-literal": ("EHLO c.test", "MAIL FROM:<a@[IPv6:::{c}1]>", "RCPT TO:<c@d.test>", 1),
    "mail-param": ("EHLO c.test", "MAIL FROM:<a@b.test> SIZE=1{c}0", "RCPT TO:<c@d.test>", 1),
    "rcpt-local": ("EHLO c.test", "MAIL FROM:<a@b.test> SMTPUTF8", "RCPT TO:<c{c}z@d.test>", 2),
    "rcpt-quoted": ("EHLO c.test", "MAIL FROM:<a@b.test> SMTPUTF8", 'RCPT TO:<"c{c}"@d.test>', 2),
    "rcpt-domain": ("EHLO c.test", "MAIL FROM:<a@b.test> SMTPUTF8", "RCPT TO:<c@d{c}.test>", 2),
    "rcpt-route": ("EHLO c.test", "MAIL FROM:<a@b.test>", "RCPT TO:<@r{c}x:c@d.test>", 2),
}


@pytest.mark.parametrize("place", sorted(PLACES))
@pytest.mark.parametrize("char", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
async def test_control_characters_are_refused_where_they_appear(
    server: Running, place: str, char: str
) -> None:
    *commands, refused = PLACES[place]
    lines = [str(c).format(c=char).encode() for c in commands]
    replies = await dialogue(server, lines)
    assert replies[int(refused)][0] == 501, (place, replies)
    assert all(code == 250 for code, _ in replies[: int(refused)]), replies


# ---------------------------------------------------------------- other syntax errors

BAD_PATHS = [
    "<a@b.test", "a@b.test>", "<<a@b.test>>", "<a@b.test> <c@d.test>", "<a@b.test>junk",
    "<a@b.test>>", "<>a@b.test", "<a b@c.test>", "<a@b.test@c.test>", "<@a.test>", "<a@>",
    "<@>", "<a@-b.test>", "<a@b-.test>", "<a@b..test>", "<a@b_c.test>", "<.@>", "<a@[1.2.3]>",
    "<a@[1.2.3.256]>", "<a@[IPv6:1::2::3]>", "<a@[IPv6:fe80::1%eth0]>", "<a@[::1]>",
    "<a@[1.2.3.4>", "<\"a@b.test>", "<\"a\"b@c.test>", "<@a.test:>", "<@a.test,b.test:c@d.test>",
    "<@a.test;c@d.test>", "<" + "l" * 65 + "@b.test>", "<a@" + ".".join(["d" * 63] * 4) + ".dd>",
    "<a@" + "d" * 64 + ".test>", "<" + "l" * 64 + "@" + ".".join(["d" * 63] * 3) + ".dd>",
]


@pytest.mark.parametrize("path", BAD_PATHS)
async def test_malformed_paths_get_501(server: Running, path: str) -> None:
    replies = await dialogue(server, [
        b"EHLO c.test", f"MAIL FROM:{path}".encode(), b"MAIL FROM:<a@b.test>",
        f"RCPT TO:{path}".encode(),
    ])
    assert replies[1] == (501, "5.1.7 Bad sender address syntax")
    assert replies[2][0] == 250
    assert replies[3] == (501, "5.1.3 Bad recipient address syntax")


@pytest.mark.parametrize("ehlo", [
    "EHLO a b", "EHLO [1.2.3.4", "EHLO [bogus]", "EHLO " + "h" * 256, "EHLO a\u00a0b\u0000",
])
async def test_bad_ehlo_arguments_get_501(server: Running, ehlo: str) -> None:
    (reply,) = await dialogue(server, [ehlo.encode()])
    assert reply == (501, "5.5.2 Invalid domain name")


# ---------------------------------------------------------------- odd forms that stay valid


async def test_valid_odd_forms_are_accepted_and_stored_as_sent(server: Running) -> None:
    rcpts = [
        '<"quoted local part"@x.test>', '<"a\\"b\\\\c"@x.test>',
        "<@relay.test,@r2.test:src@x.test>",
        "<Postmaster>", "<POSTMASTER>", "<u@[IPv6:::1]>", "<u@[IPv6:2001:db8::192.0.2.1]>",
        "<u@[192.0.2.1]>", "<u@[x-tag:content]>", "<a..b@x.test>", "<o'brien+tag@x.test>",
        "<" + "l" * 64 + "@" + "d" * 63 + ".test>",
    ]
    replies = await dialogue(server, [
        b"EHLO under_score", b"MAIL FROM: <>", *(f"RCPT TO:{r}".encode() for r in rcpts),
        b"DATA", BODY,
    ])
    assert all(code in (250, 354) for code, _ in replies), replies
    (accepted,) = server.acceptor.accepted
    assert accepted.session.helo == "under_score" and accepted.envelope.mail_from == ""
    assert accepted.envelope.rcpt_to == (
        '"quoted local part"@x.test', '"a\\"b\\\\c"@x.test', "src@x.test", "Postmaster",
        "POSTMASTER", "u@[IPv6:::1]", "u@[IPv6:2001:db8::192.0.2.1]", "u@[192.0.2.1]",
        "u@[x-tag:content]", "a..b@x.test", "o'brien+tag@x.test",
        "l" * 64 + "@" + "d" * 63 + ".test",
    )


async def test_helo_address_literal_and_utf8_name_are_accepted(server: Running) -> None:
    for name in ("[IPv6:::1]", "[127.0.0.1]", "bücher.example", "localhost"):
        assert (await dialogue(server, [f"HELO {name}".encode()]))[0][0] == 250


# ---------------------------------------------------------------- RFC 6531


async def test_utf8_paths_need_smtputf8(server: Running) -> None:
    replies = await dialogue(server, [
        b"EHLO c.test",
        "MAIL FROM:<jörg@bücher.example>".encode(),
        "MAIL FROM:<jörg@bücher.example> SMTPUTF8".encode(),
        "RCPT TO:<\"é x\"@bücher.example>".encode(),
        b"RSET",
        b"MAIL FROM:<a@b.test>",
        "RCPT TO:<é@x.test>".encode(),
        "RCPT TO:<x@-ü.test>".encode(),
    ])
    assert [code for code, _ in replies] == [250, 553, 250, 250, 250, 250, 553, 501]
    assert replies[1][1].startswith("5.6.7")
