"""The model-signal strategy: entry/exit hysteresis on the score, NaN holds, no model no config."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from daemon.clock import ReplayClock
from daemon.features import NAMES, FeatureSample
from daemon.instruments import Instrument
from strategies import StrategyContext, build_strategy

INST = {"X": Instrument("X", tick_size=0.01, lot_size=0.001)}


def strategy(**params):
    ctx = StrategyContext(ReplayClock(), INST, lambda s: 0)
    return build_strategy("onnx_signal", {"entry": 1.0, "exit": 0.2, "max_position": 2.0, **params}, ctx)


def sample(score: float, ts: int = 0) -> FeatureSample:
    return FeatureSample("X", ts, np.zeros(len(NAMES)), True, score)


def targets(strat, scores):
    out = []
    for i, s in enumerate(scores):
        t = strat.on_sample(sample(s, i))
        out.append(None if t is None else t.target)
    return out


def test_enters_beyond_entry_and_holds_until_exit() -> None:
    s = strategy()
    assert targets(s, [0.5, 1.5, 0.8, 0.3, 0.1, 0.5]) == [0, 2000, 2000, 2000, 0, 0]


def test_short_side_is_symmetric_and_can_be_disabled() -> None:
    assert targets(strategy(), [-1.5, -0.5, -0.1]) == [-2000, -2000, 0]
    assert targets(strategy(allow_short=False), [-1.5, -3.0]) == [0, 0]


def test_a_strong_opposite_score_flips_the_position() -> None:
    assert targets(strategy(), [1.5, -1.5]) == [2000, -2000]


def test_center_shifts_the_neutral_score_for_probability_models() -> None:
    assert targets(strategy(center=0.5, entry=0.1, exit=0.02), [0.55, 0.65, 0.51]) == [0, 2000, 0]


def test_a_nan_score_holds_the_current_target_and_creates_nothing() -> None:
    s = strategy()
    assert targets(s, [1.5, math.nan, 0.8]) == [2000, None, 2000]


def test_exit_must_be_below_entry() -> None:
    with pytest.raises(ValidationError, match="exit"):
        strategy(entry=1.0, exit=1.0)
