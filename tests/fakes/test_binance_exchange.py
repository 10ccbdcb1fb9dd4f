"""The fake Binance spot exchange, proven with the real ccxt clients (async, sync, and ccxt pro's user stream)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import aiohttp
import ccxt
import orjson
import pytest

from tests.fakes.binance_exchange import FakeBinanceExchange, MarketSpec, ccxt_binance

SYM = "BTC/USDT"
ORDERS = "orders:" + SYM


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinanceExchange]:
    async with FakeBinanceExchange(balances={"USDT": "10000", "BTC": "1"}) as f:
        yield f


@pytest.fixture
async def ex(fake: FakeBinanceExchange) -> AsyncIterator[Any]:
    client = ccxt_binance(fake, timeout=2000, enableRateLimit=False)
    await client.load_markets()
    try:
        yield client
    finally:
        await client.close()


def signed_query(fake: FakeBinanceExchange, params: dict[str, Any], secret: str | None = None) -> str:
    q = urlencode({**params, "timestamp": fake.now_ms()})
    sig = hmac.new((secret or fake.secret).encode(), q.encode(), hashlib.sha256).hexdigest()
    return f"{q}&signature={sig}"


async def raw(fake: FakeBinanceExchange, method: str, path: str, query: str = "",
              key: str | None = None) -> tuple[int, dict[str, str], Any]:
    """One plain HTTP request to the fake: (status, headers, JSON body)."""
    async with aiohttp.ClientSession() as s, s.request(
            method, f"{fake.rest_url}{path}?{query}", headers={"X-MBX-APIKEY": key or fake.api_key}) as r:
        return r.status, dict(r.headers), orjson.loads(await r.read())


async def user_stream(fake: FakeBinanceExchange, session: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
    """A plain WS-API user-data-stream subscription, signed the way ccxt signs it."""
    ws = await session.ws_connect(f"{fake.ws_url}/ws-api/v3")
    params = {"apiKey": fake.api_key, "timestamp": fake.now_ms()}
    payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
    params["signature"] = hmac.new(fake.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    await ws.send_str(orjson.dumps({"id": "1", "method": "userDataStream.subscribe.signature",
                                    "params": params}).decode())
    ack = orjson.loads(await ws.receive_str(timeout=2))
    assert ack["status"] == 200 and "subscriptionId" in ack["result"]
    return ws


async def reports(ws: aiohttp.ClientWebSocketResponse, n: int) -> list[dict[str, Any]]:
    """The next n executionReports on a raw user stream (account updates skipped)."""
    out: list[dict[str, Any]] = []
    while len(out) < n:
        msg = orjson.loads(await ws.receive_str(timeout=2))
        ev = msg.get("event", msg)
        if ev.get("e") == "executionReport":
            out.append(ev)
    return out


async def watching(fake: FakeBinanceExchange, ex: Any, call: Any, message_hash: str) -> asyncio.Future[Any]:
    """Start a ccxt watch call; return once ccxt waits on `message_hash` over a subscribed user stream, so nothing
    the fake sends afterwards can be missed."""
    url = ex.urls["api"]["ws"]["ws-api"]["spot"]
    fut = asyncio.ensure_future(call)
    await fake.wait_for(lambda: fake.user_streams >= 1 and message_hash in getattr(ex.clients.get(url), "futures", {}))
    return fut


# REST round trips


async def test_markets_time_and_weight_header(fake: FakeBinanceExchange, ex: Any) -> None:
    m = ex.market(SYM)
    assert (m["id"], m["precision"]["price"], m["precision"]["amount"], m["limits"]["cost"]["min"]) == \
        ("BTCUSDT", 0.01, 0.00001, 5.0)
    assert abs(await ex.fetch_time() - fake.now_ms()) < 5000
    assert int(ex.last_response_headers["X-MBX-USED-WEIGHT-1M"]) == fake.used_weight() > 0
    assert [r.path for r in fake.requests] == ["/api/v3/exchangeInfo", "/api/v3/time"]


async def test_limit_order_round_trip(fake: FakeBinanceExchange, ex: Any) -> None:
    o = await ex.create_order(SYM, "limit", "buy", 0.01, 49_000, {"clientOrderId": "c1"})
    assert (o["clientOrderId"], o["status"], o["filled"]) == ("c1", "open", 0.0)
    assert fake.balance("USDT") == (Decimal("9510"), Decimal("490"))
    fake.fill("c1", "0.004")
    got = await ex.fetch_order(None, SYM, {"clientOrderId": "c1"})
    assert (got["id"], got["status"], got["filled"], got["remaining"]) == (o["id"], "open", 0.004, 0.006)
    assert [x["clientOrderId"] for x in await ex.fetch_open_orders(SYM)] == ["c1"]
    trades = await ex.fetch_my_trades(SYM)
    assert [(t["id"], t["order"], t["amount"], t["price"], t["takerOrMaker"], t["fee"]["cost"]) for t in trades] == \
        [("1", o["id"], 0.004, 49_000.0, "maker", 0.000004)]
    c = await ex.cancel_order(o["id"], SYM)
    assert c["status"] == "canceled" and fake.order("c1").status == "CANCELED"
    assert c["info"]["origClientOrderId"] == "c1" and c["clientOrderId"] == fake.order("c1").cancel_client_id
    assert await ex.fetch_open_orders(SYM) == []
    bal = await ex.fetch_balance()
    assert (bal["USDT"]["free"], bal["USDT"]["used"], bal["BTC"]["free"]) == (10000 - 196, 0.0, 1.003996)


async def test_fill_price_better_than_limit_releases_the_difference(fake: FakeBinanceExchange, ex: Any) -> None:
    await ex.create_order(SYM, "limit", "buy", 0.01, 49_000, {"clientOrderId": "b"})
    fake.fill("b", "0.01", "48000")
    assert fake.order("b").status == "FILLED"
    assert fake.balance("USDT") == (Decimal("9520"), Decimal("0"))
    with pytest.raises(ValueError, match="FILLED"):
        fake.fill("b", "0.001")


async def test_market_orders_walk_the_book_and_expire_the_rest(fake: FakeBinanceExchange, ex: Any) -> None:
    fake.set_book("BTCUSDT", bids=[("49990", "1")], asks=[("50000", "0.01"), ("50010", "0.02")])
    o = await ex.create_order(SYM, "market", "buy", 0.05, None, {"clientOrderId": "m1"})
    assert (o["status"], o["filled"]) == ("expired", 0.03)
    assert [(f.price, f.qty) for f in fake.order("m1").fills] == [(Decimal("50000"), Decimal("0.01")),
                                                                   (Decimal("50010"), Decimal("0.02"))]
    assert fake.books["BTCUSDT"][1] == []
    trades = await ex.fetch_my_trades(SYM, params={"fromId": 2})
    assert [t["id"] for t in trades] == ["2"]
    fake.set_price("BTCUSDT", "51000")
    fake.books.clear()
    s = await ex.create_order(SYM, "market", "sell", 0.01)
    assert (s["status"], s["average"], s["fee"]["currency"]) == ("closed", 51000.0, "USDT")


async def test_ioc_limit_fills_when_crossing_else_expires(fake: FakeBinanceExchange, ex: Any) -> None:
    a = await ex.create_order(SYM, "limit", "buy", 0.01, 50_100, {"timeInForce": "IOC"})
    b = await ex.create_order(SYM, "limit", "buy", 0.01, 49_000, {"timeInForce": "IOC"})
    assert (a["status"], a["filled"], b["status"], b["filled"]) == ("closed", 0.01, "expired", 0.0)
    assert fake.balance("USDT") == (Decimal("9500"), Decimal("0"))


async def test_cancel_all_and_unknown_orders(fake: FakeBinanceExchange, ex: Any) -> None:
    for cid in ("x1", "x2"):
        await ex.create_order(SYM, "limit", "sell", 0.1, 60_000, {"clientOrderId": cid})
    assert fake.balance("BTC") == (Decimal("0.8"), Decimal("0.2"))
    assert len(await ex.cancel_all_orders(SYM)) == 2
    assert fake.balance("BTC") == (Decimal("1"), Decimal("0"))
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        await ex.cancel_order("999", SYM)
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        await ex.fetch_order(None, SYM, {"clientOrderId": "nope"})
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        await ex.cancel_all_orders(SYM)


async def test_bad_orders_are_refused_with_binance_codes(fake: FakeBinanceExchange, ex: Any) -> None:
    with pytest.raises(ccxt.InsufficientFunds, match="insufficient balance"):
        await ex.create_order(SYM, "limit", "buy", 1, 49_000)
    await ex.create_order(SYM, "limit", "buy", 0.01, 49_000, {"clientOrderId": "dup"})
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        await ex.create_order(SYM, "limit", "buy", 0.01, 49_000, {"clientOrderId": "dup"})
    status, _, body = await raw(fake, "POST", "/api/v3/order", signed_query(fake, {
        "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.000015",
        "price": "49000"}))
    assert (status, body["code"], body["msg"]) == (400, -1013, "Filter failure: LOT_SIZE")
    status, _, body = await raw(fake, "POST", "/api/v3/order", signed_query(fake, {"symbol": "ETHUSDT"}))
    assert (status, body["code"]) == (400, -1121)
    assert len(fake.orders) == 1


async def test_two_markets_and_quote_order_qty() -> None:
    eth = MarketSpec("ETHUSDT", "ETH", "USDT", Decimal("0.01"), Decimal("0.0001"), Decimal("0.0001"),
                     Decimal("9000"), Decimal("5"), Decimal("2500"))
    async with FakeBinanceExchange([MarketSpec(), eth], balances={"USDT": "1000"}, fee_rate="0") as fake:
        ex = ccxt_binance(fake, enableRateLimit=False)
        try:
            o = await ex.create_order("ETH/USDT", "market", "buy", None, None, {"cost": 100})
            assert (o["filled"], o["cost"]) == (0.04, 100.0)
            assert fake.balance("ETH") == (Decimal("0.04"), Decimal("0"))
        finally:
            await ex.close()


async def test_sync_ccxt_client(fake: FakeBinanceExchange) -> None:
    def run() -> tuple[str, str]:
        sync = ccxt_binance(fake, async_=False, enableRateLimit=False)
        o = sync.create_order(SYM, "limit", "sell", 0.01, 55_000, {"clientOrderId": "s1"})
        return o["clientOrderId"], sync.fetch_order(None, SYM, {"clientOrderId": "s1"})["status"]

    assert await asyncio.to_thread(run) == ("s1", "open")


async def test_venue_side_orders_and_cancels(fake: FakeBinanceExchange, ex: Any) -> None:
    fake.place("BTCUSDT", "SELL", "0.1", "60000", "orphan")
    fake.place("BTCUSDT", "BUY", "0.01", "40000", "kept")
    assert sorted(o["clientOrderId"] for o in await ex.fetch_open_orders(SYM)) == ["kept", "orphan"]
    fake.cancel("orphan")
    fake.cancel("kept", "EXPIRED")
    assert [(o.client_id, o.status) for o in fake.orders] == [("orphan", "CANCELED"), ("kept", "EXPIRED")]
    assert fake.balance("BTC") == (Decimal("1"), Decimal("0")) and fake.balance("USDT") == (Decimal("10000"), 0)
    with pytest.raises(ValueError, match="EXPIRED"):
        fake.cancel("kept")
    with pytest.raises(KeyError, match="ghost"):
        fake.fill("ghost", "1")


async def test_my_trades_since_and_by_order(fake: FakeBinanceExchange, ex: Any) -> None:
    fake.place("BTCUSDT", "BUY", "0.01", "49000", "t1")
    fake.fill("t1", "0.004")
    cut = fake.now_ms() + 1
    fake.clock_ms = lambda: cut + 10
    fake.fill("t1", "0.006")
    assert [t["id"] for t in await ex.fetch_my_trades(SYM, since=cut)] == ["2"]
    assert [t["id"] for t in await ex.fetch_my_trades(SYM, params={"orderId": 1})] == ["1", "2"]
    assert [t["id"] for t in await ex.fetch_my_trades(SYM, limit=1)] == ["2"]


async def test_ccxt_urls_all_point_at_the_fake() -> None:
    fake = FakeBinanceExchange()
    fake.port = 4321
    client = ccxt_binance(fake)
    await client.close()

    def leaves(node: Any) -> list[str]:
        return [u for v in node.values() for u in leaves(v)] if isinstance(node, dict) else [node]

    urls = leaves(client.urls["api"])
    assert urls and all(u.startswith(("http://127.0.0.1:4321/", "ws://127.0.0.1:4321/")) for u in urls)
    assert client.urls["api"]["private"] == "http://127.0.0.1:4321/api/v3"
    assert client.urls["api"]["ws"]["ws-api"]["spot"] == "ws://127.0.0.1:4321/ws-api/v3"


# authentication


async def test_bad_signature_key_and_timestamp_are_rejected(fake: FakeBinanceExchange) -> None:
    status, headers, body = await raw(fake, "GET", "/api/v3/account", signed_query(fake, {}, secret="wrong"))
    assert (status, body) == (400, {"code": -1022, "msg": "Signature for this request is not valid."})
    assert "X-MBX-USED-WEIGHT-1M" in headers
    status, _, body = await raw(fake, "GET", "/api/v3/account", signed_query(fake, {}), key="other-key")
    assert (status, body["code"]) == (401, -2015)
    status, _, body = await raw(fake, "GET", "/api/v3/account", "timestamp=1")
    assert (status, body["code"]) == (400, -1102)
    bad = ccxt_binance(fake, secret="wrong", enableRateLimit=False)
    try:
        with pytest.raises(ccxt.AuthenticationError, match="-1022"):
            await bad.fetch_balance()
        bad.secret = fake.secret
        fake.time_offset_ms = 60_000
        with pytest.raises(ccxt.InvalidNonce, match="-1021"):
            await bad.fetch_balance()
        fake.time_offset_ms = -60_000
        with pytest.raises(ccxt.InvalidNonce, match="1000ms ahead"):
            await bad.fetch_balance()
        fake.time_offset_ms = 0
        assert (await bad.fetch_balance())["BTC"]["free"] == 1.0
    finally:
        await bad.close()


# faults


async def test_timed_out_create_is_booked_and_found_by_client_id(fake: FakeBinanceExchange) -> None:
    ex = ccxt_binance(fake, timeout=300, enableRateLimit=False)
    try:
        await ex.load_markets()
        fake.timeout_next_create()
        with pytest.raises(ccxt.RequestTimeout):
            await ex.create_order(SYM, "limit", "buy", 0.01, 49_000, {"clientOrderId": "lost"})
        assert fake.requests[-1].status == 0 and fake.order("lost").status == "NEW"
        got = await ex.fetch_order(None, SYM, {"clientOrderId": "lost"})
        assert (got["clientOrderId"], got["status"]) == ("lost", "open")
        fake.timeout_next_create(answer_after_s=0.5)
        with pytest.raises(ccxt.RequestTimeout):
            await ex.create_order(SYM, "limit", "buy", 0.01, 48_000, {"clientOrderId": "late"})
        assert fake.order("late").is_open
    finally:
        await ex.close()


async def test_rate_limit_and_ban(fake: FakeBinanceExchange, ex: Any) -> None:
    fake.rate_limit_next(2, retry_after_s=7)
    status, headers, body = await raw(fake, "GET", "/api/v3/ping")
    assert (status, headers["Retry-After"], body["code"]) == (429, "7", -1003)
    with pytest.raises(ccxt.DDoSProtection, match="429"):
        await ex.fetch_open_orders(SYM)
    assert await ex.fetch_open_orders(SYM) == []
    fake.ban_next(1, retry_after_s=120)
    with pytest.raises(ccxt.DDoSProtection, match=r"418.*banned until"):
        await ex.create_order(SYM, "limit", "buy", 0.01, 49_000)
    assert ex.last_response_headers["Retry-After"] == "120"
    assert fake.orders == [] and [r.status for r in fake.requests[-3:]] == [429, 200, 418]


async def test_reject_next(fake: FakeBinanceExchange, ex: Any) -> None:
    fake.reject_next(-2010, "Order would immediately match and take.")
    with pytest.raises(ccxt.InvalidOrder, match="immediately match"):
        await ex.create_order(SYM, "limit", "buy", 0.01, 49_000, {"clientOrderId": "r1"})
    assert fake.orders == [] and fake.reports == []
    assert (await ex.create_order(SYM, "limit", "buy", 0.01, 49_000, {"clientOrderId": "r1"}))["status"] == "open"


# user data stream


async def test_watch_orders_and_my_trades(fake: FakeBinanceExchange, ex: Any) -> None:
    watch = await watching(fake, ex, ex.watch_orders(SYM), ORDERS)
    await ex.create_order(SYM, "limit", "buy", 0.01, 49_000, {"clientOrderId": "w1"})
    assert [(o["clientOrderId"], o["status"]) for o in await watch] == [("w1", "open")]
    mine = await watching(fake, ex, ex.watch_my_trades(SYM), "myTrades:" + SYM)
    fake.fill("w1", "0.004")
    trades = await mine
    assert [(t["id"], t["amount"], t["price"], t["order"]) for t in trades] == [("1", 0.004, 49_000.0, "1")]
    watch = await watching(fake, ex, ex.watch_orders(SYM), ORDERS)
    fake.fill("w1", "0.006")
    orders = await watch
    assert (orders[-1]["clientOrderId"], orders[-1]["status"], orders[-1]["filled"]) == ("w1", "closed", 0.01)
    watch = await watching(fake, ex, ex.watch_orders(SYM), ORDERS)
    w2 = await ex.create_order(SYM, "limit", "sell", 0.01, 60_000, {"clientOrderId": "w2"})
    await watch
    watch = await watching(fake, ex, ex.watch_orders(SYM), ORDERS)
    await ex.cancel_order(w2["id"], SYM)
    orders = await watch
    assert (orders[-1]["clientOrderId"], orders[-1]["status"]) == ("w2", "canceled")
    assert [r["x"] for r in fake.reports] == ["NEW", "TRADE", "TRADE", "NEW", "CANCELED"]
    assert [r.path for r in fake.requests if r.method == "WS"] == ["userDataStream.subscribe.signature"]


async def test_reports_and_account_positions_on_a_raw_stream(fake: FakeBinanceExchange) -> None:
    async with aiohttp.ClientSession() as s:
        ws = await user_stream(fake, s)
        await fake.wait_for(lambda: fake.user_streams == 1)
        fake.set_balance("ETH", "3")
        msg = orjson.loads(await ws.receive_str(timeout=2))
        assert msg["event"]["e"] == "outboundAccountPosition"
        assert msg["event"]["B"] == [{"a": "ETH", "f": "3.00000000", "l": "0.00000000"}]
        await ws.close()


async def test_duplicate_and_reordered_reports(fake: FakeBinanceExchange, ex: Any) -> None:
    async with aiohttp.ClientSession() as s:
        ws = await user_stream(fake, s)
        fake.duplicate_reports(True)
        await ex.create_order(SYM, "limit", "buy", 0.01, 49_000, {"clientOrderId": "d"})
        assert [(r["x"], r["I"]) for r in await reports(ws, 2)] == [("NEW", 1), ("NEW", 1)]
        fake.duplicate_reports(False)
        fake.reorder_reports(True)
        fake.fill("d", "0.004")
        fake.fill("d", "0.006")
        assert [(r["X"], r["t"]) for r in await reports(ws, 2)] == [("FILLED", 2), ("PARTIALLY_FILLED", 1)]
        await ex.create_order(SYM, "limit", "buy", 0.01, 48_000, {"clientOrderId": "e"})
        fake.reorder_reports(False)
        assert [(r["c"], r["x"]) for r in await reports(ws, 1)] == [("e", "NEW")]
        await ws.close()


async def test_drop_user_stream_then_resubscribe(fake: FakeBinanceExchange, ex: Any) -> None:
    watch = await watching(fake, ex, ex.watch_orders(SYM), ORDERS)
    fake.drop_user_stream()
    with pytest.raises(ccxt.NetworkError):
        await asyncio.wait_for(watch, 2)
    watch = await watching(fake, ex, ex.watch_orders(SYM), ORDERS)
    await ex.create_order(SYM, "limit", "buy", 0.01, 49_000, {"clientOrderId": "after-drop"})
    assert [o["clientOrderId"] for o in await asyncio.wait_for(watch, 2)] == ["after-drop"]


async def test_expire_terminates_ws_api_subscription(fake: FakeBinanceExchange, ex: Any) -> None:
    """ccxt drops the terminated subscription without failing the pending watch: what is sent meanwhile is lost to
    the stream (only polling finds it) until a new watch call subscribes again."""
    watch = await watching(fake, ex, ex.watch_orders(SYM), ORDERS)
    fake.expire_listen_key()
    client = ex.clients[ex.urls["api"]["ws"]["ws-api"]["spot"]]
    await fake.wait_for(lambda: "spot" not in client.subscriptions)  # ccxt has read eventStreamTerminated
    await ex.create_order(SYM, "limit", "buy", 0.01, 49_000, {"clientOrderId": "in-gap"})
    assert fake.reports[-1]["c"] == "in-gap" and fake.user_streams == 0 and not watch.done()
    again = asyncio.ensure_future(ex.watch_orders(SYM))
    await fake.wait_for(lambda: fake.user_streams == 1)
    await ex.create_order(SYM, "limit", "buy", 0.01, 48_000, {"clientOrderId": "after-expiry"})
    assert [o["clientOrderId"] for o in await asyncio.wait_for(again, 2)] == ["after-expiry"]
    assert [o["clientOrderId"] for o in await asyncio.wait_for(watch, 2)] == ["after-expiry"]
    assert [r.path for r in fake.requests if r.method == "WS"] == ["userDataStream.subscribe.signature"] * 2


async def test_listen_key_stream_and_expiry(fake: FakeBinanceExchange, ex: Any) -> None:
    key = (await ex.publicPostUserDataStream())["listenKey"]
    assert (await ex.publicPostUserDataStream())["listenKey"] == key
    assert await ex.publicPutUserDataStream({"listenKey": key}) == {}
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"{fake.ws_url}/ws/{key}")
        await fake.wait_for(lambda: fake.user_streams == 1)
        await ex.create_order(SYM, "limit", "buy", 0.01, 49_000, {"clientOrderId": "lk"})
        assert [(r["c"], r["x"]) for r in await reports(ws, 1)] == [("lk", "NEW")]
        assert orjson.loads(await ws.receive_str(timeout=2))["e"] == "outboundAccountPosition"
        fake.expire_listen_key()
        assert orjson.loads(await ws.receive_str(timeout=2))["e"] == "listenKeyExpired"
        assert (await ws.receive(timeout=2)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await s.ws_connect(f"{fake.ws_url}/ws/{key}")
    with pytest.raises(ccxt.ExchangeError, match="-1125"):
        await ex.publicPutUserDataStream({"listenKey": key})
    assert (await ex.publicPostUserDataStream())["listenKey"] != key


async def test_ws_api_refuses_a_bad_signature(fake: FakeBinanceExchange) -> None:
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"{fake.ws_url}/ws-api/v3")
        await ws.send_str(orjson.dumps({"id": 7, "method": "userDataStream.subscribe.signature", "params": {
            "apiKey": fake.api_key, "timestamp": fake.now_ms(), "signature": "00"}}).decode())
        reply = orjson.loads(await ws.receive_str(timeout=2))
        assert (reply["id"], reply["status"], reply["error"]["code"]) == (7, 400, -1022)
        assert fake.user_streams == 0
        await ws.close()
