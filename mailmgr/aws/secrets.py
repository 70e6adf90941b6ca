"""Secrets Manager secrets (SMTP AUTH passwords, relay credentials), cached briefly.

Returns the secret's JSON object as a read-only mapping of strings; never logs values.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

from mailmgr.aws.clients import AwsClients
from mailmgr.errors import PermanentActionError

CACHE_SECONDS = 60.0
MAX_ENTRIES = 256


class SecretStore:
    def __init__(
        self,
        clients: AwsClients,
        *,
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clients = clients
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, Mapping[str, str]]] = {}

    async def get(
        self, secret_arn: str, stage: str = "AWSCURRENT", *, refresh: bool = False
    ) -> Mapping[str, str]:
        """The secret's key/value pairs at `stage` (AWSCURRENT, AWSPREVIOUS, …).

        Raises TemporaryActionError / PermanentActionError (classified AWS errors); a secret
        that is not a JSON object of strings is a PermanentActionError."""
        key = (secret_arn, stage)
        now = self._clock()
        cached = self._cache.get(key)
        if cached and not refresh and now - cached[0] < self._ttl:
            return cached[1]
        response = await self._clients.call(
            "secretsmanager", "GetSecretValue", SecretId=secret_arn, VersionStage=stage
        )
        try:
            data = json.loads(response.get("SecretString") or "")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise PermanentActionError(
                f"secret {secret_arn} ({stage}) is not a JSON object", "InvalidSecretFormat"
            )
        value = MappingProxyType({str(k): str(v) for k, v in data.items()})
        if len(self._cache) >= MAX_ENTRIES:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = (now, value)
        return value
