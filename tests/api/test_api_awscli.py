"""aws-cli (`aws mailmanager ...`, the Python package the test extras install) against a running
server with SigV4 verification on: `--endpoint-url` and `AWS_ENDPOINT_URL_MAILMANAGER`, dummy
credentials, no config of the user's, output parsed as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import REGION, ApiServer
from tests.support import basic_config

pytestmark = pytest.mark.slow
AWS = Path(sys.executable).with_name("aws")
KEY_ID = "AKIDAWSCLITEST"
SECRET = "aws-cli-test-secret"


def aws(tmp_path: Path, *args: str, endpoint: str | None = None, secret: str = SECRET
        ) -> subprocess.CompletedProcess[str]:
    """`aws mailmanager ARGS --output json` with only the given endpoint and credentials."""
    (tmp_path / "aws-config").touch()
    (tmp_path / "aws-credentials").touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(tmp_path / "aws-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "aws-credentials"),
               AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=secret,
               AWS_DEFAULT_REGION=REGION, AWS_MAX_ATTEMPTS="1", AWS_PAGER="")
    if endpoint is not None:
        env["AWS_ENDPOINT_URL_MAILMANAGER"] = endpoint
    return subprocess.run([str(AWS), "mailmanager", *args, "--output", "json"],
                          capture_output=True, text=True, env=env, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_awscli_manages_rule_sets(api_server_factory: Callable[[dict[str, Any]], ApiServer],
                                  tmp_path: Path) -> None:
    (tmp_path / "api.secret").write_text(SECRET)
    api = api_server_factory(basic_config(tmp_path, Admin={
        "Listen": ["127.0.0.1:0"], "DrainSeconds": 0,
        "Credentials": {"AccessKeyId": KEY_ID,
                        "SecretAccessKeyFile": str(tmp_path / "api.secret")}}))
    rules = json.dumps([{"Name": "tag", "Actions": [
        {"AddHeader": {"HeaderName": "X-Cli", "HeaderValue": "yes"}}]}])
    created = aws(tmp_path, "create-rule-set", "--rule-set-name", "from-cli", "--rules", rules,
                  "--endpoint-url", api.url)
    assert created.returncode == 0, created.stderr
    rule_set_id = json.loads(created.stdout)["RuleSetId"]
    assert rule_set_id.startswith("rs-")

    # AWS_ENDPOINT_URL_MAILMANAGER instead of --endpoint-url.
    listed = aws(tmp_path, "list-rule-sets", endpoint=api.url)
    assert listed.returncode == 0, listed.stderr
    assert [r["RuleSetName"] for r in json.loads(listed.stdout)["RuleSets"]] == [
        "main", "from-cli"]

    got = aws(tmp_path, "get-rule-set", "--rule-set-id", rule_set_id, "--endpoint-url", api.url)
    assert got.returncode == 0, got.stderr
    rule_set = json.loads(got.stdout)
    assert rule_set["RuleSetName"] == "from-cli"
    assert rule_set["Rules"] == json.loads(rules)

    refused = aws(tmp_path, "list-rule-sets", endpoint=api.url, secret="not-the-secret")
    assert refused.returncode != 0
    assert "InvalidSignatureException" in refused.stderr

    deleted = aws(tmp_path, "delete-rule-set", "--rule-set-id", rule_set_id,
                  "--endpoint-url", api.url)
    assert deleted.returncode == 0, deleted.stderr
    missing = aws(tmp_path, "get-rule-set", "--rule-set-id", rule_set_id, endpoint=api.url)
    assert missing.returncode != 0
    assert "ResourceNotFoundException" in missing.stderr
    invalid = aws(tmp_path, "create-rule-set", "--rule-set-name", "bad", "--rules", json.dumps(
        [{"Name": "r", "Actions": [{"Archive": {"TargetArchive": "nowhere"}}]}]),
        endpoint=api.url)
    assert invalid.returncode != 0
    assert "ValidationException" in invalid.stderr and "Rules[0]" in invalid.stderr
