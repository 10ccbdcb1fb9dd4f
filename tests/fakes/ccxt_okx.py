"""A loopback OKX v5 public websocket for the real ccxt pro `okx` client, and the real OKX frames of
../shared/data/okx_btcusdt to serve from it.

The server acknowledges `subscribe` / `unsubscribe` the way OKX does, answers "ping" with "pong", and
on a `books` subscribe sends the snapshot frame the test set for that instrument. Everything after
that is pushed by the test (`send`), so a test can step ccxt through a recording one frame at a time.
`drop()` closes every connection, as a venue restart or a network fault would.
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import orjson
import websockets
from websockets.asyncio.server import Server, ServerConnection

MARKETS = [{
    "id": "BTC-USDT", "symbol": "BTC/USDT", "base": "BTC", "quote": "USDT", "baseId": "BTC", "quoteId": "USDT",
    "type": "spot", "spot": True, "swap": False, "future": False, "option": False, "contract": False,
    "active": True, "precision": {"price": 0.1, "amount": 1e-8}, "limits": {}, "info": {},
}]


def okx_exchange(url: str, **config: Any) -> Any:
    """A real ccxt pro okx client pointed at `url` (ws://127.0.0.1:port/ws/v5), markets pre-loaded."""
    import ccxt.pro

    ex = ccxt.pro.okx({"urls": {"api": {"ws": url}}, **config})
    ex.set_markets(copy.deepcopy(MARKETS))
    return ex


def recorded_frames(path: Path, inst_id: str) -> list[dict]:
    """The `books` and `trades` frames of one instrument from a cryptofeed OKX capture, in order."""
    out = []
    for line in path.read_bytes().splitlines():
        head, sep, body = line.partition(b": ")
        if not sep or not body.startswith(b"{") or b"<-" in head or b"->" in head:
            continue
        msg = orjson.loads(body)
        arg = msg.get("arg") or {}
        if arg.get("instId") == inst_id and arg.get("channel") in ("books", "trades") and "data" in msg:
            out.append(msg)
    return out


def with_seq(frames: list[dict], first: int = 1000) -> list[dict]:
    """Copies of `books` frames with the seqId / prevSeqId OKX has sent since 2023 (the 2022 capture
    predates them): a snapshot starts at `first`, each update continues from the one before."""
    out, seq = [], first
    for f in frames:
        f = copy.deepcopy(f)
        if f["arg"]["channel"] == "books":
            d = f["data"][0]
            d["prevSeqId"] = -1 if f.get("action") == "snapshot" else seq
            seq = first if f.get("action") == "snapshot" else seq + 1
            d["seqId"] = seq
        out.append(f)
    return out


class FakeOkx:
    """OKX's public websocket on 127.0.0.1 (ephemeral port); `start()` / `stop()` it from the test."""

    def __init__(self) -> None:
        self.snapshots: dict[str, dict] = {}  # instId -> the books snapshot frame sent on subscribe
        self.ops: list[tuple[str, str, str]] = []  # (op, channel, instId) as received
        self.connections = 0
        self._server: Server | None = None
        self._subs: dict[ServerConnection, set[tuple[str, str]]] = {}
        self._changed = asyncio.Condition()

    @property
    def url(self) -> str:
        """The base url ccxt's okx client takes as `urls.api.ws` (it appends /public)."""
        assert self._server is not None
        return f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/ws/v5"

    async def start(self) -> None:
        """Listen on an ephemeral loopback port."""
        self._server = await websockets.serve(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def drop(self) -> None:
        """Close every client connection (code 1012: service restart)."""
        conns = list(self._subs)
        self._subs.clear()
        for ws in conns:
            await ws.close(1012, "restart")

    async def send(self, frame: dict) -> None:
        """Send a frame to every connection subscribed to its (channel, instId)."""
        key = (frame["arg"]["channel"], frame["arg"]["instId"])
        data = orjson.dumps(frame).decode()
        for ws, subs in list(self._subs.items()):
            if key in subs:
                await ws.send(data)

    async def wait_subscribed(self, channel: str, inst_id: str, count: int = 1) -> None:
        """Wait until (channel, instId) has been subscribed `count` times in all."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.ops.count(("subscribe", channel, inst_id)) >= count)

    async def _serve(self, ws: ServerConnection) -> None:
        self.connections += 1
        self._subs[ws] = set()
        try:
            async for raw in ws:
                if raw == "ping":
                    await ws.send("pong")
                    continue
                req = orjson.loads(raw)
                for arg in req.get("args", []):
                    await self._op(ws, req["op"], arg)
        except websockets.ConnectionClosed:
            pass
        finally:
            self._subs.pop(ws, None)

    async def _op(self, ws: ServerConnection, op: str, arg: dict) -> None:
        key = (arg["channel"], arg["instId"])
        subs = self._subs.get(ws)
        if subs is None:
            return
        await ws.send(orjson.dumps({"event": op, "arg": arg, "connId": "fake"}).decode())
        if op == "subscribe":
            subs.add(key)
            snap = self.snapshots.get(arg["instId"])
            if key[0] == "books" and snap is not None:
                await ws.send(orjson.dumps(snap).decode())
        else:
            subs.discard(key)
        async with self._changed:
            self.ops.append((op, *key))
            self._changed.notify_all()
