"""RiskGate: each pre-trade check with its reason code, per-symbol limits, reject counts, a property."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.config import RiskLimits, RiskSettings
from daemon.events import OrderIntent, OrderType, RiskReject, Side
from daemon.instruments import Instrument
from daemon.risk import RiskGate, RiskView
from daemon.risk.gate import snapshot_rejects

SYM = "X"
INST = Instrument(SYM, tick_size=0.01, lot_size=0.001)
# In lots of 0.001: max_position 1000, max_order_qty 500; max_notional 1000 quote.
LIMITS = RiskSettings(max_position=1.0, max_order_qty=0.5, max_notional=1000.0)
PX_100 = 10_000  # 100.00 in ticks


def gate(risk: RiskSettings = LIMITS, lot: float = 0.001) -> RiskGate:
    return RiskGate(risk, lambda s: Instrument(s, 0.01, lot))


def market(side: Side, qty: int, symbol: str = SYM) -> OrderIntent:
    return OrderIntent(symbol, 0, side, qty, OrderType.MARKET)


def limit(side: Side, qty: int, px: int, symbol: str = SYM) -> OrderIntent:
    return OrderIntent(symbol, 0, side, qty, OrderType.LIMIT, limit_px=px)


def view(position: int = 0, open_buy: int = 0, open_sell: int = 0, live: bool = True,
         ref_price: int | None = PX_100) -> RiskView:
    return RiskView(position, open_buy, open_sell, live, ref_price)


def reason(result: RiskReject | None) -> str | None:
    return None if result is None else result.reason


# --- book_not_live -------------------------------------------------------------------------------


def test_rejects_any_order_when_book_is_not_live() -> None:
    g = gate()

    result = g.check(market(Side.BUY, 1), view(live=False))

    assert reason(result) == "book_not_live"
    assert result is not None and SYM in result.detail


def test_rejects_even_a_reduction_when_book_is_not_live() -> None:
    assert reason(gate().check(market(Side.SELL, 100), view(position=500, live=False))) == "book_not_live"


# --- max_order_qty -------------------------------------------------------------------------------


def test_passes_order_at_max_order_qty() -> None:
    assert gate().check(market(Side.BUY, 500), view()) is None


def test_rejects_order_above_max_order_qty() -> None:
    result = gate().check(market(Side.SELL, 501), view())

    assert reason(result) == "max_order_qty"
    assert result is not None and "0.501" in result.detail and "0.5" in result.detail


def test_passes_order_of_exactly_max_order_qty_on_a_fine_lot_grid() -> None:
    lot = 1e-8  # the replay default lot
    g = gate(RiskSettings(max_position=1.0, max_order_qty=0.29, max_notional=1e6), lot=lot)
    qty = Instrument(SYM, 0.01, lot).lot(0.29)

    result = g.check(market(Side.BUY, qty), view())

    assert result is None, result


def test_passes_position_of_exactly_max_position_on_a_fine_lot_grid() -> None:
    lot = 1e-8
    g = gate(RiskSettings(max_position=0.29, max_order_qty=0.1, max_notional=1e6), lot=lot)
    inst = Instrument(SYM, 0.01, lot)

    result = g.check(market(Side.BUY, inst.lot(0.09)), view(position=inst.lot(0.2)))

    assert result is None, result


# --- max_position --------------------------------------------------------------------------------


def test_passes_buy_that_reaches_max_position() -> None:
    assert gate().check(market(Side.BUY, 400), view(position=600)) is None


def test_rejects_buy_beyond_max_position() -> None:
    result = gate().check(market(Side.BUY, 401), view(position=600))

    assert reason(result) == "max_position"


def test_rejects_sell_beyond_max_short_position() -> None:
    assert reason(gate().check(market(Side.SELL, 401), view(position=-600))) == "max_position"


def test_counts_open_orders_on_the_same_side_as_filled() -> None:
    g = gate()

    buy = g.check(market(Side.BUY, 200), view(position=600, open_buy=300))
    sell = g.check(market(Side.SELL, 200), view(position=-600, open_sell=300))

    assert reason(buy) == "max_position"
    assert reason(sell) == "max_position"


def test_ignores_open_orders_on_the_opposite_side() -> None:
    # worst case for a buy is every buy filling and no sell filling: 600 + 200 = 800
    assert gate().check(market(Side.BUY, 200), view(position=600, open_sell=300)) is None


def test_passes_reduction_when_position_is_already_over_limit() -> None:
    g = gate()

    long_cut = g.check(market(Side.SELL, 300), view(position=1500))
    short_cut = g.check(market(Side.BUY, 300), view(position=-1500))

    assert long_cut is None
    assert short_cut is None


def test_rejects_a_flip_that_lands_beyond_the_limit_on_the_other_side() -> None:
    big = RiskSettings(max_position=1.0, max_order_qty=5.0, max_notional=1e9)

    flip = gate(big).check(market(Side.SELL, 2800), view(position=1500))

    assert reason(flip) == "max_position"


def test_passes_a_flip_that_lands_within_the_limit() -> None:
    big = RiskSettings(max_position=1.0, max_order_qty=5.0, max_notional=1e9)

    assert gate(big).check(market(Side.SELL, 2400), view(position=1500)) is None


def test_rejects_increase_when_position_is_already_over_limit() -> None:
    assert reason(gate().check(market(Side.BUY, 1), view(position=1500))) == "max_position"


# --- max_notional and no_price -------------------------------------------------------------------


def test_values_market_order_at_reference_price() -> None:
    g = gate()

    # 0.5 at 2500.00 = 1250 > 1000; 0.5 at 1900.00 = 950
    over = g.check(market(Side.BUY, 500), view(ref_price=250_000))
    under = g.check(market(Side.BUY, 500), view(ref_price=190_000))

    assert reason(over) == "max_notional"
    assert under is None


def test_values_limit_order_at_its_limit_price_not_the_reference() -> None:
    g = gate()

    cheap_limit = g.check(limit(Side.BUY, 500, 190_000), view(ref_price=250_000))
    dear_limit = g.check(limit(Side.BUY, 500, 250_000), view(ref_price=190_000))

    assert cheap_limit is None
    assert reason(dear_limit) == "max_notional"


def test_notional_counts_the_worst_case_position() -> None:
    # worst case 0.3 + 0.2 + 0.1 = 0.6 at 1800.00 = 1080 > 1000
    result = gate().check(market(Side.BUY, 100), view(position=300, open_buy=200, ref_price=180_000))

    assert reason(result) == "max_notional"
    assert result is not None and "1080.00" in result.detail


def test_notional_passes_a_reduction() -> None:
    # 0.9 at 2000.00 = 1800 is over max_notional, but selling 0.1 reduces it
    assert gate().check(market(Side.SELL, 100), view(position=900, ref_price=200_000)) is None


def test_rejects_market_order_without_reference_price() -> None:
    assert reason(gate().check(market(Side.BUY, 1), view(ref_price=None))) == "no_price"


def test_limit_order_needs_no_reference_price() -> None:
    assert gate().check(limit(Side.BUY, 1, PX_100), view(ref_price=None)) is None


# --- per-symbol limits -----------------------------------------------------------------------------


def test_symbol_table_overrides_the_defaults() -> None:
    risk = RiskSettings(max_position=1.0, max_order_qty=0.5, max_notional=1000.0,
                        symbols={"Y": RiskLimits(max_position=0.2, max_order_qty=0.1, max_notional=10.0)})
    g = gate(risk)

    y_size = g.check(market(Side.BUY, 101, symbol="Y"), view(ref_price=1))
    y_position = g.check(market(Side.BUY, 100, symbol="Y"), view(position=150, ref_price=1))
    y_notional = g.check(market(Side.BUY, 100, symbol="Y"), view(ref_price=20_000))
    x_same = g.check(market(Side.BUY, 101), view(position=150))

    assert reason(y_size) == "max_order_qty"
    assert reason(y_position) == "max_position"
    assert reason(y_notional) == "max_notional"
    assert x_same is None


def test_limits_for_falls_back_to_defaults() -> None:
    risk = RiskSettings(max_position=2.0, max_order_qty=1.0, max_notional=5.0,
                        symbols={"Y": RiskLimits(max_position=0.2, max_order_qty=0.1, max_notional=10.0)})

    assert risk.limits_for("Z") == RiskLimits(max_position=2.0, max_order_qty=1.0, max_notional=5.0)
    assert risk.limits_for("Y").max_position == 0.2


# --- counting --------------------------------------------------------------------------------------


def test_counts_rejects_by_reason_and_passes() -> None:
    g = gate()

    g.check(market(Side.BUY, 1), view(live=False))
    g.check(market(Side.BUY, 1), view(live=False))
    g.check(market(Side.BUY, 501), view())
    g.check(market(Side.BUY, 1), view(ref_price=None))
    g.check(market(Side.BUY, 1), view())

    assert dict(g.rejects) == {"book_not_live": 2, "max_order_qty": 1, "no_price": 1}
    assert g.passed == 1
    assert list(snapshot_rejects(g)) == ["book_not_live", "max_order_qty", "no_price"]


def test_first_failing_check_is_the_reject() -> None:
    # too big, over the position limit and not live: book_not_live is checked first
    g = gate()

    result = g.check(market(Side.BUY, 900), view(position=900, live=False))

    assert reason(result) == "book_not_live"
    assert sum(g.rejects.values()) == 1


def test_reject_carries_the_intent() -> None:
    intent = market(Side.BUY, 501)

    result = gate().check(intent, view())

    assert result is not None and result.intent is intent


# --- property: a passed order never grows the worst case past the limit -------------------------------

LOT = Decimal("0.001")


@st.composite
def checks(draw: st.DrawFn) -> tuple[OrderIntent, RiskView]:
    side = draw(st.sampled_from(Side))
    qty = draw(st.integers(1, 1500))
    px = draw(st.integers(1, 500_000))
    intent = limit(side, qty, px) if draw(st.booleans()) else market(side, qty)
    v = RiskView(position=draw(st.integers(-3000, 3000)), open_buy=draw(st.integers(0, 1500)),
                 open_sell=draw(st.integers(0, 1500)), book_live=draw(st.booleans()),
                 ref_price=draw(st.one_of(st.none(), st.integers(1, 500_000))))
    return intent, v


@settings(max_examples=300, deadline=None)
@given(pos_lots=st.integers(1, 3000), order_lots=st.integers(1, 3000), notional=st.integers(1, 10_000),
       sequence=st.lists(checks(), min_size=1, max_size=20))
def test_passed_orders_keep_worst_case_within_limits_or_reduce_it(
        pos_lots: int, order_lots: int, notional: int, sequence: list[tuple[OrderIntent, RiskView]]) -> None:
    order_lots = min(order_lots, pos_lots)
    risk = RiskSettings(max_position=float(pos_lots * LOT), max_order_qty=float(order_lots * LOT),
                        max_notional=float(notional))
    g = gate(risk)

    for intent, v in sequence:
        result = g.check(intent, v)

        if result is None:
            sign = 1 if intent.side is Side.BUY else -1
            worst = v.position + sign * ((v.open_buy if sign > 0 else v.open_sell) + intent.qty)
            assert v.book_live
            assert intent.qty <= order_lots
            assert abs(worst) <= pos_lots or abs(worst) <= abs(v.position)
            px = intent.limit_px if intent.order_type is OrderType.LIMIT else v.ref_price
            assert px is not None
            worst_notional = abs(worst * LOT * px * Decimal("0.01"))
            assert worst_notional <= notional or abs(worst) <= abs(v.position)
    assert g.passed + sum(g.rejects.values()) == len(sequence)
