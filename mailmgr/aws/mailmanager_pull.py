"""Reading every Mail Manager resource of an account for `mailmgr config pull`: List* (all
pages), Get*, ListMembersOfAddressList and ListTagsForResource through aiobotocore.

Turning the responses into a config is config/pull.py's job; this module only reads, and turns
every expected failure into one PullError line.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore import xform_name
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)

from mailmgr.aws.errors import error_code
from mailmgr.config.pull import Account, PulledResource, convert
from mailmgr.config.pull_render import render
from mailmgr.errors import MailmgrError

GET_CONCURRENCY = 8  # Get*/ListTags/ListMembers calls in flight at once
DEFAULT_REGION = "us-east-1"
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
MAX_ATTEMPTS = 3  # in all; botocore standard mode retries throttling, 5xx, connection errors
T = TypeVar("T")


class PullError(MailmgrError):
    """An expected failure of `config pull` (no credentials, endpoint unreachable, an AWS error
    after botocore's retries); the message is one line for the operator."""


@dataclass(frozen=True)
class PullOptions:
    region: str | None = None  # None: AWS_REGION, AWS_DEFAULT_REGION, the profile, us-east-1
    profile: str | None = None
    endpoint_url: str | None = None  # None: AWS (or AWS_ENDPOINT_URL[_MAILMANAGER])


@dataclass(frozen=True)
class _Kind:
    section: str  # config section (config/pull.py FIELDS)
    list_op: str
    result_key: str
    id_key: str
    get_op: str
    arn_key: str


KINDS = (
    _Kind("IngressPoints", "ListIngressPoints", "IngressPoints", "IngressPointId",
          "GetIngressPoint", "IngressPointArn"),
    _Kind("TrafficPolicies", "ListTrafficPolicies", "TrafficPolicies", "TrafficPolicyId",
          "GetTrafficPolicy", "TrafficPolicyArn"),
    _Kind("RuleSets", "ListRuleSets", "RuleSets", "RuleSetId", "GetRuleSet", "RuleSetArn"),
    _Kind("Relays", "ListRelays", "Relays", "RelayId", "GetRelay", "RelayArn"),
    _Kind("AddressLists", "ListAddressLists", "AddressLists", "AddressListId",
          "GetAddressList", "AddressListArn"),
    _Kind("Archives", "ListArchives", "Archives", "ArchiveId", "GetArchive", "ArchiveArn"),
)
# Extra Get* parameters: an mTLS point's trust store is only returned when asked for.
_GET_EXTRA: dict[str, dict[str, str]] = {
    "GetIngressPoint": {"IncludeTrustStoreContents": "INCLUDE"}}


def resolve_region(session: AioSession, region: str | None) -> str:
    """--region, then AWS_REGION, then botocore's own resolution (AWS_DEFAULT_REGION, the
    profile's `region`), then us-east-1."""
    return (region or os.environ.get("AWS_REGION")
            or session.get_config_variable("region") or DEFAULT_REGION)


def shown_url(url: str | None) -> str | None:
    """`url` without user info, for the file's header and error lines."""
    if not url:
        return None
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class _Reader:
    def __init__(self, client: Any) -> None:
        self._client = client
        self._gate = asyncio.Semaphore(GET_CONCURRENCY)

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        async with self._gate:
            response: dict[str, Any] = await getattr(self._client, xform_name(operation))(
                **params)
            return response

    async def pages(self, operation: str, result_key: str, **params: Any) -> list[Any]:
        """Every item of a paginated List*: botocore's paginator (NextToken), or a NextToken
        loop for an operation the model gives none. Not gated: callers decide."""
        items: list[Any] = []
        name = xform_name(operation)
        # The largest page the model allows (1000 members, 50 resources): fewer round trips
        # for an address list of 100,000 members.
        size = self._client.meta.service_model.operation_model(operation).input_shape.members.get(
            "PageSize")
        largest = size.metadata.get("max") if size is not None else None
        if self._client.can_paginate(name):
            config = {"PaginationConfig": {"PageSize": largest}} if largest else {}
            async for page in self._client.get_paginator(name).paginate(**params, **config):
                items.extend(page.get(result_key) or [])
            return items
        token: str | None = None
        while True:
            page = await getattr(self._client, name)(
                **params, **({"NextToken": token} if token else {}),
                **({"PageSize": largest} if largest else {}))
            items.extend(page.get(result_key) or [])
            token = page.get("NextToken")
            if not token:
                return items

    async def resource(self, kind: _Kind, resource_id: str) -> PulledResource | None:
        """One resource with its tags (and members); None when it was deleted after the List
        (a Get, ListTags or ListMembers answering ResourceNotFoundException)."""
        try:
            return await self._resource(kind, resource_id)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise

    async def _resource(self, kind: _Kind, resource_id: str) -> PulledResource:
        response = await self._call(kind.get_op, **{kind.id_key: resource_id},
                                    **_GET_EXTRA.get(kind.get_op, {}))
        tags: list[Mapping[str, str]] = []
        arn = response.get(kind.arn_key)
        if arn:
            tags = (await self._call("ListTagsForResource", ResourceArn=arn)).get("Tags") or []
        members: list[Any] = []
        if kind.section == "AddressLists":
            async with self._gate:
                members = await self.pages("ListMembersOfAddressList", "Addresses",
                                           AddressListId=resource_id)
        return PulledResource(
            response=response,
            tags=tuple((str(t["Key"]), str(t.get("Value", ""))) for t in tags),
            members=tuple(str(m["Address"]) for m in members if m.get("Address")),
        )

    async def section(self, kind: _Kind) -> tuple[PulledResource, ...]:
        listed = await self.pages(kind.list_op, kind.result_key)
        ids = [str(item[kind.id_key]) for item in listed if item.get(kind.id_key)]
        found = await _all(self.resource(kind, i) for i in ids)
        return tuple(r for r in found if r is not None)


async def _all(coros: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run `coros` together; the first failure cancels the rest and is raised as itself (not
    as an ExceptionGroup), so it can be described in one line."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coro) for coro in coros]
    except BaseExceptionGroup as group_error:
        first: BaseException = group_error
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [task.result() for task in tasks]


def _describe(exc: BaseException, endpoint: str | None) -> str:
    """One line for an expected failure."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        message = str(error.get("Message") or "").strip()
        return (f"{exc.operation_name}: {error_code(exc)}"
                + (f": {message}" if message else ""))
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ("no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "or use --profile)")
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach {shown_url(exc.kwargs.get('endpoint_url')) or endpoint}"
    if isinstance(exc, ProfileNotFound | NoRegionError | BotoCoreError):
        return str(exc)
    if isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError | OSError):
        return f"cannot talk to {endpoint or 'AWS'}: {type(exc).__name__}: {exc}"
    return f"unexpected {type(exc).__name__}: {exc}"


_EXPECTED = (BotoCoreError, ClientError, aiohttp.ClientError, asyncio.TimeoutError, OSError)


async def read_account(options: PullOptions) -> Account:
    """Every Mail Manager resource of the account `options` reach. Raises PullError."""
    shown = shown_url(options.endpoint_url)
    try:
        session = AioSession(profile=options.profile)
        region = resolve_region(session, options.region)
        # Checked first: without credentials botocore would only fail at the first call.
        if await session.get_credentials() is None:
            raise NoCredentialsError()
        config = AioConfig(region_name=region, connect_timeout=CONNECT_TIMEOUT,
                           read_timeout=READ_TIMEOUT,
                           retries={"mode": "standard",
                                    "total_max_attempts": MAX_ATTEMPTS})
        async with session.create_client("mailmanager", region_name=region,
                                         endpoint_url=options.endpoint_url,
                                         config=config) as client:
            # The endpoint really used: also AWS_ENDPOINT_URL[_MAILMANAGER] or AWS's own.
            shown = shown_url(client.meta.endpoint_url) or shown
            reader = _Reader(client)
            sections = await _all(reader.section(kind) for kind in KINDS)
    except _EXPECTED as exc:
        raise PullError(f"config pull: {_describe(exc, shown)}") from exc
    return Account(region=region, endpoint_url=shown, pulled_at=datetime.now(UTC),
                   resources={kind.section: found for kind, found in zip(KINDS, sections,
                                                                          strict=True)})


async def pull_config(options: PullOptions) -> str:
    """The YAML text of a mailmgr config running the account's resources. Raises PullError."""
    return render(convert(await read_account(options)))
