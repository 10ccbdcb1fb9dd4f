"""The Prometheus collector reads the path's own counters: series exist, are well-formed and move."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from daemon.config import settings_from_dict
from daemon.metrics import PathCollector
from daemon.replay import Replay
from tests.conftest import delta, snapshot, write_ndjson
from tests.test_replay import bid_heavy_session


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_collector_exposes_book_state_events_orders_and_bad_lines(tmp_path: Path) -> None:
    lines = [*bid_heavy_session(), b"garbage"]
    data = write_ndjson(tmp_path / "X.ndjson", lines)
    settings = settings_from_dict({"daemon": {"log_level": "error"},
                                   "instruments": {"X": {"tick_size": 0.01, "lot_size": 0.001}},
                                   "risk": {"max_notional": 1000.0}})
    replay = Replay(settings, [str(data)], skip_bad=True)
    registry = CollectorRegistry()
    registry.register(PathCollector(replay.path, replay.stats.bad_reasons))
    before = scrape(registry)

    replay.run()
    after = scrape(registry)

    assert before[("depthd_book_state", (("symbol", "X"),))] == 0
    assert after[("depthd_book_state", (("symbol", "X"),))] == 1
    assert after[("depthd_market_events_total", (("kind", "delta"),))] == 41
    assert after[("depthd_book_events_total", (("state", "LIVE"), ("symbol", "X")))] == 42
    assert after[("depthd_orders_total", ())] >= 1
    assert sum(v for (name, _), v in after.items() if name == "depthd_bad_input_lines_total") == 1


def test_invalid_book_is_visible_as_state_2(tmp_path: Path) -> None:
    data = write_ndjson(tmp_path / "X.ndjson", [delta(1, bids=[[1.0, 1.0]]), snapshot(2, [[2.0, 1]], [[1.0, 1]])])
    settings = settings_from_dict({"daemon": {"log_level": "error"}})
    replay = Replay(settings, [str(data)])
    registry = CollectorRegistry()
    registry.register(PathCollector(replay.path))

    replay.run()

    samples = scrape(registry)
    assert samples[("depthd_book_state", (("symbol", "X"),))] == 2
    assert samples[("depthd_book_crossed_total", (("symbol", "X"),))] == 1


def test_trading_state_transitions_and_triggers_are_exported(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from daemon.app import build_path
    from daemon.clock import ReplayClock
    from daemon.config import settings_from_dict
    from daemon.metrics import PathCollector

    clock = ReplayClock()
    path = build_path(settings_from_dict({"instruments": {"X": {"tick_size": 0.01, "lot_size": 0.001}}}), clock,
                      ["X"])
    path.state.operator_halt("test", "ops")
    path.monitor.triggers.fire_counts["feed_stale_ms"] += 1
    registry = CollectorRegistry()
    registry.register(PathCollector(path))

    text = generate_latest(registry).decode()

    assert "depthd_trading_state 2.0" in text
    assert 'depthd_trading_transitions_total{new="HALTED",old="ACTIVE"} 1.0' in text
    assert 'depthd_risk_triggers_total{trigger="feed_stale_ms"} 1.0' in text
