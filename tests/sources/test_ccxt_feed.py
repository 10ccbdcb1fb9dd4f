"""CcxtFeed with the real ccxt pro okx client against a loopback OKX that serves real recorded frames.

Every message the feed hands over goes through CcxtAdapter into a BookSync'd Book at once, and that
Book is compared with ccxt's own order book right there, so "equal after every message" is checked
at each step. The fake is stepped one frame at a time: a frame is sent only after the feed has
delivered what the previous one produced.
"""

from __future__ import annotations

import asyncio
import copy
import random
from pathlib import Path

import ccxt
import numpy as np
import pytest

from daemon.book.book import Book
from daemon.book.sync import BookSync
from daemon.config import FeedSettings
from daemon.errors import ConfigError
from daemon.events import BookDelta, BookReset, BookSnapshot, Side, Trade
from daemon.instruments import Instrument
from daemon.sources.backoff import Backoff
from daemon.sources.ccxt_feed import CcxtFeed, build_ccxt_feed
from daemon.sources.recording import RecordingReader, RecordingWriter
from daemon.venues.ccxt_book import CcxtAdapter
from daemon.venues.health import FeedHealth
from tests.fakes.ccxt_okx import MARKETS, FakeOkx, okx_exchange, recorded_frames, with_seq

SYM, INST_ID = "BTC/USDT", "BTC-USDT"
INST = Instrument(SYM, 0.1, 1e-8)
GUARD_S = 10  # a hang guard only: every wait below normally ends in milliseconds


def fast_backoff() -> Backoff:
    return Backoff(0.001, 0.01, rng=random.Random(1), floor_s=0.0)


class Harness:
    """The feed's sink: decode at once, apply to a Book, compare with ccxt's book, queue the result."""

    def __init__(self, exchange, limit: int | None = None, recorder: RecordingWriter | None = None) -> None:
        self.exchange = exchange
        self.limit = limit
        self.recorder = recorder
        self.adapter = CcxtAdapter(lambda s: INST)
        self.sync = BookSync(Book(SYM))
        self.queue: asyncio.Queue = asyncio.Queue()
        self.events: list = []
        self.compared = 0

    def sink(self, ts: int, channel: str, symbol: str, msg) -> None:
        assert symbol == SYM
        if self.recorder is not None:
            self.recorder.write(ts, channel, symbol, msg)
        events = self.adapter.decode(ts, symbol, channel, msg)
        for ev in events:
            if isinstance(ev, BookSnapshot):
                self.sync.on_snapshot(ev)
            elif isinstance(ev, BookDelta):
                self.sync.on_delta(ev)
            elif isinstance(ev, BookReset):
                self.sync.on_reset(ev)
        if channel == "ccxt_book":
            self.assert_equals_ccxt()
        self.events += events
        self.queue.put_nowait((channel, msg, events))

    def assert_equals_ccxt(self) -> None:
        ob = self.exchange.orderbooks[SYM]
        n = self.limit or 10_000
        book = self.sync.book
        assert self.sync.live
        bid_px, bid_qty, ask_px, ask_qty = book.top(n)
        want_bids = np.array(ob["bids"][:n], np.float64).reshape(-1, 2)
        want_asks = np.array(ob["asks"][:n], np.float64).reshape(-1, 2)
        assert bid_px.tolist() == INST.price_to_ticks(want_bids[:, 0]).tolist()
        assert bid_qty.tolist() == INST.qty_to_lots(want_bids[:, 1]).tolist()
        assert ask_px.tolist() == INST.price_to_ticks(want_asks[:, 0]).tolist()
        assert ask_qty.tolist() == INST.qty_to_lots(want_asks[:, 1]).tolist()
        assert (book.n_bid, book.n_ask) == (len(want_bids), len(want_asks))
        self.compared += 1

    async def next(self, channel: str | None = None):
        async with asyncio.timeout(GUARD_S):
            got = await self.queue.get()
        if channel is not None:
            assert got[0] == channel, got
        return got


@pytest.fixture
async def fake():
    server = FakeOkx()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def frames(shared_data: Path) -> list[dict]:
    return recorded_frames(shared_data / "okx_btcusdt" / "OKX.ws.1.0", INST_ID)


async def start(fake: FakeOkx, snapshot: dict, *, limit: int | None = None, trades: bool = True,
                recorder: RecordingWriter | None = None, stale_after_s: float | None = None):
    fake.snapshots[INST_ID] = snapshot
    ex = okx_exchange(fake.url)
    h = Harness(ex, limit, recorder)
    health = FeedHealth("ccxt")
    feed = CcxtFeed(ex, [SYM], sink=h.sink, health=health, limit=limit, trades=trades, backoff=fast_backoff,
                    stale_after_s=stale_after_s)
    task = asyncio.create_task(feed.run())
    async with asyncio.timeout(GUARD_S):
        await fake.wait_subscribed("books", INST_ID)
        if trades:
            await fake.wait_subscribed("trades", INST_ID)
    return feed, task, h, health


async def stop(feed: CcxtFeed, task: asyncio.Task) -> None:
    await feed.close()
    async with asyncio.timeout(GUARD_S):
        await task


def split(frames: list[dict]) -> tuple[dict, list[dict]]:
    """The books snapshot and every frame after it."""
    i = next(i for i, f in enumerate(frames) if f.get("action") == "snapshot")
    return frames[i], frames[i + 1:]


def expected_top5(shared_data: Path) -> tuple[list, list]:
    lines = (shared_data / "okx_btcusdt" / "expected_final_book.txt").read_text().splitlines()
    i = lines.index("final top 5 asks (price qty), best first:")
    asks = [[float(x) for x in ln.split()] for ln in lines[i + 1:i + 6]]
    bids = [[float(x) for x in ln.split()] for ln in lines[i + 7:i + 12]]
    return bids, asks


@pytest.mark.shared_data
async def test_book_equals_ccxts_after_every_frame_of_a_real_okx_session(fake, frames, shared_data, tmp_path) -> None:
    snapshot, rest = split(frames)
    recorder = RecordingWriter(tmp_path / "okx.rec.zst", "ccxt", [SYM])
    feed, task, h, health = await start(fake, snapshot, recorder=recorder)

    _, _, (snap,) = await h.next("ccxt_book")
    assert isinstance(snap, BookSnapshot) and snap.complete and snap.n_levels == 800
    n_trades = 0
    for frame in rest:
        await fake.send(frame)
        channel, _, events = await h.next()
        if frame["arg"]["channel"] == "books":
            assert channel == "ccxt_book"
            sent = {(side, float(p)) for side in ("bids", "asks") for p, *_ in frame["data"][0][side]}
            for ev in events:  # a delta holds only levels the frame touched (and that really changed)
                assert isinstance(ev, BookDelta)
                assert {("bids", INST.price(p)) for p in ev.bid_px} <= sent
                assert {("asks", INST.price(p)) for p in ev.ask_px} <= sent
        else:
            assert channel == "ccxt_trades"
            want = [(INST.tick(float(t["px"])), INST.lot(float(t["sz"])), Side.BUY if t["side"] == "buy" else Side.SELL,
                     int(t["ts"]) * 1_000_000) for t in frame["data"]]
            assert [(e.price, e.qty, e.side, e.ts_venue) for e in events] == want
            assert all(isinstance(e, Trade) for e in events)
            n_trades += len(events)
    await stop(feed, task)

    assert h.compared == 98 and n_trades == sum(len(f["data"]) for f in rest if f["arg"]["channel"] == "trades")
    bids, asks = expected_top5(shared_data)
    top = h.sync.book.top(5)
    assert [[INST.price(p), INST.qty(q)] for p, q in zip(top[0], top[1], strict=True)] == bids
    assert [[INST.price(p), INST.qty(q)] for p, q in zip(top[2], top[3], strict=True)] == asks
    assert health.connects == 1 and health.messages == 1 + len(rest) and health.connected
    recorder.close()
    replay = CcxtAdapter(lambda s: INST)
    replayed = [ev for r in RecordingReader(tmp_path / "okx.rec.zst") for ev in replay.decode(r.ts_recv, r.symbol,
                                                                                              r.channel, r.msg)]
    assert [plain(e) for e in replayed] == [plain(e) for e in h.events]  # a replay decodes the same events


def plain(ev) -> tuple:
    return (type(ev).__name__, *[x.tolist() if isinstance(x, np.ndarray) else x for x in ev])


@pytest.mark.shared_data
async def test_limited_depth_snapshot_is_incomplete_and_levels_leaving_the_window_get_size_zero(fake, frames) -> None:
    snapshot, rest = split(frames)
    feed, task, h, _ = await start(fake, snapshot, limit=10, trades=False)

    _, msg, (snap,) = await h.next("ccxt_book")
    assert not snap.complete and len(msg["bids"]) == len(msg["asks"]) == 10 and msg["limit"] == 10
    removed = 0
    for frame in [f for f in rest if f["arg"]["channel"] == "books"][:40]:
        await fake.send(frame)
        _, _, events = await h.next("ccxt_book")
        removed += sum(int((e.bid_qty == 0).sum() + (e.ask_qty == 0).sum()) for e in events)
        assert h.sync.book.n_bid == h.sync.book.n_ask == 10
    await stop(feed, task)

    assert h.compared == 41 and removed > 0


@pytest.mark.shared_data
async def test_dropped_connection_gives_a_marker_then_a_reconnect_and_a_fresh_snapshot(fake, frames) -> None:
    snapshot, rest = split(frames)
    books = [f for f in rest if f["arg"]["channel"] == "books"]
    feed, task, h, health = await start(fake, snapshot)
    await h.next("ccxt_book")
    for frame in books[:3]:
        await fake.send(frame)
        await h.next("ccxt_book")

    await fake.drop()
    _, marker, (reset,) = await h.next("marker")
    assert marker["event"] == "disconnected" and "NetworkError" in marker["reason"]
    assert isinstance(reset, BookReset) and not h.sync.live
    _, _, (snap,) = await h.next("ccxt_book")
    await stop(feed, task)

    assert isinstance(snap, BookSnapshot) and h.sync.live  # ...and equal to ccxt's (checked in the sink)
    assert fake.connections == 2 and fake.ops.count(("subscribe", "books", INST_ID)) == 2
    assert (health.connects, health.disconnects) == (2, 1)


@pytest.mark.shared_data
async def test_a_silent_connection_is_dropped_and_resubscribed(fake, frames) -> None:
    snapshot, _ = split(frames)
    feed, task, h, health = await start(fake, snapshot, trades=False, stale_after_s=0.3)
    await h.next("ccxt_book")

    _, marker, (reset,) = await h.next("marker")  # the fake sends nothing after the snapshot
    assert marker["event"] == "disconnected" and "no book for 0.3 s" in marker["reason"]
    assert isinstance(reset, BookReset) and health.stale_reconnects == 1
    _, _, (snap,) = await h.next("ccxt_book")
    await stop(feed, task)

    assert isinstance(snap, BookSnapshot) and h.sync.live
    assert fake.connections == 2 and fake.ops.count(("subscribe", "books", INST_ID)) == 2


@pytest.mark.shared_data
async def test_sequence_gap_makes_ccxt_resync_and_the_feed_recovers(fake, frames) -> None:
    seq = with_seq([f for f in frames if f["arg"]["channel"] == "books"])
    snapshot, updates = seq[0], seq[1:]
    feed, task, h, _ = await start(fake, snapshot, trades=False)
    await h.next("ccxt_book")
    for frame in updates[:3]:
        await fake.send(frame)
        await h.next("ccxt_book")

    await fake.send(updates[4])  # updates[3] never arrives: prevSeqId does not follow on
    _, marker, (reset,) = await h.next("marker")
    _, _, (snap,) = await h.next("ccxt_book")
    await fake.send(updates[0])  # continues from the new snapshot's seqId
    _, _, (delta,) = await h.next("ccxt_book")
    await stop(feed, task)

    assert "InvalidNonce" in marker["reason"] and isinstance(reset, BookReset)
    assert isinstance(snap, BookSnapshot) and isinstance(delta, BookDelta) and h.sync.live
    assert ("unsubscribe", "books", INST_ID) in fake.ops and feed.errors == {"InvalidNonce": 1}
    assert h.adapter.health.symbol(SYM).resyncs == 1


async def test_venue_down_is_retried_without_markers(fake) -> None:
    url = fake.url
    await fake.stop()
    ex = okx_exchange(url)
    got: list = []
    feed = CcxtFeed(ex, [SYM], sink=lambda *a: got.append(a), health=FeedHealth("ccxt"), backoff=fast_backoff)
    task = asyncio.create_task(feed.run())
    async with asyncio.timeout(GUARD_S):
        while sum(feed.errors.values()) < 4:
            await asyncio.sleep(0.01)
    await stop(feed, task)

    assert got == [] and set(feed.errors) == {"NetworkError"} and not feed.health.connected


async def test_unknown_symbol_ends_run_with_ccxts_error(fake) -> None:
    ex = okx_exchange(fake.url)
    feed = CcxtFeed(ex, ["ETH/USDT"], sink=lambda *a: None, health=FeedHealth("ccxt"), backoff=fast_backoff)

    with pytest.raises(ccxt.BadSymbol, match="ETH/USDT"):
        async with asyncio.timeout(GUARD_S):
            await feed.run()
    await feed.close()


@pytest.mark.shared_data
async def test_build_ccxt_feed_points_the_configured_exchange_at_the_configured_url(fake, frames) -> None:
    fake.snapshots[INST_ID] = split(frames)[0]
    settings = FeedSettings(venue="ccxt", ccxt_exchange="okx", symbols=[SYM], ws_url=fake.url, ccxt_depth=400,
                            trades="none")
    got: asyncio.Queue = asyncio.Queue()
    feed = build_ccxt_feed(settings, FeedHealth("ccxt"), lambda *a: got.put_nowait(a), lambda: 42)
    feed.exchange.set_markets(copy.deepcopy(MARKETS))  # live, ccxt loads them over REST
    task = asyncio.create_task(feed.run())
    async with asyncio.timeout(GUARD_S):
        ts, channel, symbol, msg = await got.get()
    await stop(feed, task)

    assert (ts, channel, symbol, msg["limit"]) == (42, "ccxt_book", SYM, 400) and len(msg["bids"]) == 400
    assert not feed.trades and feed.exchange.urls["api"]["ws"] == fake.url


def test_build_ccxt_feed_rejects_an_unknown_exchange_and_urls_it_cannot_replace() -> None:
    with pytest.raises(ConfigError, match="no exchange 'nosuch'"):
        build_ccxt_feed(FeedSettings(venue="ccxt", ccxt_exchange="nosuch", symbols=[SYM]), FeedHealth("ccxt"),
                        lambda *a: None, lambda: 0)
    with pytest.raises(ConfigError, match="ws_url: ccxt's binance has no single ws URL"):
        build_ccxt_feed(FeedSettings(venue="ccxt", ccxt_exchange="binance", symbols=[SYM], ws_url="ws://127.0.0.1:1"),
                        FeedHealth("ccxt"), lambda *a: None, lambda: 0)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="without repeats"):
        CcxtFeed(object(), [SYM, SYM], sink=lambda *a: None, health=FeedHealth("ccxt"))
    with pytest.raises(ValueError, match="limit"):
        CcxtFeed(object(), [SYM], sink=lambda *a: None, health=FeedHealth("ccxt"), limit=0)
