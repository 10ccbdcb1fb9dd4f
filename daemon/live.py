"""A live session: the venue feed, the recorder and the trading path on one event loop (`depthd run`,
`depthd record`).

Every message a feed receives goes, in the same loop step and in receive order, to the recorder (raw
bytes, receive time) and through the FeedRouter into the engine, with the LiveClock pinned to its
receive time, so a replay of the recording takes the same decisions (DESIGN: one path). The
adapter's requests (a snapshot, a resubscription) go back to the feed. A recorder failure never
stops trading; a malformed message is counted, logged and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

from daemon.app import TradingPath, build_path, instrument_lookup
from daemon.clock import LiveClock
from daemon.config import Settings
from daemon.errors import ConfigError
from daemon.reload import Reloader
from daemon.routing import RESYNC_MARKER, FeedRouter
from daemon.service import Service
from daemon.shutdown import WindDown, wind_down
from daemon.sources.venue_feeds import Feed, build_feed
from daemon.venues import CH_MARKER, DecodeError, ResyncPolicy, SnapshotRequest, adapter_for

if TYPE_CHECKING:
    from daemon.live_broker import LiveBroker
    from daemon.sources.recorder import Recorder

log = structlog.get_logger("depthd.live")

_LATENCY_RING = 1 << 17


@dataclass
class LiveStats:
    """What the session has seen: messages, decode errors by problem, route latency samples."""

    messages: int = 0
    decode_errors: int = 0
    decode_problems: dict[str, int] = field(default_factory=dict)
    started_ns: int = 0
    # receive-to-book-updated latency of the last messages, ns (a ring; `route_latency_ns()` reads it)
    latency: np.ndarray = field(default_factory=lambda: np.zeros(_LATENCY_RING, np.int64))
    latency_n: int = 0


class LiveSession:
    """One daemon's live market data and trading path (`record_only`: record and keep books, no trading)."""

    def __init__(self, settings: Settings, *, record_only: bool = False, record_dir: str | None = None,
                 config_path: str | None = None) -> None:
        feed = settings.feed
        if not feed.symbols:
            raise ConfigError("feed.symbols: list the symbols to subscribe to")
        if not record_only and settings.daemon.mode == "replay":
            raise ConfigError("daemon.mode: `depthd run` trades 'paper' or 'live'; 'replay' is `depthd replay`")
        self.settings = settings
        self.record_only = record_only
        self.clock = LiveClock()
        self.path: TradingPath = build_path(settings, self.clock, feed.symbols)
        if record_only:
            self.path.engine.detach_trading()
        self.adapter = adapter_for(feed.venue, instrument_lookup(settings, {}))
        if hasattr(self.adapter, "policy"):
            self.adapter.policy = ResyncPolicy(feed.max_resyncs, int(feed.resync_window_s * 1e9))
        self.router = FeedRouter(self.path.engine, self.adapter, feed.symbols)
        self._syncs = self.path.engine.syncs
        self.path.monitor.feeds.append(self.adapter.health)
        self.stats = LiveStats()
        self.recorder: Recorder | None = None
        if record_only or settings.record.enabled:
            from daemon.sources.recorder import Recorder

            rec = settings.record
            self.recorder = Recorder(record_dir or rec.dir, feed.venue, list(feed.symbols), now=self.clock.now,
                                     rotate_s=rec.rotate_minutes * 60, max_bytes=rec.max_file_mb << 20,
                                     level=rec.zstd_level, flush_interval_s=rec.flush_interval_ms / 1000,
                                     header_extra={"instance": settings.daemon.instance, "source": "live"},
                                     on_rotate=self._on_rotate)
        self.feed: Feed = build_feed(feed, self.adapter, self.on_message, self.clock.now)
        self.journal = None
        self.recovery_report: dict[str, Any] = {}
        self.live_broker: LiveBroker | None = None
        self._snapshot_timer: Any = None
        if settings.journal.path and not record_only:
            from daemon.journal import Journal
            from daemon.journal.session import attach_paper, begin

            self.journal = Journal.open(settings.journal.path)
            self.recovery_report, self._snapshot_timer = begin(
                self.path, self.journal, settings.execution.client_id_prefix, settings.journal.snapshot_s)
            if settings.broker.kind == "paper":
                self.recovery_report = attach_paper(self.path, self.journal, self.recovery_report)
            else:
                from daemon.live_broker import LiveBroker

                self.live_broker = LiveBroker(settings, self.path, self.journal)
        self.control_url: str | None = None
        self.service: Service | None = None
        # SIGHUP: re-read the config file and apply its safe parts (`reload`)
        self.reloader = Reloader(config_path, settings, self.path) if config_path else None
        self.wind_down: WindDown | None = None
        self._last_problem = ""
        self.books_at_stop: dict[str, dict[str, Any]] = {}

    def _on_rotate(self, path: str) -> None:
        """A new recording file: on Binance, ask for a checkpoint snapshot of every symbol, so the file
        replays on its own (live, the adapter ignores a snapshot it did not await)."""
        assert self.recorder is not None
        if len(self.recorder.files) > 1 and self.adapter.venue in ("binance", "binance_usdm"):
            for symbol in self.settings.feed.symbols:
                self.feed.request(SnapshotRequest(symbol, "checkpoint"))

    # --- the per-message path ---------------------------------------------------------------------

    def on_message(self, ts_recv: int, channel: str, symbol: str, msg: Any) -> None:
        """Record one message, route it through the path at its receive time, pass on the adapter's requests."""
        if self.recorder is not None:
            self.recorder.write(ts_recv, channel, symbol, msg)
        stats = self.stats
        stats.messages += 1
        clock = self.clock
        clock.pin(ts_recv)
        try:
            self.router.route(ts_recv, symbol, channel, msg)
        except DecodeError as exc:
            self._decode_failed(channel, symbol, exc)
        finally:
            clock.release()
        stats.latency[stats.latency_n & (_LATENCY_RING - 1)] = time.time_ns() - ts_recv
        stats.latency_n += 1
        if symbol:
            sync = self._syncs.get(symbol)
            if sync is not None and sync.live and not sync.book.top_trusted():
                # the book's top left the snapshot's depth: rebuild it from a new snapshot, and record
                # that decision, so a replay of the recording rebuilds it at the same point
                self.on_message(ts_recv, CH_MARKER, "", {"event": RESYNC_MARKER, "symbol": symbol,
                                                         "reason": "beyond_trusted_depth"})
        requests = self.router.take_requests()
        for req in requests:
            log.info("feed_request", venue=self.adapter.venue, request=type(req).__name__, symbol=req.symbol,
                     reason=req.reason)
            self.feed.request(req)

    def _decode_failed(self, channel: str, symbol: str, exc: DecodeError) -> None:
        """Count a bad message by its kind of problem; log the first of a run of the same problem."""
        self.stats.decode_errors += 1
        problem = str(exc).split(":")[0][:60]
        self.stats.decode_problems[problem] = self.stats.decode_problems.get(problem, 0) + 1
        if problem != self._last_problem:
            log.warning("bad_message", venue=self.adapter.venue, channel=channel, symbol=symbol, problem=str(exc))
        self._last_problem = problem

    def book_summary(self) -> dict[str, dict[str, Any]]:
        """Each symbol's book state, depth and trusted depth now."""
        out = {}
        for sym, sync in sorted(self.path.engine.syncs.items()):
            nb, na = sync.book.trusted_levels()
            out[sym] = {"state": str(sync.state), "bids": sync.book.n_bid, "asks": sync.book.n_ask,
                        "trusted_bids": nb, "trusted_asks": na}
        return out

    def route_latency_ns(self) -> np.ndarray:
        """The receive-to-book-updated latencies kept (the last 131,072 messages), ns."""
        n = min(self.stats.latency_n, _LATENCY_RING)
        return self.stats.latency[:n].copy()

    # --- running ----------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until `stop` is set (or forever): feed, recorder flushes, control endpoint."""
        stop = stop or asyncio.Event()
        self.stats.started_ns = self.clock.now()
        health = self.adapter.health
        health.started_ns = self.stats.started_ns
        health.grace_ns = int(self.settings.feed.stale_after_s * 1e9)  # starting or reconnecting is not down
        self.clock.start()
        for symbol in self.settings.feed.symbols:
            self.path.monitor.register(symbol, self.stats.started_ns)
        self.service = self._service()
        try:
            # first the service: a bad token fails before any venue is touched, and /health and /ready
            # answer while the broker reconciles
            await self.service.start()
            self.control_url = self.service.url
            if self.live_broker is not None:
                await self.live_broker.start()  # reconciled with the venue before the first order
        except BaseException:  # nothing traded yet: release the connections and files, then say why
            if self.live_broker is not None:
                await self.live_broker.close()
            if self.recorder is not None:
                self.recorder.close()
            if self.journal is not None:
                self.journal.close()
            await self.service.stop("start failed")
            raise
        tasks = [asyncio.create_task(self.feed.run(), name="feed")]
        if self.recorder is not None:
            tasks.append(asyncio.create_task(self._flush_recorder(), name="recorder-flush"))
        waiter = asyncio.create_task(stop.wait(), name="stop")
        try:
            done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not waiter and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            waiter.cancel()
            self.service.notifier.stopping("stopping: cancelling orders" if self.settings.daemon.on_stop ==
                                           "cancel" else "stopping")
            if not self.record_only:  # feed and broker still run while the cancels land
                try:
                    self.wind_down = await wind_down(self.path.engine, self.settings.daemon.on_stop == "cancel",
                                                     self.settings.daemon.stop_wait_s)
                except Exception:  # the connections and the journal are closed below whatever happened
                    log.exception("wind_down_failed")
            self.books_at_stop = self.book_summary()  # closing the feed resets the books
            await self.feed.close()
            if self.live_broker is not None:
                await self.live_broker.close()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self.recorder is not None:
                self.recorder.close()
            if self.journal is not None:
                from daemon.journal.session import snapshot_positions

                self._snapshot_timer.cancel()
                snapshot_positions(self.journal, self.path.portfolio, self.clock.now())
                self.journal.close()
            await self.service.stop()

    async def _flush_recorder(self) -> None:
        assert self.recorder is not None
        interval = self.settings.record.flush_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            self.recorder.flush()

    def reload(self) -> None:
        """Re-read the config file (SIGHUP): risk limits and log level apply, the rest waits for a restart."""
        if self.reloader is not None:
            self.reloader.reload()

    def _service(self) -> Service:
        """The ops side: HTTP endpoint, metrics, probes, loop monitor, systemd notifications."""
        lb = self.live_broker
        connected = None if lb is None else (lambda: lb.gateway is not None and lb.gateway.connected)
        # the journal is recovered once its session began (paper) and, live, the startup reconciliation ran
        recovered = None if self.journal is None else (lambda: lb is None or lb.last_result is not None)
        return Service(self.settings, self.path, "record" if self.record_only else self.settings.daemon.mode,
                       feeds=[self.adapter.health], recorder=self.recorder, journal=self.journal,
                       broker_connected=connected, journal_recovered=recovered, reloader=self.reloader, live=True)
