"""Request and response values by the botocore `mailmanager` model's shapes: timestamps and
blobs into Python values on the way in, output shapes (only modelled members that are set) on the
way out, for AWS JSON 1.0 (epoch seconds, base64) or RPC v2 CBOR (tag-1 times, byte strings);
and `NextToken` pagination."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any, TypeVar

from mailmgr.admin.api.errors import validation
from mailmgr.config.schema import service_model

T = TypeVar("T")


def _epoch(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    raise ValueError(f"not a timestamp: {type(value).__name__}")


def decode_input(value: Any, shape: Any, path: str = "") -> Any:
    """A validated request value with timestamps as aware datetimes and blobs as bytes.
    `path` names `value` in the request (`Filters.Include[0]`; "" for the request itself).
    Raises ApiError (ValidationException naming the member) for a timestamp or blob that does
    not parse."""
    kind = shape.type_name
    if value is None:
        return None
    if kind == "structure" and isinstance(value, dict):
        return {k: decode_input(v, shape.members[k], _join(path, k)) if k in shape.members
                else v for k, v in value.items()}
    if kind == "list" and isinstance(value, list):
        return [decode_input(v, shape.member, f"{path}[{i}]") for i, v in enumerate(value)]
    if kind == "map" and isinstance(value, dict):
        return {k: decode_input(v, shape.value, _join(path, k)) for k, v in value.items()}
    if kind == "timestamp":
        try:
            return _epoch(value)
        except (ValueError, OverflowError, OSError):
            raise validation(f"1 validation error detected: {path or shape.name}: "
                             f"{value!r:.60} is not a timestamp") from None
    if kind == "blob" and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            raise validation(f"1 validation error detected: {path or shape.name}: not valid "
                             f"base64") from None
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def encode_output(value: Any, shape: Any, *, cbor: bool) -> Any:
    """`value` reduced to `shape`: unknown keys and None members dropped; timestamps (aware
    datetimes or epoch seconds) as epoch seconds (JSON) or datetimes (CBOR); bytes as base64
    (JSON)."""
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return {}
        return {k: encode_output(v, shape.members[k], cbor=cbor)
                for k, v in value.items() if k in shape.members and v is not None}
    if kind == "list":
        return [encode_output(v, shape.member, cbor=cbor) for v in value or ()]
    if kind == "map":
        return {k: encode_output(v, shape.value, cbor=cbor) for k, v in (value or {}).items()}
    if kind == "timestamp":
        when = _epoch(value)
        return when if cbor else when.timestamp()
    if kind == "blob":
        data = value.encode() if isinstance(value, str) else bytes(value)
        return data if cbor else base64.b64encode(data).decode("ascii")
    return value


def input_shape(operation: str) -> Any:
    return service_model().operation_model(operation).input_shape


def output_shape(operation: str) -> Any:
    return service_model().operation_model(operation).output_shape


def page_size_limits(operation: str, key: str = "PageSize") -> tuple[int, int]:
    """(minimum, maximum) the model allows for the operation's page-size member."""
    shape = input_shape(operation)
    member = shape.members.get(key) if shape is not None else None
    meta = {} if member is None else member.metadata
    return int(meta.get("min", 1)), int(meta.get("max", 1000))


def _token(offset: int, scope: str) -> str:
    text = json.dumps({"o": offset, "s": scope}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode("ascii")


def paginate(items: Sequence[T], params: dict[str, Any], *, scope: str, default: int,
             size_key: str = "PageSize") -> tuple[list[T], str | None]:
    """One page of `items` (in a stable order) and the NextToken for the rest (None on the
    last page). A token is only valid for the same `scope` (operation and resource). Raises
    ApiError (ValidationException) for a token this server did not issue."""
    size = params.get(size_key) or default
    offset = 0
    token = params.get("NextToken")
    if token is not None:
        try:
            data = json.loads(base64.urlsafe_b64decode(str(token).encode("ascii")))
            offset = int(data["o"])
            if data["s"] != scope or offset < 0:
                raise ValueError(scope)
        except (ValueError, KeyError, TypeError, binascii.Error, UnicodeError):
            raise validation("NextToken is not valid for this request") from None
    page = list(items[offset:offset + size])
    more = offset + size < len(items)
    return page, _token(offset + size, scope) if more else None
