"""AddressListIndex member forms, case-insensitivity, IsInAddressList and a 100k-member list."""

from __future__ import annotations

import time

import pytest
from rules_samples import make_facts

from mailmgr.config.models import AddressList, BooleanCondition, BooleanOperator
from mailmgr.rules.address_lists import AddressListIndex, build_indexes
from mailmgr.rules.conditions import compile_condition

MEMBERS = [
    "ceo@example.com",
    "board.example",
    "*@any.example",
    "user*@prefix.example",
    "*.sub.example",
    "ops@*.corp.example",
]

CASES = [
    ("ceo@example.com", True),
    ("CEO@Example.COM", True),
    ("cfo@example.com", False),
    ("ceo@x.example.com", False),
    ("anyone@board.example", True),
    ("anyone@x.board.example", False),  # a domain member covers that domain only
    ("x@ANY.example", True),
    ("x@sub.any.example", False),
    ("user@prefix.example", True),
    ("username+tag@prefix.example", True),
    ("use@prefix.example", False),
    ("user@other.example", False),
    ("x@a.sub.example", True),
    ("x@b.a.sub.example", True),
    ("x@sub.example", False),  # subdomains only
    ("ops@eu.corp.example", True),
    ("OPS@a.b.corp.example", True),
    ("ops@corp.example", False),
    ("dev@eu.corp.example", False),
    ("no-at-sign", False),
    ("@example.com", False),
    ("ceo@", False),
]


@pytest.mark.parametrize(("address", "expected"), CASES)
def test_member_forms(address: str, expected: bool) -> None:
    assert AddressListIndex(MEMBERS).contains(address) is expected


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("RECIPIENT", True),
        ("MAIL_FROM", False),
        ("FROM", True),
        ("TO", True),  # any candidate: carol@example.org is a member
        ("CC", False),
        ("SENDER", False),
    ],
)
def test_is_in_address_list(attribute: str, expected: bool) -> None:
    lists = build_indexes(
        [
            AddressList(
                "al-vip", "vip", "arn:al", ("*@x.test", "alice@example.com", "carol@example.org")
            )
        ]
    )
    condition = BooleanCondition(
        BooleanOperator.IS_TRUE, address_list_attribute=attribute, address_list_id="al-vip"
    )
    compiled = compile_condition(condition, lists)
    assert compiled.description == f"BooleanExpression IsInAddressList {attribute}"
    assert compiled(make_facts(), "a+tag@x.test") is expected
    negated = compile_condition(
        BooleanCondition(
            BooleanOperator.IS_FALSE, address_list_attribute=attribute, address_list_id="al-vip"
        ),
        lists,
    )
    assert negated(make_facts(), "a+tag@x.test") is not expected


def test_hundred_thousand_members_lookup_is_constant_time() -> None:
    members = [f"user{i}@d{i % 500}.example" for i in range(100_000)]
    members += [f"pre{i}*@p.example" for i in range(1000)] + ["*.big.example"]
    small = AddressListIndex(["user7@d7.example", "pre3*@p.example", "*.big.example"])
    big = AddressListIndex(members)
    assert len(big) == 101_001
    probes = ["user99999@d499.example", "pre999x@p.example", "a@b.c.big.example", "nope@d1.example"]
    assert [big.contains(p) for p in probes] == [True, True, True, False]

    def timed(index: AddressListIndex) -> float:
        start = time.perf_counter()
        for _ in range(2000):
            for probe in probes:
                index.contains(probe)
        return time.perf_counter() - start

    timed(small)
    # a scan of 100k members would be thousands of times slower; allow generous noise
    assert timed(big) < 5 * timed(small) + 0.05
