"""Depth-imbalance strategy and the strategy loader: signals, persistence, sizing, params."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from daemon.clock import ReplayClock
from daemon.events import TargetPosition
from daemon.features import NAMES, FeatureSample
from daemon.instruments import Instrument
from strategies import (
    Strategy,
    StrategyContext,
    StrategyLoadError,
    build_strategy,
    load_strategy,
    validate_params,
)
from strategies.imbalance import ImbalanceParams, ImbalanceStrategy

SYM = "X"
LOT = 0.0001
MS = 1_000_000  # ns
BASE = {"feature": "imb_5", "threshold": 0.3, "persistence_ms": 500, "full_persistence_ms": 3000,
        "max_position": 1.0, "position_step": 0.25}


def context() -> StrategyContext:
    return StrategyContext(clock=ReplayClock(), instruments={SYM: Instrument(SYM, 0.01, LOT)},
                           position=lambda s: 0)


def strategy(**overrides: object) -> ImbalanceStrategy:
    s = build_strategy("imbalance", {**BASE, **overrides}, context())
    assert isinstance(s, ImbalanceStrategy)
    return s


def sample(ts_ms: float, value: float, feature: str = "imb_5", live: bool = True) -> FeatureSample:
    values = np.full(len(NAMES), 0.0)
    values[NAMES.index(feature)] = value
    return FeatureSample(SYM, int(ts_ms * MS), values, live)


def feed(s: Strategy, *points: tuple[float, float]) -> list[TargetPosition]:
    """(ms, value) samples in order; every answer."""
    out = []
    for ts_ms, value in points:
        target = s.on_sample(sample(ts_ms, value))
        assert target is not None
        out.append(target)
    return out


# --- signal and persistence ----------------------------------------------------------------------


def test_goes_long_only_once_imbalance_has_persisted() -> None:
    s = strategy()

    early = feed(s, (0, 0.8), (250, 0.8), (499, 0.8))
    on_time = feed(s, (500, 0.8))[0]

    assert [t.target for t in early] == [0, 0, 0]
    assert on_time.target > 0
    assert on_time.reason == "long"


def test_goes_short_once_negative_imbalance_has_persisted() -> None:
    s = strategy()

    early = feed(s, (0, -0.8), (499, -0.8))
    on_time = feed(s, (500, -0.8))[0]

    assert [t.target for t in early] == [0, 0]
    assert on_time.target < 0
    assert on_time.reason == "short"


def test_short_target_mirrors_long_target() -> None:
    long_s, short_s = strategy(), strategy()

    longs = feed(long_s, (0, 0.7), (1200, 0.7))
    shorts = feed(short_s, (0, -0.7), (1200, -0.7))

    assert longs[-1].target == -shorts[-1].target > 0
    assert longs[-1].confidence == pytest.approx(shorts[-1].confidence)


def test_flat_while_imbalance_stays_inside_threshold() -> None:
    s = strategy()

    targets = feed(s, (0, 0.3), (1000, -0.3), (2000, 0.29), (5000, 0.0))

    assert all(t.target == 0 and t.confidence == 0.0 for t in targets)
    assert {t.reason for t in targets} == {"flat"}


def test_dip_inside_threshold_restarts_persistence() -> None:
    s = strategy()

    feed(s, (0, 0.8), (400, 0.1))
    after_dip = feed(s, (500, 0.8), (900, 0.8), (1000, 0.8))

    assert [t.target for t in after_dip] == [0, 0, 2500]


def test_flipping_side_restarts_persistence() -> None:
    s = strategy()

    feed(s, (0, 0.8), (600, 0.8))
    flipped = feed(s, (700, -0.8), (1100, -0.8), (1200, -0.8))

    assert [t.target for t in flipped] == [0, 0, -2500]


@pytest.mark.parametrize("bad", ["nan", "not_live"])
def test_flat_and_reset_on_nan_or_non_live_sample(bad: str) -> None:
    s = strategy()
    feed(s, (0, 0.8), (600, 0.8))
    bad_sample = sample(700, math.nan) if bad == "nan" else sample(700, 0.8, live=False)

    target = s.on_sample(bad_sample)
    resumed = feed(s, (800, 0.8), (1299, 0.8), (1300, 0.8))

    assert target is not None
    assert (target.target, target.confidence, target.reason) == (0, 0.0, "no_signal")
    assert [t.target for t in resumed] == [0, 0, 2500]


def test_zero_persistence_signals_on_first_sample() -> None:
    s = strategy(persistence_ms=0)

    first = feed(s, (0, 0.9))[0]

    assert first.target > 0


def test_reads_the_configured_feature() -> None:
    s = strategy(feature="imb_l1")

    on_other = [s.on_sample(sample(t, 0.9, feature="imb_5")) for t in (0, 1000)]
    on_own = [s.on_sample(sample(t, 0.9, feature="imb_l1")) for t in (2000, 3000)]

    assert [t.target for t in on_other if t] == [0, 0]
    assert on_own[-1] is not None and on_own[-1].target > 0


def test_symbols_keep_separate_runs() -> None:
    ctx = StrategyContext(clock=ReplayClock(),
                          instruments={"X": Instrument("X", 0.01, LOT), "Y": Instrument("Y", 0.01, LOT)},
                          position=lambda s: 0)
    s = build_strategy("imbalance", BASE, ctx)
    values = np.zeros(len(NAMES))
    values[NAMES.index("imb_5")] = 0.8

    s.on_sample(FeatureSample("X", 0, values, True))
    y_first = s.on_sample(FeatureSample("Y", 600 * MS, values, True))
    x_later = s.on_sample(FeatureSample("X", 600 * MS, values, True))

    assert y_first is not None and y_first.target == 0
    assert x_later is not None and x_later.target > 0


# --- confidence and sizing ---------------------------------------------------------------------


def test_confidence_grows_with_magnitude() -> None:
    weak, strong = strategy(), strategy()

    w = feed(weak, (0, 0.5), (1000, 0.5))[-1]
    s = feed(strong, (0, 0.9), (1000, 0.9))[-1]

    assert 0 < w.confidence < s.confidence


def test_confidence_grows_with_persistence() -> None:
    s = strategy()

    targets = feed(s, (0, 0.6), (500, 0.6), (1500, 0.6), (3000, 0.6), (6000, 0.6))

    confidences = [t.confidence for t in targets[1:]]
    assert confidences[0] < confidences[1] < confidences[2]
    assert confidences[3] == pytest.approx(confidences[2])  # full persistence reached at 3000 ms


def test_full_imbalance_held_past_full_persistence_targets_max_position() -> None:
    s = strategy()

    last = feed(s, (0, 1.0), (3000, 1.0))[-1]

    assert last.confidence == pytest.approx(1.0)
    assert last.target == 10_000  # 1.0 in lots of 0.0001


def test_target_is_rounded_down_to_position_step() -> None:
    s = strategy()

    # magnitude (0.8-0.3)/0.7 = 0.714, persistence 500/3000: confidence 0.440 -> 1 step of 0.25
    target = feed(s, (0, 0.8), (500, 0.8))[-1]

    assert target.confidence == pytest.approx(0.5 * 0.5 / 0.7 + 0.5 * 500 / 3000)
    assert target.target == 2500


@settings(max_examples=150, deadline=None)
@given(
    step_lots=st.integers(1, 5000),
    extra_lots=st.integers(0, 20_000),
    threshold=st.floats(0.05, 0.95),
    path=st.lists(st.tuples(st.integers(0, 2000), st.one_of(st.floats(-1, 1), st.just(math.nan))),
                  min_size=1, max_size=40),
)
def test_targets_are_whole_steps_and_never_exceed_max_position(
        step_lots: int, extra_lots: int, threshold: float, path: list[tuple[int, float]]) -> None:
    max_lots = step_lots + extra_lots
    s = strategy(position_step=round(step_lots * LOT, 4), max_position=round(max_lots * LOT, 4),
                 threshold=threshold, persistence_ms=200, full_persistence_ms=5000)
    t = 0

    for dt, value in path:
        t += dt
        target = s.on_sample(sample(t, value))

        assert target is not None
        assert target.target % step_lots == 0
        assert abs(target.target) <= max_lots
        assert 0.0 <= target.confidence <= 1.0


# --- params --------------------------------------------------------------------------------------


def test_params_defaults_are_valid() -> None:
    p = validate_params("imbalance", {})

    assert isinstance(p, ImbalanceParams)


def test_params_unknown_key_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="treshold"):
        validate_params("imbalance", {"treshold": 0.3})


def test_params_step_above_max_position_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="position_step exceeds max_position"):
        validate_params("imbalance", {"max_position": 1.0, "position_step": 2.0})


@pytest.mark.parametrize(("key", "value"), [("threshold", 0.0), ("threshold", 1.0), ("persistence_ms", -1),
                                            ("full_persistence_ms", 0), ("max_position", 0.0),
                                            ("position_step", -0.25)])
def test_params_out_of_range_is_a_validation_error(key: str, value: float) -> None:
    with pytest.raises(ValidationError, match=key):
        validate_params("imbalance", {key: value})


def test_params_unknown_feature_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="imb_7"):
        validate_params("imbalance", {"feature": "imb_7"})


# --- loader ----------------------------------------------------------------------------------------


def test_load_strategy_by_name() -> None:
    assert load_strategy("imbalance") is ImbalanceStrategy


def test_load_unknown_strategy_is_a_load_error() -> None:
    with pytest.raises(StrategyLoadError, match="no strategy named 'no_such_strategy'"):
        load_strategy("no_such_strategy")


@pytest.mark.parametrize("name", ["bad-name", "../imbalance", "", "1st"])
def test_load_invalid_strategy_name_is_a_load_error(name: str) -> None:
    with pytest.raises(StrategyLoadError, match="invalid strategy name"):
        load_strategy(name)


@pytest.mark.parametrize("exported", [None, int, ImbalanceParams])
def test_load_module_without_a_strategy_class_is_a_load_error(monkeypatch: pytest.MonkeyPatch,
                                                              exported: object) -> None:
    module = types.ModuleType("strategies.not_a_strategy")
    if exported is not None:
        module.STRATEGY = exported  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "strategies.not_a_strategy", module)

    with pytest.raises(StrategyLoadError, match="does not define STRATEGY"):
        load_strategy("not_a_strategy")


def test_build_strategy_validates_params_and_binds_context() -> None:
    ctx = context()

    s = build_strategy("imbalance", {"threshold": 0.4}, ctx)

    assert isinstance(s, ImbalanceStrategy)
    assert s.ctx is ctx
    assert isinstance(s.params, ImbalanceParams)
    assert s.params.threshold == 0.4


def test_build_strategy_refuses_bad_params() -> None:
    with pytest.raises(ValidationError):
        build_strategy("imbalance", {"threshold": 2}, context())
