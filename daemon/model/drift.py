"""Feature drift: live feature distributions against the model's training histograms, as PSI.

The model's metadata carries a reference histogram per feature (interior `edges`, `fractions` per
bin with NaN last; a value v falls in bin `searchsorted(edges, v, side="right")`, NaN in the last
bin). A DriftMonitor keeps the bin index of each of those features for the last `window` samples of
one stream in a ring buffer and per-bin counts that are updated incrementally (the new sample added,
the evicted one subtracted), in one compiled kernel per sample. `psi()` compares the window's
fractions with the reference:

    PSI = sum over bins of (a - e) * ln((a + eps) / (e + eps))

a common reading being < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 a distribution the model was
not trained on. A change in how often a feature is NaN counts like any other bin.

Feed it the samples the model scores (not those taken while the book is not LIVE, whose book
features are all NaN by definition); keep one monitor per symbol.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numba import njit

from daemon.errors import ModelError
from daemon.features import schema
from daemon.model.metadata import ModelMeta

EPS = 1e-4


@njit(cache=True, nogil=True)
def _update_rows(rows: np.ndarray, src: np.ndarray, edges: np.ndarray, edge_off: np.ndarray, bin_off: np.ndarray,
                 ring: np.ndarray, counts: np.ndarray, state: np.ndarray) -> None:  # pragma: no cover - numba
    """Bin each row's monitored features into the ring buffer, evicting the oldest sample once full."""
    window = ring.shape[0]
    n_feat = src.shape[0]
    pos = state[0]
    filled = state[1]
    for r in range(rows.shape[0]):
        if filled == window:
            for f in range(n_feat):
                counts[ring[pos, f]] -= 1
        else:
            filled += 1
        for f in range(n_feat):
            v = rows[r, src[f]]
            lo = edge_off[f]
            n = edge_off[f + 1] - lo
            if v != v:
                b = n + 1  # the NaN bin, after the n + 1 value bins
            elif n == 0:
                b = 0
            else:
                # searchsorted(side="right"), the number of edges <= v, without data-dependent branches:
                # the loop runs log2(n) times whatever v is, and the select compiles to a conditional move.
                base = lo
                while n > 1:
                    half = n >> 1
                    base = base + half if edges[base + half] <= v else base
                    n -= half
                b = base - lo + (1 if edges[base] <= v else 0)
            b += bin_off[f]
            ring[pos, f] = b
            counts[b] += 1
        pos += 1
        if pos == window:
            pos = 0
    state[0] = pos
    state[1] = filled


class DriftMonitor:
    """Rolling per-feature PSI of one stream of samples against the model's reference histograms."""

    def __init__(self, meta: ModelMeta, names: Sequence[str] = schema.NAMES, window: int = 3000,
                 min_samples: int = 300) -> None:
        """Prepare flat arrays for the features the model has histograms for; a ModelError if one is unknown."""
        if window < 1:
            raise ValueError(f"drift window must be >= 1 sample (got {window})")
        if not 1 <= min_samples <= window:
            raise ValueError(f"drift min_samples must be in 1..window ({window}) (got {min_samples})")
        index = {n: i for i, n in enumerate(names)}
        feats = tuple(n for n in meta.feature_names if n in meta.histograms)
        unknown = [n for n in feats if n not in index]
        if unknown:
            raise ModelError(f"drift: histograms for features the calculator does not compute: {', '.join(unknown)}")
        self.features = feats
        self.window = window
        self.min_samples = min_samples
        self._width = len(names)
        hists = [meta.histograms[n] for n in feats]
        self._src = np.array([index[n] for n in feats], dtype=np.int64)
        self._edges = np.array([e for h in hists for e in h.edges], dtype=np.float64)
        self._edge_off = np.cumsum([0] + [len(h.edges) for h in hists], dtype=np.int64)
        self._bin_off = np.cumsum([0] + [len(h.fractions) for h in hists], dtype=np.int64)
        self._expected = np.array([x for h in hists for x in h.fractions], dtype=np.float64)
        self._ring = np.zeros((window, len(feats)), dtype=np.int32)
        self._counts = np.zeros(int(self._bin_off[-1]), dtype=np.int64)
        self._state = np.zeros(2, dtype=np.int64)  # [next ring slot, samples in the window]

    @property
    def samples(self) -> int:
        """Samples currently in the window (at most `window`)."""
        return int(self._state[1])

    def update(self, values: np.ndarray) -> None:
        """Add one sample's full feature vector (schema order), evicting the oldest once the window is full."""
        if values.shape[0] != self._width:
            raise ValueError(f"drift: a sample has {values.shape[0]} values, the schema {self._width}")
        _update_rows(values.reshape(1, -1), self._src, self._edges, self._edge_off, self._bin_off, self._ring,
                     self._counts, self._state)

    def update_many(self, rows: np.ndarray) -> None:
        """Add many samples (rows of full vectors, oldest first) in one call: replays, tests, warm starts."""
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self._width:
            raise ValueError(f"drift: rows of shape {rows.shape}; want (n, {self._width})")
        _update_rows(rows, self._src, self._edges, self._edge_off, self._bin_off, self._ring, self._counts,
                     self._state)

    def reset(self) -> None:
        """Forget every sample (a new model, or a stream that restarts)."""
        self._counts[:] = 0
        self._state[:] = 0

    def psi_array(self) -> np.ndarray:
        """PSI per monitored feature in `features` order; all NaN until `min_samples` samples are in."""
        n = int(self._state[1])
        if n < self.min_samples or not self.features:
            return np.full(len(self.features), np.nan)
        actual = self._counts / n
        e = self._expected
        terms = (actual - e) * np.log((actual + EPS) / (e + EPS))
        return np.add.reduceat(terms, self._bin_off[:-1])

    def psi(self) -> dict[str, float]:
        """Feature name -> PSI of the window against the reference; NaN until `min_samples` samples are in."""
        return dict(zip(self.features, self.psi_array().tolist(), strict=True))

    def max_psi(self) -> tuple[str, float]:
        """The most drifted feature and its PSI; ("", nan) before `min_samples` or without histograms."""
        values = self.psi_array()
        if values.size == 0 or np.isnan(values).all():
            return "", math.nan
        i = int(np.nanargmax(values))
        return self.features[i], float(values[i])
