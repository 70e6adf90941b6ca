"""The Mail Manager API's wire protocols on the admin listener (interface.md, admin endpoints):

- AWS JSON 1.0: `POST /`, `X-Amz-Target: MailManagerSvc.<Operation>`, what botocore's
  `mailmanager` client (boto3, aws-cli) sends;
- smithy RPC v2 CBOR: `POST /service/MailManagerSvc/operation/<Operation>`, `application/cbor`,
  for SDKs whose model prefers it.

Both: authentication (SigV4 with `Server.Admin.Credentials`, else the bearer token when one is
set, else none), input validation against the model (the config loader's walker), the operation
(mailmgr.admin.api.registry), the output shape, and errors as `{"__type", "message"}`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import io
import ipaddress
import json
import re
import time
import traceback
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import cbor2
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from mailmgr import logs
from mailmgr.admin.api import sigv4
from mailmgr.admin.api.errors import ApiError, metric_code, validation
from mailmgr.admin.api.registry import REFUSED, Handler, operations
from mailmgr.admin.api.service import ApiService
from mailmgr.admin.api.shapes import decode_input, encode_output, input_shape, output_shape
from mailmgr.admin.metrics import METRICS
from mailmgr.config.fields import Ctx, Sink, one_line
from mailmgr.config.models import AdminSettings
from mailmgr.config.schema import Validator, service_model

JSON_TYPE = "application/x-amz-json-1.0"
CBOR_TYPE = "application/cbor"
MAX_REQUEST_BYTES = 16 * 1024 * 1024  # as the largest config document (documents.py)
MAX_CBOR_DEPTH = 64
# Lists the model gives no maximum (policy statements, their conditions, string values, CIDR
# lists) take at most this many items through the API.
MAX_UNBOUNDED_ITEMS = 10_000
# The cost bounds (README, "Protocols"). json.loads and cbor2 are C code that holds the GIL for
# the whole body: a worker thread alone would not free the event loop (SMTP), so the number of
# values a body may hold is counted first (cheaply), and bodies above OFFLOAD_BYTES are decoded
# and validated in a pool of DECODE_THREADS of their own (not the default executor: the spool
# writes there, and SMTP must not wait behind an API client). At most MAX_RUNNING requests are
# decoded, validated and run at once; MAX_WAITING more wait for a slot; beyond that
# ThrottlingException (429).
OFFLOAD_BYTES = 64 * 1024
MAX_BODY_VALUES = 100_000  # ~0.1 s of json.loads/cbor2 at most
MAX_RUNNING = 4
DECODE_THREADS = 2
MAX_WAITING = 32
BODY_SECONDS = 10.0  # to receive a request's whole body once its headers arrived
_ONE = "1 validation error detected:"
_MAX_EXTRA_KEYS = 16  # keys beyond a structure's members before the rest is not looked at
# cbor2 turns these tags into Python objects (regexes, MIME messages, sets, shared references):
# a request may carry none of them. Tag 1 (epoch time) is how RPC v2 CBOR sends timestamps.
_SEMANTIC_TAGS = (0, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261,
                  1004, 55799)
_SCALARS = (str, int, float, bool, bytes, type(None), dt.datetime)


class _RefusedTag(Exception):
    def __init__(self, tag: int) -> None:
        super().__init__(tag)
        self.tag = tag


def _refuse(tag: int) -> Callable[[Any, bool], Any]:
    def decoder(_value: Any, _immutable: bool) -> Any:
        raise _RefusedTag(tag)
    return decoder


def _refuse_tag(value: Any, _immutable: bool) -> Any:
    raise _RefusedTag(int(getattr(value, "tag", -1)))


class _BodyTimeout(ApiError):
    """The body did not arrive within BODY_SECONDS (408; the connection is closed)."""

    @property
    def status(self) -> int:
        return 408


_CBOR_DECODERS: dict[int, Callable[[Any, bool], Any]] = {t: _refuse(t) for t in _SEMANTIC_TAGS}


def _plain(value: Any, depth: int = 0) -> bool:
    """Only the data model RPC v2 CBOR uses (maps with string keys, lists, scalars)."""
    if depth > MAX_CBOR_DEPTH:
        return False
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v, depth + 1) for v in value)
    return isinstance(value, _SCALARS)


def cbor_values(body: bytes, limit: int) -> int:
    """How many CBOR data items (heads: keys, values, string chunks, tags) `body` holds,
    counting stops past `limit`. Pure Python: run it in a worker thread for a big body (it
    lets the event loop run; cbor2's C decoder would not). Malformed input just stops the
    count (the decoder reports it)."""
    count, pos, end = 0, 0, len(body)
    while pos < end and count <= limit:
        head = body[pos]
        major, info = head >> 5, head & 0x1F
        pos += 1
        count += 1
        if info < 24:
            argument = info
        elif info <= 27:
            width = 1 << (info - 24)
            argument = int.from_bytes(body[pos:pos + width], "big")
            pos += width
        else:
            continue  # indefinite length or a break: the items follow as heads
        if major in (2, 3):
            pos += argument
    return count


def decode_cbor(body: bytes) -> dict[str, Any]:
    """The request map of a CBOR body (empty body: {}). Raises ApiError (SerializationException
    saying what is wrong: a refused tag, a malformed body, too many values)."""
    if not body:
        return {}
    if len(body) > MAX_BODY_VALUES and cbor_values(body, MAX_BODY_VALUES) > MAX_BODY_VALUES:
        raise _too_many()
    try:
        stream = io.BytesIO(body)
        value = cbor2.CBORDecoder(stream, semantic_decoders=_CBOR_DECODERS,
                                  tag_hook=_refuse_tag, max_depth=MAX_CBOR_DEPTH,
                                  allow_duplicate_keys=False).decode()
        if stream.tell() != len(body):  # cbor2.loads would ignore what follows the item
            raise ValueError("data after the request's data item")
    except _RefusedTag as exc:
        raise _tag_error(exc) from None
    except (cbor2.CBORDecodeError, RecursionError, ValueError) as exc:
        refused = exc.__cause__ or exc.__context__
        if isinstance(refused, _RefusedTag):
            raise _tag_error(refused) from None
        reason = "nested too deeply" if isinstance(exc, RecursionError) else one_line(
            str(exc), 200)
        raise ApiError("SerializationException", f"the body is not valid CBOR: {reason}"
                       ) from None
    if not isinstance(value, dict) or not _plain(value):
        raise ApiError("SerializationException", "the body must be a CBOR map with string keys "
                       "(RPC v2 CBOR data model)")
    return value


def _tag_error(refused: _RefusedTag) -> ApiError:
    return ApiError("SerializationException", f"the body carries CBOR tag {refused.tag}: RPC "
                    f"v2 CBOR requests may carry no tag but 1 (epoch time)")


def _too_many() -> ApiError:
    return ApiError("SerializationException", f"the body holds more than {MAX_BODY_VALUES} "
                    f"values (no Mail Manager request needs that many)")


async def _read(request: web.Request) -> bytes:
    """The whole body, at most MAX_REQUEST_BYTES, within BODY_SECONDS. Raises ApiError (413;
    408 when it does not arrive in time)."""
    try:
        async with asyncio.timeout(BODY_SECONDS):
            return await request.read()
    except TimeoutError:
        raise _BodyTimeout("RequestTimeoutException", f"the request body did not arrive "
                           f"within {BODY_SECONDS:g} seconds") from None
    except web.HTTPRequestEntityTooLarge:
        raise ApiError("RequestEntityTooLargeException", f"the request body is larger than "
                       f"{MAX_REQUEST_BYTES} bytes") from None
    except (RequestPayloadError, HttpProcessingError, OSError):
        # The client went away or broke the framing: no bug of ours, nobody to answer.
        raise ApiError("SerializationException", "the request body ended before its "
                       "declared length or is not validly framed") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def decode_json(body: bytes) -> dict[str, Any]:
    """The request object of an AWS JSON 1.0 body (empty body: {}). Raises ApiError
    (SerializationException)."""
    if not body.strip():
        return {}
    # Every member has a `:`, every further value a `,` (strings may hold either: an upper
    # bound, counted in C at ~1 ms per MB).
    if len(body) > MAX_BODY_VALUES and body.count(b":") + body.count(b",") > MAX_BODY_VALUES:
        raise _too_many()
    try:
        value = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise ApiError("SerializationException", "the body is not valid JSON: nested too "
                       "deeply") from None
    except ValueError as exc:
        raise ApiError("SerializationException", f"the body is not valid JSON: "
                       f"{one_line(str(exc), 200)}") from None
    if not isinstance(value, dict):
        raise ApiError("SerializationException", "the body must be a JSON object")
    return value


def extra_keys(operation: str) -> tuple[str, ...]:
    from mailmgr.admin.api.resources import EXTRA_INPUT_KEYS

    return EXTRA_INPUT_KEYS.get(operation, ())


def validate_request(operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """`params` checked against the operation's input shape (extension keys allowed where
    interface.md allows them), decoded. Raises ApiError (ValidationException naming every
    field that is wrong)."""
    shape = input_shape(operation)
    if shape is None:
        if params:
            raise validation(f"{operation} takes no parameters")
        return {}
    _check_sizes(params, shape, "")
    sink = Sink()
    Validator(Ctx("request", Path("."), sink), extra_keys(operation)).validate(
        params, shape.name, "$")
    if sink.problems:
        count = len(sink.problems) + sink.dropped
        lines = [f"{_field(p.path)}: {p.message}" for p in sink.problems[:5]]
        noun = "error" if count == 1 else "errors"
        raise validation(one_line(f"{count} validation {noun} detected: " + "; ".join(lines),
                                  4000))
    return dict(decode_input(params, shape))


def _check_sizes(value: Any, shape: Any, path: str) -> None:
    """Refuse a list or map longer than its shape allows, and a structure with far more keys
    than members, before the validator walks every item (a 16 MiB body of two million rules
    would hold the event loop for seconds). Raises ApiError (ValidationException)."""
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        if len(value) > len(shape.members) + _MAX_EXTRA_KEYS:
            raise validation(f"{_ONE} {path or '(request)'}: {len(value)} keys, and "
                             f"{shape.name} has {len(shape.members)} members")
        for key, item in value.items():
            if key in shape.members:
                _check_sizes(item, shape.members[key], f"{path}.{key}" if path else key)
    elif (kind, type(value)) in (("list", list), ("map", dict)):
        limit = int(shape.metadata.get("max", MAX_UNBOUNDED_ITEMS))
        if len(value) > limit:
            raise validation(f"{_ONE} {path}: at most {limit} items ({shape.name}), "
                             f"got {len(value)}")
        if isinstance(value, list):
            for i, item in enumerate(value):
                _check_sizes(item, shape.member, f"{path}[{i}]")
        else:
            for key, item in value.items():
                _check_sizes(item, shape.value, f"{path}.{key}")


def _field(path: str) -> str:
    return path[2:] if path.startswith("$.") else ("(request)" if path == "$" else path)


class ApiRoutes:
    """The two API routes, bound to one ApiService."""

    def __init__(self, service: ApiService, settings: AdminSettings) -> None:
        self.service = service
        self.settings = settings
        self.handlers: dict[str, Handler] = operations()
        self.model_operations = frozenset(service_model().operation_names)
        self._bearer = None if settings.token is None else f"Bearer {settings.token}".encode()
        from mailmgr.admin.api import archive_ops

        # Archive operations run where the archives are open (ApiService.delegate).
        self.delegated = frozenset(archive_ops.OPERATIONS)
        self._running = asyncio.Semaphore(MAX_RUNNING)
        # Threads start on first use; at exit the interpreter joins them (a decode is bounded).
        self._decoder = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="api-decode")
        self._waiting = 0

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """One of MAX_RUNNING slots to decode, validate and run a request; ThrottlingException
        when MAX_WAITING requests already wait for one."""
        if self._running.locked() and self._waiting >= MAX_WAITING:
            raise ApiError("ThrottlingException", f"{MAX_RUNNING} API requests are running "
                           f"and {MAX_WAITING} waiting: retry later")
        self._waiting += 1
        try:
            await self._running.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._running.release()

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_post("/", self._json)
        router.add_post("/service/MailManagerSvc/operation/{operation}", self._cbor)
        from mailmgr.admin.api import address_members, archive_ops

        for module in (address_members, archive_ops):
            module.register_routes(router, self.service)

    async def _json(self, request: web.Request) -> web.Response:
        prefix, _, operation = request.headers.get("X-Amz-Target", "").partition(".")
        if prefix != "MailManagerSvc" or not operation:
            operation = ""
        return await self._serve(request, operation, cbor=False)

    async def _cbor(self, request: web.Request) -> web.Response:
        return await self._serve(request, request.match_info["operation"], cbor=True)

    async def _serve(self, request: web.Request, operation: str, *, cbor: bool
                     ) -> web.Response:
        """One request of either protocol, timed and counted (`mailmgr_api_requests_total`,
        `mailmgr_api_request_seconds`); never an unanswered exception."""
        started = time.perf_counter()
        label = operation if operation in self.model_operations else "unknown"
        try:
            body = await _read(request)
            if not operation:
                raise ApiError("UnknownOperationException",
                               "X-Amz-Target must be MailManagerSvc.<Operation>")
            self._authenticate(request, body)
            if self.service.delegate is not None and operation in self.delegated:
                response = await self.service.delegate(request, body)
                code = "OK" if response.status < 300 else metric_code(
                    response.headers.get("x-amzn-ErrorType", "other"))
                METRICS.api_requests.labels(label, code).inc()
                METRICS.api_request_duration.labels(label).observe(
                    time.perf_counter() - started)
                return response
            async with self._slot():
                if len(body) > OFFLOAD_BYTES:  # its decoding would hold the loop (SMTP)
                    checked = await asyncio.get_running_loop().run_in_executor(
                        self._decoder, self._parse, operation, body, cbor)
                else:
                    checked = self._parse(operation, body, cbor)
                answer = await self._call(request, operation, checked, cbor=cbor)
            response = self._answer(answer, cbor=cbor)
            code = "OK"
        except ApiError as exc:
            response = self._error(exc, operation, cbor=cbor)
            if isinstance(exc, _BodyTimeout):
                response.force_close()
            code = metric_code(exc.code)
        except Exception as exc:  # a bug: logged, answered like AWS's InternalFailure
            log_failure(operation, exc)
            response = self._error(ApiError("InternalFailure", "mailmgr failed to run the "
                                             "request; the server log has the details "
                                             "(api.failed)"), operation, cbor=cbor)
            code = "InternalFailure"
        METRICS.api_requests.labels(label, code).inc()
        METRICS.api_request_duration.labels(label).observe(time.perf_counter() - started)
        return response

    def _answer(self, answer: Any, *, cbor: bool) -> web.Response:
        if cbor:
            return web.Response(body=cbor2.dumps(answer, datetime_as_timestamp=True),
                                headers={"Content-Type": CBOR_TYPE,
                                         "smithy-protocol": "rpc-v2-cbor"})
        return web.Response(body=json.dumps(answer, ensure_ascii=False).encode(),
                            content_type=JSON_TYPE)

    def _authenticate(self, request: web.Request, body: bytes) -> None:
        credentials = self.settings.credentials
        if credentials is not None:
            try:
                url = str(request.url)
            except ValueError:  # a Host header yarl cannot build a URL from
                raise ApiError("IncompleteSignatureException", "the Host header is not valid"
                               ) from None
            sigv4.verify(request.method, url, request.headers, body,
                         credentials.access_key_id, credentials.secret_access_key)
            return
        if self._bearer is not None:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            given = f"{scheme.capitalize()} {token.strip()}".encode("utf-8", "replace")
            if not hmac.compare_digest(given, self._bearer):
                raise ApiError("MissingAuthenticationTokenException",
                               "the admin listener has a TokenFile: send it as a bearer token, "
                               "or set Server.Admin.Credentials to use SigV4 (aws-cli, SDKs)")

    def _parse(self, operation: str, body: bytes, cbor: bool) -> dict[str, Any]:
        """The body decoded and validated for `operation` (pure: runs in a worker thread for a
        big body). Raises ApiError."""
        params = decode_cbor(body) if cbor else decode_json(body)
        if operation not in self.handlers:
            if operation in REFUSED:
                raise validation(f"{operation} is not supported by mailmgr: "
                                 f"{REFUSED[operation]}")
            raise ApiError("UnknownOperationException",
                           f"{one_line(operation, 100)} is not a Mail Manager operation")
        return validate_request(operation, params)

    async def _call(self, request: web.Request, operation: str, checked: dict[str, Any],
                    *, cbor: bool) -> Any:
        handler = self.handlers[operation]
        self.service.base_url = base_url(request)
        answer = await handler(self.service, checked)  # a bug's exception: _serve answers it
        logs.event("api.call", operation=operation)
        shape = output_shape(operation)
        return {} if shape is None else encode_output(answer, shape, cbor=cbor)

    def _error(self, exc: ApiError, operation: str, *, cbor: bool) -> web.Response:
        if exc.status >= 500:
            logs.warning("api.error", operation=one_line(operation, 100), code=exc.code)
        body = {"__type": exc.code, "message": exc.message}
        if cbor:
            return web.Response(status=exc.status, body=cbor2.dumps(body),
                                headers={"Content-Type": CBOR_TYPE,
                                         "smithy-protocol": "rpc-v2-cbor"})
        return web.Response(status=exc.status, body=json.dumps(body).encode(),
                            content_type=JSON_TYPE,
                            headers={"x-amzn-ErrorType": exc.code})


def log_failure(operation: str, exc: BaseException) -> None:
    """`api.failed` in the server log: the exception's type, message and the last frames of its
    traceback (never in the answer)."""
    frames = traceback.extract_tb(exc.__traceback__)[-_FRAMES:]
    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
    logs.error("api.failed", operation=one_line(operation, 100),
               error=f"{type(exc).__name__}: {one_line(str(exc), 300)}", where=where)


_FRAMES = 5
# A Host header used in pre-signed URLs: a DNS name, IPv4 address or [IPv6] literal, and a port.
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
                   r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def base_url(request: web.Request) -> str:
    """`http://host[:port]` for pre-signed URLs: the Host header when it is a plain
    `host[:port]` (a name, IPv4 or [IPv6] address), else the address the client connected to
    (a Host header never reaches a URL unchecked)."""
    host = request.headers.get("Host", "")
    if _HOST.fullmatch(host) and _valid_literal(host):
        return f"{request.scheme}://{host}"
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname:
        return f"{request.scheme}://127.0.0.1"
    address, port = str(sockname[0]), int(sockname[1])
    shown = f"[{address}]" if ":" in address else address
    return f"{request.scheme}://{shown}:{port}"


def _valid_literal(host: str) -> bool:
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:host.index("]")])
        except ValueError:
            return False
    return len(host) <= 260
