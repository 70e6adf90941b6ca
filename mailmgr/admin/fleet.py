"""The admin listener of a multi-process server, served by the supervisor: /metrics merges the
workers' expositions (plus the supervisor's own metrics), readiness needs every worker ready,
and the /queue routes fan out to the workers' private admin listeners and merge.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from mailmgr.admin.api.service import ApiService
from mailmgr.admin.metrics import CONTENT_TYPE, METRICS
from mailmgr.admin.server import AdminServer
from mailmgr.config.server_models import AdminSettings

_TIMEOUT = aiohttp.ClientTimeout(total=5.0)
# Gauges whose fleet value is the largest worker's, not the sum; the rest add up.
_MAX = frozenset({"mailmgr_spool_oldest_message_age_seconds", "mailmgr_config_info"})


@dataclass(frozen=True)
class WorkerView:
    """One worker as the supervisor sees it: its private admin address (`host:port`)."""

    index: int
    pid: int
    admin: str
    ready: bool


class _WorkerGauge(Collector):
    def __init__(self, views: Callable[[], list[WorkerView]]) -> None:
        self._views = views

    def collect(self) -> Any:
        gauge = GaugeMetricFamily("mailmgr_workers", "Worker processes, by state",
                                  labels=["state"])
        views = self._views()
        ready = sum(1 for v in views if v.ready)
        gauge.add_metric(["ready"], float(ready))
        gauge.add_metric(["down"], float(len(views) - ready))
        yield gauge


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    body = ",".join(
        '{}="{}"'.format(k, v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\""))
        for k, v in labels.items())
    return "{" + body + "}"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def merge(expositions: list[str]) -> bytes:
    """Prometheus text expositions of several workers as one: samples with the same name and
    labels are summed (counters, histograms, gauges), except the _MAX gauges (largest value)
    and `_created` samples (earliest). Raises ValueError for text that does not parse."""
    families: dict[str, tuple[str, str, str]] = {}  # family name -> (exposed name, type, help)
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in expositions:
        for family in text_string_to_metric_families(text):
            shown = family.name
            if family.type == "counter":
                shown += "_total"
            families.setdefault(family.name, (shown, family.type, family.documentation))
            into = values.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in into:
                    into[key] = sample.value
                elif sample.name.endswith("_created"):
                    into[key] = min(into[key], sample.value)
                elif family.name in _MAX:
                    into[key] = max(into[key], sample.value)
                else:
                    into[key] += sample.value
    lines: list[str] = []
    for name, (shown, kind, doc) in families.items():
        doc = doc.replace("\\", r"\\").replace("\n", r"\n")
        lines += [f"# HELP {shown} {doc}", f"# TYPE {shown} {kind}"]
        for (sample_name, labels), value in values[name].items():
            lines.append(f"{sample_name}{_labels(dict(labels))} {_number(value)}")
    return ("\n".join(lines) + "\n").encode() if lines else b""


# Not forwarded to a worker (RFC 9110 §7.6.1), or recomputed by the client library.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "te", "trailer", "transfer-encoding",
                         "upgrade", "proxy-connection", "content-length"})
_ANSWER_HEADERS = frozenset({"content-type", "smithy-protocol", "x-amzn-errortype",
                             "content-disposition", "cache-control"})


class FleetAdmin(AdminServer):
    """AdminServer answering for all workers (`views`: the supervisor's current workers)."""

    def __init__(self, settings: AdminSettings,
                 views: Callable[[], list[WorkerView]], api: ApiService | None = None) -> None:
        super().__init__(settings, METRICS, api=api)  # METRICS is unused here: see _scrape
        if api is not None:
            api.delegate = self._to_archives
        self._views = views
        self._headers = {} if settings.token is None else {
            "Authorization": f"Bearer {settings.token}"}
        self._session: aiohttp.ClientSession | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_WorkerGauge(views))
        self._restarts = Counter("mailmgr_worker_restarts", "Worker processes started again "
                                 "after they exited unexpectedly", registry=self.registry)
        router = self._runner.app.router
        router.add_get("/queue", self._queue_list)
        router.add_post("/queue/retry", self._queue_retry_all)
        router.add_get("/queue/{id}", self._queue_one)
        router.add_post("/queue/{id}/retry", self._queue_one)
        router.add_delete("/queue/{id}", self._queue_one)

    def restarted(self) -> None:
        self._restarts.inc()

    async def close(self) -> None:
        await super().close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, view: WorkerView, method: str, path: str,
                    query: Any = None) -> tuple[int, bytes]:
        """One request to a worker's private admin listener: (status, body); 502 if it did
        not answer."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=_TIMEOUT)
        try:
            async with self._session.request(method, f"http://{view.admin}{path}",
                                             params=query, headers=self._headers) as resp:
                return resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return 502, json.dumps({"error": f"worker {view.index}: {exc}"}).encode()

    async def _to_archives(self, request: web.Request, body: bytes) -> web.Response:
        """An archive operation or download link, answered by the first worker that runs
        (worker 0 unless it is restarting): the supervisor opens no archives, and searches,
        exports and link keys must live in one process. The request goes as it came (Host and
        signature included: the worker checks them as configured), the answer comes back."""
        views = [v for v in self._views() if v.admin]
        if not views:
            return web.Response(status=503, text="no worker is running\n")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=_TIMEOUT)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            async with self._session.request(
                    request.method, f"http://{views[0].admin}{request.path_qs}", data=body,
                    headers=headers, skip_auto_headers=("User-Agent",)) as resp:
                content = await resp.read()
                kept = {k: v for k, v in resp.headers.items() if k.lower() in _ANSWER_HEADERS}
                return web.Response(status=resp.status, body=content, headers=kept)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return web.Response(status=502, text=f"worker {views[0].index}: {exc}\n")

    async def _all(self, method: str, path: str, query: Any = None
                   ) -> list[tuple[WorkerView, int, bytes]]:
        views = [v for v in self._views() if v.admin]
        answers = await asyncio.gather(*(self._call(v, method, path, query) for v in views))
        return [(v, status, body) for v, (status, body) in zip(views, answers, strict=True)]

    async def _ready(self, request: web.Request) -> web.Response:
        if self.draining:
            return web.Response(status=503, text="draining\n")
        views = self._views()
        if not self.ready or not all(v.ready for v in views):
            return web.Response(status=503, text="starting\n")
        for view, status, body in await self._all("GET", "/healthz/ready"):
            if status != 200:
                reason = body.decode(errors="replace").strip()
                return web.Response(status=503, text=f"worker {view.index}: {reason}\n")
        return web.Response(text="ready\n")

    async def _scrape(self, request: web.Request) -> web.Response:
        texts = [body.decode() for _, status, body in await self._all("GET", "/metrics")
                 if status == 200]
        body = merge(texts) + generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    @staticmethod
    def _first_error(answers: list[tuple[WorkerView, int, bytes]]) -> web.Response | None:
        for _, status, body in answers:
            if status != 200:
                return web.Response(status=status, body=body,
                                    content_type="application/json")
        return None

    async def _queue_list(self, request: web.Request) -> web.Response:
        answers = await self._all("GET", "/queue", request.query)
        error = self._first_error(answers)
        if error is not None:
            return error
        messages = [m for _, _, body in answers for m in json.loads(body)["messages"]]
        messages.sort(key=lambda m: str(m.get("received_at", "")))
        return web.json_response({"messages": messages})

    async def _queue_retry_all(self, request: web.Request) -> web.Response:
        answers = await self._all("POST", "/queue/retry")
        error = self._first_error(answers)
        if error is not None:
            return error
        return web.json_response({"retried": sum(json.loads(b)["retried"] for _, _, b in answers)})

    async def _queue_one(self, request: web.Request) -> web.Response:
        """One message's route: the worker whose shard holds it answers (404 from the others)."""
        answers = await self._all(request.method, request.path)
        for _, status, body in answers:
            if status != 404:
                return web.Response(status=status, body=body, content_type="application/json")
        if answers:
            return web.Response(status=404, body=answers[-1][2], content_type="application/json")
        return web.json_response({"error": "no worker is running"}, status=503)
