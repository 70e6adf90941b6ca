"""Raw HTTP requests to the Mail Manager API (what an SDK would send, or a hostile client), with
the answer's status, headers and decoded body."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any

JSON_TYPE = "application/x-amz-json-1.0"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def post(port: int, path: str, body: bytes, headers: dict[str, str], timeout: float = 10.0
         ) -> Answer:
    """POST `body` to 127.0.0.1:`port` and read the whole answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()


def post_json(port: int, target: str, body: bytes | dict[str, Any] | list[Any],
              headers: dict[str, str] | None = None) -> Answer:
    """An AWS JSON 1.0 request: `target` is the whole X-Amz-Target value."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return post(port, "/", data, {"Content-Type": JSON_TYPE, "X-Amz-Target": target,
                                  **(headers or {})})


def error_of(answer: Answer) -> tuple[int, str, str]:
    """(status, __type, message) of an error answer, checking the AWS JSON error form."""
    body = answer.json()
    assert set(body) == {"__type", "message"}, body
    assert answer.headers.get("x-amzn-errortype") == body["__type"]
    return answer.status, body["__type"], body["message"]
