"""The API's errors and their HTTP statuses: the one place that maps a failure to what an SDK
sees (`{"__type": code, "message": …}` with the status the botocore model gives the code, so
boto3 raises its modelled exception class)."""

from __future__ import annotations

import functools

from mailmgr.config.schema import service_model

# Codes the model does not declare, with the statuses AWS's JSON services use for them.
_EXTRA_STATUS = {
    "UnknownOperationException": 400,
    "SerializationException": 400,
    "InvalidSignatureException": 403,
    "IncompleteSignatureException": 403,
    "MissingAuthenticationTokenException": 403,
    "UnrecognizedClientException": 403,
    "RequestEntityTooLargeException": 413,
    "InternalFailure": 500,
}


def metric_code(code: str) -> str:
    """`code` when it is one the model or the table above declares, else `other` (a bounded
    label for mailmgr_api_requests_total)."""
    if code in _EXTRA_STATUS or code in _model_codes():
        return code
    return "other"


@functools.cache
def _model_codes() -> frozenset[str]:
    return frozenset(shape.name for shape in service_model().error_shapes)


def status_for(code: str) -> int:
    """The HTTP status of an error code: the model's `httpStatusCode`, else the table above,
    else 400."""
    if code in _EXTRA_STATUS:
        return _EXTRA_STATUS[code]
    try:
        shape = service_model().shape_for(code)
    except Exception:
        return 400
    return int(shape.metadata.get("error", {}).get("httpStatusCode", 400))


class ApiError(Exception):
    """An answer other than success. `code` is the AWS error code (the model's shape name)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return status_for(self.code)


def validation(message: str) -> ApiError:
    return ApiError("ValidationException", message)


def not_found(message: str) -> ApiError:
    return ApiError("ResourceNotFoundException", message)


def conflict(message: str) -> ApiError:
    return ApiError("ConflictException", message)


def quota(message: str) -> ApiError:
    return ApiError("ServiceQuotaExceededException", message)
