"""The `Analyzers` section (mailmgr's extension): entries -> Analyzer models, all problems.

Checks names, add-on instance ARNs and each engine's settings (Dnsbl zones and return codes,
rspamd URL, clamd address, timeouts and bounds); it resolves no references and opens no sockets.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from mailmgr.config.fields import (
    Ctx,
    brief,
    check_keys,
    index_path,
    key_path,
    mapping,
    opt_bool,
    opt_number,
    opt_str,
    parse_host_port,
    type_name,
)
from mailmgr.config.models import (
    Analyzer,
    AnalyzerEngine,
    ClamavSettings,
    DnsblSettings,
    DnsblZone,
    DnsblZoneType,
    ListenAddress,
    RspamdSettings,
)

ANALYZER_KEYS = ("Name", "AnalyzerArn", "Dnsbl", "Rspamd", "Clamav")
ENGINES = tuple(e.value for e in AnalyzerEngine)
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# An add-on instance ARN as Mail Manager shows it: arn:aws:ses:us-east-1:123456789012:
# addon-instance/ai-…. It is also within botocore's AnalyzerArn pattern, so a condition can
# name it. Partition, region and account are kept as written; references may differ in them.
ARN_PATTERN = re.compile(
    r"arn:aws[a-z-]*:ses:[a-z0-9-]+:\d{12}:addon-instance/([A-Za-z0-9_.-]{1,100})"
)
MAX_TIMEOUT = 300.0  # seconds; any analysis slower than this is a broken engine
MAX_CONCURRENCY = 1024
MAX_STREAM_BYTES = 4 * 1024**3 - 1  # clamd's INSTREAM length is a 32-bit unsigned chunk size
MAX_BODY_DOMAINS = 1000
MAX_ZONES = 50
MAX_CODES = 256
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_DNS_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")
_LIST_NAME = re.compile(r"[^\s,]{1,100}")
_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
# 127.255.255.0/24: Spamhaus's "query refused / rate limited / typo" answers, never a listing.
_ERROR_CODES = ipaddress.IPv4Network("127.255.255.0/24")
_UNIX_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL
_PLACEHOLDER: dict[AnalyzerEngine, DnsblSettings | RspamdSettings | ClamavSettings] = {
    AnalyzerEngine.DNSBL: DnsblSettings(zones=()),
    AnalyzerEngine.RSPAMD: RspamdSettings(url=""),
    AnalyzerEngine.CLAMAV: ClamavSettings(),
}


def instance_id(arn: str) -> str:
    """The add-on instance ID part of an ARN that matched ARN_PATTERN ('' otherwise)."""
    match = ARN_PATTERN.fullmatch(arn)
    return match.group(1) if match else ""


def derived_instance_id(name: str) -> str:
    """The add-on instance ID the Mail Manager API shows for an analyzer without AnalyzerArn:
    `ai-` and 24 base32 characters of the Name's SHA-256 (stable, within AWS's ID pattern)."""
    digest = hashlib.sha256(b"mailmgr-analyzer:" + name.encode()).digest()
    return "ai-" + base64.b32encode(digest).decode("ascii").lower()[:24]


def find_analyzer(analyzers: tuple[Analyzer, ...], ref: str) -> Analyzer | None:
    """The analyzer `ref` names: its Name, its AnalyzerArn (exact, case-sensitive), or an
    add-on instance ARN with the same instance ID in another partition, region or account (as
    other resources' ARNs are matched). What the loader uses for `Analysis.Analyzer`; explain's
    `--analysis ANALYZER:FIELD=VALUE` can use it too."""
    for item in analyzers:
        if ref in (item.name, item.arn):
            return item
    wanted = instance_id(ref)
    if wanted:
        for item in analyzers:
            if item.arn and instance_id(item.arn) == wanted:
                return item
        for item in analyzers:  # the ARN the API shows for an analyzer without AnalyzerArn
            if not item.arn and derived_instance_id(item.name) == wanted:
                return item
    return None


def build_analyzers(ctx: Ctx, data: dict[str, Any], path: str = "$.Analyzers"
                    ) -> tuple[Analyzer, ...]:
    """The entries of `data["Analyzers"]` (absent: none) that have a valid Name and one engine.
    Every problem is reported; the caller must not use the result when there were any."""
    value = data.get("Analyzers")
    if value is None:
        return ()
    if not isinstance(value, list):
        ctx.problem(path, f"expected a list, got {type_name(value)}")
        return ()
    out: list[Analyzer] = []
    names: dict[str, str] = {}
    arns: dict[str, str] = {}
    ids: dict[str, str] = {}
    for i, raw in enumerate(value):
        where = index_path(path, i)
        entry = mapping(ctx, raw, where)
        if entry is None:
            continue
        check_keys(ctx, entry, ANALYZER_KEYS, where)
        name = _name(ctx, entry, where, names)
        arn = _arn(ctx, entry, where, arns, ids)
        present = [k for k in ENGINES if k in entry]
        if len(present) != 1:
            ctx.problem(where, f"exactly one of {', '.join(ENGINES)} must be set"
                               + (f" (got {', '.join(present)})" if present else ""))
            continue
        engine = AnalyzerEngine(present[0])
        settings = _settings(ctx, engine, entry[engine.value], key_path(where, engine.value))
        if name is not None:
            # Kept with placeholder settings when they are broken (the load fails anyway), so
            # conditions naming it are still checked and not reported as "not found" too.
            out.append(Analyzer(name=name, arn=arn or "", engine=engine,
                                settings=settings or _PLACEHOLDER[engine]))
    return tuple(out)


def _name(ctx: Ctx, entry: dict[Any, Any], where: str, seen: dict[str, str]) -> str | None:
    name = entry.get("Name")
    at = key_path(where, "Name")
    if name is None:
        ctx.problem(where, "missing required key 'Name'")
        return None
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        ctx.problem(at, f"value {brief(name)} does not match pattern {NAME_PATTERN.pattern} "
                        "(1-64 letters, digits, '-', '_', '.')")
        return None
    if name in seen:
        ctx.problem(at, f"duplicate analyzer Name '{name}' (also at {seen[name]})")
    seen.setdefault(name, where)
    return name


def _arn(ctx: Ctx, entry: dict[Any, Any], where: str, arns: dict[str, str],
         ids: dict[str, str]) -> str | None:
    if entry.get("AnalyzerArn") is None:
        return None
    at = key_path(where, "AnalyzerArn")
    arn = entry["AnalyzerArn"]
    if not isinstance(arn, str) or not ARN_PATTERN.fullmatch(arn):
        ctx.problem(at, f"{brief(arn)} is not an add-on instance ARN "
                        "(arn:aws:ses:REGION:ACCOUNT:addon-instance/ID)")
        return None
    if arn in arns:
        ctx.problem(at, f"duplicate AnalyzerArn '{arn}' (also at {arns[arn]})")
    elif instance_id(arn) in ids:
        # A reference by ARN may differ in region or account (as for other resources), so the
        # instance ID alone must name one analyzer.
        ctx.problem(at, f"add-on instance ID '{instance_id(arn)}' is also used by the "
                        f"AnalyzerArn at {ids[instance_id(arn)]}")
    arns.setdefault(arn, where)
    ids.setdefault(instance_id(arn), where)
    return arn


def _settings(ctx: Ctx, engine: AnalyzerEngine, value: object, where: str
              ) -> DnsblSettings | RspamdSettings | ClamavSettings | None:
    found = mapping(ctx, value, where)
    if found is None:
        return None
    match engine:
        case AnalyzerEngine.DNSBL:
            return _dnsbl(ctx, found, where)
        case AnalyzerEngine.RSPAMD:
            return _rspamd(ctx, found, where)
        case AnalyzerEngine.CLAMAV:
            return _clamav(ctx, found, where)


def _timeout(ctx: Ctx, found: dict[Any, Any], where: str, default: float) -> float:
    value = opt_number(ctx, found, "Timeout", where, maximum=MAX_TIMEOUT)
    if value is not None and value <= 0:
        ctx.problem(key_path(where, "Timeout"), "Timeout must be greater than 0 (seconds)")
        return default
    return default if value is None else value


def _concurrency(ctx: Ctx, found: dict[Any, Any], where: str, default: int) -> int:
    value = opt_number(ctx, found, "MaxConcurrency", where, minimum=1,
                       maximum=MAX_CONCURRENCY, integer=True)
    return default if value is None else int(value)


def _dnsbl(ctx: Ctx, found: dict[Any, Any], where: str) -> DnsblSettings | None:
    check_keys(ctx, found, ("Zones", "IncludePrivate", "MaxBodyDomains", "Timeout"), where)
    defaults = DnsblSettings(zones=())
    include_private = opt_bool(ctx, found, "IncludePrivate", where)
    body = opt_number(ctx, found, "MaxBodyDomains", where, minimum=0,
                      maximum=MAX_BODY_DOMAINS, integer=True)
    timeout = _timeout(ctx, found, where, defaults.timeout)
    at = key_path(where, "Zones")
    raw = found.get("Zones")
    if not isinstance(raw, list) or not raw:
        ctx.problem(at if "Zones" in found else where,
                    "Zones must be a non-empty list of {Zone, Type, Codes}"
                    + ("" if "Zones" in found else " (missing required key 'Zones')"))
        return None
    if len(raw) > MAX_ZONES:
        ctx.problem(at, f"at most {MAX_ZONES} zones per analyzer, got {len(raw)}")
    zones: list[DnsblZone] = []
    for i, item in enumerate(raw):
        zone = _zone(ctx, item, index_path(at, i))
        if zone is None:
            continue
        if any(z.zone == zone.zone and z.type is zone.type for z in zones):
            ctx.problem(index_path(at, i), f"duplicate zone '{zone.zone}' of Type {zone.type}")
        zones.append(zone)
    return DnsblSettings(
        zones=tuple(zones),
        include_private=bool(include_private),
        max_body_domains=defaults.max_body_domains if body is None else int(body),
        timeout=timeout,
    )


def _zone(ctx: Ctx, item: object, where: str) -> DnsblZone | None:
    found = mapping(ctx, item, where)
    if found is None:
        return None
    check_keys(ctx, found, ("Zone", "Type", "Codes"), where)
    zone = opt_str(ctx, found, "Zone", where)
    if zone is None:
        if "Zone" not in found:
            ctx.problem(where, "missing required key 'Zone'")
        return None
    name = zone.rstrip(".").lower()
    if not _DNS_NAME.fullmatch(zone) or len(name) > 253:
        ctx.problem(key_path(where, "Zone"), f"{brief(zone)} is not a valid DNS name")
        return None
    kind = found.get("Type")
    if kind not in tuple(DnsblZoneType):
        ctx.problem(key_path(where, "Type") if "Type" in found else where,
                    f"Type must be one of {', '.join(DnsblZoneType)}"
                    + (f", got {brief(kind)}" if "Type" in found else
                       " (missing required key 'Type')"))
        return None
    codes = _codes(ctx, found, where)
    return None if codes is None else DnsblZone(name, DnsblZoneType(kind), codes)


def _codes(ctx: Ctx, found: dict[Any, Any], where: str) -> tuple[tuple[str, str], ...] | None:
    """`Codes: {"127.0.1.2": spam-domain}`: answer address -> list name."""
    if found.get("Codes") is None:
        return ()
    at = key_path(where, "Codes")
    codes = mapping(ctx, found["Codes"], at, "a mapping of answer address to list name")
    if codes is None:
        return None
    if len(codes) > MAX_CODES:
        ctx.problem(at, f"at most {MAX_CODES} codes per zone, got {len(codes)}")
        return None
    out: list[tuple[str, str]] = []
    ok = True
    for code, name in codes.items():
        here = key_path(at, code)
        try:
            address = ipaddress.IPv4Address(code if isinstance(code, str) else "")
        except ValueError:
            ctx.problem(here, f"{brief(code)} is not an IPv4 answer address (127.0.0.2)")
            ok = False
            continue
        if address not in _LOOPBACK or address in _ERROR_CODES:
            ctx.problem(here, f"'{code}' is not a listing code: codes are in 127.0.0.0/8, "
                              "and 127.255.255.0/24 means an error (query refused or limited)")
            ok = False
        if not isinstance(name, str) or not _LIST_NAME.fullmatch(name):
            ctx.problem(here, f"list name {brief(name)} must be 1-100 characters without "
                              "commas or whitespace")
            ok = False
        if ok:
            out.append((str(address), name))
    return tuple(out) if ok else None


def _rspamd(ctx: Ctx, found: dict[Any, Any], where: str) -> RspamdSettings | None:
    check_keys(ctx, found, ("Url", "Timeout", "MaxConcurrency"), where)
    defaults = RspamdSettings(url="")
    timeout = _timeout(ctx, found, where, defaults.timeout)
    concurrency = _concurrency(ctx, found, where, defaults.max_concurrency)
    url = opt_str(ctx, found, "Url", where)
    if url is None:
        if "Url" not in found:
            ctx.problem(where, "missing required key 'Url'")
        return None
    problem = _url_problem(url)
    if problem:
        ctx.problem(key_path(where, "Url"), f"{brief(url)} {problem}")
        return None
    return RspamdSettings(url=url.rstrip("/"), timeout=timeout, max_concurrency=concurrency)


def _url_problem(url: str) -> str | None:
    """Why `url` cannot be an rspamd worker's base URL (http(s)://host[:port][/path])."""
    if any(c.isspace() for c in url):
        return "has whitespace"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return "has a control character"
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError as exc:  # "[::1" or "[not-an-address]" as the host
        return f"is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "is not an http:// or https:// URL"
    if not hostname:
        return "has no host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "must not have a query or fragment (the request goes to URL/checkv2)"
    try:
        port = parts.port
    except ValueError:
        return "has an invalid port (1-65535)"
    if port == 0:
        return "has an invalid port (1-65535)"
    return None


def _clamav(ctx: Ctx, found: dict[Any, Any], where: str) -> ClamavSettings | None:
    check_keys(ctx, found, ("Address", "Timeout", "MaxStreamBytes", "MaxConcurrency"), where)
    defaults = ClamavSettings()
    timeout = _timeout(ctx, found, where, defaults.timeout)
    concurrency = _concurrency(ctx, found, where, defaults.max_concurrency)
    stream = opt_number(ctx, found, "MaxStreamBytes", where, minimum=1,
                        maximum=MAX_STREAM_BYTES, integer=True)
    address = opt_str(ctx, found, "Address", where)
    if address is None:
        if "Address" not in found:
            ctx.problem(where, "missing required key 'Address' (unix:/path or host:port)")
        return None
    at = key_path(where, "Address")
    unix_path: str | None = None
    tcp: ListenAddress | None = None
    if address.startswith("unix:"):
        text = address[len("unix:"):]
        if not text or "\x00" in text:
            ctx.problem(at, f"{brief(address)} needs a socket path after 'unix:'")
            return None
        # A relative socket path is relative to the config file's folder, like other paths.
        unix_path = str(ctx.resolve(text))
        if len(unix_path.encode()) > _UNIX_PATH_MAX:
            ctx.problem(at, f"socket path '{unix_path}' is longer than {_UNIX_PATH_MAX} bytes "
                            "(the AF_UNIX limit)")
            return None
    else:
        try:
            tcp = parse_host_port(address)
        except ValueError as exc:
            ctx.problem(at, f"invalid clamd address (unix:/path or host:port): {exc}")
            return None
        if tcp.port == 0:
            ctx.problem(at, f"{brief(address)} has an invalid port (1-65535)")
            return None
    return ClamavSettings(
        unix_path=unix_path, tcp=tcp, timeout=timeout,
        max_stream_bytes=defaults.max_stream_bytes if stream is None else int(stream),
        max_concurrency=concurrency,
    )
