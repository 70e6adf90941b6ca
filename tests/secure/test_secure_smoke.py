"""The README's "Smoke tests", run for real: `mailmgr certs` builds the PKI, then the exact swaks
and `openssl s_client` command lines of the README talk to a real server (the README's fixed
ports are replaced by free ones). Also `mailmgr explain --cert` with a generated certificate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from secure_support import OPENSSL, SWAKS

from tests.support import ROOT, ServerProcess, write_config

# Verbatim from the README (run from a folder where `certs/` is created).
CERTS = """\
mailmgr certs dev --dir certs
mailmgr certs ca --dir certs/clients --cn "partner CA"
mailmgr certs client --dir certs/clients --name alice --cn alice.example \\
  --san dns:mail.acme.example --san email:alice@acme.example --san ip:192.0.2.7
mailmgr certs client --dir certs/clients --name mallory --cn mallory.example
mailmgr certs crl --dir certs/clients --revoke certs/clients/mallory.pem
mailmgr certs truststore certs/clients > certs/truststore.yaml
"""
MESSAGE = """\
printf 'MAIL FROM:<a@example.test>\\r\\nRCPT TO:<b@example.test>\\r\\nDATA\\r\\n' > smoke.txt
printf 'Subject: smoke\\r\\n\\r\\nhi\\r\\n.\\r\\nQUIT\\r\\n' >> smoke.txt
AUTH=$(printf '\\0inp-submission\\0Change-Me-2024!' | base64)
"""
SMOKE = {
    "open": """\
swaks --server 127.0.0.1:2525 --from a@example.test --to b@example.test
{ printf 'EHLO me\\r\\n'; cat smoke.txt; } \\
  | openssl s_client -starttls smtp -connect 127.0.0.1:2525 -CAfile certs/ca.pem \\
      -verify_return_error -quiet
""",
    "auth": """\
swaks --server 127.0.0.1:2587 --tls --tls-verify --tls-ca-path certs/ca.pem \\
  --auth PLAIN --auth-user inp-submission --auth-password 'Change-Me-2024!' \\
  --from a@example.test --to b@example.test
{ printf 'EHLO me\\r\\nAUTH PLAIN %s\\r\\n' "$AUTH"; cat smoke.txt; } \\
  | openssl s_client -starttls smtp -connect 127.0.0.1:2587 -CAfile certs/ca.pem \\
      -verify_return_error -quiet
""",
    "implicit": """\
swaks --server 127.0.0.1:2465 --tls-on-connect --tls-verify --tls-ca-path certs/ca.pem \\
  --auth LOGIN --auth-user inp-submission --auth-password 'Change-Me-2024!' \\
  --from a@example.test --to b@example.test
{ printf 'EHLO me\\r\\nAUTH PLAIN %s\\r\\n' "$AUTH"; cat smoke.txt; } \\
  | openssl s_client -connect 127.0.0.1:2465 -CAfile certs/ca.pem -verify_return_error -quiet
""",
    "mtls": """\
swaks --server 127.0.0.1:2526 --tls --tls-verify --tls-ca-path certs/ca.pem \\
  --tls-cert certs/clients/alice.pem --tls-key certs/clients/alice.key \\
  --from a@example.test --to b@example.test
{ printf 'EHLO me\\r\\n'; cat smoke.txt; } \\
  | openssl s_client -starttls smtp -connect 127.0.0.1:2526 -CAfile certs/ca.pem \\
      -verify_return_error -quiet -cert certs/clients/alice.pem -key certs/clients/alice.key
""",
}
REVOKED = """\
swaks --server 127.0.0.1:2526 --tls --tls-verify --tls-ca-path certs/ca.pem \\
  --tls-cert certs/clients/mallory.pem --tls-key certs/clients/mallory.key \\
  --from a@example.test --to b@example.test
"""
README_PORTS = {"open": 2525, "auth": 2587, "implicit": 2465, "mtls": 2526}


def _bash(script: str, cwd: Path) -> tuple[int, str]:
    bin_dir = cwd / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "mailmgr"
    shim.write_text(f'#!/bin/sh\ncd "{cwd}" && exec "{sys.executable}" -m mailmgr "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}",
               PYTHONPATH=str(ROOT))
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    return done.returncode, (done.stdout + done.stderr).decode("utf-8", "replace")


def _config(folder: Path) -> dict[str, Any]:
    cert = {"CertificateFile": "certs/server.pem", "PrivateKeyFile": "certs/server.key"}
    trust = yaml.safe_load((folder / "certs/truststore.yaml").read_text())
    common = {"RuleSetId": "main", "TrafficPolicyId": "all", "TlsCertificate": cert}
    return {
        "Server": {"Hostname": "mx.smoke.test", "DataDirectory": "var",
                   "Log": {"Format": "json"}},
        "IngressPoints": [
            {"IngressPointName": "open", "Type": "OPEN", "TlsPolicy": "OPTIONAL",
             "Listen": ["127.0.0.1:0"], **common},
            {"IngressPointName": "submission", "IngressPointId": "inp-submission",
             "Type": "AUTH", "TlsPolicy": "REQUIRED", "Listen": ["127.0.0.1:0"],
             "TlsWrappedListen": ["127.0.0.1:0"],
             "IngressPointConfiguration": {"SmtpPassword": "Change-Me-2024!"}, **common},
            {"IngressPointName": "partners", "Type": "MTLS", "TlsPolicy": "REQUIRED",
             "Listen": ["127.0.0.1:0"], **trust, **common},
        ],
        "TrafficPolicies": [{"TrafficPolicyName": "all", "DefaultAction": "ALLOW",
                             "PolicyStatements": []}],
        "RuleSets": [{"RuleSetName": "main", "Rules": [{
            "Name": "acme", "Conditions": [{"StringExpression": {
                "Evaluate": {"ClientCertificateAttribute": "SAN_DNS_NAME"},
                "Operator": "ENDS_WITH", "Values": [".acme.example"]}}],
            "Actions": [{"AddHeader": {"HeaderName": "X-Partner", "HeaderValue": "acme"}}]}]}],
    }


@pytest.mark.skipif(SWAKS is None or OPENSSL is None, reason="swaks or openssl missing")
def test_readme_smoke_commands(tmp_path: Path) -> None:
    code, out = _bash(CERTS, tmp_path)
    assert code == 0, out
    config = write_config(tmp_path / "smoke.yaml", _config(tmp_path))
    server = ServerProcess(config)
    server.start()
    try:
        events = {e["ingress_point"]: e for e in server.events
                  if e.get("event") == "ingress.listening"}
        port_of = {
            "open": events["open"]["addresses"][0],
            "auth": events["submission"]["addresses"][0],
            "implicit": events["submission"]["tls_wrapped_addresses"][0],
            "mtls": events["partners"]["addresses"][0],
        }
        for name, script in SMOKE.items():
            script = script.replace(f"127.0.0.1:{README_PORTS[name]}", port_of[name])
            code, out = _bash(MESSAGE + script, tmp_path)
            assert code == 0, out
            assert out.count("250 2.0.0 Ok: queued as") == 2, (name, out)
        code, out = _bash(REVOKED.replace("127.0.0.1:2526", port_of["mtls"]), tmp_path)
        assert code != 0 and "530 5.7.0 Valid client certificate required" in out
        server.wait_for("message.action", rule_name="acme")
    finally:
        server.stop()


def test_explain_cert_uses_generated_client_certificate(tmp_path: Path) -> None:
    code, out = _bash(CERTS, tmp_path)
    assert code == 0, out
    config = write_config(tmp_path / "smoke.yaml", _config(tmp_path))
    (tmp_path / "m.eml").write_bytes(b"From: a@example.test\r\nSubject: x\r\n\r\nhi\r\n")
    result = subprocess.run(
        [sys.executable, "-m", "mailmgr", "explain", "--config", str(config), "--eml",
         str(tmp_path / "m.eml"), "--rcpt", "b@example.test", "--tls", "--json",
         "--ingress", "partners", "--cert", str(tmp_path / "certs/clients/alice.pem")],
        capture_output=True, text=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert '"acme"' in result.stdout and "X-Partner" in result.stdout
    report = json.loads(result.stdout)
    assert report  # a JSON document, not an error text
    without = subprocess.run(
        [sys.executable, "-m", "mailmgr", "explain", "--config", str(config), "--eml",
         str(tmp_path / "m.eml"), "--rcpt", "b@example.test", "--json",
         "--ingress", "partners", "--cert", str(tmp_path / "certs/clients/mallory.pem")],
        capture_output=True, text=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL)
    assert without.returncode == 0 and "X-Partner" not in without.stdout
