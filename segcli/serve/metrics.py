"""`GET /metrics`: request counts by route and status, latency and batch-size histograms, in the
Prometheus text exposition format (https://prometheus.io/docs/instrumenting/exposition_formats/)."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter

LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    """Cumulative buckets, a sum and a count, as Prometheus histograms are exposed."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def lines(self, name: str) -> list[str]:
        lines, running = [], 0
        for bound, count in zip((*map(_number, self.bounds), "+Inf"), self.counts):
            running += count
            lines.append(f'{name}_bucket{{le="{bound}"}} {running}')
        return lines + [f"{name}_sum {_number(self.total)}", f"{name}_count {running}"]


def _label(value: str) -> str:
    """A Prometheus label value: backslash, double quote and line feed escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


class ServeMetrics:
    """What the server counts; safe to update from the event loop and the model thread."""

    def __init__(self, max_batch: int, replica: str | None = None) -> None:
        self._lock = threading.Lock()
        self.replica = replica  # a Ray Serve replica's id: these counters are that replica's alone
        self.requests: Counter[tuple[str, int]] = Counter()  # (route, status) -> count
        self.latency = Histogram(LATENCY_BUCKETS_S)          # POST /v1/segment, seconds, every status
        self.batch_sizes = Histogram(tuple(float(size) for size in range(1, max_batch + 1)))

    def request(self, route: str, status: int, seconds: float | None = None) -> None:
        with self._lock:
            self.requests[(route, status)] += 1
            if seconds is not None:
                self.latency.observe(seconds)

    def batch(self, size: int) -> None:
        with self._lock:
            self.batch_sizes.observe(float(size))

    def text(self, pending: int) -> str:
        with self._lock:
            lines = ["# HELP segcli_requests_total HTTP requests answered, by route and status code.",
                     "# TYPE segcli_requests_total counter"]
            lines += [f'segcli_requests_total{{route="{route}",status="{status}"}} {count}'
                      for (route, status), count in sorted(self.requests.items())]
            lines += ["# HELP segcli_request_duration_seconds Time to answer POST /v1/segment.",
                      "# TYPE segcli_request_duration_seconds histogram",
                      *self.latency.lines("segcli_request_duration_seconds"),
                      "# HELP segcli_batch_size Images per forward pass of the model.",
                      "# TYPE segcli_batch_size histogram",
                      *self.batch_sizes.lines("segcli_batch_size"),
                      "# HELP segcli_pending_images Images accepted and not yet answered.",
                      "# TYPE segcli_pending_images gauge",
                      f"segcli_pending_images {pending}"]
            if self.replica is not None:
                lines += ["# HELP segcli_replica The Ray Serve replica these counters belong to (each counts its own).",
                          "# TYPE segcli_replica gauge", f'segcli_replica{{replica="{_label(self.replica)}"}} 1']
        return "\n".join(lines) + "\n"
