"""Labels: forward mid returns from the row of the same symbol exactly one horizon later."""

from __future__ import annotations

import math

import numpy as np
import pytest

from daemon.errors import ConfigError, ModelError
from daemon.features import schema
from daemon.features.table import FeatureTable
from daemon.model.labels import forward_mid, label_values, parse_horizon, parse_label

MS = 1_000_000


def table(rows: list[tuple[int, str, float]], interval_ms: int | None = 100) -> FeatureTable:
    """A table from (ts in ms, symbol, mid) rows; every other feature is 0."""
    values = np.zeros((len(rows), len(schema.NAMES)))
    values[:, schema.INDEX["mid"]] = [r[2] for r in rows]
    meta = {} if interval_ms is None else {"depthd.sample_interval_ms": str(interval_ms)}
    return FeatureTable(schema.NAMES, schema.SCHEMA_VERSION, np.array([r[0] * MS for r in rows], dtype=np.int64),
                        np.array([r[1] for r in rows], dtype=object), np.ones(len(rows), bool), values, meta)


def test_forward_return_in_bps_is_hand_computed() -> None:
    t = table([(0, "A", 100.0), (100, "A", 101.0), (200, "A", 100.0), (300, "A", 100.5)])

    target, ret = label_values(t, parse_label("mid_ret_bps@200ms"))

    np.testing.assert_allclose(ret[:2], [0.0, (100.5 - 101.0) / 101.0 * 1e4])
    assert np.isnan(ret[2:]).all()  # no row 200 ms later
    np.testing.assert_array_equal(target[:2], ret[:2])


def test_binary_label_is_one_only_when_the_mid_rises() -> None:
    t = table([(0, "A", 100.0), (100, "A", 101.0), (200, "A", 101.0), (300, "A", 99.0), (400, "A", 99.5)])

    target, ret = label_values(t, parse_label("mid_up@100ms"))

    np.testing.assert_array_equal(target[:4], [1.0, 0.0, 0.0, 1.0])
    assert math.isnan(target[4])
    assert ret[0] > 0 and ret[1] == 0


def test_each_symbol_looks_up_its_own_future_rows_whatever_the_row_order() -> None:
    t = table([(0, "A", 10.0), (0, "B", 20.0), (100, "B", 22.0), (100, "A", 11.0)])

    fwd = forward_mid(t, 100)

    np.testing.assert_array_equal(fwd[:2], [11.0, 22.0])
    assert np.isnan(fwd[2:]).all()


def test_missing_forward_row_after_a_feed_gap_gives_nan() -> None:
    # sampling paused between 100 and 500 ms
    t = table([(0, "A", 1.0), (100, "A", 2.0), (500, "A", 3.0), (600, "A", 4.0), (700, "A", 5.0)])

    fwd = forward_mid(t, 200)

    assert np.isnan(fwd[[0, 1, 3, 4]]).all()  # 200, 300, 800, 900 ms were never sampled
    assert fwd[2] == 5.0


def test_nan_mid_at_either_end_gives_nan_label() -> None:
    t = table([(0, "A", np.nan), (100, "A", 100.0), (200, "A", np.nan), (300, "A", 100.0), (400, "A", 101.0)])

    target, _ = label_values(t, parse_label("mid_ret_bps@100ms"))

    assert np.isnan(target[:3]).all()  # NaN at t, NaN at t+H, NaN at t
    assert target[3] == pytest.approx(100.0)


def test_horizon_must_be_a_multiple_of_the_sample_interval() -> None:
    t = table([(0, "A", 1.0), (100, "A", 1.0)])

    with pytest.raises(ConfigError, match="not a multiple of the sample interval 100 ms"):
        label_values(t, parse_label("mid_ret_bps@250ms"))


def test_table_without_sample_interval_is_refused() -> None:
    with pytest.raises(ModelError, match="sample_interval_ms"):
        forward_mid(table([(0, "A", 1.0)], interval_ms=None), 100)


@pytest.mark.parametrize(("text", "ms"), [("500ms", 500), ("1s", 1000), ("10s", 10_000), ("1m", 60_000),
                                          ("1.5s", 1500)])
def test_horizon_forms(text: str, ms: int) -> None:
    assert parse_horizon(text) == ms


def test_label_parses_kind_horizon_and_task() -> None:
    lab = parse_label("mid_up@10s")

    assert (lab.kind, lab.horizon_ms, lab.task, lab.horizon_ns) == ("mid_up", 10_000, "binary", 10_000 * MS)
    assert parse_label("mid_ret_bps@1m").task == "regression"


@pytest.mark.parametrize("text", ["mid_ret_bps", "mid_ret@1s", "mid_up@", "mid_up@0s", "mid_up@1h", "mid_up@-1s",
                                  "mid_up@0.5ms", "MID_UP@1s", "mid_up@1 s x"])
def test_bad_label_lists_the_accepted_forms(text: str) -> None:
    with pytest.raises(ConfigError, match=r"mid_ret_bps@<H>.*mid_up@<H>"):
        parse_label(text)


def test_a_label_sees_only_its_own_row_and_the_row_one_horizon_later() -> None:
    # no look-ahead in the other direction either: shifting the input after T changes exactly the
    # labels whose horizon reaches T, and shifting it before a row never changes that row's label
    rng = np.random.default_rng(3)
    rows = [(i * 100, "A", 100.0 + float(x)) for i, x in enumerate(np.cumsum(rng.normal(0, 0.05, 300)))]
    base = label_values(table(rows), parse_label("mid_ret_bps@1s"))[0]
    cut = 150  # row index of T
    later = [(ts, s, m * 1.01 if i >= cut else m) for i, (ts, s, m) in enumerate(rows)]
    earlier = [(ts, s, m * 0.99 if i < cut else m) for i, (ts, s, m) in enumerate(rows)]

    shifted_later = label_values(table(later), parse_label("mid_ret_bps@1s"))[0]
    shifted_earlier = label_values(table(earlier), parse_label("mid_ret_bps@1s"))[0]

    horizon_rows = 10
    np.testing.assert_array_equal(shifted_later[: cut - horizon_rows], base[: cut - horizon_rows])
    assert not np.allclose(shifted_later[cut - horizon_rows: cut], base[cut - horizon_rows: cut])
    np.testing.assert_array_equal(shifted_earlier[cut:], base[cut:])
