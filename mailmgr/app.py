"""Composition root: load → compile → recover spool → open stores → start workers → bind listeners.

Shutdown runs the same steps in reverse. This is the only module that wires ingress, spool,
pipeline and actions together; it holds no protocol or business logic of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import ssl
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from mailmgr import logs
from mailmgr.actions import relay
from mailmgr.actions.base import Resources
from mailmgr.admin.api.service import ApiService
from mailmgr.admin.api.setup import api_service
from mailmgr.admin.metrics import METRICS
from mailmgr.admin.server import AdminServer
from mailmgr.analysis.service import AnalysisService, AnalysisSwitch
from mailmgr.archive import LocalArchive, build_archives, run_retention
from mailmgr.aws import AwsClients, AwsSettings, SecretStore
from mailmgr.config.models import AcceptAction, Config, IngressPoint, ServerLimits, TlsPolicy
from mailmgr.config.server_models import ListenAddress
from mailmgr.dev_certificates import ensure_dev_certificates
from mailmgr.errors import ConfigError, ConfigProblem
from mailmgr.ingress.auth import AuthThrottle
from mailmgr.ingress.limits import AcceptErrorLog, AddressTable, fit_to_fd_limit
from mailmgr.ingress.listener import IngressServer
from mailmgr.ingress.tls import server_context
from mailmgr.ingress.truststore import TrustAnchors, load_trust_store
from mailmgr.message import (
    AnalysisResults,
    Envelope,
    InboundMessage,
    SessionFacts,
    new_message_id,
)
from mailmgr.pipeline import Pipeline, compile_rule_sets
from mailmgr.queue.service import QueueService
from mailmgr.records import IngressRecords
from mailmgr.reload import (
    Closable,
    IngressDiff,
    PipelineSwitch,
    close_all,
    effective_config,
    log_failed,
    log_reloaded,
    record_loaded,
    restart_needed,
    verdicts_changed,
)
from mailmgr.rules.address_lists import AddressListIndex, build_indexes
from mailmgr.rules.traffic_policy import CompiledTrafficPolicy
from mailmgr.spool.shards import Shard, adopt
from mailmgr.spool.store import SpoolStore
from mailmgr.spool.worker import SpoolWorker
from mailmgr.state.config_source import ConfigSource, open_source
from mailmgr.state.postgres import SharedStateError, migrate, open_pool
from mailmgr.verdicts.service import VerdictsService

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from mailmgr.admin.cells import CounterCell

MAX_MESSAGE_SIZE = 41_943_040  # Mail Manager's 40 MB limit
RETENTION_INTERVAL = 3600.0
SPOOL_LOCK_WAIT = 5.0  # seconds serve waits for a spool lock another process holds
WORKER_GRACE = 1.0  # seconds the actions in flight get at shutdown even when sessions used all
_RETIRED_POINTS = 256  # removed ingress points remembered for routing their last messages


class SpoolAcceptor:
    """The ingress seam: a message is accepted once the spool has made it durable."""

    def __init__(self, store: SpoolStore, worker: SpoolWorker) -> None:
        self._store = store
        self._worker = worker
        # ingress point name -> its (accepted, bytes) counter children: `labels()` takes a lock
        # and builds a tuple, so it runs once per point, not once per message.
        self._counters: dict[str, tuple[CounterCell, CounterCell]] = {}
        self.records: IngressRecords | None = None  # Log.Records: set from each loaded config

    async def accept(self, session: SessionFacts, envelope: Envelope, content: bytes,
                     analysis: AnalysisResults) -> str:
        started = time.perf_counter()
        message = InboundMessage(new_message_id(), time.time(), envelope, session, content,
                                 analysis)
        await self._store.commit(message)  # shielded inside the store: survives a disconnect
        self._worker.submit(message.id)
        METRICS.data_to_reply.observe(time.perf_counter() - started)
        counters = self._counters.get(session.ingress_point_name)
        if counters is None:
            name = session.ingress_point_name
            counters = (METRICS.messages_accepted.labels(name),
                        METRICS.message_bytes_accepted.labels(name))
            self._counters[name] = counters
        counters[0].inc()
        counters[1].inc(len(content))
        if self.records is not None:
            self.records.accepted(message)
        return message.id


class TrafficPolicyCheck:
    """The ingress seam for RCPT: the ingress point's traffic policy, compiled once, decides."""

    def __init__(self, policy: CompiledTrafficPolicy) -> None:
        self.policy = policy
        self.needs_analysis = policy.needs_analysis
        self._check = policy.check  # bound once: one lookup less per RCPT

    @staticmethod
    def compile_all(
        config: Config, indexes: Mapping[str, AddressListIndex]
    ) -> dict[str, TrafficPolicyCheck]:
        """One check per traffic policy ID, each policy compiled once however many ingress
        points share it."""
        return {
            tp.id: TrafficPolicyCheck(CompiledTrafficPolicy.compile(
                tp, indexes, records=config.server.log_records))
            for tp in config.traffic_policies
        }

    def check(self, session: SessionFacts, recipient: str, mail_from: str,
              analysis: AnalysisResults) -> bool:
        return self._check(session, recipient, mail_from, analysis).decision is AcceptAction.ALLOW


def _policy_checks(config: Config) -> dict[str, TrafficPolicyCheck]:
    return TrafficPolicyCheck.compile_all(config, build_indexes(config.address_lists))


def _max_size(config: Config, ingress: IngressPoint) -> int:
    limit = config.traffic_policy(ingress.traffic_policy_id).max_message_size
    return min(limit, MAX_MESSAGE_SIZE) if limit else MAX_MESSAGE_SIZE


@dataclass
class App:
    config: Config
    servers: list[IngressServer] = field(default_factory=list)
    _store: SpoolStore | None = None
    _worker: SpoolWorker | None = None
    _archives: dict[str, LocalArchive] = field(default_factory=dict)
    _retention: asyncio.Task[None] | None = None
    _verdicts: VerdictsService | None = None
    _analysis: AnalysisService | None = None
    # What ingress points ask for RCPT-time analyses; a reload swaps the service inside.
    _analysis_switch: AnalysisSwitch = field(default_factory=AnalysisSwitch)
    _aws: AwsClients | None = None
    _secrets: SecretStore | None = None
    _switch: PipelineSwitch | None = None
    _acceptor: SpoolAcceptor | None = None
    # Per-client-address state (connection caps, rates, AUTH failures) across all points.
    _addresses: AddressTable = field(default_factory=AddressTable)
    _throttle: AuthThrottle | None = None
    _limits: tuple[ServerLimits, ServerLimits] | None = None  # (configured, effective)
    _running: bool = False
    _reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)  # reloads, retiring points
    _drains: set[asyncio.Task[None]] = field(default_factory=set)  # cancelled at stop
    _closing: list[Closable] = field(default_factory=list)
    _retention_set: list[LocalArchive] = field(default_factory=list)  # read each round
    _archive_pool: AsyncConnectionPool | None = None  # Server.SharedState: the archive index
    # Points reloads removed, newest last (bounded): messages their last sessions got a 250
    # for are still routed by their ID (see Pipeline).
    _retired_points: dict[str, IngressPoint] = field(default_factory=dict)
    admin: AdminServer | None = None
    # Where reloads read the config: the file, or the file + the shared store (Server.SharedState)
    source: ConfigSource | None = None
    # Multi-process serving (mailmgr.supervisor): this worker's spool shard, and the private
    # admin listener the supervisor aggregates (None: Server.Admin.Listen, as with one process).
    shard: Shard = field(default_factory=Shard)
    admin_listen: tuple[ListenAddress, ...] | None = None

    async def start(self) -> None:
        async with self._reload_lock:
            if self.source is None:  # the shared document, when there is one, replaces the
                self.source, self.config = await open_source(self.config)  # file's resources
            await self._start()
            self._running = True
            self.source.watch(self.request_reload)  # pushes reload like SIGHUP

    async def _start(self) -> None:
        server = self.config.server
        server.data_directory.mkdir(parents=True, exist_ok=True)
        await ensure_dev_certificates(self.config)
        self._store = SpoolStore(self.shard.directory(server.spool_directory))
        # a `mailmgr queue` command on the stopped server may hold the lock for a moment
        recovered = await self._store.open(lock_wait=SPOOL_LOCK_WAIT)
        for old in self.shard.adoptable(server.spool_directory):  # Processes changed
            recovered += await adopt(old, self._store, lock_wait=SPOOL_LOCK_WAIT)
        # Clients open lazily on first use, so a config without AWS actions never needs
        # credentials or a network.
        self._aws = AwsClients(AwsSettings.from_server(server))
        if server.shared_state is not None:  # every archive's index in PostgreSQL
            self._archive_pool = await open_pool(server.shared_state, name="mailmgr-archive")
            await migrate(self._archive_pool)
        self._archives = build_archives(self.config, aws=self._aws, pool=self._archive_pool)
        for archive in self._archives.values():
            await archive.open()
            self._spawn(archive.report_retention())
        self._secrets = SecretStore(self._aws)
        self._verdicts = VerdictsService.from_config(self.config)
        self._analysis = AnalysisService.from_config(self.config, self._verdicts.resolver)
        self._analysis_switch.service = self._analysis
        self._switch = PipelineSwitch(
            self._pipeline(self.config, self._verdicts, self._analysis))
        self._worker = SpoolWorker(self._store, self._switch, concurrency=server.workers)
        await self._worker.start(recovered)
        self._retention_set[:] = self._archives.values()
        if self.shard.index == 0:  # one process of a multi-process server runs retention
            self._retention = asyncio.create_task(
                run_retention(self._retention_set, RETENTION_INTERVAL)
            )
        self._acceptor = SpoolAcceptor(self._store, self._worker)
        self._acceptor.records = IngressRecords.from_config(self.config)
        checks = _policy_checks(self.config)
        for ingress in self.config.ingress_points:
            srv = self._server(self.config, ingress, checks)
            await srv.start()
            self.servers.append(srv)
        store = self._store
        record_loaded(self.config)  # mailmgr_config_info{hash}
        METRICS.watch_spool(store.counts)
        METRICS.watch_connections(
            lambda: [(s.ingress_point.name, s.active_sessions) for s in self.servers]
        )
        admin_addresses: list[str] = []
        admin = server.admin
        if self.admin_listen is not None:
            admin = replace(admin, listen=self.admin_listen)
        if admin.listen:  # after recovery and every SMTP bind: ready from the first answer
            self.admin = AdminServer(admin, METRICS,
                                     queue=QueueService(self._store, self._worker),
                                     api=self._api_service())
            admin_addresses = await self.admin.start()
            self.admin.ready = True
        logs.event(
            "server.started",
            hostname=server.hostname,
            recovered=len(recovered),
            listeners=[
                {
                    "ingress_point": s.ingress_point.name,
                    "address": f"{h}:{p}",
                    "tls_wrapped": (h, p) in s.wrapped_addresses(),
                }
                for s in self.servers
                for h, p in s.addresses()
            ],
            admin=admin_addresses,
        )

    def _pipeline(self, config: Config, verdicts: VerdictsService,
                  analysis: AnalysisService | None) -> Pipeline:
        """Rule sets with fresh action instances; the AWS clients and secrets are shared."""
        resources = Resources(
            config=config, archives=dict(self._archives), aws=self._aws, secrets=self._secrets
        )
        return Pipeline(config, compile_rule_sets(config, resources), verdicts=verdicts,
                        analysis=analysis)

    def __post_init__(self) -> None:
        self._throttle = AuthThrottle(table=self._addresses)

    def _server(
        self, config: Config, ingress: IngressPoint, checks: Mapping[str, TrafficPolicyCheck]
    ) -> IngressServer:
        """An ingress server, not started. Raises ConfigError or ValueError (TLS files)."""
        assert self._acceptor is not None
        ssl_context, trust = self._ssl_context(ingress)
        return IngressServer(
            ingress,
            hostname=config.server.hostname,
            max_message_size=_max_size(config, ingress),
            acceptor=self._acceptor,
            recipient_policy=checks[ingress.traffic_policy_id],
            ssl_context=ssl_context,
            trust=trust,
            secrets=self._secrets,
            throttle=self._throttle,
            limits=self._effective_limits(config.server.limits),
            addresses=self._addresses,
            analyzer=self._analysis_switch,
        )

    def _effective_limits(self, configured: ServerLimits) -> ServerLimits:
        """`configured` with MaxConnections kept below the fd limit (warned about once)."""
        if self._limits is None or self._limits[0] != configured:
            self._limits = (configured, fit_to_fd_limit(configured))
        return self._limits[1]

    async def drain(self) -> None:
        """The first step of a graceful shutdown: /healthz/ready answers 503 at once while the
        SMTP listeners keep accepting for Server.Admin.DrainSeconds, so a balancer stops
        sending new connections before they close (issue 11 item 6)."""
        if self.admin is None:
            return
        self.admin.draining = True
        seconds = self.config.server.admin.drain_seconds
        logs.event("server.draining", seconds=seconds)
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def stop(self) -> None:
        async with self._reload_lock:  # a reload under way finishes first
            self._running = False
        for task in list(self._drains):
            task.cancel()  # stop closes what they were waiting to close
        # One deadline for sessions and actions: SMTP sessions get ShutdownGraceSeconds to
        # finish their transaction, the worker what is left of it (at least WORKER_GRACE) for
        # the actions in flight, which checkpoint; what is unfinished resumes at the next start.
        grace = self.config.server.shutdown_grace
        deadline = time.monotonic() + grace
        for srv in self.servers:
            await srv.stop_accepting()  # new connections are refused from here on
        if self.servers:
            logs.event("server.listeners_closed", grace=grace,
                       sessions=sum(s.active_sessions for s in self.servers))
        await asyncio.gather(*(s.stop(grace) for s in self.servers))
        await asyncio.gather(*self._tasks, *self._drains, return_exceptions=True)
        if self._retention:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
        if self._worker:
            left = deadline - time.monotonic()
            await self._worker.stop(max(left, min(grace, WORKER_GRACE)))
        await relay.close_pools()  # idle relay connections QUIT cleanly
        if self._verdicts:
            self._verdicts.close()
        if self._analysis:
            await self._analysis.close()
        for archive in self._archives.values():
            await archive.close()
        await close_all(self._closing)
        if self._archive_pool is not None:
            await self._archive_pool.close()
        if self._aws:
            await self._aws.close()
        METRICS.watch_connections(None)
        if self._store:
            METRICS.watch_spool(None)
            await self._store.close()
        if self.source is not None:
            await self.source.close()
        if self.admin:  # last: /healthz/live answers while the rest shuts down
            await self.admin.close()
        logs.event("server.stopped")

    # --- SIGHUP --------------------------------------------------------------------------------

    def request_reload(self) -> None:
        """SIGHUP handler: reload in a task; reloads run one at a time, in order."""
        self._spawn(self.reload())

    def _spawn(self, work: Coroutine[object, object, None], *, drain: bool = False) -> None:
        tasks = self._drains if drain else self._tasks
        task = asyncio.get_running_loop().create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _api_service(self) -> ApiService:
        """The Mail Manager API of this server: changes persist to the state file, or with
        SharedState to the shared store, and go live through `apply_loaded`."""
        return api_service(self.config, self.apply_loaded, lambda: self.config,
                           pool=self._archive_pool, archives=lambda: self._archives,
                           listeners=self._bound)

    async def apply_loaded(self, loaded: Config) -> None:
        """Apply a config the caller already loaded and validated (the Mail Manager API), as a
        reload applies one: new sessions and messages see it, nothing in flight changes."""
        async with self._reload_lock:
            if self._running:
                await self._apply(loaded)

    def _bound(self, point_id: str) -> list[str]:
        return [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for s in self.servers
                if s.ingress_point.id == point_id for h, p in s.addresses()]

    async def reload(self) -> None:
        """Re-read the config source (the file, and the shared document with SharedState) and
        apply it to new work. An invalid config, or one whose new parts cannot be built,
        changes nothing; a point that fails alone is skipped."""
        async with self._reload_lock:
            if not self._running or self.source is None:
                return
            try:
                loaded = await self.source.load()
            except ConfigError as exc:
                log_failed(exc.problems)
                return
            except OSError as exc:
                log_failed([ConfigProblem(str(self.config.source), "$", str(exc))])
                return
            await self._apply(loaded)
            if self.admin is not None and self.admin.api is not None:
                self.admin.api.invalidate()  # the file or the shared document changed

    async def _apply(self, loaded: Config) -> None:
        running = self.config
        keys = restart_needed(running.server, loaded.server)
        if keys:
            logs.warning("config.reload_restart_needed", keys=list(keys),
                         note="these Server settings keep their running values until a restart")
        config = effective_config(loaded, running.server)
        opened: dict[str, LocalArchive] = {}
        verdicts = self._verdicts
        analysis = self._analysis
        try:
            await ensure_dev_certificates(config)
            wanted = build_archives(config, aws=self._aws, pool=self._archive_pool)
            for archive_id, archive in wanted.items():
                old = self._archives.get(archive_id)
                if old is None or old.archive.storage != archive.archive.storage:
                    await archive.open()  # new, or its Storage changed: a new store
                    opened[archive_id] = archive
            if verdicts is None or verdicts_changed(running.server, config.server):
                verdicts = VerdictsService.from_config(config)
            if (verdicts is not self._verdicts or config.analyzers != running.analyzers
                    or config.server.analysis != running.server.analysis):
                analysis = AnalysisService.from_config(config, verdicts.resolver)
            kept = {i: a for i, a in self._archives.items() if i in wanted and i not in opened}
            resources = Resources(config=config, archives={**kept, **opened}, aws=self._aws,
                                  secrets=self._secrets)
            current = {ip.id for ip in config.ingress_points}
            retired_points = {**{i: p for i, p in self._retired_points.items() if i not in current},
                       **{p.id: p for p in running.ingress_points if p.id not in current}}
            retired_points = dict(list(retired_points.items())[-_RETIRED_POINTS:])
            pipeline = Pipeline(config, compile_rule_sets(config, resources), verdicts=verdicts,
                                retired=retired_points, analysis=analysis)
            checks = _policy_checks(config)
        except Exception as exc:  # nothing is swapped: the old config keeps running entirely
            await close_all(list(opened.values()))
            if verdicts is not None and verdicts is not self._verdicts:
                verdicts.close()
            if analysis is not None and analysis is not self._analysis:
                await analysis.close()
            log_failed([ConfigProblem(str(config.source), "$", f"{type(exc).__name__}: {exc}")])
            return
        assert self._switch is not None
        retired = self._switch.swap(pipeline)
        removed = [a for i, a in self._archives.items() if i not in kept]
        for archive in kept.values():
            archive.reconfigure(config)  # retention and rule-set ARNs follow the new config
        for archive in [*kept.values(), *opened.values()]:
            self._spawn(archive.report_retention())
        self._archives = {**kept, **opened}
        self._retention_set[:] = self._archives.values()
        closing: list[Closable] = [*removed]
        if verdicts is not self._verdicts and self._verdicts is not None:
            closing.append(self._verdicts)
        self._verdicts = verdicts
        if analysis is not self._analysis and self._analysis is not None:
            closing.append(self._analysis)
        self._analysis = analysis
        self._analysis_switch.service = analysis  # new connections and transactions use it
        self._retired_points = retired_points
        self._closing.extend(closing)
        self._spawn(self._close_when_drained(retired, closing), drain=True)
        self.config = config
        if self._acceptor is not None:
            self._acceptor.records = IngressRecords.from_config(config)
        diff = IngressDiff.between(running.ingress_points, config.ingress_points)
        failed = await self._apply_ingress(config, diff, checks)
        log_reloaded(running, config, diff, failed)

    async def _apply_ingress(
        self, config: Config, diff: IngressDiff, checks: Mapping[str, TrafficPolicyCheck]
    ) -> list[str]:
        """Update, stop and start ingress servers; returns the IDs of points that failed."""
        by_id = {s.ingress_point.id: s for s in self.servers}
        failed: list[str] = []
        for point_id in (*diff.removed, *diff.rebound):
            old = by_id.pop(point_id, None)
            if old is None:  # it had failed to start: nothing listens
                continue
            await old.stop_accepting()  # frees the ports before the new listeners bind
            self._spawn(self._retire(old, config.server.shutdown_grace))
        for point in config.ingress_points:
            try:
                srv = self._server(config, point, checks)
                if point.id in diff.updated and point.id in by_id:
                    by_id[point.id].adopt(srv)
                    if point.tls_certificate is not None:
                        logs.event("tls.reloaded", ingress_point=point.name)
                else:
                    await srv.start()
                    by_id[point.id] = srv
            except (ConfigError, ValueError, OSError) as exc:
                # An updated point keeps everything it had; a new one stays down.
                failed.append(point.id)
                event = "tls.reload_failed" if point.id in diff.updated else "config.reload_failed"
                logs.error(event, ingress_point=point.name, error=str(exc))
        self.servers = list(by_id.values())
        return failed

    @staticmethod
    async def _retire(server: IngressServer, grace: float) -> None:
        await server.stop(grace)  # its open sessions finish their transactions

    async def _close_when_drained(
        self, generation: int, closing: list[Closable]
    ) -> None:
        """Close what the reload removed once no message runs on an older pipeline."""
        assert self._switch is not None
        await self._switch.drained(generation)
        for item in closing:
            self._closing.remove(item)
        await close_all(closing)

    def _ssl_context(
        self, ingress: IngressPoint
    ) -> tuple[ssl.SSLContext | None, TrustAnchors | None]:
        """The point's server context and, for MTLS, its trust store (expired CAs and CRLs
        dropped with a warning). Raises ConfigError or ValueError."""
        if ingress.tls_certificate is None:  # the loader allows this only for plain OPEN points
            return None, None
        trust = None
        if ingress.trust_store is not None:
            trust = load_trust_store(ingress.trust_store, ingress_point=ingress.name)
        context = server_context(
            ingress.tls_certificate, fips=ingress.tls_policy is TlsPolicy.FIPS, trust=trust
        )
        return context, trust


async def serve(config: Config, *, shard: Shard | None = None,
                admin_listen: tuple[ListenAddress, ...] | None = None,
                started: Callable[[App], None] | None = None) -> int:
    """Run until SIGTERM/SIGINT; SIGHUP reloads the config file (and with it the
    certificates). Returns the exit status (0 after a graceful shutdown).

    Graceful shutdown (issue 11 item 6): readiness 503 and DrainSeconds of accepting as usual
    (`drain`), then listeners closed, sessions finishing within ShutdownGraceSeconds (421 4.3.2
    for those left), the worker's actions in flight checkpointing, stores closed (`stop`)."""
    app = App(config, shard=shard or Shard(), admin_listen=admin_listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    AcceptErrorLog().install(loop)  # EMFILE at accept(): one log line per 10 s, no tracebacks
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, app.request_reload)
    try:
        await app.start()
    except ConfigError:
        await app.stop()  # an unreadable certificate: the CLI prints the problem, exit 2
        raise
    except (OSError, SharedStateError) as exc:
        # Bind failures, unwritable data folders and an unreachable Server.SharedState
        # database are operator errors, not crashes.
        logs.error("server.start_failed", error=str(exc))
        await app.stop()
        return 1
    _freeze_startup_heap()
    if started is not None:  # a worker process tells its supervisor (mailmgr.supervisor)
        started(app)
    await stop.wait()
    stop.clear()
    drain = asyncio.create_task(app.drain())
    # A second SIGTERM/SIGINT during the drain cuts it short.
    second = asyncio.create_task(stop.wait())
    await asyncio.wait({drain, second}, return_when=asyncio.FIRST_COMPLETED)
    drain.cancel()
    second.cancel()
    logs.event("server.stopping")
    await app.stop()
    return 0


def _freeze_startup_heap() -> None:
    """Keep full GC passes short. Start-up leaves a large, long-lived heap (config models,
    botocore service models, compiled rules); every full collection traversed all of it and
    stalled the loop for ~100 ms under load (measured: end-of-DATA p99 27-112 ms with it,
    19-23 ms without). Freezing moves it out of the collector's view; cycles made afterwards
    are still collected."""
    gc.collect()
    gc.freeze()
