"""A fake Binance (spot or USD-M) on 127.0.0.1: websocket streams and the REST depth snapshot, with a true book.

    async with FakeBinance("spot", ["BTCUSDT"], source="synthetic") as fake:   # or source="recorded"
        url = f"{fake.ws_url}/stream?streams=btcusdt@depth@100ms/btcusdt@trade/btcusdt@bookTicker"
        snap = f"{fake.rest_url}/api/v3/depth?symbol=BTCUSDT&limit=1000"        # usdm: /fapi/v1/depth
        await fake.push(10)

Websocket: `/stream?streams=a/b` (combined: `{"stream": name, "data": {...}}`), `/ws` and `/ws/<stream>` (raw
payloads); on either, `{"method": "SUBSCRIBE"|"UNSUBSCRIBE"|"LIST_SUBSCRIPTIONS", "params": [...], "id": n}` is
answered `{"result": null, "id": n}` (or the list). Streams: `<sym>@depth[@100ms|@1000ms|@0ms|@250ms|@500ms]`,
`<sym>@trade`, `<sym>@bookTicker`, symbol in lower case; anything else is refused with a message saying so.
Each book change is one diff-depth event (spot: U = previous u + 1; usdm: ids with gaps and `pu` = previous u;
recorded data keeps its own U/u/pu), followed by a bookTicker of the true book with `u` = that event's u.
Event times (E, T) come from `clock_ms` (wall time by default).

REST: `GET /api/v3/depth` (spot) or `/fapi/v1/depth` (usdm), `symbol` and `limit` (default 100 / 500): the true
book's best `limit` levels a side and `lastUpdateId` (usdm adds E and T), header `X-MBX-USED-WEIGHT-1M`. Every call
is logged in `rest_calls` as (path, params, status).

Faults beyond the shared ones (see tests.fakes): `stale_snapshot_next(events_back=None)` (the next snapshot is the
book as it was before the events the newest subscriber has been sent, so older than anything it buffered),
`rate_limit_next(n, retry_after_s)` (429 + Retry-After), `ban_next(n, retry_after_s)` (418 + Retry-After),
`hold_rest()` / `release_rest()` (snapshot requests wait, `rest_waiting` counts them: lets a test push events while
a snapshot is in flight).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from aiohttp import web
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from tests.fakes import Client, FakeVenue
from tests.fakes.market import (
    DATA_DIR,
    SPOT,
    USDM,
    BinanceRecording,
    Depth,
    Print,
    Source,
    SyntheticSource,
    TrueBook,
    Undo,
)

_DEPTH = frozenset({"depth", "depth@100ms", "depth@1000ms", "depth@0ms", "depth@250ms", "depth@500ms"})
_KINDS = frozenset({"trade", "bookTicker"})
_TOO_MANY = "Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute."
_BANNED = "Way too many requests; IP(127.0.0.1) banned until {until}. Please use WebSocket Streams for live updates."


def _weight(futures: bool, limit: int) -> int:
    """Request weight of GET depth by limit (Binance's tables)."""
    if futures:
        return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


class FakeBinance(FakeVenue):
    """Binance spot or USD-M streams and REST depth for `symbols`, from `source` ("synthetic", "recorded" or a
    callable symbol -> Source)."""

    venue = "binance"

    def __init__(self, market: str = "spot", symbols: Sequence[str] = ("BTCUSDT",), *,
                 source: str | Callable[[str], Source] = "synthetic", seed: int = 1, data_dir: Path = DATA_DIR,
                 clock_ms: Callable[[], int] | None = None, ping_interval: float | None = None,
                 journal: int = 10_000) -> None:
        if market not in ("spot", "usdm"):
            raise ValueError(f"market must be 'spot' or 'usdm', got {market!r}")
        self.market = market
        self.futures = market == "usdm"
        sources = {s: self._source(s, source, seed + i, data_dir) for i, s in enumerate(symbols)}
        super().__init__(sources, clock_ms=clock_ms, ping_interval=ping_interval)
        self.rest_calls: list[tuple[str, dict[str, str], int]] = []
        self.used_weight = 0
        self._weight_minute = 0
        self._rng = random.Random(seed)
        self._journal: dict[str, deque[tuple[int, int, int, Undo]]] = {s: deque(maxlen=journal) for s in sources}
        self._stale: list[int | None] = []
        self._limited: list[tuple[int, float]] = []
        self._gate = asyncio.Event()
        self._gate.set()
        self._runner: web.AppRunner | None = None
        self.rest_port = 0
        self.rest_waiting = 0

    def _source(self, symbol: str, source: str | Callable[[str], Source], seed: int, data_dir: Path) -> Source:
        if callable(source):
            return source(symbol)
        if source == "synthetic":
            style, first = (USDM, 5_123_000_000_000) if self.futures else (SPOT, 50_000_000_000)
            return SyntheticSource(style, seed, update_id=first)
        if source == "recorded":
            if symbol != "BTCUSDT":
                raise ValueError(f"no recorded Binance data for {symbol!r}: the recordings hold BTCUSDT only")
            return BinanceRecording.for_market(self.market, data_dir)
        raise ValueError(f"source must be 'synthetic', 'recorded' or a callable, got {source!r}")

    # lifecycle

    async def start(self) -> None:
        """Start the websocket server and the REST server, each on an ephemeral port of 127.0.0.1."""
        await super().start()
        app = web.Application()
        app.router.add_get("/fapi/v1/depth" if self.futures else "/api/v3/depth", self._rest_depth)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.rest_port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop both servers."""
        self._gate.set()
        await super().stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def ws_url(self) -> str:
        """Websocket base URL (append /stream?streams=... or /ws)."""
        return f"ws://127.0.0.1:{self.ws_port}"

    @property
    def rest_url(self) -> str:
        """REST base URL (append /api/v3/depth or /fapi/v1/depth)."""
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def depth_path(self) -> str:
        """The REST depth path of this market."""
        return "/fapi/v1/depth" if self.futures else "/api/v3/depth"

    # REST faults

    def stale_snapshot_next(self, events_back: int | None = None) -> None:
        """The next snapshot answer is an old book: `events_back` book changes ago, or (None) from before the
        events sent to the newest subscriber, so that it predates everything that subscriber has buffered."""
        self._stale.append(events_back)

    def rate_limit_next(self, n: int = 1, retry_after_s: float = 1) -> None:
        """The next n REST calls get HTTP 429 with Retry-After."""
        self._limited += [(429, retry_after_s)] * n

    def ban_next(self, n: int = 1, retry_after_s: float = 120) -> None:
        """The next n REST calls get HTTP 418 (IP banned) with Retry-After."""
        self._limited += [(418, retry_after_s)] * n

    def hold_rest(self) -> None:
        """Snapshot requests wait (unanswered) until release_rest()."""
        self._gate.clear()

    def release_rest(self) -> None:
        """Answer the held snapshot requests, with the book as it is now."""
        self._gate.set()

    # REST

    async def _rest_depth(self, request: web.Request) -> web.Response:
        self.rest_waiting += 1
        try:
            await self._gate.wait()
        finally:
            self.rest_waiting -= 1
        params = dict(request.query)
        status, body, headers = self._depth_answer(params)
        self.rest_calls.append((request.path, params, status))
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)

    def _depth_answer(self, params: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
        now = self.clock_ms()
        if self._limited:
            status, retry = self._limited.pop(0)
            msg = _TOO_MANY if status == 429 else _BANNED.format(until=now + int(retry * 1000))
            return status, {"code": -1003, "msg": msg}, {"Retry-After": str(int(retry))}
        symbol = params.get("symbol", "")
        if not symbol:
            return 400, {"code": -1102, "msg": "Mandatory parameter 'symbol' was not sent, was empty/null, or "
                                               "malformed."}, {}
        if symbol not in self.books:
            return 400, {"code": -1121, "msg": "Invalid symbol."}, {}
        top = 1000 if self.futures else 5000
        raw = params.get("limit", "500" if self.futures else "100")
        if not raw.isdigit() or not 1 <= int(raw) <= top:
            return 400, {"code": -1100, "msg": f"Illegal characters found in parameter 'limit'; legal range is "
                                               f"'1..{top}'."}, {}
        limit = int(raw)
        if now // 60_000 != self._weight_minute:
            self._weight_minute, self.used_weight = now // 60_000, 0
        self.used_weight += _weight(self.futures, limit)
        book = self._stale_book(symbol, self._stale.pop(0)) if self._stale else self.books[symbol]
        body: dict[str, Any] = {"lastUpdateId": book.update_id}
        if self.futures:
            body.update(E=now, T=now)
        body["bids"] = [list(r) for r in book.bids.top(limit)]
        body["asks"] = [list(r) for r in book.asks.top(limit)]
        return 200, body, {"X-MBX-USED-WEIGHT-1M": str(self.used_weight)}

    def _stale_book(self, symbol: str, back: int | None) -> TrueBook:
        """The book before the last `back` changes; None: before the newest subscriber's first event, and one more."""
        journal = list(self._journal[symbol])
        firsts = [c.first_book[symbol] for c in self._clients if symbol in c.first_book]
        newest = max(firsts, key=lambda f: f[1]) if firsts else None
        if back is None:
            back = 1
            if newest is not None:
                at = next((i for i, e in enumerate(journal) if e[2] == newest[1]), 0)
                back = len(journal) - at + 1
        back = min(back, len(journal))
        undone = journal[len(journal) - back:]
        book = self.books[symbol]
        old = book.rewound([e[3] for e in undone], undone[0][0] if undone else book.update_id)
        if newest is not None and back == len(journal):
            # the journal does not reach far enough back: say an id older than the first event sent
            old.update_id = min(old.update_id, newest[0] - 2)
        return old

    # websocket

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse unknown paths (404) and unknown streams (400), saying which."""
        url = urlsplit(request.path)
        if url.path not in ("/stream", "/ws") and not url.path.startswith("/ws/"):
            return connection.respond(404, f"unknown path {url.path!r}: use /stream?streams=... or /ws\n")
        try:
            self._streams_of(request.path)
        except ValueError as e:
            return connection.respond(400, f"{e}\n")
        return None

    def _streams_of(self, path: str) -> tuple[bool, list[str]]:
        url = urlsplit(path)
        if url.path.startswith("/ws/"):
            names = [url.path[4:]]
        else:
            names = [n for v in parse_qs(url.query).get("streams", []) for n in v.split("/") if n]
        for name in names:
            self._parse(name)
        return url.path == "/stream", names

    def _parse(self, name: str) -> tuple[str, str]:
        """(SYMBOL, kind) of a stream name; ValueError naming the stream and what is wrong."""
        lower, _, rest = name.partition("@")
        kind = "depth" if rest in _DEPTH else rest if rest in _KINDS else None
        if kind is None:
            raise ValueError(f"unknown stream {name!r}: expected <symbol>@depth[@100ms], @trade or @bookTicker")
        if lower != lower.lower() or lower.upper() not in self.books:
            raise ValueError(f"unknown stream {name!r}: symbol must be one of "
                             f"{sorted(s.lower() for s in self.books)} in lower case")
        return lower.upper(), kind

    def _open(self, ws: ServerConnection, conn_id: str) -> Client:
        combined, names = self._streams_of(ws.request.path if ws.request else "/ws")
        client = Client(ws, conn_id, combined)
        for name in names:
            client.subs[self._parse(name)] = name
        return client

    def _reply(self, client: Client, msg: dict[str, Any]) -> None:
        self._send(client, orjson.dumps(msg))

    def _on_message(self, client: Client, text: str) -> None:
        try:
            req = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            self._reply(client, {"error": {"code": 3, "msg": f"Invalid JSON: {e}"}})
            return
        if not isinstance(req, dict) or not isinstance(req.get("method"), str):
            self._reply(client, {"error": {"code": 2, "msg": "Invalid request: a JSON object with 'method'"}})
            return
        rid, method, params = req.get("id"), req["method"], req.get("params", [])
        if method == "LIST_SUBSCRIPTIONS":
            self._reply(client, {"result": sorted(client.subs.values()), "id": rid})
            return
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE"):
            self._reply(client, {"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"},
                                 "id": rid})
            return
        try:
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                raise ValueError("params must be a list of stream names")
            keys = [(self._parse(p), p) for p in params]
        except ValueError as e:
            self._reply(client, {"error": {"code": 2, "msg": f"Invalid request: {e}"}, "id": rid})
            return
        self._reply(client, {"result": None, "id": rid})
        for key, name in keys:
            if method == "SUBSCRIBE":
                client.subs[key] = name
            else:
                client.subs.pop(key, None)

    def _publish(self, symbol: str, kind: str, data: dict[str, Any], ids: tuple[int, int] | None = None) -> None:
        body = b""
        for c in list(self._clients):
            name = c.subs.get((symbol, kind))
            if name is None:
                continue
            if not body:
                if ids is not None:
                    self.send_times[symbol][ids[1]] = time.perf_counter_ns()
                body = orjson.dumps(data)
            if ids is not None:
                c.first_book.setdefault(symbol, ids)
            self._send(c, b'{"stream":"' + name.encode() + b'","data":' + body + b"}" if c.combined else body)

    # events

    def _on_depth(self, symbol: str, ev: Depth) -> None:
        book = self.books[symbol]
        prev = book.update_id
        if ev.ids is not None:
            first, last, pu = ev.ids
        else:
            n = max(1, len(ev.bids) + len(ev.asks))
            gap = self._rng.randint(0, 40) if self.futures else 0
            first = prev + 1 + gap
            last, pu = first + n - 1 + gap, prev
        undo = book.apply(ev.bids, ev.asks)
        book.update_id = last
        self._journal[symbol].append((prev, first, last, undo))
        now = self.clock_ms()
        if not self._take_drop():
            bids = ev.bids
            cross = self._take_cross(book)
            if cross is not None:
                bids = [*bids, cross]
            if self.futures:
                data = {"e": "depthUpdate", "E": now, "T": now, "s": symbol, "U": first, "u": last,
                        "pu": pu if pu is not None else prev, "b": bids, "a": ev.asks}
            else:
                data = {"e": "depthUpdate", "E": now, "s": symbol, "U": first, "u": last, "b": bids, "a": ev.asks}
            self._publish(symbol, "depth", data, (first, last))
        bid, ask = book.bids.best(), book.asks.best()
        if bid is not None and ask is not None:
            ticker: dict[str, Any] = {"u": last, "s": symbol, "b": bid[0], "B": bid[1], "a": ask[0], "A": ask[1]}
            if self.futures:
                ticker = {"e": "bookTicker", **ticker, "T": now, "E": now}
            self._publish(symbol, "bookTicker", ticker)

    def _on_trade(self, symbol: str, ev: Print) -> None:
        now = self.clock_ms()
        if self.futures:
            data = {"e": "trade", "E": now, "T": now, "s": symbol, "t": ev.trade_id, "p": ev.price, "q": ev.qty,
                    "X": "MARKET", "m": ev.side == "sell"}
        else:
            data = {"e": "trade", "E": now, "s": symbol, "t": ev.trade_id, "p": ev.price, "q": ev.qty, "T": now,
                    "m": ev.side == "sell", "M": True}
        self._publish(symbol, "trade", data)

    def _malformed(self, client: Client) -> Sequence[bytes]:
        depth = next((n for (_, kind), n in client.subs.items() if kind == "depth"), "btcusdt@depth@100ms")
        symbol = depth.partition("@")[0].upper()
        bad = {"e": "depthUpdate", "E": self.clock_ms(), "s": symbol, "U": "soon", "u": None, "b": "none",
               "a": [["1.0"]]}
        shaped = orjson.dumps({"stream": depth, "data": bad} if client.combined else bad)
        return [b'{"stream":"' + depth.encode() + b'","data":{"e":"depthUpdate","E":', shaped]
