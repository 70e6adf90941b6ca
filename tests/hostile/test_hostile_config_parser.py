"""The bounded YAML loader (libyaml events when available, Python composer with the node, depth
and alias bounds) reads what PyYAML's own SafeLoader reads: a differential fuzz over dumped
documents and hand-written YAML, so the speed-up and the bounds change no accepted config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmgr.config.documents import parse_document
from mailmgr.config.fields import Ctx, Sink

EXAMPLES = int(os.environ.get("MAILMGR_FUZZ_EXAMPLES", "300"))
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
_DATA = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
        st.text(min_size=1, max_size=10), inner, max_size=5),
    max_leaves=30,
)


def _ours(text: str) -> tuple[bool, Any, list[str]]:
    sink = Sink()
    ok, data = parse_document(Ctx("f.yaml", Path("."), sink), text, ".yaml")
    return ok, data, [p.message for p in sink.problems]


@settings(max_examples=EXAMPLES, deadline=None)
@given(data=_DATA, flow=st.sampled_from([None, True, False]))
def test_dumped_documents_load_as_with_safe_loader(data: Any, flow: bool | None) -> None:
    text = yaml.safe_dump({"root": data}, default_flow_style=flow, allow_unicode=True)
    ok, loaded, problems = _ours(text)
    assert ok, problems
    assert loaded == yaml.load(text, Loader=yaml.SafeLoader)


@settings(max_examples=EXAMPLES, deadline=None)
# No `!`: a bare non-specific tag (`a: !`) is '' in libyaml and None in the Python parser.
@given(text=st.text(alphabet="ab:-[]{}&*|'\"#,?\n 019.é", max_size=200))
def test_text_accepted_by_both_loads_the_same(text: str) -> None:
    try:
        expected = yaml.load(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError):
        return  # refused by PyYAML: ours refuses with a problem (the fuzz in _documents)
    ok, loaded, _ = _ours(text)
    if ok:  # ours may refuse more (duplicate keys, collection keys), never load differently
        assert loaded == expected
