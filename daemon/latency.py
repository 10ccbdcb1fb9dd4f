"""Latency histograms kept as plain counters, read by the metrics collector at scrape time.

The core does not import prometheus-client: a stage that is timed holds a `LatencyHistogram` (a bisect
into fixed bucket bounds, a few hundred ns an observation) and the collector turns it into a Prometheus
histogram in seconds. The time source is injected (`Stopwatch.perf_ns`), so the core never reads wall
time itself and a replay without timing pays nothing.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Sequence

MAX_PENDING = 4096  # orders decided and not yet reported sent, kept for tick-to-order

# 1 us .. 10 s: feed, feature, score, journal and tick-to-order latencies all fall in here
DEFAULT_BUCKETS_S: tuple[float, ...] = (1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3,
                                        5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LatencyHistogram:
    """Counts of observations (ns) per bucket, their sum and count; cumulative on read."""

    __slots__ = ("_bounds_ns", "bounds_s", "count", "counts", "sum_ns")

    def __init__(self, bounds_s: Sequence[float] = DEFAULT_BUCKETS_S) -> None:
        if list(bounds_s) != sorted(set(bounds_s)) or not bounds_s or bounds_s[0] <= 0:
            raise ValueError(f"bucket bounds must be positive and strictly increasing, got {list(bounds_s)}")
        self.bounds_s = tuple(bounds_s)
        self._bounds_ns = [round(b * 1e9) for b in bounds_s]
        self.counts = [0] * (len(bounds_s) + 1)  # the last is +Inf
        self.sum_ns = 0
        self.count = 0

    def observe_ns(self, ns: int) -> None:
        """Count one observation of `ns` nanoseconds (a negative one, from a clock step, counts as 0)."""
        ns = max(ns, 0)
        self.counts[bisect_left(self._bounds_ns, ns)] += 1
        self.sum_ns += ns
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, cumulative count) per bucket, "+Inf" last: Prometheus' histogram buckets."""
        out, total = [], 0
        for bound, n in zip((*(repr(b) for b in self.bounds_s), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out

    def quantile_s(self, q: float) -> float:
        """The upper bound (s) of the bucket holding the q-quantile; nan when empty, inf past the last bound."""
        if not self.count:
            return float("nan")
        rank, total = q * self.count, 0
        for i, n in enumerate(self.counts):
            total += n
            if total >= rank:
                return self.bounds_s[i] if i < len(self.bounds_s) else float("inf")
        return float("inf")


class Stopwatch:
    """The timed stages of one path and the time sources the shell gives them: `perf_ns` (a monotonic
    counter) for durations, and live only `wall_ns` (epoch ns, the clock receive times are on) for
    tick-to-order; a replay's receive times are in the past, so it gives none."""

    STAGES = ("features", "score", "tick_to_order")

    def __init__(self, perf_ns: Callable[[], int], wall_ns: Callable[[], int] | None = None) -> None:
        self.perf_ns = perf_ns
        self.wall_ns = wall_ns
        self.stages = {name: LatencyHistogram() for name in self.STAGES}
        self._triggers: OrderedDict[str, int] = OrderedDict()  # client id -> receive time (ns) that led to it

    def triggered(self, client_id: str, receive_ns: int) -> None:
        """An order was decided on a market event received at `receive_ns` (epoch ns)."""
        self._triggers[client_id] = receive_ns
        if len(self._triggers) > MAX_PENDING:  # orders refused before any send never report one
            self._triggers.popitem(last=False)

    def sent(self, client_id: str) -> None:
        """The order left the gateway: tick-to-order is now minus its trigger's receive time."""
        receive_ns = self._triggers.pop(client_id, None)
        if receive_ns is not None and receive_ns > 0 and self.wall_ns is not None:
            self.stages["tick_to_order"].observe_ns(self.wall_ns() - receive_ns)
