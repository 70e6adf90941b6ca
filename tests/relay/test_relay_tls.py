"""STARTTLS, certificate verification and AUTH with a Secrets Manager secret (moto)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable

import boto3
import pytest
from relay_support import (
    Pki,
    RelayServer,
    Walk,
    authenticator,
    make_action,
    make_input,
    make_message,
    make_relay,
)

from mailmgr.aws import AwsClients, AwsSettings, SecretStore
from mailmgr.config.models import ActionFailurePolicy, RelayTls, RetryPolicy
from mailmgr.errors import TemporaryActionError

Relays = Callable[..., RelayServer]
PASSWORD = "s3cret-Pa55"


@pytest.fixture
async def secrets(aws_env: str) -> AsyncIterator[tuple[SecretStore, str]]:
    sm = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=aws_env)
    arn = sm.create_secret(Name="relay-credentials", SecretString=json.dumps(
        {"username": "relay-user", "password": PASSWORD}))["ARN"]
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=aws_env))
    try:
        yield SecretStore(clients), arn
    finally:
        await clients.close()


def tls_server(relays: Relays, pki: Pki, **extra: object) -> RelayServer:
    return relays(tls_context=pki.server_context, require_starttls=True, auth_required=True,
                  auth_require_tls=True, authenticator=authenticator({"relay-user": PASSWORD}),
                  **extra)


async def test_starttls_and_auth_with_a_secrets_manager_secret(
    relays: Relays, pki: Pki, secrets: tuple[SecretStore, str], caplog: pytest.LogCaptureFixture
) -> None:
    server = await tls_server(relays, pki).start()
    store, arn = secrets
    relay = make_relay(server.port, server_name="localhost", secret_arn=arn,
                       tls=RelayTls(required=True, ca_file=pki.ca_file))
    with caplog.at_level(logging.DEBUG, logger="mailmgr"):
        await make_action(relay, secrets=store).run(make_input(make_message()))
    (got,) = server.handler.received
    assert (got.auth_user, got.tls) == ("relay-user", True)
    assert PASSWORD not in caplog.text


async def test_wrong_password_defers_and_sends_nothing(
    relays: Relays, pki: Pki, secrets: tuple[SecretStore, str]
) -> None:
    server = await relays(tls_context=pki.server_context, auth_required=True,
                          authenticator=authenticator({"relay-user": "other"})).start()
    store, arn = secrets
    relay = make_relay(server.port, server_name="localhost", secret_arn=arn,
                       tls=RelayTls(ca_file=pki.ca_file))
    with pytest.raises(TemporaryActionError) as failure:
        await make_action(relay, secrets=store).run(make_input(make_message()))
    assert failure.value.code == "535"
    assert server.handler.received == []


async def test_untrusted_certificate_is_refused_unless_verify_is_off(
    relays: Relays, pki: Pki
) -> None:
    server = await relays(tls_context=pki.server_context).start()
    relay = make_relay(server.port, server_name="localhost")  # system CAs: ours is unknown
    with pytest.raises(TemporaryActionError) as failure:
        await make_action(relay).run(make_input(make_message()))
    assert failure.value.code == "SSLCertVerificationError"
    assert server.handler.received == []
    relaxed = make_relay(server.port, server_name="localhost", tls=RelayTls(verify=False))
    await make_action(relaxed).run(make_input(make_message()))
    (got,) = server.handler.received
    assert got.tls


async def test_wrong_server_name_fails_verification(relays: Relays, pki: Pki) -> None:
    server = await relays(tls_context=pki.server_context).start()
    relay = make_relay(server.port, server_name="127.0.0.2",
                       tls=RelayTls(ca_file=pki.ca_file))
    with pytest.raises(TemporaryActionError):
        await make_action(relay).run(make_input(make_message()))
    assert server.handler.received == []


async def test_starttls_is_used_when_offered_even_if_not_required(
    relays: Relays, pki: Pki
) -> None:
    server = await relays(tls_context=pki.server_context).start()
    relay = make_relay(server.port, server_name="localhost", tls=RelayTls(ca_file=pki.ca_file))
    await make_action(relay).run(make_input(make_message()))
    assert server.handler.received[0].tls


async def test_tls_required_without_starttls_fails_as_configured(relays: Relays) -> None:
    server = await relays().start()  # no STARTTLS offered
    relay = make_relay(server.port, tls=RelayTls(required=True))
    with pytest.raises(TemporaryActionError) as failure:
        await make_action(relay).run(make_input(make_message()))
    assert failure.value.code == "TlsRequired"  # deferred like an MTA, never sent in clear
    walk = Walk(relay, policy=ActionFailurePolicy.DROP, retry=RetryPolicy(1, 2, max_age=0))
    state = await walk(make_message(rcpts=("a@example.net",)))
    assert state.done and state.dropped == ("a@example.net",)  # then the policy applies
    assert server.handler.received == []
