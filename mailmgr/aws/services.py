"""Typed calls for the services actions use: S3, SNS, Lambda, SES, Q Business.

Each helper makes one classified call through AwsClients and returns a frozen result, so no AWS
response dict leaves this package. Helpers never decide action policy (retry limits, dispositions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mailmgr.aws.clients import AwsClients
from mailmgr.aws.errors import classify
from mailmgr.aws.metrics import count_error
from mailmgr.errors import PermanentActionError, TemporaryActionError


def require(clients: AwsClients | None) -> AwsClients:
    """The shared clients; None only where no AWS call may happen (explain, some tests)."""
    if clients is None:
        raise PermanentActionError("AWS clients are not available here", "NoAwsClients")
    return clients


@dataclass(frozen=True)
class PutObjectResult:
    etag: str
    version_id: str | None


async def put_object(
    clients: AwsClients,
    role_arn: str | None,
    *,
    bucket: str,
    key: str,
    body: bytes,
    content_type: str,
    kms_key_id: str | None = None,
) -> PutObjectResult:
    params: dict[str, Any] = {
        "Bucket": bucket, "Key": key, "Body": body, "ContentType": content_type,
    }
    if kms_key_id:
        params["ServerSideEncryption"] = "aws:kms"
        params["SSEKMSKeyId"] = kms_key_id
    response = await clients.call("s3", "PutObject", role_arn=role_arn, **params)
    return PutObjectResult(
        etag=str(response.get("ETag", "")).strip('"'), version_id=response.get("VersionId")
    )


async def publish(
    clients: AwsClients, role_arn: str | None, *, topic_arn: str, message: str, subject: str
) -> str:
    """SNS Publish; returns the SNS message ID."""
    response = await clients.call(
        "sns", "Publish", role_arn=role_arn, TopicArn=topic_arn, Message=message, Subject=subject
    )
    return str(response.get("MessageId", ""))


@dataclass(frozen=True)
class InvokeResult:
    status: int
    function_error: str | None  # "Unhandled"/"Handled" when the function itself failed
    payload: bytes


async def invoke(
    clients: AwsClients,
    role_arn: str | None,
    *,
    function_arn: str,
    invocation_type: str,  # "Event" | "RequestResponse"
    payload: bytes,
) -> InvokeResult:
    what = "lambda:Invoke"
    response = await clients.call(
        "lambda", "Invoke", role_arn=role_arn, FunctionName=function_arn,
        InvocationType=invocation_type, Payload=payload,
    )
    body = b""
    stream = response.get("Payload")
    if stream is not None:
        try:
            async with stream as s:
                body = await s.read()
        except Exception as exc:
            raise classify(exc, what=what) from exc
    return InvokeResult(
        status=int(response.get("StatusCode", 0)),
        function_error=response.get("FunctionError"),
        payload=body,
    )


async def send_raw_email(
    clients: AwsClients,
    role_arn: str | None,
    *,
    source: str | None,
    destinations: Sequence[str],
    data: bytes,
) -> str:
    """SES (v1) SendRawEmail; returns the SES message ID."""
    params: dict[str, Any] = {"Destinations": list(destinations), "RawMessage": {"Data": data}}
    if source:
        params["Source"] = source
    response = await clients.call("ses", "SendRawEmail", role_arn=role_arn, **params)
    return str(response.get("MessageId", ""))


@dataclass(frozen=True)
class QDocument:
    id: str
    title: str
    content: bytes
    content_type: str  # PLAIN_TEXT | HTML
    string_attributes: tuple[tuple[str, str], ...] = ()
    date_attributes: tuple[tuple[str, datetime], ...] = ()

    def to_api(self) -> dict[str, Any]:
        attributes: list[dict[str, Any]] = [
            {"name": n, "value": {"stringValue": v}} for n, v in self.string_attributes
        ]
        attributes += [{"name": n, "value": {"dateValue": v}} for n, v in self.date_attributes]
        return {
            "id": self.id,
            "title": self.title,
            "content": {"blob": self.content},
            "contentType": self.content_type,
            "attributes": attributes,
        }


_Q_TEMPORARY = frozenset({"InternalError", "ResourceInactive"})


async def batch_put_document(
    clients: AwsClients,
    role_arn: str | None,
    *,
    application_id: str,
    index_id: str,
    document: QDocument,
) -> None:
    """Q Business BatchPutDocument of one document; a per-document failure is classified too
    (InternalError, ResourceInactive → temporary; InvalidRequest, ResourceNotFound → permanent)."""
    response = await clients.call(
        "qbusiness", "BatchPutDocument", role_arn=role_arn, applicationId=application_id,
        indexId=index_id, documents=[document.to_api()],
    )
    for failed in response.get("failedDocuments") or []:
        error = failed.get("error") or {}
        code = str(error.get("errorCode") or "DocumentFailed")
        text = f"qbusiness:BatchPutDocument rejected {failed.get('id')}: {code}: " + str(
            error.get("errorMessage") or ""
        )
        count_error("qbusiness:BatchPutDocument", code)
        if code in _Q_TEMPORARY:
            raise TemporaryActionError(text, code)
        raise PermanentActionError(text, code)

