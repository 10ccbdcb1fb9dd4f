"""Portfolio: average price, realised/unrealised PnL, fees, bounded equity curve and drawdown."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.errors import LocalError
from daemon.events import Fill, Liquidity, Side
from daemon.instruments import Instrument
from daemon.portfolio import Portfolio

SYM = "BTCUSDT"
INST = Instrument(SYM, tick_size=0.01, lot_size=0.001)
_ids = itertools.count()


def fill(side: Side, qty: float, price: float, fee: float = 0.0, symbol: str = SYM) -> Fill:
    """A fill given in decimals, converted to the instrument's ticks and lots."""
    return Fill("c", symbol, 0, side, INST.tick(price), INST.lot(qty), fee, Liquidity.TAKER,
                f"t-{next(_ids)}")


def portfolio(*fills: Fill, max_curve_points: int = 2000) -> Portfolio:
    p = Portfolio({SYM: INST}, max_curve_points=max_curve_points)
    for f in fills:
        p.on_fill(f)
    return p


# --- positions and average price -----------------------------------------------------------------


def test_long_average_price_is_size_weighted() -> None:
    p = portfolio(fill(Side.BUY, 1.0, 100.0))

    p.on_fill(fill(Side.BUY, 3.0, 104.0))

    assert p.position(SYM) == 4_000
    assert p.snapshot()[SYM]["avg_price"] == pytest.approx(103.0)
    assert p.snapshot()[SYM]["qty"] == 4.0


def test_short_average_price_is_size_weighted() -> None:
    p = portfolio(fill(Side.SELL, 2.0, 100.0))

    p.on_fill(fill(Side.SELL, 2.0, 102.0))

    assert p.position(SYM) == -4_000
    assert p.snapshot()[SYM]["avg_price"] == pytest.approx(101.0)
    assert p.snapshot()[SYM]["qty"] == -4.0


def test_position_of_untraded_symbol_is_zero() -> None:
    p = portfolio()

    assert p.position(SYM) == 0


# --- realised PnL --------------------------------------------------------------------------------


def test_partial_close_of_long_realises_pnl_and_keeps_average() -> None:
    p = portfolio(fill(Side.BUY, 4.0, 100.0))

    p.on_fill(fill(Side.SELL, 1.0, 110.0))

    snap = p.snapshot()[SYM]
    assert snap["realised"] == pytest.approx(10.0)
    assert (snap["qty"], snap["avg_price"]) == (3.0, pytest.approx(100.0))


def test_partial_cover_of_short_realises_pnl() -> None:
    p = portfolio(fill(Side.SELL, 2.0, 100.0))

    p.on_fill(fill(Side.BUY, 1.0, 90.0))

    assert p.pnl()["realised"] == pytest.approx(10.0)
    assert p.position(SYM) == -1_000


def test_full_close_goes_flat_without_average_price() -> None:
    p = portfolio(fill(Side.BUY, 2.0, 100.0))

    p.on_fill(fill(Side.SELL, 2.0, 99.0))

    snap = p.snapshot()[SYM]
    assert (snap["qty"], snap["avg_price"]) == (0.0, None)
    assert snap["realised"] == pytest.approx(-2.0)


def test_flip_closes_at_fill_price_and_opens_remainder_at_fill_price() -> None:
    p = portfolio(fill(Side.BUY, 1.0, 100.0))

    p.on_fill(fill(Side.SELL, 3.0, 105.0))

    snap = p.snapshot()[SYM]
    assert snap["realised"] == pytest.approx(5.0)
    assert (snap["qty"], snap["avg_price"]) == (-2.0, pytest.approx(105.0))


# --- fees and unrealised -------------------------------------------------------------------------


def test_fees_accumulate_separately_and_rebates_reduce_them() -> None:
    p = portfolio(fill(Side.BUY, 1.0, 100.0, fee=0.5))

    p.on_fill(fill(Side.SELL, 1.0, 101.0, fee=-0.1))

    assert p.pnl() == pytest.approx({"realised": 1.0, "unrealised": 0.0, "fees": 0.4, "net": 0.6})
    assert p.equity() == pytest.approx(0.6)


def test_unrealised_is_mark_minus_average_times_qty() -> None:
    p = portfolio(fill(Side.SELL, 2.0, 100.0))

    p.mark(SYM, 97.5)

    assert p.pnl()["unrealised"] == pytest.approx(5.0)
    assert p.snapshot()[SYM]["unrealised"] == pytest.approx(5.0)


def test_mark_none_keeps_last_mark() -> None:
    p = portfolio(fill(Side.BUY, 1.0, 100.0))
    p.mark(SYM, 102.0)

    p.mark(SYM, None)

    assert p.pnl()["unrealised"] == pytest.approx(2.0)


def test_unmarked_position_has_zero_unrealised() -> None:
    p = portfolio(fill(Side.BUY, 1.0, 100.0))

    assert p.pnl()["unrealised"] == 0.0


def test_net_is_realised_plus_unrealised_minus_fees() -> None:
    p = portfolio(fill(Side.BUY, 2.0, 100.0, fee=0.2), fill(Side.SELL, 1.0, 104.0, fee=0.1))

    p.mark(SYM, 101.0)

    assert p.pnl() == pytest.approx({"realised": 4.0, "unrealised": 1.0, "fees": 0.3, "net": 4.7})


def test_fill_for_unknown_symbol_raises() -> None:
    p = portfolio()

    with pytest.raises(LocalError, match="ETHUSDT"):
        p.on_fill(fill(Side.BUY, 1.0, 100.0, symbol="ETHUSDT"))


# --- equity curve and drawdown -------------------------------------------------------------------


def _equity_path(n: int) -> list[float]:
    """A deterministic wiggly path of marks with one deep, short-lived trough."""
    marks = [100.0 + 5.0 * math.sin(i / 7.0) + 0.01 * (i % 13) for i in range(n)]
    marks[n // 2 + 1] = 50.0
    return marks


def test_equity_curve_stays_bounded_and_ends_with_latest_point() -> None:
    p = portfolio(fill(Side.BUY, 1.0, 100.0), max_curve_points=16)

    for ts, mark in enumerate(_equity_path(10_001)):
        p.mark(SYM, mark)
        p.record_equity(ts)

    curve = p.equity_curve
    assert len(curve) <= 16
    assert curve[0][0] == 0
    assert curve[-1] == [10_000, pytest.approx(p.equity())]
    assert [ts for ts, _ in curve] == sorted({ts for ts, _ in curve})


def test_decimated_curve_keeps_evenly_strided_points() -> None:
    p = portfolio(max_curve_points=9)

    for ts in range(100):
        p.record_equity(ts)

    strided = [ts for ts, _ in p.equity_curve[:-1]]
    steps = {b - a for a, b in itertools.pairwise(strided)}
    assert len(steps) == 1


def test_max_drawdown_covers_every_recorded_value_not_only_kept_points() -> None:
    p = portfolio(fill(Side.BUY, 1.0, 100.0), max_curve_points=8)
    recorded: list[float] = []

    for ts, mark in enumerate(_equity_path(1_001)):
        p.mark(SYM, mark)
        p.record_equity(ts)
        recorded.append(p.equity())

    peak, naive_dd = -math.inf, 0.0
    for e in recorded:
        peak = max(peak, e)
        naive_dd = max(naive_dd, peak - e)
    kept_min = min(eq for _, eq in p.equity_curve)
    assert p.max_drawdown == pytest.approx(naive_dd)
    assert kept_min > min(recorded)


def test_max_drawdown_is_zero_for_rising_equity() -> None:
    p = portfolio(fill(Side.BUY, 1.0, 100.0))

    for ts in range(10):
        p.mark(SYM, 100.0 + ts)
        p.record_equity(ts)

    assert p.max_drawdown == 0.0


# --- property: PnL equals the naive cash-flow PnL ------------------------------------------------

_fills = st.lists(
    st.tuples(st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 5_000), st.integers(1, 2_000_000),
              st.floats(-1.0, 1.0, allow_nan=False)),
    min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(fills=_fills, mark_ticks=st.integers(1, 2_000_000))
def test_realised_plus_unrealised_equals_cash_flow_pnl(fills: list[tuple[Side, int, int, float]],
                                                        mark_ticks: int) -> None:
    p = portfolio()
    cash = fees = 0.0
    lots = 0

    for side, qty, px, fee in fills:
        p.on_fill(Fill("c", SYM, 0, side, px, qty, fee, Liquidity.TAKER, "t"))
        cash -= int(side) * INST.qty(qty) * INST.price(px)
        fees += fee
        lots += int(side) * qty
    mark = INST.price(mark_ticks)
    p.mark(SYM, mark)

    pnl = p.pnl()
    naive = cash + INST.qty(lots) * mark
    scale = sum(INST.qty(q) * INST.price(px) for _, q, px, _ in fills) + abs(INST.qty(lots) * mark)
    assert p.position(SYM) == lots
    assert math.isclose(pnl["realised"] + pnl["unrealised"], naive, rel_tol=0, abs_tol=1e-9 * scale + 1e-9)
    assert math.isclose(pnl["net"], naive - fees, rel_tol=0, abs_tol=1e-9 * scale + 1e-6)
