"""Scrape a running server's /metrics over HTTP and read samples with prometheus-client's own
text parser; find an ingress point's port from the server's log."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from tests.support import ServerProcess

Labels = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Scrape:
    text: str
    samples: dict[tuple[str, Labels], float]

    def value(self, name: str, **labels: str) -> float:
        """The sample `name{labels}` (all labels given), 0 when absent."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def labelsets(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for (sample, labels) in self.samples if sample == name]


def scrape(server: ServerProcess) -> Scrape:
    url = f"http://127.0.0.1:{server.admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return Scrape(text, samples)


def delta(after: Scrape, before: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


def port_of(server: ServerProcess, ingress_point: str) -> int:
    event = server.wait_for("ingress.listening", ingress_point=ingress_point)
    return int(event["addresses"][0].rsplit(":", 1)[1])
