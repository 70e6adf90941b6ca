"""Messages reach the Acceptor seam byte for byte, with the right envelope and session facts."""

from __future__ import annotations

import asyncio
import smtplib

from ingress_support import HOSTNAME, Connect, RawClient, Running, StartServer

from mailmgr.message import is_message_id


async def _transaction(
    client: RawClient, body: bytes, rcpts: tuple[str, ...] = ("r@x.test",)
) -> tuple[int, list[str]]:
    assert (await client.reply())[0] == 220
    assert (await client.command("EHLO client.test"))[0] == 250
    assert (await client.command("MAIL FROM:<s@x.test>"))[0] == 250
    for rcpt in rcpts:
        assert (await client.command(f"RCPT TO:<{rcpt}>"))[0] == 250
    assert (await client.command("DATA"))[0] == 354
    await client.send(body)
    return await client.reply()


def _smtplib_send(host: str, port: int, body: bytes, rcpts: list[str]) -> tuple[int, bytes]:
    with smtplib.SMTP(host, port, local_hostname="client.test", timeout=10) as smtp:
        smtp.ehlo()
        smtp.mail("sender@x.test")
        for rcpt in rcpts:
            smtp.rcpt(rcpt)
        return smtp.data(body)


async def test_smtplib_message_is_queued_with_exact_bytes(running: Running) -> None:
    body = (
        b"Subject: dots\r\n\r\n"
        b".leading dot\r\n"
        b"..two dots\r\n"
        b".\r\n"
        b"..\r\n"
        b"middle . dot\r\n"
        b"8bit \xe9\xff raw\r\n"
        b"bare\nlf\r\n"
        b"last line\r\n"
    )
    code, text = await asyncio.to_thread(
        _smtplib_send, running.host, running.port, body, ["a@x.test", "b+tag@x.test"]
    )
    assert code == 250
    [accepted] = running.acceptor.accepted
    assert text.decode() == f"2.0.0 Ok: queued as {accepted.message_id}"
    assert is_message_id(accepted.message_id)
    assert accepted.content == body
    assert accepted.envelope.mail_from == "sender@x.test"
    assert accepted.envelope.rcpt_to == ("a@x.test", "b+tag@x.test")
    facts = accepted.session
    assert (facts.ingress_point_id, facts.ingress_point_name) == ("inp-test", "test")
    assert facts.peer_ip == "127.0.0.1" and facts.peer_port > 0
    assert facts.helo == "client.test"
    assert (facts.tls, facts.tls_wrapped, facts.tls_protocol, facts.tls_cipher) == (
        False,
        False,
        None,
        None,
    )


async def test_dot_stuffed_wire_bytes_are_restored(running: Running, connect: Connect) -> None:
    client = await connect(running.host, running.port)
    wire = b"a\r\n..\r\n...\r\n..x\r\n.y\r\nend\r\n.\r\n"
    code, lines = await _transaction(client, wire)
    assert code == 250, lines
    assert running.acceptor.accepted[0].content == b"a\r\n.\r\n..\r\n.x\r\ny\r\nend\r\n"


async def test_body_starting_with_stuffed_dot(running: Running, connect: Connect) -> None:
    client = await connect(running.host, running.port)
    assert (await _transaction(client, b"..\r\n.\r\n"))[0] == 250
    assert running.acceptor.accepted[0].content == b".\r\n"


async def test_empty_body(running: Running, connect: Connect) -> None:
    client = await connect(running.host, running.port)
    assert (await _transaction(client, b".\r\n"))[0] == 250
    assert running.acceptor.accepted[0].content == b""


async def test_body_of_one_empty_line(running: Running, connect: Connect) -> None:
    client = await connect(running.host, running.port)
    assert (await _transaction(client, b"\r\n.\r\n"))[0] == 250
    assert running.acceptor.accepted[0].content == b"\r\n"


async def test_body_without_final_crlf_keeps_the_terminator_crlf(
    running: Running, connect: Connect
) -> None:
    client = await connect(running.host, running.port)
    assert (await _transaction(client, b"x\r\n.\r\n"))[0] == 250
    assert running.acceptor.accepted[0].content == b"x\r\n"


async def test_one_megabyte_body(running: Running) -> None:
    line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"
    body = b"Subject: big\r\n\r\n" + line * (1_048_576 // len(line)) + b".dot line\r\n"
    code, _ = await asyncio.to_thread(_smtplib_send, running.host, running.port, body, ["a@x"])
    assert code == 250
    assert running.acceptor.accepted[0].content == body
    assert len(running.acceptor.accepted[0].content) > 1_000_000


async def test_terminator_split_across_writes(running: Running, connect: Connect) -> None:
    client = await connect(running.host, running.port)
    assert (await client.reply())[0] == 220
    await client.send(b"EHLO c\r\nMAIL FROM:<s@x>\r\nRCPT TO:<r@x>\r\nDATA\r\n")
    assert [(await client.reply())[0] for _ in range(4)] == [250, 250, 250, 354]
    for piece in (b"hello\r", b"\n", b".", b"\r", b"\n"):
        await client.send(piece)
        await asyncio.sleep(0.01)
    assert (await client.reply())[0] == 250
    assert running.acceptor.accepted[0].content == b"hello\r\n"


async def test_pipelined_transaction_and_commands_after_the_data(
    running: Running, connect: Connect
) -> None:
    client = await connect(running.host, running.port)
    assert (await client.reply())[0] == 220
    await client.send(
        b"EHLO c\r\nMAIL FROM:<> BODY=8BITMIME SMTPUTF8\r\n"
        b"RCPT TO:<a@x>\r\nRCPT TO:<\xc3\xa9@x>\r\nDATA\r\n"
    )
    codes = [(await client.reply())[0] for _ in range(5)]
    assert codes == [250, 250, 250, 250, 354]
    # RFC 2920: the message content may be followed by more commands in the same write.
    await client.send(b"body\r\n.\r\nMAIL FROM:<b@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n")
    assert [(await client.reply())[0] for _ in range(4)] == [250, 250, 250, 354]
    await client.send(b"second\r\n.\r\nQUIT\r\n")
    assert (await client.reply())[0] == 250
    assert (await client.reply())[0] == 221
    first, second = running.acceptor.accepted
    assert first.envelope.mail_from == ""
    assert first.envelope.rcpt_to == ("a@x", "é@x")
    assert (first.envelope.smtputf8, first.envelope.body_8bit) == (True, True)
    assert first.content == b"body\r\n"
    assert second.envelope.mail_from == "b@x" and second.content == b"second\r\n"
    assert (second.envelope.smtputf8, second.envelope.body_8bit) == (False, False)


async def test_rset_and_second_transaction_on_one_connection(
    running: Running, connect: Connect
) -> None:
    client = await connect(running.host, running.port)
    assert (await _transaction(client, b"one\r\n.\r\n"))[0] == 250
    assert (await client.command("MAIL FROM:<x@x>"))[0] == 250
    assert (await client.command("RSET"))[0] == 250
    assert (await client.command("RCPT TO:<r@x>"))[0] == 503
    assert len(running.acceptor.accepted) == 1


async def test_disconnect_during_data_never_calls_the_acceptor(
    running: Running, connect: Connect
) -> None:
    client = await connect(running.host, running.port)
    assert (await client.reply())[0] == 220
    await client.send(b"EHLO c\r\nMAIL FROM:<s@x>\r\nRCPT TO:<r@x>\r\nDATA\r\n")
    assert [(await client.reply())[0] for _ in range(4)] == [250, 250, 250, 354]
    await client.send(b"Subject: half\r\n\r\npartial body\r\n" * 1000)
    await client.close()
    for _ in range(100):
        if not running.server.active_sessions:
            break
        await asyncio.sleep(0.01)
    assert not running.server.active_sessions
    assert running.acceptor.calls == 0


async def test_spool_error_gives_generic_451(running: Running, connect: Connect) -> None:
    running.acceptor.fail = True
    client = await connect(running.host, running.port)
    code, lines = await _transaction(client, b"x\r\n.\r\n")
    assert (code, lines) == (451, ["4.3.0 Temporary local problem, try again later"])
    assert running.acceptor.calls == 1
    # The session stays usable and the next transaction can succeed.
    running.acceptor.fail = False
    assert (await client.command("MAIL FROM:<s@x>"))[0] == 250


async def test_policy_rejection_is_550_and_others_still_delivered(
    start_server: StartServer, connect: Connect
) -> None:
    running = await start_server(denied=frozenset({"no@x.test"}))
    client = await connect(running.host, running.port)
    assert (await client.reply())[0] == 220
    assert (await client.command("EHLO c"))[0] == 250
    assert (await client.command("MAIL FROM:<s@x>"))[0] == 250
    assert await client.command("RCPT TO:<no@x.test>") == (
        550,
        ["5.7.1 Recipient rejected by policy"],
    )
    assert (await client.command("RCPT TO:<yes@x.test>"))[0] == 250
    assert (await client.command("DATA"))[0] == 354
    assert (await client.command(b"m\r\n."))[0] == 250
    assert running.acceptor.accepted[0].envelope.rcpt_to == ("yes@x.test",)
    asked_session, _ = running.policy.asked[0]
    assert asked_session.peer_ip == "127.0.0.1" and asked_session.helo == "c"


async def test_all_recipients_rejected_then_data_is_554(
    start_server: StartServer, connect: Connect
) -> None:
    running = await start_server(denied=frozenset({"no@x.test"}))
    client = await connect(running.host, running.port)
    assert (await client.reply())[0] == 220
    await client.send(b"EHLO c\r\nMAIL FROM:<s@x>\r\nRCPT TO:<no@x.test>\r\nDATA\r\n")
    assert [(await client.reply())[0] for _ in range(4)] == [250, 250, 550, 554]
    assert running.acceptor.calls == 0


async def test_banner_names_host_only(running: Running, connect: Connect) -> None:
    client = await connect(running.host, running.port)
    code, [text] = await client.reply()
    assert (code, text) == (220, f"{HOSTNAME} ESMTP")


async def test_bare_lf_dot_does_not_end_data(running: Running, connect: Connect) -> None:
    """SMTP smuggling: only <CRLF>.<CRLF> ends the message, never <LF>.<LF> or <LF>.<CRLF>."""
    client = await connect(running.host, running.port)
    smuggled = (
        b"a\n.\nMAIL FROM:<evil@x>\r\nRCPT TO:<v@x>\r\nDATA\r\nforged\r\nb\r\n.\nc\n.\r\nd\r.\r\n"
    )
    code, _ = await _transaction(client, smuggled + b".\r\n")
    assert code == 250
    [accepted] = running.acceptor.accepted
    # The one line that starts with a dot after a CRLF loses it (RFC 5321 §4.5.2).
    assert accepted.content == smuggled.replace(b"b\r\n.\nc", b"b\r\n\nc")
    assert (await client.command("NOOP"))[0] == 250


async def test_failing_policy_gives_generic_451(running: Running, connect: Connect) -> None:
    running.policy.fail = True
    client = await connect(running.host, running.port)
    assert (await client.reply())[0] == 220
    assert (await client.command("EHLO c"))[0] == 250
    assert (await client.command("MAIL FROM:<s@x>"))[0] == 250
    assert await client.command("RCPT TO:<r@x>") == (
        451,
        ["4.3.0 Temporary local problem, try again later"],
    )
