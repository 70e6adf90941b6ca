"""A header section cut at a bound or ended by a non-field line: what the reader did not see
must not reach the next hop as a header field (a forged Authentication-Results, a second From)."""

from __future__ import annotations

import email.parser
import email.policy

import pytest

from mailmgr.message import Envelope, InboundMessage, ProcessingState, SessionFacts
from mailmgr.mime import headers
from mailmgr.mime.headers import read, with_headers
from mailmgr.smtpclient.wire import to_wire
from mailmgr.verdicts.auth_results import STAMP_KEY, message_for_actions, stamp
from mailmgr.verdicts.dmarc import from_domains

OURS = "mx.mailmgr.test"
HIDDEN = (b"Authentication-Results: mx.mailmgr.test; dmarc=pass header.from=bank.test\r\n"
          b"From: ceo@bank.test\r\n")


def _over_fields() -> bytes:
    return b"".join(b"X-Pad-%d: v\r\n" % i for i in range(headers.MAX_FIELDS))


def _over_line() -> bytes:
    return b"X-Long: " + b"v" * (headers.MAX_LINE_BYTES + 1) + b"\r\n"


def _over_section() -> bytes:
    line = b"X-Pad: " + b"v" * 1000 + b"\r\n"
    return line * (headers.MAX_SECTION_BYTES // len(line) + 1)


def _seen(content: bytes) -> bytes:
    message = InboundMessage("0bounds000001", 1_795_000_000.0,
                             Envelope("m@evil.test", ("b@x.test",)),
                             SessionFacts("inp-1", "in", "192.0.2.1", helo="evil"), content)
    found = stamp(content, OURS, f"{OURS}; dmarc=none")
    return message_for_actions(message, ProcessingState(
        action_data=((STAMP_KEY, found.to_text()),))).content


def _non_field_line() -> bytes:
    return b"X Y: a\r\n"  # not a field (space in the name), no blank line before it (review)


def _nul_name() -> bytes:
    return b"X\x00: a\r\n"


@pytest.mark.parametrize("padding", [_over_fields, _over_line, _over_section, _non_field_line,
                                     _nul_name])
def test_nothing_past_the_bound_is_a_field_downstream(padding: object) -> None:
    assert callable(padding)
    content = b"Subject: padded\r\n" + padding() + HIDDEN + b"\r\nbody\r\n"
    section = read(content)
    assert section.truncated or not section.separator
    assert section.get_all("From") == () and section.get_all("Authentication-Results") == ()
    out = _seen(content)
    # our view of the copy actions see: our stamp and nothing past the bound
    seen = read(out)
    assert seen.get_all("From") == ()
    assert [" ".join(v.split()) for v in seen.get_all("Authentication-Results")] == [
        f"{OURS}; dmarc=none"]
    # the next hop's view (Relay's wire encoding, then the email package): the same
    wire = to_wire(out)[:-3]
    downstream = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(wire)
    assert downstream.get_all("From") is None
    assert [" ".join(str(v).split()) for v in downstream.get_all("Authentication-Results")] == [
        f"{OURS}; dmarc=none"]
    # DMARC does not evaluate a From it cannot see (and treats the cut section as such)
    assert "bank.test" not in from_domains(content)
    # AddHeader after the stamp lands in the header section (before the added blank line) for
    # the next hop (our reader may still stop before it when the section is at the field bound)
    tagged = with_headers(out, (("X-Tag", "yes"),))
    parsed = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(tagged)
    assert parsed["X-Tag"] == "yes" and parsed.get_all("From") is None
