"""The one TLS file case the loader accepts: a TlsCertificate of which neither file exists yet
(a fresh clone: `serve` creates a development certificate there). check-config says so in its
summary instead of staying silent; once the files exist the note is gone and they are checked."""

from __future__ import annotations

from pathlib import Path

from mailmgr import certs
from tests.hostile.hostile_config_support import config_text, mailmgr, write

NOTE = "serve creates a self-signed development certificate there"


def test_check_config_names_the_certificate_serve_will_create(tmp_path: Path) -> None:
    path = write(tmp_path, config_text(tmp_path))
    cert, key = tmp_path / "certs/server.pem", tmp_path / "certs/server.key"
    run = mailmgr("check-config", path)
    assert run.status == 0, run.output[-2000:]
    assert f"certificate {cert}, key {key} (neither exists yet: {NOTE})" in run.output

    certs.create_dev_server_certificate(cert, key, "mx.test.example")
    run = mailmgr("check-config", path)
    assert run.status == 0, run.output[-2000:]
    assert f"certificate {cert}, key {key}\n" in run.output and NOTE not in run.output

    key.unlink()  # one of the two: no longer the fresh-clone case, the key is missing
    run = mailmgr("check-config", path)
    assert run.status == 1 and "$.IngressPoints[0].TlsCertificate.PrivateKeyFile: " in run.output
