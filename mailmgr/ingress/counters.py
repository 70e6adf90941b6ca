"""Per-ingress-point metric children for the SMTP hot path: connections opened, replies by
command and code class, refusals by reason (mailmgr_smtp_replies_total and friends).

Label values never come from a client: commands are mapped onto a fixed set here.
"""

from __future__ import annotations

from mailmgr.admin.cells import CounterCell
from mailmgr.admin.metrics import METRICS, Metrics
from mailmgr.ingress.replies import Reply

CONNECT = "CONNECT"  # the banner (or the refusal sent instead of it)
DATA_END = "DATA_END"  # the reply after the message content (DATA's second reply)
OTHER = "other"  # an unknown verb, a line that is no command, a timer's reply
# The verbs counted by name; any other (HELP, EXPN, XYZZY, ...) counts as OTHER.
COMMANDS = frozenset({"HELO", "EHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "RSET",
                      "NOOP", "QUIT", "VRFY"})
_LABELS = {verb: verb for verb in COMMANDS}


def command_label(verb: str) -> str:
    """`verb` (upper case) as the `command` label: itself when in COMMANDS, else "other"."""
    return _LABELS.get(verb, OTHER)


class PointCounters:
    """The children of one ingress point, bound on first use (`labels()` takes a lock and
    builds a tuple: once per point and label set, not once per reply)."""

    __slots__ = ("_metrics", "_name", "_rejected", "_replies", "opened")

    def __init__(self, name: str, metrics: Metrics) -> None:
        self._name = name
        self._metrics = metrics
        self.opened: CounterCell = metrics.connections_opened.labels(name)
        self._replies: dict[tuple[str, int], CounterCell] = {}
        self._rejected: dict[str, CounterCell] = {}

    def reply(self, command: str, reply: Reply) -> None:
        """Count one reply sent for `command` (a command_label, CONNECT or DATA_END), and a
        refusal when the reply carries a reason."""
        key = (command, reply.code // 100)
        child = self._replies.get(key)
        if child is None:
            child = self._replies[key] = self._metrics.smtp_replies.labels(
                self._name, command, f"{key[1]}xx")
        child.inc()
        reason = reply.reason
        if reason is not None:
            rejected = self._rejected.get(reason)
            if rejected is None:
                rejected = self._rejected[reason] = self._metrics.messages_rejected.labels(
                    self._name, reason)
            rejected.inc()


_POINTS: dict[str, PointCounters] = {}


def point_counters(name: str) -> PointCounters:
    """The process's counters of the ingress point called `name` (created on first use)."""
    counters = _POINTS.get(name)
    if counters is None:
        counters = _POINTS[name] = PointCounters(name, METRICS)
    return counters
