"""Files and PEM content a config refers to (hostile case 08, class 7): the real
`mailmgr check-config` refuses what `serve` would refuse (exit 1), and `serve` and SIGHUP reload
refuse it the same way, naming the FILE and the exact JSON path; never printing key or CRL
content."""

from __future__ import annotations

import datetime as dt
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from mailmgr import certs
from tests.hostile.hostile_config_support import assert_refused, mailmgr, write
from tests.support import ServerProcess, basic_config

POINT = "$.IngressPoints[1]"
CERT_AT = f"{POINT}.TlsCertificate.CertificateFile"
KEY_AT = f"{POINT}.TlsCertificate.PrivateKeyFile"
TRUST_AT = f"{POINT}.IngressPointConfiguration.TlsAuthConfiguration.TrustStore"
SECRET = "SECRET-MATERIAL-never-print-me"


@dataclass(frozen=True)
class Files:
    cert: Path
    key: Path
    other_key: Path  # a valid key of another certificate
    ca_pem: str


@pytest.fixture
def files(tmp_path: Path) -> Files:
    good, other = tmp_path / "good", tmp_path / "other"
    certs.create_dev_server_certificate(good / "server.pem", good / "server.key", "mx.test")
    certs.create_dev_server_certificate(other / "server.pem", other / "server.key", "mx.test")
    return Files(good / "server.pem", good / "server.key", other / "server.key",
                 (good / "ca.pem").read_text())


def _config(tmp_path: Path, cert: Path, key: Path, **point: Any) -> Path:
    """basic_config plus a second ingress point (index 1) with this certificate and key."""
    data = basic_config(tmp_path)
    data["IngressPoints"].append({
        "IngressPointName": "second", "Type": "OPEN", "RuleSetId": "main",
        "TrafficPolicyId": "allow-all", "TlsPolicy": "OPTIONAL", "Listen": ["127.0.0.1:0"],
        "TlsCertificate": {"CertificateFile": str(cert), "PrivateKeyFile": str(key)}, **point,
    })
    return write(tmp_path, yaml.safe_dump(data, sort_keys=False))


def _mtls(files: Files, trust: dict[str, Any]) -> dict[str, Any]:
    return {"Type": "MTLS", "TlsPolicy": "REQUIRED", "IngressPointConfiguration": {
        "TlsAuthConfiguration": {"TrustStore": trust}}}


def _refused(path: Path, where: str, *expected: str, serve: bool = False) -> str:
    line = assert_refused(mailmgr("check-config", path), 1, f"{path}: {where}: ", *expected)
    assert SECRET not in line
    if serve:
        assert_refused(mailmgr("serve", path, timeout=30), 2, f"{path}: {where}: ", *expected)
    return line


def test_valid_pair_and_dev_certificate_paths_are_accepted(tmp_path: Path, files: Files) -> None:
    # Point 0 names two missing files: serve creates a development certificate there.
    run = mailmgr("check-config", _config(tmp_path, files.cert, files.key))
    assert run.status == 0, run.output
    assert "configuration is valid" in run.output


def test_missing_private_key_is_named(tmp_path: Path, files: Files) -> None:
    missing = tmp_path / "missing.key"
    path = _config(tmp_path, files.cert, missing)
    _refused(path, KEY_AT, f"cannot read {missing}: No such file or directory", serve=True)


def test_missing_certificate_is_named(tmp_path: Path, files: Files) -> None:
    missing = tmp_path / "missing.pem"
    path = _config(tmp_path, missing, files.key)
    _refused(path, CERT_AT, f"cannot read {missing}: No such file or directory", serve=True)


@pytest.mark.parametrize(("content", "expected"), [
    (b"not a certificate\n", "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA" + SECRET.encode() + b"\n-----END CERTIFICATE-----\n",
     "holds a PEM certificate that cannot be parsed"),
    (b"\xff\xfe\x00binary", "holds no PEM certificate"),
])
def test_garbage_certificate_is_named(
    tmp_path: Path, files: Files, content: bytes, expected: str
) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_bytes(content)
    _refused(_config(tmp_path, bad, files.key), CERT_AT, str(bad), expected)


def test_der_certificate_is_named(tmp_path: Path, files: Files) -> None:
    from cryptography import x509

    der = tmp_path / "server.der"
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    _refused(_config(tmp_path, der, files.key), CERT_AT, str(der), "DER certificate")


@pytest.mark.parametrize(("content", "expected"), [
    (f"{SECRET}\n".encode(), "holds no PEM private key"),
    (f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----\n".encode(),
     "holds a PEM private key that cannot be parsed"),
])
def test_garbage_key_is_named_without_its_content(
    tmp_path: Path, files: Files, content: bytes, expected: str
) -> None:
    bad = tmp_path / "bad.key"
    bad.write_bytes(content)
    _refused(_config(tmp_path, files.cert, bad), KEY_AT, str(bad), expected)


def test_key_of_another_certificate_is_refused(tmp_path: Path, files: Files) -> None:
    path = _config(tmp_path, files.cert, files.other_key)
    _refused(path, KEY_AT, f"the private key in {files.other_key} does not belong to the "
                           f"certificate in {files.cert}", serve=True)


def test_encrypted_key_is_refused_without_a_prompt(tmp_path: Path, files: Files) -> None:
    key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))
    _refused(_config(tmp_path, files.cert, encrypted), KEY_AT, str(encrypted), "encrypted")


def test_directory_as_key_is_refused(tmp_path: Path, files: Files) -> None:
    folder = tmp_path / "keys"
    folder.mkdir()
    _refused(_config(tmp_path, files.cert, folder), KEY_AT,
             f"cannot read {folder}: it is a directory")


def test_nul_in_key_path_is_refused(tmp_path: Path, files: Files) -> None:
    bad = Path(f"{files.key}\x00.key")
    line = _refused(_config(tmp_path, files.cert, bad), KEY_AT, "contains a NUL character")
    assert "internal error" not in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file")
def test_unreadable_key_is_refused(tmp_path: Path, files: Files) -> None:
    files.key.chmod(0)
    _refused(_config(tmp_path, files.cert, files.key), KEY_AT,
             f"cannot read {files.key}: Permission denied")


def test_oversized_certificate_file_is_refused(tmp_path: Path, files: Files) -> None:
    big = tmp_path / "big.pem"
    big.write_bytes(files.cert.read_bytes())
    with big.open("r+b") as file:
        file.truncate(5 * 1024 * 1024)
    _refused(_config(tmp_path, big, files.key), CERT_AT, str(big), "limit of 4 MiB")


# -- MTLS trust stores (inline PEM content in the config file) -------------------------------


def test_garbage_ca_content_is_refused(tmp_path: Path, files: Files) -> None:
    path = _config(tmp_path, files.cert, files.key, **_mtls(files, {"CAContent": "garbage"}))
    _refused(path, f"{TRUST_AT}.CAContent", "CAContent is not a PEM certificate bundle",
             serve=True)


def test_expired_cas_only_are_refused(tmp_path: Path, files: Files) -> None:
    now = dt.datetime.now(dt.UTC)
    old = certs.make_ca("old", not_before=now - dt.timedelta(days=60),
                        not_after=now - dt.timedelta(days=1))
    content = certs.cert_pem(old.certificate).decode()
    path = _config(tmp_path, files.cert, files.key, **_mtls(files, {"CAContent": content}))
    _refused(path, f"{TRUST_AT}.CAContent", "no usable CA certificate (all are expired)")


@pytest.mark.parametrize(("crl", "expected"), [
    (f"-----BEGIN X509 CRL-----\n{SECRET}\n-----END X509 CRL-----\n",
     "CRL number 1 cannot be parsed"),
    (f"{SECRET}\n", "CrlContent holds no PEM CRL"),
])
def test_garbage_crl_content_is_refused(
    tmp_path: Path, files: Files, crl: str, expected: str
) -> None:
    trust = {"CAContent": files.ca_pem, "CrlContent": crl}
    path = _config(tmp_path, files.cert, files.key, **_mtls(files, trust))
    _refused(path, f"{TRUST_AT}.CrlContent", expected)


def test_valid_trust_store_is_accepted(tmp_path: Path, files: Files) -> None:
    ca = certs.load_or_create_ca(files.cert.parent)
    crl = certs.crl_pem(certs.make_crl(ca, [12345])).decode()
    trust = {"CAContent": files.ca_pem, "CrlContent": crl}
    run = mailmgr("check-config", _config(tmp_path, files.cert, files.key,
                                          **_mtls(files, trust)))
    assert run.status == 0, run.output


# -- relay CA files --------------------------------------------------------------------------


def _relay(tmp_path: Path, files: Files, ca_file: Path) -> Path:
    data = basic_config(tmp_path)
    data["Relays"] = [{"RelayName": "up", "ServerName": "smtp.example.test", "ServerPort": 587,
                       "Authentication": {"NoAuthentication": {}},
                       "Tls": {"Verify": True, "CaFile": str(ca_file)}}]
    return write(tmp_path, yaml.safe_dump(data, sort_keys=False))


def test_missing_relay_ca_file_is_named(tmp_path: Path, files: Files) -> None:
    missing = tmp_path / "missing-ca.pem"
    _refused(_relay(tmp_path, files, missing), "$.Relays[0].Tls.CaFile",
             f"cannot read {missing}: No such file or directory")


def test_garbage_relay_ca_file_is_named(tmp_path: Path, files: Files) -> None:
    bad = tmp_path / "ca.txt"
    bad.write_text("garbage\n")
    _refused(_relay(tmp_path, files, bad), "$.Relays[0].Tls.CaFile", str(bad),
             "holds no PEM certificate")


# -- SIGHUP reload refuses the same way ------------------------------------------------------


def test_reload_refuses_a_key_that_stopped_matching(
    tmp_path: Path, files: Files, server_factory: Any
) -> None:
    data = basic_config(tmp_path)
    data["IngressPoints"][0]["TlsCertificate"] = {
        "CertificateFile": str(files.cert), "PrivateKeyFile": str(files.key)}
    server: ServerProcess = server_factory(data).start()
    files.key.write_bytes(files.other_key.read_bytes())
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    failed = server.wait_for("config.reload_failed", timeout=20)
    (problem,) = failed["problems"]
    assert problem.startswith(f"{server.config_file}: $.IngressPoints[0].TlsCertificate."
                              f"PrivateKeyFile: the private key in {files.key} does not belong")
    assert "PRIVATE KEY" not in "\n".join(server.raw)
