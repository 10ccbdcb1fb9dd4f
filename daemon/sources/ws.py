"""A websocket connection to a venue that keeps itself alive: reconnect, resubscribe, watchdog.

`WsConnection.run()` connects, sends the subscription frames, and hands every frame to `on_frame`
as raw bytes stamped with `now()` right after it was received, synchronously (no queue: the caller
routes it at once, so receive order is processing order). Connection events go to `on_marker` as
`{"event": "connected", "url": ...}` and, once per connection, `{"event": "disconnected",
"reason": ...}`, so the adapter can drop the books the connection carried.

Faults and what they do:
- the server closes, the network drops, a keepalive ping is not answered within `ping_timeout_s`
  (websockets' own ping/pong), or a frame exceeds `max_frame_bytes` (counted in `oversize_frames`):
  the connection ends and `run()` reconnects after a `Backoff` delay;
- "connected but silent": no frame for `stale_after_s` closes the connection and reconnects
  (`health.stale_reconnects`); the watchdog measures on the loop's monotonic clock, not `now()`,
  so a wall-clock step can neither trigger nor hide it;
- `on_frame`, `on_marker` or `subscribe` raises: logged with its traceback, counted in
  `callback_errors`, and the connection is closed and reopened. The frame is lost to the caller,
  so its books cannot be trusted; the "disconnected" marker makes the adapter drop them and the
  new connection rebuilds them from fresh snapshots. A caller that fails on every frame thus
  reconnects at backoff pace (never faster), with one error log a connection;
- a failed connect attempt (refused, DNS, handshake status, open timeout): `connect_failures`.
The backoff starts over once a connection has stayed up `healthy_after_s`. `run()` returns after
`close()`; cancelling it closes the connection too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Literal

import orjson
import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidURI
from websockets.frames import CloseCode
from websockets.protocol import State
from websockets.uri import parse_uri

from daemon.sources.backoff import Backoff
from daemon.venues.health import FeedHealth

log = structlog.get_logger("depthd.feed")

Frame = dict[str, Any] | list[Any] | str | bytes
MiB = 1 << 20


class WsConnection:
    """One venue websocket, reconnected until `close()`; see the module docstring for the fault rules."""

    def __init__(
        self,
        url: str,
        *,
        health: FeedHealth,
        on_frame: Callable[[int, bytes], None],
        on_marker: Callable[[int, dict[str, Any]], None],
        subscribe: Callable[[], list[Frame]] = list,
        now: Callable[[], int] = time.time_ns,
        ping_interval_s: float = 20.0,
        ping_timeout_s: float = 10.0,
        stale_after_s: float = 10.0,
        open_timeout_s: float = 10.0,
        backoff: Backoff | None = None,
        max_frame_bytes: int = 16 * MiB,
        healthy_after_s: float = 30.0,
        name: str = "",
        close_timeout_s: float = 2.0,
        proxy: str | Literal[True] | None = True,
    ) -> None:
        try:
            parse_uri(url)
        except InvalidURI as exc:
            raise ValueError(f"websocket url {url!r} is not a ws:// or wss:// URI: {exc}") from exc
        for key, value in (("ping_interval_s", ping_interval_s), ("ping_timeout_s", ping_timeout_s),
                           ("stale_after_s", stale_after_s), ("open_timeout_s", open_timeout_s),
                           ("close_timeout_s", close_timeout_s)):
            if not value > 0:
                raise ValueError(f"{key} must be > 0, got {value!r}")
        if not healthy_after_s >= 0:
            raise ValueError(f"healthy_after_s must be >= 0, got {healthy_after_s!r}")
        if type(max_frame_bytes) is not int or max_frame_bytes < 1:
            raise ValueError(f"max_frame_bytes must be a positive int, got {max_frame_bytes!r}")
        self.url = url
        self.health = health
        self.name = name or health.venue
        self._on_frame = on_frame
        self._on_marker = on_marker
        self._subscribe = subscribe
        self._now = now
        self._ping_interval = ping_interval_s
        self._ping_timeout = ping_timeout_s
        self._stale_after = stale_after_s
        self._open_timeout = open_timeout_s
        self._close_timeout = close_timeout_s
        self._healthy_after = healthy_after_s
        self._max_frame = max_frame_bytes
        self._proxy = proxy
        self.backoff = backoff or Backoff()
        self.connect_failures = 0
        self.callback_errors = 0
        self.oversize_frames = 0
        self.ping_timeouts = 0
        self._ws: ClientConnection | None = None
        self._connect_task: asyncio.Task[ClientConnection] | None = None
        self._closing = False
        self._wake = asyncio.Event()
        self._done = asyncio.Event()
        self._running = False
        self._last_frame_mono = 0.0
        self._fault = ""  # why we are closing the current connection ourselves
        self._callback_fault = False

    @property
    def connected(self) -> bool:
        """True while a connection is open (frames may flow and `send` works)."""
        ws = self._ws
        return ws is not None and ws.state is State.OPEN

    @property
    def latency_s(self) -> float:
        """Round-trip time of the last keepalive ping, in seconds (0 before the first pong)."""
        ws = self._ws
        return ws.latency if ws is not None else 0.0

    async def run(self) -> None:
        """Connect, read and reconnect until `close()`; markers and frames go to the callbacks."""
        if self._running:
            raise RuntimeError(f"{self.name}: run() is already running")
        self._running = True
        self._done.clear()
        loop = asyncio.get_running_loop()
        try:
            while not self._closing:
                ws = await self._connect()
                if ws is not None and self._closing:  # close() came as the handshake finished
                    await ws.close()
                    break
                if ws is not None:
                    started = loop.time()
                    await self._session(ws)
                    if loop.time() - started >= self._healthy_after:
                        self.backoff.reset()
                if not self._closing:
                    await self._pause(self.backoff.next())
        finally:
            self._running = False
            self._done.set()

    async def send(self, frame: Frame) -> bool:
        """Send one frame (dict/list as orjson, str and bytes as Text frames); False when not connected."""
        ws = self._ws
        if ws is None or ws.state is not State.OPEN:
            return False
        try:
            await ws.send(_encode(frame), text=True)
        except ConnectionClosed:
            return False
        return True

    async def close(self) -> None:
        """Close the connection and stop `run()`; returns once `run()` has finished."""
        self._closing = True
        self._wake.set()
        task = self._connect_task
        if task is not None:
            task.cancel()
        ws = self._ws
        if ws is not None:
            self._fault = self._fault or "closed by us"
            await ws.close()
        if self._running:
            await self._done.wait()

    async def _connect(self) -> ClientConnection | None:
        """One connect attempt; None when it failed (counted and logged) or `close()` interrupted it."""
        task = asyncio.ensure_future(connect(
            self.url, open_timeout=self._open_timeout, ping_interval=self._ping_interval,
            ping_timeout=self._ping_timeout, close_timeout=self._close_timeout, max_size=self._max_frame,
            proxy=self._proxy,
        ))
        self._connect_task = task
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._closing and current is not None and not current.cancelling():
                return None
            raise
        except Exception as exc:
            self.connect_failures += 1
            log.warning("feed connect failed", feed=self.name, url=self.url, error=_describe(exc),
                        failures=self.connect_failures, backoff_attempts=self.backoff.attempts)
            return None
        finally:
            self._connect_task = None

    async def _session(self, ws: ClientConnection) -> None:
        """Serve one connection: marker, subscriptions, frames, until it ends; then the disconnect marker."""
        h, now = self.health, self._now
        ts = now()
        self._ws, self._fault, self._callback_fault = ws, "", False
        h.connected, h.connected_since_ns = True, ts
        h.connects += 1
        loop = asyncio.get_running_loop()
        mono = loop.time
        self._last_frame_mono = mono()
        log.info("feed connected", feed=self.name, url=self.url, connects=h.connects)
        watchdog = asyncio.create_task(self._watch(ws))
        reason = ""
        try:
            if self._marker(ts, {"event": "connected", "url": self.url}) and await self._send_subscriptions(ws):
                recv, on_frame = ws.recv, self._on_frame
                while True:
                    raw = await recv(decode=False)
                    ts = now()
                    self._last_frame_mono = mono()
                    h.messages += 1
                    h.bytes += len(raw)
                    h.last_message_ns = ts
                    try:
                        on_frame(ts, raw)
                    except Exception as exc:
                        self._callback_failed("on_frame", exc)
                        break
        except ConnectionClosed as exc:
            reason = self._closed_reason(exc)
        finally:
            watchdog.cancel()
            if ws.state is not State.CLOSED:
                await ws.close(CloseCode.INTERNAL_ERROR if self._callback_fault else CloseCode.NORMAL_CLOSURE)
            self._ws = None
            h.connected = False
            h.disconnects += 1
            reason = self._fault or reason or "closed"
            log.info("feed disconnected", feed=self.name, url=self.url, reason=reason, disconnects=h.disconnects)
            self._marker(now(), {"event": "disconnected", "reason": reason})

    async def _send_subscriptions(self, ws: ClientConnection) -> bool:
        """Send every frame `subscribe()` gives for this connection; False when the callback failed."""
        try:
            frames = [_encode(f) for f in self._subscribe()]
        except Exception as exc:
            self._callback_failed("subscribe", exc)
            return False
        for data in frames:
            await ws.send(data, text=True)
        return True

    def _marker(self, ts: int, marker: dict[str, Any]) -> bool:
        """Hand a connection event to `on_marker`; False (counted, logged) when it raised."""
        try:
            self._on_marker(ts, marker)
        except Exception as exc:
            self._callback_failed("on_marker", exc)
            return False
        return True

    def _callback_failed(self, which: str, exc: Exception) -> None:
        """Count and log a caller's callback that raised; the connection is then reopened."""
        self.callback_errors += 1
        self._callback_fault = True
        self._fault = self._fault or f"{which} raised {_describe(exc)}"
        log.error("feed callback raised; reconnecting", feed=self.name, callback=which, error=_describe(exc),
                  callback_errors=self.callback_errors, exc_info=exc)

    def _closed_reason(self, exc: ConnectionClosed) -> str:
        """Say why the connection ended, counting the faults that have their own counter."""
        ours = exc.sent if exc.sent is not None and (exc.rcvd is None or not exc.rcvd_then_sent) else None
        code = ours.code if ours is not None else None
        if code == CloseCode.MESSAGE_TOO_BIG:
            self.oversize_frames += 1
            log.error("feed frame larger than max_frame_bytes; reconnecting", feed=self.name,
                      max_frame_bytes=self._max_frame, detail=str(exc))
            return f"frame larger than max_frame_bytes={self._max_frame}: {exc}"
        if code == CloseCode.INTERNAL_ERROR and ours is not None and "ping" in ours.reason:
            self.ping_timeouts += 1
            return f"keepalive ping not answered within {self._ping_timeout:g} s: {exc}"
        return f"connection closed: {exc}"

    async def _watch(self, ws: ClientConnection) -> None:
        """Close the connection once no frame has come for `stale_after_s` (connected but silent)."""
        loop = asyncio.get_running_loop()
        while True:
            delay = self._last_frame_mono + self._stale_after - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            self.health.stale_reconnects += 1
            self._fault = self._fault or f"stale: no frame for {self._stale_after:g} s"
            log.warning("feed silent; reconnecting", feed=self.name, url=self.url, stale_after_s=self._stale_after,
                        stale_reconnects=self.health.stale_reconnects)
            await ws.close(CloseCode.NORMAL_CLOSURE, "no data")
            return

    async def _pause(self, delay: float) -> None:
        """Sleep `delay` seconds, or less if `close()` is called meanwhile."""
        try:
            async with asyncio.timeout(delay):
                await self._wake.wait()
        except TimeoutError:
            pass


def _encode(frame: Frame) -> str | bytes:
    """A frame as sent: str and bytes as they are, anything else as orjson."""
    if isinstance(frame, str | bytes):
        return frame
    return orjson.dumps(frame)


def _describe(exc: BaseException) -> str:
    """An exception as `Type: message`, for logs and markers."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
