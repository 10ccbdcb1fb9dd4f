"""DriftMonitor: PSI near 0 on the reference distribution, large on a shift, rolling, NaN-aware."""

from __future__ import annotations

import math

import numpy as np
import pytest

from daemon.errors import ModelError
from daemon.features import schema
from daemon.model.drift import EPS, DriftMonitor
from daemon.model.metadata import Histogram, ModelMeta
from tests.model.conftest import FEATURES, make_meta, reference_histogram

# Monitored features (those with a histogram): the rest of FEATURES has none.
MONITORED = ("imb_l1", "spread_bps", "mid", "vol_10s")
NAN_FRACTION = 0.05  # of vol_10s, in the reference and in "live" data drawn from it


def draw(rng: np.random.Generator, n: int, shift: dict[str, float] | None = None,
         nan: dict[str, float] | None = None) -> np.ndarray:
    """n full schema vectors: N(0, 1) (+ shift) in the monitored features, NaN at the given rates."""
    rows = rng.normal(size=(n, len(schema.NAMES)))
    rows[:, schema.index_of("vol_10s")][rng.random(n) < NAN_FRACTION] = np.nan
    for name, d in (shift or {}).items():
        rows[:, schema.index_of(name)] += d
    for name, p in (nan or {}).items():
        col = rows[:, schema.index_of(name)]
        col[rng.random(n) < p] = np.nan
    return rows


@pytest.fixture(scope="module")
def meta() -> ModelMeta:
    ref = draw(np.random.default_rng(42), 50_000)
    return make_meta(histograms={n: reference_histogram(ref[:, schema.index_of(n)]) for n in MONITORED})


def reference_psi(rows: np.ndarray, hist: Histogram) -> float:
    """PSI of one column the slow, obvious way (the metadata binning rule, NaN bin last)."""
    edges = np.asarray(hist.edges)
    bins = np.where(np.isnan(rows), len(edges) + 1, np.searchsorted(edges, rows, side="right"))
    a = np.bincount(bins, minlength=len(hist.fractions)) / len(rows)
    e = np.asarray(hist.fractions)
    return float(np.sum((a - e) * np.log((a + EPS) / (e + EPS))))


def test_only_features_with_histograms_are_monitored(meta: ModelMeta) -> None:
    mon = DriftMonitor(meta)
    assert mon.features == tuple(n for n in FEATURES if n in MONITORED)
    assert set(mon.psi()) == set(MONITORED)


def test_reference_distribution_gives_small_psi(meta: ModelMeta) -> None:
    mon = DriftMonitor(meta)
    rng = np.random.default_rng(1)
    for row in draw(rng, 3000):
        mon.update(row)
    psi = mon.psi()
    assert all(v < 0.05 for v in psi.values()), psi
    assert mon.samples == 3000


def test_one_std_shift_gives_large_psi(meta: ModelMeta) -> None:
    mon = DriftMonitor(meta)
    mon.update_many(draw(np.random.default_rng(2), 3000, shift={"spread_bps": 1.0}))
    psi = mon.psi()
    assert psi["spread_bps"] > 0.25
    assert all(v < 0.05 for k, v in psi.items() if k != "spread_bps"), psi
    name, worst = mon.max_psi()
    assert name == "spread_bps" and worst == psi["spread_bps"]


def test_nan_fraction_drift_counts(meta: ModelMeta) -> None:
    mon = DriftMonitor(meta)
    mon.update_many(draw(np.random.default_rng(3), 3000, nan={"imb_l1": 0.3}))
    assert mon.max_psi()[0] == "imb_l1"
    assert mon.psi()["imb_l1"] > 0.25


def test_rolling_window_forgets(meta: ModelMeta) -> None:
    rng = np.random.default_rng(4)
    mon = DriftMonitor(meta, window=1000, min_samples=300)
    mon.update_many(draw(rng, 1000, shift={"mid": 2.0}))
    assert mon.psi()["mid"] > 1.0
    mon.update_many(draw(rng, 500))
    half = mon.psi()["mid"]
    assert 0.05 < half < 1.0
    for row in draw(rng, 500):
        mon.update(row)
    assert mon.samples == 1000
    assert mon.psi()["mid"] < 0.05


def test_psi_equals_a_direct_computation_on_the_window(meta: ModelMeta) -> None:
    rng = np.random.default_rng(5)
    rows = draw(rng, 1700, shift={"imb_l1": 0.3}, nan={"mid": 0.1})
    # Values exactly on edges, infinities: the binning rule decides.
    edges = meta.histograms["spread_bps"].edges
    rows[:len(edges), schema.index_of("spread_bps")] = edges
    rows[100, schema.index_of("spread_bps")] = np.inf
    rows[101, schema.index_of("spread_bps")] = -np.inf
    mon = DriftMonitor(meta, window=1000, min_samples=10)
    for row in rows[:900]:
        mon.update(row)
    mon.update_many(rows[900:])
    window = rows[-1000:]
    for name, got in mon.psi().items():
        assert got == pytest.approx(reference_psi(window[:, schema.index_of(name)], meta.histograms[name]),
                                    rel=1e-9, abs=1e-12)


def test_nan_until_min_samples(meta: ModelMeta) -> None:
    mon = DriftMonitor(meta, window=500, min_samples=300)
    rows = draw(np.random.default_rng(6), 300)
    mon.update_many(rows[:299])
    assert all(math.isnan(v) for v in mon.psi().values())
    name, worst = mon.max_psi()
    assert name == "" and math.isnan(worst)
    mon.update(rows[299])
    assert all(math.isfinite(v) for v in mon.psi().values())
    mon.reset()
    assert mon.samples == 0 and all(math.isnan(v) for v in mon.psi().values())


def test_model_without_histograms_monitors_nothing() -> None:
    mon = DriftMonitor(make_meta(), min_samples=1)
    mon.update(np.zeros(len(schema.NAMES)))
    assert mon.psi() == {}
    assert mon.max_psi()[0] == ""


def test_bad_arguments_refused(meta: ModelMeta) -> None:
    with pytest.raises(ModelError, match="does not compute: spread_bps"):
        DriftMonitor(meta, names=[n for n in schema.NAMES if n != "spread_bps"])
    with pytest.raises(ValueError, match="min_samples"):
        DriftMonitor(meta, window=100, min_samples=200)
    with pytest.raises(ValueError, match="window"):
        DriftMonitor(meta, window=0)
    mon = DriftMonitor(meta)
    with pytest.raises(ValueError, match="values"):
        mon.update(np.zeros(5))
    with pytest.raises(ValueError, match="shape"):
        mon.update_many(np.zeros((2, 5)))


def test_histograms_with_few_edges_bin_by_the_rule() -> None:
    hists = {"imb_l1": Histogram((), (0.9, 0.1)), "spread_bps": Histogram((0.0,), (0.5, 0.4, 0.1)),
             "mid": Histogram((-1.0, 1.0), (0.2, 0.5, 0.2, 0.1)),
             "vol_10s": Histogram((-1.0, -0.5, 0.0, 2.0), (0.1, 0.1, 0.3, 0.3, 0.1, 0.1))}
    meta = make_meta(histograms=hists)
    rows = draw(np.random.default_rng(7), 400, nan={"imb_l1": 0.2, "spread_bps": 0.1, "mid": 0.3})
    for name, h in hists.items():
        rows[:len(h.edges), schema.index_of(name)] = h.edges  # on an edge: the bin to its right
    mon = DriftMonitor(meta, window=400, min_samples=400)
    mon.update_many(rows)
    for name, got in mon.psi().items():
        assert got == pytest.approx(reference_psi(rows[:, schema.index_of(name)], hists[name]), rel=1e-9, abs=1e-12)
