"""Prometheus metrics: one registry per server, served on the http listener at /metrics."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._metrics: dict[str, Counter | Gauge | Histogram] = {}

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        m = self._metrics.get(name)
        if m is None:
            m = Counter(name, doc, list(labels), registry=self.registry)
            self._metrics[name] = m
        assert isinstance(m, Counter)
        return m

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        m = self._metrics.get(name)
        if m is None:
            m = Gauge(name, doc, list(labels), registry=self.registry)
            self._metrics[name] = m
        assert isinstance(m, Gauge)
        return m

    def histogram(self, name: str, doc: str, labels: Sequence[str] = ()) -> Histogram:
        m = self._metrics.get(name)
        if m is None:
            m = Histogram(name, doc, list(labels), registry=self.registry)
            self._metrics[name] = m
        assert isinstance(m, Histogram)
        return m

    def render(self) -> bytes:
        return generate_latest(self.registry)
