"""Prometheus metrics of the service itself: build and model info, latencies, event-loop lag, the journal,
broker rejects and cancels, notional exposure.

Read at scrape time (one source of truth): the latency histograms are the plain `LatencyHistogram`s the
timed code keeps (`daemon.latency`), turned into Prometheus histograms in seconds here. Labels are
bounded: symbol, reason, stage, kind.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from daemon import __version__
from daemon.app import TradingPath
from daemon.latency import LatencyHistogram, Stopwatch

if TYPE_CHECKING:
    from daemon.journal import Journal
    from daemon.loop_monitor import LoopMonitor
    from daemon.reload import Reloader

_STAGE_METRICS = {"features": ("depthd_feature_update_seconds", "Time to build one feature sample"),
                  "score": ("depthd_score_seconds", "Time to score one sample with the model"),
                  "tick_to_order": ("depthd_tick_to_order_seconds", "Receive time of the last market message before "
                                    "the decision to the order leaving the gateway (live only)")}


def histogram(name: str, doc: str, h: LatencyHistogram) -> HistogramMetricFamily:
    """A Prometheus histogram (seconds) from a LatencyHistogram."""
    return HistogramMetricFamily(name, doc, buckets=h.cumulative(), sum_value=h.sum_ns / 1e9)


class OpsCollector(Collector):
    """Service metrics beside PathCollector (trading) and FeedCollector (market data)."""

    def __init__(self, path: TradingPath, mode: str, loop: LoopMonitor | None = None,
                 stopwatch: Stopwatch | None = None, journal: Journal | None = None,
                 reloader: Reloader | None = None) -> None:
        self.path = path
        self.reloader = reloader
        self.mode = mode
        self.loop = loop
        self.stopwatch = stopwatch
        self.journal = journal

    def collect(self) -> Iterator[Metric]:
        """Called by prometheus-client at each scrape."""
        info = InfoMetricFamily("depthd_build", "depthd version, Python and run mode")
        info.add_metric([], {"version": __version__, "python": platform.python_version(), "mode": self.mode})
        yield info
        model = self.path.engine.model
        if model is not None:
            m = InfoMetricFamily("depthd_model", "The model being scored")
            m.add_metric([], {"path": str(model.scorer.path), "sha256": model.scorer.model_hash})
            yield m
        if self.loop is not None:
            yield histogram("depthd_event_loop_lag_seconds", "How late the event loop woke a timer", self.loop.lag)
            yield CounterMetricFamily("depthd_watchdog_pings", "WATCHDOG=1 notifications sent to systemd",
                                      value=self.loop.pings)
        if self.stopwatch is not None:
            for stage, (name, doc) in _STAGE_METRICS.items():
                yield histogram(name, doc, self.stopwatch.stages[stage])
        if self.journal is not None:
            yield histogram("depthd_journal_write_seconds", "Durable (fsync'd) journal writes",
                            self.journal.write_latency)
            failed = CounterMetricFamily("depthd_journal_write_failures", "Journal writes that failed")
            failed.add_metric([], self.journal.counts["failed_writes"])
            yield failed
        if self.reloader is not None:
            reloads = CounterMetricFamily("depthd_config_reloads", "SIGHUP config reloads by result",
                                          labels=["result"])
            reloads.add_metric(["ok"], self.reloader.reloads - self.reloader.failures)
            reloads.add_metric(["failed"], self.reloader.failures)
            yield reloads
        yield from self._orders()
        yield from self._risk()

    def _risk(self) -> Iterator[Metric]:
        """The daily PnL the loss trigger watches, and the trigger's limit (for a "loss limit near" alert)."""
        monitor = self.path.monitor
        daily = monitor.last_facts.daily_pnl
        if daily is not None:
            yield GaugeMetricFamily("depthd_risk_daily_pnl", "PnL since the trading day began (quote currency)",
                                    value=daily)
        dl = monitor.settings.triggers.daily_loss
        if dl.enabled and dl.threshold is not None:
            yield GaugeMetricFamily("depthd_risk_max_daily_loss", "Daily loss at which trading stops (quote "
                                    "currency)", value=dl.threshold)

    def _orders(self) -> Iterator[Metric]:
        eng = self.path.engine
        rejects = CounterMetricFamily("depthd_broker_rejects", "Orders the broker or venue rejected",
                                      labels=["reason"])
        for reason, n in sorted(eng.broker_rejects.items()):
            rejects.add_metric([_bounded(reason)], n)
        yield rejects
        yield CounterMetricFamily("depthd_order_cancels", "Orders cancelled", value=eng.counts["canceled"])
        yield GaugeMetricFamily("depthd_open_orders", "Orders working at the broker",
                                value=len(eng.open_orders()))
        notional = GaugeMetricFamily("depthd_position_notional", "Position value at the last mark (quote "
                                     "currency, signed)", labels=["symbol"])
        for symbol in sorted(self.path.portfolio.snapshot()):
            value = self.path.portfolio.notional(symbol)
            if value is not None:
                notional.add_metric([symbol], value)
        yield notional


def _bounded(reason: str) -> str:
    """A reject reason as a label: venue texts ("IB 201: ...") are cut to their code, so labels stay few."""
    head = reason.split(":", 1)[0]
    return head[:48]
