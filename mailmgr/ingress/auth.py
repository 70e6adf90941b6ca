"""SMTP AUTH for AUTH ingress points: SASL PLAIN/LOGIN decoding (RFC 4616, RFC 4954), password
checks against SmtpPassword or a Secrets Manager secret, and per-IP throttling of failures.

Owns credentials and their comparison; never logs a password or a decoded response. The SMTP
exchange itself (334 challenges, replies) is driven by `smtp`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from mailmgr import logs
from mailmgr.errors import PermanentActionError, TemporaryActionError
from mailmgr.ingress.limits import AddressTable, address_key

MECHANISMS = ("PLAIN", "LOGIN")
AUTH_LINE_LIMIT = 12288  # RFC 4954 §4: AUTH command and responses
STAGES = ("AWSCURRENT", "AWSPREVIOUS")
# A failed login refetches the secret (it may have been rotated) at most this often, so a
# password-guessing client cannot turn into a flood of Secrets Manager calls.
REFRESH_INTERVAL = 10.0


class SaslError(Exception):
    """The client's SASL exchange is unusable; `kind` selects the reply."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind  # "cancelled" | "undecodable" | "malformed" | "identity" | "too_long"


@dataclass(frozen=True, slots=True)
class Credentials:
    user: str
    password: str = ""

    def __repr__(self) -> str:  # never print the password, even in a traceback
        return f"Credentials(user={self.user!r})"


Ask = Callable[[str], Awaitable[str]]  # sends `334 <challenge>`, returns the response line


def _decode(response: str) -> bytes:
    if response == "*":
        raise SaslError("cancelled")
    if response == "=":  # RFC 4954 §4: an empty initial response
        return b""
    try:
        return base64.b64decode(response.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as error:
        raise SaslError("undecodable") from error


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SaslError("malformed") from error


# C0 controls, DEL and C1 controls: never part of a user name, and CR/LF/NUL would split log
# lines or headers that carry the identity.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")


def _identity(data: bytes) -> str:
    """An authzid/authcid (RFC 4616 §2: UTF-8 without NUL); control characters refused."""
    text = _text(data)
    if _CONTROLS.search(text):
        raise SaslError("identity")
    return text


async def read_credentials(mechanism: str, initial: str | None, ask: Ask) -> Credentials:
    """Run the SASL exchange of `mechanism` (upper case, one of MECHANISMS)."""
    if mechanism == "PLAIN":
        message = _decode(initial if initial is not None else await ask(""))
        parts = message.split(b"\0")
        if len(parts) != 3:
            raise SaslError("malformed")
        authzid, authcid, password = _identity(parts[0]), _identity(parts[1]), _text(parts[2])
        if authzid and authzid != authcid:
            return Credentials(user="\0")  # acting for someone else is never allowed
        return Credentials(authcid, password)
    user = _identity(_decode(initial if initial is not None else await ask("VXNlcm5hbWU6")))
    password = _text(_decode(await ask("UGFzc3dvcmQ6")))
    return Credentials(user, password)


class Outcome(StrEnum):
    OK = "ok"
    INVALID = "invalid"
    UNAVAILABLE = "unavailable"  # the password could not be fetched: 454, try again later


class SecretSource(Protocol):
    """The AWS layer's SecretStore, as far as AUTH needs it."""

    async def get(
        self, secret_arn: str, stage: str = "AWSCURRENT", *, refresh: bool = False
    ) -> Mapping[str, str]: ...


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


class Authenticator:
    """Checks credentials for one AUTH ingress point (user name = its ID)."""

    def __init__(
        self,
        ingress_point_id: str,
        *,
        password: str | None = None,
        secret_arn: str | None = None,
        secrets: SecretSource | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if password is None and (secret_arn is None or secrets is None):
            raise ValueError("an AUTH ingress point needs SmtpPassword or SecretArn + secrets")
        self.ingress_point_id = ingress_point_id
        self._password = password
        self._secret_arn = secret_arn
        self._secrets = secrets
        self._clock = clock
        self._refreshed = -REFRESH_INTERVAL

    async def verify(self, credentials: Credentials) -> Outcome:
        user_ok = _same(self.ingress_point_id, credentials.user)
        if self._password is not None:
            ok = _same(self._password, credentials.password) and user_ok
            return Outcome.OK if ok else Outcome.INVALID
        if not user_ok:
            return Outcome.INVALID
        try:
            if await self._matches(credentials.password, refresh=False):
                return Outcome.OK
            now = self._clock()
            if now - self._refreshed < REFRESH_INTERVAL:
                return Outcome.INVALID
            self._refreshed = now
            ok = await self._matches(credentials.password, refresh=True)
        except (TemporaryActionError, PermanentActionError) as error:
            logs.error("auth.secret_unavailable", ingress_point_id=self.ingress_point_id,
                       secret_arn=self._secret_arn, error=type(error).__name__,
                       code=error.code)
            return Outcome.UNAVAILABLE
        return Outcome.OK if ok else Outcome.INVALID

    async def _matches(self, given: str, *, refresh: bool) -> bool:
        assert self._secrets is not None and self._secret_arn is not None
        for stage in STAGES:
            try:
                secret = await self._secrets.get(self._secret_arn, stage, refresh=refresh)
            except PermanentActionError:
                if stage == "AWSCURRENT":
                    raise
                continue  # a secret that was never rotated has no AWSPREVIOUS version
            expected = secret.get("password")
            if expected is None:
                if stage == "AWSCURRENT":
                    raise PermanentActionError("secret has no 'password' key", "NoPasswordKey")
                continue
            if _same(expected, given):
                return True
        return False


@dataclass(frozen=True, slots=True)
class Penalty:
    delay: float  # seconds to wait before the 535 reply
    disconnect: bool  # reply 421 and close instead
    failures: int


class AuthThrottle:
    """Failed AUTH attempts per client address (IPv4, or IPv6 /64): growing delays, then 421.

    A password is checked only under a reservation taken from the address's failure budget
    (`reserve`) once its credentials are complete, so parallel exchanges cannot all pass a
    check made earlier: at most `limit` checks run or have failed per address and `window`.
    The state lives in the process's AddressTable (memory-bounded); an address's failures are
    forgotten `window` seconds after its last one.
    """

    def __init__(
        self,
        *,
        base_delay: float = 0.25,
        max_delay: float = 4.0,
        limit: int = 5,
        window: float = 900.0,
        table: AddressTable | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base = base_delay
        self._max = max_delay
        self.limit = limit
        self._window = window
        self._table = table or AddressTable(clock=clock)
        self._clock = self._table.clock

    def failures(self, ip: str) -> int:
        entry = self._table.peek(address_key(ip))
        if entry is None or entry.auth_failures == 0:
            return 0
        if self._clock() - entry.auth_last > self._window:
            entry.auth_failures = 0
        return entry.auth_failures

    def blocked(self, ip: str) -> bool:
        return self.failures(ip) >= self.limit

    def reserve(self, ip: str) -> bool:
        """Take one check from the address's budget; False: none left (locked out). Every
        True must be followed by exactly one of `failed`, `succeeded` or `release`."""
        failures = self.failures(ip)
        entry = self._table.entry(address_key(ip))
        if failures + entry.auth_reserved >= self.limit:
            return False
        entry.auth_reserved += 1
        return True

    def release(self, ip: str) -> None:
        """Give a reservation back unused (the check could not be made)."""
        entry = self._table.peek(address_key(ip))
        if entry is not None and entry.auth_reserved > 0:
            entry.auth_reserved -= 1

    def failed(self, ip: str) -> Penalty:
        """The reserved check failed: count it."""
        count = self.failures(ip) + 1
        self.release(ip)
        entry = self._table.entry(address_key(ip))
        entry.auth_failures = count
        entry.auth_last = self._clock()
        delay = min(self._base * 2 ** (count - 1), self._max)
        return Penalty(delay=delay, disconnect=count >= self.limit, failures=count)

    def succeeded(self, ip: str) -> None:
        """The reserved check succeeded: refund it and forget the earlier failures."""
        self.release(ip)
        entry = self._table.peek(address_key(ip))
        if entry is not None:
            entry.auth_failures = 0

    @property
    def tracked(self) -> int:
        return len(self._table)

    async def wait(self, penalty: Penalty) -> None:
        if penalty.delay > 0:
            await asyncio.sleep(penalty.delay)
