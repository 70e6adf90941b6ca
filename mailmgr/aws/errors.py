"""The one place that decides whether an AWS failure is temporary or permanent.

Every botocore/aiohttp exception raised by a call through `mailmgr.aws` is mapped here to a
TemporaryActionError (retried from the spool with backoff) or a PermanentActionError
(ActionFailurePolicy applies), carrying the AWS error code for logs.
"""

from __future__ import annotations

import asyncio

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from mailmgr.aws.metrics import count_error
from mailmgr.errors import ActionError, PermanentActionError, TemporaryActionError

# Error codes AWS services use for throttling and transient server-side trouble.
_TEMPORARY_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "SlowDown",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "InternalServerException",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "KMSInternalException",
        "KMSInvalidStateException",
        "ResourceConflictException",  # Lambda: function being updated
        "ResourceNotReadyException",
        "TooManyRequests",
    }
)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "ClientError")
    return type(exc).__name__


def classify(exc: BaseException, *, what: str) -> ActionError:
    """The action error for an exception raised while calling AWS for `what` (e.g. "s3:PutObject").

    Already-classified ActionErrors pass through unchanged (and are not counted again); every
    other failure is counted in mailmgr_aws_errors_total.
    """
    if isinstance(exc, ActionError):
        return exc
    code = error_code(exc)
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        count_error(what, code, status=status)
        message = str(exc.response.get("Error", {}).get("Message") or code)
        text = f"{what} failed: {code}: {message}"
        if code in _TEMPORARY_CODES or status >= 500 or status == 429:
            return TemporaryActionError(text, code)
        return PermanentActionError(text, code)
    count_error(what, code)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        # The environment lacks credentials: an operator can fix it, so keep the message.
        return TemporaryActionError(f"{what} failed: no AWS credentials", code)
    if isinstance(
        exc,
        EndpointConnectionError
        | ConnectTimeoutError
        | ReadTimeoutError
        | ConnectionClosedError
        | aiohttp.ClientError
        | asyncio.TimeoutError
        | ConnectionError,
    ):
        return TemporaryActionError(f"{what} failed: {code}: {exc}", code)
    if isinstance(exc, BotoCoreError):
        return TemporaryActionError(f"{what} failed: {code}: {exc}", code)
    return TemporaryActionError(f"{what} failed unexpectedly: {code}", code)
