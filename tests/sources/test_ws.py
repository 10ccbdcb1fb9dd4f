"""WsConnection against real websocket servers on 127.0.0.1: frames, resubscription, reconnects, watchdogs."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import itertools
import random
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from daemon.sources.backoff import Backoff
from daemon.sources.ws import WsConnection
from daemon.venues.health import FeedHealth

Handler = Callable[[ServerConnection], Awaitable[None]]


@asynccontextmanager
async def ws_server(handler: Handler, **kwargs: Any) -> AsyncIterator[str]:
    """A websockets server on an ephemeral loopback port; yields its ws:// url."""
    async with serve(handler, "127.0.0.1", 0, **kwargs) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/"


@asynccontextmanager
async def mute_server() -> AsyncIterator[str]:
    """A raw TCP server that completes the websocket handshake and then never answers anything (no pongs)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        match = re.search(rb"sec-websocket-key:\s*(\S+)", request, re.IGNORECASE)
        assert match is not None
        digest = hashlib.sha1(match.group(1) + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + base64.b64encode(digest) + b"\r\n\r\n")
        while await reader.read(1 << 16):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    finally:
        server.close()


class Feed:
    """Collects what a WsConnection hands over, and runs it."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []
        self.markers: list[tuple[int, dict]] = []
        self.clock = itertools.count(1_000)
        self.health = FeedHealth("test")

    def now(self) -> int:
        return next(self.clock)

    def on_frame(self, ts: int, raw: bytes) -> None:
        self.frames.append((ts, raw))

    def on_marker(self, ts: int, marker: dict) -> None:
        self.markers.append((ts, marker))

    def events(self) -> list[str]:
        return [m["event"] for _, m in self.markers]

    def connection(self, url: str, **kwargs: Any) -> WsConnection:
        options: dict[str, Any] = {
            "health": self.health, "on_frame": self.on_frame, "on_marker": self.on_marker, "now": self.now,
            "backoff": fast_backoff(), "proxy": None, "close_timeout_s": 0.2, "stale_after_s": 5.0,
            **kwargs,
        }
        return WsConnection(url, **options)


def fast_backoff() -> Backoff:
    return Backoff(0.01, 0.05, rng=random.Random(7), floor_s=0.005)


async def until(cond: Callable[[], bool], limit_s: float = 5.0) -> None:
    """Wait until `cond()` holds (a safety limit, not a timing assertion)."""
    async with asyncio.timeout(limit_s):
        while not cond():
            await asyncio.sleep(0.002)


@asynccontextmanager
async def running(conn: WsConnection) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(conn.run())
    try:
        yield task
    finally:
        await conn.close()
        await asyncio.wait_for(task, 5)


async def test_frames_arrive_as_bytes_stamped_after_the_connected_marker() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send('{"a":1}')
        await ws.send(b'{"b":2}')
        await ws.send('{"c":"\u00e9"}')
        await ws.wait_closed()

    feed = Feed()
    async with ws_server(handler) as url:
        conn = feed.connection(url)
        async with running(conn):
            await until(lambda: len(feed.frames) == 3)
            assert conn.connected

    assert [raw for _, raw in feed.frames] == [b'{"a":1}', b'{"b":2}', '{"c":"\u00e9"}'.encode()]
    stamps = [feed.markers[0][0]] + [ts for ts, _ in feed.frames] + [feed.markers[1][0]]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert feed.markers[0][1] == {"event": "connected", "url": url}
    assert feed.markers[1][1] == {"event": "disconnected", "reason": "closed by us"}
    h = feed.health
    assert (h.connects, h.disconnects, h.connected, h.messages) == (1, 1, False, 3)
    assert h.bytes == sum(len(raw) for _, raw in feed.frames)
    assert h.last_message_ns == feed.frames[-1][0]
    assert h.connected_since_ns == feed.markers[0][0]


async def test_subscriptions_are_sent_again_on_every_reconnect_and_markers_alternate() -> None:
    received: list[list[bytes | str]] = []

    async def handler(ws: ServerConnection) -> None:
        got = [await ws.recv(), await ws.recv()]
        received.append(got)
        await ws.send(orjson.dumps({"conn": len(received)}))
        if len(received) < 3:
            await ws.close()
        else:
            await ws.wait_closed()

    feed = Feed()
    subscribe = [{"method": "SUBSCRIBE", "params": ["btcusdt@depth"], "id": 1}, "ping"]
    async with ws_server(handler) as url:
        conn = feed.connection(url, subscribe=lambda: subscribe)
        async with running(conn):
            await until(lambda: len(feed.frames) == 3)

    assert received == [[orjson.dumps(subscribe[0]).decode(), "ping"]] * 3
    assert [raw for _, raw in feed.frames] == [b'{"conn":1}', b'{"conn":2}', b'{"conn":3}']
    assert feed.events() == ["connected", "disconnected"] * 3
    reasons = [m["reason"] for _, m in feed.markers if m["event"] == "disconnected"]
    assert all("received 1000" in r for r in reasons[:2]), reasons
    assert (feed.health.connects, feed.health.disconnects) == (3, 3)


async def test_backoff_grows_across_short_connections_and_resets_after_a_healthy_one() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.close()

    for healthy_after_s, expect_growth in ((1e9, True), (0.0, False)):
        feed = Feed()
        async with ws_server(handler) as url:
            conn = feed.connection(url, healthy_after_s=healthy_after_s)
            async with running(conn):
                await until(lambda f=feed: f.health.connects >= 4)
                attempts = conn.backoff.attempts
        assert (attempts >= 3) is expect_growth, attempts


async def test_silent_connection_is_closed_by_the_watchdog_and_reopened() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("{}")
        await ws.wait_closed()  # stays connected, answers pings, sends nothing more

    feed = Feed()
    async with ws_server(handler) as url:
        conn = feed.connection(url, stale_after_s=0.15)
        async with running(conn):
            await until(lambda: feed.health.connects >= 2)

    assert feed.health.stale_reconnects >= 1
    assert feed.markers[1][1] == {"event": "disconnected", "reason": "stale: no frame for 0.15 s"}
    assert conn.ping_timeouts == 0


async def test_unanswered_pings_close_the_connection_and_it_is_reopened() -> None:
    feed = Feed()
    async with mute_server() as url:
        conn = feed.connection(url, ping_interval_s=0.05, ping_timeout_s=0.1, stale_after_s=60.0)
        async with running(conn):
            await until(lambda: feed.health.connects >= 2)

    assert conn.ping_timeouts >= 1
    assert feed.health.stale_reconnects == 0
    reason = feed.markers[1][1]["reason"]
    assert reason.startswith("keepalive ping not answered within 0.1 s"), reason


async def test_frame_larger_than_the_limit_drops_the_connection_and_the_next_one_works() -> None:
    conns = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal conns
        conns += 1
        await ws.send(b'{"big":"' + b"x" * 2000 + b'"}' if conns == 1 else b'{"small":1}')
        await ws.wait_closed()

    feed = Feed()
    async with ws_server(handler) as url:
        conn = feed.connection(url, max_frame_bytes=1024)
        async with running(conn):
            await until(lambda: len(feed.frames) == 1)

    assert [raw for _, raw in feed.frames] == [b'{"small":1}']
    assert conn.oversize_frames == 1
    assert feed.markers[1][1]["reason"].startswith("frame larger than max_frame_bytes=1024")
    assert feed.events()[:3] == ["connected", "disconnected", "connected"]


async def test_a_raising_on_frame_is_counted_and_the_connection_reopened() -> None:
    async def handler(ws: ServerConnection) -> None:
        for i in range(3):
            await ws.send(orjson.dumps({"i": i}))
        await ws.wait_closed()

    feed = Feed()
    delivered: list[bytes] = []

    def on_frame(ts: int, raw: bytes) -> None:
        if raw == b'{"i":1}' and feed.health.connects == 1:
            raise RuntimeError("router bug")
        delivered.append(raw)

    async with ws_server(handler) as url:
        conn = feed.connection(url, on_frame=on_frame)
        async with running(conn):
            await until(lambda: len(delivered) == 4)

    assert delivered == [b'{"i":0}', b'{"i":0}', b'{"i":1}', b'{"i":2}']
    assert conn.callback_errors == 1
    assert feed.markers[1][1] == {"event": "disconnected", "reason": "on_frame raised RuntimeError: router bug"}


async def test_a_raising_subscribe_is_counted_and_retried_at_backoff_pace() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()

    feed = Feed()
    calls = 0

    def subscribe() -> list:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("no symbols")
        return [{"op": "subscribe"}]

    async with ws_server(handler) as url:
        conn = feed.connection(url, subscribe=subscribe)
        async with running(conn):
            await until(lambda: feed.health.connects == 2 and conn.connected)

    assert conn.callback_errors == 1
    assert feed.markers[1][1]["reason"] == "subscribe raised ValueError: no symbols"


async def test_send_reaches_the_server_only_while_connected() -> None:
    got: asyncio.Queue[str | bytes] = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        async for msg in ws:
            got.put_nowait(msg)

    feed = Feed()
    async with ws_server(handler) as url:
        conn = feed.connection(url)
        assert await conn.send({"op": "early"}) is False
        async with running(conn):
            await until(lambda: conn.connected)
            assert await conn.send({"op": "resubscribe", "args": ["BTC-USDT"]}) is True
            assert await asyncio.wait_for(got.get(), 5) == '{"op":"resubscribe","args":["BTC-USDT"]}'
        assert await conn.send("late") is False


async def test_refused_connects_are_counted_and_close_interrupts_the_backoff() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    feed = Feed()
    conn = feed.connection(f"ws://127.0.0.1:{port}/", backoff=Backoff(0.5, 30.0, rng=random.Random(1)))
    task = asyncio.create_task(conn.run())
    await until(lambda: conn.connect_failures >= 1)
    await conn.close()
    await asyncio.wait_for(task, 5)

    assert feed.markers == [] and feed.health.connects == 0
    assert task.done() and task.exception() is None


async def test_cancelling_run_closes_the_connection_with_a_marker() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()

    feed = Feed()
    async with ws_server(handler) as url:
        conn = feed.connection(url)
        task = asyncio.create_task(conn.run())
        await until(lambda: conn.connected)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert feed.events() == ["connected", "disconnected"]
    assert not conn.connected and not feed.health.connected


def test_invalid_url_and_settings_are_clear_errors() -> None:
    feed = Feed()
    with pytest.raises(ValueError, match="not a ws:// or wss:// URI"):
        feed.connection("http://example.com/")
    with pytest.raises(ValueError, match="stale_after_s must be > 0"):
        feed.connection("ws://127.0.0.1:1/", stale_after_s=0)


async def test_real_binance_frames_arrive_byte_for_byte(shared_data: Path) -> None:
    path = shared_data / "binance_spot_btcusdt" / "btcusdt_20240808.gz"
    with gzip.open(path, "rb") as fh:
        wire = [line.rstrip(b"\n").partition(b" ")[2] for line in itertools.islice(fh, 3000)]

    async def handler(ws: ServerConnection) -> None:
        for raw in wire:
            await ws.send(raw.decode())
        await ws.wait_closed()

    feed = Feed()
    async with ws_server(handler) as url:
        conn = feed.connection(url)
        async with running(conn):
            await until(lambda: len(feed.frames) == len(wire), limit_s=15)

    assert [raw for _, raw in feed.frames] == wire
    assert feed.health.bytes == sum(map(len, wire))
