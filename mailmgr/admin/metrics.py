"""The Prometheus metric objects, in a registry of mailmgr's own (never the global one).

Labels take only bounded values: ingress point names and spool states come from the config
and code, never from clients (no addresses, no message IDs).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from mailmgr.spool.store import SpoolCounts

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# end-of-DATA -> 250: the spool's group commit (fdatasync) dominates; buckets in seconds.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _StateCollector(Collector):
    """Gauges read from the running server at scrape time (no hot-path cost):
    `mailmgr_spool_messages{state}`, `mailmgr_spool_oldest_message_age_seconds` and
    `mailmgr_connections_current{ingress_point}`."""

    def __init__(self) -> None:
        self.spool: Callable[[float], SpoolCounts] | None = None
        self.connections: Callable[[], Iterable[tuple[str, int]]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        # --- spool (mailmgr queue) ---
        spool = GaugeMetricFamily(
            "mailmgr_spool_messages",
            "Unfinished messages in the spool: retrying = a temporary action failure recorded "
            "or the next attempt scheduled for later; pending = the others",
            labels=["state"],
        )
        oldest = GaugeMetricFamily(
            "mailmgr_spool_oldest_message_age_seconds",
            "Seconds since the oldest unfinished message in the spool was accepted (0: empty)",
        )
        if self.spool is not None:
            now = time.time()
            counts = self.spool(now)
            spool.add_metric(["pending"], float(counts.pending))
            spool.add_metric(["retrying"], float(counts.retrying))
            age = 0.0 if counts.oldest_received_at is None else now - counts.oldest_received_at
            oldest.add_metric([], max(0.0, age))
        yield spool
        yield oldest
        current = GaugeMetricFamily(
            "mailmgr_connections_current", "Open SMTP connections, by ingress point",
            labels=["ingress_point"],
        )
        totals: dict[str, int] = {}
        for name, count in self.connections() if self.connections is not None else ():
            totals[name] = totals.get(name, 0) + count
        for name, count in totals.items():
            current.add_metric([name], float(count))
        yield current


class Metrics:
    """All of mailmgr's metrics. One instance per process (`METRICS`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.messages_accepted = Counter(
            "mailmgr_messages_accepted", "Messages accepted (250 after DATA), by ingress point",
            ["ingress_point"], registry=self.registry,
        )
        self.message_bytes_accepted = Counter(
            "mailmgr_message_bytes_accepted", "Bytes of accepted message content, by ingress point",
            ["ingress_point"], registry=self.registry,
        )
        self.data_to_reply = Histogram(
            "mailmgr_data_to_reply_seconds",
            "Seconds from the end of DATA to the message being durable in the spool (the 250)",
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self._state = _StateCollector()
        self.registry.register(self._state)

    def watch_spool(self, counts: Callable[[float], SpoolCounts] | None) -> None:
        """Where the spool gauges are read from at scrape time: a function of the current epoch
        time (SpoolStore.counts); None: the spool closed."""
        self._state.spool = counts

    def watch_connections(self, live: Callable[[], Iterable[tuple[str, int]]] | None) -> None:
        """Where `mailmgr_connections_current` is read from: (ingress point name, open sessions)
        pairs, several per name allowed (summed); None: no listeners."""
        self._state.connections = live

    def render(self) -> bytes:
        """The registry in Prometheus text format 0.0.4."""
        return generate_latest(self.registry)


METRICS = Metrics()
