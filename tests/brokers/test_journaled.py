"""JournaledBroker: orders are journaled before the broker sees them, events before the engine hears
them, a fill only once, and an order the journal cannot take is never sent."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from daemon.book.book import Book
from daemon.brokers.journaled import JournaledBroker
from daemon.brokers.paper import PaperBroker
from daemon.clock import ReplayClock
from daemon.events import BrokerEvent, Fill, Order, OrderAccepted, OrderCanceled, OrderRejected, OrderType, Side
from daemon.instruments import Instrument
from daemon.journal import Journal

SYM = "BTCUSDT"
INST = Instrument(SYM, tick_size=0.01, lot_size=0.001)
T0 = 1_700_000_000_000_000_000


class Rig:
    def __init__(self, tmp: Path, latency_ns: int = 1_000_000) -> None:
        self.clock = ReplayClock(T0)
        self.clock.advance_to(T0)
        self.book = Book(SYM)
        self.book.apply_snapshot(np.array([9_900]), np.array([5]), np.array([10_100]), np.array([5]))
        self.events: list[BrokerEvent] = []
        self.journal = Journal.open(tmp / "journal.db")
        self.broker = JournaledBroker(self.journal, "paper", self.clock, self.events.append)
        self.paper = PaperBroker(self.clock, {SYM: self.book}, {SYM: INST}, self.broker.on_venue_event,
                                 latency_ns=latency_ns)
        self.broker.attach(self.paper)
        self.sent: list[Order] = []
        submit = self.paper.submit

        def watch(order: Order) -> None:
            self.sent.append(order)
            submit(order)

        self.paper.submit = watch  # type: ignore[method-assign]

    def order(self, cid: str, side: Side = Side.BUY, qty: int = 2, px: int | None = None) -> Order:
        kind = OrderType.LIMIT if px is not None else OrderType.MARKET
        return Order(cid, SYM, self.clock.now(), side, qty, kind, px)


def test_an_order_is_journaled_before_the_broker_sees_it(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    seen_in_journal = []
    submit = rig.paper.submit

    def check(order: Order) -> None:
        seen_in_journal.append([o.order.client_id for o in rig.journal.recover().open_orders])
        submit(order)

    rig.paper.submit = check  # type: ignore[method-assign]
    rig.broker.submit(rig.order("dd-1"))

    assert seen_in_journal == [["dd-1"]]


def test_acks_and_fills_are_journaled_and_reach_the_engine_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.broker.submit(rig.order("dd-1"))
    rig.clock.advance_to(T0 + 2_000_000)  # the order arrives and takes the ask

    kinds = [type(e) for e in rig.events]
    assert kinds == [OrderAccepted, Fill]
    fill = rig.events[1]
    assert isinstance(fill, Fill)
    rec = rig.journal.recover()
    assert rec.open_orders == [], "filled: no longer open"
    assert rec.last_fills[SYM].trade_id == fill.trade_id

    rig.broker.on_venue_event(fill)  # the venue reports the same fill again
    assert len(rig.events) == 2 and rig.broker.duplicate_fills == 1


def test_a_cancel_is_journaled_and_the_order_ends_canceled(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.broker.submit(rig.order("dd-1", px=9_800))  # a resting bid below the touch
    rig.clock.advance_to(T0 + 2_000_000)
    rig.broker.cancel("dd-1")
    rig.clock.advance_to(T0 + 4_000_000)

    assert [type(e) for e in rig.events] == [OrderAccepted, OrderCanceled]
    assert rig.journal.recover().open_orders == []


def test_an_order_the_journal_cannot_take_is_never_sent(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.broker.submit(rig.order("dd-1"))
    rig.broker.submit(rig.order("dd-1"))  # a client id already journaled: refused by the journal

    assert [o.client_id for o in rig.sent] == ["dd-1"]
    rejects = [e for e in rig.events if isinstance(e, OrderRejected)]
    assert [(r.client_id, r.reason) for r in rejects] == [("dd-1", "journal_unavailable")]
    assert rig.broker.unsent == 1


def test_a_restart_finds_the_open_order_in_the_journal(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.broker.submit(rig.order("dd-1", px=9_800))
    rig.clock.advance_to(T0 + 2_000_000)
    rig.journal.close()

    again = Journal.open(tmp_path / "journal.db")
    (open_order,) = again.recovery.open_orders
    assert (open_order.order.client_id, open_order.state, open_order.acked) == ("dd-1", "NEW", True)


def test_market_data_hooks_pass_through_to_a_simulated_broker(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    assert rig.broker.on_book == rig.paper.on_book and rig.broker.on_trade == rig.paper.on_trade
    assert rig.broker.connected

