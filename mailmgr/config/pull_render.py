"""YAML text of a pulled config (config/pull.py): PyYAML for the values, then the header and the
`# mailmgr placeholder:` comments inserted before the entries and keys they are about.

Pure: returns text; multi-line strings (PEM trust stores) are written as literal blocks.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import yaml

from mailmgr.config.pull import PLACEHOLDER, Note, PulledConfig

WIDTH = 100
# A key of the entry (or of the Server mapping) as PyYAML writes it: "- Key:" or "  Key:".
_TOP_KEY = re.compile(r"(?:- |  )([A-Za-z0-9]+):")


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)  # lists indented under their key, as people write


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(value: Any) -> list[str]:
    text = yaml.dump(value, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=WIDTH)
    return text.splitlines()


def _comment(text: str, indent: str) -> list[str]:
    lines = textwrap.wrap(PLACEHOLDER + text, WIDTH - len(indent) - 4, break_long_words=False,
                          break_on_hyphens=False)
    return [f"{indent}# {lines[0]}"] + [f"{indent}#   {line}" for line in lines[1:]]


def _annotate(lines: list[str], notes: list[Note], indent: str) -> list[str]:
    """`lines` (one entry or mapping as dumped), indented by `indent`, with each note's comment
    before its key, or before the first line for a note about the whole entry."""
    by_key: dict[str | None, list[Note]] = {}
    for note in notes:
        by_key.setdefault(note.key, []).append(note)
    out: list[str] = []
    for n, line in enumerate(lines):
        match = _TOP_KEY.match(line)
        keys: list[str | None] = [match.group(1)] if match else []
        if n == 0:
            keys.insert(0, None)
        for key in keys:
            for note in by_key.get(key, []):
                out += _comment(note.text, indent if key is None else indent + "  ")
        out.append(indent + line)
    return out


def render(pulled: PulledConfig) -> str:
    """The config file's text: header comment, then each section of the document."""
    out = [f"# {line}".rstrip() for line in pulled.header]
    for section, value in pulled.document.items():
        out.append("")
        notes = [n for n in pulled.notes if n.section == section]
        if isinstance(value, list):
            out.append(f"{section}:")
            for i, entry in enumerate(value):
                out += _annotate(_dump([entry]), [n for n in notes if n.index == i], "  ")
        else:
            dumped = _dump({section: value})
            out += dumped[:1] + _annotate(dumped[1:], notes, "")
    return "\n".join(out) + "\n"
