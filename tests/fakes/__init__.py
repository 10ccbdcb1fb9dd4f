"""Fake venues on 127.0.0.1 for the live-feed tests: real servers, the venues' real message formats, a true book.

- `tests.fakes.binance_venue.FakeBinance` — Binance spot / USD-M: combined and raw websocket streams, REST depth.
- `tests.fakes.okx_venue.FakeOkx` — OKX v5 public websocket: `books` (snapshot + updates with checksum, seqId) and
  `trades`.
- `tests.fakes.market` — the true book and the event sources (synthetic, or the real recordings in ../shared/data).

Both fakes share `FakeVenue` (below): `await start()` / `await stop()` (or `async with`); `await push(n)` emits the
next n source events now (a book change or a trade each; deterministic); `start_stream(rate_per_s)` /
`await stop_stream()` emit them paced in the background; every change moves the true book, whatever the faults.
Faults: `drop_next(n)` (applied, not sent: a gap), `cross_book_next()` (the next book frame also carries a bid above
the best ask, not applied to the true book), `disconnect()` (abort every connection), `stall(pings=False)` /
`resume()` (frames are held, then delivered in order; with pings=True the connection is not read either, so pings
go unanswered), `send_malformed()`. Inspection: `true_book(symbol)` -> (bids, asks) as (Decimal price, Decimal qty)
best first, `update_id(symbol)`, `connections`, `subscribers(symbol, kind)`, `sent_frames` (frames written; held
ones count when delivered), `events_emitted`, `exhausted` (symbols whose recording ended), `send_times[symbol][update
id]` (perf_counter_ns just before the book frame with that id was written: Binance `u`, OKX `seqId`), and
`await wait_for(predicate, timeout)` to wait for a client to connect or subscribe. Event times in the frames come from
`clock_ms` (wall ms by default). All sends are synchronous writes, so frames leave in emission order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any, Self

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from tests.fakes.market import Depth, Print, Row, Source, TrueBook


def wall_ms() -> int:
    """Wall-clock milliseconds, the venues' event time."""
    return time.time_ns() // 1_000_000


class Client:
    """One websocket connection to a fake venue, with its subscriptions and the frames held by a stall."""

    def __init__(self, ws: ServerConnection, conn_id: str, combined: bool = True) -> None:
        self.ws = ws
        self.conn_id = conn_id
        self.combined = combined
        self.subs: dict[tuple[str, str], Any] = {}
        self.backlog: list[bytes] = []
        self.first_book: dict[str, tuple[int, int]] = {}
        self.paused = False


class FakeVenue:
    """What both fakes share: the websocket server, connections, true books, pacing and the stream faults."""

    venue = "fake"

    def __init__(self, sources: dict[str, Source], *, clock_ms: Callable[[], int] | None = None,
                 ping_interval: float | None = None) -> None:
        if not sources:
            raise ValueError("a fake venue needs at least one symbol")
        self.symbols = list(sources)
        self._sources = sources
        self.books = {s: TrueBook(src.start()) for s, src in sources.items()}
        self.clock_ms = clock_ms or wall_ms
        self.sent_frames = 0
        self.events_emitted = 0
        self.send_times: dict[str, dict[int, int]] = {s: {} for s in self.symbols}
        self.exhausted: set[str] = set()
        self._clients: list[Client] = []
        self._conn_seq = 0
        self._drop = 0
        self._cross = False
        self._stalled = False
        self._stall_pings = False
        self._rr = 0
        self._stream_task: asyncio.Task[None] | None = None
        self._server: Server | None = None
        self._ping_interval = ping_interval
        self.ws_port = 0

    # lifecycle

    async def start(self) -> None:
        """Listen on 127.0.0.1, an ephemeral port."""
        self._server = await serve(self._handler, "127.0.0.1", 0, process_request=self._check_request,
                                   ping_interval=self._ping_interval, compression=None, close_timeout=1)
        self.ws_port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop the stream, abort every connection and close the server."""
        await self.stop_stream()
        self.disconnect()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    # pacing

    async def push(self, n: int = 1, symbol: str | None = None) -> int:
        """Emit the next n events now (round robin over the symbols unless one is named); returns how many."""
        done = self._emit(n, symbol)
        await asyncio.sleep(0)
        return done

    def start_stream(self, rate_per_s: float, symbol: str | None = None) -> None:
        """Emit events in the background at `rate_per_s` events a second until stop_stream (or the source ends)."""
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be positive, got {rate_per_s}")
        if self._stream_task is not None and not self._stream_task.done():
            raise RuntimeError("a stream is already running; stop_stream() first")
        self._stream_task = asyncio.get_running_loop().create_task(self._stream(rate_per_s, symbol))

    async def stop_stream(self) -> None:
        """Stop the background stream, if any."""
        task, self._stream_task = self._stream_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _stream(self, rate: float, symbol: str | None) -> None:
        loop = asyncio.get_running_loop()
        batch = max(1, int(rate / 200))
        t0, done = loop.time(), 0
        while True:
            due = int((loop.time() - t0) * rate) - done
            if due > 20 * batch:  # more than ~100 ms behind: catch up no further than that
                t0 = loop.time() - (done + batch) / rate
                due = batch
            if due > 0:
                emitted = self._emit(min(due, batch), symbol)
                if emitted == 0:
                    return
                done += emitted
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(max(0.0, (done + 1) / rate - (loop.time() - t0)))

    def _emit(self, n: int, symbol: str | None) -> int:
        if symbol is not None and symbol not in self._sources:
            raise ValueError(f"{self.venue} fake has no symbol {symbol!r}; it has {self.symbols}")
        done = 0
        while done < n:
            sym = symbol or self._next_symbol()
            if sym is None or sym in self.exhausted:
                break
            ev = self._sources[sym].next_event()
            if ev is None:
                self.exhausted.add(sym)
                continue
            if isinstance(ev, Depth):
                self._on_depth(sym, ev)
            else:
                self._on_trade(sym, ev)
            done += 1
        self.events_emitted += done
        return done

    def _next_symbol(self) -> str | None:
        for _ in self.symbols:
            sym = self.symbols[self._rr % len(self.symbols)]
            self._rr += 1
            if sym not in self.exhausted:
                return sym
        return None

    # faults

    def drop_next(self, n: int = 1) -> None:
        """The next n book changes move the true book but are not sent (subscribers see a gap)."""
        self._drop += n

    def cross_book_next(self) -> None:
        """The next book frame also carries a bid above the best ask (the true book does not get it)."""
        self._cross = True

    def disconnect(self) -> None:
        """Abort every connection (no close frame: the client sees an abnormal closure)."""
        clients, self._clients = self._clients, []
        for c in clients:
            c.ws.transport.abort()

    def stall(self, pings: bool = False) -> None:
        """Hold every frame (connections stay open); with pings=True stop reading too, so pings go unanswered."""
        self._stalled = True
        self._stall_pings = pings
        if pings:
            for c in self._clients:
                self._pause(c)

    def resume(self) -> None:
        """End a stall: answer pings again and deliver the held frames in order."""
        self._stalled = self._stall_pings = False
        for c in list(self._clients):
            if c.paused:
                c.paused = False
                c.ws.transport.resume_reading()
            held, c.backlog = c.backlog, []
            for frame in held:
                self._send(c, frame)

    def send_malformed(self) -> None:
        """Send every client a frame that is not JSON, then one that is JSON of the wrong shape."""
        for c in list(self._clients):
            for frame in self._malformed(c):
                self._send(c, frame)

    # inspection

    def true_book(self, symbol: str) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """The venue's book of `symbol`: (bids, asks) as (price, qty) Decimals, best first, every level."""
        return self.books[symbol].decimals()

    def update_id(self, symbol: str) -> int:
        """The update id (Binance `u`, OKX `seqId`) the true book of `symbol` is at."""
        return self.books[symbol].update_id

    @property
    def connections(self) -> int:
        """Open client connections."""
        return len(self._clients)

    def subscribers(self, symbol: str, kind: str) -> int:
        """Connections subscribed to `kind` ("depth"/"books", "trade"/"trades", ...) of `symbol`."""
        return sum(1 for c in self._clients if self._sub_key(symbol, kind) in c.subs)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait (polling the event loop) until `predicate()` holds; TimeoutError after `timeout` seconds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{self.venue} fake: condition not met within {timeout} s")
            await asyncio.sleep(0.002)

    # plumbing for the venues

    def _sub_key(self, symbol: str, kind: str) -> tuple[str, str]:
        return (symbol, kind)

    def _send(self, client: Client, frame: bytes) -> None:
        """Write one text frame now (or hold it during a stall)."""
        if self._stalled:
            client.backlog.append(frame)
            return
        if client.ws.state is not State.OPEN:
            return
        broadcast([client.ws], frame, text=True)
        self.sent_frames += 1

    def _take_drop(self) -> bool:
        if self._drop:
            self._drop -= 1
            return True
        return False

    def _take_cross(self, book: TrueBook) -> Row | None:
        """The crossing bid row for this frame, if cross_book_next was asked for."""
        if not self._cross:
            return None
        ask = book.asks.best()
        if ask is None:
            return None
        self._cross = False
        return [str(Decimal(ask[0]) + 1), *ask[1:]]

    def _pause(self, c: Client) -> None:
        if not c.paused:
            c.paused = True
            c.ws.transport.pause_reading()

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse a handshake to an unknown path (HTTP 404) or with bad streams (400), saying why."""
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        self._conn_seq += 1
        client = self._open(ws, f"{self._conn_seq:08x}")
        self._clients.append(client)
        if self._stalled and self._stall_pings:
            self._pause(client)
        try:
            async for msg in ws:
                self._on_message(client, msg if isinstance(msg, str) else msg.decode("utf-8", "replace"))
        except ConnectionClosed:
            pass
        finally:
            if client in self._clients:
                self._clients.remove(client)

    def _open(self, ws: ServerConnection, conn_id: str) -> Client:
        """A new connection: the client with the subscriptions its URL asks for."""
        return Client(ws, conn_id)

    def _on_message(self, client: Client, text: str) -> None:
        raise NotImplementedError

    def _on_depth(self, symbol: str, ev: Depth) -> None:
        raise NotImplementedError

    def _on_trade(self, symbol: str, ev: Print) -> None:
        raise NotImplementedError

    def _malformed(self, client: Client) -> Sequence[bytes]:
        raise NotImplementedError
