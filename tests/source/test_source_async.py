"""Source-level rules for async code that a linter does not check.

`asyncio.wait_for` on Python 3.11 can swallow a cancellation that arrives in the same loop
iteration as the awaited operation completes (CPython gh-86296, fixed in 3.12 by building
wait_for on `asyncio.timeout`). A long-lived task cancelled at shutdown then keeps running and
stop() hangs; it happened to the spool worker's timer. mailmgr supports 3.11, so it uses
`async with asyncio.timeout(...)` everywhere instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "mailmgr"


def _wait_for_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), str(path))
    lines = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "wait_for" and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "asyncio"):
            lines.append(node.lineno)
    return lines


def test_no_asyncio_wait_for_in_the_package() -> None:
    found = {
        str(path.relative_to(PACKAGE.parent)): lines
        for path in sorted(PACKAGE.rglob("*.py"))
        if (lines := _wait_for_calls(path))
    }
    assert found == {}, f"use `async with asyncio.timeout(...)`, not asyncio.wait_for: {found}"


def test_the_rule_sees_a_call(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import asyncio\nasync def f(e):\n    await asyncio.wait_for(e.wait(), 1)\n")
    assert _wait_for_calls(sample) == [3]
