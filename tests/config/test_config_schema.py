"""Problems found by the generic botocore shape walker and by file parsing."""

from __future__ import annotations

from pathlib import Path

from config_helpers import Problems, base, find, problems_of, write

from mailmgr.config.schema import compile_pattern


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "Server:\n  Hostname: [unclosed\nIngressPoints: []\n")
    (p,) = problems_of(path)
    assert p.file == str(path) and p.path == "$"
    assert p.message.startswith("YAML syntax error at line 3, column")


def test_json_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, '{"Server": {,}}', "c.json")
    (p,) = problems_of(path)
    assert p.message == "JSON syntax error at line 1, column 13: Expecting property name " \
                        "enclosed in double quotes"


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    (p,) = problems_of(write(tmp_path, "Server: {}\nServer: {}\n"))
    assert "duplicate key 'Server'" in p.message and "line 2" in p.message


def test_missing_config_file(tmp_path: Path) -> None:
    (p,) = problems_of(tmp_path / "absent.yaml")
    assert p.path == "$" and "file not found" in p.message


def test_unknown_top_level_key(problems: Problems) -> None:
    data = base()
    data["Rulesets"] = []
    (p,) = problems(data)
    assert p.path == "$"
    assert p.message == ("unknown key 'Rulesets' (allowed: Server, IngressPoints, TrafficPolicies,"
                         " RuleSets, Relays, AddressLists, Archives, Mailboxes, Analyzers)")


def test_unknown_key_in_resource_lists_extensions(problems: Problems) -> None:
    data = base()
    data["IngressPoints"][0]["Foo"] = 1
    (p,) = problems(data)
    assert p.path == "$.IngressPoints[0]"
    assert p.message.startswith("unknown key 'Foo' (allowed: ClientToken, IngressPointName,")
    assert p.message.endswith("IngressPointId, Listen, TlsWrappedListen, TlsCertificate, Status, "
                         "ProxyProtocol)")


def test_missing_required_member(problems: Problems) -> None:
    data = base()
    del data["RuleSets"][0]["Rules"][0]["Actions"]
    (p,) = problems(data)
    assert p.path == "$.RuleSets[0].Rules[0]"
    assert p.message == "missing required key 'Actions' (Rule)"


def test_enum(problems: Problems) -> None:
    data = base()
    data["IngressPoints"][0]["Type"] = "FOO"
    (p,) = problems(data)
    assert p.path == "$.IngressPoints[0].Type"
    assert p.message == "'FOO' is not one of OPEN, AUTH, MTLS (IngressPointType)"


def test_pattern_is_full_match(problems: Problems) -> None:
    data = base()
    data["RuleSets"][0]["Rules"][0]["Name"] = "a b"
    (p,) = problems(data)
    assert p.path == "$.RuleSets[0].Rules[0].Name"
    assert p.message == "value 'a b' does not match pattern [a-zA-Z0-9_.-]+ (RuleName)"


def test_min_and_max_length(problems: Problems) -> None:
    data = base()
    data["RuleSets"][0]["Rules"][0]["Name"] = "x" * 33
    data["TrafficPolicies"][0]["TrafficPolicyName"] = "ab"
    found = problems(data)
    find(found, "$.RuleSets[0].Rules[0].Name", "is longer than 32 characters (RuleName)")
    find(found, "$.TrafficPolicies[0].TrafficPolicyName",
         "value 'ab' is shorter than 3 characters (TrafficPolicyName)")


def test_list_max_41_rules(problems: Problems) -> None:
    data = base()
    data["RuleSets"][0]["Rules"] = [{"Actions": [{"Drop": {}}]}] * 41
    (p,) = problems(data)
    assert (p.path, p.message) == ("$.RuleSets[0].Rules", "at most 40 items (Rules), got 41")


def test_list_min(problems: Problems) -> None:
    data = base()
    data["RuleSets"][0]["Rules"][0]["Actions"] = []
    (p,) = problems(data)
    assert p.message == "at least 1 item required, got 0 (RuleActions)"


def test_union_with_two_members_and_with_none(problems: Problems) -> None:
    data = base()
    data["RuleSets"][0]["Rules"][0]["Actions"] = [
        {"Drop": {}, "Archive": {"TargetArchive": "default"}}, {},
    ]
    found = problems(data)
    assert len(found) == 2
    members = ("Drop, Relay, Archive, WriteToS3, Send, AddHeader, ReplaceRecipient, "
               "DeliverToMailbox, DeliverToQBusiness, PublishToSns, Bounce, InvokeLambda")
    find(found, "$.RuleSets[0].Rules[0].Actions[0]",
         f"exactly one of {members} must be set (found Drop, Archive)")
    p = find(found, "$.RuleSets[0].Rules[0].Actions[1]", "exactly one of")
    assert p.message == f"exactly one of {members} must be set"


def test_number_types_reject_bools_and_strings(problems: Problems) -> None:
    data = base()
    data["TrafficPolicies"][0]["MaxMessageSizeBytes"] = True
    data["RuleSets"][0]["Rules"][0]["Conditions"] = [{"NumberExpression": {
        "Evaluate": {"Attribute": "MESSAGE_SIZE"}, "Operator": "EQUALS", "Value": "10"}}]
    found = problems(data)
    find(found, "$.TrafficPolicies[0].MaxMessageSizeBytes",
         "expected an integer, got boolean (MaxMessageSizeBytes)")
    find(found, "$.RuleSets[0].Rules[0].Conditions[0].NumberExpression.Value",
         "expected a number, got string (Double)")


def test_number_minimum(problems: Problems) -> None:
    data = base()
    data["TrafficPolicies"][0]["MaxMessageSizeBytes"] = 0
    (p,) = problems(data)
    assert p.message == "value 0 is less than the minimum 1 (MaxMessageSizeBytes)"


def test_wrong_container_types(problems: Problems) -> None:
    data = base()
    data["RuleSets"][0]["Rules"] = {"Name": "x"}
    data["Archives"] = {"ArchiveName": "x"}
    data["IngressPoints"][0]["Tags"] = [{"Key": "k", "Value": "v", "X": 1}]
    found = problems(data)
    find(found, "$.RuleSets[0].Rules", "expected a list, got mapping (Rules)")
    find(found, "$.Archives", "expected a list, got mapping")
    find(found, "$.IngressPoints[0].Tags[0]", "unknown key 'X' (allowed: Key, Value)")


def test_secret_values_are_not_echoed(problems: Problems) -> None:
    data = base()
    data["IngressPoints"][0]["Type"] = "AUTH"
    data["IngressPoints"][0]["IngressPointConfiguration"] = {"SmtpPassword": "short"}
    found = problems(data)
    p = find(found, "$.IngressPoints[0].IngressPointConfiguration.SmtpPassword", "shorter")
    assert "short'" not in p.message and "(hidden)" in p.message


def test_unicode_property_pattern_is_translated() -> None:
    compiled = compile_pattern(r"[\P{C}\s]*")
    assert compiled is not None
    assert compiled.fullmatch("-----BEGIN CERTIFICATE-----\r\nMIIB\tü\n")
    assert not compiled.fullmatch("bad\x00byte")
    assert compile_pattern(r"\p{IsUnknownThing}+") is None
    assert compile_pattern("(unbalanced") is None


def test_trust_store_content_with_control_character(problems: Problems) -> None:
    data = base()
    data["IngressPoints"][0].update(Type="MTLS", TlsPolicy="REQUIRED", IngressPointConfiguration={
        "TlsAuthConfiguration": {"TrustStore": {"CAContent": "abc\x07"}}})
    found = problems(data)
    find(found, "$.IngressPoints[0].IngressPointConfiguration.TlsAuthConfiguration.TrustStore"
                ".CAContent", r"does not match pattern [\P{C}\s]* (CAContent)")


def test_several_problems_at_once(problems: Problems) -> None:
    data = base()
    data["Extra"] = 1
    data["IngressPoints"][0]["Type"] = "FOO"
    data["RuleSets"][0]["Rules"][0]["Name"] = "bad name"
    data["Archives"][0]["Retention"] = {"RetentionPeriod": "FOREVER"}
    data["Server"]["Workers"] = 0
    found = problems(data)
    assert {p.path for p in found} == {
        "$", "$.IngressPoints[0].Type", "$.RuleSets[0].Rules[0].Name",
        "$.Archives[0].Retention.RetentionPeriod", "$.Server.Workers",
    }
