"""Differential fuzz: random well-formed MIME trees (built by the email package) get the same
has-attachments answer and the same Q Business body from the walker as from the email package.
CI runs a bounded number of examples; MAILMGR_FUZZ_EXAMPLES=5000 runs more."""

from __future__ import annotations

import email.encoders
import email.policy
import os
from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailmgr.mime import walk
from tests.mime.test_walk import stdlib_body, stdlib_has_attachments

EXAMPLES = int(os.environ.get("MAILMGR_FUZZ_EXAMPLES", "150"))
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=40)
_NAME = st.one_of(st.none(), st.text("abcxyz é.-_", min_size=1, max_size=12))


@st.composite
def leaf(draw: st.DrawFn) -> Message:
    kind = draw(st.sampled_from(["plain", "html", "csv", "image", "app", "rfc822"]))
    part: Message
    if kind in ("plain", "html", "csv"):
        charset = draw(st.sampled_from(["utf-8", "iso-8859-1", "us-ascii"]))
        text = draw(_TEXT)
        if charset != "utf-8":
            text = text.encode(charset, "replace").decode(charset)
        part = MIMEText(text + "\n", kind, charset)
    elif kind == "rfc822":
        inner = EmailMessage()
        inner["Subject"] = "inner"
        inner.set_content(draw(_TEXT) + "\n")
        part = MIMEMessage(inner)
    else:
        maintype, subtype = ("image", "png") if kind == "image" else ("application", "pdf")
        part = MIMEBase(maintype, subtype)
        part.set_payload(draw(st.binary(max_size=30)))
        email.encoders.encode_base64(part)
    disposition = draw(st.sampled_from([None, "inline", "attachment"]))
    filename = draw(_NAME)
    if disposition:
        if filename and not filename.isascii():
            part.add_header("Content-Disposition", disposition, filename=("utf-8", "", filename))
        elif filename:
            part.add_header("Content-Disposition", disposition, filename=filename)
        else:
            part.add_header("Content-Disposition", disposition)
    elif filename and filename.isascii():
        part.set_param("name", filename)
    return part


def tree(depth: int = 3) -> st.SearchStrategy[Message]:
    if depth == 0:
        return leaf()
    return st.one_of(leaf(), st.builds(
        _multipart, st.sampled_from(["mixed", "alternative", "related", "digest"]),
        st.lists(tree(depth - 1), min_size=0, max_size=4)))


def _multipart(subtype: str, parts: list[Message]) -> Message:
    m = MIMEMultipart(subtype)
    for p in parts:
        m.attach(p)
    return m


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(tree(), st.booleans())
def test_walker_agrees_with_the_email_package(message: Message, lf_only: bool) -> None:
    message["Subject"] = "fuzz"
    content = message.as_bytes(policy=email.policy.compat32 if lf_only else email.policy.SMTP)
    expected_body = stdlib_body(content)
    assert walk.has_attachments(walk.walk(content)) == stdlib_has_attachments(content)
    assert walk.text_body(content, walk.walk(content)) == expected_body
