"""IbFeed with ib_async's real IB client against a loopback fake TWS (tests/fakes/tws.py).

Each message the feed hands over goes through IbAdapter into a BookSync'd Book at once. ib_async's
own DOM (`ticker.domBids/domAsks`) follows IB's rules only while rows are inserted and deleted at the
end of a side (it keys rows by position in a dict and does not shift them), so the comparison with
it is made on such streams; inserts and deletes inside a side are checked against a list model of
IB's documented rules instead.
"""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
from ib_async import IB, Contract

from daemon.book.book import Book
from daemon.book.sync import BookSync
from daemon.config import FeedSettings
from daemon.errors import ConfigError
from daemon.events import BookDelta, BookReset, BookSnapshot, Side, Trade
from daemon.instruments import Instrument
from daemon.sources.backoff import Backoff
from daemon.sources.ib_feed import IbFeed, build_ib_feed, contract_from_config
from daemon.sources.recording import RecordingReader, RecordingWriter
from daemon.venues.health import FeedHealth
from daemon.venues.ib import ASK, BID, DELETE, INSERT, UPDATE, IbAdapter
from tests.fakes.tws import FakeTws

S, CON = "AAPL", 265598
INST = Instrument(S, 0.01, 1)
GUARD_S = 10  # a hang guard only: every wait below normally ends in milliseconds
NUM_ROWS = 5


def contracts() -> dict[str, Contract]:
    return {S: Contract(conId=CON, symbol=S, secType="STK", exchange="ISLAND", currency="USD")}


def fast_backoff() -> Backoff:
    return Backoff(0.001, 0.01, rng=random.Random(2), floor_s=0.0)


class Harness:
    """The feed's sink: decode, apply to a Book, compare with ib_async's DOM if asked, queue the result."""

    def __init__(self, ib: IB, compare: bool, recorder: RecordingWriter | None = None) -> None:
        self.ib = ib
        self.compare = compare
        self.recorder = recorder
        self.events: list = []
        self.feed: IbFeed | None = None
        self.adapter = IbAdapter(lambda s: INST)
        self.sync = BookSync(Book(S))
        self.queue: asyncio.Queue = asyncio.Queue()
        self.rows = 0
        self.compared = 0

    def sink(self, ts: int, channel: str, symbol: str, msg) -> None:
        assert symbol == S and isinstance(ts, int)
        if self.recorder is not None:
            self.recorder.write(ts, channel, symbol, msg)
        events = self.adapter.decode(ts, symbol, channel, msg)
        self.events += events
        for ev in events:
            if isinstance(ev, BookSnapshot):
                self.sync.on_snapshot(ev)
            elif isinstance(ev, BookDelta):
                self.sync.on_delta(ev)
            elif isinstance(ev, BookReset):
                self.sync.on_reset(ev)
        if channel == "ib_depth":
            self.rows += len(msg)
            if self.compare and self.sync.live:
                self.assert_equals_ib_async()
        self.queue.put_nowait((channel, msg, events))
        for req in self.adapter.take_requests():  # as the live session does after routing a message
            assert self.feed is not None
            self.feed.request(req)

    def book(self) -> tuple[dict, dict]:
        b = self.sync.book
        return (dict(zip(b.bid_px[:b.n_bid].tolist(), b.bid_qty[:b.n_bid].tolist(), strict=True)),
                dict(zip((-b.ask_key[:b.n_ask]).tolist(), b.ask_qty[:b.n_ask].tolist(), strict=True)))

    def assert_equals_ib_async(self) -> None:
        ticker = self.ib.ticker(contracts()[S])
        assert self.book() == (_aggregate(ticker.domBids), _aggregate(ticker.domAsks))
        self.compared += 1

    async def next(self, channel: str | None = None):
        async with asyncio.timeout(GUARD_S):
            got = await self.queue.get()
        if channel is not None:
            assert got[0] == channel, got
        return got

    async def wait_rows(self, n: int) -> None:
        async with asyncio.timeout(GUARD_S):
            while self.rows < n:
                await self.next()


def _aggregate(dom) -> dict[int, int]:
    out: dict[int, int] = {}
    for lv in dom:
        p = INST.tick(lv.price)
        out[p] = out.get(p, 0) + INST.lot(lv.size)
    return {p: q for p, q in out.items() if q}


@pytest.fixture
async def tws():
    server = FakeTws()
    await server.start()
    yield server
    await server.stop()


async def start(tws: FakeTws, compare: bool = True, trades: bool = True, recorder: RecordingWriter | None = None):
    ib = IB()
    h = Harness(ib, compare, recorder)
    health = FeedHealth("ib")
    feed = IbFeed(ib, contracts(), sink=h.sink, health=health, port=tws.port, client_id=11, num_rows=NUM_ROWS,
                  trades=trades, backoff=fast_backoff)
    h.feed = feed
    task = asyncio.create_task(feed.run())
    async with asyncio.timeout(GUARD_S):
        await tws.wait_depth(CON)
        if trades:
            await tws.wait_tick_by_tick(CON)
    _, marker, (snap,) = await h.next("marker")
    assert marker == {"event": "subscribed", "num_rows": NUM_ROWS} and isinstance(snap, BookSnapshot)
    return feed, task, h, health


async def stop(feed: IbFeed, task: asyncio.Task) -> None:
    await feed.close()
    async with asyncio.timeout(GUARD_S):
        await task


def tail_ops(rng: np.random.Generator, rows: dict[int, list], n: int) -> list[tuple]:
    """Random row operations that touch only the end of a side (where ib_async follows IB's rules)."""
    out = []
    for _ in range(n):
        side = int(rng.integers(0, 2))
        r = rows[side]
        op = int(rng.integers(0, 3)) if r else INSERT
        if op == INSERT and len(r) == NUM_ROWS:
            op = UPDATE
        step = 0.01 * int(rng.integers(0, 6))
        price = round(100.0 - step if side == BID else 100.1 + step, 2)
        size, mm = int(rng.integers(1, 300)), ["NSDQ", "ARCA", "BATS"][int(rng.integers(0, 3))]
        if op == INSERT:
            out.append((len(r), INSERT, side, price, size, mm))
            r.append(1)
        elif op == UPDATE:
            out.append((int(rng.integers(0, len(r))), UPDATE, side, price, size, mm))
        else:
            out.append((len(r) - 1, DELETE, side, 0.0, 0, mm))
            r.pop()
    return out


async def test_book_equals_ib_asyncs_dom_after_every_update(tws, tmp_path) -> None:
    recorder = RecordingWriter(tmp_path / "ib.rec.zst", "ib", [S])
    feed, task, h, health = await start(tws, recorder=recorder)
    rng = np.random.default_rng(7)
    rows: dict[int, list] = {BID: [], ASK: []}
    sent = 0

    for _ in range(300):
        batch = tail_ops(rng, rows, int(rng.integers(1, 4)))
        tws.depth(CON, batch)
        sent += len(batch)
        await h.wait_rows(sent)
    await stop(feed, task)

    assert h.compared >= 100 and h.rows == sent and h.sync.live
    assert health.connects == 1 and health.messages >= 1 and health.last_message_ns > 0
    recorder.close()
    replay = IbAdapter(lambda s: INST)
    replayed = [ev for r in RecordingReader(tmp_path / "ib.rec.zst") for ev in replay.decode(r.ts_recv, r.symbol,
                                                                                             r.channel, r.msg)]
    assert [plain(e) for e in replayed] == [plain(e) for e in h.events]  # a replay decodes the same events


def plain(ev) -> tuple:
    return (type(ev).__name__, *[x.tolist() if isinstance(x, np.ndarray) else x for x in ev])


async def test_inserts_and_deletes_inside_a_side_shift_the_rows_as_ib_documents(tws) -> None:
    feed, task, h, _ = await start(tws, compare=False)

    tws.depth(CON, [(0, INSERT, BID, 100.0, 1), (1, INSERT, BID, 99.0, 2), (2, INSERT, BID, 98.0, 3)])
    tws.depth(CON, [(0, INSERT, BID, 100.5, 4)])  # everything moves down one row
    tws.depth(CON, [(1, DELETE, BID, 0.0, 0)])  # 100.00 goes, the rows below move up
    tws.depth(CON, [(2, UPDATE, BID, 97.0, 5)], l2=False)  # plain MARKET_DEPTH (no market maker)
    await h.wait_rows(6)
    await stop(feed, task)

    assert h.adapter.rows(S)[0].tolist() == [10050, 9900, 9700] and h.adapter.rows(S)[1].tolist() == [4, 2, 5]
    assert h.book() == ({10050: 4, 9900: 2, 9700: 5}, {})


async def test_a_row_out_of_step_resets_and_resubscribes_and_old_rows_are_dropped(tws) -> None:
    feed, task, h, _ = await start(tws)
    tws.depth(CON, [(0, INSERT, BID, 100.0, 1), (0, INSERT, ASK, 100.1, 1)])
    await h.wait_rows(2)
    old_req = tws.depth_reqs[CON]

    tws.depth(CON, [(3, UPDATE, BID, 99.0, 1)])  # there is no bid row 3
    _, _, (reset,) = await h.next("ib_depth")
    _, marker, (snap,) = await h.next("marker")
    async with asyncio.timeout(GUARD_S):
        new_req = await tws.wait_depth(CON, count=2)
    tws.depth(CON, [(0, INSERT, BID, 50.0, 9)], req_id=old_req)  # still on the wire from the old request
    tws.depth(CON, [(0, INSERT, BID, 99.5, 2), (0, INSERT, ASK, 100.2, 3)])
    await h.wait_rows(5)
    await stop(feed, task)

    assert isinstance(reset, BookReset) and "out of sync" in reset.reason
    assert marker["event"] == "subscribed" and isinstance(snap, BookSnapshot) and new_req != old_req
    assert any(f[0] == "11" and int(f[2]) == old_req for f in tws.requests)  # cancelMktDepth
    assert h.book() == ({9950: 2}, {10020: 3}) and h.compared >= 1


async def test_ibs_depth_reset_317_empties_the_book_before_the_rows_that_follow_it(tws) -> None:
    feed, task, h, _ = await start(tws, compare=False)
    # a mid-side insert: ib_async overwrites its row 0 (2 rows) where IB's rules shift (3 rows), so the
    # deletes ib_async makes up for the reset would leave a row behind
    tws.depth(CON, [(0, INSERT, BID, 100.0, 1), (1, INSERT, BID, 99.9, 1), (0, INSERT, BID, 100.05, 2)])
    await h.wait_rows(3)
    assert len(h.adapter.rows(S)[0]) == 3

    after = tws.depth_frames(CON, [(0, INSERT, ASK, 100.2, 4)])
    tws.error(tws.depth_reqs[CON], 317, "Market depth data has been RESET. Please empty deep book contents.", after)
    _, marker, (snap,) = await h.next("marker")
    _, rows, _ = await h.next("ib_depth")
    await stop(feed, task)

    assert marker["event"] == "subscribed" and isinstance(snap, BookSnapshot)
    assert len(rows) == 1 and h.book() == ({}, {10020: 4}) and h.sync.live and feed.errors == {317: 1}


async def test_prints_are_forwarded_with_a_side_inferred_from_the_book(tws) -> None:
    feed, task, h, _ = await start(tws)
    tws.depth(CON, [(0, INSERT, BID, 100.0, 1), (0, INSERT, ASK, 100.1, 1)])
    await h.wait_rows(2)

    for price, size in ((100.1, 5), (100.0, 2), (100.05, 1), (-1.0, 0), (100.03, 4)):
        tws.trade(CON, price, size)
    got = []
    while sum(len(ev) for ev in got) < 4:
        got.append((await h.next("ib_trades"))[2])
    await stop(feed, task)

    trades = [t for ev in got for t in ev]
    assert all(isinstance(t, Trade) for t in trades)
    assert [(t.price, t.qty, t.side) for t in trades] == [(10010, 5, Side.BUY), (10000, 2, Side.SELL),
                                                          (10005, 1, Side.BUY), (10003, 4, Side.SELL)]
    assert feed.skipped_prints == 1


async def test_a_dropped_connection_resets_reconnects_and_subscribes_again(tws) -> None:
    feed, task, h, health = await start(tws)
    tws.depth(CON, [(0, INSERT, BID, 100.0, 1)])
    await h.wait_rows(1)

    tws.drop()
    _, marker, (reset,) = await h.next("marker")
    _, marker2, (snap,) = await h.next("marker")
    async with asyncio.timeout(GUARD_S):
        await tws.wait_depth(CON, count=2)
        await tws.wait_tick_by_tick(CON)
    tws.depth(CON, [(0, INSERT, ASK, 100.2, 7)])
    await h.wait_rows(2)
    await stop(feed, task)

    assert marker["event"] == "disconnected" and isinstance(reset, BookReset)
    assert marker2["event"] == "subscribed" and isinstance(snap, BookSnapshot)
    assert h.book() == ({}, {10020: 7}) and tws.connections == 2 and tws.client_ids == [11, 11]
    assert (health.connects, health.disconnects, health.connected) == (2, 1, False)


async def test_lost_and_restored_ib_connectivity_resets_then_resubscribes(tws) -> None:
    feed, task, h, _ = await start(tws)
    tws.depth(CON, [(0, INSERT, BID, 100.0, 1)])
    await h.wait_rows(1)

    tws.error(-1, 1100, "Connectivity between IB and Trader Workstation has been lost.")
    _, lost, (reset,) = await h.next("marker")
    tws.error(-1, 1102, "Connectivity between IB and Trader Workstation has been restored - data maintained.")
    _, sub, (snap,) = await h.next("marker")
    async with asyncio.timeout(GUARD_S):
        await tws.wait_depth(CON, count=2)
    await stop(feed, task)

    assert lost["event"] == "disconnected" and "1100" in lost["reason"] and isinstance(reset, BookReset)
    assert sub["event"] == "subscribed" and isinstance(snap, BookSnapshot)
    assert feed.errors == {1100: 1, 1102: 1}


async def test_a_refused_depth_request_resets_the_symbol_and_is_counted(tws) -> None:
    feed, task, h, _ = await start(tws)

    tws.error(tws.depth_reqs[CON], 354, "Requested market data is not subscribed.")
    _, marker, (reset,) = await h.next("marker")
    await stop(feed, task)

    assert "IB 354" in marker["reason"] and isinstance(reset, BookReset) and feed.errors == {354: 1}


async def test_an_unreachable_gateway_is_retried_until_closed(tws) -> None:
    port = tws.port
    await tws.stop()
    got: list = []
    feed = IbFeed(IB(), contracts(), sink=lambda *a: got.append(a), health=FeedHealth("ib"), port=port,
                  backoff=fast_backoff, connect_timeout=1.0)
    task = asyncio.create_task(feed.run())
    async with asyncio.timeout(GUARD_S):
        while feed.connect_failures < 3:
            await asyncio.sleep(0.01)
    await stop(feed, task)

    assert got == [] and feed.health.connects == 0


async def test_contracts_without_conid_are_qualified_and_smart_ones_get_smart_depth(tws) -> None:
    tws.contract_ids["AAPL"] = CON
    c = Contract(symbol="AAPL", secType="STK", exchange="SMART", currency="USD")
    got: list = []
    feed = IbFeed(IB(), {S: c}, sink=lambda *a: got.append(a), health=FeedHealth("ib"), port=tws.port,
                  backoff=fast_backoff)
    task = asyncio.create_task(feed.run())
    async with asyncio.timeout(GUARD_S):
        await tws.wait_depth(CON)
    tws.depth(CON, [(0, INSERT, BID, 100.0, 1, "NSDQ")])
    async with asyncio.timeout(GUARD_S):
        while len(got) < 2:
            await asyncio.sleep(0.01)
    await stop(feed, task)

    assert c.conId == CON and tws.depth_smart[CON]
    assert [a[1] for a in got] == ["marker", "ib_depth"]


async def test_a_contract_ib_does_not_know_ends_run_with_a_config_error(tws) -> None:
    feed = IbFeed(IB(), {"NOPE": Contract(symbol="NOPE", secType="STK", exchange="SMART", currency="USD")},
                  sink=lambda *a: None, health=FeedHealth("ib"), port=tws.port, backoff=fast_backoff)

    with pytest.raises(ConfigError, match="IB knows no single contract for NOPE"):
        async with asyncio.timeout(GUARD_S):
            await feed.run()
    assert not feed.ib.isConnected()


def test_build_ib_feed_takes_the_feed_config() -> None:
    contract = {"secType": "STK", "symbol": "AAPL", "conId": "265598", "exchange": "ISLAND", "currency": "USD"}
    settings = FeedSettings(venue="ib", symbols=["AAPL"], ib_port=4002, ib_client_id=17, ib_depth_rows=7,
                            trades="none", ib_contracts={"AAPL": contract})

    feed = build_ib_feed(settings, FeedHealth("ib"), lambda *a: None, lambda: 0)

    assert feed.contracts["AAPL"].conId == CON and (feed.port, feed.client_id, feed.num_rows) == (4002, 17, 7)
    assert not feed.trades


def test_bad_contract_config_and_bad_depth_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"ib_contracts.X: unknown Contract field\(s\) \['sym'\]"):
        contract_from_config("X", {"sym": "X"})
    with pytest.raises(ConfigError, match=r"ib_contracts\.X: invalid literal"):
        contract_from_config("X", {"conId": "abc"})
    with pytest.raises(ValueError, match="num_rows"):
        IbFeed(IB(), contracts(), sink=lambda *a: None, health=FeedHealth("ib"), num_rows=0)
