"""Resource kinds, default IDs and ARNs.

Default ID: the kind's AWS-style prefix (`inp-`, `tp-`, `rs-`, `rl-`, `al-`, `a-`) followed by
the first 26 characters of the lower-case, unpadded base32 encoding of sha256(UTF-8 name). It is
deterministic so that logs, archives and the spool keep the same ID across restarts.
ARN: `arn:aws:ses:{Region}:{AccountId}:{arn type}/{id}`, for example
`arn:aws:ses:us-east-1:000000000000:mailmanager-rule-set/rs-...`. Nothing here reports problems.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum


class ResourceKind(StrEnum):
    INGRESS_POINT = "ingress point"
    TRAFFIC_POLICY = "traffic policy"
    RULE_SET = "rule set"
    RELAY = "relay"
    ADDRESS_LIST = "address list"
    ARCHIVE = "archive"


@dataclass(frozen=True)
class KindInfo:
    section: str  # top-level key of the config file
    shape: str  # botocore input shape of the Create* request
    name_key: str
    id_key: str
    prefix: str
    arn_type: str


KINDS: dict[ResourceKind, KindInfo] = {
    ResourceKind.INGRESS_POINT: KindInfo(
        "IngressPoints", "CreateIngressPointRequest", "IngressPointName", "IngressPointId",
        "inp-", "mailmanager-ingress-point",
    ),
    ResourceKind.TRAFFIC_POLICY: KindInfo(
        "TrafficPolicies", "CreateTrafficPolicyRequest", "TrafficPolicyName", "TrafficPolicyId",
        "tp-", "mailmanager-traffic-policy",
    ),
    ResourceKind.RULE_SET: KindInfo(
        "RuleSets", "CreateRuleSetRequest", "RuleSetName", "RuleSetId",
        "rs-", "mailmanager-rule-set",
    ),
    ResourceKind.RELAY: KindInfo(
        "Relays", "CreateRelayRequest", "RelayName", "RelayId", "rl-", "mailmanager-smtp-relay",
    ),
    ResourceKind.ADDRESS_LIST: KindInfo(
        "AddressLists", "CreateAddressListRequest", "AddressListName", "AddressListId",
        "al-", "mailmanager-address-list",
    ),
    ResourceKind.ARCHIVE: KindInfo(
        "Archives", "CreateArchiveRequest", "ArchiveName", "ArchiveId", "a-",
        "mailmanager-archive",
    ),
}

# IDs given explicitly: AWS IDs are short tokens; ':' and '/' are excluded so an ID never
# looks like an ARN.
ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def derive_id(kind: ResourceKind, name: str) -> str:
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return KINDS[kind].prefix + base64.b32encode(digest).decode("ascii").lower()[:26]


def make_arn(kind: ResourceKind, region: str, account_id: str, resource_id: str) -> str:
    return f"arn:aws:ses:{region}:{account_id}:{KINDS[kind].arn_type}/{resource_id}"


@dataclass(frozen=True)
class ParsedArn:
    resource_type: str
    resource_id: str


def parse_arn(text: str) -> ParsedArn | None:
    """Split `arn:partition:service:region:account:type/id`; None when it is not an ARN."""
    parts = text.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return None
    resource_type, slash, resource_id = parts[5].partition("/")
    if not slash:
        return ParsedArn(resource_type, "")
    return ParsedArn(resource_type, resource_id.rsplit("/", 1)[-1])
