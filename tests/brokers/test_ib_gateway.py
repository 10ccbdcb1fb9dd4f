"""IbGateway with ib_async's real IB client against the loopback fake TWS (tests/fakes/tws_orders.py).

No TWS or IB Gateway can run here: the boundary under test is the TWS API socket protocol, spoken by
ib_async's own client and decoder on one side and the fake on the other.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Mapping

import pytest
from ib_async import IB, Contract

from daemon.brokers.ib_gateway import IbGateway, trade_id
from daemon.brokers.lifecycle import OrderState
from daemon.brokers.orders import OrderTracker
from daemon.events import Fill, Liquidity, Order, OrderAccepted, OrderCanceled, OrderRejected, OrderType, Side
from daemon.instruments import Instrument
from daemon.journal import Journal
from daemon.sources.backoff import Backoff
from tests.fakes.tws_orders import FakeTwsOrders

S, CON = "AAPL", 265598
INST = Instrument(S, 0.01, 1)
GUARD_S = 10  # a hang guard only: every wait below normally ends in milliseconds
CLIENT = 7


def contracts() -> dict[str, Contract]:
    return {S: Contract(conId=CON, symbol=S, secType="STK", exchange="ISLAND", currency="USD")}


def fast_backoff() -> Backoff:
    return Backoff(0.001, 0.01, rng=random.Random(3), floor_s=0.0)


def order(cid: str, qty: int = 100, side: Side = Side.BUY, px: int | None = 15000) -> Order:
    kind = OrderType.LIMIT if px is not None else OrderType.MARKET
    return Order(cid, S, 1, side, qty, kind, px)


class MemoryJournal:
    """Keeps what the gateway journals, in order (the OrderJournal protocol)."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.fills: dict[str, Fill] = {}

    def record_order(self, order: Order, venue: str = "", state: str = "PENDING_NEW") -> object:
        self.rows.append(("order", order.client_id, venue, state))
        return None

    def record_replace(self, ts: int, client_id: str, qty: int, limit_px: int | None, state: str) -> object:
        self.rows.append(("replace", client_id, qty, limit_px, state))
        return None

    def record_order_event(self, ts: int, client_id: str, event: str, state: str, venue_order_id: str | None = None,
                           payload: Mapping[str, object] | None = None) -> object:
        self.rows.append(("event", client_id, event, state))
        return None

    def record_fill(self, fill: Fill, venue: str, state: str | None = None) -> object:
        assert fill.trade_id not in self.fills
        self.fills[fill.trade_id] = fill
        self.rows.append(("fill", fill.client_id, fill.trade_id, state))
        return None


class Rig:
    """A gateway on a fake TWS, its events queued for the test."""

    def __init__(self, tws: FakeTwsOrders, tracker: OrderTracker | None = None, journal=None, **kw) -> None:
        self.events: list = []
        self.queue: asyncio.Queue = asyncio.Queue()
        self.journal = journal if journal is not None else MemoryJournal()
        clock = itertools.count(1_000)
        self.gw = IbGateway(IB(), contracts(), lambda s: INST, self._sink, clock_now=clock.__next__,
                            journal=self.journal, tracker=tracker, port=tws.port, client_id=CLIENT,
                            backoff=fast_backoff, connect_timeout=2, request_timeout=GUARD_S, **kw)

    def _sink(self, ev) -> None:
        self.events.append(ev)
        self.queue.put_nowait(ev)

    async def start(self) -> Rig:
        await self.gw.start()
        await self.gw.wait_synced(GUARD_S)
        return self

    async def next(self, kind: type | None = None):
        async with asyncio.timeout(GUARD_S):
            ev = await self.queue.get()
        if kind is not None:
            assert isinstance(ev, kind), ev
        return ev

    async def until(self, cond) -> None:
        async with asyncio.timeout(GUARD_S):
            while not cond():
                await asyncio.sleep(0.001)

    def state(self, cid: str) -> OrderState:
        return self.gw.tracker.get(cid).state

    def fills(self) -> list[Fill]:
        return [e for e in self.events if isinstance(e, Fill)]


@pytest.fixture
async def tws():
    server = FakeTwsOrders(contract_ids={S: CON})
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def rig(tws):
    r = await Rig(tws).start()
    yield r
    await r.gw.close()


async def test_limit_order_partially_then_fully_filled(tws, rig):
    rig.gw.submit(order("dd-1-0", 100))
    placed = await tws.wait_order("dd-1-0")
    assert (placed.action, placed.qty, placed.order_type, float(placed.lmt_price), placed.client_id) == \
        ("BUY", 100.0, "LMT", 150.0, CLIENT)
    assert await rig.next(OrderAccepted) == OrderAccepted("dd-1-0", S, rig.events[0].ts)
    assert rig.state("dd-1-0") is OrderState.NEW
    ex1 = tws.fill(placed.order_id, 40, 150.0, liquidity=1)
    f1 = await rig.next(Fill)
    assert (f1.client_id, f1.side, f1.price, f1.qty, f1.liquidity) == ("dd-1-0", Side.BUY, 15000, 40, Liquidity.MAKER)
    assert f1.fee == pytest.approx(0.2) and f1.trade_id == trade_id(ex1.exec_id) == ex1.exec_id[:-3]
    tws.fill(placed.order_id, 60, 149.99, liquidity=2, status_first=True)
    f2 = await rig.next(Fill)
    assert (f2.qty, f2.price, f2.liquidity, f2.fee) == (60, 14999, Liquidity.TAKER, pytest.approx(0.3))
    await rig.until(lambda: rig.state("dd-1-0") is OrderState.FILLED)
    assert rig.gw.open_orders() == []
    assert [r[0] for r in rig.journal.rows] == ["order", "event", "fill", "fill"]
    assert rig.journal.rows[-1][3] == "FILLED"
    assert rig.gw.stats["fill_without_commission"] == 0


async def test_market_sell_and_cancel_of_a_partly_filled_order(tws, rig):
    rig.gw.submit(order("dd-1-1", 10, Side.SELL, px=None))
    placed = await tws.wait_order("dd-1-1")
    assert (placed.action, placed.order_type) == ("SELL", "MKT")
    await rig.next(OrderAccepted)
    tws.fill(placed.order_id, 4, 150.0)
    assert (await rig.next(Fill)).side is Side.SELL
    rig.gw.cancel("dd-1-1")
    rig.gw.cancel("dd-1-1")  # a second request sends nothing
    canceled = await rig.next(OrderCanceled)
    assert (canceled.client_id, canceled.leaves_qty) == ("dd-1-1", 6)
    assert rig.state("dd-1-1") is OrderState.CANCELED
    assert tws.cancels == [placed.order_id]
    assert rig.gw.tracker.stats["cancel_duplicate"] == 1


async def test_cancel_refused_for_a_filled_order_keeps_the_fill(tws, rig):
    rig.gw.submit(order("dd-1-2", 5))
    placed = await tws.wait_order("dd-1-2")
    await rig.next(OrderAccepted)
    placed.status = "Filled"  # filled at IB; our cancel crosses the news
    rig.gw.cancel("dd-1-2")
    await rig.until(lambda: rig.gw.errors[10148] == 1)
    assert rig.state("dd-1-2") is OrderState.NEW  # the cancel was refused: the order works on
    placed.status = "Submitted"
    tws.fill(placed.order_id, 5, 150.0)
    await rig.next(Fill)
    await rig.until(lambda: rig.state("dd-1-2") is OrderState.FILLED)


async def test_rejects(tws, rig):
    tws.reject_next = (201, "Order rejected - reason:No trading permissions")
    rig.gw.submit(order("dd-1-3"))
    rej = await rig.next(OrderRejected)
    assert rej.client_id == "dd-1-3" and rej.reason.startswith("IB 201: Order rejected")
    assert rig.state("dd-1-3") is OrderState.REJECTED
    rig.gw.submit(Order("dd-1-4", "MSFT", 1, Side.BUY, 1, OrderType.MARKET))
    assert (await rig.next(OrderRejected)).reason == "unknown_symbol"
    rig.gw.submit(order("dd-1-3"))
    assert (await rig.next(OrderRejected)).reason == "duplicate_client_id"
    assert rig.gw.stats["duplicate_client_id"] == 1
    assert len(tws.orders) == 0


async def test_an_order_the_journal_refuses_is_rejected_and_never_sent(tws, rig):
    def refuse(order: Order, venue: str = "", state: str = "PENDING_NEW") -> object:
        raise OSError("disk full")

    rig.journal.record_order = refuse
    rig.gw.submit(order("dd-1-9"))
    assert (await rig.next(OrderRejected)).reason == "journal_error"
    assert tws.orders == {}


async def test_submit_while_disconnected_is_rejected_and_never_sent(tws, rig):
    tws.drop()
    await rig.until(lambda: not rig.gw.connected)
    await tws.stop()  # and it stays away
    rig.gw.submit(order("dd-1-5"))
    assert (await rig.next(OrderRejected)).reason == "not_connected"


async def test_duplicated_execution_and_correction_give_one_fill(tws, rig):
    rig.gw.submit(order("dd-1-6", 10))
    placed = await tws.wait_order("dd-1-6")
    await rig.next(OrderAccepted)
    ex = tws.fill(placed.order_id, 4, 150.0, repeat=3)
    await rig.next(Fill)
    tws.correct(ex, price=150.01)  # ...01.02 amends ...01.01
    tws.correct(ex, n=3)  # a correction that changes nothing
    tws.fill(placed.order_id, 6, 150.0)
    last = await rig.next(Fill)
    assert last.qty == 6 and len(rig.fills()) == 2
    assert rig.gw.stats["exec_correction"] == 1 and rig.gw.stats["duplicate_execution"] == 1
    assert rig.gw.corrections == [("dd-1-6", ex.exec_id, ex.exec_id[:-3] + ".02")]
    await rig.until(lambda: rig.state("dd-1-6") is OrderState.FILLED)


async def test_fill_without_commission_is_applied_after_the_wait(tws):
    r = await Rig(tws, commission_wait_s=0.01).start()
    try:
        r.gw.submit(order("dd-1-7", 3))
        placed = await tws.wait_order("dd-1-7")
        await r.next(OrderAccepted)
        tws.fill(placed.order_id, 3, 150.0, commission=False)
        f = await r.next(Fill)
        assert f.fee == 0.0 and r.gw.stats["fill_without_commission"] == 1
    finally:
        await r.gw.close()


async def test_order_unacknowledged_at_a_disconnect_is_resolved_by_order_ref(tws, rig):
    tws.silent_next = True  # TWS takes the order; the answer is lost with the connection
    rig.gw.submit(order("dd-1-8", 100))
    placed = await tws.wait_order("dd-1-8")
    assert rig.state("dd-1-8") is OrderState.PENDING_NEW
    tws.drop()
    await rig.until(lambda: rig.state("dd-1-8") is OrderState.UNKNOWN)
    assert ("event", "dd-1-8", "SEND_TIMEOUT", "UNKNOWN") in rig.journal.rows
    tws.fill(placed.order_id, 40, 150.0)  # while we are away
    await rig.gw.wait_synced(GUARD_S)
    assert isinstance(await rig.next(), OrderAccepted)
    assert (await rig.next(Fill)).qty == 40
    assert rig.state("dd-1-8") is OrderState.PARTIALLY_FILLED
    assert tws.exec_filters[-1][5] == ""  # no execution seen before: everything IB has
    tws.fill(placed.order_id, 60, 150.0)
    assert (await rig.next(Fill)).qty == 60
    assert rig.state("dd-1-8") is OrderState.FILLED
    assert sum(f.qty for f in rig.fills()) == 100


async def test_resync_after_reconnect_loses_and_doubles_nothing(tws, rig):
    ids = {}
    for cid in ("dd-2-0", "dd-2-1", "dd-2-2", "dd-2-3"):
        rig.gw.submit(order(cid, 10))
        ids[cid] = (await tws.wait_order(cid)).order_id
        await rig.next(OrderAccepted)
    tws.fill(ids["dd-2-0"], 3, 150.0)
    await rig.next(Fill)
    tws.drop()
    await rig.until(lambda: not rig.gw.connected)
    tws.fill(ids["dd-2-0"], 5, 150.0)  # partly filled more while we are away
    tws.fill(ids["dd-2-1"], 10, 150.0)  # filled while we are away
    tws.cancel_by_venue(ids["dd-2-2"])  # gone while we are away
    rig.gw.cancel("dd-2-3")  # asked while away: sent after the reconnect
    await rig.gw.wait_synced(GUARD_S)
    await rig.until(lambda: rig.state("dd-2-3") is OrderState.CANCELED)
    assert tws.exec_filters[-1][5] == "20250102-11:59:00"  # since the last execution seen, minus a minute
    by_order: dict[str, int] = {}
    for f in rig.fills():
        by_order[f.client_id] = by_order.get(f.client_id, 0) + f.qty
    assert by_order == {"dd-2-0": 8, "dd-2-1": 10}
    assert len({f.trade_id for f in rig.fills()}) == len(rig.fills()) == 3
    assert [rig.state(c) for c in ids] == [OrderState.PARTIALLY_FILLED, OrderState.FILLED, OrderState.CANCELED,
                                           OrderState.CANCELED]
    gone = [e for e in rig.events if isinstance(e, OrderCanceled) and e.client_id == "dd-2-2"]
    assert [(e.reason, e.leaves_qty) for e in gone] == [("not_open_at_venue", 10)]
    await rig.gw.resync()  # a periodic reconciliation finds nothing new
    assert len(rig.fills()) == 3 and rig.gw.stats["duplicate_execution"] >= 2


async def test_order_ib_never_got_is_rejected_not_found(tws, rig):
    tws.silent_next = True
    rig.gw.submit(order("dd-3-0"))
    placed = await tws.wait_order("dd-3-0")
    del tws.orders[placed.order_id]  # the place never reached IB
    tws.drop()
    await rig.gw.wait_synced(GUARD_S)
    rej = await rig.next(OrderRejected)
    assert (rej.client_id, rej.reason) == ("dd-3-0", "not_found")


async def test_restart_from_the_journal_applies_missed_fills_once(tws, rig):
    rig.gw.submit(order("dd-4-0", 10))
    placed = await tws.wait_order("dd-4-0")
    await rig.next(OrderAccepted)
    tws.fill(placed.order_id, 2, 150.0)
    await rig.next(Fill)
    records, fills = rig.gw.tracker.records(), list(rig.journal.fills.values())
    await rig.gw.close()  # the process dies; IB fills more meanwhile
    tws.fill(placed.order_id, 3, 150.0)
    r2 = await Rig(tws, tracker=OrderTracker.restore(records, fills)).start()
    try:
        assert [(f.qty, f.client_id) for f in r2.fills()] == [(3, "dd-4-0")]
        assert r2.state("dd-4-0") is OrderState.PARTIALLY_FILLED
        assert r2.gw.tracker.stats["duplicate_fill"] == 1
        assert await r2.next(Fill) == r2.fills()[0]
        r2.gw.cancel_all()
        assert (await r2.next(OrderCanceled)).leaves_qty == 5
    finally:
        await r2.gw.close()


async def test_reconciliation_views(tws, rig):
    rig.gw.submit(order("dd-5-0", 10))
    placed = await tws.wait_order("dd-5-0")
    await rig.next(OrderAccepted)
    tws.fill(placed.order_id, 4, 150.0)
    await rig.next(Fill)
    assert await rig.gw.fetch_positions() == {S: 4}
    [venue] = await rig.gw.fetch_open_orders()
    assert (venue.client_id, venue.symbol, venue.side, venue.qty, venue.filled, venue.limit_price,
            venue.status, venue.ib_client_id) == ("dd-5-0", S, Side.BUY, 10.0, 4.0, 150.0, "Submitted", CLIENT)
    [fill] = await rig.gw.fetch_executions()
    assert (fill.client_id, fill.qty, fill.price, fill.fee) == ("dd-5-0", 4, 15000, pytest.approx(0.02))


async def test_ib_connectivity_restored_triggers_a_resync(tws, rig):
    rig.gw.submit(order("dd-6-0", 10))
    placed = await tws.wait_order("dd-6-0")
    await rig.next(OrderAccepted)
    execs = sum(1 for r in tws.requests if r[0] == "7")
    tws.error(-1, 1100, "Connectivity between IB and TWS has been lost.")
    tws.orders[placed.order_id].status = "Cancelled"  # IB cancelled it meanwhile; no word reached us
    tws.error(-1, 1102, "Connectivity between IB and TWS has been restored - data maintained.")
    await tws.wait_requests(7, execs + 1)
    assert (await rig.next(OrderCanceled)).reason == "not_open_at_venue"
    assert rig.gw.errors[1102] == 1


async def test_contracts_without_con_id_are_qualified_at_connect(tws):
    journal_less = IbGateway(IB(), {S: Contract(symbol=S, secType="STK", exchange="ISLAND", currency="USD")},
                             lambda s: INST, lambda ev: None, clock_now=lambda: 0, port=tws.port, client_id=CLIENT,
                             backoff=fast_backoff)
    await journal_less.start()
    try:
        await journal_less.wait_synced(GUARD_S)
        assert journal_less.contracts[S].conId == CON
    finally:
        await journal_less.close()


async def test_real_journal_holds_the_order_before_the_send_and_every_fill(tws, tmp_path):
    journal = Journal.open(tmp_path / "journal.sqlite")
    events: list = []
    gw = IbGateway(IB(), contracts(), lambda s: INST, events.append, clock_now=itertools.count(5).__next__,
                   journal=journal, port=tws.port, client_id=CLIENT, backoff=fast_backoff)
    await gw.start()
    try:
        await gw.wait_synced(GUARD_S)
        gw.submit(order("dd-7-0", 10))
        placed = await tws.wait_order("dd-7-0")
        tws.fill(placed.order_id, 4, 150.0)
        async with asyncio.timeout(GUARD_S):
            while not any(isinstance(e, Fill) for e in events):
                await asyncio.sleep(0.001)
    finally:
        await gw.close()
        journal.close()
    with Journal.open(tmp_path / "journal.sqlite") as again:
        [rec] = again.recover().open_orders
    assert (rec.order.client_id, rec.venue, rec.acked, rec.filled_qty, rec.state) == \
        ("dd-7-0", "ib", True, 4, "PARTIALLY_FILLED")
    assert rec.venue_order_id == str(placed.perm_id)


def test_trade_id_strips_the_correction_suffix():
    assert trade_id("0000e0d5.6584b7c3.01.01") == trade_id("0000e0d5.6584b7c3.01.02") == "0000e0d5.6584b7c3.01"
    assert trade_id("plain") == "plain"


def test_client_id_zero_is_refused():
    with pytest.raises(ValueError, match="client_id 0"):
        IbGateway(IB(), contracts(), lambda s: INST, lambda ev: None, clock_now=lambda: 0, client_id=0)


async def working(tws: FakeTwsOrders, rig: Rig, cid: str, qty: int = 100):
    """Submit an order, wait until TWS has it and the gateway saw it accepted; the fake's order."""
    rig.gw.submit(order(cid, qty))
    placed = await tws.wait_order(cid)
    await rig.next(OrderAccepted)
    return placed


async def test_modify_price_and_quantity_confirmed_by_ib(tws, rig):
    placed = await working(tws, rig, "dd-1-20")
    tws.fill(placed.order_id, 30, 150.0)
    await rig.next(Fill)
    assert rig.gw.modify("dd-1-20", 200, 14950)
    assert rig.state("dd-1-20") is OrderState.PENDING_REPLACE
    await rig.until(lambda: rig.state("dd-1-20") is OrderState.PARTIALLY_FILLED)
    assert tws.modifications == [(placed.order_id, 200.0, "149.5")] and tws.orders[placed.order_id].qty == 200
    view = rig.gw.open_orders()[0]
    assert (view.order.qty, view.order.limit_px, view.filled_qty, view.leaves_qty) == (200, 14950, 30, 170)
    assert ("replace", "dd-1-20", 200, 14950, "PARTIALLY_FILLED") in rig.journal.rows
    tws.fill(placed.order_id, 170, 149.5)  # beyond the old 100: the order is now 200
    await rig.until(lambda: rig.state("dd-1-20") is OrderState.FILLED)
    assert sum(f.qty for f in rig.fills()) == 200 and not rig.gw.tracker.take_discrepancies()


async def test_modify_refused_by_ib_keeps_the_old_order(tws, rig):
    placed = await working(tws, rig, "dd-1-21")
    for code, text in ((105, "Order being modified does not match original order"), (201, "Order rejected")):
        tws.refuse_modify_next = (code, text)
        assert rig.gw.modify("dd-1-21", 100, 15100)
        await rig.until(lambda: rig.state("dd-1-21") is OrderState.NEW)
        view = rig.gw.open_orders()[0]
        assert (view.order.qty, view.order.limit_px) == (100, 15000), "IB kept the old order"
    assert rig.gw.stats["modify_refused"] == 2
    assert not [e for e in rig.events if isinstance(e, (OrderRejected, OrderCanceled))], "the order lives on"
    tws.fill(placed.order_id, 100, 150.0)
    await rig.until(lambda: rig.state("dd-1-21") is OrderState.FILLED)


async def test_modify_not_working_or_not_connected_is_refused_without_sending(tws, rig):
    placed = await working(tws, rig, "dd-1-22")
    with pytest.raises(ValueError, match="not above"):
        rig.gw.modify("dd-1-22", 0, 15000)
    with pytest.raises(ValueError, match="order type"):
        rig.gw.modify("dd-1-22", 50, None)
    assert not rig.gw.modify("dd-1-22", 100, 15000), "nothing to change"
    rig.gw.cancel("dd-1-22")
    assert not rig.gw.modify("dd-1-22", 50, 15000), "a cancel is on its way"
    await rig.next(OrderCanceled)
    assert not rig.gw.modify("dd-1-22", 50, 15000)
    assert tws.modifications == [] and placed.status == "Cancelled"


async def test_modification_made_while_away_is_taken_from_ib_on_restart(tws, tmp_path):
    journal = Journal.open(str(tmp_path / "j.db"))
    first = Rig(tws, journal=journal)
    await first.start()
    placed = await working(tws, first, "dd-1-23")
    await first.gw.close()
    tws.orders[placed.order_id].qty, tws.orders[placed.order_id].lmt_price = 300.0, "149"  # changed in TWS
    tws.fill(placed.order_id, 250, 149.0)

    from daemon.brokers.reconcile import restore_tracker

    second = Rig(tws, tracker=restore_tracker(journal), journal=journal)
    await second.start()
    await second.until(lambda: second.state("dd-1-23") is OrderState.PARTIALLY_FILLED)
    view = second.gw.open_orders()[0]
    assert (view.order.qty, view.order.limit_px, view.filled_qty) == (300, 14900, 250)
    await second.gw.close()
    again = restore_tracker(journal)  # the journal holds the order as IB has it, and its fill
    assert [(v.order.qty, v.order.limit_px, v.filled_qty) for v in again.open_orders()] == [(300, 14900, 250)]
    journal.close()
