"""Training labels: what a model predicts, computed from the future mid of the same symbol.

A label is `<kind>@<horizon>`: `mid_ret_bps@1s` is the forward mid return in basis points,
(mid(t+H) - mid(t)) / mid(t) * 1e4 (regression); `mid_up@1s` is 1 if mid(t+H) > mid(t) else 0
(binary; the model scores the probability of an up move). The horizon is `<number><unit>` with
unit `ms`, `s` or `m`, a whole number of milliseconds.

The rows of a FeatureTable are sampled on a fixed cadence, so mid(t+H) is the `mid` of the row of
the same symbol whose ts is exactly t + H; H must be a multiple of the sample interval. A row whose
forward row is missing (sampling pauses after a feed gap) or whose mid is NaN at t or at t+H gets a
NaN label and is dropped by training. Labels look only forward; features only look back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from daemon.errors import ConfigError, ModelError
from daemon.features.table import FeatureTable

KINDS = {"mid_ret_bps": "regression", "mid_up": "binary"}
INTERVAL_KEY = "depthd.sample_interval_ms"
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000}
_HORIZON = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)$")
FORMS = "mid_ret_bps@<H> (forward mid return in bps) or mid_up@<H> (1 if the mid rises), " \
        "H = <number>ms|s|m, e.g. mid_ret_bps@1s, mid_up@500ms, mid_ret_bps@1m"


@dataclass(frozen=True)
class Label:
    """A parsed label definition: its text, kind and horizon."""

    name: str
    kind: str
    horizon_ms: int

    @property
    def task(self) -> str:
        """`regression` or `binary` (the ModelMeta task)."""
        return KINDS[self.kind]

    @property
    def horizon_ns(self) -> int:
        """The horizon in ns, the unit of FeatureTable.ts."""
        return self.horizon_ms * 1_000_000


def parse_horizon(text: str) -> int:
    """`500ms` / `1s` / `1.5s` / `1m` -> milliseconds; a ConfigError says what is accepted."""
    m = _HORIZON.match(text.strip())
    if m is None:
        raise ConfigError(f"bad horizon {text!r}: want <number>ms|s|m, e.g. 500ms, 1s, 10s, 1m")
    value = float(m.group(1)) * _UNIT_MS[m.group(2)]
    if value != int(value) or value <= 0:
        raise ConfigError(f"bad horizon {text!r}: must be a positive whole number of milliseconds")
    return int(value)


def parse_label(text: str) -> Label:
    """Parse `mid_ret_bps@1s` / `mid_up@500ms`; a ConfigError lists the accepted forms."""
    kind, sep, horizon = text.strip().partition("@")
    if not sep or kind not in KINDS:
        raise ConfigError(f"bad label {text!r}: want {FORMS}")
    try:
        horizon_ms = parse_horizon(horizon)
    except ConfigError as exc:
        raise ConfigError(f"bad label {text!r}: {exc}; want {FORMS}") from None
    return Label(text.strip(), kind, horizon_ms)


def sample_interval_ms(table: FeatureTable) -> int:
    """The sampling cadence the table was recorded with (its `depthd.sample_interval_ms` metadata)."""
    raw = table.meta.get(INTERVAL_KEY)
    try:
        value = int(raw) if raw is not None else 0
    except ValueError:
        value = 0
    if value <= 0:
        raise ModelError(f"feature table has no valid {INTERVAL_KEY} metadata ({raw!r}); "
                         "write it with `depthd features` or set table.meta")
    return value


def forward_mid(table: FeatureTable, horizon_ms: int) -> np.ndarray:
    """mid(t+H) for every row: the mid of the same symbol's row at exactly ts + H, else NaN."""
    interval = sample_interval_ms(table)
    if horizon_ms % interval:
        raise ConfigError(f"label horizon {horizon_ms} ms is not a multiple of the sample interval "
                          f"{interval} ms of the feature table")
    if "mid" not in table.names:
        raise ModelError("feature table has no 'mid' column; labels need the mid price")
    mid = table.column("mid")
    out = np.full(len(table), np.nan)
    step = np.int64(horizon_ms) * 1_000_000
    for sym in np.unique(table.symbol):
        rows = np.flatnonzero(table.symbol == sym)
        rows = rows[np.argsort(table.ts[rows], kind="stable")]
        ts = table.ts[rows]
        j = np.searchsorted(ts, ts + step)
        jc = np.minimum(j, len(ts) - 1)
        hit = (j < len(ts)) & (ts[jc] == ts + step)
        out[rows[hit]] = mid[rows[jc[hit]]]
    return out


def forward_return_bps(table: FeatureTable, horizon_ms: int) -> np.ndarray:
    """(mid(t+H) - mid(t)) / mid(t) * 1e4 per row; NaN where either mid is missing."""
    fwd = forward_mid(table, horizon_ms)
    mid = table.column("mid")
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = (fwd - mid) / mid * 1e4
    ret[~np.isfinite(ret)] = np.nan
    return ret


def label_values(table: FeatureTable, label: Label) -> tuple[np.ndarray, np.ndarray]:
    """(target, realised forward return in bps) per row; both NaN where the label is undefined."""
    ret = forward_return_bps(table, label.horizon_ms)
    if label.kind == "mid_ret_bps":
        return ret.copy(), ret
    target = np.where(np.isnan(ret), np.nan, (ret > 0).astype(np.float64))
    return target, ret
