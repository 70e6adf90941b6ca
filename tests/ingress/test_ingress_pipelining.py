"""Addresses parse the same on the fast path (plain `<a@b>`) and the full parser's path."""

from __future__ import annotations

from ingress_support import Connect, Running


async def test_plain_and_unusual_addresses_in_one_pipelined_transaction(
    running: Running, connect: Connect
) -> None:
    client = await connect(running.host, running.port)
    assert (await client.reply())[0] == 220
    await client.send(
        b"EHLO c\r\n"
        b"MAIL FROM:<o'brien+tag@sub.example.test> SIZE=100\r\n"
        b'RCPT TO:<"quoted local"@x.test>\r\n'  # not a dot-string: the full grammar decides
        b"RCPT TO:<first.last@x.test>\r\n"
        b"RCPT TO:<a..b@x.test>\r\n"  # empty atom: accepted for compatibility (ingress/syntax)
        b"RCPT TO:<c@x.test>junk\r\n"  # no space before the parameters: a path syntax error
        b"RCPT TO:<c@>\r\n"  # malformed
        b"DATA\r\n"
    )
    codes = [(await client.reply())[0] for _ in range(8)]
    assert codes == [250, 250, 250, 250, 250, 501, 501, 354]
    await client.send(b"x\r\n.\r\nQUIT\r\n")
    assert (await client.reply())[0] == 250
    assert (await client.reply())[0] == 221
    envelope = running.acceptor.accepted[0].envelope
    assert envelope.mail_from == "o'brien+tag@sub.example.test"
    assert envelope.rcpt_to == ('"quoted local"@x.test', "first.last@x.test", "a..b@x.test")
