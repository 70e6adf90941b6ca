"""Mail Manager's add-on operations on the analyzer registry (`Analyzers:` of the config):
every analyzer is an add-on instance, and every add-on those instances run is a subscription.
Add-ons are configured in the file only (they need engine settings the AWS API cannot carry).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from mailmgr.admin.api.errors import not_found
from mailmgr.admin.api.registry import Handler
from mailmgr.admin.api.resources import times
from mailmgr.admin.api.service import ApiService
from mailmgr.admin.api.shapes import paginate
from mailmgr.config.analyzers import derived_instance_id, instance_id
from mailmgr.config.models import Analyzer, AnalyzerEngine, Config, DnsblSettings

_PAGE = 50  # the model allows PageSize 1-50 for both lists
# Abusix Mail Intelligence's DNS lists are served under this zone; every other DNS list is
# shown as Spamhaus's DBL, the add-on Mail Manager offers for DNS block lists.
_ABUSIX_ZONE = "abusix.zone"


def addon_name(analyzer: Analyzer) -> str:
    """The AWS add-on an analyzer stands in for: Dnsbl -> SPAMHAUS_DBL (ABUSIX_MAIL_INTELLIGENCE
    when every zone is under abusix.zone), Rspamd -> VADE_ADVANCED_EMAIL_SECURITY, Clamav ->
    TRENDMICRO_VSAPI (the README's "Email add-ons" table)."""
    if analyzer.engine is AnalyzerEngine.RSPAMD:
        return "VADE_ADVANCED_EMAIL_SECURITY"
    if analyzer.engine is AnalyzerEngine.CLAMAV:
        return "TRENDMICRO_VSAPI"
    settings = analyzer.settings
    zones = [z.zone.rstrip(".").lower() for z in settings.zones] if isinstance(
        settings, DnsblSettings) else []
    if zones and all(z == _ABUSIX_ZONE or z.endswith("." + _ABUSIX_ZONE) for z in zones):
        return "ABUSIX_MAIL_INTELLIGENCE"
    return "SPAMHAUS_DBL"


def subscription_id(name: str) -> str:
    """`as-` and 24 base32 characters of the add-on name's SHA-256 (stable across restarts)."""
    digest = hashlib.sha256(b"mailmgr-addon:" + name.encode()).digest()
    return "as-" + base64.b32encode(digest).decode("ascii").lower()[:24]


@dataclass(frozen=True)
class Instance:
    """One analyzer as an add-on instance: its AnalyzerArn's ID and ARN when it has one, else
    derived ones that `Analysis.Analyzer` accepts too (config.analyzers.find_analyzer)."""

    id: str
    arn: str
    addon_name: str
    subscription_id: str


def instances(config: Config) -> list[Instance]:
    """Every configured analyzer, in the file's order."""
    out = []
    prefix = f"arn:aws:ses:{config.server.region}:{config.server.account_id}"
    for analyzer in config.analyzers:
        if analyzer.arn:
            rid, arn = instance_id(analyzer.arn), analyzer.arn
        else:
            rid = derived_instance_id(analyzer.name)
            arn = f"{prefix}:addon-instance/{rid}"
        name = addon_name(analyzer)
        out.append(Instance(rid, arn, name, subscription_id(name)))
    return out


def _subscriptions(config: Config) -> list[tuple[str, str, str]]:
    """(ID, ARN, add-on name) of every add-on at least one analyzer runs, first use first."""
    prefix = f"arn:aws:ses:{config.server.region}:{config.server.account_id}"
    seen: dict[str, tuple[str, str, str]] = {}
    for item in instances(config):
        seen.setdefault(item.addon_name, (item.subscription_id,
                                          f"{prefix}:addon-subscription/{item.subscription_id}",
                                          item.addon_name))
    return list(seen.values())


async def _created(service: ApiService, rid: str) -> float:
    return times(service, await service.state(), rid)[0]


def _describe_instance(item: Instance, created: float) -> dict[str, Any]:
    return {"AddonInstanceId": item.id, "AddonSubscriptionId": item.subscription_id,
            "AddonName": item.addon_name, "AddonInstanceArn": item.arn,
            "CreatedTimestamp": created}


async def list_instances(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    page, token = paginate(instances(service.config()), params, scope="ListAddonInstances",
                           default=_PAGE)
    return {"AddonInstances": [_describe_instance(i, await _created(service, i.id))
                               for i in page], "NextToken": token}


async def get_instance(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    wanted = params["AddonInstanceId"]
    for item in instances(service.config()):
        if item.id == wanted:
            return _describe_instance(item, await _created(service, item.id))
    raise not_found(f"add-on instance {wanted!r} not found: add-on instances are the "
                    "analyzers of the config file's Analyzers section")


async def list_subscriptions(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    page, token = paginate(_subscriptions(service.config()), params,
                           scope="ListAddonSubscriptions", default=_PAGE)
    return {"AddonSubscriptions": [
        {"AddonSubscriptionId": rid, "AddonSubscriptionArn": arn, "AddonName": name,
         "CreatedTimestamp": await _created(service, rid)} for rid, arn, name in page],
        "NextToken": token}


async def get_subscription(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    wanted = params["AddonSubscriptionId"]
    for rid, arn, name in _subscriptions(service.config()):
        if rid == wanted:
            return {"AddonSubscriptionArn": arn, "AddonName": name,
                    "CreatedTimestamp": await _created(service, rid)}
    raise not_found(f"add-on subscription {wanted!r} not found: a subscription exists for "
                    "each add-on an analyzer of the config file's Analyzers section runs")


OPERATIONS: dict[str, Handler] = {
    "ListAddonInstances": list_instances,
    "GetAddonInstance": get_instance,
    "ListAddonSubscriptions": list_subscriptions,
    "GetAddonSubscription": get_subscription,
}
