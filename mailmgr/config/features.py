"""Everything valid in AWS that this version of mailmgr cannot run yet, and the analyzer registry.

Each not-yet-implemented feature is one line here: implementing it means deleting that line (the
loader already builds full models for all of them). Callers attach the JSON path.
"""

from __future__ import annotations

NOT_IMPLEMENTED_ACTIONS: frozenset[str] = frozenset()
NOT_IMPLEMENTED_INGRESS_TYPES: frozenset[str] = frozenset()
NOT_IMPLEMENTED_TLS_POLICIES: frozenset[str] = frozenset()
TLS_WRAPPED_LISTEN_IMPLEMENTED = True
OPEN_INGRESS_CONFIGURATION_IMPLEMENTED = False
NOT_IMPLEMENTED_ARCHIVE_STORAGE: frozenset[str] = frozenset({"S3"})

# Local analyzers (Mail Manager add-ons), keyed by analyzer ARN -> short description.
# An `Analysis` naming an ARN that is not here is a config error.
ANALYZERS: dict[str, str] = {}

_SUFFIX = "is not implemented yet in this version of mailmgr"


def action_problem(action: str) -> str | None:
    return f"action '{action}' {_SUFFIX}" if action in NOT_IMPLEMENTED_ACTIONS else None


def analyzer_problem(analyzer_arn: str) -> str | None:
    if analyzer_arn in ANALYZERS:
        return None
    return f"unknown analyzer '{analyzer_arn}': no local analyzer is registered"


def ingress_type_problem(ingress_type: str) -> str | None:
    if ingress_type in NOT_IMPLEMENTED_INGRESS_TYPES:
        return f"ingress point Type '{ingress_type}' {_SUFFIX}"
    return None


def tls_policy_problem(tls_policy: str) -> str | None:
    if tls_policy in NOT_IMPLEMENTED_TLS_POLICIES:
        return f"TlsPolicy '{tls_policy}' {_SUFFIX}"
    return None


def tls_wrapped_listen_problem(count: int) -> str | None:
    if count and not TLS_WRAPPED_LISTEN_IMPLEMENTED:
        return f"TlsWrappedListen (implicit TLS listeners) {_SUFFIX}"
    return None


def open_configuration_problem(ingress_type: str, configured: bool) -> str | None:
    if ingress_type == "OPEN" and configured and not OPEN_INGRESS_CONFIGURATION_IMPLEMENTED:
        return f"IngressPointConfiguration on an OPEN ingress point {_SUFFIX}"
    return None


def archive_storage_problem(storage: str) -> str | None:
    if storage in NOT_IMPLEMENTED_ARCHIVE_STORAGE:
        return f"archive Storage '{storage}' {_SUFFIX}"
    return None
