"""The evaluator's Prometheus metrics, served on /metrics when `metrics_port` is set (images and the Helm chart:
9464; the chart's HorizontalPodAutoscaler scales on deltanas_evaluator_busy_slots).

    metrics = EvaluatorMetrics(slots=lambda: 2, busy=lambda: executor.busy)
    metrics.serve("0.0.0.0", 9464)            # curl http://host:9464/metrics
    metrics.observe("invalid", "apply", 0.02)
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Candidates take from milliseconds (refused at extract) to an hour (a long re-training on a CPU).
BUCKETS = (0.01, 0.1, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))


class EvaluatorMetrics:
    """One registry per evaluator (several may live in one process, as in tests)."""

    def __init__(self, slots: Callable[[], int], busy: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        Gauge("deltanas_evaluator_slots", "candidates that can run at once (a Ray cluster's follows its resources)",
              registry=self.registry).set_function(slots)
        Gauge("deltanas_evaluator_busy_slots", "sandbox slots running a candidate now",
              registry=self.registry).set_function(busy)
        self.candidates = Counter("deltanas_evaluator_candidates", "evaluated candidates by status and failure stage",
                                  ["status", "stage"], registry=self.registry)
        self.seconds = Histogram("deltanas_evaluator_evaluation_seconds", "wall-clock seconds per candidate",
                                 buckets=BUCKETS, registry=self.registry)
        self._server = None

    def observe(self, status: str, stage: str, seconds: float) -> None:
        """`stage`: the failure stage in lower case, "none" for a valid candidate."""
        self.candidates.labels(status=status, stage=stage).inc()
        self.seconds.observe(seconds)

    def serve(self, host: str, port: int) -> int:
        """Starts the /metrics HTTP server (a daemon thread); returns its port (0 asks for a free one)."""
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        return self._server.server_address[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
