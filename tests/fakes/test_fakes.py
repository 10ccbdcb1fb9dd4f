"""The fake venues are right: plain websocket/aiohttp clients with their own dict books and checksum rebuild the
true book from the fakes' messages, and each fault does what it says."""

from __future__ import annotations

import asyncio
import itertools
import struct
import zlib
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from tests.fakes.binance_venue import FakeBinance
from tests.fakes.market import SPOT, BookStart, Depth, Print, SyntheticSource, TrueBook
from tests.fakes.okx_venue import FakeOkx

STREAMS = "/stream?streams=btcusdt@depth@100ms/btcusdt@trade/btcusdt@bookTicker"
BOOKS = {"channel": "books", "instId": "BTC-USDT"}
TRADES = {"channel": "trades", "instId": "BTC-USDT"}


class DictBook:
    """A client's book, as plainly as it can be written: price -> the level's strings."""

    def __init__(self, bids: list, asks: list) -> None:
        self.bids: dict[Decimal, tuple[str, str]] = {}
        self.asks: dict[Decimal, tuple[str, str]] = {}
        self.apply(bids, asks)

    def apply(self, bids: list, asks: list) -> None:
        for side, rows in ((self.bids, bids), (self.asks, asks)):
            for row in rows:
                if Decimal(row[1]) == 0:
                    side.pop(Decimal(row[0]), None)
                else:
                    side[Decimal(row[0])] = (row[0], row[1])

    def ranked(self) -> tuple[list, list]:
        return (sorted(self.bids.items(), reverse=True), sorted(self.asks.items()))

    def levels(self) -> tuple[list, list]:
        bids, asks = self.ranked()
        return [(p, Decimal(q)) for p, (_, q) in bids], [(p, Decimal(q)) for p, (_, q) in asks]

    def crossed(self) -> bool:
        return max(self.bids) >= min(self.asks)


class BinanceSync:
    """The documented Binance local-book rules (spot: U == prev u + 1; futures: pu == prev u)."""

    def __init__(self, futures: bool, snap: dict) -> None:
        self.futures = futures
        self.book = DictBook(snap["bids"], snap["asks"])
        self.last = snap["lastUpdateId"]
        self.synced = False

    def on_depth(self, d: dict) -> str:
        U, u, last = d["U"], d["u"], self.last
        if not self.synced:
            if (u < last) if self.futures else (u <= last):
                return "dropped"
            if not ((U <= last <= u) if self.futures else (U <= last + 1 <= u)):
                return "gap"
            self.synced = True
        elif (d["pu"] != last) if self.futures else (last + 1 != U):
            return "gap"
        self.book.apply(d["b"], d["a"])
        self.last = u
        return "applied"


def crc_okx(book: DictBook) -> int:
    """OKX's checksum written independently: interleave the best 25 a side, CRC32, as a signed 32-bit int."""
    bids, asks = book.ranked()
    fields = []
    for i in range(25):
        if i < len(bids):
            fields.append(f"{bids[i][1][0]}:{bids[i][1][1]}")
        if i < len(asks):
            fields.append(f"{asks[i][1][0]}:{asks[i][1][1]}")
    return struct.unpack("<i", struct.pack("<I", zlib.crc32(":".join(fields).encode())))[0]


async def recv_new(ws: ClientConnection, fake: Any, before: int) -> list:
    """The frames the fake sent since `before` (the test's only client gets them all)."""
    return [orjson.loads(await ws.recv()) for _ in range(fake.sent_frames - before)]


async def get_depth(http: aiohttp.ClientSession, fake: FakeBinance, **params: Any) -> tuple[int, dict, Any]:
    params = {"symbol": "BTCUSDT", "limit": "1000", **{k: str(v) for k, v in params.items()}}
    async with http.get(fake.rest_url + fake.depth_path, params=params) as r:
        return r.status, await r.json(), r.headers


def use_source(source: str, request: pytest.FixtureRequest) -> None:
    if source == "recorded":
        request.getfixturevalue("shared_data")


# Binance: the rebuilt book


@pytest.mark.parametrize("source", ["synthetic", "recorded"])
@pytest.mark.parametrize("market", ["spot", "usdm"])
async def test_binance_snapshot_and_buffered_diffs_rebuild_the_true_book(market, source, request) -> None:
    use_source(source, request)
    async with FakeBinance(market, source=source) as fake, connect(fake.ws_url + STREAMS) as ws, \
            aiohttp.ClientSession() as http:
        await fake.wait_for(lambda: fake.subscribers("BTCUSDT", "depth") == 1)
        before = fake.sent_frames
        await fake.push(4)
        buffered = [f["data"] for f in await recv_new(ws, fake, before) if f["stream"].endswith("100ms")]
        status, snap, _ = await get_depth(http, fake, limit=5000 if market == "spot" else 1000)
        sync = BinanceSync(fake.futures, snap)
        depth = 500 if (market, source) == ("usdm", "recorded") else None  # REST gives 1000 of a deeper book

        assert status == 200 and snap["lastUpdateId"] == fake.update_id("BTCUSDT")
        verdicts = [sync.on_depth(d) for d in buffered]
        # futures keep the event with u == lastUpdateId (U <= lastUpdateId <= u); spot drops u <= lastUpdateId
        assert verdicts == ["dropped"] * len(buffered) if market == "spot" or not buffered else \
            verdicts == ["dropped"] * (len(buffered) - 1) + ["applied"]
        depth_steps = quotes = 0
        while depth_steps < (60 if source == "recorded" else 120):
            before = fake.sent_frames
            await fake.push(1)
            for frame in await recv_new(ws, fake, before):
                data = frame["data"]
                if frame["stream"] == "btcusdt@depth@100ms":
                    assert sync.on_depth(data) == "applied"
                    ours, true = sync.book.levels(), fake.true_book("BTCUSDT")
                    assert (ours[0][:depth], ours[1][:depth]) == (true[0][:depth], true[1][:depth])
                    depth_steps += 1
                elif frame["stream"] == "btcusdt@bookTicker":
                    bids, asks = sync.book.ranked()
                    assert data["u"] == sync.last
                    assert (data["b"], data["B"], data["a"], data["A"]) == (*bids[0][1], *asks[0][1])
                    quotes += 1
                else:
                    assert data["e"] == "trade" and isinstance(data["m"], bool)
        assert quotes == depth_steps


async def test_binance_recorded_first_event_straddles_the_recorded_snapshot(shared_data) -> None:
    async with FakeBinance("spot", source="recorded") as fake, connect(fake.ws_url + STREAMS) as ws, \
            aiohttp.ClientSession() as http:
        _, snap, _ = await get_depth(http, fake, limit=5000)
        await fake.wait_for(lambda: fake.connections == 1)
        before = fake.sent_frames
        await fake.push(1)
        (depth, _ticker) = await recv_new(ws, fake, before)
        sync = BinanceSync(False, snap)

        assert snap["lastUpdateId"] == 50093239218
        assert depth["data"]["U"] < snap["lastUpdateId"] + 1 <= depth["data"]["u"]
        assert sync.on_depth(depth["data"]) == "applied"
        assert sync.book.levels() == fake.true_book("BTCUSDT")


async def test_binance_recorded_true_book_ends_as_the_independent_checker_says(shared_data) -> None:
    expected = (shared_data / "binance_spot_btcusdt" / "expected_final_book.txt").read_text().splitlines()
    fake = FakeBinance("spot", source="recorded")
    while await fake.push(5000):
        pass
    bids, asks = fake.true_book("BTCUSDT")

    def top(side: str) -> list[tuple[Decimal, Decimal]]:
        at = expected.index(f"final top 5 {side} (price qty), best first:")
        return [tuple(Decimal(x) for x in line.split()) for line in expected[at + 1:at + 6]]

    assert f"final_depth: bids={len(bids)} asks={len(asks)}" in expected
    assert bids[:5] == top("bids") and asks[:5] == top("asks")


async def test_binance_ws_endpoint_answers_subscribe_and_sends_raw_payloads() -> None:
    async with FakeBinance("spot") as fake, connect(fake.ws_url + "/ws") as ws:
        await ws.send(orjson.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": 7}).decode())
        assert orjson.loads(await ws.recv()) == {"result": None, "id": 7}
        await ws.send('{"method":"LIST_SUBSCRIPTIONS","id":8}')
        assert orjson.loads(await ws.recv()) == {"result": ["btcusdt@depth@100ms"], "id": 8}

        before = fake.sent_frames
        while fake.sent_frames == before:
            await fake.push(1)
        data = orjson.loads(await ws.recv())
        assert data["e"] == "depthUpdate" and "stream" not in data

        await ws.send('{"method":"UNSUBSCRIBE","params":["btcusdt@depth@100ms"],"id":9}')
        assert orjson.loads(await ws.recv()) == {"result": None, "id": 9}
        before = fake.sent_frames
        await fake.push(20)
        assert fake.sent_frames == before


async def test_binance_refuses_unknown_streams_saying_which() -> None:
    async with FakeBinance("spot") as fake:
        with pytest.raises(InvalidStatus) as e:
            async with connect(fake.ws_url + "/stream?streams=ethusdt@depth"):
                pass
        assert e.value.response.status_code == 400 and b"ethusdt@depth" in e.value.response.body
        async with connect(fake.ws_url + "/ws") as ws:
            await ws.send('{"method":"SUBSCRIBE","params":["BTCUSDT@trade"],"id":1}')
            reply = orjson.loads(await ws.recv())
        assert reply["id"] == 1 and reply["error"]["code"] == 2 and "lower case" in reply["error"]["msg"]


@pytest.mark.parametrize("market", ["spot", "usdm"])
async def test_binance_rest_snapshot_has_the_real_shape(market) -> None:
    async with FakeBinance(market, clock_ms=lambda: 1_723_161_254_206) as fake, aiohttp.ClientSession() as http:
        status, body, headers = await get_depth(http, fake, limit=5)
        bad_symbol = await get_depth(http, fake, symbol="ETHUSDT")
        bad_limit = await get_depth(http, fake, limit="x")

    assert status == 200 and len(body["bids"]) == len(body["asks"]) == 5
    assert list(body) == (["lastUpdateId", "E", "T", "bids", "asks"] if market == "usdm"
                          else ["lastUpdateId", "bids", "asks"])
    decimals = 2 if market == "usdm" else 8
    assert all(len(p.split(".")[1]) == decimals for p, _ in body["bids"] + body["asks"])
    assert Decimal(body["bids"][0][0]) < Decimal(body["asks"][0][0])
    assert headers["X-MBX-USED-WEIGHT-1M"] == ("2" if market == "usdm" else "5")
    assert (bad_symbol[0], bad_symbol[1]["code"]) == (400, -1121)
    assert (bad_limit[0], bad_limit[1]["code"]) == (400, -1100)
    assert [c[2] for c in fake.rest_calls] == [200, 400, 400]


# Binance: faults


@pytest.mark.parametrize("market", ["spot", "usdm"])
async def test_binance_drop_next_moves_the_true_book_but_leaves_a_gap(market) -> None:
    src = lambda s: SyntheticSource(SPOT, 3, trade_ratio=0)  # noqa: E731
    async with FakeBinance(market, source=src) as fake, connect(fake.ws_url + "/stream?streams=btcusdt@depth") as ws:
        await fake.wait_for(lambda: fake.connections == 1)
        await fake.push(1)
        first = orjson.loads(await ws.recv())["data"]
        fake.drop_next()
        await fake.push(2)
        after = orjson.loads(await ws.recv())["data"]

        assert fake.sent_frames == 2 and fake.update_id("BTCUSDT") == after["u"]
        if market == "spot":
            assert after["U"] > first["u"] + 1
        else:
            assert after["pu"] != first["u"]


async def test_binance_disconnect_aborts_every_connection() -> None:
    async with FakeBinance("spot") as fake:
        a, b = await connect(fake.ws_url + STREAMS), await connect(fake.ws_url + "/ws")
        await fake.wait_for(lambda: fake.connections == 2)
        book = fake.true_book("BTCUSDT")

        fake.disconnect()
        for ws in (a, b):
            with pytest.raises(ConnectionClosedError):
                await ws.recv()
            assert ws.close_code == 1006
        assert fake.connections == 0 and fake.true_book("BTCUSDT") == book
        async with connect(fake.ws_url + STREAMS):
            await fake.wait_for(lambda: fake.connections == 1)


async def test_binance_send_malformed_sends_bad_json_then_a_wrong_shape() -> None:
    async with FakeBinance("spot") as fake, connect(fake.ws_url + STREAMS) as ws:
        await fake.wait_for(lambda: fake.connections == 1)
        fake.send_malformed()
        text = await ws.recv()
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(text)
        shaped = orjson.loads(await ws.recv())

    assert shaped["stream"] == "btcusdt@depth@100ms" and not isinstance(shaped["data"]["U"], int)
    assert not isinstance(shaped["data"]["b"], list)


@pytest.mark.parametrize("market", ["spot", "usdm"])
async def test_binance_stale_snapshot_predates_the_buffered_events(market) -> None:
    src = lambda s: SyntheticSource(SPOT, 5, trade_ratio=0)  # noqa: E731
    async with FakeBinance(market, source=src) as fake, aiohttp.ClientSession() as http:
        history = {}
        for _ in range(3):
            await fake.push(1)
            history[fake.update_id("BTCUSDT")] = fake.true_book("BTCUSDT")
        async with connect(fake.ws_url + "/stream?streams=btcusdt@depth") as ws:
            await fake.wait_for(lambda: fake.connections == 1)
            await fake.push(5)
            buffered = [orjson.loads(await ws.recv())["data"] for _ in range(5)]
            fake.stale_snapshot_next()
            _, stale, _ = await get_depth(http, fake)
            _, fresh, _ = await get_depth(http, fake)

    sync = BinanceSync(fake.futures, stale)
    assert sync.on_depth(buffered[0]) == "gap"
    assert stale["lastUpdateId"] < buffered[0]["U"] - 1
    assert DictBook(stale["bids"], stale["asks"]).levels() == history[stale["lastUpdateId"]]
    assert fresh["lastUpdateId"] == fake.update_id("BTCUSDT")


async def test_binance_rate_limit_and_ban_answer_with_retry_after() -> None:
    async with FakeBinance("spot") as fake, aiohttp.ClientSession() as http:
        fake.rate_limit_next(2, retry_after_s=3)
        limited = [await get_depth(http, fake) for _ in range(2)]
        ok = await get_depth(http, fake)
        fake.ban_next(retry_after_s=60)
        banned = await get_depth(http, fake)
        again = await get_depth(http, fake)

    assert [(s, b["code"], h["Retry-After"]) for s, b, h in limited] == [(429, -1003, "3")] * 2
    assert (banned[0], banned[1]["code"], banned[2]["Retry-After"]) == (418, -1003, "60")
    assert ok[0] == again[0] == 200
    assert [c[2] for c in fake.rest_calls] == [429, 429, 200, 418, 200]


async def test_binance_stall_holds_frames_and_resume_delivers_them_in_order() -> None:
    async with FakeBinance("spot") as fake, connect(fake.ws_url + "/stream?streams=btcusdt@depth") as ws:
        await fake.wait_for(lambda: fake.connections == 1)
        fake.stall()
        await fake.push(30)
        assert fake.sent_frames == 0 and fake.connections == 1

        fake.resume()
        frames = [orjson.loads(await ws.recv())["data"] for _ in range(fake.sent_frames)]
    assert frames and all(b["U"] == a["u"] + 1 for a, b in itertools.pairwise(frames))
    assert frames[-1]["u"] == fake.update_id("BTCUSDT")


async def test_binance_stall_with_pings_leaves_pings_unanswered_until_resume() -> None:
    async with FakeBinance("spot") as fake, connect(fake.ws_url + STREAMS, ping_interval=None) as ws:
        await fake.wait_for(lambda: fake.connections == 1)
        fake.stall(pings=True)
        pong = await ws.ping()
        done, _ = await asyncio.wait({pong}, timeout=0.2)
        assert not done

        fake.resume()
        await pong


async def test_binance_cross_book_next_crosses_the_client_book_only() -> None:
    async with FakeBinance("spot") as fake, connect(fake.ws_url + "/stream?streams=btcusdt@depth") as ws, \
            aiohttp.ClientSession() as http:
        _, snap, _ = await get_depth(http, fake, limit=5000)
        await fake.wait_for(lambda: fake.connections == 1)
        sync = BinanceSync(False, snap)
        fake.cross_book_next()
        while not fake.sent_frames:
            await fake.push(1)
        assert sync.on_depth(orjson.loads(await ws.recv())["data"]) == "applied"

    assert sync.book.crossed() and not fake.books["BTCUSDT"].crossed()


async def test_binance_hold_rest_answers_with_the_book_at_release() -> None:
    async with FakeBinance("spot") as fake, aiohttp.ClientSession() as http:
        fake.hold_rest()
        task = asyncio.create_task(get_depth(http, fake))
        await fake.wait_for(lambda: fake.rest_waiting == 1)
        await fake.push(10)
        assert not task.done()
        fake.release_rest()
        _, snap, _ = await task
    assert snap["lastUpdateId"] == fake.update_id("BTCUSDT")


async def test_binance_stream_paces_events_and_notes_send_times() -> None:
    async with FakeBinance("spot") as fake, connect(fake.ws_url + "/stream?streams=btcusdt@depth") as ws:
        await fake.wait_for(lambda: fake.connections == 1)
        fake.start_stream(2000)
        await fake.wait_for(lambda: fake.sent_frames >= 50)
        await fake.stop_stream()
        frames = [orjson.loads(await ws.recv())["data"] for _ in range(fake.sent_frames)]
    assert all(isinstance(fake.send_times["BTCUSDT"][f["u"]], int) for f in frames)


async def test_a_finite_source_ends_the_pushes() -> None:
    class Two:
        def __init__(self) -> None:
            self.events: list[Depth | Print] = [Depth([["100.50", "3.0"]], []), Print("101.00", "0.5", "buy", 1)]

        def start(self) -> BookStart:
            return BookStart([["100.00", "1.0"]], [["101.00", "2.0"]], 10)

        def next_event(self) -> Depth | Print | None:
            return self.events.pop(0) if self.events else None

    async with FakeBinance("spot", source=lambda s: Two()) as fake:
        assert await fake.push(5) == 2
        assert fake.exhausted == {"BTCUSDT"} and fake.update_id("BTCUSDT") == 11
        assert fake.true_book("BTCUSDT")[0][0] == (Decimal("100.50"), Decimal("3.0"))


def test_synthetic_source_is_seeded_and_never_crosses() -> None:
    a, b = SyntheticSource(SPOT, 9), SyntheticSource(SPOT, 9)
    assert a.start() == b.start()
    book = TrueBook(a.start())
    for _ in range(5000):
        ev = a.next_event()
        assert ev == b.next_event()
        if isinstance(ev, Depth):
            book.apply(ev.bids, ev.asks)
            assert not book.crossed()
    assert 10 <= len(book.bids) <= 200 and 10 <= len(book.asks) <= 200


# OKX


async def okx_subscribe(ws: ClientConnection, *args: dict, op: str = "subscribe") -> None:
    await ws.send(orjson.dumps({"op": op, "args": list(args)}).decode())


@pytest.mark.parametrize("source", ["synthetic", "recorded"])
async def test_okx_snapshot_and_updates_rebuild_the_true_book_and_checksums_verify(source, request) -> None:
    use_source(source, request)
    async with FakeOkx(source=source) as fake, connect(fake.ws_url) as ws:
        await okx_subscribe(ws, BOOKS, TRADES)
        await fake.wait_for(lambda: fake.subscribers("BTC-USDT", "trades") == 1)
        acks = [orjson.loads(await ws.recv()) for _ in range(3)]
        snap = acks.pop(1)
        (data,) = snap["data"]
        book, seq = DictBook(data["bids"], data["asks"]), data["seqId"]

        assert [a["event"] for a in acks] == ["subscribe", "subscribe"] and acks[0]["arg"] == BOOKS
        assert snap["action"] == "snapshot" and data["prevSeqId"] == -1 and crc_okx(book) == data["checksum"]
        assert book.levels() == fake.true_book("BTC-USDT") and len(data["bids"]) <= 400
        updates = 0
        while updates < 60:
            before = fake.sent_frames
            assert await fake.push(1) == 1
            for msg in await recv_new(ws, fake, before):
                if msg["arg"]["channel"] == "trades":
                    assert set(msg["data"][0]) >= {"tradeId", "px", "sz", "side", "ts"}
                    continue
                (d,) = msg["data"]
                assert msg["action"] == "update" and d["prevSeqId"] == seq
                book.apply(d["bids"], d["asks"])
                assert crc_okx(book) == d["checksum"]
                assert book.levels() == fake.true_book("BTC-USDT")
                seq = d["seqId"]
                updates += 1


async def test_okx_checksums_equal_the_recorded_ones(shared_data) -> None:
    async with FakeOkx(source="recorded") as fake:
        while await fake.push(100):
            pass
    assert (fake.checksums_compared, fake.checksum_mismatches) == (97, 0)


async def test_okx_unsubscribe_then_subscribe_sends_a_fresh_snapshot() -> None:
    async with FakeOkx() as fake, connect(fake.ws_url) as ws:
        await okx_subscribe(ws, BOOKS)
        for _ in range(2):
            await ws.recv()
        await okx_subscribe(ws, BOOKS, op="unsubscribe")
        assert orjson.loads(await ws.recv())["event"] == "unsubscribe"
        before = fake.sent_frames
        await fake.push(10)
        assert fake.sent_frames == before

        await okx_subscribe(ws, BOOKS)
        ack, snap = orjson.loads(await ws.recv()), orjson.loads(await ws.recv())
    assert ack["event"] == "subscribe" and snap["action"] == "snapshot"
    assert DictBook(snap["data"][0]["bids"], snap["data"][0]["asks"]).levels() == fake.true_book("BTC-USDT")
    assert snap["data"][0]["seqId"] == fake.update_id("BTC-USDT")


async def okx_book_client(fake: FakeOkx, ws: ClientConnection) -> tuple[DictBook, int]:
    await okx_subscribe(ws, BOOKS)
    await ws.recv()
    (data,) = orjson.loads(await ws.recv())["data"]
    return DictBook(data["bids"], data["asks"]), data["seqId"]


async def next_update(fake: FakeOkx, ws: ClientConnection) -> dict:
    while True:
        before = fake.sent_frames
        await fake.push(1)
        for msg in await recv_new(ws, fake, before):
            if msg.get("action") == "update":
                return msg["data"][0]


async def test_okx_corrupt_next_fails_the_client_checksum_only() -> None:
    async with FakeOkx() as fake, connect(fake.ws_url) as ws:
        book, _ = await okx_book_client(fake, ws)
        fake.corrupt_next()
        d = await next_update(fake, ws)
        book.apply(d["bids"], d["asks"])
        true = DictBook(fake.books["BTC-USDT"].bids.top(), fake.books["BTC-USDT"].asks.top())

    assert crc_okx(book) != d["checksum"] and crc_okx(true) == d["checksum"]
    assert book.levels()[0][0][1] != fake.true_book("BTC-USDT")[0][0][1]


async def test_okx_drop_next_breaks_the_seq_chain() -> None:
    async with FakeOkx() as fake, connect(fake.ws_url) as ws:
        _, seq = await okx_book_client(fake, ws)
        fake.drop_next()
        d = await next_update(fake, ws)
    assert d["prevSeqId"] != seq and d["prevSeqId"] > seq


async def test_okx_disconnect_stall_ping_and_errors() -> None:
    async with FakeOkx() as fake, connect(fake.ws_url) as ws:
        await ws.send("ping")
        assert await ws.recv() == "pong"
        await okx_subscribe(ws, {"channel": "books", "instId": "ETH-USDT"})
        err = orjson.loads(await ws.recv())
        assert (err["event"], err["code"]) == ("error", "60018") and "ETH-USDT" in err["msg"]

        fake.stall()
        await ws.send("ping")
        await okx_subscribe(ws, BOOKS)
        await fake.wait_for(lambda: fake.subscribers("BTC-USDT", "books") == 1)
        await fake.push(5)
        assert fake.sent_frames == 2
        fake.resume()
        frames = [await ws.recv() for _ in range(fake.sent_frames - 2)]
        assert frames[0] == "pong" and orjson.loads(frames[1])["event"] == "subscribe"
        assert orjson.loads(frames[2])["action"] == "snapshot"

        fake.send_malformed()
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(await ws.recv())
        assert orjson.loads(await ws.recv())["data"][0]["asks"] == "none"

        fake.disconnect()
        with pytest.raises(ConnectionClosedError):
            await ws.recv()
    assert fake.connections == 0
