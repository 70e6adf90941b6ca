"""AUTH with `SecretArn`: moto's Secrets Manager serves AWSCURRENT and AWSPREVIOUS; a rotated
secret is refetched after a failed login; an unreachable Secrets Manager gives 454."""

from __future__ import annotations

import json
import smtplib
import socket
import urllib.request
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from secure_support import Pki, plain_auth, ports, secure_config

from tests.support import ServerProcess

USER = "inp-auth"


def _config(tmp_path: Path, pki: Pki, endpoint: str, secret_arn: str) -> dict[str, Any]:
    config = secure_config(tmp_path, pki, Region="us-east-1", Aws={"EndpointUrl": endpoint})
    point = next(p for p in config["IngressPoints"] if p["IngressPointName"] == "auth")
    point["IngressPointConfiguration"] = {"SecretArn": secret_arn}
    config["IngressPoints"] = [point]
    return config


def _login(server: ServerProcess, pki: Pki, password: str) -> tuple[int, bytes]:
    port, _ = ports(server, "auth")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.starttls(context=pki.client_context())
        smtp.ehlo("c")
        return smtp.docmd("AUTH PLAIN", plain_auth(USER, password))


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    request = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    return moto_endpoint


def test_current_and_previous_secret_versions(
    tmp_path: Path, pki: Pki, aws_env: str, server_factory  # type: ignore[no-untyped-def]
) -> None:
    client = botocore.session.get_session().create_client(
        "secretsmanager", region_name="us-east-1", endpoint_url=aws_env)
    arn = client.create_secret(Name="smtp-auth",
                               SecretString=json.dumps({"password": "First-Pass-1"}))["ARN"]
    server: ServerProcess = server_factory(_config(tmp_path, pki, aws_env, arn)).start()
    assert _login(server, pki, "First-Pass-1")[0] == 235  # AWSCURRENT, now cached
    client.put_secret_value(SecretId=arn, SecretString=json.dumps({"password": "Second-Pass-2"}))
    # The cache still holds the old AWSCURRENT: the failed match triggers one refetch.
    assert _login(server, pki, "Second-Pass-2")[0] == 235
    assert _login(server, pki, "First-Pass-1")[0] == 235  # AWSPREVIOUS
    assert _login(server, pki, "Third-Pass-3") == (535, b"5.7.8 Authentication credentials invalid")
    raw = "\n".join(server.raw)
    assert "First-Pass-1" not in raw and "Second-Pass-2" not in raw


def test_unreachable_secrets_manager_is_a_temporary_failure(
    tmp_path: Path, pki: Pki, server_factory, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:smtp-AbCdEf"
    server: ServerProcess = server_factory(_config(tmp_path, pki, dead, arn)).start()
    assert _login(server, pki, "Any-Pass-1") == (454, b"4.7.0 Temporary authentication failure")
    server.wait_for("auth.secret_unavailable", ingress_point_id=USER)
