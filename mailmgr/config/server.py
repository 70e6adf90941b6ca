"""The `Server` section: mailmgr's own process settings, with their defaults.

Reads and checks values only; it never creates directories or contacts resolvers.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Any

from mailmgr.config.fields import (
    Ctx,
    check_keys,
    key_path,
    mapping,
    opt_bool,
    opt_number,
    opt_str,
    parse_host_port,
    str_list,
)
from mailmgr.config.files import read_file
from mailmgr.config.fleet import parse_processes, parse_shared_state
from mailmgr.config.models import (
    AdminSettings,
    AnalysisSettings,
    ApiCredentials,
    ListenAddress,
    RetryPolicy,
    ServerConfig,
    ServerLimits,
)

SERVER_KEYS = (
    "Hostname", "DataDirectory", "Region", "AccountId", "Aws", "Dns", "Log", "Workers",
    "Retry", "ShutdownGraceSeconds", "Limits", "Admin", "Analysis", "Processes", "SharedState",
)
DEFAULT_ADMIN_LISTEN = "127.0.0.1:9025"
MAX_TOKEN_FILE_BYTES = 4096
# Server.Limits key -> (ServerLimits field, integer, minimum, maximum)
_LIMITS: tuple[tuple[str, str, bool, float, float], ...] = (
    ("MaxConnections", "max_connections", True, 1, 1_000_000),
    ("MaxConnectionsPerAddress", "max_connections_per_address", True, 1, 1_000_000),
    ("ConnectionsPerAddressPerMinute", "connections_per_address_per_minute", True, 1, 10**9),
    ("MessagesPerConnection", "messages_per_connection", True, 1, 10**9),
    ("MessagesPerAddressPerMinute", "messages_per_address_per_minute", True, 1, 10**9),
    ("RecipientsPerConnection", "recipients_per_connection", True, 1, 10**9),
    ("RecipientsPerAddressPerMinute", "recipients_per_address_per_minute", True, 1, 10**9),
    ("ErrorsPerSession", "errors_per_session", True, 1, 10**6),
    ("CommandTimeoutSeconds", "command_timeout", False, 0.01, 86400),
    ("DataTimeoutSeconds", "data_timeout", False, 0.01, 86400),
    ("WriteTimeoutSeconds", "write_timeout", False, 0.01, 86400),
    ("SessionTimeoutSeconds", "session_timeout", False, 0.01, 7 * 86400),
    ("MinDataRateBytesPerSecond", "min_data_rate", False, 0, 10**12),
)
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LOG_FORMATS = ("json", "text")
_LOG_RECORDS = ("none", "mailmanager")  # Log.Records: Mail Manager's vended log records


def default_hostname() -> str:
    name = socket.getfqdn()
    return name if name and _HOSTNAME.fullmatch(name) else "localhost"


def default_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def _section(ctx: Ctx, server: dict[Any, Any], key: str, path: str,
             allowed: tuple[str, ...]) -> dict[Any, Any]:
    value = server.get(key)
    if value is None:
        return {}
    found = mapping(ctx, value, key_path(path, key))
    if found is None:
        return {}
    check_keys(ctx, found, allowed, key_path(path, key))
    return found


def parse_server(ctx: Ctx, value: object, path: str = "$.Server") -> ServerConfig:
    """Build ServerConfig; problems are reported and defaults used in their place."""
    server = {} if value is None else mapping(ctx, value, path) or {}
    check_keys(ctx, server, SERVER_KEYS, path)

    hostname = opt_str(ctx, server, "Hostname", path)
    if hostname is not None and not _HOSTNAME.fullmatch(hostname):
        ctx.problem(key_path(path, "Hostname"), f"'{hostname}' is not a valid host name")
    data_dir = opt_str(ctx, server, "DataDirectory", path) or "var"
    region = opt_str(ctx, server, "Region", path)
    if region is not None and not _REGION.fullmatch(region):
        ctx.problem(key_path(path, "Region"), f"'{region}' is not an AWS region name")
    account = server.get("AccountId", "000000000000")
    if not isinstance(account, str) or not re.fullmatch(r"\d{12}", account):
        ctx.problem(key_path(path, "AccountId"), "AccountId must be a string of 12 digits")
        account = "000000000000"

    aws_path = key_path(path, "Aws")
    aws = _section(ctx, server, "Aws", path, ("EndpointUrl", "EndpointUrls"))
    endpoint = opt_str(ctx, aws, "EndpointUrl", aws_path)
    urls: list[tuple[str, str]] = []
    raw_urls = aws.get("EndpointUrls")
    if raw_urls is not None:
        where = key_path(aws_path, "EndpointUrls")
        for service, url in (mapping(ctx, raw_urls, where) or {}).items():
            if isinstance(url, str) and url:
                urls.append((str(service), url))
            else:
                ctx.problem(key_path(where, service), "expected a URL string")
    for url_path, url in [(key_path(aws_path, "EndpointUrl"), endpoint)] + [
        (key_path(key_path(aws_path, "EndpointUrls"), s), u) for s, u in urls
    ]:
        if url is not None and not re.match(r"https?://[^\s/]+", url):
            ctx.problem(url_path, f"'{url}' is not an http(s) URL")

    dns_path = key_path(path, "Dns")
    dns = _section(ctx, server, "Dns", path, ("Nameservers", "Timeout", "VerdictTimeout"))
    nameservers: list[str] = []
    for text, where in str_list(ctx, dns, "Nameservers", dns_path):
        try:
            parse_host_port(text, default_port=53)
            nameservers.append(text)
        except ValueError as exc:
            ctx.problem(where, f"invalid nameserver: {exc}")
    timeout = opt_number(ctx, dns, "Timeout", dns_path, minimum=0.001)
    verdict_timeout = opt_number(ctx, dns, "VerdictTimeout", dns_path, minimum=0.001)

    log_path = key_path(path, "Log")
    log = _section(ctx, server, "Log", path, ("Format", "Level", "Records"))
    log_format = opt_str(ctx, log, "Format", log_path) or "json"
    if log_format not in _LOG_FORMATS:
        ctx.problem(key_path(log_path, "Format"), f"'{log_format}' is not one of json, text")
    level = (opt_str(ctx, log, "Level", log_path) or "INFO").upper()
    if level not in _LOG_LEVELS:
        ctx.problem(key_path(log_path, "Level"),
                    f"'{level}' is not one of {', '.join(_LOG_LEVELS)}")

    records = opt_str(ctx, log, "Records", log_path) or "none"
    if records not in _LOG_RECORDS:
        ctx.problem(key_path(log_path, "Records"),
                    f"'{records}' is not one of {', '.join(_LOG_RECORDS)}")
        records = "none"

    workers = opt_number(ctx, server, "Workers", path, minimum=1, maximum=256, integer=True)
    retry_path = key_path(path, "Retry")
    retry = _section(ctx, server, "Retry", path,
                     ("InitialDelaySeconds", "MaxDelaySeconds", "MaxAgeSeconds"))
    defaults = RetryPolicy()
    initial = opt_number(ctx, retry, "InitialDelaySeconds", retry_path, minimum=0.001)
    max_delay = opt_number(ctx, retry, "MaxDelaySeconds", retry_path, minimum=0.001)
    max_age = opt_number(ctx, retry, "MaxAgeSeconds", retry_path, minimum=0.0)
    policy = RetryPolicy(
        initial_delay=defaults.initial_delay if initial is None else initial,
        max_delay=defaults.max_delay if max_delay is None else max_delay,
        max_age=defaults.max_age if max_age is None else max_age,
    )
    if policy.max_delay < policy.initial_delay:
        ctx.problem(retry_path, "MaxDelaySeconds must not be less than InitialDelaySeconds")
    grace = opt_number(ctx, server, "ShutdownGraceSeconds", path, minimum=0.0)
    limits = _parse_limits(ctx, server, path)
    admin = _parse_admin(ctx, server, path)
    analysis = _parse_analysis(ctx, server, path)

    return ServerConfig(
        hostname=hostname or default_hostname(),
        data_directory=ctx.resolve(data_dir),
        region=region or default_region(),
        account_id=account,
        endpoint_url=endpoint,
        endpoint_urls=tuple(urls),
        dns_nameservers=tuple(nameservers),
        dns_timeout=5.0 if timeout is None else timeout,
        verdict_timeout=10.0 if verdict_timeout is None else verdict_timeout,
        log_format=log_format,
        log_level=level,
        log_records=records == "mailmanager",
        workers=8 if workers is None else int(workers),
        retry=policy,
        shutdown_grace=10.0 if grace is None else grace,
        limits=limits,
        admin=admin,
        analysis=analysis,
        processes=parse_processes(ctx, server, path),
        shared_state=parse_shared_state(ctx, server, path),
    )


def _parse_limits(ctx: Ctx, server: dict[Any, Any], path: str) -> ServerLimits:
    """`Server.Limits`; a bad value is reported and its default used."""
    where = key_path(path, "Limits")
    section = _section(ctx, server, "Limits", path, tuple(k for k, *_ in _LIMITS))
    values: dict[str, float] = {}
    for key, name, integer, low, high in _LIMITS:
        value = opt_number(ctx, section, key, where, minimum=low, maximum=high, integer=integer)
        if value is not None:
            values[name] = int(value) if integer else value
    limits = ServerLimits(**values)  # type: ignore[arg-type]
    if limits.max_connections_per_address > limits.max_connections:
        ctx.problem(key_path(where, "MaxConnectionsPerAddress"),
                    "MaxConnectionsPerAddress must not be greater than MaxConnections")
    return limits


def _parse_admin(ctx: Ctx, server: dict[Any, Any], path: str) -> AdminSettings:
    """`Server.Admin`: Listen (default 127.0.0.1:9025, [] = off), TokenFile, DrainSeconds."""
    where = key_path(path, "Admin")
    section = _section(ctx, server, "Admin", path,
                       ("Listen", "TokenFile", "DrainSeconds", "Credentials"))
    texts = ([(DEFAULT_ADMIN_LISTEN, key_path(where, "Listen"))]
             if section.get("Listen") is None else str_list(ctx, section, "Listen", where))
    listen: list[ListenAddress] = []
    for text, at in texts:
        try:
            listen.append(parse_host_port(text))
        except ValueError as exc:
            ctx.problem(at, f"invalid admin listen address: {exc}")
    drain = opt_number(ctx, section, "DrainSeconds", where, minimum=0.0, maximum=3600)
    token_file = opt_str(ctx, section, "TokenFile", where)
    token = None if token_file is None else _read_token(ctx, token_file,
                                                         key_path(where, "TokenFile"))
    return AdminSettings(listen=tuple(listen), token=token,
                         drain_seconds=5.0 if drain is None else drain,
                         credentials=_parse_credentials(ctx, section, where))


_ACCESS_KEY = re.compile(r"[A-Za-z0-9_]{1,128}")


def _parse_credentials(ctx: Ctx, admin: dict[Any, Any], path: str) -> ApiCredentials | None:
    """`Server.Admin.Credentials: {AccessKeyId, SecretAccessKeyFile}`: SigV4 verification of
    the Mail Manager API (absent: any signature is accepted)."""
    if admin.get("Credentials") is None:
        return None
    where = key_path(path, "Credentials")
    section = _section(ctx, admin, "Credentials", path, ("AccessKeyId", "SecretAccessKeyFile"))
    key = opt_str(ctx, section, "AccessKeyId", where)
    secret_file = opt_str(ctx, section, "SecretAccessKeyFile", where)
    if key is None or secret_file is None:
        ctx.problem(where, "Credentials needs AccessKeyId and SecretAccessKeyFile")
        return None
    if not _ACCESS_KEY.fullmatch(key):
        ctx.problem(key_path(where, "AccessKeyId"), "an access key ID is 1-128 letters, digits "
                    "and underscores (like AKIDLOCAL)")
        return None
    secret = _read_token(ctx, secret_file, key_path(where, "SecretAccessKeyFile"))
    return None if secret is None else ApiCredentials(key, secret)


_ANALYSIS_TIMEOUT_MAX = 300.0  # seconds; as each analyzer's own Timeout


def _parse_analysis(ctx: Ctx, server: dict[Any, Any], path: str) -> AnalysisSettings:
    """`Server.Analysis`: AddHeaders (X-Mailmgr-Spam/-Virus, default false) and Timeout (one
    message's analyses together, seconds, default 15)."""
    where = key_path(path, "Analysis")
    section = _section(ctx, server, "Analysis", path, ("AddHeaders", "Timeout"))
    defaults = AnalysisSettings()
    add_headers = opt_bool(ctx, section, "AddHeaders", where)
    timeout = opt_number(ctx, section, "Timeout", where, maximum=_ANALYSIS_TIMEOUT_MAX)
    if timeout is not None and timeout <= 0:
        ctx.problem(key_path(where, "Timeout"), "Timeout must be greater than 0 (seconds)")
        timeout = None
    return AnalysisSettings(
        add_headers=defaults.add_headers if add_headers is None else add_headers,
        timeout=defaults.timeout if timeout is None else timeout,
    )


def _read_token(ctx: Ctx, name: str, where: str) -> str | None:
    """The bearer token in TokenFile (surrounding whitespace dropped); its value never appears
    in a problem message."""
    file = ctx.resolve(name)
    data = read_file(ctx, file, where, MAX_TOKEN_FILE_BYTES)
    if data is None:
        return None
    try:
        token = data.decode("ascii").strip()
    except UnicodeDecodeError:
        token = ""
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        ctx.problem(where, f"'{file}' must hold one token of printable ASCII without spaces")
        return None
    return token
