"""MIME walk benchmark (not a test): CPU time of the archive has-attachments rule and of the Q
Business body extraction, the email package (before) against mailmgr.mime.walk (after).

    .venv/bin/python bench/bench_mime_walk.py [--repeat 200]

Messages: an ordinary 10 KB one (text + alternative HTML + a small attachment), and hostile 06's
shape with 10,000 and 100,000 tiny parts (the email package is timed once on those: seconds).
"""

from __future__ import annotations

import argparse
import email.policy
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.parser import BytesParser

from mailmgr.mime import walk


def before_has_attachments(content: bytes) -> bool:
    msg = BytesParser(policy=email.policy.default).parsebytes(content)
    for part in msg.walk():
        if part.get_content_maintype() == "multipart":
            continue
        if part.get_content_disposition() == "attachment":
            return True
        if part.get_filename() and part.get_content_maintype() != "text":
            return True
    return False


def before_body(content: bytes) -> str:
    parsed = BytesParser(policy=email.policy.default).parsebytes(content)
    assert isinstance(parsed, EmailMessage)
    part = parsed.get_body(preferencelist=("plain", "html"))
    return "" if part is None else str(part.get_content())


def after_has_attachments(content: bytes) -> bool:
    return walk.has_attachments(walk.walk(content))


def after_body(content: bytes) -> str:
    return walk.text_body(content, walk.walk(content))[1]


def normal_10k() -> bytes:
    m = EmailMessage()
    m["From"] = "Alice <alice@example.com>"
    m["To"] = "bob@example.org"
    m["Subject"] = "quarterly numbers"
    m.set_content("Hello Bob,\n" + "the numbers are attached. " * 150 + "\n")
    m.add_alternative("<p>Hello Bob,</p>" + "<p>the numbers are attached.</p>" * 80,
                      subtype="html")
    m.add_attachment(b"a,b,c\n1,2,3\n" * 200, maintype="text", subtype="csv",
                     filename="numbers.csv")
    return m.as_bytes()


def many_parts(n: int) -> bytes:
    parts = "".join(f"--B\r\nContent-Type: text/plain\r\n\r\np{i}\r\n" for i in range(n))
    return (b"From: a@b.test\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
            + parts.encode() + b"--B\r\nContent-Disposition: attachment; filename=a.bin\r\n"
            b"\r\nx\r\n--B--\r\n")


def cpu(fn: Callable[[bytes], object], content: bytes, repeat: int) -> float:
    started = time.process_time()
    for _ in range(repeat):
        fn(content)
    return (time.process_time() - started) / repeat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    cases = [("normal 10 KB", normal_10k(), args.repeat), ("mime10k", many_parts(10_000), 1),
             ("mime100k", many_parts(100_000), 1)]
    for name, content, repeat in cases:
        print(f"{name} ({len(content):,} bytes)")
        for label, old, new in (("has_attachments", before_has_attachments, after_has_attachments),
                                ("text body", before_body, after_body)):
            b = cpu(old, content, repeat)
            a = cpu(new, content, max(repeat, 20))
            print(f"  {label:16} before {b * 1e6:12,.0f} us   after {a * 1e6:10,.0f} us")


if __name__ == "__main__":
    main()
