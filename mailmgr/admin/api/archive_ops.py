"""(filled by the issue-14 helpers)"""

from __future__ import annotations

from typing import Any

from mailmgr.admin.api.registry import Handler

OPERATIONS: dict[str, Handler] = {}


def register_routes(router: Any, service: Any) -> None:
    return None
