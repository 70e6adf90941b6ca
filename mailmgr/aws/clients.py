"""Long-lived aiobotocore clients per (service, role), opened lazily, closed at shutdown.

The only module that creates AWS clients: endpoint and region overrides, timeouts and retries
are set here once; a `RoleArn` is assumed through STS and its credentials refresh themselves
before they expire (botocore's refreshable-credentials machinery), so clients never go stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioDeferredRefreshableCredentials
from aiobotocore.session import AioSession, get_session
from botocore import xform_name

from mailmgr.aws.errors import classify
from mailmgr.config.models import ServerConfig

# One place for timeouts and retries. botocore's own retries are kept low: the spool retries
# with backoff across minutes, and a message must not hold a worker for long. The read timeout
# leaves room for a 30 s synchronous Lambda invocation.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 35.0
# SES's limit on a RequestResponse Lambda. Enforced as the client's read timeout rather than by
# cancelling the call: a cancelled aiohttp request can leave its connection in the pool with the
# old response still to come, which the next request on that connection would then read.
LAMBDA_READ_TIMEOUT = 30.0
# botocore would re-send a timed-out Invoke and run the function again within one attempt; for
# these services every retry goes through the spool's backoff instead.
NO_SDK_RETRIES = frozenset({"lambda"})
MAX_ATTEMPTS = 2
ROLE_SESSION_SECONDS = 3600


@dataclass(frozen=True)
class AwsSettings:
    region: str
    endpoint_url: str | None = None
    endpoint_urls: Mapping[str, str] = field(default_factory=dict)
    max_attempts: int = MAX_ATTEMPTS  # botocore counts retries after the first try
    read_timeouts: Mapping[str, float] = field(
        default_factory=lambda: {"lambda": LAMBDA_READ_TIMEOUT}
    )

    @classmethod
    def from_server(cls, server: ServerConfig) -> AwsSettings:
        return cls(
            region=server.region,
            endpoint_url=server.endpoint_url,
            endpoint_urls=dict(server.endpoint_urls),
        )

    def endpoint_for(self, service: str) -> str | None:
        """Config wins over the environment: `Server.Aws.EndpointUrls[service]`, then
        `Server.Aws.EndpointUrl`; with neither, None lets botocore honour
        `AWS_ENDPOINT_URL_<SERVICE>` and `AWS_ENDPOINT_URL` itself."""
        return self.endpoint_urls.get(service) or self.endpoint_url

    def boto_config(self, service: str) -> AioConfig:
        overridden = bool(
            self.endpoint_for(service)
            or os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        return AioConfig(
            region_name=self.region,
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=self.read_timeouts.get(service, READ_TIMEOUT),
            retries={
                "max_attempts": 0 if service in NO_SDK_RETRIES else self.max_attempts,
                "mode": "standard",
            },
            max_pool_connections=32,
            # Emulators and private endpoints rarely do virtual-host bucket names.
            s3={"addressing_style": "path" if overridden else "auto"},
        )


class AwsClients:
    """`await clients.client("s3", role_arn)` returns a shared, open client; `close()` at
    shutdown. Concurrency-safe: two callers asking for the same client get the same one."""

    def __init__(self, settings: AwsSettings) -> None:
        self.settings = settings
        self._base = get_session()
        self._role_sessions: dict[str, AioSession] = {}
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._stack = contextlib.AsyncExitStack()
        self._lock = asyncio.Lock()
        self._closed = False

    async def client(self, service: str, role_arn: str | None = None) -> Any:
        key = (service, role_arn)
        existing = self._clients.get(key)
        if existing is not None:
            return existing
        async with self._lock:
            if self._closed:
                raise RuntimeError("AWS clients are closed")
            existing = self._clients.get(key)
            if existing is None:
                session = self._session_for(role_arn) if role_arn else self._base
                creator = session.create_client(
                    service,
                    region_name=self.settings.region,
                    endpoint_url=self.settings.endpoint_for(service),
                    config=self.settings.boto_config(service),
                )
                existing = await self._stack.enter_async_context(creator)
                self._clients[key] = existing
            return existing

    async def call(
        self, service: str, operation: str, *, role_arn: str | None = None, **params: Any
    ) -> dict[str, Any]:
        """Call one operation; any failure becomes a classified action error."""
        try:
            client = await self.client(service, role_arn)
            method = getattr(client, xform_name(operation))
            response: dict[str, Any] = await method(**params)
        except Exception as exc:
            raise classify(exc, what=f"{service}:{operation}") from exc
        return response

    async def close(self) -> None:
        async with self._lock:
            self._closed = True
            self._clients.clear()
            await self._stack.aclose()

    def _session_for(self, role_arn: str) -> AioSession:
        session = self._role_sessions.get(role_arn)
        if session is None:
            session = get_session()

            async def refresh() -> dict[str, str]:
                sts = await self.client("sts")
                response = await sts.assume_role(
                    RoleArn=role_arn,
                    RoleSessionName=_session_name(role_arn),
                    DurationSeconds=ROLE_SESSION_SECONDS,
                )
                creds = response["Credentials"]
                return {
                    "access_key": creds["AccessKeyId"],
                    "secret_key": creds["SecretAccessKey"],
                    "token": creds["SessionToken"],
                    "expiry_time": creds["Expiration"].isoformat(),
                }

            # botocore refreshes these 15 minutes (advisory) / 10 minutes (mandatory) before
            # they expire, so long-lived clients keep working across role-session lifetimes.
            # aiobotocore has no public setter for a session's credentials; assigning
            # `_credentials` is the pattern its own refreshable-session users rely on.
            session._credentials = AioDeferredRefreshableCredentials(
                refresh_using=refresh, method="sts-assume-role"
            )
            self._role_sessions[role_arn] = session
        return session


def _session_name(role_arn: str) -> str:
    return "mailmgr-" + hashlib.sha256(role_arn.encode()).hexdigest()[:16]

