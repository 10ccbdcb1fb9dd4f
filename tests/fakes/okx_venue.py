"""A fake OKX v5 public websocket on 127.0.0.1: `books` (400 levels, CRC32 checksum, seqId) and `trades`.

    async with FakeOkx(["BTC-USDT"], source="synthetic") as fake:       # or source="recorded"
        ws = await websockets.connect(fake.ws_url)                      # ws://127.0.0.1:PORT/ws/v5/public
        await ws.send('{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}')
        await fake.push(10)

`{"op": "subscribe"|"unsubscribe", "args": [{"channel": "books"|"trades", "instId": ...}, ...]}` is acked per
arg (`{"event": "subscribe", "arg": {...}, "connId": ...}`); a `books` subscription is then sent an "snapshot" of the
true book (best `depth` levels a side, prevSeqId -1), and every book change as an "update" with `prevSeqId`/`seqId`
(seqIds grow by 1..4) and `checksum` computed by the fake from its own strings (`okx_checksum`: CRC32 as signed int32
of "bid1px:bid1sz:ask1px:ask1sz:..." over the best 25 levels a side). Unknown channels or instruments get
`{"event": "error", "code": "60018", ...}`; the text "ping" is answered "pong".

With the recorded source (../shared/data/okx_btcusdt, 2022, before seqIds) the fake also compares its checksum with
the recorded one: `checksums_compared`, `checksum_mismatches`. The synthetic source keeps each side under 400
levels, so a snapshot always holds the whole true book.

Faults beyond the shared ones (see tests.fakes): `corrupt_next()` (the next update carries a wrong size for the
best bid while its checksum is of the true book, so the client's checksum fails).
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from tests.fakes import Client, FakeVenue
from tests.fakes.market import DATA_DIR, OKX, Depth, OkxRecording, Print, Row, Source, SyntheticSource, price_key

_CHANNELS = frozenset({"books", "trades"})


def okx_checksum(bids: Sequence[Row], asks: Sequence[Row]) -> int:
    """OKX's book checksum of the best 25 levels a side (bids and asks best first), as a signed int32."""
    bids, asks = bids[:25], asks[:25]
    parts: list[str] = []
    for i in range(max(len(bids), len(asks))):
        if i < len(bids):
            parts += bids[i][:2]
        if i < len(asks):
            parts += asks[i][:2]
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


class FakeOkx(FakeVenue):
    """OKX `books` and `trades` for `symbols` (instIds), from `source` ("synthetic", "recorded" or a callable
    instId -> Source)."""

    venue = "okx"

    def __init__(self, symbols: Sequence[str] = ("BTC-USDT",), *, source: str | Callable[[str], Source] = "synthetic",
                 seed: int = 1, data_dir: Path = DATA_DIR, clock_ms: Callable[[], int] | None = None,
                 ping_interval: float | None = None, depth: int = 400) -> None:
        sources = {s: self._source(s, source, seed + i, data_dir) for i, s in enumerate(symbols)}
        super().__init__(sources, clock_ms=clock_ms, ping_interval=ping_interval)
        for book in self.books.values():
            book.update_id = book.update_id or 1_000_000
        self.depth = depth
        self.checksums_compared = 0
        self.checksum_mismatches = 0
        self._corrupt = False
        self._rng = random.Random(seed)

    @staticmethod
    def _source(symbol: str, source: str | Callable[[str], Source], seed: int, data_dir: Path) -> Source:
        if callable(source):
            return source(symbol)
        if source == "synthetic":
            return SyntheticSource(OKX, seed, mid=30_000, levels=150, max_levels=300, update_id=1_000_000)
        if source == "recorded":
            if symbol != "BTC-USDT":
                raise ValueError(f"no recorded OKX data for {symbol!r}: the recording used holds BTC-USDT only")
            return OkxRecording(data_dir / "okx_btcusdt" / "OKX.ws.1.0", symbol)
        raise ValueError(f"source must be 'synthetic', 'recorded' or a callable, got {source!r}")

    @property
    def ws_url(self) -> str:
        """The public websocket URL."""
        return f"ws://127.0.0.1:{self.ws_port}/ws/v5/public"

    def corrupt_next(self) -> None:
        """The next update sends a wrong size for the best bid; its checksum is of the true book."""
        self._corrupt = True

    # websocket

    def _sub_key(self, symbol: str, kind: str) -> tuple[str, str]:
        return (kind, symbol)

    def _reply(self, client: Client, msg: dict[str, Any]) -> None:
        self._send(client, orjson.dumps({**msg, "connId": client.conn_id}))

    def _error(self, client: Client, code: str, msg: str) -> None:
        self._reply(client, {"event": "error", "code": code, "msg": msg})

    def _on_message(self, client: Client, text: str) -> None:
        if text == "ping":
            self._send(client, b"pong")
            return
        try:
            req = orjson.loads(text)
        except orjson.JSONDecodeError:
            self._error(client, "60012", f"Invalid request: {text[:100]}")
            return
        op = req.get("op") if isinstance(req, dict) else None
        args = req.get("args") if isinstance(req, dict) else None
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list):
            self._error(client, "60012", f"Invalid request: {text[:100]}")
            return
        for arg in args:
            channel = arg.get("channel") if isinstance(arg, dict) else None
            inst = arg.get("instId") if isinstance(arg, dict) else None
            if channel not in _CHANNELS or inst not in self.books:
                self._error(client, "60018", f"Wrong URL or channel:{channel},instId:{inst} doesn't exist.")
                continue
            key = (channel, inst)
            self._reply(client, {"event": op, "arg": {"channel": channel, "instId": inst}})
            if op == "unsubscribe":
                client.subs.pop(key, None)
                continue
            client.subs[key] = {"channel": channel, "instId": inst}
            if channel == "books":
                self._send(client, self._snapshot(inst))

    def _snapshot(self, symbol: str) -> bytes:
        book = self.books[symbol]
        bids, asks = book.bids.top(self.depth), book.asks.top(self.depth)
        data = {"asks": asks, "bids": bids, "ts": str(self.clock_ms()), "checksum": okx_checksum(bids, asks),
                "prevSeqId": -1, "seqId": book.update_id}
        return orjson.dumps({"arg": {"channel": "books", "instId": symbol}, "action": "snapshot", "data": [data]})

    def _publish(self, channel: str, symbol: str, frame: bytes) -> None:
        for c in list(self._clients):
            if (channel, symbol) in c.subs:
                self._send(c, frame)

    # events

    def _on_depth(self, symbol: str, ev: Depth) -> None:
        book = self.books[symbol]
        prev = book.update_id
        book.apply(ev.bids, ev.asks)
        seq = book.update_id = prev + self._rng.randint(1, 4)
        checksum = okx_checksum(book.bids.top(25), book.asks.top(25))
        if ev.checksum is not None:
            self.checksums_compared += 1
            self.checksum_mismatches += checksum != ev.checksum
        if self._take_drop():
            return
        bids = list(ev.bids)
        best = book.bids.best()
        if self._corrupt and best is not None:
            self._corrupt = False
            price = price_key(best[0])
            bids = [r for r in bids if price_key(r[0]) != price] + [[best[0], str(Decimal(best[1]) + 1), *best[2:]]]
        cross = self._take_cross(book)
        if cross is not None:
            bids.append(cross)
        data = {"asks": ev.asks, "bids": bids, "ts": str(self.clock_ms()), "checksum": checksum,
                "prevSeqId": prev, "seqId": seq}
        if any(("books", symbol) in c.subs for c in self._clients):
            self.send_times[symbol][seq] = time.perf_counter_ns()
        self._publish("books", symbol, orjson.dumps({"arg": {"channel": "books", "instId": symbol},
                                                     "action": "update", "data": [data]}))

    def _on_trade(self, symbol: str, ev: Print) -> None:
        data = {"instId": symbol, "tradeId": str(ev.trade_id), "px": ev.price, "sz": ev.qty, "side": ev.side,
                "ts": str(self.clock_ms()), "count": "1"}
        self._publish("trades", symbol, orjson.dumps({"arg": {"channel": "trades", "instId": symbol}, "data": [data]}))

    def _malformed(self, client: Client) -> Sequence[bytes]:
        inst = next((s for (ch, s) in client.subs if ch == "books"), self.symbols[0])
        bad = {"arg": {"channel": "books", "instId": inst}, "action": "update",
               "data": [{"asks": "none", "bids": [["1"]], "ts": None, "checksum": "x", "seqId": "soon"}]}
        return [b'{"arg":{"channel":"books","instId":"' + inst.encode() + b'"},"action":"upd', orjson.dumps(bad)]

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse paths other than /ws/v5/public (404), saying so."""
        if request.path != "/ws/v5/public":
            return connection.respond(404, f"unknown path {request.path!r}: use /ws/v5/public\n")
        return None
