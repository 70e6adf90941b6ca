"""The admin listener's queue routes (what `mailmgr queue` calls while the server runs); JSON in
and out, applied through the running server's QueueService (its own SpoolWorker).

GET /queue?state=pending|retrying|all → {"messages": [item, …]}; GET /queue/{id} → detail;
POST /queue/{id}/retry → {"id", "status"}; POST /queue/retry → {"retried": n};
DELETE /queue/{id} → {"id", "deleted": true}. Errors are {"error": text}: 400 bad state,
404 unknown ID, 409 in flight (delete refused: try again), 500 spool error.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from mailmgr.errors import SpoolError
from mailmgr.message import is_message_id
from mailmgr.queue.service import STATES, InFlight, QueueService, UnknownMessage


def _error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


class QueueRoutes:
    def __init__(self, service: QueueService) -> None:
        self._service = service

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/queue", self._list)
        router.add_post("/queue/retry", self._retry_all)
        router.add_get("/queue/{id}", self._show)
        router.add_post("/queue/{id}/retry", self._retry)
        router.add_delete("/queue/{id}", self._delete)

    @staticmethod
    def _id(request: web.Request) -> str:
        mid = request.match_info["id"]
        if not is_message_id(mid):
            raise UnknownMessage(mid)
        return mid

    async def _guard(self, request: web.Request, op: str) -> web.Response:
        try:
            return web.json_response(await self._run(request, op))
        except UnknownMessage as exc:
            return _error(404, f"no message {exc.args[0]} in the queue")
        except InFlight as exc:
            return _error(409, f"message {exc.args[0]} is in flight (being processed right "
                               "now); try again")
        except ValueError as exc:
            return _error(400, str(exc))
        except SpoolError as exc:
            return _error(500, f"spool error: {exc}")

    async def _run(self, request: web.Request, op: str) -> dict[str, Any]:
        service = self._service
        if op == "list":
            state = request.query.get("state", "all")
            if state not in STATES:
                raise ValueError(f"unknown state {state!r} (pending, retrying or all)")
            now = time.time()
            return {"messages": [i.to_json(now) for i in await service.list(state)]}
        if op == "retry_all":
            return {"retried": await service.retry_all()}
        mid = self._id(request)
        if op == "show":
            return await service.show(mid)
        if op == "retry":
            return {"id": mid, "status": await service.retry(mid)}
        await service.delete(mid)
        return {"id": mid, "deleted": True}

    async def _list(self, request: web.Request) -> web.Response:
        return await self._guard(request, "list")

    async def _show(self, request: web.Request) -> web.Response:
        return await self._guard(request, "show")

    async def _retry(self, request: web.Request) -> web.Response:
        return await self._guard(request, "retry")

    async def _retry_all(self, request: web.Request) -> web.Response:
        return await self._guard(request, "retry_all")

    async def _delete(self, request: web.Request) -> web.Response:
        return await self._guard(request, "delete")
