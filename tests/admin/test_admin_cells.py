"""The hot-path metric cells expose exactly what prometheus-client's own Counter and Histogram
expose for the same observations (their `_created` samples aside)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from mailmgr.admin.cells import CellCounter, CellHistogram

BUCKETS = (0.001, 0.01, 0.1, 1.0, 10.0)
VALUES = (0.0, 0.0005, 0.001, 0.0011, 0.01, 0.5, 1.0, 9.99, 10.0, 10.01, 1e6)


def _text(registry: CollectorRegistry) -> list[str]:
    return [line for line in generate_latest(registry).decode().splitlines()
            if "_created" not in line]


def test_counter_exposition_matches_the_library() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    cell = CellCounter("t_replies", "Replies", ["point", "code_class"], ours)
    lib = Counter("t_replies", "Replies", ["point", "code_class"], registry=theirs)
    for point, code, amount in (("in", "2xx", 1), ("in", "5xx", 1), ("in", "2xx", 10240),
                                ("out", "4xx", 3)):
        cell.labels(point, code).inc(amount)
        lib.labels(point, code).inc(amount)
    assert _text(ours) == _text(theirs)
    assert ours.get_sample_value("t_replies_total", {"point": "in", "code_class": "2xx"}) == 10241


def test_histogram_exposition_matches_the_library() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    plain = CellHistogram("t_latency_seconds", "Latency", (), BUCKETS, ours)
    lib = Histogram("t_latency_seconds", "Latency", buckets=BUCKETS, registry=theirs)
    labelled = CellHistogram("t_run_seconds", "Runs", ["action"], BUCKETS, ours)
    lib_labelled = Histogram("t_run_seconds", "Runs", ["action"], buckets=BUCKETS,
                             registry=theirs)
    for value in VALUES:
        plain.observe(value)
        lib.observe(value)
        labelled.labels("Relay").observe(value)
        lib_labelled.labels("Relay").observe(value)
    assert _text(ours) == _text(theirs)


def test_label_count_and_bucket_order_are_checked() -> None:
    registry = CollectorRegistry()
    counter = CellCounter("t_c", "c", ["a", "b"], registry)
    with pytest.raises(ValueError, match="expected labels"):
        counter.labels("only-one")
    with pytest.raises(ValueError, match="ascending"):
        CellHistogram("t_h", "h", (), (1.0, 0.5), registry)
