"""The Kraken adapter: ten pairs of real captured `book-1000` traffic verify checksum by checksum, a book
that goes wrong is resubscribed and rebuilt, the book is kept to the subscribed depth, bad frames."""

from __future__ import annotations

import re
import zlib
from decimal import Decimal
from pathlib import Path

import numpy as np
import orjson
import pytest

from daemon.book.sync import BookState
from daemon.config import settings_from_dict
from daemon.events import BookDelta, BookReset, BookSnapshot, Side, Trade
from daemon.instruments import Instrument
from daemon.replay import replay_files
from daemon.report import build_report
from daemon.sources.recording import RecordingWriter
from daemon.venues import CH_MARKER, DecodeError, Resubscribe, adapter_for
from daemon.venues.checksum import FeedState
from daemon.venues.kraken import DEFAULT_WS_URL, KrakenAdapter, resubscribe_frames, subscribe_frames
from tests.venues.cryptofeed_capture import CaptureReplay, expected_final_book, merged_frames

# Every pair on the grid of the decimals its book strings carry, but XMR/USD on its real 0.01 tick,
# which the venue writes with 8 decimals.
DECIMALS = {"XMR/USD": 2, "SC/EUR": 6, "WAVES/EUR": 6, "ETH/CHF": 5, "KSM/XBT": 8, "OCEAN/XBT": 9, "XBT/CHF": 5,
            "OMG/USD": 6, "ADA/XBT": 9, "GRT/ETH": 9, "X/Y": 1}
INSTRUMENTS = {p: Instrument(p, float(Decimal(1).scaleb(-d)), 1e-8) for p, d in DECIMALS.items()}
UPDATES = {"XMR/USD": 846, "SC/EUR": 818, "WAVES/EUR": 576, "OMG/USD": 573, "ADA/XBT": 347, "KSM/XBT": 335,
           "ETH/CHF": 317, "XBT/CHF": 289, "OCEAN/XBT": 148, "GRT/ETH": 20}
PAIR = "XMR/USD"
P = "X/Y"  # the synthetic pair


def kraken(depth: int = 1000) -> KrakenAdapter:
    return KrakenAdapter(INSTRUMENTS.__getitem__, depth)


def frames(shared_data: Path):
    folder = shared_data / "kraken_xmrusd"
    return merged_frames(folder / "KRAKEN.ws.50.0", folder / "KRAKEN.ws.48.0")


class StrBook:
    """A plain book of the venue's strings, truncated to depth, to compute Kraken's checksum apart from depthd."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.asks: dict[Decimal, tuple[str, str]] = {}
        self.bids: dict[Decimal, tuple[str, str]] = {}

    def apply(self, asks: list, bids: list) -> str:
        for side, rows in ((self.asks, asks), (self.bids, bids)):
            for p, q, *_ in rows:
                if Decimal(q) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = (p, q)
        for side, reverse in ((self.asks, False), (self.bids, True)):
            for p in sorted(side, reverse=reverse)[self.depth:]:
                del side[p]
        top = [self.asks[p] for p in sorted(self.asks)[:10]] + [self.bids[p] for p in sorted(self.bids)[::-1][:10]]
        text = "".join(x.replace(".", "").lstrip("0") for level in top for x in level)
        return str(zlib.crc32(text.encode()))


def snapshot_frame(asks: list, bids: list, pair: str = P, depth: int = 1000) -> list:
    return [1, {"as": asks, "bs": bids}, f"book-{depth}", pair]


def update_frame(strbook: StrBook | None, asks: list, bids: list, pair: str = P, depth: int = 1000) -> list:
    c = {"c": strbook.apply(asks, bids)} if strbook is not None else {}
    if asks and bids:
        return [1, {"a": asks}, {"b": bids, **c}, f"book-{depth}", pair]
    return [1, {"a": asks, **c} if asks else {"b": bids, **c}, f"book-{depth}", pair]


def lv(price: str, volume: str, t: str = "1618678133.365913") -> list:
    return [price, volume, t]


def parsed(raw: bytes):
    return orjson.loads(raw)


# --- real data ---------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_every_captured_book_message_of_ten_pairs_passes_its_checksum(shared_data: Path) -> None:
    replay = CaptureReplay(kraken())

    replay.feed_all(frames(shared_data))

    checks = {s: (y.checksum_checks, y.checksum_failures, y.state) for s, y in replay.syncs.items()}
    assert checks == {p: (n, 0, BookState.LIVE) for p, n in UPDATES.items()}
    assert replay.adapter.take_requests() == [] and replay.adapter.decode_errors == 0 and not replay.resets


@pytest.mark.shared_data
def test_final_xmr_usd_book_equals_the_independent_reference(shared_data: Path) -> None:
    replay = CaptureReplay(kraken())
    replay.feed_all(frames(shared_data))
    ref = expected_final_book(shared_data / "kraken_xmrusd" / "expected_final_book.txt")
    book, inst = replay.syncs[PAIR].book, INSTRUMENTS[PAIR]

    bp, bq, ap, aq = book.top(5)
    assert [(inst.price(p), inst.qty(q)) for p, q in zip(bp, bq, strict=True)] == ref["bids"]
    assert [(inst.price(p), inst.qty(q)) for p, q in zip(ap, aq, strict=True)] == ref["asks"]
    assert (book.n_bid, book.n_ask) == ref["depth"] == (657, 426)


@pytest.mark.shared_data
def test_trades_carry_the_taker_side_and_venue_time(shared_data: Path) -> None:
    replay = CaptureReplay(kraken())
    replay.feed_all(frames(shared_data))
    text = (shared_data / "kraken_xmrusd" / "expected_final_book.txt").read_text()
    ref = re.search(r"trade_qty: buy=(\S+) sell=(\S+)", text).groups()  # sums printed to 8 significant digits
    xmr = [t for t in replay.trades if t.symbol == PAIR]

    assert len(replay.trades) == 10 and len(xmr) == 4
    sums = [sum(t.qty for t in xmr if t.side is side) / 10**8 for side in (Side.BUY, Side.SELL)]
    assert tuple(f"{x:.8g}" for x in sums) == ref
    assert xmr[0] == Trade(PAIR, 1618678142_557535000, xmr[0].ts_recv, 35411, 89594024, Side.SELL)


@pytest.mark.shared_data
def test_a_corrupted_level_is_resubscribed_and_the_fresh_snapshot_verifies_onward(shared_data: Path) -> None:
    true, bad = CaptureReplay(kraken()), CaptureReplay(kraken())
    inst = INSTRUMENTS[PAIR]
    corrupted = resnapped = False
    dropped = after = 0
    for ts, raw in frames(shared_data):
        true.feed(ts, raw)
        msg = parsed(raw)
        is_update = type(msg) is list and msg[-1] == PAIR and msg[-2] == "book-1000" and "c" in msg[-3]
        if not is_update:
            bad.feed(ts, raw)
        elif not corrupted:
            top_asks = set(true.syncs[PAIR].book.top(10)[2].tolist())
            row = next((r for r in msg[1].get("a", []) if Decimal(r[1]) and inst.tick(float(r[0])) in top_asks),
                       None)
            if row is not None and true.syncs[PAIR].checksum_checks > 100:
                row[1] = f"{Decimal(row[1]) + Decimal('1e-8'):.8f}"
                raw = orjson.dumps(msg)
                corrupted = True
            bad.feed(ts, raw)
            if corrupted:
                assert bad.syncs[PAIR].state is BookState.INVALID
                assert bad.adapter.take_requests() == [Resubscribe(PAIR, "checksum")]
                assert bad.adapter.state(PAIR) is FeedState.RESYNC
        elif dropped < 20:
            assert bad.feed(ts, raw) == []
            dropped += 1
        else:
            if not resnapped:  # the venue's answer to the resubscription: the book as it is now
                bp, bq, ap, aq = true.syncs[PAIR].book.top(1000)
                rows = lambda px, qty: [[f"{Decimal(int(p)) / 100:.8f}", f"{Decimal(int(q)) / 10**8:.8f}",  # noqa: E731
                                         "1618678150.000000"] for p, q in zip(px, qty, strict=True)]
                (snap,) = bad.feed(ts - 1, snapshot_frame(rows(ap, aq), rows(bp, bq), PAIR))
                assert isinstance(snap, BookSnapshot) and bad.syncs[PAIR].state is BookState.LIVE
                resnapped = True
            bad.feed(ts, raw)
            after += 1

    sync = bad.syncs[PAIR]
    assert corrupted and resnapped and after > 100
    assert sync.state is BookState.LIVE and sync.checksum_failures == 1
    assert sync.checksum_checks == UPDATES[PAIR] - dropped
    assert bad.adapter.dropped[PAIR] == dropped and bad.adapter.take_requests() == []
    for mine, theirs in zip(sync.book.top(1000), true.syncs[PAIR].book.top(1000), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert bad.adapter.health.symbol(PAIR).resyncs == 1 and bad.adapter.health.symbol(PAIR).in_sync


@pytest.mark.shared_data
def test_a_recording_of_the_capture_replays_through_the_whole_path(shared_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "kraken.rec.zst"
    with RecordingWriter(path, "kraken", list(UPDATES)) as rec:
        for ts, raw in frames(shared_data):
            rec.write(ts, "ws", "", raw)
    grids = {s: {"tick_size": i.tick_size, "lot_size": i.lot_size} for s, i in INSTRUMENTS.items() if s in UPDATES}
    settings = settings_from_dict({"daemon": {"log_level": "error"}, "instruments": grids})

    report = build_report(replay_files(settings, [path]))

    ref = expected_final_book(shared_data / "kraken_xmrusd" / "expected_final_book.txt")
    book = report["book"][PAIR]
    assert [tuple(x) for x in book["final"]["bids"]] == ref["bids"]
    assert [tuple(x) for x in book["final"]["asks"]] == ref["asks"]
    assert (book["depth"]["bids"], book["depth"]["asks"]) == ref["depth"]
    assert all(report["book"][p]["state"] == "LIVE" and report["book"][p]["states"]["INVALID"] == 0 for p in UPDATES)
    assert report["events"]["trade"] == 10


# --- depth -------------------------------------------------------------------------------------


def test_the_book_is_kept_to_the_subscribed_depth() -> None:
    strbook = StrBook(10)
    bids = [lv(f"{100 - i}.0", "1.00000000") for i in range(10)]
    asks = [lv(f"{101 + i}.0", "1.00000000") for i in range(10)]
    strbook.apply(asks, bids)
    replay = CaptureReplay(kraken(depth=10))
    replay.feed(1, snapshot_frame(asks, bids, depth=10))

    replay.feed(2, update_frame(strbook, [lv("100.5", "2.00000000")], [lv("100.4", "3.00000000")], depth=10))
    book = replay.syncs[P].book
    assert (book.n_bid, book.n_ask) == (10, 10)
    assert book.top(10)[0][-1] == 920 and book.top(10)[2][-1] == 1090  # 91.0 and 110.0 fell out of the window

    replay.feed(3, update_frame(strbook, [], [lv("100.4", "0.00000000")], depth=10))  # 9 bids at the venue now
    sync = replay.syncs[P]
    assert sync.book.n_bid == 9 and sync.state is BookState.LIVE
    assert (sync.checksum_checks, sync.checksum_failures) == (2, 0)
    assert replay.adapter.max_depth(P) == 10


def test_a_book_channel_of_another_depth_is_refused() -> None:
    with pytest.raises(DecodeError, match="book-25 frame, but the subscribed book is book-10"):
        kraken(depth=10).decode(1, "", "ws", snapshot_frame([lv("1.0", "1.0")], [], depth=25))
    with pytest.raises(ValueError, match="depth"):
        kraken(depth=50)


# --- frames ------------------------------------------------------------------------------------


def test_an_update_in_two_parts_is_one_delta_with_the_checksum_of_the_last() -> None:
    strbook = StrBook(1000)
    asks, bids = [lv("101.0", "1.00000000")], [lv("100.0", "1.00000000")]
    strbook.apply(asks, bids)
    adapter = kraken()
    adapter.decode(1, "", "ws", snapshot_frame(asks, bids))
    frame = update_frame(strbook, [lv("101.5", "2.00000000", "1618678140.5")],
                         [lv("100.5", "3.00000000", "1618678139")])

    (ev,) = adapter.decode(2, "", "ws", orjson.dumps(frame))

    assert isinstance(ev, BookDelta) and len(frame) == 5
    assert (ev.ask_px.tolist(), ev.ask_qty.tolist(), ev.bid_px.tolist()) == ([1015], [200_000_000], [1005])
    assert ev.checksum == int(frame[2]["c"]) and ev.ts_venue == 1618678140_500000000 and ev.ts_recv == 2


def test_updates_before_a_snapshot_are_dropped_and_a_disconnect_resets_the_book() -> None:
    adapter = kraken()
    assert adapter.decode(1, "", "ws", update_frame(None, [lv("1.0", "1.0")], [])) == []
    adapter.decode(2, "", "ws", snapshot_frame([lv("1.1", "1.0")], [lv("1.0", "1.0")]))

    resets = adapter.decode(3, "", CH_MARKER, {"event": "disconnected"})

    assert resets == [BookReset(P, 3, 3, "disconnect")]
    assert adapter.decode(4, "", "ws", update_frame(None, [lv("1.0", "2.0")], [])) == []
    assert adapter.dropped[P] == 2 and adapter.state(P) is FeedState.WAIT and adapter.take_requests() == []


def test_status_frames_give_no_events() -> None:
    adapter = kraken()
    for msg in ({"event": "heartbeat"}, {"event": "systemStatus", "status": "online", "version": "1.8.3"},
                {"channelID": 992, "channelName": "book-1000", "event": "subscriptionStatus", "pair": PAIR,
                 "status": "subscribed", "subscription": {"depth": 1000, "name": "book"}}):
        assert adapter.decode(1, "", "ws", msg) == []


def test_a_subscription_error_names_the_pair_and_the_message() -> None:
    msg = {"errorMessage": "Currency pair not supported", "event": "subscriptionStatus", "pair": "XMR/EUX",
           "status": "error", "subscription": {"name": "book"}}

    with pytest.raises(DecodeError, match=r"XMR/EUX.*Currency pair not supported"):
        kraken().decode(1, "", "ws", msg)


GOOD_UPDATE = [1, {"a": [lv("1.1", "2.0")], "c": "123"}, "book-1000", P]


@pytest.mark.parametrize(
    ("msg", "problem"),
    [
        (b"[1, {", "invalid JSON"),
        ([1, {"a": []}, "book-1000"], "4-5 element channel array"),
        ([1, {"a": []}, "book-1000", 7], "must be strings"),
        ([1, {"a": []}, "spread", P], "unexpected channel 'spread'"),
        ([1, "x", "book-1000", P], "payloads must be objects"),
        ([1, {"a": [], "z": 1}, "book-1000", P], "unexpected keys in a book update: ['z']"),
        ([1, {"a": "1.1"}, "book-1000", P], "'a' must be a list"),
        ([1, {"a": [["1.1", "2.0"]]}, "book-1000", P], "not a list of 3 or 4 fields"),
        ([1, {"a": [["x", "2.0", "1.0"]]}, "book-1000", P], "not a number"),
        ([1, {"a": [["1.15", "2.0", "1.0"]]}, "book-1000", P], "off the tick grid"),
        ([1, {"a": [["1.1", "2.0", "soon"]]}, "book-1000", P], "time must be a string of decimal seconds"),
        ([1, {"a": [lv("1.1", "2.0")], "c": "-5"}, "book-1000", P], "checksum 'c' must be an unsigned 32-bit"),
        ([1, {"a": [lv("1.1", "2.0")], "c": str(1 << 32)}, "book-1000", P], "unsigned 32-bit"),
        ([1, {"as": [], "bs": []}, {"a": []}, "book-1000", P], "a snapshot is one object"),
        ([1, [["1.1", "2.0", "1.0", "x", "l", ""]], "trade", P], "side must be 'b' or 's'"),
        ([1, [["1.1", "2.0", "1.0", "b"]], "trade", P], "trades must be"),
        ({"event": "error", "errorMessage": "Malformed request"}, "Malformed request"),
        ({"event": "book"}, "unknown event 'book'"),
    ],
)
def test_a_malformed_frame_is_a_decode_error_and_changes_nothing(msg: object, problem: str) -> None:
    strbook = StrBook(1000)
    asks, bids = [lv("1.1", "1.00000000")], [lv("1.0", "1.00000000")]
    strbook.apply(asks, bids)
    replay = CaptureReplay(kraken())
    replay.feed(1, snapshot_frame(asks, bids))

    with pytest.raises(DecodeError, match=re.escape(problem)):
        replay.feed(2, msg)

    assert replay.adapter.decode_errors == 1 and replay.adapter.state(P) is FeedState.LIVE
    replay.feed(3, update_frame(strbook, [lv("1.1", "2.00000000")], []))
    sync = replay.syncs[P]
    assert sync.state is BookState.LIVE and (sync.checksum_checks, sync.checksum_failures) == (1, 0)
    assert sync.book.best_ask() == (11, 200_000_000)


# --- live helpers ------------------------------------------------------------------------------


def test_subscribe_and_resubscribe_frames() -> None:
    book, trade = subscribe_frames(["XMR/USD", "XBT/USD"])

    pairs = ["XMR/USD", "XBT/USD"]
    assert book == {"event": "subscribe", "pair": pairs, "subscription": {"name": "book", "depth": 1000}}
    assert trade == {"event": "subscribe", "pair": pairs, "subscription": {"name": "trade"}}
    assert resubscribe_frames(PAIR, depth=10) == [
        {"event": "unsubscribe", "pair": [PAIR], "subscription": {"name": "book", "depth": 10}},
        {"event": "subscribe", "pair": [PAIR], "subscription": {"name": "book", "depth": 10}}]
    assert DEFAULT_WS_URL == "wss://ws.kraken.com"


def test_the_venue_registry_builds_the_kraken_adapter() -> None:
    adapter = adapter_for("kraken", INSTRUMENTS.__getitem__)

    assert isinstance(adapter, KrakenAdapter) and adapter.max_depth(PAIR) == 1000
    assert adapter.verifier(PAIR) is adapter.checksum(PAIR)
