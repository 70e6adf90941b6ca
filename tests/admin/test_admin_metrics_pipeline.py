"""Pipeline metrics over real HTTP after real SMTP traffic, with Mail Manager records off:
traffic policy decisions by statement, verdicts, rule matches, action runs (SUCCESS, RETRY,
FAILURE) and their durations change by exactly what the traffic did; no record is written."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.records.records_support import RECORD_EVENTS, port_of, records_config, send
from tests.support import ServerProcess

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def _delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """The change of every sample named `name` whose labels include `labels`, summed."""
    wanted = set(labels.items())

    def total(samples: Samples) -> float:
        return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)

    return total(after) - total(before)


def test_pipeline_metrics_change_by_exactly_the_traffic(
    tmp_path: Path, server_factory: Callable[[dict[str, Any]], ServerProcess]
) -> None:
    server = server_factory(records_config(tmp_path, records=None)).start()
    before = _scrape(server.admin_port)
    port = port_of(server, "inbound")
    first, codes = send(port, ["ok@example.com", "blocked@example.com"])
    assert codes == {"ok@example.com": 250, "blocked@example.com": 550}
    relayed, _ = send(port, ["relay@example.com"])
    for message_id in (first, relayed):
        server.wait_for("message.processed", 20.0, message_id=message_id)
    after = _scrape(server.admin_port)

    def delta(name: str, **labels: str) -> float:
        return _delta(before, after, name, **labels)

    decisions = "mailmgr_traffic_policy_decisions_total"
    assert delta(decisions, traffic_policy="screen", statement="1", action="DENY") == 1
    assert delta(decisions, traffic_policy="screen", statement="2", action="ALLOW") == 2
    assert delta(decisions, traffic_policy="screen", statement="default", action="DENY") == 0
    assert delta(decisions) == 3
    # pre-bound at compile time: the default's series exists before any traffic
    assert (decisions, frozenset({("traffic_policy", "screen"), ("statement", "default"),
                                  ("action", "DENY")})) in before

    for kind in ("spf", "dkim", "dmarc"):
        assert delta("mailmgr_verdicts_total", kind=kind) == 2, kind

    matches = "mailmgr_rule_matches_total"
    assert delta(matches, rule_set="main", rule="tag") == 2
    assert delta(matches, rule_set="main", rule="relay-down") == 1
    assert delta(matches, rule_set="main", rule="never") == 0

    runs = "mailmgr_action_runs_total"
    assert delta(runs, action="AddHeader", status="SUCCESS") == 2
    assert delta(runs, action="Relay", status="RETRY") == 1
    assert delta(runs, action="Relay", status="FAILURE") == 1
    assert delta(runs, action="Relay", status="SUCCESS") == 0
    assert delta(runs) == 4
    durations = "mailmgr_action_duration_seconds_count"
    assert delta(durations, action="AddHeader") == 2
    assert delta(durations, action="Relay") == 2
    assert delta("mailmgr_action_duration_seconds_sum", action="Relay") > 0
    assert delta("mailmgr_messages_accepted_total", ingress_point="inbound") == 2

    # Records off: not one Mail Manager record line
    assert not [e for e in server.events if e.get("event") in RECORD_EVENTS]
    assert server.stop() == 0
