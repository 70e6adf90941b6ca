"""The Prometheus metric objects, in a registry of mailmgr's own (never the global one).

Labels take only bounded values: ingress point names and spool states come from the config
and code, never from clients (no addresses, no message IDs).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from mailmgr.admin.cells import CellCounter, CellHistogram

if TYPE_CHECKING:
    from mailmgr.spool.store import SpoolCounts

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# end-of-DATA -> 250: the spool's group commit (fdatasync) dominates; buckets in seconds.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# One action run: local ones take milliseconds, AWS calls and relays up to their timeouts.
_ACTION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                   60.0)


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


class DecisionCounts(Collector):
    """`mailmgr_traffic_policy_decisions_total{traffic_policy, statement, action}`: one plain
    integer cell per label set, incremented at RCPT (`cell[0] += 1`: ~6x cheaper than a
    Counter child's locked inc; the event loop is the only writer) and read at scrape time.
    A reload's recompiled policy gets the same cells back, so the counts stay monotonic."""

    def __init__(self) -> None:
        self._cells: dict[tuple[str, str, str], list[int]] = {}

    def cell(self, traffic_policy: str, statement: str, action: str) -> list[int]:
        """The cell of one label set (`statement`: 1-based index, or "default")."""
        return self._cells.setdefault((traffic_policy, statement, action), [0])

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "mailmgr_traffic_policy_decisions",
            "Traffic policy decisions at RCPT, by policy, deciding statement (1-based index, or"
            " 'default' for the DefaultAction) and action",
            labels=["traffic_policy", "statement", "action"],
        )
        for labels, cell in list(self._cells.items()):
            family.add_metric(list(labels), float(cell[0]))
        yield family


class Metrics:
    """All of mailmgr's metrics. One instance per process (`METRICS`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.messages_accepted = CellCounter(
            "mailmgr_messages_accepted", "Messages accepted (250 after DATA), by ingress point",
            ["ingress_point"], self.registry,
        )
        self.message_bytes_accepted = CellCounter(
            "mailmgr_message_bytes_accepted", "Bytes of accepted message content, by ingress point",
            ["ingress_point"], self.registry,
        )
        self.data_to_reply = CellHistogram(
            "mailmgr_data_to_reply_seconds",
            "Seconds from the end of DATA to the message being durable in the spool (the 250)",
            (), _LATENCY_BUCKETS, self.registry,
        )
        # --- pipeline: traffic policy decisions, verdicts, rules, actions (issue 11, "records").
        # Labels are config names (policy, rule set, rule) and enums only; hot-path callers
        # keep pre-bound children (rules/traffic_policy.py binds one per statement at compile).
        self.traffic_policy_decisions = DecisionCounts()
        self.registry.register(self.traffic_policy_decisions)
        self.verdicts = CellCounter(
            "mailmgr_verdicts", "Verdicts computed for accepted messages, by kind and result",
            ["kind", "result"], self.registry,
        )
        self.rule_matches = CellCounter(
            "mailmgr_rule_matches", "Rules that matched a message, by rule set and rule",
            ["rule_set", "rule"], self.registry,
        )
        self.action_runs = CellCounter(
            "mailmgr_action_runs",
            "Rule action runs, by action type and status (SUCCESS, FAILURE, RETRY)",
            ["action", "status"], self.registry,
        )
        self.action_duration = CellHistogram(
            "mailmgr_action_duration_seconds", "Seconds one rule action run took, by action type",
            ["action"], _ACTION_BUCKETS, self.registry,
        )
        # ---- analysis (issue 12: local add-on engines) ----
        self.analysis_runs = CellCounter(
            "mailmgr_analysis_runs",
            "Analyzer runs, by analyzer, phase (rcpt, message) and status (OK, FAILED, SKIPPED)",
            ["analyzer", "phase", "status"], self.registry,
        )
        self.analysis_failures = CellCounter(
            "mailmgr_analysis_failures",
            "Analyzer runs that failed, by analyzer and reason (connect, timeout, refused, ...)",
            ["analyzer", "reason"], self.registry,
        )
        self.analysis_duration = CellHistogram(
            "mailmgr_analysis_duration_seconds", "Seconds one analyzer run took, by analyzer and "
            "phase", ["analyzer", "phase"], _ACTION_BUCKETS, self.registry,
        )
        # --- end of the pipeline block
        # ---- PROXY protocol (issue 11 item 2) ----
        self.proxy_refusals = Counter(
            "mailmgr_proxy_refusals",
            "Connections refused on a ProxyProtocol ingress point, by reason: missing, "
            "malformed, truncated, timeout (trusted source) or untrusted_source (a PROXY header "
            "from a source outside TrustedSources)",
            ["ingress_point", "reason"], registry=self.registry,
        )
        # ---- end PROXY protocol ----
        self._state = _StateCollector()
        self.registry.register(self._state)
        # --- Server.Limits (issue 11 item 3): children pre-bound in mailmgr.ingress.limits
        self.limit_refusals = Counter(
            "mailmgr_limit_refusals",
            "Connections, commands and transfers refused or ended by a Server.Limits limit",
            ["limit"], registry=self.registry,
        )

        # -------- ingress replies and refusals, AWS errors, relay attempts, config reloads.
        # Label values come from the config (ingress point, relay names) or from fixed sets
        # in code (commands, code classes, reasons, outcomes); AWS error codes are capped in
        # mailmgr.aws.metrics. Hot-path users bind children once (mailmgr.ingress.counters).
        self.connections_opened = CellCounter(
            "mailmgr_connections_opened", "SMTP connections accepted, by ingress point",
            ["ingress_point"], self.registry,
        )
        self.smtp_replies = CellCounter(
            "mailmgr_smtp_replies",
            "SMTP replies sent, by ingress point, command (fixed set, CONNECT for the banner, "
            "DATA_END for the reply after the content, other) and code class",
            ["ingress_point", "command", "code_class"], self.registry,
        )
        self.messages_rejected = CellCounter(
            "mailmgr_messages_rejected",
            "Refusing SMTP replies (one per refused command: a recipient, a message, an AUTH "
            "attempt), by ingress point and reason",
            ["ingress_point", "reason"], self.registry,
        )
        self.aws_errors = Counter(
            "mailmgr_aws_errors", "Failed AWS calls (after the SDK's own retries), by service "
            "and error code (a bounded set; later unseen codes count as other)",
            ["service", "code"], registry=self.registry,
        )
        self.aws_throttled = Counter(
            "mailmgr_aws_throttled", "AWS calls that failed because AWS throttled them, by "
            "service", ["service"], registry=self.registry,
        )
        self.relay_attempts = Counter(
            "mailmgr_relay_attempts", "Relay delivery attempts (one SMTP transaction each), by "
            "relay and outcome", ["relay", "outcome"], registry=self.registry,
        )
        self.config_reloads = Counter(
            "mailmgr_config_reloads", "SIGHUP config reloads, by result",
            ["result"], registry=self.registry,
        )
        for result in ("success", "failure"):
            self.config_reloads.labels(result)
        # ---- Mail Manager API (issue 14): counted in mailmgr.admin.api.protocol. `operation`
        # is a model operation name or `unknown`; `code` is OK or an error code of the model
        # or of the protocol (a fixed set in mailmgr.admin.api.errors).
        self.api_requests = CellCounter(
            "mailmgr_api_requests",
            "Mail Manager API requests, by operation (model name, or unknown) and code (OK or "
            "the error code answered)", ["operation", "code"], self.registry,
        )
        self.api_request_duration = CellHistogram(
            "mailmgr_api_request_seconds",
            "Seconds one Mail Manager API request took (read, authenticate, run, answer), by "
            "operation", ["operation"], _ACTION_BUCKETS, self.registry,
        )
        # ---- end Mail Manager API
        self.config = Info(
            "mailmgr_config", "The running configuration: hash is the first 16 hex digits of "
            "the SHA-256 of the resolved config", registry=self.registry,
        )

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
