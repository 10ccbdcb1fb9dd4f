"""Reference histograms of the training features, stored in the model for drift checks.

Format (see daemon.model.metadata.Histogram): per feature, `edges` are the sorted, distinct interior
cut points (at most B-1 = 9, at quantiles of the finite training values, near-equal ones merged; a
constant feature gets a single edge, a feature with no finite value none). Value v falls in bin
`searchsorted(edges, v, side="right")` (0..len(edges)), NaN in the last bin len(edges)+1, so there
are len(edges)+2 fractions. +/-inf count as values (first / last value bin).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from daemon.model.metadata import Histogram

BINS = 10
# Edges closer than this fraction of the 1%-99% range are merged: a feature that sits in a tight
# cluster (spread_bps of a one-tick spread moves with the price level by a few 1e-3 bps) would
# otherwise get deciles splitting the cluster by price level, and any price move would read as drift.
MIN_GAP = 0.01


def quantile_edges(values: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Interior edges at the 1/B..(B-1)/B quantiles of the finite values, deduplicated and with edges
    closer than MIN_GAP of the 1%-99% range merged (float64)."""
    finite = values[np.isfinite(values)].astype(np.float64)
    if len(finite) == 0:
        return np.empty(0)
    edges = np.unique(np.quantile(finite, np.arange(1, bins) / bins))
    lo, hi = np.quantile(finite, [0.01, 0.99])
    gap = MIN_GAP * (hi - lo)
    if gap <= 0 or len(edges) < 2:
        return edges
    kept = [edges[0]]
    for e in edges[1:]:
        if e - kept[-1] >= gap:
            kept.append(e)
    return np.array(kept)


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The bin of each value: searchsorted(edges, v, side="right"), NaN -> len(edges) + 1."""
    idx = np.searchsorted(edges, values, side="right")
    idx[np.isnan(values)] = len(edges) + 1
    return idx


def bin_counts(x: np.ndarray, edges: Sequence[np.ndarray | Sequence[float]]) -> list[np.ndarray]:
    """Count the rows of a 2-D array (rows, features) per bin, with column j binned by edges[j].

    Returns one int64 array per column of length len(edges[j]) + 2 (value bins, then NaN), in the
    layout of metadata.Histogram. The drift monitor can sum these over batches and divide by the
    row count to compare with a model's reference `fractions`.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(edges):
        raise ValueError(f"want a (rows, {len(edges)}) array, got shape {x.shape}")
    out = []
    for j, e in enumerate(edges):
        e = np.asarray(e, dtype=np.float64)
        out.append(np.bincount(bin_index(x[:, j], e), minlength=len(e) + 2).astype(np.int64))
    return out


def histogram(values: np.ndarray, bins: int = BINS) -> Histogram:
    """The reference Histogram of one feature's training values."""
    values = np.asarray(values, dtype=np.float64)
    edges = quantile_edges(values, bins)
    counts = bin_counts(values[:, None], [edges])[0]
    fractions = counts / max(len(values), 1) if len(values) else np.r_[np.zeros(len(edges) + 1), 1.0]
    return Histogram(tuple(float(e) for e in edges), tuple(float(f) for f in fractions))


def reference_histograms(x: np.ndarray, names: Sequence[str], bins: int = BINS) -> dict[str, Histogram]:
    """A Histogram per feature (column j of x is feature names[j]), over the final training rows."""
    if x.shape[1] != len(names):
        raise ValueError(f"{len(names)} names for {x.shape[1]} columns")
    return {name: histogram(x[:, j], bins) for j, name in enumerate(names)}
