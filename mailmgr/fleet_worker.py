"""One worker process of a multi-process server (`mailmgr serve` with Server.Processes > 1): the
normal App on its spool shard, SO_REUSEPORT listeners on the supervisor's ports, a private admin
listener reported to the supervisor, and a stop when the supervisor goes away.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from dataclasses import dataclass

from mailmgr import logs
from mailmgr.config.models import Config
from mailmgr.config.server_models import ListenAddress
from mailmgr.ingress.listener import share_ports
from mailmgr.spool.shards import Shard

# The worker's own admin listener: loopback, a free port, reported to the supervisor only.
PRIVATE_ADMIN = (ListenAddress("127.0.0.1", 0),)


@dataclass(frozen=True)
class WorkerSpec:
    """What the supervisor tells a worker (as JSON in `serve --worker`): its index of `count`,
    the resolved ports ((ingress point ID, "listen" | "wrapped", position, port)), the pipe it
    reports its admin address on, and the pipe whose EOF means the supervisor is gone."""

    index: int
    count: int
    ports: tuple[tuple[str, str, int, int], ...]
    report_fd: int
    alive_fd: int

    def to_json(self) -> str:
        return json.dumps({"index": self.index, "count": self.count,
                           "ports": [list(p) for p in self.ports],
                           "report_fd": self.report_fd, "alive_fd": self.alive_fd})

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        """Raises ValueError / KeyError / TypeError for a malformed spec."""
        data = json.loads(text)
        ports = tuple((str(p[0]), str(p[1]), int(p[2]), int(p[3])) for p in data["ports"])
        return cls(int(data["index"]), int(data["count"]), ports, int(data["report_fd"]),
                   int(data["alive_fd"]))


def prepare(spec: WorkerSpec) -> None:
    """Before the event loop: log fields `worker` and `pid`, shared listener ports."""
    logs.set_process(worker=spec.index, pid=os.getpid())
    share_ports({(point, kind, pos): port for point, kind, pos, port in spec.ports})


async def run(config: Config, spec: WorkerSpec) -> int:
    """Serve as worker `spec.index` until SIGTERM (from the supervisor, or self-sent when the
    supervisor's pipe closes). Returns the exit status of `mailmgr.app.serve`."""
    from mailmgr.app import App, serve

    loop = asyncio.get_running_loop()

    def orphaned() -> None:
        # EOF: the supervisor died (even SIGKILLed); stop gracefully rather than serve alone.
        loop.remove_reader(spec.alive_fd)
        logs.warning("supervisor.lost", note="the supervisor exited; stopping")
        os.kill(os.getpid(), signal.SIGTERM)

    loop.add_reader(spec.alive_fd, orphaned)

    def started(app: App) -> None:
        admin = app.admin.addresses[0] if app.admin is not None and app.admin.addresses else ""
        line = json.dumps({"pid": os.getpid(), "admin": admin}) + "\n"
        os.write(spec.report_fd, line.encode())
        os.close(spec.report_fd)

    return await serve(config, shard=Shard(spec.index, spec.count),
                       admin_listen=PRIVATE_ADMIN, started=started)
