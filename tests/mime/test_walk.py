"""The bounded MIME walker: structure, RFC 2231, encodings, bounds, and the same answers as the
email package (today's has-attachments rule and Q Business body) on ordinary mail."""

from __future__ import annotations

import email.policy
import time
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from mailmgr.archive.fields import has_attachments
from mailmgr.mime import walk
from tests.mime.mime_corpus import corpus


def stdlib_has_attachments(content: bytes) -> bool:
    """The rule as it was computed before the walker (archive/fields.py at 4576c39)."""
    msg = BytesParser(policy=email.policy.default).parsebytes(content)
    for part in msg.walk():
        if part.get_content_maintype() == "multipart":
            continue
        if part.get_content_disposition() == "attachment":
            return True
        if part.get_filename() and part.get_content_maintype() != "text":
            return True
    return False


def stdlib_body(content: bytes) -> tuple[str, str]:
    """The Q Business body as it was computed before (actions/qbusiness.py at 4576c39)."""
    parsed = BytesParser(policy=email.policy.default).parsebytes(content)
    assert isinstance(parsed, EmailMessage)
    part = parsed.get_body(preferencelist=("plain", "html"))
    if part is None:
        return "plain", ""
    text = part.get_content()
    return part.get_content_subtype(), text


def walked_body(content: bytes) -> tuple[str, str]:
    return walk.text_body(content, walk.walk(content))


@pytest.mark.parametrize("index", range(len(corpus())))
def test_same_answers_as_the_email_package_on_ordinary_mail(index: int) -> None:
    content = corpus()[index]
    assert has_attachments(content) == stdlib_has_attachments(content)
    assert walk.has_attachments(walk.walk(content)) == stdlib_has_attachments(content)
    assert walked_body(content) == stdlib_body(content)
    assert not walk.walk(content).truncated


def test_corpus_covers_both_answers() -> None:
    answers = {stdlib_has_attachments(c) for c in corpus()}
    kinds = {stdlib_body(c)[0] for c in corpus()}
    assert answers == {True, False}
    assert kinds == {"plain", "html"}


def _multipart(parts: list[bytes], boundary: str = "B", ctype: str = "multipart/mixed") -> bytes:
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    head = f"Content-Type: {ctype}; boundary=\"{boundary}\"\r\n\r\n".encode()
    return head + body + b"--" + boundary.encode() + b"--\r\n"


def test_nested_structure_and_offsets() -> None:
    inner = _multipart([b"Content-Type: text/plain\r\n\r\none", b"Content-Type: text/html\r\n"
                        b"\r\n<p>two</p>"], "inner", "multipart/alternative")
    content = b"From: a@b.test\r\n" + _multipart([inner, b"Content-Type: image/gif; name=x.gif"
                                                  b"\r\n\r\nGIF"], "outer")
    tree = walk.walk(content)
    assert tree.parts == 5 and not tree.truncated
    alt, gif = tree.root.children
    assert alt.content_type.value == "multipart/alternative"
    assert [content[c.body_start:c.body_end] for c in alt.children] == [b"one", b"<p>two</p>"]
    assert gif.filename == "x.gif" and walk.has_attachments(tree)
    assert walked_body(content) == ("plain", "one")


def test_a_line_that_only_starts_with_the_delimiter_is_not_one() -> None:
    content = _multipart([b"Content-Type: text/plain\r\n\r\n--Bx not a delimiter\r\n--B-- x"])
    tree = walk.walk(content)
    (part,) = tree.root.children
    assert content[part.body_start:part.body_end] == b"--Bx not a delimiter\r\n--B-- x"


def test_message_rfc822_is_walked_and_its_attachment_counts() -> None:
    inner = (b"Subject: in\r\n" + _multipart([b"Content-Type: text/plain\r\n\r\nx",
             b"Content-Type: application/zip\r\nContent-Disposition: attachment; filename=a.zip"
             b"\r\n\r\nPK"], "in"))
    content = _multipart([b"Content-Type: text/plain\r\n\r\nouter",
                          b"Content-Type: message/rfc822\r\n\r\n" + inner])
    tree = walk.walk(content)
    rfc822 = tree.root.children[1]
    assert rfc822.children[0].content_type.value == "multipart/mixed"
    assert walk.has_attachments(tree) and stdlib_has_attachments(content)
    assert walked_body(content) == ("plain", "outer")  # embedded messages are not the body


@pytest.mark.parametrize(("header", "expected"), [
    ("attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf", "résumé.pdf"),
    ("attachment; filename*1=\"sum.pdf\"; filename*0*=utf-8''r%C3%A9", "résum.pdf"),
    ("attachment; filename*0=\"a b\"; filename*1=\" c\"", "a b c"),
    ("attachment; filename=\"plain\"; filename*=iso-8859-1'fr'caf%E9", "café"),
    ("attachment (a comment; x=y) ; filename = \"q\\\"uoted\" (c)", 'q"uoted'),
    ("attachment; filename*=unknown-charset''%C3%A9", "é"),
    ("attachment; filename*=punycode''abc", "abc"),
])
def test_rfc2231_and_rfc2045_parameters(header: str, expected: str) -> None:
    value = walk.parse_header_value(header)
    assert value.value == "attachment"
    assert value.param("filename") == expected


def test_unknown_charset_is_read_as_utf8() -> None:
    # deliberately different: the email package raises LookupError, and Q Business got "".
    content = b"Content-Type: text/plain; charset=no-such-charset\r\n\r\ncaf\xc3\xa9"
    assert walked_body(content) == ("plain", "café")
    with pytest.raises(LookupError):
        stdlib_body(content)


@pytest.mark.parametrize(("cte", "charset", "body", "text"), [
    ("8bit", "iso-8859-1", b"caf\xe9", "café"),
])
def test_charset_table_is_shared(cte: str, charset: str, body: bytes, text: str) -> None:
    content = (f"Content-Type: text/plain; charset={charset}\r\n"
               f"Content-Transfer-Encoding: {cte}\r\n\r\n").encode() + body
    assert walked_body(content) == stdlib_body(content) == ("plain", text)


@pytest.mark.parametrize(("cte", "charset", "body", "text"), [
    ("quoted-printable", "utf-8", b"caf=C3=A9 =\r\nsoft", "café soft"),
    ("base64", "utf-8", b"Y2Fmw6k", "café"),  # missing padding
    ("base64", "utf-8", b"Y2Fm\r\nw6k=\r\n", "café"),
    ("8bit", "iso-8859-1", b"caf\xe9", "café"),
    ("7bit", "us-ascii", b"caf\xc3\xa9", "caf\ufffd\ufffd"),
])
def test_transfer_encodings_and_charsets(cte: str, charset: str, body: bytes, text: str) -> None:
    content = (f"Content-Type: text/plain; charset={charset}\r\n"
               f"Content-Transfer-Encoding: {cte}\r\n\r\n").encode() + body
    assert walked_body(content) == ("plain", text)
    assert stdlib_body(content) == ("plain", text)


# --- bounds -----------------------------------------------------------------------------------


def many_parts(n: int) -> bytes:
    parts = "".join(f"--B\r\nContent-Type: text/plain\r\n\r\np{i}\r\n" for i in range(n))
    return (b"From: a@b.test\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
            + parts.encode() + b"--B\r\nContent-Disposition: attachment; filename=a.bin\r\n"
            b"\r\nx\r\n--B--\r\n")


def _timed(content: bytes) -> tuple[walk.MimeTree, float]:
    started = time.process_time()
    tree = walk.walk(content)
    walk.has_attachments(tree)
    walked_body(content)
    return tree, time.process_time() - started


def test_part_bound_stops_a_100k_part_message_fast() -> None:
    content = many_parts(100_000)
    tree, cpu = _timed(content)
    assert tree.truncated and tree.parts == walk.MAX_PARTS
    assert cpu < 0.5, cpu
    # deliberately different from the email package: the attachment is part 100,002
    assert not walk.has_attachments(tree)
    assert walked_body(content) == ("plain", "p0")


def test_under_the_bound_nothing_is_cut() -> None:
    tree = walk.walk(many_parts(walk.MAX_PARTS - 3))
    assert not tree.truncated and walk.has_attachments(tree)


def _depth(part: walk.Part) -> int:
    depth = 0
    while part.children:
        part = part.children[0]
        depth += 1
    return depth


def test_deep_multipart_nesting_stops_at_the_depth_bound() -> None:
    levels = 10_000
    head = "".join(f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
                   for i in range(levels))
    content = (head + "Content-Disposition: attachment; filename=deep.bin\r\n\r\nx").encode()
    tree, cpu = _timed(content)
    assert tree.truncated and _depth(tree.root) == walk.MAX_DEPTH
    assert cpu < 0.5, cpu


def test_many_message_rfc822_levels_stop_at_the_depth_bound() -> None:
    content = b"Content-Type: message/rfc822\r\n\r\n" * 50_000 + b"Subject: x\r\n\r\nbody"
    tree, cpu = _timed(content)
    assert tree.truncated and _depth(tree.root) == walk.MAX_DEPTH
    assert cpu < 0.5, cpu


def test_a_boundary_that_never_closes_runs_to_the_end() -> None:
    content = (b"Content-Type: multipart/mixed; boundary=Z\r\n\r\n--Z\r\n"
               b"Content-Type: text/plain\r\n\r\n" + b"line\r\n" * 500_000)
    tree, cpu = _timed(content)
    (part,) = tree.root.children
    assert part.body_end == len(content) and not tree.truncated
    assert cpu < 0.5, cpu


def test_a_huge_single_part_is_linear() -> None:
    body = b"QUJD" * 2_000_000  # 8 MB of base64
    content = (b"Content-Type: multipart/mixed; boundary=H\r\n\r\n--H\r\nContent-Type: text/plain"
               b"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body + b"\r\n--H--\r\n")
    _, cpu = _timed(content)
    assert walked_body(content) == ("plain", "ABC" * 2_000_000)
    assert cpu < 1.0, cpu


def test_parts_with_giant_header_sections() -> None:
    giant = b"".join(b"X-H%d: v\r\n" % i for i in range(3_000))  # ~30 KB of header per part
    parts = [giant + b"Content-Type: image/png; name=p.png\r\n\r\nx" for _ in range(20)]
    tree, cpu = _timed(_multipart(parts))
    assert len(tree.root.children) == 20 and walk.has_attachments(tree)
    assert cpu < 2.0, cpu


def test_a_header_section_over_the_bound_is_cut_and_the_walk_goes_on() -> None:
    giant = b"X-Pad: " + b"v" * (walk.MAX_HEADER_BYTES + 10) + b"\r\n"
    content = _multipart([giant + b"Content-Type: image/png; name=p.png\r\n\r\nx",
                          b"Content-Type: image/gif; name=g.gif\r\n\r\ny"])
    tree = walk.walk(content)
    first, second = tree.root.children
    assert tree.truncated and first.filename is None and second.filename == "g.gif"
    # the reader stops before the over-long line (mailmgr.mime.headers): the rest is body
    assert first.body_start == first.header_start


def test_a_huge_boundary_makes_an_opaque_part() -> None:
    boundary = "b" * (walk.MAX_BOUNDARY + 1)
    tree = walk.walk(_multipart([b"Content-Type: image/png; name=p.png\r\n\r\nx"], boundary))
    assert tree.root.children == ()


@pytest.mark.parametrize("content", [
    b"", b"\r\n", b"Content-Type: multipart/mixed\r\n\r\n--x\r\n", b"Content-Type: ;;;===\r\n\r\n",
    b"Content-Type: multipart/mixed; boundary=\"\r\n\r\n--\r\n", b"\x00\xff" * 100,
    b"Content-Type: message/rfc822", b"Content-Type: text/plain; charset*=''\r\n\r\nx",
])
def test_malformed_input_never_raises(content: bytes) -> None:
    tree = walk.walk(content)
    walk.has_attachments(tree)
    walked_body(content)
