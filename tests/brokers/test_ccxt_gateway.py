"""CcxtGateway with the real ccxt client against the fake Binance exchange on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import ccxt
import pytest

from daemon.brokers import ccxt_mapping as cm
from daemon.brokers.ccxt_client import repoint
from daemon.brokers.ccxt_gateway import CcxtGateway, IpBanned, build_ccxt_gateway
from daemon.brokers.credentials import ApiCredentials
from daemon.brokers.lifecycle import OrderState
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
from daemon.instruments import Instrument
from daemon.sources.backoff import Backoff
from tests.fakes.binance_exchange import FakeBinanceExchange, ccxt_binance

SYM = "BTCUSDT"
INST = {SYM: Instrument(SYM, 0.01, 0.00001)}
PX = 4_900_000  # 49,000.00 in ticks
LOTS = 1000  # 0.01 BTC in lots


class Journal:
    """A journal that remembers its calls, and how many orders the venue had when each order was recorded."""

    def __init__(self, fake: FakeBinanceExchange) -> None:
        self.fake = fake
        self.calls: list[tuple[Any, ...]] = []

    def record_order(self, order: Order, venue: str = "", state: str = "PENDING_NEW") -> None:
        self.calls.append(("order", order.client_id, len(self.fake.orders)))

    def record_order_event(self, ts: int, client_id: str, event: str, state: str, venue_order_id: str | None = None,
                           payload: dict | None = None) -> None:
        self.calls.append(("event", client_id, event, (payload or {}).get("reason", "")))

    def record_fill(self, fill: Fill, venue: str, state: str | None = None) -> None:
        self.calls.append(("fill", fill.client_id, fill.trade_id, venue))


class Clock:
    def __init__(self) -> None:
        self.t = 1_000

    def now(self) -> int:
        self.t += 1
        return self.t


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinanceExchange]:
    async with FakeBinanceExchange(balances={"USDT": "10000", "BTC": "1"}) as f:
        yield f


async def streaming(gw: CcxtGateway, fake: FakeBinanceExchange) -> None:
    """Wait until both watch loops wait on a subscribed user stream, so no report can be missed."""
    client_url = gw.exchange.urls["api"]["ws"]["ws-api"]["spot"]

    def ready() -> bool:
        futures = getattr(gw.exchange.clients.get(client_url), "futures", {})
        return fake.user_streams >= 1 and "orders" in futures and "myTrades" in futures

    await fake.wait_for(ready)


def make(fake: FakeBinanceExchange, events: list[BrokerEvent], *, timeout: int = 2000, **kw: Any) -> CcxtGateway:
    ex = ccxt_binance(fake, timeout=timeout, enableRateLimit=False)
    kw.setdefault("poll_interval_s", None)
    return CcxtGateway(ex, INST, events.append, clock_now=Clock().now, **kw)


@pytest.fixture
async def gw(fake: FakeBinanceExchange) -> AsyncIterator[tuple[CcxtGateway, list[BrokerEvent], Journal]]:
    events: list[BrokerEvent] = []
    journal = Journal(fake)
    g = make(fake, events, journal=journal)
    await g.start()
    await streaming(g, fake)
    try:
        yield g, events, journal
    finally:
        await g.close()


def order(cid: str, side: Side = Side.BUY, qty: int = LOTS, px: int | None = PX) -> Order:
    kind = OrderType.LIMIT if px is not None else OrderType.MARKET
    return Order(cid, SYM, 1, side, qty, kind, px)


def of(events: list[BrokerEvent], kind: type, cid: str | None = None) -> list[Any]:
    return [e for e in events if isinstance(e, kind) and (cid is None or e.client_id == cid)]


def creates(fake: FakeBinanceExchange) -> int:
    return sum(1 for r in fake.requests if (r.method, r.path) == ("POST", "/api/v3/order"))


async def test_limit_order_partial_then_full_fill(fake: FakeBinanceExchange, gw: Any) -> None:
    g, events, journal = gw
    g.submit(order("a"))
    await fake.wait_for(lambda: of(events, OrderAccepted, "a"))
    assert journal.calls[0] == ("order", "a", 0)  # journaled before the venue had it
    assert fake.order("a").qty == Decimal("0.01") and fake.order("a").price == Decimal("49000")
    fake.fill("a", "0.004")
    await fake.wait_for(lambda: len(of(events, Fill, "a")) == 1)
    assert g.open_orders()[0].state is OrderState.PARTIALLY_FILLED
    fake.fill("a", "0.006", "48000")
    await fake.wait_for(lambda: len(of(events, Fill, "a")) == 2)
    f1, f2 = of(events, Fill, "a")
    assert (f1.qty, f1.price, f1.side, f1.liquidity, f1.trade_id) == (400, PX, Side.BUY, Liquidity.MAKER, "1")
    assert (f2.qty, f2.price) == (600, 4_800_000)
    assert f1.fee == pytest.approx(0.000004 * 49_000)  # base-currency commission valued in quote
    assert g.tracker.get("a").state is OrderState.FILLED and g.open_orders() == []
    assert [c for c in journal.calls if c[0] == "fill"] == [("fill", "a", t, "binance") for t in ("1", "2")]
    assert creates(fake) == 1 and g.connected


async def test_market_order_fills_at_once(fake: FakeBinanceExchange, gw: Any) -> None:
    g, events, _ = gw
    g.submit(order("m", Side.SELL, 2000, None))
    await fake.wait_for(lambda: of(events, Fill, "m"))
    (f,) = of(events, Fill, "m")
    assert (f.qty, f.price, f.liquidity, f.side) == (2000, 5_000_000, Liquidity.TAKER, Side.SELL)
    assert f.fee == pytest.approx(1.0)  # 0.1 % of 1000 USDT, charged in USDT
    await g.poll_once()
    assert [type(e).__name__ for e in events] == ["OrderAccepted", "Fill"]
    assert g.tracker.get("m").state is OrderState.FILLED


async def test_cancel_and_cancel_all(fake: FakeBinanceExchange, gw: Any) -> None:
    g, events, journal = gw
    for cid in ("c1", "c2", "c3"):
        g.submit(order(cid, px=PX - 100))
    await fake.wait_for(lambda: len(of(events, OrderAccepted)) == 3)
    fake.fill("c2", "0.003")
    await fake.wait_for(lambda: of(events, Fill, "c2"))
    g.cancel("c1")
    g.cancel("c1")  # a second request sends nothing
    await fake.wait_for(lambda: of(events, OrderCanceled, "c1"))
    assert of(events, OrderCanceled, "c1")[0].leaves_qty == LOTS
    assert g.cancel_all() == 2
    await fake.wait_for(lambda: len(of(events, OrderCanceled)) == 3)
    assert {e.client_id: e.leaves_qty for e in of(events, OrderCanceled)} == {"c1": LOTS, "c2": 700, "c3": LOTS}
    assert [fake.order(c).status for c in ("c1", "c2", "c3")] == ["CANCELED"] * 3
    assert sum(1 for r in fake.requests if r.method == "DELETE") == 3
    assert g.open_orders() == [] and g.cancel_all() == 0
    assert ("event", "c1", "CANCEL_REQUEST", "") in journal.calls


async def test_timed_out_create_is_looked_up_never_resent(fake: FakeBinanceExchange) -> None:
    events: list[BrokerEvent] = []
    journal = Journal(fake)
    g = make(fake, events, timeout=300, journal=journal, lookup_backoff=Backoff(0.05, 0.1))
    await g.start()
    try:
        fake.timeout_next_create()
        g.submit(order("lost"))
        await fake.wait_for(lambda: of(events, OrderAccepted, "lost"))
        assert g.stats["send_timeout"] == 1 and g.tracker.get("lost").state is OrderState.NEW
        assert ("event", "lost", "SEND_TIMEOUT", "RequestTimeout") in journal.calls
        assert creates(fake) == 1 and len(fake.orders) == 1
        lookups = [r for r in fake.requests if (r.method, r.path) == ("GET", "/api/v3/order")]
        assert lookups and lookups[0].params["origClientOrderId"] == "lost"
        fake.fill("lost", "0.01")
        await g.poll_once()  # the order left the open list: looked up, its trade fetched
        assert [f.qty for f in of(events, Fill, "lost")] == [LOTS] and creates(fake) == 1
    finally:
        await g.close()


async def test_restored_unknown_order_absent_from_venue_is_not_found(fake: FakeBinanceExchange) -> None:
    tracker = OrderTracker.restore([OrderRecord(order("ghost"), OrderState.PENDING_NEW)], [])
    events: list[BrokerEvent] = []
    g = make(fake, events, tracker=tracker, watch=False)
    await g.start()
    try:
        await g.poll_once()
        await fake.wait_for(lambda: of(events, OrderRejected, "ghost"))
        assert of(events, OrderRejected)[0].reason == "not_found" and creates(fake) == 0
    finally:
        await g.close()


async def test_rate_limit_retry_after_throttles(fake: FakeBinanceExchange, gw: Any) -> None:
    g, events, _ = gw
    g.submit(order("r1"))
    await fake.wait_for(lambda: of(events, OrderAccepted, "r1"))
    fake.rate_limit_next(1, retry_after_s=1)
    with pytest.raises(ccxt.DDoSProtection, match="429"):
        await g.poll_once()
    assert g.throttled and g.stats["rate_limited"] == 1
    n = len(fake.requests)
    g.submit(order("r2"))
    assert of(events, OrderRejected, "r2")[0].reason == "rate_limited"
    g.cancel("r1")  # waits for Retry-After to pass, then goes
    await fake.wait_for(lambda: g.stats["throttle_waits"] >= 1)
    assert len(fake.requests) == n
    await fake.wait_for(lambda: of(events, OrderCanceled, "r1"), timeout=3)
    assert not g.throttled and len(fake.requests) == n + 1 and creates(fake) == 1


async def test_ip_ban_halts_and_refuses_locally(fake: FakeBinanceExchange) -> None:
    events: list[BrokerEvent] = []
    bans: list[float] = []
    g = make(fake, events, on_ban=bans.append, watch=False)
    await g.start()
    try:
        fake.ban_next(1, retry_after_s=120)
        g.submit(order("b1"))
        await fake.wait_for(lambda: of(events, OrderRejected, "b1"))
        assert of(events, OrderRejected, "b1")[0].reason == "ip_banned"
        assert g.ip_banned and not g.connected and bans == [120.0]
        n = len(fake.requests)
        g.submit(order("b2"))
        assert of(events, OrderRejected, "b2")[0].reason == "ip_banned"
        with pytest.raises(IpBanned):
            await g.poll_once()
        assert len(fake.requests) == n and fake.orders == []
    finally:
        await g.close()


async def test_rejects_map_to_stable_reasons(fake: FakeBinanceExchange, gw: Any) -> None:
    g, events, journal = gw
    fake.reject_next()
    g.submit(order("x1"))
    fake.reject_next(-2010, "Order would immediately match and take.")
    g.submit(order("x2"))
    g.submit(order("x3", qty=10**7))  # 100 BTC: more than the balance
    g.submit(Order("x4", "ETHUSDT", 1, Side.BUY, 1, OrderType.MARKET))
    await fake.wait_for(lambda: len(of(events, OrderRejected)) == 4)
    assert {e.client_id: e.reason for e in of(events, OrderRejected)} == {
        "x1": "insufficient_funds", "x2": "invalid_order", "x3": "insufficient_funds", "x4": "unknown_symbol"}
    assert fake.orders == [] and of(events, OrderAccepted) == []
    assert ("event", "x1", "REJECT", "insufficient_funds") in journal.calls


async def test_duplicated_and_reordered_reports_apply_each_fill_once(fake: FakeBinanceExchange, gw: Any) -> None:
    g, events, _ = gw
    fake.duplicate_reports(True)
    fake.reorder_reports(True)
    g.submit(order("d"))
    await fake.wait_for(lambda: any(o.client_id == "d" for o in fake.orders))
    for q in ("0.002", "0.003", "0.005"):
        fake.fill("d", q)
    fake.reorder_reports(False)
    await fake.wait_for(lambda: sum(f.qty for f in of(events, Fill, "d")) == LOTS)
    await g.poll_once()
    fills = of(events, Fill, "d")
    assert sorted(f.trade_id for f in fills) == ["1", "2", "3"] and len(of(events, OrderAccepted)) == 1
    assert g.tracker.get("d").state is OrderState.FILLED
    assert g.tracker.stats["duplicate_fill"] >= 1


def subscribes(fake: FakeBinanceExchange) -> int:
    return sum(r.path == "userDataStream.subscribe.signature" for r in fake.requests)


async def test_dropped_stream_reconnects_and_polling_fills_the_gap(fake: FakeBinanceExchange) -> None:
    events: list[BrokerEvent] = []
    g = make(fake, events, poll_interval_s=0.05, stream_backoff=Backoff(0.05, 0.1))
    await g.start()
    try:
        await streaming(g, fake)
        g.submit(order("s"))
        await fake.wait_for(lambda: of(events, OrderAccepted, "s"))
        fake.drop_user_stream()
        fake.fill("s", "0.002")  # reported to nobody: the stream is gone
        await fake.wait_for(lambda: len(of(events, Fill, "s")) == 1)
        await fake.wait_for(lambda: g.stats["stream_orders_errors"] >= 1 and fake.user_streams >= 1)
        assert subscribes(fake) >= 2 and g.stats["stream_trades_errors"] >= 1
        fake.fill("s", "0.008")
        await fake.wait_for(lambda: g.tracker.get("s").state is OrderState.FILLED)
        assert [f.qty for f in of(events, Fill, "s")] == [200, 800]
        await fake.wait_for(lambda: g.connected)  # both stream loops are back
    finally:
        await g.close()


async def test_terminated_stream_is_polled_and_subscribed_again(fake: FakeBinanceExchange) -> None:
    events: list[BrokerEvent] = []
    g = make(fake, events, poll_interval_s=0.05)
    await g.start()
    try:
        await streaming(g, fake)
        g.submit(order("t"))
        await fake.wait_for(lambda: of(events, OrderAccepted, "t"))
        before = subscribes(fake)
        fake.expire_listen_key()  # eventStreamTerminated: ccxt forgets the subscription, does not fail the watch
        fake.fill("t", "0.003")  # reported to nobody: no stream is subscribed now
        await fake.wait_for(lambda: len(of(events, Fill, "t")) == 1)
        assert g.stats["poll_found_news"] >= 1 and g.stats["stream_orders_errors"] == 0
        await fake.wait_for(lambda: subscribes(fake) > before and fake.user_streams >= 1)  # subscribed again
        fake.fill("t", "0.007")
        await fake.wait_for(lambda: g.tracker.get("t").state is OrderState.FILLED)
        assert [f.qty for f in of(events, Fill, "t")] == [300, 700]
    finally:
        await g.close()


async def test_balances_and_factory(fake: FakeBinanceExchange) -> None:
    events: list[BrokerEvent] = []
    creds = ApiCredentials(fake.api_key, fake.secret, source="test")
    api = repoint(ccxt.binance().urls["api"], fake.rest_url, fake.ws_url)
    g = build_ccxt_gateway("binance", INST, events.append, clock_now=Clock().now, credentials=creds,
                           api_urls=api, options={"defaultType": "spot", "fetchMarkets": {"types": ["spot"]},
                                                  "fetchCurrencies": False, "fetchMargins": False},
                           poll_interval_s=None, watch=False)
    assert g.exchange.enableRateLimit and fake.secret not in repr(g)
    g.exchange.timeout_on_exit = 0
    await g.start()
    try:
        acct = await g.fetch_positions_and_balances()
        assert acct["balances"]["USDT"] == {"free": 10000.0, "used": 0.0, "total": 10000.0}
        g.submit(order("f"))
        await fake.wait_for(lambda: of(events, OrderAccepted, "f"))
    finally:
        await g.close()
    sandbox = build_ccxt_gateway("binance", INST, events.append, clock_now=Clock().now, credentials=creds,
                                 sandbox=True)
    try:
        assert "testnet" in sandbox.exchange.urls["api"]["private"]
    finally:
        await sandbox.close()
    with pytest.raises(ValueError, match="no exchange"):
        build_ccxt_gateway("nope", INST, events.append, clock_now=Clock().now, credentials=creds)


async def test_cancel_while_create_in_flight_is_sent_after_the_answer(fake: FakeBinanceExchange, gw: Any) -> None:
    g, events, _ = gw
    fake.timeout_next_create(answer_after_s=0.2)
    g.submit(order("late"))
    await fake.wait_for(lambda: any(o.client_id == "late" for o in fake.orders))
    g.cancel("late")
    assert not any(r.method == "DELETE" for r in fake.requests)  # held until the create is answered
    await fake.wait_for(lambda: of(events, OrderCanceled, "late"))
    assert [type(e).__name__ for e in events] == ["OrderAccepted", "OrderCanceled"]
    assert fake.order("late").status == "CANCELED" and g.stats["send_timeout"] == 0


async def test_venue_side_cancel_and_expiry_reach_the_engine(fake: FakeBinanceExchange, gw: Any) -> None:
    g, events, _ = gw
    g.submit(order("v1"))
    g.submit(order("v2"))
    await fake.wait_for(lambda: len(of(events, OrderAccepted)) == 2)
    fake.fill("v2", "0.001")
    fake.cancel("v1")
    fake.cancel("v2", "EXPIRED")
    await fake.wait_for(lambda: len(of(events, OrderCanceled)) == 2)
    assert {e.client_id: (e.reason, e.leaves_qty) for e in of(events, OrderCanceled)} == {
        "v1": ("canceled", LOTS), "v2": ("expired", 900)}
    fake.place("BTCUSDT", "SELL", "0.1", "60000", "orphan")
    await g.poll_once()
    assert g.open_orders() == [] and g.reports.stats["order_report_not_ours"] >= 1


async def test_journal_failure_and_not_started_refuse_without_sending(fake: FakeBinanceExchange) -> None:
    events: list[BrokerEvent] = []

    class Broken(Journal):
        def record_order(self, order: Order, venue: str = "", state: str = "PENDING_NEW") -> None:
            raise OSError("disk full")

    g = make(fake, events, journal=Broken(fake), watch=False)
    g.submit(order("early"))
    await g.start()
    try:
        g.submit(order("j"))
        g.submit(order("j"))
        assert [(e.client_id, e.reason) for e in of(events, OrderRejected)] == [
            ("early", "not_started"), ("j", "journal_error"), ("j", "duplicate_client_id")]
        assert creates(fake) == 0 and g.connected
    finally:
        await g.close()
    assert not g.connected


async def test_fills_from_the_create_answer_without_streams(fake: FakeBinanceExchange) -> None:
    events: list[BrokerEvent] = []
    g = make(fake, events, watch=False)
    await g.start()
    try:
        g.submit(order("mb", Side.BUY, 2000, None))
        await fake.wait_for(lambda: of(events, Fill, "mb"))
        (f,) = of(events, Fill, "mb")
        assert (f.qty, f.price, f.liquidity, f.trade_id) == (2000, 5_000_000, Liquidity.TAKER, "1")
        assert f.fee == pytest.approx(0.00002 * 50_000)
        assert fake.requests[-1].params["newClientOrderId"] == "mb" and fake.requests[-1].params["quantity"] == "0.02"
        assert g.tracker.get("mb").state is OrderState.FILLED and g.used_weight > 0
    finally:
        await g.close()


def test_error_triage_and_reports_are_pure() -> None:
    ddos = ccxt.DDoSProtection('binance 429 {"code":-1003,"msg":"Too many requests"}')
    ban = ccxt.DDoSProtection('binance 418 I\'m a Teapot {"code":-1003,"msg":"Way too many requests; IP banned"}')
    assert (cm.is_ban(ddos), cm.is_ban(ban), cm.reject_reason(ddos), cm.reject_reason(ban)) == (
        False, True, "rate_limited", "ip_banned")
    assert cm.send_outcome_unknown(ccxt.RequestTimeout("t")) and cm.send_outcome_unknown(ccxt.NetworkError("n"))
    assert not cm.send_outcome_unknown(ddos) and not cm.send_outcome_unknown(ccxt.InvalidOrder("x"))
    assert [cm.reject_reason(e) for e in (ccxt.InsufficientFunds(), ccxt.BadSymbol(), ccxt.AuthenticationError(),
                                          ccxt.InvalidNonce(), ccxt.ExchangeError())] == [
        "insufficient_funds", "unknown_symbol", "auth_error", "clock_skew", "exchange_error"]
    assert (cm.retry_after_s({"retry-after": "7"}, 1), cm.retry_after_s({"Retry-After": "x"}, 1),
            cm.retry_after_s(None, 2)) == (7.0, 1, 2)
    gate = cm.RateGate()
    assert gate.note_failure(ban, {"Retry-After": "30"}, 100.0) == ("ban", 30.0)
    assert gate.banned(129.0) and not gate.banned(130.0)
    assert gate.note_failure(ddos, {}, 100.0) == ("rate_limit", 1.0) and gate.wait_s(100.5) == 0.5
    tracker = OrderTracker()
    tracker.add(order("o"))
    reports = cm.VenueReports(tracker, INST)
    reports.bind({}, {"BTCUSDT": [{"symbol": "BTC/USDT", "base": "BTC", "quote": "USDT"}]})
    assert reports.order({"symbol": "BTC/USDT", "clientOrderId": "o", "id": "9", "status": "open",
                          "filled": 0.000015}, 5) == []  # off the lot grid: refused, counted
    assert reports.stats["bad_order_report"] == 1 and tracker.get("o").state is OrderState.PENDING_NEW
    assert reports.order({"symbol": "BTC/USDT", "clientOrderId": "o", "id": "9", "status": "open",
                          "filled": 0.002}, 5) == [OrderAccepted("o", SYM, 5)]
    trade = {"symbol": "BTC/USDT", "id": "t1", "order": "9", "side": "buy", "price": 49_000.0, "amount": 0.002,
             "fee": {"cost": 0.1, "currency": "BNB"}, "takerOrMaker": "maker", "timestamp": 77}
    (fill,) = reports.trades([trade, trade], 6)
    assert (fill.qty, fill.fee, fill.trade_id) == (200, 0.0, "t1") and reports.trade_since == {SYM: 77}
    with pytest.raises(ValueError, match="no market"):
        cm.VenueReports(tracker, {"ETHUSDT": Instrument("ETHUSDT", 0.01, 0.0001)}).bind({}, {})


async def test_the_real_journal_holds_the_order_before_the_venue_and_every_fill_once(
        fake: FakeBinanceExchange, tmp_path: Any) -> None:
    from daemon.journal import Journal as SqliteJournal

    journal = SqliteJournal.open(tmp_path / "journal.db")
    events: list[BrokerEvent] = []
    g = make(fake, events, journal=journal)
    await g.start()
    await streaming(g, fake)
    try:
        g.submit(order("j1"))
        await fake.wait_for(lambda: of(events, OrderAccepted, "j1"))
        (open_order,) = journal.recover().open_orders
        assert (open_order.order.client_id, open_order.state) == ("j1", "NEW")
        fake.fill("j1", "0.004")
        fake.fill("j1", "0.006")
        await fake.wait_for(lambda: len(of(events, Fill, "j1")) == 2)
        rec = journal.recover()
        assert rec.open_orders == [] and rec.last_fills[SYM].trade_id in {"1", "2"}
        assert journal.counts["duplicate_fills"] == 0
    finally:
        await g.close()
        journal.close()
