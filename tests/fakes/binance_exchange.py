"""A fake Binance spot exchange on 127.0.0.1 — signed REST trading API and user data stream — for the real ccxt client.

    async with FakeBinanceExchange(balances={"USDT": "10000", "BTC": "1"}) as fake:
        ex = ccxt_binance(fake)                     # ccxt.pro.binance (async_=False: the sync ccxt.binance)
        order = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 49_000, {"clientOrderId": "c1"})
        fake.fill("c1", "0.004")                    # a partial fill at the order's price (maker)
        await ex.close()

The override recipe (`ccxt_binance`): every entry of `exchange.urls['api']` is re-pointed at the fake (REST ones at
`rest_url` + the entry's own path, e.g. `private` -> http://127.0.0.1:port/api/v3, websocket ones at `ws_url` + path:
`ws.ws-api.spot` -> ws://127.0.0.1:port/ws-api/v3, `ws.spot` -> .../ws), so nothing can reach the real venue (an
endpoint the fake lacks answers 404 with a JSON body naming it), with options `defaultType="spot"`,
`fetchMarkets={"types": ["spot"]}`, `fetchMargins=False` and `fetchCurrencies=False` (so load_markets calls only
GET /api/v3/exchangeInfo), and the fake's `api_key` / `secret`; `**config` goes to the ccxt constructor (e.g.
`timeout=300`, `enableRateLimit=False`); `timeout_on_exit` is 0 unless given (no TLS to drain on close). Never call
`set_sandbox_mode` on it: that swaps the URLs back to the testnet's.

REST (aiohttp; every answer carries `X-MBX-USED-WEIGHT-1M`, the weight used in the last minute of `clock_ms`):
public `GET /api/v3/ping`, `/api/v3/time`, `/api/v3/exchangeInfo` (the configured markets with PRICE_FILTER,
LOT_SIZE, NOTIONAL/MIN_NOTIONAL); signed (X-MBX-APIKEY + HMAC-SHA256 of query + body, `timestamp` within `recvWindow`)
`POST /api/v3/order` (LIMIT GTC/IOC/FOK, MARKET by quantity or quoteOrderQty; newClientOrderId; newOrderRespType
ACK/RESULT/FULL), `DELETE /api/v3/order`, `DELETE /api/v3/openOrders`, `GET /api/v3/order` (orderId or
origClientOrderId: how a timed-out create is found), `GET /api/v3/openOrders`, `GET /api/v3/myTrades` (orderId,
fromId, startTime/endTime, limit), `GET /api/v3/account`; listenKeys `POST/PUT/DELETE /api/v3/userDataStream`.
Errors are Binance's JSON `{"code", "msg"}`: -2015 bad API key (401), -1022 bad signature, -1021 timestamp outside
recvWindow, -1102 missing parameter, -1121 bad symbol, -1013 filter failure, -2010 rejected (insufficient balance,
duplicate client id), -2011 unknown order on cancel, -2013 order does not exist on query (all HTTP 400).

User data stream — what ccxt 4.5.90 uses for spot is the WebSocket API, not listenKeys: on `ws_url/ws-api/v3` it
sends `{"method": "userDataStream.subscribe.signature", "params": {apiKey, timestamp, signature}}` (signature over
the key-sorted params); the fake answers `{"id", "status": 200, "result": {"subscriptionId": n}}` and then pushes
`{"subscriptionId": n, "event": {...}}`. The legacy listenKey stream is served too: `ws_url/ws/<listenKey>` gets the
bare events. Events: `executionReport` (NEW on accept, TRADE per fill, CANCELED, EXPIRED — what Binance sends) and
`outboundAccountPosition` (the assets that changed), event time `E` from `clock_ms`.

Matching (deterministic): balances per asset (free/locked; a LIMIT buy locks price * qty of the quote, a sell locks
the base). MARKET orders fill at once at `set_price(symbol, price)` — or, after `set_book(symbol, bids, asks)`, walk
that book (consuming it) and expire what it cannot fill. LIMIT GTC orders rest until the test calls
`fill(client_id, qty, price=None)`; LIMIT IOC/FOK fill in full at the market price when they cross it, else expire.
Trade ids and order ids increase from 1; commission is `fee_rate` of what is received, in the received asset.

Faults: `timeout_next_create(answer_after_s=None)` (the order is booked and reported, the HTTP answer never comes —
or comes after `answer_after_s`), `rate_limit_next(n, retry_after_s)` (429 + Retry-After, code -1003),
`ban_next(n, retry_after_s)` (418 + Retry-After), `reject_next(code, msg)` (the next create gets that error, nothing
booked), `duplicate_reports(on)` (each executionReport sent twice), `reorder_reports(on)` (each pair of consecutive
executionReports swapped; `reorder_reports(False)` flushes a held one), `drop_user_stream()` (abort every user-stream
socket), `expire_listen_key()` (listenKey streams get `listenKeyExpired` and are closed, the keys are dead; WS-API
subscriptions get `eventStreamTerminated` and are ended), `time_offset_ms` (server clock skew).

Test-side actions: `fill` (above), `place(symbol, side, qty, price, client_id)` (an order the daemon did not send),
`cancel(client_id, status="CANCELED"|"EXPIRED")` (ended by the venue), `set_balance(asset, free)`.

Inspection: `order(client_id)` -> FakeOrder (status, executed, fills), `orders`, `trades` (FakeTrade), `balance(asset)`
-> (free, locked), `requests` (RequestRecord per REST/WS-API call), `reports` (every executionReport produced, before
faults), `user_streams` (open user-stream sockets subscribed), `await wait_for(predicate)`.

What ccxt 4.5.90 makes of it (proven in tests/fakes/test_binance_exchange.py; gateways should rely on this): 429 and
418 both raise DDoSProtection (the message starts with the HTTP status; Retry-After is in `last_response_headers`);
-2010 raises InsufficientFunds when the message says so, else InvalidOrder; -2011 / -2013 raise OrderNotFound; -1021
InvalidNonce; -1022 and -2015 AuthenticationError; a held create raises RequestTimeout. `cancel_order` returns the
cancel's own id as `clientOrderId` (Binance's DELETE answer; the original is in `info["origClientOrderId"]`), while
the CANCELED executionReport carries the original in `C`, which ccxt prefers. A dropped user stream fails the
pending `watch_orders` with NetworkError and the next call reconnects and subscribes again; `eventStreamTerminated`
does not fail the pending watch (ccxt just forgets the subscription): reports sent before the next watch call
subscribes again are never delivered, so only polling finds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl

import orjson
from aiohttp import WSMsgType, web

_D8 = Decimal("0.00000001")
_ZERO = Decimal(0)
_WEIGHTS = {
    ("GET", "/api/v3/ping"): 1, ("GET", "/api/v3/time"): 1, ("GET", "/api/v3/exchangeInfo"): 20,
    ("POST", "/api/v3/order"): 1, ("DELETE", "/api/v3/order"): 1, ("DELETE", "/api/v3/openOrders"): 1,
    ("GET", "/api/v3/order"): 4, ("GET", "/api/v3/openOrders"): 6, ("GET", "/api/v3/myTrades"): 20,
    ("GET", "/api/v3/account"): 20,
}
_TOO_MANY = "Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute."
_BANNED = "Way too many requests; IP(127.0.0.1) banned until {until}. Please use WebSocket Streams for live updates."
_NO_BALANCE = "Account has insufficient balance for requested action."


def wall_ms() -> int:
    """Wall-clock milliseconds: Binance's server time."""
    return time.time_ns() // 1_000_000


def fmt(d: Decimal) -> str:
    """A decimal the way Binance writes amounts: eight places."""
    return f"{d.quantize(_D8):f}"


class ApiError(Exception):
    """A Binance error answer: HTTP status, Binance code and message."""

    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code} {msg}")
        self.status, self.code, self.msg, self.headers = status, code, msg, headers or {}


@dataclass(frozen=True)
class MarketSpec:
    """One spot symbol: assets, filters and the price MARKET orders fill at."""

    symbol: str = "BTCUSDT"
    base: str = "BTC"
    quote: str = "USDT"
    tick_size: Decimal = Decimal("0.01")
    step_size: Decimal = Decimal("0.00001")
    min_qty: Decimal = Decimal("0.00001")
    max_qty: Decimal = Decimal("9000")
    min_notional: Decimal = Decimal("5")
    price: Decimal = Decimal("50000")


@dataclass
class FakeTrade:
    """One fill as the venue records it (GET myTrades shape via `as_json`)."""

    id: int
    order_id: int
    client_id: str
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    maker: bool

    def as_json(self) -> dict[str, Any]:
        """The trade as GET /api/v3/myTrades lists it."""
        return {"symbol": self.symbol, "id": self.id, "orderId": self.order_id, "orderListId": -1,
                "price": fmt(self.price), "qty": fmt(self.qty), "quoteQty": fmt(self.price * self.qty),
                "commission": fmt(self.commission), "commissionAsset": self.commission_asset, "time": self.time,
                "isBuyer": self.side == "BUY", "isMaker": self.maker, "isBestMatch": True}


@dataclass
class FakeOrder:
    """One order on the fake venue; `status` is Binance's (NEW, PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED)."""

    order_id: int
    client_id: str
    symbol: str
    side: str
    type: str
    tif: str
    price: Decimal
    qty: Decimal
    time: int
    quote_qty: Decimal = _ZERO
    executed: Decimal = _ZERO
    cum_quote: Decimal = _ZERO
    status: str = "NEW"
    update_time: int = 0
    cancel_client_id: str = ""
    fills: list[FakeTrade] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        """Still working on the book."""
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def remaining(self) -> Decimal:
        """Quantity not yet filled."""
        return self.qty - self.executed

    def as_json(self) -> dict[str, Any]:
        """The order as GET /api/v3/order answers it."""
        return {"symbol": self.symbol, "orderId": self.order_id, "orderListId": -1, "clientOrderId": self.client_id,
                "price": fmt(self.price), "origQty": fmt(self.qty), "executedQty": fmt(self.executed),
                "cummulativeQuoteQty": fmt(self.cum_quote), "status": self.status, "timeInForce": self.tif,
                "type": self.type, "side": self.side, "stopPrice": fmt(_ZERO), "icebergQty": fmt(_ZERO),
                "time": self.time, "updateTime": self.update_time or self.time, "isWorking": True,
                "workingTime": self.time, "origQuoteOrderQty": fmt(self.quote_qty),
                "selfTradePreventionMode": "EXPIRE_MAKER"}


@dataclass(frozen=True)
class RequestRecord:
    """One call: REST method and path (or "WS" and the WS-API method), params, HTTP status (0: held by
    timeout_next_create), Binance error code."""

    method: str
    path: str
    params: dict[str, str]
    status: int
    code: int | None = None


@dataclass
class _Stream:
    """One user-stream socket: a WS-API connection (subscription id once subscribed) or a listenKey stream."""

    ws: web.WebSocketResponse
    request: web.Request
    listen_key: str | None = None
    sub_id: int | None = None
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)

    @property
    def live(self) -> bool:
        """Receives events."""
        return self.listen_key is not None or self.sub_id is not None


class FakeBinanceExchange:
    """Binance spot trading (REST + user data stream) for `markets`, with `balances` per asset, on 127.0.0.1."""

    def __init__(self, markets: Iterable[MarketSpec] = (MarketSpec(),), *, balances: dict[str, str] | None = None,
                 api_key: str = "fake-api-key", secret: str = "fake-secret", fee_rate: str = "0.001",
                 clock_ms: Callable[[], int] | None = None) -> None:
        self.markets = {m.symbol: m for m in markets}
        if not self.markets:
            raise ValueError("the fake exchange needs at least one market")
        self.api_key, self.secret = api_key, secret
        self.fee_rate = Decimal(fee_rate)
        self.clock_ms = clock_ms or wall_ms
        self.time_offset_ms = 0
        self.prices = {s: m.price for s, m in self.markets.items()}
        self.books: dict[str, tuple[list[list[Decimal]], list[list[Decimal]]]] = {}
        self.free: dict[str, Decimal] = {a: Decimal(v) for a, v in (balances or {}).items()}
        self.locked: dict[str, Decimal] = {a: _ZERO for a in self.free}
        self.orders: list[FakeOrder] = []
        self.trades: list[FakeTrade] = []
        self.requests: list[RequestRecord] = []
        self.reports: list[dict[str, Any]] = []
        self._by_client: dict[str, FakeOrder] = {}
        self._by_id: dict[int, FakeOrder] = {}
        self._streams: list[_Stream] = []
        self._listen_keys: set[str] = set()
        self._weights: list[tuple[int, int]] = []
        self._seq = {"order": 0, "trade": 0, "cancel": 0, "sub": 0, "key": 0}
        self._timeouts: list[float | None] = []
        self._rate_limit = (0, 0)
        self._ban = (0, 0)
        self._rejects: list[tuple[int, str]] = []
        self._duplicate = False
        self._reorder = False
        self._held_report: dict[str, Any] | None = None
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # lifecycle

    async def start(self) -> None:
        """Listen on 127.0.0.1, an ephemeral port (REST and websockets on the same port)."""
        app = web.Application()
        app.router.add_get("/ws-api/v3", self._ws_api)
        app.router.add_get("/ws/{key}", self._ws_listen_key)
        app.router.add_route("*", "/{tail:.*}", self._rest)
        self._release = asyncio.Event()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Answer every held request, close every socket and the server."""
        self._release.set()
        for s in list(self._streams):
            with contextlib.suppress(Exception):
                await s.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def rest_url(self) -> str:
        """http://127.0.0.1:port"""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """ws://127.0.0.1:port"""
        return f"ws://127.0.0.1:{self.port}"

    def now_ms(self) -> int:
        """The venue's clock: `clock_ms` plus `time_offset_ms`."""
        return self.clock_ms() + self.time_offset_ms

    # market setup

    def set_price(self, symbol: str, price: str | Decimal) -> None:
        """The price MARKET orders (and crossing IOC/FOK limits) of `symbol` fill at when no book is set."""
        self._market(symbol)
        self.prices[symbol] = Decimal(price)

    def set_book(self, symbol: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        """A book MARKET orders of `symbol` walk (and consume), best first; `set_book(symbol, [], [])` empties it."""
        self._market(symbol)
        self.books[symbol] = ([[Decimal(p), Decimal(q)] for p, q in bids], [[Decimal(p), Decimal(q)] for p, q in asks])

    def set_balance(self, asset: str, free: str | Decimal) -> None:
        """Set the free balance of `asset` (and say so on the user stream)."""
        self.free[asset] = Decimal(free)
        self.locked.setdefault(asset, _ZERO)
        self._account_position({asset})

    # faults

    def timeout_next_create(self, answer_after_s: float | None = None) -> None:
        """The next accepted create is booked and reported; its HTTP answer is held (forever, or `answer_after_s`)."""
        self._timeouts.append(answer_after_s)

    def rate_limit_next(self, n: int = 1, retry_after_s: int = 1) -> None:
        """The next n REST requests get 429 with Retry-After and code -1003."""
        self._rate_limit = (n, retry_after_s)

    def ban_next(self, n: int = 1, retry_after_s: int = 60) -> None:
        """The next n REST requests get 418 (IP banned) with Retry-After."""
        self._ban = (n, retry_after_s)

    def reject_next(self, code: int = -2010, msg: str = _NO_BALANCE) -> None:
        """The next create is refused with this Binance code and message (HTTP 400); nothing is booked."""
        self._rejects.append((code, msg))

    def duplicate_reports(self, on: bool = True) -> None:
        """Send every executionReport twice."""
        self._duplicate = on

    def reorder_reports(self, on: bool = True) -> None:
        """Swap each pair of consecutive executionReports; turning it off sends a held one."""
        self._reorder = on
        if not on and self._held_report is not None:
            held, self._held_report = self._held_report, None
            self._send_report(held)

    def drop_user_stream(self) -> None:
        """Abort every user-stream socket (no close frame: the client sees the connection die)."""
        for s in list(self._streams):
            if s.request.transport is not None:
                s.request.transport.abort()
            self._streams.remove(s)

    def expire_listen_key(self) -> None:
        """listenKey streams get listenKeyExpired and are closed (keys dead); WS-API subscriptions are terminated."""
        now = self.now_ms()
        for s in self._streams:
            if s.listen_key is not None:
                s.queue.put_nowait(orjson.dumps({"e": "listenKeyExpired", "E": now, "listenKey": s.listen_key}))
                s.queue.put_nowait(None)
                s.listen_key = None
            elif s.sub_id is not None:
                s.queue.put_nowait(orjson.dumps({"subscriptionId": s.sub_id,
                                                 "event": {"e": "eventStreamTerminated", "E": now}}))
                s.sub_id = None
        self._listen_keys.clear()

    # inspection

    def order(self, client_id: str) -> FakeOrder:
        """The latest order with this client order id; KeyError naming it if there is none."""
        try:
            return self._by_client[client_id]
        except KeyError:
            raise KeyError(f"fake binance has no order with client id {client_id!r}") from None

    def balance(self, asset: str) -> tuple[Decimal, Decimal]:
        """(free, locked) of `asset`."""
        return self.free.get(asset, _ZERO), self.locked.get(asset, _ZERO)

    @property
    def user_streams(self) -> int:
        """Open user-stream sockets that receive events (subscribed WS-API connections and listenKey streams)."""
        return sum(1 for s in self._streams if s.live)

    def used_weight(self) -> int:
        """Request weight used in the last minute (what X-MBX-USED-WEIGHT-1M says)."""
        cutoff = self.now_ms() - 60_000
        self._weights = [(t, w) for t, w in self._weights if t > cutoff]
        return sum(w for _, w in self._weights)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait (polling the event loop) until `predicate()` holds; TimeoutError after `timeout` seconds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"fake binance exchange: condition not met within {timeout} s")
            await asyncio.sleep(0.002)

    # matching, driven by the test

    def fill(self, client_id: str, qty: str | Decimal, price: str | Decimal | None = None) -> FakeTrade:
        """Fill `qty` of the resting order `client_id` at `price` (default its limit) as maker; returns the trade."""
        o = self.order(client_id)
        q = Decimal(qty)
        px = o.price if price is None else Decimal(price)
        if not o.is_open:
            raise ValueError(f"order {client_id!r} is {o.status}, it cannot fill")
        if q <= 0 or q > o.remaining:
            raise ValueError(f"fill qty {q} of order {client_id!r} must be in (0, {o.remaining}]")
        if (o.side == "BUY" and px > o.price) or (o.side == "SELL" and px < o.price):
            raise ValueError(f"fill price {px} is through the limit {o.price} of {o.side} order {client_id!r}")
        trade = self._trade(o, px, q, maker=True)
        self._account_position(self._assets(o))
        return trade

    def place(self, symbol: str, side: str, qty: str, price: str, client_id: str) -> FakeOrder:
        """Book a LIMIT GTC order as if another session sent it (an orphan for the daemon); ApiError if refused."""
        self._create({"symbol": symbol, "side": side, "type": "LIMIT", "timeInForce": "GTC", "quantity": qty,
                      "price": price, "newClientOrderId": client_id, "newOrderRespType": "ACK"})
        return self.order(client_id)

    def cancel(self, client_id: str, status: str = "CANCELED") -> None:
        """End a working order from the venue side (`status` CANCELED or EXPIRED), as an admin or STP would."""
        o = self.order(client_id)
        if not o.is_open or status not in ("CANCELED", "EXPIRED"):
            raise ValueError(f"cannot move order {client_id!r} from {o.status} to {status}")
        if status == "CANCELED":
            self._cancel_one(o, None)
        else:
            self._close(o, status)
            self._account_position(self._assets(o))

    def _market(self, symbol: str | None) -> MarketSpec:
        if not symbol:
            raise ApiError(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        if symbol not in self.markets:
            raise ApiError(400, -1121, "Invalid symbol.")
        return self.markets[symbol]

    def _assets(self, o: FakeOrder) -> set[str]:
        m = self.markets[o.symbol]
        return {m.base, m.quote}

    def _move(self, asset: str, free: Decimal = _ZERO, locked: Decimal = _ZERO) -> None:
        self.free[asset] = self.free.get(asset, _ZERO) + free
        self.locked[asset] = self.locked.get(asset, _ZERO) + locked

    def _trade(self, o: FakeOrder, px: Decimal, q: Decimal, maker: bool) -> FakeTrade:
        """Apply one fill: order state, balances, the trade record and its executionReport."""
        m = self.markets[o.symbol]
        resting = o.type == "LIMIT"
        if o.side == "BUY":
            fee, fee_asset = (q * self.fee_rate).quantize(_D8, ROUND_DOWN), m.base
            if resting:
                self._move(m.quote, free=(o.price - px) * q, locked=-o.price * q)
            else:
                self._move(m.quote, free=-px * q)
            self._move(m.base, free=q - fee)
        else:
            fee, fee_asset = (px * q * self.fee_rate).quantize(_D8, ROUND_DOWN), m.quote
            if resting:
                self._move(m.base, locked=-q)
            else:
                self._move(m.base, free=-q)
            self._move(m.quote, free=px * q - fee)
        self._seq["trade"] += 1
        now = self.now_ms()
        t = FakeTrade(self._seq["trade"], o.order_id, o.client_id, o.symbol, o.side, px, q, fee, fee_asset, now, maker)
        self.trades.append(t)
        o.fills.append(t)
        o.executed += q
        o.cum_quote += px * q
        o.status = "FILLED" if o.remaining == 0 else "PARTIALLY_FILLED"
        o.update_time = now
        self._report(o, "TRADE", t)
        return t

    def _close(self, o: FakeOrder, status: str) -> None:
        """Cancel or expire an open order: release what its remainder locked, report it."""
        m = self.markets[o.symbol]
        if o.type == "LIMIT":
            if o.side == "BUY":
                self._move(m.quote, free=o.price * o.remaining, locked=-o.price * o.remaining)
            else:
                self._move(m.base, free=o.remaining, locked=-o.remaining)
        o.status = status
        o.update_time = self.now_ms()
        self._report(o, status)

    def _plan(self, m: MarketSpec, side: str, qty: Decimal | None, quote: Decimal | None,
              limit: Decimal | None = None) -> list[tuple[Decimal, Decimal]]:
        """The fills a taker order would get: against the set book (best first) or all at the set price."""
        book = self.books.get(m.symbol)
        if book is None:
            levels = [[self.prices[m.symbol], Decimal("Infinity")]]
        else:
            levels = book[1] if side == "BUY" else book[0]
        out: list[tuple[Decimal, Decimal]] = []
        left_q, left_quote = qty, quote
        for px, avail in levels:
            if limit is not None and ((side == "BUY" and px > limit) or (side == "SELL" and px < limit)):
                break
            if left_q is not None:
                take = min(avail, left_q)
            else:
                assert left_quote is not None
                take = min(avail, (left_quote / px // m.step_size) * m.step_size)
            if take <= 0:
                break
            out.append((px, take))
            if left_q is not None:
                left_q -= take
            else:
                left_quote -= px * take
        return out

    def _consume(self, m: MarketSpec, side: str, plan: list[tuple[Decimal, Decimal]]) -> None:
        book = self.books.get(m.symbol)
        if book is None:
            return
        levels = book[1] if side == "BUY" else book[0]
        for _, q in plan:
            levels[0][1] -= q
            if levels[0][1] <= 0:
                levels.pop(0)

    # REST

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        method, path = request.method, request.path
        raw_q = request.rel_url.raw_query_string
        body = await request.text()
        params = dict(parse_qsl(raw_q, keep_blank_values=True)) | dict(parse_qsl(body, keep_blank_values=True))
        self._weights.append((self.now_ms(), _WEIGHTS.get((method, path), 2)))
        try:
            self._take_ip_limits()
            route = self._routes().get((method, path))
            if route is None:
                raise ApiError(404, -1, f"fake binance exchange has no endpoint {method} {path}")
            kind, handler = route
            if kind == "signed":
                self._check_signed(request, raw_q, body, params)
            elif kind == "key":
                self._check_key(request)
            result = handler(params)
        except ApiError as e:
            self.requests.append(RequestRecord(method, path, params, e.status, e.code))
            return self._json({"code": e.code, "msg": e.msg}, e.status, e.headers)
        if (method, path) == ("POST", "/api/v3/order") and self._timeouts:
            after = self._timeouts.pop(0)
            self.requests.append(RequestRecord(method, path, params, 0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), after)
            return self._json(result, 200)
        self.requests.append(RequestRecord(method, path, params, 200))
        return self._json(result, 200)

    def _json(self, payload: Any, status: int, headers: dict[str, str] | None = None) -> web.Response:
        h = {"X-MBX-USED-WEIGHT-1M": str(self.used_weight()), **(headers or {})}
        return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json", headers=h)

    def _routes(self) -> dict[tuple[str, str], tuple[str, Callable[[dict[str, str]], Any]]]:
        return {
            ("GET", "/api/v3/ping"): ("public", lambda p: {}),
            ("GET", "/api/v3/time"): ("public", lambda p: {"serverTime": self.now_ms()}),
            ("GET", "/api/v3/exchangeInfo"): ("public", self._exchange_info),
            ("POST", "/api/v3/order"): ("signed", self._create),
            ("DELETE", "/api/v3/order"): ("signed", self._cancel),
            ("DELETE", "/api/v3/openOrders"): ("signed", self._cancel_all),
            ("GET", "/api/v3/order"): ("signed", lambda p: self._find(p, -2013, "Order does not exist.").as_json()),
            ("GET", "/api/v3/openOrders"): ("signed", self._open_orders),
            ("GET", "/api/v3/myTrades"): ("signed", self._my_trades),
            ("GET", "/api/v3/account"): ("signed", self._account),
            ("POST", "/api/v3/userDataStream"): ("key", self._new_listen_key),
            ("PUT", "/api/v3/userDataStream"): ("key", self._keepalive_listen_key),
            ("DELETE", "/api/v3/userDataStream"): ("key", self._delete_listen_key),
        }

    def _take_ip_limits(self) -> None:
        n, after = self._ban
        if n:
            self._ban = (n - 1, after)
            until = self.now_ms() + after * 1000
            raise ApiError(418, -1003, _BANNED.format(until=until), {"Retry-After": str(after)})
        n, after = self._rate_limit
        if n:
            self._rate_limit = (n - 1, after)
            raise ApiError(429, -1003, _TOO_MANY, {"Retry-After": str(after)})

    def _check_key(self, request: web.Request) -> None:
        if request.headers.get("X-MBX-APIKEY") != self.api_key:
            raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")

    def _check_signed(self, request: web.Request, raw_q: str, body: str, params: dict[str, str]) -> None:
        """API key, HMAC-SHA256 of query + body without the signature, timestamp inside recvWindow."""
        self._check_key(request)
        sig = params.pop("signature", None)
        if not sig:
            raise ApiError(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        payload = "".join("&".join(kv for kv in part.split("&") if not kv.startswith("signature="))
                          for part in (raw_q, body))
        if not hmac.compare_digest(self._sign(payload), sig):
            raise ApiError(400, -1022, "Signature for this request is not valid.")
        self._check_time(params)

    def _sign(self, payload: str) -> str:
        return hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()

    def _check_time(self, params: dict[str, Any]) -> None:
        try:
            ts = int(params["timestamp"])
            window = int(params.get("recvWindow", 5000))
        except (KeyError, ValueError):
            raise ApiError(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or "
                                       "malformed.") from None
        if window > 60_000:
            raise ApiError(400, -1131, "recvWindow must be less than 60000")
        now = self.now_ms()
        if ts > now + 1000:
            raise ApiError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - ts > window:
            raise ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")

    def _exchange_info(self, params: dict[str, str]) -> dict[str, Any]:
        return {"timezone": "UTC", "serverTime": self.now_ms(), "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100}],
            "exchangeFilters": [], "symbols": [self._symbol_info(m) for m in self.markets.values()]}

    @staticmethod
    def _symbol_info(m: MarketSpec) -> dict[str, Any]:
        return {"symbol": m.symbol, "status": "TRADING", "baseAsset": m.base, "baseAssetPrecision": 8,
                "quoteAsset": m.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
                "orderTypes": ["LIMIT", "MARKET"], "icebergAllowed": False, "ocoAllowed": False,
                "quoteOrderQtyMarketAllowed": True, "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
                "permissions": [], "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["EXPIRE_MAKER"], "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": fmt(m.tick_size), "maxPrice": "1000000.00000000",
                     "tickSize": fmt(m.tick_size)},
                    {"filterType": "LOT_SIZE", "minQty": fmt(m.min_qty), "maxQty": fmt(m.max_qty),
                     "stepSize": fmt(m.step_size)},
                    {"filterType": "NOTIONAL", "minNotional": fmt(m.min_notional), "applyMinToMarket": True,
                     "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
                    {"filterType": "MIN_NOTIONAL", "minNotional": fmt(m.min_notional), "applyToMarket": True,
                     "avgPriceMins": 5}]}

    def _dec(self, params: dict[str, str], name: str, required: bool = True) -> Decimal | None:
        raw = params.get(name)
        if raw in (None, ""):
            if required:
                raise ApiError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
            return None
        try:
            d = Decimal(raw)
        except InvalidOperation:
            raise ApiError(400, -1100, f"Illegal characters found in parameter '{name}'.") from None
        if not d.is_finite() or d <= 0:
            raise ApiError(400, -1100, f"Illegal characters found in parameter '{name}'.")
        return d

    def _create(self, p: dict[str, str]) -> dict[str, Any]:
        """POST /api/v3/order: validate, lock funds, book, report, match takers."""
        if self._rejects:
            code, msg = self._rejects.pop(0)
            raise ApiError(400, code, msg)
        m = self._market(p.get("symbol"))
        side, otype = p.get("side", ""), p.get("type", "")
        if side not in ("BUY", "SELL"):
            raise ApiError(400, -1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed.")
        if otype not in ("LIMIT", "MARKET"):
            raise ApiError(400, -1116, "Invalid orderType.")
        cid = p.get("newClientOrderId") or f"fake{self._seq['order'] + 1}"
        if cid in self._by_client and self._by_client[cid].is_open:
            raise ApiError(400, -2010, "Duplicate order sent.")
        price, quote = _ZERO, None
        if otype == "LIMIT":
            tif = p.get("timeInForce", "")
            if tif not in ("GTC", "IOC", "FOK"):
                raise ApiError(400, -1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or "
                                           "malformed.")
            qty, price = self._dec(p, "quantity"), self._dec(p, "price")
            assert qty is not None and price is not None
            if price % m.tick_size:
                raise ApiError(400, -1013, "Filter failure: PRICE_FILTER")
        else:
            tif = "GTC"
            qty, quote = self._dec(p, "quantity", False), self._dec(p, "quoteOrderQty", False)
            if (qty is None) == (quote is None):
                raise ApiError(400, -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty!")
        if qty is not None and (qty % m.step_size or not m.min_qty <= qty <= m.max_qty):
            raise ApiError(400, -1013, "Filter failure: LOT_SIZE")
        plan = self._plan(m, side, qty, quote) if otype == "MARKET" else []
        notional = (price * qty) if otype == "LIMIT" and qty is not None else sum((a * b for a, b in plan), _ZERO)
        if notional < m.min_notional:
            raise ApiError(400, -1013, "Filter failure: NOTIONAL")
        if qty is None:
            qty = sum((b for _, b in plan), _ZERO)
        need_asset, need = (m.quote, notional) if side == "BUY" else (m.base, qty)
        if self.free.get(need_asset, _ZERO) < need:
            raise ApiError(400, -2010, _NO_BALANCE)
        self._seq["order"] += 1
        now = self.now_ms()
        o = FakeOrder(self._seq["order"], cid, m.symbol, side, otype, tif, price, qty, now, quote_qty=quote or _ZERO)
        self.orders.append(o)
        self._by_client[cid] = o
        self._by_id[o.order_id] = o
        if otype == "LIMIT":
            self._move(need_asset, free=-need, locked=need)
        self._report(o, "NEW")
        if otype == "LIMIT" and tif in ("IOC", "FOK"):
            plan = self._plan(m, side, qty, None, limit=price)
            if sum((b for _, b in plan), _ZERO) < qty:
                plan = [] if tif == "FOK" else plan
        for px, q in plan:
            self._trade(o, px, q, maker=False)
        self._consume(m, side, plan)
        if o.is_open and (otype == "MARKET" or tif in ("IOC", "FOK")):
            self._close(o, "EXPIRED")
        self._account_position({m.base, m.quote})
        return self._order_response(o, p.get("newOrderRespType", "FULL"))

    def _order_response(self, o: FakeOrder, resp_type: str) -> dict[str, Any]:
        ack = {"symbol": o.symbol, "orderId": o.order_id, "orderListId": -1, "clientOrderId": o.client_id,
               "transactTime": o.time}
        if resp_type == "ACK":
            return ack
        full = o.as_json()
        out = ack | {k: full[k] for k in ("price", "origQty", "executedQty", "origQuoteOrderQty",
                                          "cummulativeQuoteQty", "status", "timeInForce", "type", "side",
                                          "workingTime", "selfTradePreventionMode")}
        if resp_type == "FULL":
            out["fills"] = [{"price": fmt(t.price), "qty": fmt(t.qty), "commission": fmt(t.commission),
                             "commissionAsset": t.commission_asset, "tradeId": t.id} for t in o.fills]
        return out

    def _find(self, p: dict[str, str], code: int, msg: str) -> FakeOrder:
        """The order named by orderId or origClientOrderId (in `symbol`), or the error `code`."""
        m = self._market(p.get("symbol"))
        o: FakeOrder | None
        if p.get("orderId"):
            try:
                o = self._by_id.get(int(p["orderId"]))
            except ValueError:
                raise ApiError(400, -1100, "Illegal characters found in parameter 'orderId'.") from None
        elif p.get("origClientOrderId"):
            o = self._by_client.get(p["origClientOrderId"])
        else:
            raise ApiError(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        if o is None or o.symbol != m.symbol:
            raise ApiError(400, code, msg)
        return o

    def _cancel(self, p: dict[str, str]) -> dict[str, Any]:
        o = self._find(p, -2011, "Unknown order sent.")
        if not o.is_open:
            raise ApiError(400, -2011, "Unknown order sent.")
        return self._cancel_one(o, p.get("newClientOrderId"))

    def _cancel_one(self, o: FakeOrder, cancel_id: str | None) -> dict[str, Any]:
        self._seq["cancel"] += 1
        o.cancel_client_id = cancel_id or f"fakecancel{self._seq['cancel']}"
        self._close(o, "CANCELED")
        self._account_position(self._assets(o))
        body = o.as_json()
        return {"symbol": o.symbol, "origClientOrderId": o.client_id, "orderId": o.order_id, "orderListId": -1,
                "clientOrderId": o.cancel_client_id, "transactTime": o.update_time,
                **{k: body[k] for k in ("price", "origQty", "executedQty", "cummulativeQuoteQty", "status",
                                        "timeInForce", "type", "side", "selfTradePreventionMode")}}

    def _cancel_all(self, p: dict[str, str]) -> list[dict[str, Any]]:
        m = self._market(p.get("symbol"))
        open_ = [o for o in self.orders if o.symbol == m.symbol and o.is_open]
        if not open_:
            raise ApiError(400, -2011, "Unknown order sent.")
        return [self._cancel_one(o, None) for o in open_]

    def _open_orders(self, p: dict[str, str]) -> list[dict[str, Any]]:
        sym = p.get("symbol")
        if sym:
            self._market(sym)
        return [o.as_json() for o in self.orders if o.is_open and (not sym or o.symbol == sym)]

    def _my_trades(self, p: dict[str, str]) -> list[dict[str, Any]]:
        m = self._market(p.get("symbol"))
        try:
            limit = min(int(p.get("limit", 500)), 1000)
            order_id = int(p["orderId"]) if p.get("orderId") else None
            from_id = int(p["fromId"]) if p.get("fromId") else None
            start = int(p["startTime"]) if p.get("startTime") else None
            end = int(p["endTime"]) if p.get("endTime") else None
        except ValueError as e:
            raise ApiError(400, -1100, f"Illegal characters found in a parameter: {e}") from None
        out = [t for t in self.trades if t.symbol == m.symbol and (order_id is None or t.order_id == order_id)
               and (from_id is None or t.id >= from_id) and (start is None or t.time >= start)
               and (end is None or t.time <= end)]
        return [t.as_json() for t in (out[:limit] if from_id is not None or start is not None else out[-limit:])]

    def _account(self, p: dict[str, str]) -> dict[str, Any]:
        rate = fmt(self.fee_rate)
        return {"makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
                "commissionRates": {"maker": rate, "taker": rate, "buyer": fmt(_ZERO), "seller": fmt(_ZERO)},
                "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
                "requireSelfTradePrevention": False, "preventSor": False, "updateTime": self.now_ms(),
                "accountType": "SPOT", "permissions": ["SPOT"], "uid": 1,
                "balances": [{"asset": a, "free": fmt(self.free[a]), "locked": fmt(self.locked.get(a, _ZERO))}
                             for a in sorted(self.free)]}

    def _new_listen_key(self, p: dict[str, str]) -> dict[str, str]:
        if not self._listen_keys:
            self._seq["key"] += 1
            self._listen_keys.add(hashlib.sha256(f"{self.api_key}/{self._seq['key']}".encode()).hexdigest()[:60])
        return {"listenKey": next(iter(self._listen_keys))}

    def _keepalive_listen_key(self, p: dict[str, str]) -> dict[str, str]:
        if p.get("listenKey") not in self._listen_keys:
            raise ApiError(400, -1125, "This listenKey does not exist.")
        return {}

    def _delete_listen_key(self, p: dict[str, str]) -> dict[str, str]:
        key = p.get("listenKey")
        if key not in self._listen_keys:
            raise ApiError(400, -1125, "This listenKey does not exist.")
        self._listen_keys.discard(key)
        for s in self._streams:
            if s.listen_key == key:
                s.listen_key = None
                s.queue.put_nowait(None)
        return {}

    # user data stream

    def _report(self, o: FakeOrder, exec_type: str, t: FakeTrade | None = None) -> None:
        """Build the executionReport Binance sends for this state change and publish it (faults apply)."""
        canceled = exec_type == "CANCELED"
        rep = {"e": "executionReport", "E": self.now_ms(), "s": o.symbol,
               "c": o.cancel_client_id if canceled else o.client_id, "S": o.side, "o": o.type, "f": o.tif,
               "q": fmt(o.qty), "p": fmt(o.price), "P": fmt(_ZERO), "F": fmt(_ZERO), "g": -1,
               "C": o.client_id if canceled else "", "x": exec_type, "X": o.status, "r": "NONE", "i": o.order_id,
               "l": fmt(t.qty if t else _ZERO), "z": fmt(o.executed), "L": fmt(t.price if t else _ZERO),
               "n": fmt(t.commission if t else _ZERO), "N": t.commission_asset if t else None,
               "T": t.time if t else o.update_time or o.time, "t": t.id if t else -1, "I": len(self.reports) + 1,
               "w": o.is_open, "m": bool(t and t.maker), "M": False, "O": o.time, "Z": fmt(o.cum_quote),
               "Y": fmt(t.price * t.qty if t else _ZERO), "Q": fmt(o.quote_qty), "W": o.time,
               "V": "EXPIRE_MAKER"}
        self.reports.append(rep)
        if self._reorder:
            if self._held_report is None:
                self._held_report = rep
                return
            held, self._held_report = self._held_report, None
            self._send_report(rep)
            self._send_report(held)
            return
        self._send_report(rep)

    def _send_report(self, rep: dict[str, Any]) -> None:
        for _ in range(2 if self._duplicate else 1):
            self._broadcast(rep)

    def _account_position(self, assets: set[str]) -> None:
        now = self.now_ms()
        self._broadcast({"e": "outboundAccountPosition", "E": now, "u": now, "B": [
            {"a": a, "f": fmt(self.free.get(a, _ZERO)), "l": fmt(self.locked.get(a, _ZERO))} for a in sorted(assets)]})

    def _broadcast(self, event: dict[str, Any]) -> None:
        for s in self._streams:
            if s.sub_id is not None:
                s.queue.put_nowait(orjson.dumps({"subscriptionId": s.sub_id, "event": event}))
            elif s.listen_key is not None:
                s.queue.put_nowait(orjson.dumps(event))

    async def _serve_stream(self, s: _Stream, on_text: Callable[[_Stream, str], None] | None) -> None:
        """Run one user-stream socket: a writer draining its queue in order, and a reader for WS-API requests."""
        self._streams.append(s)
        writer = asyncio.get_running_loop().create_task(self._write(s))
        try:
            async for msg in s.ws:
                if msg.type == WSMsgType.TEXT and on_text is not None:
                    on_text(s, msg.data)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            if s in self._streams:
                self._streams.remove(s)

    async def _write(self, s: _Stream) -> None:
        while True:
            frame = await s.queue.get()
            if frame is None:
                await s.ws.close()
                return
            with contextlib.suppress(ConnectionError, RuntimeError):
                await s.ws.send_str(frame.decode())

    async def _ws_api(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, timeout=1.0, compress=False)
        await ws.prepare(request)
        await self._serve_stream(_Stream(ws, request), self._on_ws_api)
        return ws

    async def _ws_listen_key(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        if key not in self._listen_keys:
            self.requests.append(RequestRecord("WS", f"/ws/{key}", {}, 400, -1125))
            return self._json({"code": -1125, "msg": "This listenKey does not exist."}, 400)
        ws = web.WebSocketResponse(autoping=True, timeout=1.0, compress=False)
        await ws.prepare(request)
        await self._serve_stream(_Stream(ws, request, listen_key=key), None)
        return ws

    def _on_ws_api(self, s: _Stream, text: str) -> None:
        """One WebSocket API request: the user-data-stream subscribe/unsubscribe and ping."""
        try:
            req = orjson.loads(text)
            rid, method, params = req.get("id"), req.get("method"), dict(req.get("params") or {})
        except (orjson.JSONDecodeError, AttributeError):
            s.queue.put_nowait(orjson.dumps({"id": None, "status": 400,
                                             "error": {"code": -1100, "msg": "Malformed request: not JSON"}}))
            return
        try:
            result = self._ws_method(s, str(method), params)
        except ApiError as e:
            self.requests.append(RequestRecord("WS", str(method), {k: str(v) for k, v in params.items()}, 400, e.code))
            s.queue.put_nowait(orjson.dumps({"id": rid, "status": 400, "error": {"code": e.code, "msg": e.msg}}))
            return
        self.requests.append(RequestRecord("WS", str(method), {k: str(v) for k, v in params.items()}, 200))
        s.queue.put_nowait(orjson.dumps({"id": rid, "status": 200, "result": result, "rateLimits": []}))
        if method == "userDataStream.subscribe.signature":
            s.sub_id = result["subscriptionId"]

    def _ws_method(self, s: _Stream, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "ping":
            return {}
        if method == "userDataStream.unsubscribe":
            s.sub_id = None
            return {}
        if method != "userDataStream.subscribe.signature":
            raise ApiError(400, -1100, f"fake binance WebSocket API has no method {method!r}")
        if params.get("apiKey") != self.api_key:
            raise ApiError(400, -2015, "Invalid API-key, IP, or permissions for action.")
        sig = params.pop("signature", None)
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
        if not sig or not hmac.compare_digest(self._sign(payload), str(sig)):
            raise ApiError(400, -1022, "Signature for this request is not valid.")
        self._check_time(params)
        if s.sub_id is not None:
            return {"subscriptionId": s.sub_id}
        self._seq["sub"] += 1
        return {"subscriptionId": self._seq["sub"] - 1}


def ccxt_binance(fake: FakeBinanceExchange, async_: bool = True, **config: Any) -> Any:
    from daemon.brokers.ccxt_client import repoint

    """A real ccxt binance client (ccxt.pro.binance, or the sync ccxt.binance) pointed at the running `fake`."""
    if async_:
        import ccxt.pro as ccxt_mod
    else:
        import ccxt as ccxt_mod  # type: ignore[no-redef]
    options = {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False,
               "fetchMargins": False, **config.pop("options", {})}
    ex = ccxt_mod.binance({"apiKey": fake.api_key, "secret": fake.secret, "options": options, **config})
    ex.urls["api"] = repoint(ex.urls["api"], fake.rest_url, fake.ws_url)  # as [broker] rest_url/ws_url do
    if async_ and "timeout_on_exit" not in config:
        ex.timeout_on_exit = 0  # ccxt waits 250 ms on close() for TLS shutdown; loopback HTTP has none
    return ex
