"""SigV4 verification of Mail Manager API requests (`Server.Admin.Credentials`): the expected
signature is computed with botocore's own signer over the headers the client signed, so what
aws-cli, boto3 and the SDKs sign verifies here. AWS: "Signature Version 4 signing process"."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDictProxy

from mailmgr.admin.api.errors import ApiError

MAX_SKEW = dt.timedelta(minutes=15)  # AWS refuses requests signed more than 15 minutes away
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})\s*$")


def verify(method: str, url: str, headers: CIMultiDictProxy[str], body: bytes,
           access_key_id: str, secret: str, now: dt.datetime | None = None) -> None:
    """Raise ApiError (MissingAuthenticationTokenException, IncompleteSignatureException,
    UnrecognizedClientException, InvalidSignatureException) unless `headers` carry a valid
    SigV4 `Authorization` for this request by `access_key_id`. The secret never appears in
    a message."""
    header = headers.get("Authorization")
    if not header:
        raise ApiError("MissingAuthenticationTokenException",
                       "Request is missing Authentication Token (Server.Admin.Credentials "
                       "is set: sign requests with that access key)")
    match = _AUTH.match(header)
    if match is None:
        raise ApiError("IncompleteSignatureException",
                       "Authorization header is not an AWS4-HMAC-SHA256 signature")
    parts = match["credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise ApiError("IncompleteSignatureException", "malformed Credential scope")
    key, date, region, service, _ = parts
    if not hmac.compare_digest(key.encode(), access_key_id.encode()):
        raise ApiError("UnrecognizedClientException",
                       "The security token included in the request is invalid")
    stamp = headers.get("X-Amz-Date", "")
    try:
        when = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise ApiError("IncompleteSignatureException", "X-Amz-Date is missing or malformed"
                       ) from None
    current = now or dt.datetime.now(dt.UTC)
    if abs(current - when) > MAX_SKEW or not stamp.startswith(date):
        raise ApiError("InvalidSignatureException",
                       "Signature expired or not yet valid: X-Amz-Date is more than 15 minutes "
                       "from the server's time")
    signed = match["signed"].split(";")
    if "host" not in signed:
        raise ApiError("IncompleteSignatureException", "the Host header must be signed")
    claimed = headers.get("X-Amz-Content-SHA256")
    if claimed is not None and not hmac.compare_digest(
            claimed.strip().encode("utf-8", "replace"), hashlib.sha256(body).hexdigest().encode()):
        # botocore's signer takes this header's value for the body's hash: a body that does
        # not match it (or UNSIGNED-PAYLOAD) would pass unverified.
        raise ApiError("InvalidSignatureException",
                       "X-Amz-Content-SHA256 is not the SHA-256 of the request body")
    # Several lines of one header are one comma-separated value (SigV4 canonical headers).
    request = AWSRequest(method=method, url=url, data=body,
                         headers={name: ",".join(headers.getall(name, [])) for name in signed})
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(access_key_id, secret), service, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, match["signature"]):
        raise ApiError("InvalidSignatureException",
                       "The request signature we calculated does not match the signature you "
                       "provided. Check your AWS Secret Access Key and signing method.")
