"""`mailmgr queue list|show|retry|delete`: find the spool's owner, act, print.

The running server holds an flock on `<spool>/lock`. Lock free (server stopped): the command
opens the spool itself (recovery only, no processing), acts through QueueService and closes.
Lock held: it asks the server's admin listener (first `Server.Admin.Listen` address, bearer
token from `Server.Admin.TokenFile`), which acts through its own worker.
Exit status: 0 done; 1 unknown ID, in flight, HTTP or spool error; 2 the server runs but its
admin listener cannot be used (off, or port 0).
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from mailmgr import logs
from mailmgr.config.models import Config
from mailmgr.errors import SpoolError
from mailmgr.queue.service import InFlight, QueueService, UnknownMessage
from mailmgr.spool.shards import has_segments, spool_shards
from mailmgr.spool.store import SpoolStore

_TIMEOUT = 30.0


class QueueCommandError(Exception):
    """An expected failure: `message` for the operator, `status` for the exit code."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Request:
    """One queue operation: op is list | show | retry | retry_all | delete."""

    op: str
    message_id: str = ""
    state: str = "all"


# --- the stopped server: open the spool ourselves ----------------------------------------------

class _Locked(Exception):
    pass


async def _offline(config: Config, request: Request) -> dict[str, Any]:
    """The stopped server's spools: `spool/` itself and every shard `spool/<n>/` a
    multi-process server left (whatever Processes is now), each under its own lock. `list` and
    `retry --all` cover them all; one ID is acted on in the spool that holds it."""
    root = config.server.spool_directory
    shards = spool_shards(root)
    # The root is a spool of its own unless a multi-process server left only shards in it
    # (opening it would start an empty segment there).
    spools = ([root] if has_segments(root) or not shards else []) + shards
    results: list[dict[str, Any]] = []
    for directory in spools:
        try:
            result = await _offline_one(directory, request)
        except QueueCommandError as exc:
            if request.message_id and str(exc).startswith("no message "):
                continue  # in another shard, perhaps
            raise
        if request.op not in ("list", "retry_all"):
            return result
        results.append(result)
    if request.op == "list":
        merged = [m for r in results for m in r["messages"]]
        merged.sort(key=lambda m: float(m.get("received_at") or 0))  # oldest first
        return {"messages": merged}
    if request.op == "retry_all":
        return {"retried": sum(int(r["retried"]) for r in results)}
    raise QueueCommandError(f"no message {request.message_id} in the queue")


async def _offline_one(directory: Path, request: Request) -> dict[str, Any]:
    store = SpoolStore(directory)
    logger = logging.getLogger(logs.LOGGER_NAME)
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))  # no spool.recovered line on the terminal
    try:
        await store.open()
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise _Locked from None
        raise
    finally:
        logger.setLevel(level)
    try:
        return await _apply(QueueService(store, None), request)
    finally:
        await store.close()


async def _apply(service: QueueService, request: Request) -> dict[str, Any]:
    try:
        if request.op == "list":
            now = time.time()
            return {"messages": [i.to_json(now) for i in await service.list(request.state)]}
        if request.op == "show":
            return await service.show(request.message_id)
        if request.op == "retry":
            return {"id": request.message_id,
                    "status": await service.retry(request.message_id)}
        if request.op == "retry_all":
            return {"retried": await service.retry_all()}
        await service.delete(request.message_id)
        return {"id": request.message_id, "deleted": True}
    except UnknownMessage:
        raise QueueCommandError(f"no message {request.message_id} in the queue") from None
    except InFlight:  # only a running server has messages in flight
        raise QueueCommandError(f"message {request.message_id} is in flight; try again") from None
    except SpoolError as exc:
        raise QueueCommandError(f"spool error: {exc}") from None


# --- the running server: its admin listener ----------------------------------------------------

def _base_url(config: Config) -> str:
    admin = config.server.admin
    if not admin.listen:
        raise QueueCommandError(
            "the server is running (it holds the spool lock) and its admin listener is off "
            "(Server.Admin.Listen: []): turn it on, or stop the server, to use mailmgr queue", 2)
    address = admin.listen[0]
    if address.port == 0:
        raise QueueCommandError(
            f"the server is running and Server.Admin.Listen's first address ({address}) has "
            "port 0: give it a fixed port to use mailmgr queue while the server runs", 2)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(address.host, address.host)
    return f"http://[{host}]:{address.port}" if ":" in host else f"http://{host}:{address.port}"


def _route(request: Request) -> tuple[str, str]:
    mid = urllib.parse.quote(request.message_id, safe="")
    return {
        "list": ("GET", "/queue?" + urllib.parse.urlencode({"state": request.state})),
        "show": ("GET", f"/queue/{mid}"),
        "retry": ("POST", f"/queue/{mid}/retry"),
        "retry_all": ("POST", "/queue/retry"),
        "delete": ("DELETE", f"/queue/{mid}"),
    }[request.op]


def _remote(config: Config, request: Request) -> dict[str, Any]:
    base = _base_url(config)
    method, path = _route(request)
    http = urllib.request.Request(base + path, method=method)
    if config.server.admin.token is not None:
        http.add_header("Authorization", f"Bearer {config.server.admin.token}")
    try:
        with urllib.request.urlopen(http, timeout=_TIMEOUT) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            text = str(json.loads(body)["error"])
        except (ValueError, KeyError, TypeError):
            text = ""
        if exc.code == 401:
            hint = ("the token in Server.Admin.TokenFile was refused"
                    if config.server.admin.token is not None
                    else "set Server.Admin.TokenFile in this config")
            raise QueueCommandError(f"the admin listener at {base} wants a bearer token: "
                                    f"{hint}") from None
        if not text:
            text = f"the admin listener at {base} answered HTTP {exc.code} to {method} " \
                   f"{path.split('?')[0]} (a server without the queue routes?)"
        raise QueueCommandError(text) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise QueueCommandError(
            f"the spool is locked (by the running server, or another mailmgr queue command) "
            f"and the admin listener at {base} did not answer: {reason}") from None


def execute(config: Config, request: Request) -> dict[str, Any]:
    """Run `request` against whoever owns the spool; returns the JSON answer (the admin API's
    shapes). Raises QueueCommandError."""
    try:
        return asyncio.run(_offline(config, request))
    except _Locked:
        return _remote(config, request)


# --- output ------------------------------------------------------------------------------------

def _duration(seconds: float) -> str:
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _next(item: dict[str, Any], now: float) -> str:
    if item["status"] == "in-flight":
        return "running"
    when = item.get("next_attempt_at")
    if when is None or when <= now:
        return "now"
    return "in " + _duration(when - now)


def print_list(data: dict[str, Any], out: TextIO) -> None:
    items = data["messages"]
    if not items:
        print("the queue is empty", file=out)
        return
    now = time.time()
    print(f"{'ID':<24} {'AGE':>8} {'SIZE':>9} {'TRIES':>5} {'NEXT':>10}  SENDER -> RECIPIENTS",
          file=out)
    for item in items:
        sender = item["mail_from"] or "<>"
        rcpts = ", ".join(item["recipients"])
        print(f"{item['id']:<24} {_duration(item['age_seconds']):>8} {item['size']:>9} "
              f"{item['attempts']:>5} {_next(item, now):>10}  {sender} -> {rcpts}", file=out)
        if item.get("last_error"):
            print(f"{'':<24} last error: {item['last_error']}", file=out)
    retrying = sum(1 for i in items if i["state"] == "retrying")
    n = len(items)
    print(f"{n} message{'s' if n != 1 else ''} ({n - retrying} pending, {retrying} retrying)",
          file=out)


def print_show(data: dict[str, Any], out: TextIO) -> None:
    now = time.time()
    env, session, progress = data["envelope"], data["session"], data["progress"]
    lines = [
        f"id:             {data['id']}",
        f"received:       {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(data['received_at']))}"
        f" ({_duration(data['age_seconds'])} ago)",
        f"size:           {data['size']} bytes",
        f"state:          {data['state']} ({data['status']}), next attempt {_next(data, now)}",
        f"mail from:      {env['mail_from'] or '<>'}",
        f"rcpt to:        {', '.join(env['rcpt_to'])}",
        f"ingress point:  {session['ingress_point_name']} (client {session['peer_ip']}, "
        f"helo {session['helo'] or '-'}, tls {session['tls_protocol'] or 'no'})",
    ]
    verdicts = data.get("verdicts")
    if verdicts:
        lines.append(f"verdicts:       spf {verdicts['spf']}, dkim {verdicts['dkim']}, "
                     f"dmarc {verdicts['dmarc']}")
    live = progress["live"]
    lines += [
        f"progress:       rule {progress['rule_index'] + 1}, next action "
        f"{progress['action_index'] + 1}",
        f"live:           {', '.join(live) if live is not None else '(not started)'}",
        f"attempts:       {progress['attempts']}",
    ]
    if progress.get("last_error"):
        lines.append(f"last error:     {progress['last_error']}")
    for name in ("dropped", "stopped"):
        if progress[name]:
            lines.append(f"{name + ':':<16}{', '.join(progress[name])}")
    for action in progress["actions"]:
        lines.append(f"action {action['rule_index'] + 1}.{action['action_index'] + 1}:     "
                     f"resume {json.dumps(action['resume'])}")
    print("\n".join(lines), file=out)


_RETRIED = {
    "scheduled": "due now (was scheduled for later)",
    "in-flight": "being processed right now (nothing to do)",
    "queued": "already due (queued)",
    "parked": "already due (waiting for a heavy-message slot)",
    "waiting": "due now (the worker picks it up from the spool)",
    "stopped": "due at once when the server starts",
}


def run(config: Config, request: Request, *, as_json: bool, out: TextIO = sys.stdout) -> int:
    """The command: act, print (text or --json), return the exit status."""
    try:
        data = execute(config, request)
    except QueueCommandError as exc:
        print(f"mailmgr queue: {exc}", file=sys.stderr)
        return exc.status
    if as_json:
        print(json.dumps(data, indent=2), file=out)
    elif request.op == "list":
        print_list(data, out)
    elif request.op == "show":
        print_show(data, out)
    elif request.op == "retry":
        print(f"{data['id']}: {_RETRIED.get(data['status'], 'due now')}", file=out)
    elif request.op == "retry_all":
        print(f"{data['retried']} message{'s' if data['retried'] != 1 else ''} due now",
              file=out)
    else:
        print(f"{data['id']}: deleted", file=out)
    return 0
