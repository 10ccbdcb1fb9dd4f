"""FeedCollector: feed health, book sync counters, trusted depth, feed lag and recorder counters as
Prometheus series with bounded labels, counters exposed as *_total, values that move with the path."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from daemon.config import settings_from_dict
from daemon.events import BookReset, BookSnapshot
from daemon.metrics_feed import FeedCollector
from daemon.replay import Replay
from daemon.sources.recorder import Recorder
from daemon.venues.health import FeedHealth, ResyncPolicy
from tests.conftest import write_ndjson
from tests.test_replay import bid_heavy_session

SEC = 1_000_000_000
ALLOWED_LABELS = {"venue", "symbol", "kind", "side", "reason"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(registry: CollectorRegistry) -> tuple[Samples, dict[str, str]]:
    """(every sample by (name, sorted labels), every family's type by name)."""
    text = generate_latest(registry).decode()
    families = list(text_string_to_metric_families(text))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for fam in families for s in fam.samples}
    return samples, {fam.name: fam.type for fam in families}


def replay_of(tmp_path: Path) -> Replay:
    data = write_ndjson(tmp_path / "X.ndjson", bid_heavy_session())
    settings = settings_from_dict({"daemon": {"log_level": "error"},
                                   "instruments": {"X": {"tick_size": 0.01, "lot_size": 0.001}},
                                   "risk": {"max_notional": 1000.0}})
    return Replay(settings, [str(data)])


def live_feed() -> FeedHealth:
    """A live OKX feed with some history: connected, a REST error or two, one symbol given up on."""
    feed = FeedHealth("okx", live=True, connected=True, connects=2, disconnects=1, connected_since_ns=1,
                      messages=120, bytes=64_000, stale_reconnects=1, rest_errors=Counter({"timeout": 2,
                                                                                            "http_5xx": 1}))
    policy = ResyncPolicy(max_resyncs=1, window_ns=10 * SEC)
    eth = feed.symbol("ETH-USDT")
    eth.gaps, eth.stale_snapshots, eth.decode_errors = 3, 1, 4
    policy.on_resync(eth, 1, "gap")
    policy.on_resync(eth, 2, "checksum")
    feed.symbol("BTC-USDT")
    return feed


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_every_feed_series_is_exported_with_its_value(tmp_path: Path) -> None:
    replay = replay_of(tmp_path)
    replay.run()
    feed = live_feed()
    feed.last_message_ns = replay.path.engine.clock.now() - 3 * SEC
    registry = CollectorRegistry()
    registry.register(FeedCollector(replay.path, [feed, *replay.path.monitor.feeds]))

    samples, _ = scrape(registry)

    okx = {"venue": "okx"}
    assert value(samples, "depthd_feed_connected", **okx) == 1
    assert value(samples, "depthd_feed_silent_seconds", **okx) == 3.0
    assert value(samples, "depthd_feed_messages_total", **okx) == 120
    assert value(samples, "depthd_feed_received_bytes_total", **okx) == 64_000
    assert value(samples, "depthd_feed_disconnects_total", **okx) == 1
    assert value(samples, "depthd_feed_stale_reconnects_total", **okx) == 1
    assert value(samples, "depthd_feed_banned", **okx) == 0
    assert value(samples, "depthd_feed_rest_errors_total", venue="okx", kind="timeout") == 2
    assert value(samples, "depthd_feed_rest_errors_total", venue="okx", kind="http_5xx") == 1
    eth = {"venue": "okx", "symbol": "ETH-USDT"}
    assert value(samples, "depthd_feed_gaps_total", **eth) == 3
    assert value(samples, "depthd_feed_resyncs_total", **eth) == 2
    assert value(samples, "depthd_feed_stale_snapshots_total", **eth) == 1
    assert value(samples, "depthd_feed_decode_errors_total", **eth) == 4
    assert value(samples, "depthd_feed_untradeable", **eth) == 1
    assert value(samples, "depthd_feed_untradeable", venue="okx", symbol="BTC-USDT") == 0


def test_a_replay_feed_has_sync_series_but_no_connection_series(tmp_path: Path) -> None:
    replay = replay_of(tmp_path)
    replay.run()
    (generic,) = replay.path.monitor.feeds
    generic.symbol("X")  # the generic venue has no sync facts of its own; a record makes the series
    registry = CollectorRegistry()
    registry.register(FeedCollector(replay.path, [generic]))

    samples, _ = scrape(registry)

    venues = {dict(labels).get("venue") for _, labels in samples}
    assert venues == {None, "generic"}
    assert not any(name.startswith(("depthd_feed_connected", "depthd_feed_messages", "depthd_feed_silent"))
                   for name, _ in samples)
    assert value(samples, "depthd_feed_resyncs_total", venue="generic", symbol="X") == 0


def test_book_series_count_checks_resets_trusted_depth_and_lag(tmp_path: Path) -> None:
    replay = replay_of(tmp_path)
    registry = CollectorRegistry()
    registry.register(FeedCollector(replay.path, replay.path.monitor.feeds))
    before, _ = scrape(registry)

    replay.run()
    engine = replay.path.engine
    ts = engine.clock.now()
    sync = engine.syncs["X"]
    sync.checksum_checks, sync.checksum_failures, sync.quote_mismatches = 7, 1, 2  # as a checksum venue counts them
    engine.on_market(BookReset("X", ts, ts, "gap"))
    engine.on_market(BookSnapshot("X", ts - SEC // 2, ts, np.array([9_990], np.int64), np.array([1_000], np.int64),
                                  np.array([10_010, 10_020], np.int64), np.array([1_000, 1_000], np.int64),
                                  0, None, False))
    after, _ = scrape(registry)

    x = {"symbol": "X"}
    assert value(before, "depthd_book_trusted_levels", symbol="X", side="bid") == 0
    assert value(after, "depthd_book_trusted_levels", symbol="X", side="bid") == 1
    assert value(after, "depthd_book_trusted_levels", symbol="X", side="ask") == 2
    assert value(after, "depthd_book_checksum_checks_total", **x) == 7
    assert value(after, "depthd_book_checksum_failures_total", **x) == 1
    assert value(after, "depthd_book_quote_mismatches_total", **x) == 2
    assert value(after, "depthd_book_resets_total", symbol="X", reason="gap") == 1
    assert ("depthd_book_resets_total", (("reason", "gap"), ("symbol", "X"))) not in before
    assert value(after, "depthd_feed_lag_seconds", **x) == 0.5


def test_recorder_series_follow_the_recorder(tmp_path: Path) -> None:
    replay = replay_of(tmp_path)
    now = [1_700_000_000 * SEC]
    recorder = Recorder(tmp_path / "rec", "okx", ["BTC-USDT"], now=lambda: now[0], size_check_lines=1)
    registry = CollectorRegistry()
    registry.register(FeedCollector(replay.path, [], recorder))
    before, _ = scrape(registry)

    for i in range(5):
        recorder.write(now[0] + i, "ws", "BTC-USDT", {"i": i})
    recorder.flush()
    after, _ = scrape(registry)
    recorder.close()

    assert value(before, "depthd_recorder_lines_total") == 0
    assert value(after, "depthd_recorder_lines_total") == 5
    assert value(after, "depthd_recorder_written_bytes_total") > 0
    assert value(after, "depthd_recorder_errors_total") == 0
    assert value(after, "depthd_recorder_dropped_lines_total") == 0
    assert value(after, "depthd_recorder_failing") == 0


def test_without_a_recorder_there_are_no_recorder_series(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    registry.register(FeedCollector(replay_of(tmp_path).path, []))

    samples, _ = scrape(registry)

    assert not any(name.startswith("depthd_recorder") for name, _ in samples)


def test_counters_end_in_total_labels_are_bounded_and_help_is_set(tmp_path: Path) -> None:
    replay = replay_of(tmp_path)
    replay.run()
    recorder = Recorder(tmp_path / "rec", "okx", ["BTC-USDT"])
    registry = CollectorRegistry()
    registry.register(FeedCollector(replay.path, [live_feed(), *replay.path.monitor.feeds], recorder))

    samples, types = scrape(registry)
    text = generate_latest(registry).decode()
    recorder.close()

    assert types and all(name.startswith("depthd_") for name in types)
    for name, kind in types.items():
        assert kind in ("counter", "gauge"), name
        assert f"# HELP {name}" in text
    counter_samples = [n for n, _ in samples if types[n.removesuffix("_total")] == "counter"]
    assert counter_samples and all(n.endswith("_total") and not n.endswith("_total_total") for n in counter_samples)
    assert all(not n.endswith("_total") for n, _ in samples if types.get(n) == "gauge")
    for name, labels in samples:
        keys = {k for k, _ in labels}
        assert keys <= ALLOWED_LABELS, (name, keys)
        values = dict(labels)
        assert values.get("side", "bid") in ("bid", "ask")
        assert values.get("venue", "okx") in ("okx", "generic")
        assert values.get("symbol", "X") in ("X", "ETH-USDT", "BTC-USDT")


def test_values_move_between_scrapes(tmp_path: Path) -> None:
    replay = replay_of(tmp_path)
    replay.run()
    feed = live_feed()
    registry = CollectorRegistry()
    registry.register(FeedCollector(replay.path, [feed]))
    before, _ = scrape(registry)

    feed.messages += 30
    feed.bytes += 1_000
    feed.connected = False
    feed.disconnects += 1
    feed.banned = True
    feed.rest_errors["rate_limited"] += 1
    feed.symbol("BTC-USDT").gaps += 1
    after, _ = scrape(registry)

    okx = {"venue": "okx"}
    assert (value(before, "depthd_feed_messages_total", **okx), value(after, "depthd_feed_messages_total", **okx)) \
        == (120, 150)
    assert value(after, "depthd_feed_received_bytes_total", **okx) == 65_000
    assert (value(before, "depthd_feed_connected", **okx), value(after, "depthd_feed_connected", **okx)) == (1, 0)
    assert value(after, "depthd_feed_disconnects_total", **okx) == 2
    assert value(after, "depthd_feed_banned", **okx) == 1
    assert value(after, "depthd_feed_rest_errors_total", venue="okx", kind="rate_limited") == 1
    assert value(after, "depthd_feed_gaps_total", venue="okx", symbol="BTC-USDT") == 1


def test_a_collector_with_nothing_to_report_scrapes_cleanly(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    registry.register(FeedCollector(replay_of(tmp_path).path, [FeedHealth("okx", live=True)]))

    samples, _ = scrape(registry)

    assert value(samples, "depthd_feed_connected", venue="okx") == 0
    assert value(samples, "depthd_feed_silent_seconds", venue="okx") == 0
    assert value(samples, "depthd_book_trusted_levels", symbol="X", side="ask") == 0
