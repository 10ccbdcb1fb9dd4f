"""Walk-forward splits: time-ordered, expanding, purged by the horizon; out-of-sample metrics."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from daemon.errors import ConfigError, ModelError
from daemon.model.walkforward import evaluate, mean_metrics, spearman, walk_forward

STEP = 100_000_000  # 100 ms in ns
H = 10 * STEP  # 1 s


def shuffled_ts(n: int = 3000, symbols: int = 2, seed: int = 0) -> np.ndarray:
    """Timestamps of `symbols` symbols sampled every 100 ms, in a scrambled row order."""
    ts = np.repeat(np.arange(n // symbols, dtype=np.int64) * STEP, symbols)
    return np.random.default_rng(seed).permutation(ts)


def test_train_always_precedes_test_with_a_gap_of_at_least_the_horizon() -> None:
    ts = shuffled_ts()

    plan = walk_forward(ts, H, folds=5)

    assert len(plan.folds) == 5
    for fold in plan.folds:
        assert ts[fold.train].max() + H < ts[fold.test].min()
        assert ts[fold.test].min() == fold.test_start_ns
        assert not set(fold.train) & set(fold.test)


def test_windows_expand_and_test_blocks_follow_each_other() -> None:
    ts = shuffled_ts()

    folds = walk_forward(ts, H, folds=4).folds

    for prev, cur in itertools.pairwise(folds):
        assert set(prev.train) < set(cur.train)  # expanding
        assert ts[prev.test].max() < ts[cur.test].min()  # consecutive, in time order
        left_out = np.array(sorted(set(prev.test) - set(cur.train)), dtype=np.int64)
        assert (ts[left_out] + H >= cur.test_start_ns).all()  # only the purged tail of the previous test block
    # together the test blocks cover everything after block 0, without overlap
    tested = np.concatenate([f.test for f in folds])
    assert len(tested) == len(set(tested))
    assert ts[tested].min() == folds[0].test_start_ns


def test_purge_drops_exactly_the_rows_whose_label_reaches_the_test_block() -> None:
    ts = shuffled_ts(n=1200, symbols=1)

    plan = walk_forward(ts, H, folds=2)

    fold = plan.folds[0]
    before = np.flatnonzero(ts < fold.test_start_ns)
    purged = set(before) - set(fold.train)
    assert purged == set(np.flatnonzero((ts < fold.test_start_ns) & (ts + H >= fold.test_start_ns)))
    assert len(purged) == 10  # 1 s of 100 ms rows


def test_rows_sharing_a_timestamp_stay_in_one_block() -> None:
    ts = shuffled_ts(n=3000, symbols=3)

    for fold in walk_forward(ts, H, folds=5).folds:
        assert not set(ts[fold.test]) & set(ts[fold.train])
        assert np.isin(np.flatnonzero(ts == fold.test_start_ns), fold.test).all()


def test_final_split_holds_out_the_last_block() -> None:
    ts = shuffled_ts()

    plan = walk_forward(ts, H, folds=5)

    assert ts[plan.final.test].max() == ts.max()
    assert len(plan.final.train) + len(plan.final.test) + 20 == len(ts)  # 10 purged rows per symbol


def test_too_few_training_rows_is_refused() -> None:
    with pytest.raises(ModelError, match=r"fold 0 has only .* training rows"):
        walk_forward(shuffled_ts(n=600), H, folds=5)


def test_too_few_timestamps_and_bad_fold_counts_are_refused() -> None:
    with pytest.raises(ModelError, match="too few distinct timestamps"):
        walk_forward(np.zeros(1000, np.int64), H, folds=5, min_train_rows=1)
    with pytest.raises(ConfigError, match="--folds"):
        walk_forward(shuffled_ts(), H, folds=0)


def test_spearman_matches_scipy_including_ties() -> None:
    rng = np.random.default_rng(3)
    a, b = np.round(rng.normal(size=500), 1), rng.normal(size=500)

    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    assert math.isnan(spearman(np.ones(10), b[:10]))


def test_evaluate_regression_and_binary() -> None:
    ret = np.array([1.0, -2.0, 0.0, 3.0])

    reg = evaluate(np.array([0.5, 1.0, 0.2, 2.0]), ret, ret, "regression")
    binary = evaluate(np.array([0.9, 0.2, 0.6, 0.4]), (ret > 0).astype(float), ret, "binary")

    assert reg["rows"] == 4 and reg["hit_rate"] == pytest.approx(2 / 3)  # the zero return is not counted
    assert reg["rmse"] == pytest.approx(np.sqrt(np.mean([0.25, 9.0, 0.04, 1.0])))
    assert binary["hit_rate"] == pytest.approx(2 / 3) and binary["accuracy"] == pytest.approx(0.5)
    assert binary["logloss"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4, 0.4])))


def test_mean_metrics_skips_nan_folds() -> None:
    out = mean_metrics([{"rows": 10, "ic": 0.2}, {"rows": 20, "ic": math.nan}, {"rows": 30, "ic": 0.4}])

    assert out == {"rows": 20.0, "ic": pytest.approx(0.3)}
