"""Our Received trace field: RFC 5321 §4.4 content, RFC 3848 keywords, safe and deterministic."""

from __future__ import annotations

import email
import email.policy

from mailmgr.message import Envelope, InboundMessage, SessionFacts
from mailmgr.trace import received_field

WHEN = 1_795_000_000.0  # 2026-11-18T11:06:40Z


def _message(rcpts: tuple[str, ...] = ("bob@example.test",), **session: object) -> InboundMessage:
    facts = SessionFacts(**{"ingress_point_id": "inp-1", "ingress_point_name": "in",
                            "peer_ip": "192.0.2.7", "helo": "client.example", **session})
    return InboundMessage("0abc", WHEN, Envelope("a@example.test", rcpts), facts, b"")


def test_plain_session_field() -> None:
    field = received_field(_message(), "mx.example.test")
    assert field == (
        b"Received: from client.example ([192.0.2.7])\r\n"
        b"\tby mx.example.test with ESMTP\r\n"
        b"\tid 0abc\r\n\tfor <bob@example.test>; Wed, 18 Nov 2026 11:06:40 +0000\r\n"
    )


def test_tls_and_auth_keywords_and_cipher_comment() -> None:
    field = received_field(
        _message(tls=True, tls_protocol="TLSv1.3", tls_cipher="TLS_AES_256_GCM_SHA384",
                 auth_user="inp-submission"), "mx.example.test").decode()
    field = field.replace("\r\n ", " ")  # unfolded (RFC 5322 §2.2.3): the line is over 78
    assert "by mx.example.test with ESMTPSA (using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)" \
        in field
    assert "inp-submission" not in field  # the login name is not published
    assert "with ESMTPS\r\n" in received_field(_message(tls=True), "mx").decode()


def test_ipv6_literal_and_no_for_with_several_recipients() -> None:
    field = received_field(_message(("a@x.test", "b@x.test"), peer_ip="2001:db8:0::1"),
                           "mx").decode()
    assert "([IPv6:2001:db8::1])" in field
    assert " for " not in field


def test_hostile_helo_cannot_inject_header_syntax() -> None:
    field = received_field(_message(helo="evil\r\nX-Injected: yes (a;b)"), "mx")
    parsed = email.message_from_bytes(field + b"\r\nbody", policy=email.policy.default)
    assert parsed.get("X-Injected") is None
    assert field.count(b"\r\n") == 4  # only our own folds and the final line end
    assert b"from evil??X-Injected:?yes??a?b? ([192.0.2.7])" in field


def test_lf_only_message_gets_lf_folding_and_output_is_deterministic() -> None:
    first = received_field(_message(), "mx", b"\n")
    assert b"\r" not in first and first.endswith(b"\n")
    assert received_field(_message(), "mx", b"\n") == first


def test_a_u_label_helo_is_named_by_its_a_label() -> None:
    """Found in review: `EHLO mél.test` was written `m?l.test`, naming neither form."""
    field = received_field(_message(helo="m\u00e9l.test"), "mx.example.test")
    assert field.startswith(b"Received: from xn--ml-bja.test ([192.0.2.7])")
    assert b"?" not in field.split(b"\r\n")[0]
