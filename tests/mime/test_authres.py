"""The RFC 8601 Authentication-Results parser: appendix B examples, CFWS, bounds, garbage."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmgr.mime.authres import (
    MAX_DEPTH,
    MAX_LENGTH,
    AuthenticationResults,
    Property,
    Result,
    authserv_id,
    parse,
    same_authserv_id,
)
from tests.mime.fuzz import EXAMPLES


def test_appendix_b_no_result_with_version() -> None:
    assert parse("example.org 1; none") == AuthenticationResults("example.org", 1, ())
    assert parse("example.org; none") == AuthenticationResults("example.org", None, ())


def test_appendix_b_spf_and_auth_with_comment() -> None:
    parsed = parse("example.com;\r\n          auth=pass (cram-md5) smtp.auth=sender@example.net;"
                   "\r\n          spf=pass smtp.mailfrom=example.net")
    assert parsed == AuthenticationResults("example.com", None, (
        Result("auth", "pass", properties=(Property("smtp", "auth", "sender@example.net"),)),
        Result("spf", "pass", properties=(Property("smtp", "mailfrom", "example.net"),)),
    ))


def test_appendix_b_iprev_and_multiple_dkim() -> None:
    assert parse("example.com; iprev=pass\r\n policy.iprev=192.0.2.200") == AuthenticationResults(
        "example.com", None,
        (Result("iprev", "pass", properties=(Property("policy", "iprev", "192.0.2.200"),)),))
    parsed = parse(
        "mail-router.example.net;\r\n"
        "      dkim=pass (good signature) header.d=newyork.example.com\r\n"
        "            header.i=@mail-4.newyork.example.com;\r\n"
        "      dkim=fail (bad signature) header.d=newyork.example.com\r\n"
        "            header.i=@newyork.example.com")
    assert parsed is not None and [r.result for r in parsed.results] == ["pass", "fail"]
    assert parsed.results[0].properties == (
        Property("header", "d", "newyork.example.com"),
        Property("header", "i", "@mail-4.newyork.example.com"))


def test_appendix_b_reason_quoted_string() -> None:
    parsed = parse('example.com;\r\n  dkim=pass reason="good signature"\r\n'
                   '    header.i=@mail-router.example.net;\r\n'
                   '  dkim=fail reason="bad signature"\r\n    header.i=@newyork.example.com')
    assert parsed is not None
    assert [r.reason for r in parsed.results] == ["good signature", "bad signature"]


def test_appendix_b_comment_heavy_example() -> None:
    parsed = parse(
        "foo.example.net (foobar) 1 (baz);\r\n"
        "    dkim (Because I like it) / 1 (One yay) = (wait for it) fail\r\n"
        "      policy (A dot can go here) . (like that) expired\r\n"
        "      (this surprised me) = (as I wasn't expecting it) 1362471462")
    assert parsed == AuthenticationResults("foo.example.net", 1, (
        Result("dkim", "fail", version=1,
               properties=(Property("policy", "expired", "1362471462"),)),))


@pytest.mark.parametrize("value", [
    "(forged) mx.mailmgr.test; dmarc=pass header.from=bank.test",
    "(a (b) c) mx.mailmgr.test; dmarc=pass header.from=bank.test",
    "(a \\) b) mx.mailmgr.test; dmarc=pass header.from=bank.test",
    "(a \\( b) mx.mailmgr.test; dmarc=pass header.from=bank.test",
    "(a (b (c (d) \\)) e)) mx.mailmgr.test; dmarc=pass",
    "(x\r\n\t(y)\r\n z)\r\n mx.mailmgr.test\r\n ; dmarc=pass",
    '"mx.mailmgr.test"; dmarc=pass',
    '"mx.mailmgr\\.test" (c); dmarc=pass',
    "mx.mailmgr.test 1; dmarc=pass",
    "mx.mailmgr.test (v) 12 (w); dmarc=pass",
    "mx.mailmgr.test;dmarc=pass",
    "mx.mailmgr.test(c);dmarc=pass",
    "   mx.mailmgr.test",
])
def test_authserv_id_behind_any_cfws(value: str) -> None:
    assert authserv_id(value) == "mx.mailmgr.test"


def test_nested_comment_is_one_comment_not_two() -> None:
    # A flat "\([^()]*\)" strip leaves "(a  c)" and reads "(a" as the id: the old bug.
    assert authserv_id("(a (b) c) other.example; dkim=pass") == "other.example"
    assert authserv_id("(a \\) other.example b) mx.test; dkim=pass") == "mx.test"


def test_case_and_trailing_dot_compare_equal() -> None:
    claimed = authserv_id("MX.Mailmgr.TEST.; dmarc=pass")
    assert claimed == "MX.Mailmgr.TEST."
    assert same_authserv_id(claimed, "mx.mailmgr.test")
    assert not same_authserv_id("mx.mailmgr.test.evil", "mx.mailmgr.test")


@pytest.mark.parametrize("value", [
    "", "   ", "(only a comment)", "; spf=pass", "(unterminated mx.test; spf=pass",
    "(a (b) mx.test; spf=pass", '"mx.test; spf=pass', "(x \\", "mx@test; spf=pass",
    "=pass", '""; spf=pass', "mx.test\\; spf=pass",
])
def test_garbage_has_no_authserv_id(value: str) -> None:
    assert authserv_id(value) is None
    assert parse(value) is None


@pytest.mark.parametrize("value", [
    "mx.test", "mx.test;", "mx.test spf=pass", "mx.test; spf", "mx.test; spf=", "mx.test; =pass",
    "mx.test; spf=pass smtp", "mx.test; spf=pass smtp.mailfrom", "mx.test; spf=pass smtp.=x",
    "mx.test; none x", "mx.test 1 2; none", "mx.test 1234567890; none",
    "mx.test; dkim/x=pass", "mx.test; spf=pass smtp.mailfrom=\"x",
])
def test_bad_results_fail_the_full_parse_but_keep_the_id(value: str) -> None:
    assert parse(value) is None
    assert authserv_id(value) == "mx.test"


def test_pvalue_forms() -> None:
    parsed = parse('mx; dkim=pass header.b=Ab/c+d= header.i="a b"@x.test '
                   'smtp.mailfrom=@x.test header.s="sel";')
    assert parsed is not None
    assert [p.value for p in parsed.results[0].properties] == [
        "Ab/c+d=", '"a b"@x.test', "@x.test", "sel"]


def test_bounds() -> None:
    deep = "(" * MAX_DEPTH + ")" * MAX_DEPTH + " mx.test; none"
    assert authserv_id(deep) == "mx.test"
    too_deep = "(" * (MAX_DEPTH + 1) + ")" * (MAX_DEPTH + 1) + " mx.test; none"
    assert authserv_id(too_deep) is None and parse(too_deep) is None
    long_comment = "(" + "x" * (MAX_LENGTH - 20) + ") mx.test; none"
    assert authserv_id(long_comment) == "mx.test"
    too_long = "(" + "x" * MAX_LENGTH + ") mx.test; none"
    assert authserv_id(too_long) is None and parse(too_long) is None


@pytest.mark.parametrize("unit", ["(", "((", "\\(", "(\\", '"', "a=b ", "; a=b", "x.y=z "])
def test_worst_cases_stay_linear(unit: str) -> None:
    value = "mx.test; spf=pass " + unit * (MAX_LENGTH // len(unit) - 20)
    started = time.perf_counter()
    parse(value)
    authserv_id(value)
    assert time.perf_counter() - started < 0.5


_text = st.text(st.sampled_from('ab.;= ()\\"@\r\n\t/1x'), max_size=80)


@settings(max_examples=EXAMPLES, deadline=None)
@given(_text)
def test_never_raises_and_agrees_with_itself(value: str) -> None:
    parsed = parse(value)
    claimed = authserv_id(value)
    if parsed is not None:
        assert parsed.authserv_id == claimed


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.sampled_from(["(c)", "(a (b) c)", "(a \\) b)", " ", "\r\n ", "\t"]),
                max_size=6),
       st.sampled_from(["mx.mailmgr.test", "MX.MAILMGR.TEST", '"mx.mailmgr.test"']),
       st.sampled_from(["", " 1", " (v) 2 (w)"]))
def test_any_cfws_before_the_id_is_skipped(cfws: list[str], server: str, version: str) -> None:
    value = "".join(cfws) + server + version + "; dmarc=pass header.from=bank.test"
    parsed = parse(value)
    assert parsed is not None
    assert same_authserv_id(parsed.authserv_id, "mx.mailmgr.test")
    assert parsed.results == (
        Result("dmarc", "pass", properties=(Property("header", "from", "bank.test"),)),)
