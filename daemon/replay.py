"""Replay: recorded sessions fed through the identical path, with the ReplayClock and PaperBroker.

Inputs are merged by receive time; each record is decoded by its venue's adapter and handed to the
engine after the clock has moved to its receive time. A malformed line stops the replay with an
InputError naming file and line, unless `skip_bad`, which counts, logs and skips it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from daemon.app import TradingPath, build_path, instrument_lookup
from daemon.clock import ReplayClock
from daemon.config import Settings
from daemon.errors import InputError
from daemon.features import FeatureSample
from daemon.routing import FeedRouter
from daemon.sources import RawRecord, merge_by_receive_time, open_replay_input
from daemon.venues import DecodeError, adapter_for
from daemon.venues.base import ADAPTERS

if TYPE_CHECKING:
    from daemon.service import Service

log = structlog.get_logger("depthd.replay")

_YIELD_EVERY = 20_000
_NUMBER = re.compile(r"\d+(\.\d+)?(e-?\d+)?")


@dataclass
class ReplayStats:
    """What a replay saw besides the engine's own counts (bad lines, wall time)."""

    messages: int = 0  # routed along the path (bad lines excluded)
    bad_lines: int = 0
    bad_reasons: dict[str, int] = field(default_factory=dict)
    first_ts: int | None = None
    last_ts: int | None = None
    wall_seconds: float = 0.0


@dataclass
class ReplayResult:
    inputs: list[str]
    venues: dict[str, str]
    path: TradingPath
    stats: ReplayStats


class Replay:
    """One replay session over a list of input files (`trade=False`: sample features, send no orders)."""

    def __init__(self, settings: Settings, inputs: list[str], skip_bad: bool = False,
                 progress: Callable[[int], None] | None = None,
                 sample_sink: Callable[[FeatureSample], None] | None = None, trade: bool = True) -> None:
        self.settings = settings
        self.inputs = inputs
        self.skip_bad = skip_bad or settings.replay.skip_bad
        self.stats = ReplayStats()
        self._progress = progress
        self.clock = ReplayClock()
        self.venues: dict[str, str] = {}
        self.control_url: str | None = None
        self.service: Service | None = None
        streams, symbols = self._open_inputs()
        self.path = build_path(settings, self.clock, symbols)
        if sample_sink is not None:
            self.path.engine.sample_sinks.append(sample_sink)
        if not trade:
            # features only: the same book and feature calculator, no strategy, model or orders
            # (in a replay the orders cannot change the market data, so the samples are the same)
            self.path.engine.detach_trading()
        self.routers = self._make_routers(symbols)
        self._records = merge_by_receive_time(streams)

    def _open_inputs(self) -> tuple[list[Iterator[RawRecord]], list[str]]:
        streams: list[Iterator[RawRecord]] = []
        symbols: list[str] = []
        symbol = self.settings.replay.symbol or None
        on_bad = self._on_bad if self.skip_bad else None
        self._symbols_of: dict[str, list[str]] = {}
        for path in self.inputs:
            venue, syms, records = open_replay_input(path, symbol, on_bad)
            if venue not in ADAPTERS:
                raise InputError(str(path), 1, f"no adapter for venue {venue!r}; known: {', '.join(sorted(ADAPTERS))}")
            self.venues[path] = venue
            self._symbols_of[path] = syms
            symbols.extend(s for s in syms if s not in symbols)
            streams.append(records)
        return streams, symbols

    def _make_routers(self, symbols: list[str]) -> dict[str, FeedRouter]:
        """One adapter and router per venue, shared by its files: a session split over several files
        (hourly recordings, a day's rotation) runs on one set of sync state machines."""
        by_venue: dict[str, FeedRouter] = {}
        routers: dict[str, FeedRouter] = {}
        for path, venue in self.venues.items():
            router = by_venue.get(venue)
            if router is None:
                adapter = adapter_for(venue, instrument_lookup(self.settings, {}))
                router = by_venue[venue] = FeedRouter(self.path.engine, adapter, drop_requests=True)
                self.path.monitor.feeds.append(adapter.health)
            router.wire(self._symbols_of[path])
            routers[str(path)] = router
        self.by_venue = by_venue
        return routers

    def _on_bad(self, err: InputError) -> None:
        """Count a skipped line under its kind of problem (numbers masked, so the kinds stay few)."""
        self.stats.bad_lines += 1
        key = _NUMBER.sub("N", err.problem.split(":")[0])[:60]
        self.stats.bad_reasons[key] = self.stats.bad_reasons.get(key, 0) + 1
        log.warning("bad_line", file=err.path, line=err.line, problem=err.problem)

    def _decode_failed(self, rec: RawRecord, exc: DecodeError) -> None:
        err = InputError(rec.path, rec.line, str(exc))
        if not self.skip_bad:
            raise err from None
        self._on_bad(err)

    def _feed(self, rec: RawRecord) -> None:
        router = self.routers[rec.path]
        try:
            events = router.decode(rec.ts_recv, rec.symbol, rec.channel, rec.msg)
        except DecodeError as exc:
            router.decode_errors += 1
            self._decode_failed(rec, exc)
            return
        self.stats.messages += 1
        self.clock.advance_to(rec.ts_recv)
        router.route_events(events)

    def run(self) -> ReplayResult:
        """Replay as fast as possible, without an event loop.

        This is `_feed` unrolled into the loop with everything in locals: it is the replay's hot path.
        """
        started = time.perf_counter()
        stats = self.stats
        routers = self.routers
        single = len({id(r) for r in routers.values()}) == 1
        only = next(iter(routers.values())) if single else None
        advance = self.clock.advance_to
        progress = self._progress
        n = 0
        for rec in self._records:
            if n == 0:
                stats.first_ts = rec.ts_recv
            n += 1
            if progress is not None and n % 5000 == 0:
                progress(5000)
            router = only or routers[rec.path]
            try:
                decode = router.decode if rec.channel == "marker" else router.adapter.decode
                events = decode(rec.ts_recv, rec.symbol, rec.channel, rec.msg)
            except DecodeError as exc:
                router.decode_errors += 1
                self._decode_failed(rec, exc)
                continue
            stats.messages += 1
            advance(rec.ts_recv)
            router.route_events(events)
        return self._finish(n, started)

    async def run_async(self, speed: float = 0.0) -> ReplayResult:
        """Replay on the event loop: as fast as possible (speed 0, yielding now and then so other
        tasks run) or paced at `speed` times recorded time. A paced replay shortens a feed gap longer
        than `features.pause_after_ms` to that length, so a weekend in a recording does not stall it.
        The session's Service runs beside it (HTTP endpoint if `[control] enabled`, metrics, probes)."""
        from daemon.service import Service

        self.service = Service(self.settings, self.path, "replay")
        await self.service.start()
        self.control_url = self.service.url
        try:
            return await self._run_paced(speed)
        finally:
            await self.service.stop("replay finished")

    async def _run_paced(self, speed: float) -> ReplayResult:
        started = time.perf_counter()
        stats = self.stats
        n = 0
        wall0 = time.monotonic()
        max_gap = self.settings.features.pause_after_ms * 1_000_000
        skipped = 0
        prev_ts = 0
        for rec in self._records:
            if n == 0:
                stats.first_ts = prev_ts = rec.ts_recv
            if speed > 0:
                skipped += max(0, rec.ts_recv - prev_ts - max_gap)
                prev_ts = rec.ts_recv
                due = wall0 + (rec.ts_recv - stats.first_ts - skipped) / 1e9 / speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif n % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
            self._feed(rec)
            n += 1
            if self._progress is not None and n % 5000 == 0:
                self._progress(5000)
        return self._finish(n, started)

    def _finish(self, n: int, started: float) -> ReplayResult:
        self.stats.last_ts = self.clock.now() if n else None
        self.stats.wall_seconds = time.perf_counter() - started
        if self._progress is not None:
            self._progress(n % 5000)
        return ReplayResult([str(p) for p in self.inputs], dict(self.venues), self.path, self.stats)


def replay_files(settings: Settings, inputs: list[str | Path], skip_bad: bool = False) -> ReplayResult:
    """Convenience for tests and tools: replay these files to the end, as fast as possible."""
    return Replay(settings, [str(p) for p in inputs], skip_bad=skip_bad).run()
