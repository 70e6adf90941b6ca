"""Strict RFC 5322 §3.4 address lists: RFC examples, obs forms, malformed lists give nothing."""

from __future__ import annotations

import time

import pytest

from mailmgr.mime import addresses
from mailmgr.mime.addresses import addr_specs, parse


def specs(value: str) -> list[str] | None:
    found = parse(value)
    return None if found is None else [m.addr_spec for m in found]


@pytest.mark.parametrize(("value", "expected"), [
    # RFC 5322 Appendix A.1.2 / A.1.3
    ('"Joe Q. Public" <john.q.public@example.com>', ["john.q.public@example.com"]),
    ("Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>",
     ["mary@x.test", "jdoe@example.org", "one@y.test"]),
    ('<boss@nil.test>, "Giant; \\"Big\\" Box" <sysservices@example.net>',
     ["boss@nil.test", "sysservices@example.net"]),
    ("A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;",
     ["c@a.test", "joe@where.test", "jdoe@one.test"]),
    ("Undisclosed recipients:;", []),
    # A.5: comments and white space
    ("Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>", ["pete@silly.test"]),
    ("A Group(Some people)\r\n     :Chris Jones <c@(Chris's host.)public.example>,\r\n"
     "         joe@example.org,\r\n  John <jdoe@one.test> (my dear friend); (the end)",
     ["c@public.example", "joe@example.org", "jdoe@one.test"]),
    ("(Empty list)(start)Hidden recipients  :(nobody(that I know))  ;", []),
    # A.6: obsolete forms
    ("Joe Q. Public <john.q.public@example.com>", ["john.q.public@example.com"]),
    ("Mary Smith <@node.test:mary@example.net>, , jdoe@test  . example",
     ["mary@example.net", "jdoe@test.example"]),
    ("John Doe <jdoe@machine(comment).  example>", ["jdoe@machine.example"]),
    ("<ceo@bank.test >", ["ceo@bank.test"]),  # rspamd #3812
    ("< ceo @ bank.test >", ["ceo@bank.test"]),
    ('"Someone <someone@evil.test>"@bank.test',  # OpenDMARC #243
     ['"Someone <someone@evil.test>"@bank.test']),
    ("a@[192.0.2.1]", ["a@[192.0.2.1]"]),
    ("j\u00f6rg@b\u00fccher.test", ["j\u00f6rg@b\u00fccher.test"]),  # RFC 6532
    ("", []),
    (",,a@b.test,,", ["a@b.test"]),
])
def test_valid_lists(value: str, expected: list[str]) -> None:
    assert specs(value) == expected


@pytest.mark.parametrize("value", [
    "ceo@bank.test <", "a b@c.test", "Just A Name", "<a@b.test", "a@b.test>", "@b.test",
    "a@", "a@b..test", "a@b.test c@d.test", '"unclosed@b.test', "(unclosed a@b.test",
    "a@b.test;", "G: a@b.test", "G: H: a@b.test;;", "a@b.test, <>", "x <a@b.test> y",
    "a\ufffd@b.test", "<a@b.test> <c@d.test>", "[x]@b.test",
])
def test_malformed_lists_give_no_candidate(value: str) -> None:
    assert parse(value) is None
    assert addr_specs([value]) == ()


def test_one_malformed_field_does_not_spoil_another() -> None:
    assert addr_specs(["a@x.test, b@", "c@y.test"]) == ("c@y.test",)


def test_display_names_are_unquoted_and_rfc2047_decoded() -> None:
    found = parse('=?utf-8?q?J=C3=B6rg?= =?utf-8?q?_M?= <j@x.test>, "Doe, J." <d@x.test>')
    assert found is not None
    assert [m.display_name for m in found] == ["J\u00f6rg M", "Doe, J."]
    assert [str(m) for m in found] == ["J\u00f6rg M <j@x.test>", '"Doe, J." <d@x.test>']
    grouped = parse("Team: a@x.test;")
    assert grouped is not None and grouped[0].group == "Team"


def test_count_bound_makes_the_list_malformed() -> None:
    at_bound = ", ".join(f"u{i}@d{i}.test" for i in range(addresses.MAX_ADDRESSES))
    assert len(parse(at_bound) or ()) == addresses.MAX_ADDRESSES
    assert parse(at_bound + ", one@more.test") is None


def test_linear_time() -> None:
    for value in ("a@b.test, " * 9000, "(" * 100_000, "\"" + "\\x" * 100_000,
                  "x" * 200_000 + "@", "((((a)))) " * 20_000 + "a@b.test"):
        started = time.perf_counter()
        parse(value)
        assert time.perf_counter() - started < 1.0, value[:20]
