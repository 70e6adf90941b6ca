"""Counters and histograms for the SMTP and processing hot paths: plain numbers bumped in place
and turned into Prometheus families only at scrape time.

prometheus-client's own `Counter.inc` checks observability and takes a lock on every call (about
1 µs); with a dozen increments per message that was 3-4 % of the ingest path. These cells are
bumped only from the event loop thread (nothing on a worker thread counts), so they need no
lock; the exposition is prometheus-client's (CounterMetricFamily, HistogramMetricFamily), so the
text format and naming rules stay the library's.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class CounterCell:
    """One label set of a CellCounter. `inc(amount)`: amount >= 0 (not checked: callers pass
    1 or a byte count)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HistogramCell:
    """One label set of a CellHistogram: per-bucket counts (not cumulative) and the sum."""

    __slots__ = ("counts", "sum", "upper")

    def __init__(self, upper: tuple[float, ...]) -> None:
        self.upper = upper
        self.counts = [0] * (len(upper) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # A bucket `le` counts values <= le: bisect_left finds the first bound >= value.
        self.counts[bisect_left(self.upper, value)] += 1
        self.sum += value


class CellCounter(Collector):
    """A counter family (`name` without `_total`; exposed as `name_total`) with children made
    on first use of a label set. Label values must come from bounded sets."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 registry: CollectorRegistry) -> None:
        self._name = name
        self._doc = documentation
        self._labelnames = tuple(labelnames)
        self._cells: dict[tuple[str, ...], CounterCell] = {}
        registry.register(self)

    def labels(self, *values: str) -> CounterCell:
        """The cell of one label set (in `labelnames` order). Raises ValueError on a count
        mismatch."""
        cell = self._cells.get(values)
        if cell is None:
            if len(values) != len(self._labelnames):
                raise ValueError(f"{self._name}: expected labels {self._labelnames}")
            cell = self._cells[values] = CounterCell()
        return cell

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._doc, labels=self._labelnames)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._doc, labels=self._labelnames)
        for values, cell in list(self._cells.items()):
            family.add_metric(list(values), cell.value)
        yield family


class CellHistogram(Collector):
    """A histogram family with fixed `buckets` (upper bounds in ascending order, +Inf added).
    Without labelnames, `observe` records into the one unlabelled child."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 buckets: Sequence[float], registry: CollectorRegistry) -> None:
        self._name = name
        self._doc = documentation
        self._labelnames = tuple(labelnames)
        self._upper = tuple(float(b) for b in buckets)
        if list(self._upper) != sorted(set(self._upper)):
            raise ValueError(f"{name}: buckets must be strictly ascending")
        self._cells: dict[tuple[str, ...], HistogramCell] = {}
        self._plain = None if labelnames else self.labels()
        registry.register(self)

    def labels(self, *values: str) -> HistogramCell:
        cell = self._cells.get(values)
        if cell is None:
            if len(values) != len(self._labelnames):
                raise ValueError(f"{self._name}: expected labels {self._labelnames}")
            cell = self._cells[values] = HistogramCell(self._upper)
        return cell

    def observe(self, value: float) -> None:
        """Only for a histogram without labels."""
        assert self._plain is not None, "a labelled histogram observes through labels()"
        self._plain.observe(value)

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self._name, self._doc, labels=self._labelnames)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._doc, labels=self._labelnames)
        # the library's own formatting of `le`, as its Histogram writes it
        bounds = [floatToGoString(b) for b in self._upper] + ["+Inf"]  # type: ignore[no-untyped-call]
        for values, cell in list(self._cells.items()):
            running, buckets = 0, []
            for bound, count in zip(bounds, list(cell.counts), strict=True):
                running += count
                buckets.append((bound, float(running)))
            family.add_metric(list(values), buckets, cell.sum)
        yield family
