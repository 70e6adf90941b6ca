"""TagResource, UntagResource and ListTagsForResource on the six configuration resources: tags
live in each entry's `Tags` (so `mailmgr:` extension tags reach the loader, which applies them)."""

from __future__ import annotations

from typing import Any

from mailmgr.admin.api.errors import not_found, validation
from mailmgr.admin.api.registry import Handler
from mailmgr.admin.api.resources import find, touch
from mailmgr.admin.api.service import ApiService, Focus
from mailmgr.config.ids import KINDS, ResourceKind, parse_arn
from mailmgr.state.api_store import ApiState

MAX_TAGS = 200  # AWS: at most 200 tags per resource (TagList max)
_BY_ARN_TYPE = {info.arn_type: kind for kind, info in KINDS.items()}


def _target(arn: str) -> tuple[ResourceKind, str]:
    parsed = parse_arn(arn)
    if parsed is None or parsed.resource_type not in _BY_ARN_TYPE or not parsed.resource_id:
        raise not_found(f"no taggable resource has the ARN {arn!r:.200}")
    return _BY_ARN_TYPE[parsed.resource_type], parsed.resource_id


async def tag_resource(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    kind, rid = _target(params["ResourceArn"])

    def change(state: ApiState) -> tuple[ApiState, dict[str, Any]]:
        entry = find(state, kind, rid)
        tags = {t["Key"]: t["Value"] for t in entry.get("Tags") or []}
        tags.update({t["Key"]: t["Value"] for t in params["Tags"]})
        if len(tags) > MAX_TAGS:
            raise validation(f"a resource has at most {MAX_TAGS} tags")
        entry["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
        touch(state, rid)
        return state, {}

    return await service.mutate("TagResource", params, change, focus=Focus(kind, rid))


async def untag_resource(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    kind, rid = _target(params["ResourceArn"])
    keys = set(params["TagKeys"])

    def change(state: ApiState) -> tuple[ApiState, dict[str, Any]]:
        entry = find(state, kind, rid)
        kept = [t for t in entry.get("Tags") or [] if t.get("Key") not in keys]
        if kept:
            entry["Tags"] = kept
        else:
            entry.pop("Tags", None)
        touch(state, rid)
        return state, {}

    return await service.mutate("UntagResource", params, change, focus=Focus(kind, rid))


async def list_tags(service: ApiService, params: dict[str, Any]) -> dict[str, Any]:
    kind, rid = _target(params["ResourceArn"])
    entry = find(await service.state(), kind, rid)
    return {"Tags": list(entry.get("Tags") or [])}


OPERATIONS: dict[str, Handler] = {
    "TagResource": tag_resource,
    "UntagResource": untag_resource,
    "ListTagsForResource": list_tags,
}
