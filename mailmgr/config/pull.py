"""`mailmgr config pull`: Mail Manager's Get* responses -> the document of a mailmgr config file.

Pure (no I/O): the input is what botocore returns (the model's output shapes) plus each
resource's tags and address-list members; the output is the config mapping and the placeholder
notes that config/pull_render.py turns into YAML comments.
"""

from __future__ import annotations

import copy
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mailmgr.config.analyzer_models import RESULT_FIELDS, AnalyzerEngine
from mailmgr.config.analyzers import ARN_PATTERN, NAME_PATTERN, instance_id
from mailmgr.config.extension_tags import PREFIX as TAG_PREFIX
from mailmgr.config.fields import parse_host_port
from mailmgr.config.server import DEFAULT_ADMIN_LISTEN

PLACEHOLDER = "mailmgr placeholder: "
FIRST_PORT = 2525  # placeholder listeners: one port per ingress point, unprivileged
# A pulled config keeps the default admin listener: no placeholder may take its port.
ADMIN_PORT = parse_host_port(DEFAULT_ADMIN_LISTEN).port
HOSTNAME = "mx.example.invalid"
# Request fields kept per section (the Create*Request shape plus the explicit ID), in the order
# they are written; output-only fields (ARNs, timestamps, Status, ARecord, ArchiveState) are not.
FIELDS: dict[str, tuple[str, ...]] = {
    "IngressPoints": ("IngressPointName", "IngressPointId", "Type", "RuleSetId",
                      "TrafficPolicyId", "TlsPolicy", "NetworkConfiguration"),
    "TrafficPolicies": ("TrafficPolicyName", "TrafficPolicyId", "DefaultAction",
                        "MaxMessageSizeBytes", "PolicyStatements"),
    "RuleSets": ("RuleSetName", "RuleSetId", "Rules"),
    "Relays": ("RelayName", "RelayId", "ServerName", "ServerPort", "Authentication"),
    "AddressLists": ("AddressListName", "AddressListId"),
    "Archives": ("ArchiveName", "ArchiveId", "Retention", "KmsKeyArn"),
}
ARN_KEYS = ("IngressPointArn", "TrafficPolicyArn", "RuleSetArn", "RelayArn", "AddressListArn",
            "ArchiveArn")
_ARN = re.compile(r"arn:[a-z-]+:ses:([a-z0-9-]+):(\d{12}):.+")
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")
# Placeholder engine settings: nothing real is contacted until the operator sets them.
_ENGINE_SETTINGS: dict[AnalyzerEngine, dict[str, Any]] = {
    AnalyzerEngine.DNSBL: {"Zones": [{"Zone": "dnsbl.example.invalid", "Type": "IP"}]},
    AnalyzerEngine.RSPAMD: {"Url": "http://127.0.0.1:11333"},
    AnalyzerEngine.CLAMAV: {"Address": "127.0.0.1:3310"},
}


@dataclass(frozen=True)
class PulledResource:
    """One resource as Mail Manager describes it: the Get* response (output shape), its
    ListTagsForResource `Tags` as (Key, Value) pairs, and for an address list every member
    address (ListMembersOfAddressList, all pages)."""

    response: Mapping[str, Any]
    tags: tuple[tuple[str, str], ...] = ()
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class Account:
    """Everything `config pull` read: per config section, the resources in it."""

    region: str
    endpoint_url: str | None  # None: AWS's own endpoint for the region
    pulled_at: datetime
    resources: Mapping[str, tuple[PulledResource, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Note:
    """A comment the renderer writes before `key` of entry `index` of `section` (the entry
    itself when key is None; `index` is ignored for the Server mapping)."""

    section: str
    index: int
    key: str | None
    text: str


@dataclass(frozen=True)
class PulledConfig:
    document: dict[str, Any]  # the config file's mapping, sections in interface.md's order
    notes: tuple[Note, ...]
    header: tuple[str, ...]  # the file's opening comment lines, without '#'


def _plain(value: Any) -> Any:
    """A JSON/YAML-ready copy of a botocore value (mappings and lists copied, None dropped)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _pick(section: str, response: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _plain(response[k]) for k in FIELDS[section] if response.get(k) is not None}


def _with_tags(entry: dict[str, Any], item: PulledResource) -> dict[str, Any]:
    if item.tags:
        entry["Tags"] = [{"Key": k, "Value": v} for k, v in item.tags]
    return entry


def _extension_tags(item: PulledResource) -> set[str]:
    """Names of the `mailmgr:` tags (extension settings of API-created resources, which the
    loader applies): a point that has them gets no placeholder for those keys."""
    return {k[len(TAG_PREFIX):] for k, _ in item.tags if k.startswith(TAG_PREFIX)}


def _tag_ports(items: Iterable[PulledResource]) -> set[int]:
    """The ports the points' `mailmgr:Listen` / `mailmgr:TlsWrappedListen` tags bind (values
    that do not parse are left to check-config)."""
    ports: set[int] = set()
    keys = (TAG_PREFIX + "Listen", TAG_PREFIX + "TlsWrappedListen")
    for item in items:
        for key, value in item.tags:
            for text in value.split(",") if key in keys else ():
                try:
                    ports.add(parse_host_port(text.strip()).port)
                except ValueError:
                    continue
    return ports


def _free_ports(taken: set[int]) -> Iterator[int]:
    """Placeholder ports from FIRST_PORT up, skipping `taken` (tag ports, the admin port): a
    placeholder never lands on an address another listener binds."""
    port = FIRST_PORT
    while True:
        if port not in taken:
            yield port
        port += 1


def _ingress_point(item: PulledResource, section_index: int, ports: Iterator[int],
                   new_password: Callable[[], str]) -> tuple[dict[str, Any], list[Note]]:
    r = item.response
    entry = _pick("IngressPoints", r)
    notes: list[Note] = []

    def note(key: str | None, text: str) -> None:
        notes.append(Note("IngressPoints", section_index, key, text))

    auth = r.get("IngressPointAuthConfiguration") or {}
    configuration: dict[str, Any] = {}
    if auth.get("SecretArn"):
        configuration["SecretArn"] = auth["SecretArn"]
    if auth.get("TlsAuthConfiguration"):
        configuration["TlsAuthConfiguration"] = _plain(auth["TlsAuthConfiguration"])
    if "IngressPointPasswordConfiguration" in auth or (
            r.get("Type") == "AUTH" and not configuration):
        # Mail Manager never returns the SMTP password (only its version).
        configuration["SmtpPassword"] = new_password()
        note("IngressPointConfiguration",
             "SmtpPassword: AWS never returns an ingress point's password; this one is "
             "random. Set the password your clients use (or SecretArn).")
    if configuration:
        entry["IngressPointConfiguration"] = configuration
    if r.get("Type") == "MTLS" and "TlsAuthConfiguration" not in configuration:
        note(None, "the endpoint returned no trust store for this MTLS point: add "
                   "IngressPointConfiguration: {TlsAuthConfiguration: {TrustStore: {CAContent: "
                   "PEM}}} (`mailmgr certs truststore` prints one).")
    if r.get("Status") in ("CLOSED", "CLOSING"):
        # Status is output-only in AWS, but mailmgr's Status extension can keep a closed point
        # closed; every other state (provisioning, updating, ...) runs as ACTIVE.
        entry["Status"] = "CLOSED"
    extension = _extension_tags(item)
    if not extension & {"Listen", "TlsWrappedListen"}:
        entry["Listen"] = [f"127.0.0.1:{next(ports)}"]
        note("Listen", "where this ingress point accepts SMTP (AWS has no such setting), "
                       "e.g. [\"0.0.0.0:25\"]; each point needs its own address.")
    needs_certificate = (r.get("Type") in ("AUTH", "MTLS")
                         or r.get("TlsPolicy") in ("REQUIRED", "FIPS")
                         or "TlsWrappedListen" in extension)
    if needs_certificate and not {"CertificateFile", "PrivateKeyFile"} <= extension:
        entry["TlsCertificate"] = {"CertificateFile": "certs/server.pem",
                                   "PrivateKeyFile": "certs/server.key"}
        note("TlsCertificate", "the server certificate (AWS manages its own): point at yours; "
                               "while both files are missing, serve creates a development "
                               "certificate there.")
    return _with_tags(entry, item), notes


def _walk(value: Any, expression: str | None = None) -> Iterator[tuple[str | None, str, Any]]:
    """(nearest enclosing *Expression key, key, value) for every mapping entry under `value`."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            yield expression, key, inner
            yield from _walk(inner, key if str(key).endswith("Expression") else expression)
    elif isinstance(value, list):
        for inner in value:
            yield from _walk(inner, expression)


@dataclass
class _AnalyzerUse:
    fields: set[tuple[str | None, str]] = field(default_factory=set)  # (expression, ResultField)
    at_rcpt: bool = False  # named by a traffic policy: evaluated before the message exists


def _fits(engine: AnalyzerEngine, expression: str | None, result_field: str) -> bool:
    fields = RESULT_FIELDS[engine]
    name = result_field.removeprefix("addon.")
    if name not in fields:
        return False
    if expression == "VerdictExpression":
        return name == "verdict"
    if expression == "BooleanExpression":
        return fields[name] is bool
    if expression == "StringExpression":
        return fields[name] is str
    return True


def _engine(use: _AnalyzerUse) -> tuple[AnalyzerEngine, bool]:
    """The first local engine whose result fields fit every use (only Dnsbl runs at RCPT
    time), and whether one fits at all."""
    for engine in AnalyzerEngine:
        if use.at_rcpt and engine is not AnalyzerEngine.DNSBL:
            continue
        if all(_fits(engine, e, f) for e, f in use.fields):
            return engine, True
    return (AnalyzerEngine.DNSBL if use.at_rcpt else AnalyzerEngine.RSPAMD), False


def _unique(base: str, taken: set[str], limit: int = 64) -> str:
    base = (_SLUG.sub("-", base).strip("-.") or "item")[:limit]
    name, n = base, 2
    while name in taken:
        suffix = f"-{n}"
        name, n = base[: limit - len(suffix)] + suffix, n + 1
    taken.add(name)
    return name


def _analyzers(document: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Note]]:
    """One analyzer per add-on the conditions name. ARNs of one add-on instance in another
    region or account share it: the loader matches them by instance ID, and refuses two
    analyzers with the same one."""
    uses: dict[str, _AnalyzerUse] = {}
    first_ref: dict[str, str] = {}
    refs = sorted((str(value["Analyzer"]), expression, str(value.get("ResultField", "")),
                   at_rcpt)
                  for section, at_rcpt in (("TrafficPolicies", True), ("RuleSets", False))
                  for expression, key, value in _walk(document.get(section, []))
                  if key == "Analysis" and isinstance(value, Mapping) and "Analyzer" in value)
    for ref, expression, result_field, at_rcpt in refs:
        group = instance_id(ref) or ref
        first_ref.setdefault(group, ref)
        use = uses.setdefault(group, _AnalyzerUse())
        use.fields.add((expression, result_field))
        use.at_rcpt |= at_rcpt
    entries: list[dict[str, Any]] = []
    notes: list[Note] = []
    names: set[str] = set()
    for i, group in enumerate(sorted(uses)):
        ref = first_ref[group]
        engine, fits = _engine(uses[group])
        entry: dict[str, Any]
        if ARN_PATTERN.fullmatch(ref):
            entry = {"Name": _unique(instance_id(ref), names), "AnalyzerArn": ref}
        elif NAME_PATTERN.fullmatch(ref):
            entry = {"Name": _unique(ref, names)}
        else:
            entry = {"Name": _unique(ref.rsplit("/", 1)[-1], names)}
        entry[engine.value] = copy.deepcopy(_ENGINE_SETTINGS[engine])
        used = ", ".join(sorted({f for _, f in uses[group].fields}))
        text = (f"the local engine behind this add-on (result fields used: {used}): set its "
                f"{engine.value} settings, or pick another engine.")
        if not fits:
            text += " No local engine has all of these result fields: check-config says which."
        notes.append(Note("Analyzers", i, None, text))
        entries.append(entry)
    return entries, notes


def _mailboxes(document: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Note]]:
    arns = sorted({str(value["MailboxArn"]) for _, key, value in _walk(document.get("RuleSets", []))
                   if key == "DeliverToMailbox" and isinstance(value, Mapping)
                   and value.get("MailboxArn")})
    entries: list[dict[str, Any]] = []
    notes: list[Note] = []
    slugs: set[str] = set()
    for i, arn in enumerate(arns):
        slug = _unique(re.split(r"[/:]", arn)[-1], slugs)
        entries.append({"MailboxArn": arn, "Maildir": f"var/maildir/{slug}"})
        notes.append(Note("Mailboxes", i, None,
                          "where DeliverToMailbox puts this mailbox's mail: a Maildir "
                          "folder, or Lmtp: host:port of your mail store."))
    return entries, notes


def _owner(account: Account) -> tuple[str, str | None]:
    """(Region, AccountId) of the resources' ARNs; the pulled region and none without one."""
    for items in account.resources.values():
        for item in items:
            for key in ARN_KEYS:
                match = _ARN.fullmatch(str(item.response.get(key) or ""))
                if match:
                    return match.group(1), match.group(2)
    return account.region, None


def _plural(n: int, word: str) -> str:
    """`1 relay`, `2 relays`, `0 traffic policies`: -y after a consonant becomes -ies."""
    if n == 1:
        return f"1 {word}"
    if word.endswith("y") and word[-2:-1] not in tuple("aeiou"):
        return f"{n} {word[:-1]}ies"
    return f"{n} {word}s"


_WORDS = {"IngressPoints": "ingress point", "TrafficPolicies": "traffic policy",
          "RuleSets": "rule set", "Relays": "relay", "AddressLists": "address list",
          "Archives": "archive"}


def _header(account: Account, document: dict[str, Any], skipped: int) -> tuple[str, ...]:
    endpoint = account.endpoint_url or "the AWS endpoint"
    counts = ", ".join(_plural(len(document.get(s, [])), w) for s, w in _WORDS.items())
    members = sum(len(e.get("Members", [])) for e in document.get("AddressLists", []))
    lines = [
        "mailmgr config pulled from Mail Manager",
        f"  region {account.region}, {endpoint}, at "
        f"{account.pulled_at.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        f"  {counts}",
        f"  {_plural(members, 'address list member')}",
    ]
    if skipped:
        lines.append(f"  not pulled: {_plural(skipped, 'archive')} pending deletion")
    lines += [
        "Settings AWS does not have (listen addresses, certificates, mailbox and analyzer",
        f"engines) and secrets it never returns are marked '# {PLACEHOLDER.strip()}': set them,",
        "then `mailmgr check-config --config FILE` and `mailmgr serve --config FILE`.",
    ]
    return tuple(lines)


def _name_key(section: str) -> Callable[[PulledResource], str]:
    key = FIELDS[section][0]
    return lambda item: str(item.response.get(key, ""))


def convert(account: Account, *,
            new_password: Callable[[], str] = lambda: secrets.token_hex(16)) -> PulledConfig:
    """The config document for `account` (sections in interface.md's order, entries by name)
    with its placeholder notes and header. `new_password` makes the placeholder SMTP password of
    a password-auth ingress point (AWS never returns the real one)."""
    region, account_id = _owner(account)
    server: dict[str, Any] = {"Hostname": HOSTNAME, "Region": region}
    if account_id:
        server["AccountId"] = account_id
    document: dict[str, Any] = {"Server": server}
    notes: list[Note] = [Note("Server", 0, "Hostname", "this server's name (SMTP banner, EHLO, "
                                                       "Authentication-Results).")]
    skipped = 0
    ports = _free_ports(_tag_ports(account.resources.get("IngressPoints", ())) | {ADMIN_PORT})
    for section in FIELDS:
        items = sorted(account.resources.get(section, ()), key=_name_key(section))
        entries: list[dict[str, Any]] = []
        for item in items:
            if section == "Archives" and item.response.get("ArchiveState") == "PENDING_DELETION":
                skipped += 1
                continue
            if section == "IngressPoints":
                entry, more = _ingress_point(item, len(entries), ports, new_password)
                notes += more
            else:
                entry = _pick(section, item.response)
                if section == "AddressLists":
                    entry["Members"] = list(item.members)
                if section == "Archives":
                    entry["Storage"] = {"Local": {}}
                    notes.append(Note(section, len(entries), "Storage",
                                      "where archived mail is kept: Local (under "
                                      "DataDirectory) or S3: {Bucket, Prefix}."))
                _with_tags(entry, item)
            entries.append(entry)
        if entries:
            document[section] = entries
    for section, build in (("Mailboxes", _mailboxes), ("Analyzers", _analyzers)):
        entries, more = build(document)
        if entries:
            document[section] = entries
            notes += more
    return PulledConfig(document, tuple(notes), _header(account, document, skipped))
