"""RiskGate: one test per pre-trade check trying to break it, with its reason code; per-symbol limits
over the [risk] defaults; the reduce-only exemptions; the flatten exemption in HALTED; rejects
counted by reason; a property over random checks."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.clock import ReplayClock
from daemon.config import RiskLimits, RiskSettings
from daemon.events import OrderIntent, OrderType, RiskReject, Side
from daemon.instruments import Instrument
from daemon.risk import RiskGate, RiskView
from daemon.risk.gate import FLATTEN_TAG, snapshot_rejects
from daemon.risk.state import TradingState

SYM = "X"
MS = 1_000_000
SEC = 1_000 * MS
T0 = 1_700_000_000 * SEC
MID = 100_000.5  # 1000.005 in ticks of 0.01
BID, ASK = 100_000, 100_001
# In lots of 0.001 and ticks of 0.01: max_position 1000 lots, max_order_qty 500 lots, min_order_qty 10 lots.
BASE = dict(max_position=1.0, max_notional=2_000.0, max_order_qty=0.5, max_order_notional=1_000.0,
            max_open_orders=3, max_orders_per_second=2, max_orders_per_minute=5, price_band_bps=100.0,
            min_order_qty=0.01, feed_stale_ms=1_000)


def make_gate(lot: float = 0.001, symbols: dict[str, RiskLimits] | None = None,
              **over: float) -> tuple[RiskGate, ReplayClock]:
    clock = ReplayClock(T0)
    risk = RiskSettings(**{**BASE, **over}, symbols=symbols or {})
    return RiskGate(risk, lambda s: Instrument(s, 0.01, lot), clock), clock


def gate(**over: float) -> RiskGate:
    return make_gate(**over)[0]


def market(side: Side, qty: int, symbol: str = SYM, **kw: object) -> OrderIntent:
    return OrderIntent(symbol, T0, side, qty, OrderType.MARKET, **kw)  # type: ignore[arg-type]


def limit(side: Side, qty: int, px: int, symbol: str = SYM, **kw: object) -> OrderIntent:
    return OrderIntent(symbol, T0, side, qty, OrderType.LIMIT, limit_px=px, **kw)  # type: ignore[arg-type]


def flatten(side: Side, qty: int, px: int | None = None) -> OrderIntent:
    if px is None:
        px = BID if side is Side.SELL else ASK
    return limit(side, qty, px, reduce_only=True, tag=FLATTEN_TAG)


def view(position: int = 0, open_buy: int = 0, open_sell: int = 0, live: bool = True,
         ref_price: int | None = ASK, open_orders: int = 0, mid: float | None = MID, far_depth: int | None = 5_000,
         own_bid: int | None = None, own_ask: int | None = None, last_market_ts: int | None = T0) -> RiskView:
    return RiskView(position, open_buy, open_sell, live, ref_price, open_orders, mid, far_depth, own_bid, own_ask,
                    last_market_ts)


def reason(result: RiskReject | None) -> str | None:
    return None if result is None else result.reason


def test_a_plain_intent_within_every_limit_passes() -> None:
    g = gate()

    assert g.check(market(Side.BUY, 100), view()) is None
    assert g.check(limit(Side.SELL, 100, ASK), view()) is None
    assert g.passed == 2 and not g.rejects


# --- trading state ---------------------------------------------------------------------------------


def test_halted_refuses_everything_even_a_reduction() -> None:
    g = gate()
    g.state = TradingState.HALTED

    opening = g.check(market(Side.BUY, 100), view())
    cutting = g.check(market(Side.SELL, 100), view(position=500))
    reduce_only = g.check(limit(Side.SELL, 100, BID, reduce_only=True), view(position=500))

    assert [reason(r) for r in (opening, cutting, reduce_only)] == ["halted"] * 3
    assert opening is not None and "HALTED" in opening.detail


def test_halted_lets_the_engines_flatten_order_through() -> None:
    g = gate()
    g.state = TradingState.HALTED

    assert g.check(flatten(Side.SELL, 500), view(position=500)) is None
    assert g.check(flatten(Side.BUY, 300), view(position=-300)) is None


@pytest.mark.parametrize(("intent", "v", "why"), [
    (limit(Side.SELL, 500, BID, tag=FLATTEN_TAG), view(position=500), "tagged but not reduce-only"),
    (limit(Side.SELL, 500, BID, reduce_only=True), view(position=500), "reduce-only but not tagged"),
    (flatten(Side.SELL, 800), view(position=500), "overshoots into a short"),
    (flatten(Side.BUY, 100), view(position=500), "adds to the long"),
    (flatten(Side.SELL, 100), view(position=0), "flat: nothing to flatten"),
    (flatten(Side.SELL, 300), view(position=500, open_sell=300), "with the open sells it flips"),
])
def test_halted_refuses_a_flatten_order_that_is_not_one(intent: OrderIntent, v: RiskView, why: str) -> None:
    g = gate()
    g.state = TradingState.HALTED

    assert reason(g.check(intent, v)) == "halted", why


def test_a_flatten_order_in_halted_still_meets_the_other_checks() -> None:
    g = gate()
    g.state = TradingState.HALTED

    outside_band = g.check(flatten(Side.SELL, 500, px=BID - 2_000), view(position=500))  # 200 bps under mid
    not_live = g.check(flatten(Side.SELL, 500), view(position=500, live=False))

    assert reason(outside_band) == "price_band"
    assert reason(not_live) == "book_not_live"


@pytest.mark.parametrize(("intent", "v"), [
    (market(Side.BUY, 100), view()),  # opens from flat
    (market(Side.SELL, 100), view()),
    (market(Side.BUY, 100), view(position=200)),  # adds
    (market(Side.SELL, 100), view(position=-200)),
    (market(Side.SELL, 400), view(position=300)),  # flips long -> short
    (market(Side.SELL, 200), view(position=300, open_sell=200)),  # flips once the open sells fill too
])
def test_reducing_refuses_whatever_adds_exposure(intent: OrderIntent, v: RiskView) -> None:
    g = gate()
    g.state = TradingState.REDUCING

    result = g.check(intent, v)

    assert reason(result) == "reducing_only"
    assert result is not None and "REDUCING" in result.detail


@pytest.mark.parametrize(("intent", "v"), [
    (market(Side.SELL, 100), view(position=300)),
    (market(Side.SELL, 300), view(position=300)),  # exactly to flat
    (market(Side.BUY, 100), view(position=-300)),
    (limit(Side.SELL, 100, ASK), view(position=300, open_sell=150)),
])
def test_reducing_passes_a_reduction(intent: OrderIntent, v: RiskView) -> None:
    g = gate()
    g.state = TradingState.REDUCING

    assert g.check(intent, v) is None


# --- market data and model -------------------------------------------------------------------------


def test_rejects_any_order_when_book_is_not_live() -> None:
    g = gate()

    opening = g.check(market(Side.BUY, 100), view(live=False))
    cutting = g.check(market(Side.SELL, 100), view(position=500, live=False))

    assert reason(opening) == reason(cutting) == "book_not_live"
    assert opening is not None and SYM in opening.detail


def test_rejects_when_the_feed_has_been_silent_for_feed_stale_ms() -> None:
    g, clock = make_gate(feed_stale_ms=1_000)
    clock.advance_to(T0 + 1_000 * MS)

    at_limit = g.check(market(Side.BUY, 100), view(last_market_ts=T0))
    clock.advance_to(T0 + 1_000 * MS + 1)
    stale = g.check(market(Side.BUY, 100), view(last_market_ts=T0))
    never_heard = g.check(market(Side.BUY, 100), view(last_market_ts=None))

    assert at_limit is None
    assert reason(stale) == "feed_stale"
    assert stale is not None and "feed_stale_ms 1000" in stale.detail
    assert never_heard is None, "no market time known: the book_not_live check is the one that speaks"


def test_feed_staleness_is_judged_by_the_clock_not_by_the_intent_time() -> None:
    g, clock = make_gate(feed_stale_ms=1_000)
    clock.advance_to(T0 + 5 * SEC)

    result = g.check(market(Side.BUY, 100), view(last_market_ts=T0))  # the intent says T0

    assert reason(result) == "feed_stale"


def test_without_a_clock_the_intent_time_is_now() -> None:
    g = RiskGate(RiskSettings(**BASE), lambda s: Instrument(s, 0.01, 0.001))
    old = OrderIntent(SYM, T0 + 5 * SEC, Side.BUY, 100, OrderType.MARKET)

    assert reason(g.check(old, view(last_market_ts=T0))) == "feed_stale"


def test_an_unhealthy_model_refuses_new_exposure_but_not_a_reduction() -> None:
    g = gate()
    g.model_problem = "feature imb_5 drifted: PSI 0.9 > 0.25"

    opening = g.check(market(Side.BUY, 100), view())
    adding = g.check(market(Side.SELL, 100), view(position=-100))
    cutting = g.check(market(Side.SELL, 100), view(position=300))

    assert reason(opening) == reason(adding) == "model_unhealthy"
    assert opening is not None and "PSI 0.9" in opening.detail
    assert cutting is None
    g.model_problem = None
    assert g.check(market(Side.BUY, 100), view()) is None


# --- order size and price --------------------------------------------------------------------------


@pytest.mark.parametrize("qty", [2.5, 3.0, True, np.int64(3)])
def test_rejects_a_qty_that_is_not_a_whole_number_of_lots(qty: object) -> None:
    intent = OrderIntent(SYM, T0, Side.BUY, qty, OrderType.MARKET)  # type: ignore[arg-type]

    assert reason(gate().check(intent, view())) == "bad_qty"


def test_rejects_an_order_under_min_order_qty() -> None:
    g = gate(min_order_qty=0.01)

    under = g.check(market(Side.BUY, 9), view())
    at_min = g.check(market(Side.BUY, 10), view())

    assert reason(under) == "min_order_qty"
    assert under is not None and "0.009" in under.detail and "0.01" in under.detail
    assert at_min is None


def test_a_reduction_may_be_under_min_order_qty_but_a_reduce_only_flag_alone_is_not_trusted() -> None:
    g = gate(min_order_qty=0.01)

    cut = g.check(market(Side.SELL, 5), view(position=5))
    flagged_add = g.check(market(Side.BUY, 5, reduce_only=True), view(position=5))

    assert cut is None
    assert reason(flagged_add) == "min_order_qty"


def test_rejects_order_above_max_order_qty_and_passes_one_at_it() -> None:
    g = gate()

    over = g.check(market(Side.SELL, 501), view())
    at_max = g.check(market(Side.BUY, 500), view())

    assert reason(over) == "max_order_qty"
    assert over is not None and "0.501" in over.detail and "0.5" in over.detail
    assert at_max is None


def test_max_order_qty_binds_even_a_reduction() -> None:
    assert reason(gate().check(market(Side.SELL, 501), view(position=800))) == "max_order_qty"


def test_passes_order_of_exactly_max_order_qty_on_a_fine_lot_grid() -> None:
    lot = 1e-8  # the replay default lot: 0.29 / 1e-8 = 28999999.999999996
    g = make_gate(lot=lot, max_position=1.0, max_order_qty=0.29, max_order_notional=1e9, max_notional=1e9)[0]
    qty = Instrument(SYM, 0.01, lot).lot(0.29)

    assert g.check(market(Side.BUY, qty), view(far_depth=qty)) is None
    assert reason(g.check(market(Side.BUY, qty + 1), view(far_depth=qty + 1))) == "max_order_qty"


@pytest.mark.parametrize("px", [0, -5, 100_000.5])
def test_rejects_a_limit_price_that_is_not_a_positive_whole_tick(px: object) -> None:
    intent = OrderIntent(SYM, T0, Side.BUY, 100, OrderType.LIMIT, limit_px=px)  # type: ignore[arg-type]

    assert reason(gate().check(intent, view())) == "bad_price"


def test_rejects_a_market_order_with_no_reference_price() -> None:
    assert reason(gate().check(market(Side.BUY, 100), view(ref_price=None))) == "no_price"


def test_rejects_an_order_when_there_is_no_mid_to_check_the_band_against() -> None:
    result = gate().check(limit(Side.BUY, 100, BID), view(mid=None, ref_price=None))

    assert reason(result) == "no_price"


def test_rejects_an_order_over_max_order_notional() -> None:
    g = gate(max_order_notional=400.0, max_notional=1e9)

    # 0.4 at 1000.01 = 400.004 > 400; a limit is valued at its own price: 0.4 at 999.99 = 399.996
    market_over = g.check(market(Side.BUY, 400), view())
    limit_under = g.check(limit(Side.BUY, 400, 99_999), view())
    limit_over = g.check(limit(Side.SELL, 400, ASK), view())

    assert reason(market_over) == "max_order_notional"
    assert market_over is not None and "400.00" in market_over.detail
    assert limit_under is None
    assert reason(limit_over) == "max_order_notional"


def test_rejects_when_max_open_orders_are_already_working() -> None:
    g = gate(max_open_orders=3)

    below = g.check(market(Side.BUY, 100), view(open_orders=2))
    at_cap = g.check(market(Side.BUY, 100), view(open_orders=3))
    cut_at_cap = g.check(market(Side.SELL, 100), view(position=500, open_orders=3))

    assert below is None
    assert reason(at_cap) == "max_open_orders"
    assert reason(cut_at_cap) == "max_open_orders", "the cap on working orders binds reductions too"


# --- price band and depth --------------------------------------------------------------------------


def test_rejects_a_limit_price_outside_the_band_on_either_side() -> None:
    g = gate(price_band_bps=100.0)
    lo, hi = int(np.ceil(MID * 0.99)), int(np.floor(MID * 1.01))

    inside = [g.check(limit(Side.BUY, 10, lo), view()), g.check(limit(Side.SELL, 10, hi), view())]
    below = g.check(limit(Side.BUY, 10, lo - 1), view())
    above = g.check(limit(Side.SELL, 10, hi + 1), view())

    assert inside == [None, None]
    assert reason(below) == reason(above) == "price_band"
    assert below is not None and "price_band_bps 100" in below.detail


def test_a_buy_limit_far_above_the_market_is_outside_the_band_too() -> None:
    # a marketable limit priced far through the book would sweep it: the band stops it
    assert reason(gate().check(limit(Side.BUY, 10, 110_000), view())) == "price_band"


def test_rejects_a_market_order_larger_than_the_depth_within_the_band() -> None:
    g = gate()

    thin = g.check(market(Side.BUY, 300), view(far_depth=299))
    exact = g.check(market(Side.BUY, 300), view(far_depth=300))
    thin_cut = g.check(market(Side.SELL, 300), view(position=500, far_depth=0))

    assert reason(thin) == "book_too_thin"
    assert thin is not None and "0.3" in thin.detail and "0.299" in thin.detail
    assert exact is None
    assert reason(thin_cut) == "book_too_thin", "a market reduction into an empty book is refused too"


def test_the_depth_check_is_for_market_orders_only() -> None:
    assert gate().check(limit(Side.BUY, 300, BID), view(far_depth=0)) is None


# --- self-trade --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("intent", "v", "crosses"), [
    (limit(Side.BUY, 10, ASK), view(own_ask=ASK), True),
    (limit(Side.BUY, 10, ASK + 5), view(own_ask=ASK), True),
    (limit(Side.BUY, 10, BID), view(own_ask=ASK), False),
    (market(Side.BUY, 10), view(own_ask=ASK + 50), True),
    (limit(Side.SELL, 10, BID), view(own_bid=BID), True),
    (limit(Side.SELL, 10, ASK), view(own_bid=BID), False),
    (market(Side.SELL, 10), view(own_bid=BID - 50), True),
    (market(Side.BUY, 10), view(own_bid=BID), False),  # our own buy is on the same side
])
def test_self_trade_prevention(intent: OrderIntent, v: RiskView, crosses: bool) -> None:
    result = gate().check(intent, v)

    assert reason(result) == ("self_trade" if crosses else None)


# --- position and notional (worst case) ----------------------------------------------------------------


def test_passes_a_buy_that_reaches_max_position_and_rejects_one_beyond() -> None:
    g = gate()

    reach = g.check(market(Side.BUY, 400), view(position=600))
    beyond = g.check(market(Side.BUY, 401), view(position=600))
    short_beyond = g.check(market(Side.SELL, 401), view(position=-600))

    assert reach is None
    assert reason(beyond) == reason(short_beyond) == "max_position"
    assert beyond is not None and "1.001" in beyond.detail


def test_max_position_counts_every_open_order_on_the_side_as_filled() -> None:
    g = gate()

    buy = g.check(market(Side.BUY, 200), view(position=600, open_buy=201))
    sell = g.check(market(Side.SELL, 200), view(position=-600, open_sell=201))
    other_side = g.check(market(Side.BUY, 200), view(position=600, open_sell=900))

    assert reason(buy) == reason(sell) == "max_position"
    assert other_side is None, "the worst case of a buy is every buy filling and no sell"


def test_a_reduction_passes_when_the_position_is_already_over_the_limit() -> None:
    g = gate()

    long_cut = g.check(market(Side.SELL, 300), view(position=1500))
    short_cut = g.check(market(Side.BUY, 300), view(position=-1500))
    more = g.check(market(Side.BUY, 10), view(position=1500))

    assert long_cut is None and short_cut is None
    assert reason(more) == "max_position"


def test_a_flip_is_judged_by_where_it_lands() -> None:
    g = gate(max_position=1.0, max_order_qty=5.0, max_order_notional=1e9, max_notional=1e9)

    # from 1.5 long (over the limit): to 1.3 short is not a reduction and is beyond the limit
    flip_beyond = g.check(market(Side.SELL, 2800), view(position=1500, far_depth=10_000))
    flip_within = g.check(market(Side.SELL, 2400), view(position=1500, far_depth=10_000))

    assert reason(flip_beyond) == "max_position"
    assert flip_within is None


def test_rejects_a_worst_case_notional_over_max_notional() -> None:
    g = gate(max_notional=1_000.0, max_position=5.0)

    # worst case 0.5 + 0.3 + 0.3 = 1.1 at 1000.01 = 1100.01 > 1000
    over = g.check(market(Side.BUY, 300), view(position=500, open_buy=300))
    # a limit is valued at its own price: 0.999 at 1000.00 = 999
    under = g.check(limit(Side.BUY, 199, BID), view(position=500, open_buy=300))
    cut = g.check(market(Side.SELL, 100), view(position=1500))  # 1.5 x 1000 is over, but it reduces

    assert reason(over) == "max_notional"
    assert over is not None and "1100.01" in over.detail
    assert under is None
    assert cut is None


# --- order rate --------------------------------------------------------------------------------------


def test_order_rate_per_second_is_a_sliding_window() -> None:
    g, clock = make_gate(max_orders_per_second=2, max_orders_per_minute=100)

    first = [g.check(market(Side.BUY, 10), view()) for _ in range(2)]
    clock.advance_to(T0 + 999 * MS)
    third = g.check(market(Side.BUY, 10), view(last_market_ts=clock.now()))
    clock.advance_to(T0 + SEC)
    after = g.check(market(Side.BUY, 10), view(last_market_ts=clock.now()))

    assert first == [None, None]
    assert reason(third) == "order_rate"
    assert third is not None and "max_orders_per_second" in third.detail
    assert after is None, "the orders of T0 are a full second old"


def test_order_rate_per_minute() -> None:
    g, clock = make_gate(max_orders_per_second=10, max_orders_per_minute=5)
    passed = []
    for i in range(7):
        clock.advance_to(T0 + i * 2 * SEC)
        passed.append(g.check(market(Side.BUY, 10), view(last_market_ts=clock.now())) is None)
    clock.advance_to(T0 + 60 * SEC)
    again = g.check(market(Side.BUY, 10), view(last_market_ts=clock.now()))

    assert passed == [True] * 5 + [False] * 2
    assert g.rejects["order_rate"] == 2
    assert again is None


def test_rejected_intents_do_not_use_up_the_rate() -> None:
    g = gate(max_orders_per_second=2)

    g.check(market(Side.BUY, 10), view(live=False))
    g.check(market(Side.BUY, 9_999), view())
    ok = [g.check(market(Side.BUY, 10), view()) for _ in range(2)]

    assert ok == [None, None]


def test_order_rate_is_per_symbol() -> None:
    g = gate(max_orders_per_second=1)

    assert g.check(market(Side.BUY, 10), view()) is None
    assert reason(g.check(market(Side.BUY, 10), view())) == "order_rate"
    assert g.check(market(Side.BUY, 10, symbol="Y"), view()) is None


def test_a_fractional_rate_allows_at_least_one_order() -> None:
    g = gate(max_orders_per_second=0.5)

    assert g.check(market(Side.BUY, 10), view()) is None
    assert reason(g.check(market(Side.BUY, 10), view())) == "order_rate"


# --- per-symbol limits -----------------------------------------------------------------------------

# (field, Y's own value, an intent and view that X passes under the defaults and Y must reject, reason)
OVERRIDES = [
    ("max_position", 0.2, market(Side.BUY, 100), view(position=150), "max_position"),
    ("max_notional", 100.0, market(Side.BUY, 150), view(), "max_notional"),
    ("max_order_qty", 0.1, market(Side.BUY, 101), view(), "max_order_qty"),
    ("max_order_notional", 50.0, market(Side.BUY, 60), view(), "max_order_notional"),
    ("max_open_orders", 1, market(Side.BUY, 10), view(open_orders=1), "max_open_orders"),
    ("price_band_bps", 10.0, limit(Side.BUY, 10, 99_800), view(), "price_band"),
    ("min_order_qty", 0.05, market(Side.BUY, 20), view(), "min_order_qty"),
    ("feed_stale_ms", 100, market(Side.BUY, 10), view(last_market_ts=T0 - 500 * MS), "feed_stale"),
]


@pytest.mark.parametrize(("field", "value", "intent", "v", "code"), OVERRIDES, ids=[o[0] for o in OVERRIDES])
def test_a_symbol_table_overrides_one_default(field: str, value: float, intent: OrderIntent, v: RiskView,
                                              code: str) -> None:
    g = gate(symbols={"Y": RiskLimits(**{field: value})})
    as_y = OrderIntent("Y", intent.ts, intent.side, intent.qty, intent.order_type, intent.limit_px)

    assert g.check(intent, v) is None, "X keeps the [risk] default"
    assert reason(g.check(as_y, v)) == code


def test_a_symbol_table_overrides_the_order_rate() -> None:
    g = gate(max_orders_per_second=5, symbols={"Y": RiskLimits(max_orders_per_second=1)})

    x = [g.check(market(Side.BUY, 10), view()) for _ in range(3)]
    y = [reason(g.check(market(Side.BUY, 10, symbol="Y"), view())) for _ in range(2)]

    assert x == [None] * 3
    assert y == [None, "order_rate"]


def test_limits_for_takes_each_unset_key_from_the_defaults() -> None:
    risk = RiskSettings(**BASE, symbols={"Y": RiskLimits(max_position=0.2, max_open_orders=7)})

    y, z = risk.limits_for("Y"), risk.limits_for("Z")

    assert (y.max_position, y.max_open_orders, y.max_order_qty) == (0.2, 7, 0.5)
    assert z == RiskLimits(**BASE)


def test_limits_are_converted_to_lots_of_each_symbols_own_grid() -> None:
    g = RiskGate(RiskSettings(**BASE), lambda s: Instrument(s, 0.01, 0.001 if s == SYM else 0.1))

    assert g.limits(SYM).max_position == 1000 and g.limits("Y").max_position == 10
    assert g.limits("Y").min_order == 1, "0.01 is less than one lot of 0.1: one lot is the minimum"


# --- counting and order of the checks ---------------------------------------------------------------


def test_counts_rejects_by_reason_and_passes() -> None:
    g = gate()

    g.check(market(Side.BUY, 10), view(live=False))
    g.check(market(Side.BUY, 10), view(live=False))
    g.check(market(Side.BUY, 501), view())
    g.check(market(Side.BUY, 10), view(ref_price=None))
    g.check(limit(Side.BUY, 10, 1), view())
    g.check(market(Side.BUY, 10), view())

    assert dict(g.rejects) == {"book_not_live": 2, "max_order_qty": 1, "no_price": 1, "price_band": 1}
    assert g.passed == 1
    assert list(snapshot_rejects(g)) == ["book_not_live", "max_order_qty", "no_price", "price_band"]


def test_the_first_failing_check_is_the_one_reported() -> None:
    g = gate()
    everything_wrong = market(Side.BUY, 900)  # too big, over the position, thin book, crosses our ask...

    seen = []
    for state, live, stale in ((TradingState.REDUCING, False, True), (TradingState.ACTIVE, False, True),
                               (TradingState.ACTIVE, True, True), (TradingState.ACTIVE, True, False)):
        g.state = state
        v = view(position=900, live=live, last_market_ts=(T0 - 10 * SEC) if stale else T0, open_orders=9,
                 far_depth=0, own_ask=ASK)
        seen.append(reason(g.check(everything_wrong, v)))

    assert seen == ["reducing_only", "book_not_live", "feed_stale", "max_order_qty"]
    assert sum(g.rejects.values()) == 4, "one reject per intent, under its first reason"


def test_a_reject_carries_the_intent_and_names_the_symbol() -> None:
    intent = market(Side.BUY, 501)

    result = gate().check(intent, view())

    assert result is not None and result.intent is intent and result.detail.startswith(f"{SYM}:")


# --- property: a passed order never grows the worst case past a limit -----------------------------------

LOT = Decimal("0.001")


@st.composite
def checks(draw: st.DrawFn) -> tuple[OrderIntent, RiskView, TradingState]:
    side = draw(st.sampled_from(Side))
    qty = draw(st.integers(1, 1500))
    px = draw(st.integers(90_000, 110_000))
    kind = draw(st.sampled_from(["market", "limit", "flatten"]))
    if kind == "market":
        intent = market(side, qty)
    else:
        intent = limit(side, qty, px, reduce_only=kind == "flatten", tag=FLATTEN_TAG if kind == "flatten" else "")
    v = view(position=draw(st.integers(-3000, 3000)), open_buy=draw(st.integers(0, 1500)),
             open_sell=draw(st.integers(0, 1500)), live=draw(st.booleans()),
             ref_price=draw(st.one_of(st.none(), st.integers(90_000, 110_000))),
             open_orders=draw(st.integers(0, 5)), far_depth=draw(st.integers(0, 3000)))
    return intent, v, draw(st.sampled_from(TradingState))


@settings(max_examples=200, deadline=None)
@given(pos_lots=st.integers(1, 3000), order_lots=st.integers(1, 3000), notional=st.integers(1, 5_000),
       sequence=st.lists(checks(), min_size=1, max_size=20))
def test_passed_orders_keep_worst_case_within_limits_or_reduce_it(
        pos_lots: int, order_lots: int, notional: int,
        sequence: list[tuple[OrderIntent, RiskView, TradingState]]) -> None:
    order_lots = min(order_lots, pos_lots)
    g = gate(max_position=float(pos_lots * LOT), max_order_qty=float(order_lots * LOT), max_notional=float(notional),
             max_order_notional=1e9, max_orders_per_second=1000, max_orders_per_minute=1000)

    for intent, v, state in sequence:
        g.state = state
        if g.check(intent, v) is not None:
            continue
        sign = int(intent.side)
        worst = v.position + sign * ((v.open_buy if sign > 0 else v.open_sell) + intent.qty)
        reduces = worst == 0 or ((worst > 0) == (v.position > 0) and abs(worst) < abs(v.position))
        assert v.book_live and intent.qty <= order_lots and v.open_orders < 3
        assert abs(worst) <= pos_lots or reduces
        px = intent.limit_px if intent.order_type is OrderType.LIMIT else v.ref_price
        assert px is not None
        assert abs(worst * LOT * px * Decimal("0.01")) <= notional or reduces
        assert state is TradingState.ACTIVE or reduces
        assert state is not TradingState.HALTED or (intent.tag == FLATTEN_TAG and intent.reduce_only)
    assert g.passed + sum(g.rejects.values()) == len(sequence)
