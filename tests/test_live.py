"""The live session against a fake Binance on loopback (real websocket and REST clients): the book stays
equal to the venue's true book through every fault, no intent leaves a book that is not LIVE, and a
recorded live session replays to the same book states and features."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest

from daemon.features import FeatureSample
from daemon.replay import Replay
from daemon.sources import RecordingReader
from tests.fakes.binance_venue import FakeBinance
from tests.live_harness import LiveHarness, live_settings

SYM = "BTCUSDT"


async def start(tmp_path: Path, market: str = "spot", **sections: dict[str, Any]) -> tuple[FakeBinance, Any]:
    fake = FakeBinance(market, [SYM], source="synthetic", seed=3)
    await fake.start()
    venue = "binance" if market == "spot" else "binance_usdm"
    settings = live_settings(tmp_path, venue, [SYM], fake.ws_url, fake.rest_url, **sections)
    return fake, settings


@pytest.mark.parametrize("market", ["spot", "usdm"])
async def test_the_book_follows_the_venue_and_trades_only_while_live(tmp_path: Path, market: str) -> None:
    fake, settings = await start(tmp_path, market)
    async with fake, LiveHarness(fake, settings) as h:
        await h.settle(SYM)
        for _ in range(5):
            await fake.push(100)
            await h.settle(SYM, push=1)
        health = h.session.adapter.health
        assert health.connected and health.symbol(SYM).gaps == 0
        sync = h.sync(SYM)
        assert sync.quote_checks > 100 and sync.quote_mismatches == 0, "bookTicker agrees with the book"
        assert h.submitted, "the strategy traded while the book was LIVE"
        assert h.intents_on_untradeable_books() == []


async def test_a_dropped_frame_is_a_gap_and_the_symbol_resyncs(tmp_path: Path) -> None:
    fake, settings = await start(tmp_path)
    async with fake, LiveHarness(fake, settings) as h:
        await h.settle(SYM)
        await fake.push(5)
        await h.settle(SYM, push=1)
        calls = len(fake.rest_calls)
        fake.drop_next(1)
        await fake.push(30)
        await h.settle(SYM)
        sh = h.session.adapter.health.symbol(SYM)
        assert sh.gaps == 1 and sh.resyncs == 1
        assert len(fake.rest_calls) == calls + 1, "one new snapshot"
        assert h.sync(SYM).resets["gap"] == 1
        assert h.intents_on_untradeable_books() == []


async def test_a_disconnect_reconnects_resubscribes_and_rebuilds(tmp_path: Path) -> None:
    fake, settings = await start(tmp_path)
    async with fake, LiveHarness(fake, settings) as h:
        await h.settle(SYM)
        fake.disconnect()
        await h.until(lambda: h.session.adapter.health.disconnects == 1, what="the disconnect")
        await h.settle(SYM)
        health = h.session.adapter.health
        assert health.connects == 2 and health.connected
        assert h.sync(SYM).resets["disconnect"] == 1
        assert h.intents_on_untradeable_books() == []


async def test_malformed_frames_are_counted_and_change_nothing(tmp_path: Path) -> None:
    fake, settings = await start(tmp_path)
    async with fake, LiveHarness(fake, settings) as h:
        await h.settle(SYM)
        fake.send_malformed()
        await h.until(lambda: h.session.stats.decode_errors >= 2, what="two bad frames")
        assert h.in_step(SYM), "a bad frame leaves the book as it was"
        await fake.push(20)
        await h.settle(SYM, push=1)
        assert h.session.adapter.health.symbol(SYM).gaps == 0


async def test_a_snapshot_older_than_the_buffered_events_is_refused_and_fetched_again(tmp_path: Path) -> None:
    fake, settings = await start(tmp_path)
    async with fake, LiveHarness(fake, settings) as h:
        await h.settle(SYM)
        fake.stale_snapshot_next()
        fake.drop_next(1)
        await fake.push(30)
        await h.settle(SYM)
        sh = h.session.adapter.health.symbol(SYM)
        assert sh.stale_snapshots >= 1
        assert h.intents_on_untradeable_books() == []


async def test_429_is_honoured_with_retry_after(tmp_path: Path) -> None:
    fake, settings = await start(tmp_path)
    async with fake, LiveHarness(fake, settings) as h:
        await h.settle(SYM)
        fake.rate_limit_next(1, retry_after_s=0.3)
        fake.drop_next(1)
        await fake.push(30)
        await h.settle(SYM)
        statuses = [status for _, _, status in fake.rest_calls]
        assert statuses.count(429) == 1 and statuses[-1] == 200
        assert h.session.adapter.health.rest_errors["rate_limited"] == 1
        assert h.intents_on_untradeable_books() == []


async def test_a_stalled_connection_is_dropped_by_the_watchdog(tmp_path: Path) -> None:
    fake, settings = await start(tmp_path)
    async with fake, LiveHarness(fake, settings) as h:
        await h.settle(SYM)
        fake.stall()
        await fake.push(10)
        await h.until(lambda: h.session.adapter.health.stale_reconnects >= 1, timeout=5, what="the watchdog")
        fake.resume()
        await h.settle(SYM)
        assert h.intents_on_untradeable_books() == []


async def test_a_crossed_book_is_resynchronised(tmp_path: Path) -> None:
    fake, settings = await start(tmp_path)
    async with fake, LiveHarness(fake, settings) as h:
        await h.settle(SYM)
        fake.cross_book_next()
        await fake.push(20)
        await h.settle(SYM)
        assert h.sync(SYM).crossed >= 1 and h.session.adapter.health.symbol(SYM).resyncs >= 1
        assert h.intents_on_untradeable_books() == []


def _same(a: FeatureSample, b: FeatureSample) -> bool:
    return (a.symbol, a.ts, a.live) == (b.symbol, b.ts, b.live) and all(
        x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a.values, b.values, strict=True))


async def test_a_recorded_live_session_replays_to_the_same_books_and_features(tmp_path: Path) -> None:
    fake, settings = await start(tmp_path, record={"enabled": True, "dir": str(tmp_path / "rec")})
    live_states: list[tuple] = []
    live_samples: list[FeatureSample] = []
    async with fake, LiveHarness(fake, settings) as h:
        watch_books(h.session.router, h.session.path.engine, live_states)
        h.session.path.engine.sample_sinks.append(live_samples.append)
        await h.settle(SYM)
        for fault in (lambda: fake.drop_next(1), fake.disconnect, fake.send_malformed, lambda: None):
            fault()
            await fake.push(40)
            await h.settle(SYM)
        fake.start_stream(400)
        await asyncio.sleep(1.0)
        await fake.stop_stream()
        await h.settle(SYM)
    files = h.session.recorder.files
    assert files and h.session.recorder.errors == 0
    assert RecordingReader(files[0]).venue == "binance"

    replay_settings = settings.model_copy(update={"daemon": settings.daemon.model_copy(update={"mode": "replay"})})
    rp = Replay(replay_settings, files, skip_bad=True)
    replay_states: list[tuple] = []
    replay_samples: list[FeatureSample] = []
    watch_books(rp.routers[files[0]], rp.path.engine, replay_states)
    rp.path.engine.sample_sinks.append(replay_samples.append)
    rp.run()

    assert len(replay_states) == len(live_states) > 200
    assert replay_states == live_states
    last = rp.stats.last_ts
    live_samples = [s for s in live_samples if s.ts <= last]
    assert len(replay_samples) == len(live_samples) > 20
    assert all(_same(a, b) for a, b in zip(live_samples, replay_samples, strict=True))
    assert rp.stats.bad_lines == h.session.stats.decode_errors == 2


def watch_books(router: Any, engine: Any, out: list[tuple]) -> None:
    """Append (symbol, state, seq, top 5 levels) of every book after each routed message."""
    route_events = router.route_events

    def wrapped(events: list) -> None:
        route_events(events)
        for sym in sorted(engine.syncs):
            sync = engine.syncs[sym]
            top = tuple(tuple(int(x) for x in side) for side in sync.book.top(5))
            out.append((sym, str(sync.state), sync.last_seq, top))

    router.route_events = wrapped


async def test_okx_checksum_mismatch_resubscribes_and_rebuilds(tmp_path: Path) -> None:
    from tests.fakes.okx_venue import FakeOkx

    sym = "BTC-USDT"
    fake = FakeOkx([sym], source="synthetic", seed=5)
    await fake.start()
    settings = live_settings(tmp_path, "okx", [sym], fake.ws_url)
    async with fake, LiveHarness(fake, settings) as h:
        await h.settle(sym)
        sync = h.sync(sym)
        checks = sync.checksum_checks
        await fake.push(50)
        await h.settle(sym, push=1)
        assert sync.checksum_checks > checks and sync.checksum_failures == 0
        fake.corrupt_next()
        await fake.push(20)
        await h.until(lambda: sync.checksum_failures == 1, what="the checksum mismatch")
        await h.settle(sym)
        assert h.session.adapter.health.symbol(sym).resyncs == 1
        fake.disconnect()
        await h.until(lambda: h.session.adapter.health.disconnects == 1, what="the disconnect")
        await h.settle(sym)
        assert sync.checksum_failures == 1
        assert h.intents_on_untradeable_books() == []


async def test_a_gap_resyncs_only_its_own_symbol_on_a_combined_stream(tmp_path: Path) -> None:
    other = "ETHUSDT"
    fake = FakeBinance("spot", [SYM, other], source="synthetic", seed=4)
    await fake.start()
    settings = live_settings(tmp_path, "binance", [SYM, other], fake.ws_url, fake.rest_url)
    async with fake, LiveHarness(fake, settings) as h:
        for sym in (SYM, other):
            await h.settle(sym)
        await fake.push(20)
        for sym in (SYM, other):
            await h.settle(sym, push=1)
        fake.drop_next(1)
        await fake.push(1, symbol=SYM)
        await fake.push(20, symbol=SYM)
        await h.settle(SYM, push=1)
        await h.settle(other, push=1)
        assert h.sync(SYM).resets == {"gap": 1}
        assert h.sync(other).resets == {}, "the other symbol on the connection kept its book"
        assert h.session.adapter.health.connects == 1


async def test_a_symbol_that_keeps_failing_is_untradeable_and_risk_is_told(tmp_path: Path) -> None:
    fake, settings = await start(tmp_path, feed={"max_resyncs": 2, "resync_window_s": 60.0},
                                 risk={"triggers": {"feed_down": {"enabled": True, "threshold": 0}}})
    async with fake, LiveHarness(fake, settings) as h:
        await h.settle(SYM)
        for _ in range(3):
            await fake.push(5)
            await h.settle(SYM, push=1)
            fake.drop_next(1)
            await fake.push(20)
            await h.settle(SYM)
        sh = h.session.adapter.health.symbol(SYM)
        assert sh.untradeable and "3 resyncs" in sh.untradeable_reason
        assert h.sync(SYM).live and not h.sync(SYM).tradeable, "in sync again, but given up on"
        monitor = h.session.path.monitor
        monitor.evaluate(h.session.clock.now())
        assert monitor.last_facts.feed_problem and "untradeable" in monitor.last_facts.feed_problem
        assert str(h.session.path.state.state) == "REDUCING"
        n = len(h.submitted)
        await fake.push(50)
        await asyncio.sleep(0.3)
        assert len(h.submitted) == n and h.intents_on_untradeable_books() == []


async def test_a_top_that_leaves_the_snapshot_depth_is_rebuilt_and_replays_the_same(tmp_path: Path) -> None:
    fake, settings = await start(tmp_path, feed={"snapshot_limit": 5},
                                 record={"enabled": True, "dir": str(tmp_path / "rec")})
    live_states: list[tuple] = []
    async with fake, LiveHarness(fake, settings) as h:
        watch_books(h.session.router, h.session.path.engine, live_states)
        await h.settle(SYM, trusted_only=True)
        deeper = False
        for _ in range(30):
            await fake.push(20)
            await h.settle(SYM, push=1, trusted_only=True)
            book = h.sync(SYM).book
            deeper = deeper or book.trusted_levels() != (book.n_bid, book.n_ask)
            if h.sync(SYM).resets["beyond_trusted_depth"] >= 1 and deeper:
                break
        assert deeper, "levels beyond the 5-level snapshot are kept but not trusted"
        assert h.sync(SYM).resets["beyond_trusted_depth"] >= 1, "the top walked out of the snapshot depth"
        assert h.intents_on_untradeable_books() == []
    files = h.session.recorder.files
    replay_settings = settings.model_copy(update={"daemon": settings.daemon.model_copy(update={"mode": "replay"})})
    rp = Replay(replay_settings, files)
    replay_states: list[tuple] = []
    watch_books(rp.routers[files[0]], rp.path.engine, replay_states)
    rp.run()
    assert replay_states == live_states
    assert rp.path.engine.syncs[SYM].resets == h.sync(SYM).resets


@pytest.mark.parametrize("market", ["spot", "usdm"])
async def test_real_recorded_data_through_gaps_and_disconnects(tmp_path: Path, shared_data: Path, market: str) -> None:
    fake = FakeBinance(market, [SYM], source="recorded", data_dir=shared_data)
    await fake.start()
    venue = "binance" if market == "spot" else "binance_usdm"
    lot = 0.00000001 if market == "spot" else 0.001  # spot book sizes come with 8 decimals
    tick = 0.01 if market == "spot" else 0.1
    settings = live_settings(tmp_path, venue, [SYM], fake.ws_url, fake.rest_url,
                             instruments={SYM: {"tick_size": tick, "lot_size": lot}})
    async with fake, LiveHarness(fake, settings) as h:
        await h.settle(SYM, trusted_only=True)
        for fault in (lambda: fake.drop_next(1), fake.disconnect, lambda: fake.drop_next(3), lambda: None):
            await fake.push(50)
            await h.settle(SYM, push=1, trusted_only=True)
            fault()
            await fake.push(30)
            await h.settle(SYM, push=5, trusted_only=True)
        sync = h.sync(SYM)
        assert sync.resets["gap"] == 2 and sync.resets["disconnect"] == 1
        assert sync.quote_checks > 50 and sync.quote_mismatches == 0
        assert sum(sync.book.trusted_levels()) > 1000, "the real snapshot's depth is trusted"
        assert h.intents_on_untradeable_books() == []


async def test_each_rotated_binance_file_replays_on_its_own_from_its_checkpoint_snapshot(tmp_path: Path) -> None:
    fake, settings = await start(tmp_path, record={"enabled": True, "dir": str(tmp_path / "rec"),
                                                   "rotate_minutes": 0.01})  # a new file every 0.6 s
    async with fake, LiveHarness(fake, settings) as h:
        await h.settle(SYM)
        while len(h.session.recorder.files) < 3:
            await fake.push(10)
            await asyncio.sleep(0.05)
        await h.settle(SYM, push=1)
        final = h.book_levels(SYM)
    files = h.session.recorder.files
    replay_settings = settings.model_copy(update={"daemon": settings.daemon.model_copy(update={"mode": "replay"})})
    rp = Replay(replay_settings, [files[1]])  # the middle file alone: no connect marker, a checkpoint snapshot
    rp.run()
    sync = rp.path.engine.syncs[SYM]
    assert sync.state_counts["LIVE"] > 0, "the checkpoint snapshot started the book"
    rp = Replay(replay_settings, files[1:])
    states: list[tuple] = []
    watch_books(rp.routers[files[1]], rp.path.engine, states)
    rp.run()
    last_live = [s for s in states if s[1] == "LIVE"][-1]  # the recording ends with the session's disconnect
    inst = rp.path.instruments[SYM]
    top = [[(inst.price(p), inst.qty(q)) for p, q in zip(side_px, side_qty, strict=True)]
           for side_px, side_qty in ((last_live[3][0], last_live[3][1]), (last_live[3][2], last_live[3][3]))]
    assert top == [[(float(p), float(q)) for p, q in final[0][:5]], [(float(p), float(q)) for p, q in final[1][:5]]]
