"""The admin HTTP server (aiohttp, same event loop): /healthz/live, /healthz/ready, /metrics,
the /queue routes of `mailmgr queue` (mailmgr.admin.queue_api) when given a QueueService, and the
Mail Manager API (mailmgr.admin.api) when given an ApiService.

Readiness is set by the composition root (mailmgr.app): ready once recovery finished and every
SMTP listener is bound, while the spool is writable (its latest write succeeded and its folder
is writable: no write per probe); not ready again as soon as a graceful shutdown begins.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Handler

from mailmgr.admin.api.protocol import MAX_REQUEST_BYTES, ApiRoutes
from mailmgr.admin.api.service import ApiService
from mailmgr.admin.metrics import CONTENT_TYPE, Metrics
from mailmgr.admin.queue_api import QueueRoutes
from mailmgr.config.models import AdminSettings
from mailmgr.queue.service import QueueService

_PROBES = ("/healthz/live", "/healthz/ready")
# The Mail Manager API authenticates its own requests (SigV4 or the bearer token, see
# mailmgr.admin.api.protocol); its upload and download URLs are pre-signed.
_API_PREFIXES = ("/service/MailManagerSvc/", "/api/")
# aiohttp closes a connection that sends no complete request head for this long, from its
# start (slow headers) or after an answer (idle keep-alive): a silent client never holds a
# file descriptor for longer. A request body has its own deadline (the API: BODY_SECONDS).
KEEPALIVE_SECONDS = 10.0
# At shutdown (after the SMTP drain), requests still running get this long before aiohttp
# cancels them (its default, 60 s, let one stalled upload hold SIGTERM for a minute).
SHUTDOWN_SECONDS = 3.0
# After an answer given before the body was read (401, 408, 413), aiohttp reads and discards
# what the client still sends for this long before it closes (its default: 10 s).
LINGER_SECONDS = 1.0


async def _anonymous(request: web.Request, response: web.StreamResponse) -> None:
    """No `Server: Python/... aiohttp/...` header: like the SMTP banner, the admin listener
    does not reveal the software or its versions."""
    response.headers.pop("Server", None)


class AdminServer:
    """Serves the probes, /metrics and (with `queue`) /queue on `settings.listen`; nothing else
    answers but 404.

    A configured token is required as `Authorization: Bearer <token>` on everything but
    /healthz/* (401 otherwise)."""

    def __init__(self, settings: AdminSettings, metrics: Metrics,
                 queue: QueueService | None = None, api: ApiService | None = None) -> None:
        self._settings = settings
        self._metrics = metrics
        self._queue = queue
        self._expected = (
            None if settings.token is None else f"Bearer {settings.token}".encode()
        )
        self.ready = False
        self.draining = False
        self.addresses: list[str] = []  # as `start` returned them
        app = web.Application(middlewares=[self._auth], client_max_size=MAX_REQUEST_BYTES)
        app.on_response_prepare.append(_anonymous)
        app.router.add_get("/healthz/live", self._live)
        app.router.add_get("/healthz/ready", self._ready)
        app.router.add_get("/metrics", self._scrape)
        if queue is not None:
            QueueRoutes(queue).register(app.router)
        self.api = api
        if api is not None:
            ApiRoutes(api, settings).register(app.router)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=SHUTDOWN_SECONDS,
                                     keepalive_timeout=KEEPALIVE_SECONDS,
                                     lingering_time=LINGER_SECONDS)
        self._started = False

    async def start(self) -> list[str]:
        """Bind every address; returns them as `host:port` (port 0 resolved). Raises OSError."""
        await self._runner.setup()
        self._started = True
        for address in self._settings.listen:
            site = web.TCPSite(self._runner, address.host, address.port, reuse_address=True)
            await site.start()
        bound = []
        for entry in self._runner.addresses:
            host, port = entry[0], entry[1]
            bound.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        self.addresses = bound
        return bound

    async def close(self) -> None:
        if self._started:
            self._started = False
            await self._runner.cleanup()

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._expected is not None and request.path not in _PROBES and not (
                self.api is not None and (request.path == "/"
                                          or request.path.startswith(_API_PREFIXES))):
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            # The scheme is case-insensitive (RFC 7235 §2.1); the token is compared in
            # constant time.
            given = f"{scheme.capitalize()} {token.strip()}".encode("utf-8", "replace")
            if not hmac.compare_digest(given, self._expected):
                return web.Response(status=401, text="401 bearer token required\n",
                                    headers={"WWW-Authenticate": 'Bearer realm="mailmgr"'})
        return await handler(request)

    async def _live(self, request: web.Request) -> web.Response:
        return web.Response(text="live\n")

    async def _ready(self, request: web.Request) -> web.Response:
        if self.draining:
            return web.Response(status=503, text="draining\n")
        if not self.ready:
            return web.Response(status=503, text="starting\n")
        if self._queue is not None and not self._queue.writable:
            return web.Response(status=503, text="spool not writable\n")
        return web.Response(text="ready\n")

    async def _scrape(self, request: web.Request) -> web.Response:
        body = self._metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
