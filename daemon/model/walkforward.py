"""Time-ordered walk-forward splits and the out-of-sample metrics of each fold.

The rows (ordered by ts, never shuffled) are cut into K+1 consecutive blocks of about equal row
count; rows sharing a timestamp always fall in the same block. Fold k (0..K-1) trains on blocks
0..k (an expanding window) and tests on block k+1. Training rows whose label window reaches into
the test block (ts + horizon >= first test ts) are purged, so train and test are separated by at
least the horizon. The final model trains on every block but the last (purged the same way) and
the last block is the hold-out: that is exactly the training and test set of the last fold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from daemon.errors import ConfigError, ModelError

MIN_TRAIN_ROWS = 200


@dataclass(frozen=True)
class Fold:
    """One split: row positions (into the ts array given to walk_forward) to train and to test on."""

    index: int
    train: np.ndarray
    test: np.ndarray
    test_start_ns: int


@dataclass(frozen=True)
class Plan:
    """Every fold of a walk-forward; the last fold is also the final model's training and hold-out set."""

    folds: tuple[Fold, ...]
    purge_ns: int

    @property
    def final(self) -> Fold:
        """The final model's split: train on all blocks but the last (purged), hold out the last block."""
        return self.folds[-1]


def walk_forward(ts: np.ndarray, horizon_ns: int, folds: int = 5, min_train_rows: int = MIN_TRAIN_ROWS) -> Plan:
    """Expanding-window folds over the rows ordered by ts, purged by the horizon; ModelError if too small."""
    if folds < 1:
        raise ConfigError(f"--folds must be >= 1 (got {folds})")
    ts = np.asarray(ts, dtype=np.int64)
    order = np.argsort(ts, kind="stable")
    sorted_ts = ts[order]
    n = len(ts)
    if n == 0:
        raise ModelError("no rows with a defined label to train on")
    edges = sorted_ts[[min(n - 1, round(b * n / (folds + 1))) for b in range(1, folds + 1)]]
    if len(np.unique(edges)) != folds or edges[0] == sorted_ts[0]:
        raise ModelError(f"{n} rows span too few distinct timestamps for {folds} walk-forward folds")
    block = np.searchsorted(edges, sorted_ts, side="right")  # 0..folds, per sorted row
    out = []
    for k in range(folds):
        start = int(edges[k])
        train = order[(block <= k) & (sorted_ts + horizon_ns < start)]
        test = order[block == k + 1]
        if len(train) < min_train_rows:
            raise ModelError(f"fold {k} has only {len(train)} training rows after the purge (need >= "
                             f"{min_train_rows}); give more data, fewer --folds or a shorter horizon")
        out.append(Fold(k, train, test, start))
    return Plan(tuple(out), int(horizon_ns))


def rank(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), as Spearman's correlation wants."""
    order = np.argsort(values, kind="stable")
    sorted_v = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_v[1:] != sorted_v[:-1]])
    ends = np.r_[starts[1:], len(values)]
    avg = (starts + ends - 1) / 2.0
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation; NaN when either side is constant or there are < 3 rows."""
    if len(a) < 3:
        return math.nan
    ra, rb = rank(a), rank(b)
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def evaluate(pred: np.ndarray, target: np.ndarray, ret_bps: np.ndarray, task: str) -> dict[str, float]:
    """Out-of-sample metrics: rows, IC vs realised bps return, hit rate, RMSE or log-loss + accuracy."""
    signal = pred - 0.5 if task == "binary" else pred
    moved = ret_bps != 0
    out: dict[str, float] = {
        "rows": len(pred),
        "ic": spearman(pred, ret_bps),
        "hit_rate": float(np.mean(np.sign(signal[moved]) == np.sign(ret_bps[moved]))) if moved.any() else math.nan,
    }
    if task == "binary":
        p = np.clip(pred, 1e-12, 1 - 1e-12)
        out["logloss"] = float(-np.mean(target * np.log(p) + (1 - target) * np.log(1 - p)))
        out["accuracy"] = float(np.mean((pred > 0.5) == (target > 0.5)))
    else:
        out["rmse"] = float(np.sqrt(np.mean((pred - target) ** 2)))
    return out


def mean_metrics(folds: Sequence[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over the folds (a fold where a metric is NaN is left out of its mean)."""
    out: dict[str, float] = {}
    for key in folds[0]:
        vals = np.array([f[key] for f in folds], dtype=np.float64)
        finite = vals[np.isfinite(vals)]
        out[key] = float(finite.mean()) if len(finite) else math.nan
    return out
