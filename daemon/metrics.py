"""Prometheus metrics: a collector that reads the engine's own counters at scrape time.

The core keeps plain counts (they also feed report.json); this collector turns them into metric
families, so there is one source of truth and no double bookkeeping on the hot path.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from daemon.app import TradingPath
from daemon.book import BookState
from daemon.risk.state import TradingState

_STATE_VALUE = {BookState.INIT: 0, BookState.LIVE: 1, BookState.INVALID: 2}
_TRADING_VALUE = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


class PathCollector(Collector):
    """Exposes book states, events, orders, fills, rejects, bad lines, positions and PnL."""

    def __init__(self, path: TradingPath, bad_lines: dict[str, int] | None = None) -> None:
        self.path = path
        self.bad_lines = bad_lines if bad_lines is not None else {}

    def collect(self) -> Iterator[Metric]:
        """Called by prometheus-client at each scrape: read the counters now."""
        eng = self.path.engine
        state = GaugeMetricFamily("depthd_book_state", "Book sync state (0 INIT, 1 LIVE, 2 INVALID)",
                                  labels=["symbol"])
        events = CounterMetricFamily("depthd_book_events", "Book events by resulting state",
                                     labels=["symbol", "state"])
        crossed = CounterMetricFamily("depthd_book_crossed", "Book updates that left a crossed or locked book",
                                      labels=["symbol"])
        for symbol in sorted(eng.syncs):
            sync = eng.syncs[symbol]
            state.add_metric([symbol], _STATE_VALUE[sync.state])
            for st, n in sync.state_counts.items():
                events.add_metric([symbol, str(st)], n)
            crossed.add_metric([symbol], sync.crossed)
        yield from (state, events, crossed)

        market = CounterMetricFamily("depthd_market_events", "Market events routed", labels=["kind"])
        for kind in ("snapshot", "delta", "trade"):
            market.add_metric([kind], eng.counts[kind])
        yield market
        yield CounterMetricFamily("depthd_level_updates", "Book level changes received",
                                  value=eng.counts["level_updates"])
        yield CounterMetricFamily("depthd_orders", "Orders sent to the broker", value=eng.counts["orders"])
        yield CounterMetricFamily("depthd_fills", "Fills received", value=eng.counts["fills"])
        rejects = CounterMetricFamily("depthd_risk_rejects", "Intents refused by the risk gate", labels=["reason"])
        for reason, n in sorted(self.path.risk.rejects.items()):
            rejects.add_metric([reason], n)
        yield rejects
        bad = CounterMetricFamily("depthd_bad_input_lines", "Malformed input lines skipped", labels=["problem"])
        for problem, n in sorted(self.bad_lines.items()):
            bad.add_metric([problem], n)
        yield bad
        pos = GaugeMetricFamily("depthd_position", "Position (decimal quantity)", labels=["symbol"])
        for symbol, d in sorted(self.path.portfolio.snapshot().items()):
            pos.add_metric([symbol], d["qty"])
        yield pos
        pnl = GaugeMetricFamily("depthd_pnl", "PnL in quote currency", labels=["kind"])
        for kind, v in sorted(self.path.portfolio.pnl().items()):
            pnl.add_metric([kind], v)
        yield pnl
        yield from self._model_metrics()
        yield from self._risk_metrics()

    def _risk_metrics(self) -> Iterator[Metric]:
        """Trading state, its transitions and the triggers that fired."""
        machine = self.path.state
        yield GaugeMetricFamily("depthd_trading_state", "Trading state (0 ACTIVE, 1 REDUCING, 2 HALTED)",
                                value=_TRADING_VALUE[machine.state])
        moves = CounterMetricFamily("depthd_trading_transitions", "Trading state transitions",
                                    labels=["old", "new"])
        for key, n in sorted(machine.counts.items()):
            old, new = key.split("->")
            moves.add_metric([old, new], n)
        yield moves
        fired = CounterMetricFamily("depthd_risk_triggers", "Times each risk trigger fired", labels=["trigger"])
        for name, n in sorted(self.path.monitor.triggers.fire_counts.items()):
            fired.add_metric([name], n)
        yield fired

    def _model_metrics(self) -> Iterator[Metric]:
        """Scores, score errors and per-feature drift (PSI) of the configured model, if any."""
        model = self.path.engine.model
        if model is None:
            return
        yield CounterMetricFamily("depthd_model_scores", "Samples scored by the model", value=model.scored)
        yield CounterMetricFamily("depthd_model_score_errors", "Failed or non-finite model scores",
                                  value=model.score_errors)
        yield GaugeMetricFamily("depthd_model_healthy", "1 while the model scores and no feature drifts past "
                                "the limit", value=0 if self.path.risk.model_problem else 1)
        psi = GaugeMetricFamily("depthd_feature_psi", "Population stability index of a model feature against "
                                "its training histogram (rolling window)", labels=["symbol", "feature"])
        for symbol, mon in sorted(model.monitors.items()):
            for feature, value in mon.psi().items():
                if value == value:  # NaN until the window holds enough samples
                    psi.add_metric([symbol, feature], value)
        yield psi
