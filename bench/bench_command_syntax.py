"""Command-argument grammar benchmark (not a test): µs per MAIL/RCPT/EHLO argument through
mailmgr.ingress.syntax, for the forms real clients send.

    .venv/bin/python bench/bench_command_syntax.py [-n 100000]

Before issue 10 a plain `MAIL FROM:<a@b.c>` took ~0.95 µs (a regex fast path and
`parse_params`), any other path ~40 µs (the stdlib header parser). Measured on the 2-core dev
machine after the change: plain 1.1 µs, `SIZE=... BODY=8BITMIME` 2.9 µs (was 1.75), a quoted
local part 4 µs. Take the minimum of several runs; the machine is shared.
"""

from __future__ import annotations

import argparse
import timeit

from mailmgr.ingress.syntax import helo_domain, mail_command, rcpt_command

MAIL = {
    "plain": "FROM:<a@b.c>",
    "null": "FROM:<>",
    "size+body": "FROM:<alice@example.test> SIZE=1234 BODY=8BITMIME",
    "auth": "FROM:<alice@example.test> AUTH=alice+2Bsub@example.test",
    "quoted": 'FROM:<"a b"@example.test>',
    "utf8": "FROM:<jörg@bücher.example> SMTPUTF8",
    "control (refused)": 'FROM:<"a\rX: y"@example.test>',
}
RCPT = {"plain": "TO:<bob@example.test>", "postmaster": "TO:<Postmaster>"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=100_000)
    n = parser.parse_args().n

    def per_call(call: object) -> float:
        assert callable(call)
        return min(timeit.repeat(call, number=n, repeat=7)) / n * 1e6

    for name, arg in MAIL.items():
        us = per_call(lambda a=arg: mail_command(a, extended=True, auth_offered=True,
                                                 max_size=41_943_040))
        print(f"MAIL {name:18} {us:6.2f} µs")
    for name, arg in RCPT.items():
        us = per_call(lambda a=arg: rcpt_command(a, extended=True, smtputf8=False))
        print(f"RCPT {name:18} {us:6.2f} µs")
    print(f"EHLO {'name':18} {per_call(lambda: helo_domain('mail.example.test')):6.2f} µs")


if __name__ == "__main__":
    main()
