"""The one explicit table of Mail Manager API operations: what each operation name runs, and the
operations mailmgr refuses with the reason (a drift test compares both with the installed
botocore model, so a new AWS operation cannot go unnoticed)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailmgr.admin.api.service import ApiService

# A handler gets the service and the validated request (timestamps as aware datetimes) and
# returns the response members (output shape names; unset members absent). Raises ApiError.
Handler = Callable[["ApiService", dict[str, Any]], Awaitable[dict[str, Any]]]


def operations() -> dict[str, Handler]:
    """Every implemented operation, by its model name."""
    from mailmgr.admin.api import addons, address_members, archive_ops, resources, tags

    table: dict[str, Handler] = {}
    for module in (resources, tags, address_members, archive_ops, addons):
        for name, handler in module.OPERATIONS.items():
            if name in table:
                raise RuntimeError(f"operation {name} registered twice")
            table[name] = handler
    return table


_ADDONS_IN_FILE = (
    "add-ons are configured in the Analyzers section of the config file (an add-on runs on a "
    "local engine whose settings - DNS zones, rspamd URL, clamd address - the AWS API cannot "
    "carry); ListAddonInstances/GetAddonInstance and ListAddonSubscriptions/"
    "GetAddonSubscription show the configured ones")

# Operations answered with ValidationException and this reason (documented in the README; the
# drift test checks that every model operation is here or implemented).
REFUSED: dict[str, str] = {
    "CreateAddonSubscription": _ADDONS_IN_FILE,
    "CreateAddonInstance": _ADDONS_IN_FILE,
    "DeleteAddonSubscription": _ADDONS_IN_FILE,
    "DeleteAddonInstance": _ADDONS_IN_FILE,
}
