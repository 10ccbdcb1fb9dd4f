"""OrderTracker: venue reports applied once and in any order; each change emitted exactly once."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.brokers.base import OpenOrder
from daemon.brokers.lifecycle import OrderEvent, OrderState
from daemon.brokers.orders import OrderRecord, OrderTracker
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
)

S = OrderState
SYM = "BTCUSDT"
CID = "dd1-0-0"


def order(cid: str = CID, qty: int = 10, symbol: str = SYM, side: Side = Side.BUY) -> Order:
    return Order(cid, symbol, 1, side, qty, OrderType.LIMIT, 100)


def fill(trade_id: str, qty: int, cid: str = CID, ts: int = 5, side: Side = Side.BUY, symbol: str = SYM) -> Fill:
    return Fill(cid, symbol, ts, side, 100, qty, 0.01 * qty, Liquidity.MAKER, trade_id)


def tracker(*orders: Order) -> OrderTracker:
    t = OrderTracker()
    for o in orders or (order(),):
        t.add(o)
    return t


def state(t: OrderTracker, cid: str = CID) -> OrderState:
    view = t.get(cid)
    assert view is not None
    return view.state


# --- acks, fills, duplicates --------------------------------------------------------------------


def test_ack_then_fills_emit_each_change_once() -> None:
    t = tracker()

    out = t.accepted(CID, 2, venue_id="77") + t.fill(fill("a", 4)) + t.fill(fill("b", 6))

    assert out == [OrderAccepted(CID, SYM, 2), fill("a", 4), fill("b", 6)]
    assert state(t) is S.FILLED and t.open_orders() == [] and t.venue_id(CID) == "77"


def test_duplicate_fill_is_ignored_and_counted() -> None:
    t = tracker()
    t.accepted(CID, 2)
    t.fill(fill("a", 4))

    assert t.fill(fill("a", 4)) == []
    assert t.stats["duplicate_fill"] == 1
    assert t.get(CID) == OpenOrder(order(), 4, 6, S.PARTIALLY_FILLED)


def test_fill_before_the_ack_implies_the_ack() -> None:
    t = tracker()

    out = t.fill(fill("a", 4, ts=3))

    assert out == [OrderAccepted(CID, SYM, 3), fill("a", 4, ts=3)]
    assert t.accepted(CID, 4) == [] and t.stats["duplicate_accept"] == 1


def test_overfill_is_not_applied_and_is_reported() -> None:
    t = tracker()
    t.fill(fill("a", 8))

    assert t.fill(fill("b", 3)) == []

    assert t.get(CID) == OpenOrder(order(), 8, 2, S.PARTIALLY_FILLED)
    assert t.stats["overfill"] == 1
    [d] = t.take_discrepancies()
    assert (d.client_id, d.kind) == (CID, "overfill") and "'b'" in d.detail
    assert t.take_discrepancies() == []


@pytest.mark.parametrize(("bad", "problem"), [(fill("a", 1, side=Side.SELL), "side"),
                                              (fill("a", 1, symbol="ETHUSDT"), "symbol"),
                                              (fill("a", 0), "qty"), (fill("", 1), "trade id")])
def test_fill_that_cannot_belong_to_the_order_is_refused(bad: Fill, problem: str) -> None:
    t = tracker()

    assert t.fill(bad) == []

    [d] = t.take_discrepancies()
    assert d.kind == "bad_fill" and problem in d.detail
    assert state(t) is S.PENDING_NEW


def test_reports_for_an_untracked_order_are_counted_not_applied() -> None:
    t = tracker()

    assert t.fill(fill("a", 1, cid="other-0-0")) == [] and t.accepted("other-0-0", 1) == []

    assert t.stats["unknown_order"] == 2
    assert {d.kind for d in t.take_discrepancies()} == {"unknown_order"}


# --- rejects, cancels, expiries -----------------------------------------------------------------


def test_reject_then_late_reports_are_ignored() -> None:
    t = tracker()

    assert t.rejected(CID, 2, "insufficient_balance") == [OrderRejected(CID, SYM, 2, "insufficient_balance")]
    assert t.accepted(CID, 3) == [] and t.rejected(CID, 3, "x") == []
    assert t.stats["late_accept"] == 1 and t.stats["late_reject"] == 1


def test_reject_after_ack_is_a_discrepancy() -> None:
    t = tracker()
    t.accepted(CID, 2)

    assert t.rejected(CID, 3, "x") == []

    assert state(t) is S.NEW and [d.kind for d in t.take_discrepancies()] == ["reject_after_ack"]


def test_cancel_emits_leaves_and_a_late_cancel_is_counted() -> None:
    t = tracker()
    t.fill(fill("a", 4))
    assert t.request_cancel(CID, 6) is True
    assert state(t) is S.PENDING_CANCEL

    assert t.canceled(CID, 7, filled_qty=4) == [OrderCanceled(CID, SYM, 7, "canceled", 6)]
    assert t.canceled(CID, 8) == [] and t.stats["late_cancel"] == 1
    assert t.request_cancel(CID, 9) is False and t.stats["cancel_late"] == 1


def test_second_cancel_request_is_not_sent_again() -> None:
    t = tracker()
    t.accepted(CID, 2)

    assert t.request_cancel(CID, 3) is True and t.request_cancel(CID, 4) is False
    assert t.stats["cancel_duplicate"] == 1


def test_expiry_reaches_the_engine_as_a_cancel_with_reason_expired() -> None:
    t = tracker()
    t.fill(fill("a", 3))

    assert t.expired(CID, 5, filled_qty=3) == [OrderCanceled(CID, SYM, 5, "expired", 7)]
    assert state(t) is S.EXPIRED


def test_cancel_racing_the_final_fill_ends_filled() -> None:
    t = tracker()
    t.fill(fill("a", 4))
    t.request_cancel(CID, 5)

    assert t.canceled(CID, 6, filled_qty=10) == []
    assert t.fills_to_fetch() == {CID: 6} and state(t) is S.PENDING_CANCEL

    assert t.fill(fill("b", 6, ts=7)) == [fill("b", 6, ts=7)]
    assert state(t) is S.FILLED and t.fills_to_fetch() == {}


def test_cancel_with_fills_still_in_flight_is_held_until_they_arrive() -> None:
    t = tracker()
    t.accepted(CID, 2)

    assert t.canceled(CID, 6, filled_qty=3) == []
    assert t.fill(fill("a", 1, ts=7)) == [fill("a", 1, ts=7)]
    assert t.fill(fill("b", 2, ts=8)) == [fill("b", 2, ts=8), OrderCanceled(CID, SYM, 8, "canceled", 7)]
    assert state(t) is S.CANCELED


def test_new_fill_after_a_cancel_is_applied_and_flagged() -> None:
    t = tracker()
    t.accepted(CID, 2)
    t.canceled(CID, 3)

    assert t.fill(fill("a", 2)) == [fill("a", 2)]

    assert t.get(CID) == OpenOrder(order(), 2, 8, S.CANCELED)
    assert [d.kind for d in t.take_discrepancies()] == ["fill_after_terminal"]
    assert t.fill(fill("a", 2)) == [] and t.stats["duplicate_fill"] == 1


def test_refused_cancel_returns_the_order_to_work() -> None:
    t = tracker()
    t.fill(fill("a", 4))
    t.request_cancel(CID, 5)

    assert t.cancel_rejected(CID, 6, "too_late") == []

    assert state(t) is S.PARTIALLY_FILLED and not t.cancel_requested(CID)
    assert t.request_cancel(CID, 7) is True


# --- status snapshots ---------------------------------------------------------------------------


def test_status_with_more_filled_lists_fills_to_fetch_and_invents_none() -> None:
    t = tracker()

    out = t.status(CID, 3, S.PARTIALLY_FILLED, 4, venue_id="77")

    assert out == [OrderAccepted(CID, SYM, 3)]
    assert t.get(CID) == OpenOrder(order(), 0, 10, S.NEW)
    assert t.fills_to_fetch() == {CID: 4}
    t.fill(fill("a", 4))
    assert t.fills_to_fetch() == {} and state(t) is S.PARTIALLY_FILLED


def test_stale_status_is_ignored() -> None:
    t = tracker()
    t.fill(fill("a", 4))

    assert t.status(CID, 9, S.NEW, 0) == []
    assert state(t) is S.PARTIALLY_FILLED and t.stats["stale_status"] == 1


def test_status_filled_waits_for_the_fills() -> None:
    t = tracker()
    t.fill(fill("a", 4))

    assert t.status(CID, 9, S.FILLED, 10) == []
    assert state(t) is S.PARTIALLY_FILLED and t.fills_to_fetch() == {CID: 6}


def test_status_over_the_quantity_is_refused() -> None:
    t = tracker()

    assert t.status(CID, 9, S.PARTIALLY_FILLED, 11) == []
    assert state(t) is S.PENDING_NEW and [d.kind for d in t.take_discrepancies()] == ["bad_status"]


@pytest.mark.parametrize("bad", [S.UNKNOWN, S.PENDING_NEW])
def test_status_refuses_states_only_we_use(bad: OrderState) -> None:
    with pytest.raises(ValueError, match="not a state a venue reports"):
        tracker().status(CID, 1, bad, 0)


# --- UNKNOWN ------------------------------------------------------------------------------------


def test_send_timeout_makes_the_order_unknown_until_looked_up() -> None:
    t = tracker()

    assert t.send_timeout(CID, 2) == []

    assert state(t) is S.UNKNOWN and t.needs_lookup() == [CID]
    assert t.status(CID, 3, S.NEW, 0) == [OrderAccepted(CID, SYM, 3)]
    assert state(t) is S.NEW and t.needs_lookup() == []


def test_unknown_order_the_venue_never_had_is_rejected_not_found() -> None:
    t = tracker()
    t.send_timeout(CID, 2)

    assert t.not_found(CID, 3) == [OrderRejected(CID, SYM, 3, "not_found")]
    assert state(t) is S.REJECTED


def test_not_found_for_an_acknowledged_order_is_a_discrepancy() -> None:
    t = tracker()
    t.accepted(CID, 2)

    assert t.not_found(CID, 3) == []
    assert state(t) is S.NEW and [d.kind for d in t.take_discrepancies()] == ["not_found_but_known"]


def test_fill_while_unknown_resolves_it() -> None:
    t = tracker()
    t.send_timeout(CID, 2)

    assert t.fill(fill("a", 10, ts=4)) == [OrderAccepted(CID, SYM, 4), fill("a", 10, ts=4)]
    assert state(t) is S.FILLED


def test_cancel_while_unknown_is_remembered_until_found() -> None:
    t = tracker()
    t.send_timeout(CID, 2)

    assert t.request_cancel(CID, 3) is True
    assert state(t) is S.UNKNOWN and t.cancel_requested(CID)
    t.accepted(CID, 4)
    assert state(t) is S.PENDING_CANCEL


def test_timeout_after_the_ack_changes_nothing() -> None:
    t = tracker()
    t.accepted(CID, 2)

    assert t.send_timeout(CID, 3) == []
    assert state(t) is S.NEW and t.stats["timeout_after_ack"] == 1


def test_in_flight_order_with_a_cancel_times_out_to_unknown_keeping_the_cancel() -> None:
    t = tracker()
    t.request_cancel(CID, 2)
    t.send_timeout(CID, 3)

    assert state(t) is S.UNKNOWN and t.cancel_requested(CID)


# --- views, memory ------------------------------------------------------------------------------


def test_open_orders_in_submission_order_by_symbol() -> None:
    a, b, c = order("dd1-0-0"), order("dd1-0-1", symbol="ETHUSDT"), order("dd1-0-2", qty=3)
    t = tracker(a, b, c)
    t.send_timeout("dd1-0-1", 2)
    t.fill(fill("x", 3, cid="dd1-0-2"))

    assert [o.order.client_id for o in t.open_orders()] == ["dd1-0-0", "dd1-0-1"]
    assert t.open_orders("ETHUSDT") == [OpenOrder(b, 0, 10, S.UNKNOWN)]


def test_a_client_id_is_tracked_once() -> None:
    t = tracker()

    with pytest.raises(ValueError, match="already tracked"):
        t.add(order())


def test_only_the_latest_finished_orders_are_remembered() -> None:
    t = OrderTracker(keep_terminal=2)
    for i in range(4):
        t.add(order(f"dd1-0-{i}"))
        t.rejected(f"dd1-0-{i}", 1, "x")

    assert [t.get(f"dd1-0-{i}") is None for i in range(4)] == [True, True, False, False]


# --- restore ------------------------------------------------------------------------------------


def test_restore_gives_back_the_same_tracker() -> None:
    t = tracker(order("dd1-0-0"), order("dd1-0-1"), order("dd1-0-2"))
    fills = t.fill(fill("a", 4, cid="dd1-0-0")) + t.fill(fill("b", 10, cid="dd1-0-1"))
    t.status("dd1-0-0", 5, S.PARTIALLY_FILLED, 6)
    t.accepted("dd1-0-2", 5, venue_id="9")
    t.request_cancel("dd1-0-2", 6)

    back = OrderTracker.restore(t.records(), [e for e in fills if isinstance(e, Fill)])

    assert back.records() == t.records()
    assert back.open_orders() == t.open_orders() and back.fills_to_fetch() == t.fills_to_fetch()
    assert back.fill(fill("a", 4, cid="dd1-0-0")) == [] and back.stats["duplicate_fill"] == 1


def test_restore_makes_in_flight_orders_unknown() -> None:
    t = tracker(order("dd1-0-0"), order("dd1-0-1"))
    t.request_cancel("dd1-0-1", 2)

    back = OrderTracker.restore(t.records(), [])

    assert back.needs_lookup() == ["dd1-0-0", "dd1-0-1"]
    assert back.cancel_requested("dd1-0-1") and not back.cancel_requested("dd1-0-0")


@pytest.mark.parametrize(("records", "fills", "problem"), [
    ([OrderRecord(order(), S.PARTIALLY_FILLED, 4, acked=True)], [fill("a", 3)], "fills sum to 3"),
    ([OrderRecord(order(), S.NEW, 0, acked=True)], [fill("a", 3, cid="x-0-0")], "not among the records"),
    ([OrderRecord(order(), S.PARTIALLY_FILLED, 4, acked=True)], [fill("a", 2), fill("a", 2)], "recorded twice"),
    ([OrderRecord(order(), S.NEW), OrderRecord(order(), S.NEW)], [], "never accepted"),
    ([OrderRecord(order(), S.FILLED, 4, acked=True)], [fill("a", 4)], "FILLED with 4"),
    ([OrderRecord(order(), S.NEW, 11, acked=True)], [], "outside"),
    ([OrderRecord(order(), S.PARTIALLY_FILLED, 0, acked=True)], [], "PARTIALLY_FILLED with 0"),
    ([OrderRecord(order(), S.UNKNOWN, 0, acked=True)], [], "accepted or filled"),
    ([OrderRecord(order(), S.NEW, 0, acked=True, pending=OrderEvent.ACCEPT)], [], "held event"),
])
def test_restore_refuses_records_that_do_not_add_up(records: list[OrderRecord], fills: list[Fill],
                                                   problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        OrderTracker.restore(records, fills)


# --- property: any interleaving of a venue's reports ----------------------------------------------

OUTCOMES = ("filled", "canceled", "expired", "rejected", "lost")
TERMINAL_OF = {"filled": S.FILLED, "canceled": S.CANCELED, "expired": S.EXPIRED, "rejected": S.REJECTED,
               "lost": S.REJECTED}


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[str, int, list[int], list[tuple]]:
    """A truth (outcome, quantity, fill sizes) and the reports a venue and our gateway produce for it,
    shuffled and with repeats."""
    qty = draw(st.integers(1, 8))
    outcome = draw(st.sampled_from(OUTCOMES))
    total = qty if outcome == "filled" else draw(st.integers(0, qty - 1)) if outcome in ("canceled", "expired") else 0
    cuts = sorted(draw(st.sets(st.integers(1, total - 1), max_size=4))) if total > 1 else []
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)] if total else []
    reports: list[tuple] = []
    if outcome in ("rejected", "lost"):
        reports += [("rejected",), ("status", S.REJECTED, 0)] if outcome == "rejected" else [("not_found",)]
    else:
        reports += [("accepted",), ("status", S.NEW, 0)]
        cum = 0
        for i, size in enumerate(sizes):
            reports.append(("fill", fill(f"t{i}", size, ts=10 + i)))
            cum += size
            if cum < qty:
                reports.append(("status", S.PARTIALLY_FILLED, cum))
        if outcome == "filled":
            reports.append(("status", S.FILLED, qty))
        else:
            reports += [(outcome, total), ("status", S.CANCELED if outcome == "canceled" else S.EXPIRED, total)]
    if outcome == "lost" or draw(st.booleans()):
        reports.append(("send_timeout",))
    if draw(st.booleans()):
        reports.append(("request_cancel",))
    shuffled = draw(st.permutations(reports))
    for _ in range(draw(st.integers(0, 6))):
        shuffled.insert(draw(st.integers(0, len(shuffled))), draw(st.sampled_from(reports)))
    if outcome == "lost":  # the gateway asks the venue only about an order that timed out
        first_timeout = shuffled.index(("send_timeout",))
        shuffled = [r for i, r in enumerate(shuffled) if r != ("not_found",) or i > first_timeout]
        shuffled.append(("not_found",))
    return outcome, qty, sizes, shuffled


def deliver(t: OrderTracker, report: tuple, ts: int) -> list[BrokerEvent]:
    kind, *args = report
    if kind == "fill":
        return t.fill(args[0])
    if kind == "status":
        return t.status(CID, ts, args[0], args[1], reason="venue_says_no" if args[0] is S.REJECTED else "")
    if kind == "canceled":
        return t.canceled(CID, ts, filled_qty=args[0])
    if kind == "expired":
        return t.expired(CID, ts, filled_qty=args[0])
    if kind == "rejected":
        return t.rejected(CID, ts, "venue_says_no")
    if kind == "request_cancel":
        t.request_cancel(CID, ts)
        return []
    return getattr(t, kind)(CID, ts)


def check_truth(t: OrderTracker, events: list[BrokerEvent], outcome: str, qty: int, sizes: list[int]) -> None:
    view = t.get(CID)
    assert view is not None
    assert view.state is TERMINAL_OF[outcome]
    assert view.filled_qty == sum(sizes)
    kinds = [type(e).__name__ for e in events]
    fills = [e for e in events if isinstance(e, Fill)]
    assert sorted(f.trade_id for f in fills) == sorted(f"t{i}" for i in range(len(sizes)))
    if outcome in ("rejected", "lost"):
        assert kinds == ["OrderRejected"]
        assert events[0].reason == ("not_found" if outcome == "lost" else "venue_says_no")
    else:
        assert kinds[0] == "OrderAccepted" and kinds.count("OrderAccepted") == 1
        ends = [e for e in events if isinstance(e, OrderCanceled)]
        if outcome == "filled":
            assert ends == []
        else:
            assert [(e.reason, e.leaves_qty) for e in ends] == [(outcome, qty - sum(sizes))]
            assert isinstance(events[-1], OrderCanceled)
    assert t.fills_to_fetch() == {} and t.needs_lookup() == [] and t.open_orders() == []
    assert t.take_discrepancies() == []


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_any_interleaving_reaches_the_truth_with_each_change_emitted_once(
        scenario: tuple[str, int, list[int], list[tuple]]) -> None:
    outcome, qty, sizes, reports = scenario
    t = tracker(order(qty=qty))

    events = [e for i, r in enumerate(reports) for e in deliver(t, r, 100 + i)]

    check_truth(t, events, outcome, qty, sizes)


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.data())
def test_restoring_mid_stream_gives_the_same_outcome_as_running_through(
        scenario: tuple[str, int, list[int], list[tuple]], data: st.DataObject) -> None:
    outcome, qty, sizes, reports = scenario
    cut = data.draw(st.integers(0, len(reports)))
    live = tracker(order(qty=qty))
    before = [e for i, r in enumerate(reports[:cut]) for e in deliver(live, r, 100 + i)]
    restored = OrderTracker.restore(live.records(), [e for e in before if isinstance(e, Fill)])
    live.take_discrepancies()

    after_live = [e for i, r in enumerate(reports[cut:], cut) for e in deliver(live, r, 100 + i)]
    after_restored = [e for i, r in enumerate(reports[cut:], cut) for e in deliver(restored, r, 100 + i)]

    assert after_restored == after_live
    assert restored.records() == live.records()
    check_truth(restored, before + after_restored, outcome, qty, sizes)


def test_restored_records_round_trip_through_replace() -> None:
    t = tracker()
    t.fill(fill("a", 4))
    [rec] = t.records()

    assert OrderTracker.restore([replace(rec)], [fill("a", 4)]).records() == [rec]


# --- modify / replace ---------------------------------------------------------------------------


def test_replace_waits_for_the_venue_then_the_order_is_the_new_one() -> None:
    t = tracker()
    t.accepted(CID, 1)
    t.fill(fill("a", 4))

    assert t.request_replace(CID, 2, 20, 99)
    assert state(t) is S.PENDING_REPLACE and t.replacing(CID) == (20, 99)
    assert t.replaced(CID, 3, 10, 100) == [], "an unchanged report leaves it pending"
    assert t.replaced(CID, 4, 20, 99) == []

    view = t.get(CID)
    assert (view.state, view.order.qty, view.order.limit_px, view.leaves_qty) == (S.PARTIALLY_FILLED, 20, 99, 16)
    assert t.replacing(CID) is None and not t.take_discrepancies()


def test_replace_refused_keeps_the_old_order_and_its_fills() -> None:
    t = tracker()
    t.accepted(CID, 1)
    assert t.request_replace(CID, 2, 5, 100)
    t.fill(fill("a", 6))
    assert state(t) is S.PENDING_REPLACE

    t.replace_rejected(CID, 3, "IB 104")  # more than 5 filled meanwhile: the venue refuses the smaller one

    assert state(t) is S.PARTIALLY_FILLED and t.get(CID).order.qty == 10
    t.fill(fill("b", 4))
    assert state(t) is S.FILLED


def test_a_fill_beyond_the_old_quantity_shows_the_replace_took_effect() -> None:
    t = tracker()
    t.accepted(CID, 1)
    t.request_replace(CID, 2, 15, 100)

    assert t.fill(fill("a", 10)) == [fill("a", 10)]
    assert state(t) is S.PENDING_REPLACE, "filled to the old size, a larger one asked: still working"
    assert t.fill(fill("b", 5)) == [fill("b", 5)]

    assert state(t) is S.FILLED and t.get(CID).order.qty == 15 and t.stats["replace_implied_by_fill"] == 1


def test_replace_refused_when_not_working_or_asked_wrong() -> None:
    t = tracker()
    assert not t.request_replace(CID, 1, 20, 100), "not acknowledged yet"
    t.accepted(CID, 2)
    t.fill(fill("a", 4))
    with pytest.raises(ValueError, match="not above"):
        t.request_replace(CID, 3, 4, 100)
    with pytest.raises(ValueError, match="order type"):
        t.request_replace(CID, 3, 20, None)
    assert not t.request_replace(CID, 3, 10, 100), "unchanged"
    t.request_cancel(CID, 4)
    assert not t.request_replace(CID, 5, 20, 100), "a cancel is on its way"
    assert t.stats["replace_refused"] == 2 and t.stats["replace_unchanged"] == 1


def test_venue_showing_other_values_is_applied_and_reported() -> None:
    t = tracker()
    t.accepted(CID, 1)

    t.replaced(CID, 2, 30, 101)

    assert (t.get(CID).order.qty, t.get(CID).order.limit_px) == (30, 101)
    assert [d.kind for d in t.take_discrepancies()] == ["venue_replaced"]


def test_restored_pending_replace_comes_back_working() -> None:
    rec = OrderRecord(order(), S.PENDING_REPLACE, 4, acked=True, venue_filled=4)

    t = OrderTracker.restore([rec], [fill("a", 4)])

    assert state(t) is S.PARTIALLY_FILLED and t.replacing(CID) is None
