"""PaperBroker: latency, matching against a real Book, consumed liquidity, fees, cancels, lifecycle."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest

from daemon.book.book import Book
from daemon.brokers.base import Broker
from daemon.brokers.lifecycle import TERMINAL, TRANSITIONS, OrderEvent, OrderState, next_state
from daemon.brokers.paper import PaperBroker
from daemon.clock import ReplayClock
from daemon.errors import IllegalTransition
from daemon.events import (
    BrokerEvent,
    Fill,
    Liquidity,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    OrderType,
    Side,
    Trade,
)
from daemon.instruments import Instrument

SYM = "BTCUSDT"
INST = Instrument(SYM, tick_size=0.01, lot_size=0.001)
T0 = 1_000
Levels = Sequence[tuple[int, int]]


def _levels(levels: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    px = np.array([p for p, _ in levels], dtype=np.int64)
    qty = np.array([q for _, q in levels], dtype=np.int64)
    return px, qty


@dataclass
class Rig:
    """A broker wired to a ReplayClock and one real Book, recording every event it emits."""

    clock: ReplayClock
    book: Book
    broker: PaperBroker
    events: list[BrokerEvent] = field(default_factory=list)

    def at(self, t: int) -> list[BrokerEvent]:
        """Advance the clock to t and return the events emitted meanwhile."""
        start = len(self.events)
        self.clock.advance_to(t)
        return self.events[start:]

    def delta(self, bids: Levels = (), asks: Levels = ()) -> list[BrokerEvent]:
        """Apply a book delta the way the engine does (book first, then on_book)."""
        start = len(self.events)
        self.book.apply_delta(*_levels(bids), *_levels(asks))
        self.broker.on_book(SYM)
        return self.events[start:]

    def snapshot(self, bids: Levels, asks: Levels) -> list[BrokerEvent]:
        start = len(self.events)
        self.book.apply_snapshot(*_levels(bids), *_levels(asks))
        self.broker.on_book(SYM, snapshot=True)
        return self.events[start:]

    def trade(self, side: Side, price: int, qty: int) -> list[BrokerEvent]:
        start = len(self.events)
        t = self.clock.now()
        self.broker.on_trade(Trade(SYM, t, t, price, qty, side))
        return self.events[start:]


def make_rig(bids: Levels = ((9_900, 5),), asks: Levels = ((10_100, 5),),
             latency_ns: int = 0, taker_fee_bps: float = 0.0, maker_fee_bps: float = 0.0) -> Rig:
    clock = ReplayClock()
    clock.advance_to(T0)
    book = Book(SYM)
    book.apply_snapshot(*_levels(bids), *_levels(asks))
    events: list[BrokerEvent] = []
    broker = PaperBroker(clock, {SYM: book}, {SYM: INST}, events.append, latency_ns=latency_ns,
                         taker_fee_bps=taker_fee_bps, maker_fee_bps=maker_fee_bps)
    return Rig(clock, book, broker, events)


def market(cid: str, side: Side, qty: int, symbol: str = SYM) -> Order:
    return Order(cid, symbol, 0, side, qty, OrderType.MARKET)


def limit(cid: str, side: Side, qty: int, px: int | None) -> Order:
    return Order(cid, SYM, 0, side, qty, OrderType.LIMIT, px)


def fills(events: list[BrokerEvent]) -> list[tuple[int, int, Liquidity]]:
    return [(e.price, e.qty, e.liquidity) for e in events if isinstance(e, Fill)]


# --- port ----------------------------------------------------------------------------------------


def test_paper_broker_satisfies_broker_protocol() -> None:
    rig = make_rig()

    broker: Broker = rig.broker

    assert broker.open_orders() == []


# --- latency -------------------------------------------------------------------------------------


def test_nothing_happens_before_latency_elapses() -> None:
    rig = make_rig(latency_ns=100)

    rig.broker.submit(market("a", Side.BUY, 1))

    assert rig.at(T0 + 99) == []
    assert rig.broker.open_orders()[0].state is OrderState.PENDING_NEW


def test_order_arrives_after_latency_and_is_accepted_then_filled_at_arrival_time() -> None:
    rig = make_rig(latency_ns=100)
    rig.broker.submit(market("a", Side.BUY, 1))

    out = rig.at(T0 + 100)

    assert out[0] == OrderAccepted("a", SYM, T0 + 100)
    assert isinstance(out[1], Fill) and out[1].ts == T0 + 100


def test_order_fills_at_the_book_as_of_arrival_not_as_of_submit() -> None:
    rig = make_rig(asks=[(10_100, 5)], latency_ns=100)
    rig.broker.submit(market("a", Side.BUY, 2))
    rig.at(T0 + 50)

    rig.delta(asks=[(10_100, 0), (10_200, 5)])
    out = rig.at(T0 + 100)

    assert fills(out) == [(10_200, 2, Liquidity.TAKER)]


def test_zero_latency_order_lands_at_next_clock_advance_with_submit_time() -> None:
    rig = make_rig()
    rig.broker.submit(market("a", Side.BUY, 1))

    out = rig.at(T0)

    assert out[0] == OrderAccepted("a", SYM, T0)


# --- market orders -------------------------------------------------------------------------------


def test_market_buy_walks_asks_from_best_level_at_each_level_price() -> None:
    rig = make_rig(asks=[(10_100, 2), (10_200, 3), (10_300, 5)])
    rig.broker.submit(market("a", Side.BUY, 4))

    out = rig.at(T0)

    assert fills(out) == [(10_100, 2, Liquidity.TAKER), (10_200, 2, Liquidity.TAKER)]
    assert rig.broker.open_orders() == []


def test_market_sell_walks_bids_from_best_level() -> None:
    rig = make_rig(bids=[(9_900, 1), (9_800, 4)])
    rig.broker.submit(market("a", Side.SELL, 3))

    out = rig.at(T0)

    assert fills(out) == [(9_900, 1, Liquidity.TAKER), (9_800, 2, Liquidity.TAKER)]


def test_market_order_never_fills_beyond_shown_depth_and_cancels_the_rest() -> None:
    rig = make_rig(asks=[(10_100, 2), (10_200, 3)])
    rig.broker.submit(market("a", Side.BUY, 10))

    out = rig.at(T0)

    assert sum(q for _, q, _ in fills(out)) == 5
    assert out[-1] == OrderCanceled("a", SYM, T0, "insufficient_depth", 5)
    assert rig.broker.open_orders() == []


def test_market_order_on_empty_side_is_rejected_no_liquidity() -> None:
    rig = make_rig(asks=[])
    rig.broker.submit(market("a", Side.BUY, 1))

    out = rig.at(T0)

    assert out == [OrderRejected("a", SYM, T0, "no_liquidity")]
    assert rig.broker.stats["rejects"] == {"no_liquidity": 1}


# --- limit orders --------------------------------------------------------------------------------


def test_marketable_limit_takes_up_to_its_price_then_rests_as_maker() -> None:
    rig = make_rig(asks=[(10_100, 2), (10_200, 3)])
    rig.broker.submit(limit("a", Side.BUY, 5, 10_100))

    out = rig.at(T0)

    assert fills(out) == [(10_100, 2, Liquidity.TAKER)]
    [open_order] = rig.broker.open_orders()
    assert (open_order.filled_qty, open_order.leaves_qty) == (2, 3)
    assert open_order.state is OrderState.PARTIALLY_FILLED


def test_non_marketable_limit_rests_without_fills() -> None:
    rig = make_rig()
    rig.broker.submit(limit("a", Side.BUY, 5, 10_000))

    out = rig.at(T0)

    assert out == [OrderAccepted("a", SYM, T0)]
    assert rig.broker.open_orders()[0].state is OrderState.NEW


def test_resting_buy_filled_by_sell_trade_at_its_price() -> None:
    rig = make_rig()
    rig.broker.submit(limit("a", Side.BUY, 5, 10_000))
    rig.at(T0)

    out = rig.trade(Side.SELL, 10_000, 2)

    assert fills(out) == [(10_000, 2, Liquidity.MAKER)]


def test_resting_buy_filled_at_own_price_by_trade_through_it_up_to_leaves() -> None:
    rig = make_rig()
    rig.broker.submit(limit("a", Side.BUY, 5, 10_000))
    rig.at(T0)

    out = rig.trade(Side.SELL, 9_990, 50)

    assert fills(out) == [(10_000, 5, Liquidity.MAKER)]
    assert rig.broker.open_orders() == []


def test_resting_buy_ignores_buy_aggressor_and_trades_above_its_price() -> None:
    rig = make_rig()
    rig.broker.submit(limit("a", Side.BUY, 5, 10_000))
    rig.at(T0)

    out = rig.trade(Side.BUY, 9_990, 5) + rig.trade(Side.SELL, 10_010, 5)

    assert out == []


def test_resting_sell_filled_by_buy_trade_at_or_through_its_price() -> None:
    rig = make_rig()
    rig.broker.submit(limit("a", Side.SELL, 5, 10_050))
    rig.at(T0)

    out = rig.trade(Side.BUY, 10_060, 3)

    assert fills(out) == [(10_050, 3, Liquidity.MAKER)]


def test_trade_qty_is_shared_among_resting_orders_by_price_then_arrival() -> None:
    rig = make_rig()
    rig.broker.submit(limit("low", Side.BUY, 2, 10_000))
    rig.broker.submit(limit("high_first", Side.BUY, 2, 10_010))
    rig.broker.submit(limit("high_second", Side.BUY, 2, 10_010))
    rig.at(T0)

    out = rig.trade(Side.SELL, 10_000, 3)

    assert [(e.client_id, e.qty) for e in out if isinstance(e, Fill)] == [("high_first", 2),
                                                                         ("high_second", 1)]


def test_resting_buy_filled_at_own_price_when_book_crosses_it() -> None:
    rig = make_rig()
    rig.broker.submit(limit("a", Side.BUY, 5, 10_000))
    rig.at(T0)

    out = rig.delta(asks=[(9_990, 1), (10_000, 1), (10_010, 9)])

    assert fills(out) == [(10_000, 2, Liquidity.MAKER)]
    assert rig.broker.open_orders()[0].leaves_qty == 3


def test_resting_sell_filled_when_book_crosses_it() -> None:
    rig = make_rig()
    rig.broker.submit(limit("a", Side.SELL, 2, 10_050))
    rig.at(T0)

    out = rig.delta(bids=[(10_060, 7)])

    assert fills(out) == [(10_050, 2, Liquidity.MAKER)]


# --- consumed liquidity --------------------------------------------------------------------------


def test_liquidity_taken_by_one_order_is_not_taken_again_by_the_next() -> None:
    rig = make_rig(asks=[(10_100, 2), (10_200, 5)])
    rig.broker.submit(market("a", Side.BUY, 2))
    rig.broker.submit(market("b", Side.BUY, 2))

    out = rig.at(T0)

    assert [(e.client_id, e.price, e.qty) for e in out if isinstance(e, Fill)] == [
        ("a", 10_100, 2), ("b", 10_200, 2)]


def test_consumed_liquidity_survives_unrelated_book_changes() -> None:
    rig = make_rig(asks=[(10_100, 2)])
    rig.broker.submit(market("a", Side.BUY, 2))
    rig.at(T0 + 1)

    rig.delta(bids=[(9_950, 1)])
    rig.broker.submit(market("b", Side.BUY, 1))
    out = rig.at(T0 + 1)

    assert out == [OrderRejected("b", SYM, T0 + 1, "no_liquidity")]


def test_consumed_liquidity_resets_when_level_size_changes() -> None:
    rig = make_rig(asks=[(10_100, 2)])
    rig.broker.submit(market("a", Side.BUY, 2))
    rig.at(T0)

    rig.delta(asks=[(10_100, 4)])
    rig.broker.submit(market("b", Side.BUY, 3))
    out = rig.at(T0 + 1)

    assert fills(out) == [(10_100, 3, Liquidity.TAKER)]


def test_snapshot_clears_consumed_liquidity_even_at_the_same_size() -> None:
    rig = make_rig(asks=[(10_100, 2)])
    rig.broker.submit(market("a", Side.BUY, 2))
    rig.at(T0)

    rig.snapshot(bids=[(9_900, 5)], asks=[(10_100, 2)])
    rig.broker.submit(market("b", Side.BUY, 2))
    out = rig.at(T0 + 1)

    assert fills(out) == [(10_100, 2, Liquidity.TAKER)]


def test_book_cross_does_not_reuse_liquidity_taken_on_arrival() -> None:
    rig = make_rig(asks=[(10_100, 2)])
    rig.broker.submit(limit("a", Side.BUY, 5, 10_100))
    rig.at(T0)

    out = rig.delta(bids=[(9_950, 1)])

    assert out == []
    assert rig.broker.open_orders()[0].leaves_qty == 3


# --- fees ----------------------------------------------------------------------------------------


def test_taker_fee_is_price_times_qty_times_bps_in_quote() -> None:
    rig = make_rig(asks=[(10_000, 2_000)], taker_fee_bps=10.0, maker_fee_bps=2.0)
    rig.broker.submit(market("a", Side.BUY, 2_000))

    [fill] = [e for e in rig.at(T0) if isinstance(e, Fill)]

    assert fill.fee == pytest.approx(100.0 * 2.0 * 10.0 / 1e4)


def test_maker_fee_charged_on_resting_fill() -> None:
    rig = make_rig(taker_fee_bps=10.0, maker_fee_bps=2.0)
    rig.broker.submit(limit("a", Side.BUY, 1_000, 10_000))
    rig.at(T0)

    [fill] = rig.trade(Side.SELL, 10_000, 1_000)

    assert fill.liquidity is Liquidity.MAKER
    assert fill.fee == pytest.approx(100.0 * 1.0 * 2.0 / 1e4)


def test_negative_maker_bps_is_a_rebate() -> None:
    rig = make_rig(maker_fee_bps=-1.0)
    rig.broker.submit(limit("a", Side.SELL, 1_000, 10_200))
    rig.at(T0)

    [fill] = rig.trade(Side.BUY, 10_200, 1_000)

    assert fill.fee == pytest.approx(-102.0 * 1.0 * 1.0 / 1e4)


# --- cancels -------------------------------------------------------------------------------------


def test_cancel_takes_latency_to_arrive_and_reports_leaves() -> None:
    rig = make_rig(latency_ns=100)
    rig.broker.submit(limit("a", Side.BUY, 5, 10_000))
    rig.at(T0 + 100)
    rig.broker.cancel("a")

    assert rig.at(T0 + 199) == []
    assert rig.broker.open_orders()[0].state is OrderState.PENDING_CANCEL
    assert rig.at(T0 + 200) == [OrderCanceled("a", SYM, T0 + 200, "requested", 5)]
    assert rig.broker.open_orders() == []


def test_fill_before_cancel_arrives_stands() -> None:
    rig = make_rig(latency_ns=100)
    rig.broker.submit(limit("a", Side.BUY, 5, 10_000))
    rig.at(T0 + 100)
    rig.broker.cancel("a")
    rig.at(T0 + 150)

    filled = rig.trade(Side.SELL, 10_000, 2)
    out = rig.at(T0 + 200)

    assert fills(filled) == [(10_000, 2, Liquidity.MAKER)]
    assert out == [OrderCanceled("a", SYM, T0 + 200, "requested", 3)]


def test_cancel_of_order_filled_before_cancel_arrives_is_counted_late() -> None:
    rig = make_rig(latency_ns=100)
    rig.broker.submit(limit("a", Side.BUY, 5, 10_000))
    rig.at(T0 + 100)
    rig.broker.cancel("a")
    rig.trade(Side.SELL, 10_000, 5)

    out = rig.at(T0 + 200)

    assert out == []
    assert rig.broker.stats["cancel_late"] == 1


def test_cancel_of_unknown_or_finished_order_sends_nothing_and_is_counted() -> None:
    rig = make_rig()
    rig.broker.submit(market("a", Side.BUY, 1))
    rig.at(T0)
    before = list(rig.events)

    rig.broker.cancel("nope")
    rig.broker.cancel("a")
    rig.at(T0 + 1_000)

    assert rig.events == before
    assert rig.broker.stats["cancel_unknown"] == 2


def test_second_cancel_in_flight_is_ignored_and_counted() -> None:
    rig = make_rig(latency_ns=100)
    rig.broker.submit(limit("a", Side.BUY, 5, 10_000))
    rig.at(T0 + 100)

    rig.broker.cancel("a")
    rig.broker.cancel("a")
    out = rig.at(T0 + 200)

    assert out == [OrderCanceled("a", SYM, T0 + 200, "requested", 5)]
    assert rig.broker.stats["cancel_duplicate"] == 1


def test_cancel_while_order_in_flight_cancels_it_after_it_lands() -> None:
    rig = make_rig(latency_ns=100)
    rig.broker.submit(limit("a", Side.BUY, 5, 10_000))
    rig.at(T0 + 10)
    rig.broker.cancel("a")

    out = rig.at(T0 + 110)

    assert out == [OrderAccepted("a", SYM, T0 + 100), OrderCanceled("a", SYM, T0 + 110, "requested", 5)]


# --- rejects -------------------------------------------------------------------------------------


def test_duplicate_client_id_is_rejected_and_first_order_unaffected() -> None:
    rig = make_rig()
    rig.broker.submit(limit("a", Side.BUY, 5, 10_000))

    rig.broker.submit(limit("a", Side.SELL, 1, 10_500))
    rig.at(T0)

    assert rig.events == [OrderRejected("a", SYM, T0, "duplicate_client_id"), OrderAccepted("a", SYM, T0)]
    [open_order] = rig.broker.open_orders()
    assert open_order.order.side is Side.BUY


@pytest.mark.parametrize(("order", "reason"), [
    (market("a", Side.BUY, 1, symbol="ETHUSDT"), "unknown_symbol"),
    (market("a", Side.BUY, 0), "invalid_qty"),
    (limit("a", Side.BUY, -1, 10_000), "invalid_qty"),
    (limit("a", Side.BUY, 1, None), "missing_limit_price"),
    (Order("a", SYM, 0, Side.BUY, 1, OrderType.MARKET, 10_000), "unexpected_limit_price"),
])
def test_invalid_order_is_rejected_on_submit_with_reason(order: Order, reason: str) -> None:
    rig = make_rig()

    rig.broker.submit(order)

    assert rig.events == [OrderRejected("a", order.symbol, T0, reason)]
    assert rig.broker.stats["rejects"] == {reason: 1}
    assert rig.broker.open_orders() == []


# --- stats ---------------------------------------------------------------------------------------


def test_stats_count_orders_fills_by_liquidity_cancels_and_rejects() -> None:
    rig = make_rig(asks=[(10_100, 1)])
    rig.broker.submit(market("m", Side.BUY, 3))
    rig.broker.submit(limit("l", Side.BUY, 1, 10_000))
    rig.broker.submit(market("x", Side.BUY, 0))
    rig.at(T0)

    rig.trade(Side.SELL, 10_000, 1)

    assert rig.broker.stats == {
        "orders": 3, "fills": 2, "maker_fills": 1, "taker_fills": 1, "cancels": 1, "cancel_requests": 0,
        "cancel_unknown": 0, "cancel_duplicate": 0, "cancel_late": 0, "rejects": {"invalid_qty": 1}}


def test_trade_ids_are_sequential_and_deterministic() -> None:
    rig = make_rig(asks=[(10_100, 1), (10_200, 1)])
    rig.broker.submit(market("a", Side.BUY, 2))

    out = rig.at(T0)

    assert [e.trade_id for e in out if isinstance(e, Fill)] == ["paper-1", "paper-2"]


# --- lifecycle -----------------------------------------------------------------------------------


def test_illegal_lifecycle_transition_raises_naming_state_and_event() -> None:
    with pytest.raises(IllegalTransition) as info:
        next_state(OrderState.FILLED, OrderEvent.PARTIAL_FILL, "order a")

    assert (info.value.machine, info.value.state, info.value.event) == ("order a", "FILLED", "PARTIAL_FILL")
    assert "FILLED" in str(info.value) and "PARTIAL_FILL" in str(info.value)


def test_lifecycle_table_covers_every_state_and_only_terminal_states_are_dead_ends() -> None:
    assert set(TRANSITIONS) == set(OrderState)
    assert set(TERMINAL) == {OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED, OrderState.EXPIRED}


def test_lifecycle_happy_path_reaches_filled() -> None:
    state = OrderState.PENDING_NEW

    for event in (OrderEvent.ACCEPT, OrderEvent.PARTIAL_FILL, OrderEvent.FULL_FILL):
        state = next_state(state, event)

    assert state is OrderState.FILLED


# --- determinism ---------------------------------------------------------------------------------


def _scenario() -> tuple[list[BrokerEvent], dict]:
    rig = make_rig(bids=[(9_900, 5), (9_800, 5)], asks=[(10_100, 3), (10_200, 4), (10_300, 9)],
                   latency_ns=50, taker_fee_bps=5.0, maker_fee_bps=-1.0)
    rig.broker.submit(market("m1", Side.BUY, 4))
    rig.broker.submit(limit("l1", Side.BUY, 6, 10_000))
    rig.broker.submit(limit("l2", Side.SELL, 3, 10_250))
    rig.broker.submit(limit("l3", Side.BUY, 2, 10_000))
    rig.at(T0 + 60)
    rig.delta(asks=[(10_000, 3), (10_100, 0)])
    rig.trade(Side.SELL, 9_990, 4)
    rig.broker.cancel("l3")
    rig.broker.cancel("l1")
    rig.broker.submit(market("m2", Side.SELL, 20))
    rig.at(T0 + 200)
    rig.trade(Side.BUY, 10_300, 10)
    return rig.events, rig.broker.stats


def test_same_sequence_twice_gives_identical_events() -> None:
    first_events, first_stats = _scenario()

    second_events, second_stats = _scenario()

    assert len(first_events) > 10
    assert first_events == second_events
    assert first_stats == second_stats


def test_remembered_client_ids_are_bounded_but_recent_duplicates_are_refused() -> None:
    from daemon.brokers.paper import USED_ID_WINDOW

    rig = make_rig()
    for i in range(USED_ID_WINDOW + 10):
        rig.broker.submit(Order(f"c{i}", SYM, T0, Side.BUY, 1, OrderType.LIMIT, 1))

    assert len(rig.broker._used_ids) == USED_ID_WINDOW
    rig.events.clear()
    rig.broker.submit(Order(f"c{USED_ID_WINDOW}", SYM, T0, Side.BUY, 1, OrderType.LIMIT, 1))
    assert [(type(e).__name__, e.reason) for e in rig.events] == [("OrderRejected", "duplicate_client_id")]
