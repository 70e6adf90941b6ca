"""Mail Manager's log records (`Server.Log.Records: mailmanager`) from a real `mailmgr serve`
after real SMTP traffic: the field sets of semantics.md §6 exactly, their values, the traffic
policy trace of a DENY next to an ALLOW, AUTH metadata without the password, a retried then
failed action, the no-match record; and none of them with Records off. One server serves the
module; the records-off server is in test_records_off.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.records.records_support import (
    INGRESS_APPLICATION,
    PASSWORD,
    RULE_SET_APPLICATION,
    TRAFFIC_DEBUG,
    fields_of,
    port_of,
    records,
    records_config,
    send,
)
from tests.secure.secure_support import ALICE_SERIAL, make_pki
from tests.support import ServerProcess, write_config

INGRESS_FIELDS = {
    "resource_arn", "event_timestamp", "ingress_point_type", "ingress_point_name", "message_id",
    "message_size_bytes", "rule_set_id", "sender_ip_address", "smtp_mail_from", "smtp_helo",
    "tls_protocol", "tls_cipher_suite", "recipients", "ingress_point_metadata",
}
TRAFFIC_FIELDS = {
    "ingress_point_id", "ingress_point_session_id", "traffic_policy_id",
    "traffic_policy_evaluation", "traffic_policy_verdict", "sender_ip_address", "smtp_mail_from",
    "smtp_helo", "tls_protocol", "tls_cipher_suite", "recipient",
}
RULE_FIELDS = {"message_id", "rule_set_name", "rule_name", "rule_index", "recipients_matched",
               "action_metadata"}
ARN = "arn:aws:ses:us-east-1:000000000000:mailmanager-ingress-point/"


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The server after three messages: `open` (ok@ accepted, blocked@ denied), `auth` (via the
    AUTH point, after STARTTLS and AUTH), `relay` (relay@: retried, then failed)."""
    tmp_path: Path = tmp_path_factory.mktemp("records")
    config = records_config(tmp_path, records="mailmanager")
    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    config["IngressPoints"].append({
        **config["IngressPoints"][0], "IngressPointName": "mutual", "IngressPointId": "inp-mutual",
        "Type": "MTLS", "TlsPolicy": "REQUIRED", "IngressPointConfiguration": pki.trust_store(),
        "TlsCertificate": {"CertificateFile": str(pki.server.cert),
                           "PrivateKeyFile": str(pki.server.key)},
    })
    server = ServerProcess(write_config(tmp_path / "mailmgr.yaml", config)).start()
    try:
        open_id, codes = send(port_of(server, "inbound"),
                              ["ok@example.com", "blocked@example.com"])
        assert codes == {"ok@example.com": 250, "blocked@example.com": 550}
        auth_id, _ = send(port_of(server, "submit"), ["ok@example.com"], login=True)
        relay_id, _ = send(port_of(server, "inbound"), ["relay@example.com"])
        context = pki.client_context(pki.alice)
        context.check_hostname = False
        mtls_id, _ = send(port_of(server, "mutual"), ["ok@example.com"], tls=context)
        for message_id in (open_id, auth_id, relay_id, mtls_id):
            server.wait_for("message.processed", 20.0, message_id=message_id)
        yield {"server": server, "open": open_id, "auth": auth_id, "relay": relay_id,
               "mtls": mtls_id}
    finally:
        server.stop()


def test_ingress_record_per_accepted_message(traffic: dict[str, Any]) -> None:
    server: ServerProcess = traffic["server"]
    lines = records(server, INGRESS_APPLICATION)
    assert len(lines) == 4  # one per accepted message, none for the denied recipient
    (line,) = records(server, INGRESS_APPLICATION, message_id=traffic["open"])
    record = fields_of(line)
    assert set(record) == INGRESS_FIELDS
    assert record["resource_arn"] == ARN + "inp-inbound"
    assert record["ingress_point_type"] == "OPEN"
    assert record["ingress_point_name"] == "inbound"
    assert record["rule_set_id"] == "rs-main"
    assert record["sender_ip_address"] == "127.0.0.1"
    assert record["smtp_mail_from"] == "sender@example.org"
    assert record["smtp_helo"] == "client.example.org"
    assert record["recipients"] == ["ok@example.com"]
    assert record["tls_protocol"] is None and record["tls_cipher_suite"] is None
    assert record["ingress_point_metadata"] == {}
    assert isinstance(record["message_size_bytes"], int) and record["message_size_bytes"] > 0
    stamp = record["event_timestamp"]
    assert isinstance(stamp, int) and 1_600_000_000_000 < stamp < 10_000_000_000_000
    # the 250's ID is the record's; `ts` is the same instant to the millisecond's second
    accepted = server.wait_for("smtp.accepted", message_id=traffic["open"])
    assert accepted["size"] == record["message_size_bytes"]


def test_auth_point_metadata_names_no_password(traffic: dict[str, Any]) -> None:
    server: ServerProcess = traffic["server"]
    (line,) = records(server, INGRESS_APPLICATION, message_id=traffic["auth"])
    record = fields_of(line)
    assert set(record) == INGRESS_FIELDS
    assert record["ingress_point_type"] == "AUTH"
    assert record["resource_arn"] == ARN + "inp-submit"
    assert record["ingress_point_metadata"] == {"password_version": None,
                                                "secrets_manager_arn": None}
    assert record["tls_protocol"] in ("TLSv1.2", "TLSv1.3")
    assert record["tls_cipher_suite"]
    assert not any(PASSWORD in raw for raw in server.raw)


def test_mtls_point_metadata_has_the_client_certificate(traffic: dict[str, Any]) -> None:
    server: ServerProcess = traffic["server"]
    (line,) = records(server, INGRESS_APPLICATION, message_id=traffic["mtls"])
    assert set(fields_of(line)) == INGRESS_FIELDS
    assert line["ingress_point_type"] == "MTLS"
    metadata = line["ingress_point_metadata"]
    assert set(metadata) == {"client_certificate_details", "trust_store_monitoring"}
    details = metadata["client_certificate_details"]
    assert details["common_names"] == ["alice.example"]
    assert details["serial_number"] == ":".join(
        f"{ALICE_SERIAL:08X}"[i:i + 2] for i in range(0, 8, 2))
    assert details["subject_alternative_names"]["SAN_DNS_NAME"] == ["alice.example.test"]
    assert "client CA one" in details["issuer"]
    assert metadata["trust_store_monitoring"] == {"crl_checked": True, "kms_key_arn": None}


def _condition(attribute: str, operator: str, value: Any, result: bool) -> dict[str, Any]:
    return {"expression": {"attribute": attribute, "operator": operator, "value": value},
            "expressionResult": result}


def test_traffic_policy_trace_for_denied_and_accepted_recipients(traffic: dict[str, Any]) -> None:
    server: ServerProcess = traffic["server"]
    (denied,) = records(server, TRAFFIC_DEBUG, recipient="blocked@example.com")
    (accepted,) = records(server, TRAFFIC_DEBUG, recipient="ok@example.com",
                          ingress_point_id="inp-inbound")
    for line in (denied, accepted):
        assert set(fields_of(line)) == TRAFFIC_FIELDS
        assert line["traffic_policy_id"] == "tp-screen"
        assert line["sender_ip_address"] == "127.0.0.1"
        assert line["smtp_mail_from"] == "sender@example.org"
        assert line["smtp_helo"] == "client.example.org"
        assert line["tls_protocol"] is None and line["tls_cipher_suite"] is None
    # both recipients were given in one SMTP session
    assert denied["ingress_point_session_id"] == accepted["ingress_point_session_id"]
    assert len(denied["ingress_point_session_id"]) == 16
    assert denied["traffic_policy_verdict"] == "REJECT"
    assert accepted["traffic_policy_verdict"] == "ACCEPT"
    ip = _condition("SENDER_IP", "CIDR_MATCHES", ["127.0.0.0/8"], True)
    size = {"scope": "Data", "maxMessageSizeBytes": 1_000_000}
    assert denied["traffic_policy_evaluation"] == [
        {"action": "DENY", "policyStatementMatched": True, "conditions": [
            _condition("RECIPIENT", "EQUALS", ["blocked@example.com"], True)]},
        {"action": "ALLOW", "policyStatementMatched": True, "conditions": [ip]},
        {"action": "DENY", "scope": "Recipient", "policyStatementMatched": False},
        size,
    ]
    assert accepted["traffic_policy_evaluation"] == [
        {"action": "DENY", "policyStatementMatched": False, "conditions": [
            _condition("RECIPIENT", "EQUALS", ["blocked@example.com"], False)]},
        {"action": "ALLOW", "policyStatementMatched": True, "conditions": [ip]},
        {"action": "DENY", "scope": "Recipient", "policyStatementMatched": False},
        size,
    ]
    # one per recipient evaluated: ok@ and blocked@, ok@ via AUTH, relay@, ok@ via MTLS
    assert len(records(server, TRAFFIC_DEBUG)) == 5


def test_rule_set_records_per_action_and_unmatched_rule(traffic: dict[str, Any]) -> None:
    server: ServerProcess = traffic["server"]
    lines = [fields_of(line)
             for line in records(server, RULE_SET_APPLICATION, message_id=traffic["open"])]
    base = {"message_id": traffic["open"], "rule_set_name": "main"}
    assert lines == [
        {**base, "rule_name": "tag", "rule_index": 1, "recipients_matched": ["ok@example.com"],
         "action_metadata": {"action_name": "ADD_HEADER", "action_index": 1,
                             "action_status": "SUCCESS"}},
        {**base, "rule_name": "never", "rule_index": 2, "recipients_matched": []},
        {**base, "rule_name": "relay-down", "rule_index": 3, "recipients_matched": []},
    ]
    assert all(set(line) <= RULE_FIELDS for line in lines)


def test_failing_action_is_in_progress_then_failure(traffic: dict[str, Any]) -> None:
    server: ServerProcess = traffic["server"]
    lines = records(server, RULE_SET_APPLICATION, message_id=traffic["relay"], rule_index=3)
    assert [set(fields_of(line)) for line in lines] == [RULE_FIELDS, RULE_FIELDS]
    first, last = (line["action_metadata"] for line in lines)
    assert all(line["rule_name"] == "relay-down" for line in lines)
    assert all(line["recipients_matched"] == ["relay@example.com"] for line in lines)
    assert first["action_name"] == last["action_name"] == "RELAY"
    assert first["action_index"] == last["action_index"] == 1
    assert first["action_status"] == "IN_PROGRESS"
    assert last["action_status"] == "FAILURE"
    assert isinstance(first["action_failure"], str) and first["action_failure"]
    assert "retries exhausted: ConnectionRefusedError" in last["action_failure"]
    # the rules before it ran once: the retry resumed at the relay
    assert len(records(server, RULE_SET_APPLICATION, message_id=traffic["relay"])) == 4
