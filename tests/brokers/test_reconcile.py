"""Reconciler with real clients against loopback fakes and a real SQLite journal.

ccxt's binance client against tests/fakes/binance_exchange.py; ib_async's IB (through IbGateway) against
tests/fakes/tws_orders.py, since no TWS or IB Gateway can run here.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from ib_async import IB, Contract

from daemon.brokers.ib_gateway import IbGateway
from daemon.brokers.lifecycle import OrderState
from daemon.brokers.reconcile import Reconciler, ReconcileResult
from daemon.brokers.venue_views import CcxtVenueView, IbVenueView
from daemon.events import BrokerEvent, Fill, Liquidity, Order, OrderType, Side
from daemon.instruments import Instrument
from daemon.journal import Journal
from daemon.journal.session import restore_portfolio
from daemon.portfolio import Portfolio
from tests.fakes.binance_exchange import FakeBinanceExchange, ccxt_binance
from tests.fakes.tws_orders import FakeTwsOrders

SYM = "BTCUSDT"
INST = {SYM: Instrument(SYM, 0.01, 0.00001)}
PX = 4_900_000  # 49,000.00 in ticks
LOTS = 1000  # 0.01 BTC
HELD = 100_000  # the 1 BTC the account held before the daemon traded, in lots
PREFIX = "dd1"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinanceExchange]:
    async with FakeBinanceExchange(balances={"USDT": "10000", "BTC": "1"}, fee_rate="0") as f:
        yield f


@pytest.fixture
def jpath(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


@pytest.fixture
def journal(jpath: Path) -> Iterator[Journal]:
    with Journal.open(jpath) as j:
        yield j


def order(cid: str, qty: int = LOTS, side: Side = Side.BUY, age_s: float = 30.0) -> Order:
    """An order sent `age_s` ago (past the venue's recvWindow by default)."""
    return Order(cid, SYM, time.time_ns() - int(age_s * 1e9), side, qty, OrderType.LIMIT, PX)


def fill(cid: str, trade_id: str, qty: int) -> Fill:
    return Fill(cid, SYM, time.time_ns(), Side.BUY, PX, qty, 0.0, Liquidity.MAKER, trade_id)


def place(fake: FakeBinanceExchange, cid: str, qty: str = "0.01", side: str = "BUY", price: str = "49000") -> str:
    """Book an order at the venue (as if the daemon's create reached it); returns the venue order id."""
    return str(fake.place(SYM, side, qty, price, cid).order_id)


async def reconcile(fake: FakeBinanceExchange, journal: Journal, *, periodic: int = 0,
                    **kw: Any) -> tuple[Reconciler, list[ReconcileResult]]:
    """A fresh Reconciler (as after a restart) on a fresh ccxt client: startup, then `periodic` periodic passes."""
    kw.setdefault("offsets", {SYM: HELD})
    ex = ccxt_binance(fake, timeout=2000, enableRateLimit=False)
    try:
        portfolio = restore_portfolio(Portfolio(INST), journal.recover())
        rec = Reconciler(journal, CcxtVenueView(ex, INST, time.time_ns), portfolio, clock_now=time.time_ns,
                         prefix=PREFIX, venue="binance", **kw)
        results = [await rec.startup()]
        for _ in range(periodic):
            results.append(await rec.periodic())
    finally:
        await ex.close()
    return rec, results


def journaled(journal: Journal, cid: str) -> Any:
    return {o.order.client_id: o for o in journal.recover().open_orders}.get(cid)


def reports(jpath: Path) -> list[str]:
    conn = sqlite3.connect(jpath)
    try:
        return [r[0] for r in conn.execute("SELECT report FROM reconciliations ORDER BY seq")]
    finally:
        conn.close()


async def test_everything_consistent_is_ok(fake: FakeBinanceExchange, journal: Journal, jpath: Path) -> None:
    vid = place(fake, "dd1-0-1")
    journal.record_order(order("dd1-0-1"), venue="binance")
    journal.record_order_event(time.time_ns(), "dd1-0-1", "ACCEPT", "NEW", venue_order_id=vid)
    rec, (start, again) = await reconcile(fake, journal, periodic=1)
    assert start.ok and again.ok, (start.discrepancies, again.discrepancies)
    assert start.applied_fills == [] and start.orphans == [] and start.offsets == {SYM: HELD}
    assert rec.tracker is not None and rec.tracker.get("dd1-0-1").state is OrderState.NEW
    assert len(reports(jpath)) == 2 and '"ok":true' in reports(jpath)[0]


async def test_unknown_order_the_venue_accepted_is_found_and_its_fill_applied_once(
        fake: FakeBinanceExchange, journal: Journal) -> None:
    journal.record_order(order("dd1-0-1"), venue="binance")  # written before the send; then the daemon died
    place(fake, "dd1-0-1")
    fake.fill("dd1-0-1", "0.004")  # filled while the daemon was down
    assert not journaled(journal, "dd1-0-1").acked
    rec, (res,) = await reconcile(fake, journal)
    assert res.ok, res.discrepancies
    assert [f.qty for f in res.applied_fills] == [400] and rec.portfolio.position(SYM) == 400
    jo = journaled(journal, "dd1-0-1")
    assert jo.acked and jo.state == "PARTIALLY_FILLED" and jo.filled_qty == 400 and jo.venue_order_id is not None
    rec2, (res2,) = await reconcile(fake, journal)  # a second restart: nothing applied again
    assert res2.ok and res2.applied_fills == [] and rec2.portfolio.position(SYM) == 400
    assert journal.recover().counts["fills"] == 1


async def test_unknown_order_the_venue_never_saw_is_rejected(fake: FakeBinanceExchange, journal: Journal) -> None:
    journal.record_order(order("dd1-0-1"), venue="binance")
    rec, (res,) = await reconcile(fake, journal)
    assert res.ok, res.discrepancies
    assert rec.tracker is not None and rec.tracker.get("dd1-0-1").state is OrderState.REJECTED
    assert journaled(journal, "dd1-0-1") is None  # REJECTED is terminal: no longer open in the journal


async def test_unknown_order_sent_just_now_and_absent_stays_unknown_and_unresolved(fake: FakeBinanceExchange,
                                                                                   journal: Journal) -> None:
    journal.record_order(order("dd1-0-1", age_s=1.0), venue="binance")  # a late create may still be booked
    rec, (res,) = await reconcile(fake, journal)
    assert not res.ok and [d["kind"] for d in res.discrepancies] == ["unknown_too_recent"]
    assert rec.tracker is not None and rec.tracker.needs_lookup() == ["dd1-0-1"]
    jo = journaled(journal, "dd1-0-1")
    assert jo.state == "UNKNOWN" and not jo.acked


async def test_fills_while_down_are_applied_once(fake: FakeBinanceExchange, journal: Journal) -> None:
    vid = place(fake, "dd1-0-1")
    journal.record_order(order("dd1-0-1"), venue="binance")
    journal.record_order_event(time.time_ns(), "dd1-0-1", "ACCEPT", "NEW", venue_order_id=vid)
    t1 = fake.fill("dd1-0-1", "0.002")
    journal.record_fill(fill("dd1-0-1", str(t1.id), 200), "binance", state="PARTIALLY_FILLED")
    fake.fill("dd1-0-1", "0.003")  # the daemon is down from here
    fake.fill("dd1-0-1", "0.005")
    rec, (res,) = await reconcile(fake, journal)
    assert res.ok, res.discrepancies
    assert sorted(f.qty for f in res.applied_fills) == [300, 500]
    assert rec.portfolio.position(SYM) == LOTS
    assert rec.tracker is not None and rec.tracker.get("dd1-0-1").state is OrderState.FILLED
    assert journaled(journal, "dd1-0-1") is None and journal.recover().counts["fills"] == 3
    rec2, (res2,) = await reconcile(fake, journal)
    assert res2.ok and res2.applied_fills == [] and rec2.portfolio.position(SYM) == LOTS


async def test_canceled_while_down_after_a_partial_fill_ends_canceled(fake: FakeBinanceExchange,
                                                                      journal: Journal) -> None:
    vid = place(fake, "dd1-0-1")
    journal.record_order(order("dd1-0-1"), venue="binance")
    journal.record_order_event(time.time_ns(), "dd1-0-1", "ACCEPT", "NEW", venue_order_id=vid)
    fake.fill("dd1-0-1", "0.004")
    fake.cancel("dd1-0-1")
    rec, (res,) = await reconcile(fake, journal)
    assert res.ok, res.discrepancies
    assert rec.portfolio.position(SYM) == 400
    assert rec.tracker is not None and rec.tracker.get("dd1-0-1").state is OrderState.CANCELED
    assert journaled(journal, "dd1-0-1") is None


@pytest.mark.parametrize("cancel", [True, False])
async def test_orphan_is_canceled_when_configured_else_reported(fake: FakeBinanceExchange, journal: Journal,
                                                                cancel: bool) -> None:
    place(fake, "web_ui_7", side="SELL", price="60000")
    _, (res,) = await reconcile(fake, journal, cancel_orphans=cancel)
    assert res.ok, res.discrepancies
    assert [(o["client_id"], o["action"]) for o in res.orphans] == [("web_ui_7", "canceled" if cancel else "reported")]
    assert fake.order("web_ui_7").status == ("CANCELED" if cancel else "NEW")


async def test_own_order_the_journal_does_not_know_is_a_discrepancy(fake: FakeBinanceExchange,
                                                                   journal: Journal) -> None:
    place(fake, "dd1-0-9")
    _, (res,) = await reconcile(fake, journal, cancel_orphans=True)
    assert not res.ok and [d["kind"] for d in res.discrepancies] == ["unknown_own_order"]
    assert fake.order("dd1-0-9").status == "NEW"  # ours: never cancelled as an orphan


async def test_position_mismatch_is_not_ok(fake: FakeBinanceExchange, journal: Journal, jpath: Path) -> None:
    fake.set_balance("BTC", "1.5")  # someone moved 0.5 BTC the daemon knows nothing of
    _, (res,) = await reconcile(fake, journal)
    assert not res.ok and [d["kind"] for d in res.discrepancies] == ["position_mismatch"]
    assert '"position_mismatch"' in reports(jpath)[-1]


async def test_a_gap_while_trading_counts_when_the_next_pass_confirms_it(fake: FakeBinanceExchange,
                                                                          journal: Journal) -> None:
    ex = ccxt_binance(fake, timeout=2000, enableRateLimit=False)
    try:
        rec = Reconciler(journal, CcxtVenueView(ex, INST, time.time_ns), Portfolio(INST), clock_now=time.time_ns,
                         prefix=PREFIX, venue="binance", offsets={SYM: HELD})
        assert (await rec.startup()).ok
        fake.set_balance("BTC", "1.01")  # a fill in flight: the venue's balance moved, the portfolio not yet
        first = await rec.periodic()
        assert first.ok and first.report["unconfirmed"] == {SYM: 1000}
        fake.set_balance("BTC", "1")  # ... it was a fill in flight, then the balance is back in step
        assert (await rec.periodic()).ok and rec.unconfirmed == {}
        fake.set_balance("BTC", "1.5")  # someone moved 0.5 BTC: still there on the next pass
        assert (await rec.periodic()).ok
        second = await rec.periodic()
        assert not second.ok and [d["kind"] for d in second.discrepancies] == ["position_mismatch"]
    finally:
        await ex.close()


async def test_first_pass_without_offsets_takes_them(fake: FakeBinanceExchange, journal: Journal) -> None:
    _, (res,) = await reconcile(fake, journal, offsets=None)
    assert res.ok and res.offsets == {SYM: HELD}


async def test_periodic_applies_new_fills_once_and_skips_ones_the_stream_journaled(
        fake: FakeBinanceExchange, journal: Journal) -> None:
    vid = place(fake, "dd1-0-1")
    journal.record_order(order("dd1-0-1"), venue="binance")
    journal.record_order_event(time.time_ns(), "dd1-0-1", "ACCEPT", "NEW", venue_order_id=vid)
    events: list[BrokerEvent] = []
    portfolio = Portfolio(INST)

    def engine(ev: BrokerEvent) -> None:  # the engine applies the fills it hears of to the portfolio
        events.append(ev)
        if isinstance(ev, Fill):
            portfolio.on_fill(ev)

    ex = ccxt_binance(fake, timeout=2000, enableRateLimit=False)
    try:
        rec = Reconciler(journal, CcxtVenueView(ex, INST, time.time_ns), portfolio, clock_now=time.time_ns,
                         prefix=PREFIX, venue="binance", offsets={SYM: HELD}, on_event=engine)
        assert (await rec.startup()).ok
        t1 = fake.fill("dd1-0-1", "0.002")
        first = await rec.periodic()
        second = await rec.periodic()
        t2 = fake.fill("dd1-0-1", "0.003")
        f2 = fill("dd1-0-1", str(t2.id), 300)
        journal.record_fill(f2, "binance", state="PARTIALLY_FILLED")  # the stream's: journaled, then to the engine
        assert rec.tracker is not None and rec.tracker.fill(f2) == [f2]
        engine(f2)
        third = await rec.periodic()
    finally:
        await ex.close()
    assert [f.trade_id for f in first.applied_fills] == [str(t1.id)]
    assert second.applied_fills == [] and third.applied_fills == []
    assert [e.trade_id for e in events if isinstance(e, Fill)] == [str(t1.id), str(t2.id)]  # each once
    assert first.ok and second.ok and third.ok, (first.discrepancies, third.discrepancies)
    assert portfolio.position(SYM) == 500 and journal.recover().counts["fills"] == 2


class PositionsVenue:
    """A derivatives venue's view with nothing but a position (the fake Binance exchange is spot only)."""

    holds_positions = True
    absent_is_closed = False

    def __init__(self, lots: int) -> None:
        self.lots = lots

    async def open_orders(self) -> list[Any]:
        return []

    async def lookup(self, order: Order) -> None:
        return None

    async def fills_since(self, symbol: str, since_ms: int | None) -> list[Fill]:
        return []

    async def holdings(self) -> dict[str, int]:
        return {SYM: self.lots} if self.lots else {}

    async def cancel(self, order: Any) -> None:
        raise AssertionError("nothing to cancel")


@pytest.mark.parametrize(("venue_lots", "ok"), [(300, True), (0, False), (200, False)])
async def test_derivatives_position_is_compared_without_offset(journal: Journal, venue_lots: int, ok: bool) -> None:
    journal.record_position(time.time_ns(), SYM, 300, 49_000.0, 0.0, 0.0)
    portfolio = restore_portfolio(Portfolio(INST), journal.recover())
    rec = Reconciler(journal, PositionsVenue(venue_lots), portfolio, clock_now=time.time_ns, prefix=PREFIX,
                     venue="bybit")
    res = await rec.startup()
    assert res.ok is ok and res.offsets == {}


async def test_periodic_before_startup_is_an_error(fake: FakeBinanceExchange, journal: Journal) -> None:
    rec = Reconciler(journal, CcxtVenueView(None, INST, time.time_ns), Portfolio(INST), clock_now=time.time_ns,
                     prefix=PREFIX, venue="binance")
    with pytest.raises(RuntimeError, match="before startup"):
        await rec.periodic()


async def test_periodic_leaves_an_order_in_flight_to_the_gateway(fake: FakeBinanceExchange, journal: Journal) -> None:
    ex = ccxt_binance(fake, timeout=2000, enableRateLimit=False)
    try:
        rec = Reconciler(journal, CcxtVenueView(ex, INST, time.time_ns), Portfolio(INST), clock_now=time.time_ns,
                         prefix=PREFIX, venue="binance", offsets={SYM: HELD})
        assert (await rec.startup()).ok
        journal.record_order(order("dd1-1-0"), venue="binance")  # the gateway: journaled, create in flight
        assert rec.tracker is not None
        rec.tracker.add(order("dd1-1-0"))
        res = await rec.periodic()
        place(fake, "dd1-1-0")  # the create lands; the stream's ack is late
        rec.tracker.accepted("dd1-1-0", time.time_ns())
        res2 = await rec.periodic()
    finally:
        await ex.close()
    assert res.ok and res2.ok, (res.discrepancies, res2.discrepancies)
    assert rec.tracker.get("dd1-1-0").state is OrderState.NEW
    jo = journaled(journal, "dd1-1-0")
    assert jo.acked and jo.venue_order_id is not None  # the reconciler journaled the venue's answer


IB_SYM, IB_CON, IB_CLIENT = "AAPL", 265598, 7
IB_INST = Instrument(IB_SYM, 0.01, 1)


async def ib_gateway(tws: FakeTwsOrders, journal: Journal | None, events: list[BrokerEvent]) -> IbGateway:
    contract = Contract(conId=IB_CON, symbol=IB_SYM, secType="STK", exchange="ISLAND", currency="USD")
    gw = IbGateway(IB(), {IB_SYM: contract}, lambda s: IB_INST, events.append, clock_now=time.time_ns,
                   journal=journal, port=tws.port, client_id=IB_CLIENT, connect_timeout=2, request_timeout=5)
    await gw.start()
    await gw.wait_synced(5)
    return gw


async def test_ib_fills_while_down_applied_once_and_an_order_ib_dropped_is_closed(journal: Journal) -> None:
    tws = FakeTwsOrders(contract_ids={IB_SYM: IB_CON})
    await tws.start()
    events: list[BrokerEvent] = []
    try:
        gw = await ib_gateway(tws, journal, events)  # the daemon's first life, journaling
        try:
            for cid in ("dd1-0-0", "dd1-0-1"):
                gw.submit(Order(cid, IB_SYM, time.time_ns(), Side.BUY, 10, OrderType.LIMIT, 15000))
                await tws.wait_order(cid)
            a, b = tws.by_ref("dd1-0-0"), tws.by_ref("dd1-0-1")
            tws.fill(a.order_id, 4, 150.0, time_s=int(time.time()))
            await fake_wait(lambda: sum(isinstance(e, Fill) for e in events) == 1
                            and all(jo.acked for jo in journal.recover().open_orders))
        finally:
            await gw.close()  # killed; meanwhile IB fills more of one order and drops the other (end of day)
        tws.fill(a.order_id, 3, 150.0, time_s=int(time.time()))
        tws.orders[b.order_id].status = "Cancelled"
        results = []
        for _ in range(2):  # two restarts: the second applies nothing
            gw2 = await ib_gateway(tws, None, [])
            try:
                portfolio = restore_portfolio(Portfolio({IB_SYM: IB_INST}), journal.recover())
                rec = Reconciler(journal, IbVenueView(gw2, lambda s: IB_INST), portfolio, clock_now=time.time_ns,
                                 prefix=PREFIX, venue="ib", cancel_orphans=True)
                results.append((await rec.startup(), rec))
            finally:
                await gw2.close()
    finally:
        await tws.stop()
    (first, rec1), (second, rec2) = results
    assert first.ok, first.discrepancies
    assert [f.qty for f in first.applied_fills] == [3] and rec1.portfolio.position(IB_SYM) == 7
    assert rec1.tracker is not None and rec1.tracker.get("dd1-0-1").state is OrderState.CANCELED
    assert rec1.tracker.get("dd1-0-0").state is OrderState.PARTIALLY_FILLED
    assert second.ok and second.applied_fills == [] and rec2.portfolio.position(IB_SYM) == 7
    assert [o.order.client_id for o in journal.recover().open_orders] == ["dd1-0-0"]


async def fake_wait(cond: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.002)
