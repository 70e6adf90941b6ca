"""Per-recipient outcomes through the real executor: 250/550/451, retries, exhaustion, outages."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from relay_support import Handler, RelayServer, Walk, free_port, make_message, make_relay

from mailmgr.config.models import ActionFailurePolicy, RetryPolicy

Relays = Callable[..., RelayServer]
A, B, C = "a@example.net", "b@example.net", "c@example.net"
CONTINUE, DROP = ActionFailurePolicy.CONTINUE, ActionFailurePolicy.DROP


@pytest.mark.parametrize("policy", [CONTINUE, DROP])
async def test_mixed_replies_each_handled_nobody_twice(
    relays: Relays, policy: ActionFailurePolicy
) -> None:
    handler = Handler(rcpt_replies={B: ["550 5.1.1 no such user"], C: ["451 4.3.0 try later"]})
    server = await relays(handler).start()
    walk = Walk(make_relay(server.port), policy=policy)
    message = make_message(rcpts=(A, B, C))

    state = await walk(message)
    assert not state.done and state.attempts == 1  # waiting for the retry of C
    assert handler.delivered_to() == [A]
    resume = json.loads(dict(state.action_data)["0.0"])
    assert resume["accepted"] == [A] and list(resume["refused"]) == [B]

    state = await walk(message, state)  # the retry: only C is tried
    assert state.done
    assert sorted(handler.delivered_to()) == [A, C]  # each exactly once; B never
    assert [msg.rcpt_tos for msg in handler.received] == [[A], [C]]
    if policy is DROP:  # the policy hits the refused recipient only
        assert state.live == (A, C)
    else:
        assert state.live == (A, B, C)


async def test_deferred_recipient_fails_alone_when_retries_are_exhausted(relays: Relays) -> None:
    handler = Handler(rcpt_replies={C: ["451 4.3.0 try later"]})
    server = await relays(handler).start()
    walk = Walk(make_relay(server.port), policy=DROP, retry=RetryPolicy(1, 2, max_age=0))
    state = await walk(make_message(rcpts=(A, C)))
    assert state.done
    assert handler.delivered_to() == [A]
    assert state.live == (A,)  # the delivered one stays live; only C is dropped


async def test_everyone_refused_applies_the_policy_to_all(relays: Relays) -> None:
    handler = Handler(rcpt_replies={A: ["550 no"], B: ["553 no"]})
    server = await relays(handler).start()
    state = await Walk(make_relay(server.port), policy=DROP)(make_message(rcpts=(A, B)))
    assert state.done and state.live == () and set(state.dropped) == {A, B}
    assert handler.received == []


async def test_data_4xx_is_retried_and_delivered_once(relays: Relays) -> None:
    handler = Handler(data_replies=["452 4.3.1 insufficient storage"])
    server = await relays(handler).start()
    walk = Walk(make_relay(server.port), policy=CONTINUE)
    message = make_message(rcpts=(A, B))
    state = await walk(message)
    assert not state.done and handler.received == []
    state = await walk(message, state)
    assert state.done and [m.rcpt_tos for m in handler.received] == [[A, B]]


async def test_relay_down_then_up_delivers_exactly_once(relays: Relays) -> None:
    port = free_port()
    walk = Walk(make_relay(port), policy=CONTINUE)
    message = make_message(rcpts=(A,))
    state = await walk(message)  # connection refused
    state = await walk(message, state)
    assert not state.done and state.attempts == 2
    handler = Handler()
    await relays(handler, port=port).start()
    state = await walk(message, state)
    assert state.done and state.live == (A,)
    assert handler.delivered_to() == [A]
    assert await walk(message, state) == state  # a finished message is never re-sent
    assert handler.delivered_to() == [A]


async def test_relay_down_past_max_age_fails_permanently(relays: Relays) -> None:
    walk = Walk(make_relay(free_port()), policy=DROP, retry=RetryPolicy(1, 2, max_age=0))
    state = await walk(make_message(rcpts=(A, B)))
    assert state.done and state.dropped == (A, B)
