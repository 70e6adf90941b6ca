"""End to end: the real `mailmgr serve` process writes an accepted message to S3 (moto) under a
role, through Server.Aws.EndpointUrl."""

from __future__ import annotations

import smtplib
from pathlib import Path
from typing import Any

from awsactions_support import ROLE_A, boto

from tests.support import basic_config

MESSAGE = (
    b"From: Alice <alice@sender.test>\r\nTo: bob@mailmgr.test\r\n"
    b"Subject: to s3\r\nMessage-ID: <e2e-s3@sender.test>\r\n\r\nBody line\r\n"
)


def test_served_message_lands_in_s3(tmp_path: Path, server_factory: Any, aws_env: str) -> None:
    s3 = boto(aws_env, "s3")
    s3.create_bucket(Bucket="inbound-mail")
    config = basic_config(tmp_path, Aws={"EndpointUrl": aws_env})
    config["RuleSets"][0]["Rules"][0]["Actions"] = [
        {"AddHeader": {"HeaderName": "X-Mailmgr-Processed", "HeaderValue": "yes"}},
        {"WriteToS3": {"RoleArn": ROLE_A, "S3Bucket": "inbound-mail", "S3Prefix": "raw/"}},
    ]
    server = server_factory(config).start()
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
        smtp.ehlo("client.test")
        smtp.mail("alice@sender.test")
        smtp.rcpt("bob@mailmgr.test")
        code, reply = smtp.data(MESSAGE)
    assert code == 250
    message_id = reply.decode().rsplit(" ", 1)[1]
    event = server.wait_for("message.action", 20, action="WriteToS3", status="SUCCESS")
    assert event["s3_key"] == f"raw/{message_id}" and event["message_id"] == message_id
    stored = s3.get_object(Bucket="inbound-mail", Key=f"raw/{message_id}")
    body = stored["Body"].read()
    assert stored["ContentType"] == "message/rfc822"
    assert b"X-Mailmgr-Processed: yes\r\n" in body and body.endswith(b"\r\nBody line\r\n")
    assert b"Subject: to s3\r\n" in body
