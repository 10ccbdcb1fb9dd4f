"""The model on the path: the engine scores LIVE samples, a failing score never becomes an order."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from daemon.app import build_path
from daemon.clock import ReplayClock
from daemon.config import settings_from_dict
from daemon.errors import ConfigError, ModelError
from daemon.events import BookSnapshot, OrderIntent, OrderType, Side
from daemon.features import schema
from daemon.model.metadata import Histogram
from tests.model.conftest import make_meta, ratio_model, save

MS = 1_000_000
T0 = 1_000 * MS
# book features only: they have values from the first LIVE sample (a NaN input poisons the MatMul)
BOOK = ("imb_l1", "spread_bps")


def ratio(tmp_path: Path, features: tuple[str, ...] = BOOK, **meta) -> Path:
    """score = features[0] / features[1]"""
    return save(ratio_model(len(features)), tmp_path / "m.onnx", make_meta(features, **meta))


def config(model: Path | str, **over) -> dict:
    raw = {
        "daemon": {"log_level": "error"},
        "instruments": {"X": {"tick_size": 0.01, "lot_size": 0.001}},
        "model": {"path": str(model), "drift_window": 20, "drift_min_samples": 10},
        "strategy": {"name": "onnx_signal", "params": {"entry": 0.5, "exit": 0.1, "max_position": 1.0}},
        "risk": {"max_position": 1.0, "max_order_qty": 1.0, "max_notional": 1000.0},
        "paper": {"latency_us": 1000},
    }
    for key, value in over.items():
        raw[key] = {**raw.get(key, {}), **value}
    return raw


def snap(ts: int, bid_qty: int = 5000, ask_qty: int = 1000) -> BookSnapshot:
    a = np.array
    return BookSnapshot("X", ts, ts, a([10000, 9999]), a([bid_qty, bid_qty]), a([10001, 10002]),
                        a([ask_qty, ask_qty]))


def run(raw: dict, until_ms: int = 1000):
    clock = ReplayClock()
    path = build_path(settings_from_dict(raw), clock, ["X"])
    seen = []
    path.engine.sample_sinks.append(seen.append)
    clock.advance_to(T0)
    path.engine.on_market(snap(T0))
    clock.advance_to(T0 + until_ms * MS)
    return path, seen


def test_the_engine_scores_each_live_sample_before_the_strategy_sees_it(tmp_path: Path) -> None:
    # ratio model: score = imb_l1 / spread_bps; bid 5 lots vs ask 1 lot -> imb_l1 = 2/3, spread ~1 bps
    model = ratio(tmp_path)

    path, seen = run(config(model))

    seen = seen[1:]  # the tick at T0 came before the snapshot
    assert seen and all(s.live for s in seen)
    for s in seen:
        assert s.score == pytest.approx(np.float32(s["imb_l1"]) / np.float32(s["spread_bps"]), rel=1e-6)
    assert path.engine.model.scored == len(seen) and path.engine.model.score_errors == 0
    assert path.engine.counts["orders"] >= 1  # score 0.67 > entry 0.5: long
    assert path.risk.model_problem is None


def test_a_nan_score_is_counted_reported_to_risk_and_never_an_order(tmp_path: Path) -> None:
    # vol_10s is NaN for the first 10 s: imb_l1 / NaN = NaN
    model = ratio(tmp_path, ("imb_l1", "vol_10s"))

    path, seen = run(config(model))

    seen = [s for s in seen if s.live]
    assert seen and all(math.isnan(s.score) for s in seen)
    assert path.engine.model.score_errors == len(seen)
    assert path.engine.model.scorer.nan_scores == len(seen)
    assert path.engine.counts["orders"] == 0
    assert path.risk.model_problem is not None and "model score failed" in path.risk.model_problem


def test_samples_of_a_book_that_is_not_live_are_not_scored(tmp_path: Path) -> None:
    model = ratio(tmp_path)
    clock = ReplayClock()
    path = build_path(settings_from_dict(config(model)), clock, ["X"])
    seen = []
    path.engine.sample_sinks.append(seen.append)
    clock.advance_to(T0)
    path.engine.on_market(snap(T0))  # LIVE now; a crossed snapshot breaks it
    clock.advance_to(T0 + 500 * MS)
    path.engine.on_market(BookSnapshot("X", T0 + 500 * MS, T0 + 500 * MS, np.array([10005]), np.array([5]),
                                       np.array([10001]), np.array([5])))
    clock.advance_to(T0 + 1000 * MS)

    not_live = [s for s in seen if not s.live]
    assert not_live and all(math.isnan(s.score) for s in not_live)
    assert path.engine.model.scored == sum(s.live for s in seen)
    assert path.engine.model.score_errors == 0


def test_drift_over_the_limit_makes_risk_refuse_new_exposure(tmp_path: Path) -> None:
    # a reference where imb_l1 always sits in its lowest bin; the live book's imbalance is 2/3
    hist = {"imb_l1": Histogram((-0.5, 0.0), (0.98, 0.01, 0.01, 0.0))}
    model = ratio(tmp_path, histograms=hist)

    path, _ = run(config(model, risk={"max_feature_psi": 0.25}), until_ms=6000)  # PSI every 50 samples

    feature, psi = path.engine.model.drift["X"]
    assert feature == "imb_l1" and psi > 0.25
    assert "feature drift" in path.risk.model_problem
    orders = path.engine.counts["orders"]
    path.engine.submit(OrderIntent("X", T0 + 6000 * MS, Side.BUY, 1, OrderType.MARKET))
    # the model trigger has moved trading to REDUCING (the gate's own model check backs it up)
    assert "trigger:model" in path.monitor.triggers.status() or "model" in path.monitor.triggers.fired
    assert path.risk.rejects["reducing_only"] + path.risk.rejects["model_unhealthy"] == 1
    assert path.engine.counts["orders"] == orders


def test_a_strategy_that_needs_a_model_refuses_a_config_without_one() -> None:
    raw = config("")
    with pytest.raises(ConfigError, match=r"\[model\] path"):
        settings_from_dict(raw)


def test_a_missing_model_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.path: no such file"):
        settings_from_dict(config(tmp_path / "nope.onnx"))


def test_a_model_trained_on_another_schema_is_refused_at_startup(tmp_path: Path) -> None:
    model = ratio(tmp_path, schema_version=schema.SCHEMA_VERSION + 1)

    with pytest.raises(ModelError, match="schema version"):
        run(config(model))


def test_model_scores_errors_and_drift_are_exported_as_metrics(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from daemon.metrics import PathCollector

    hist = {"imb_l1": Histogram((-0.5, 0.0), (0.98, 0.01, 0.01, 0.0))}
    path, _ = run(config(ratio(tmp_path, histograms=hist)), until_ms=3000)
    registry = CollectorRegistry()
    registry.register(PathCollector(path))

    text = generate_latest(registry).decode()

    assert f"depthd_model_scores_total {float(path.engine.model.scored)}" in text
    assert "depthd_model_score_errors_total 0.0" in text
    assert 'depthd_feature_psi{feature="imb_l1",symbol="X"}' in text


def test_replay_with_a_mismatched_model_exits_3_naming_the_differences(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from daemon.cli import EXIT_CONFIG, main

    repo = Path(__file__).resolve().parents[2]
    model = ratio(tmp_path, ("imb_l1", "imb_7"))
    cfg = tmp_path / "c.toml"
    cfg.write_text((repo / "config.onnx.toml").read_text().replace('"strategies/models/sample.onnx"',
                                                                   f'"{model}"'))

    code = main(["replay", str(repo / "replay_data" / "sample.rec.zst"), "--config", str(cfg), "--quiet"])

    assert code == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "model error" in err and "does not match the feature calculator" in err and "imb_7" in err
