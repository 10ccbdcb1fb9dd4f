"""The OKX adapter: real captured `books` traffic verifies checksum by checksum, and a book that goes
wrong is thrown away, resubscribed and rebuilt; sequence gaps, disconnects and bad frames."""

from __future__ import annotations

import copy
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
from daemon.venues import CH_MARKER, DecodeError, Resubscribe, ResyncPolicy, adapter_for
from daemon.venues.checksum import FeedState
from daemon.venues.okx import DEFAULT_WS_URL, OkxAdapter, resubscribe_frames, subscribe_frames
from tests.venues.cryptofeed_capture import CaptureReplay, expected_final_book, received_frames

INSTRUMENTS = {
    "BTC-USDT": Instrument("BTC-USDT", 0.1, 1e-8),
    "BTC-USD-220527": Instrument("BTC-USD-220527", 0.1, 1.0),
    "UNI-USD-SWAP": Instrument("UNI-USD-SWAP", 0.001, 1.0),
}
SYM = "BTC-USDT"
CAPTURE = "okx_btcusdt/OKX.ws.1.0"


def okx(policy: ResyncPolicy | None = None) -> OkxAdapter:
    return OkxAdapter(INSTRUMENTS.__getitem__, policy)


def book_frame(action: str, bids: list, asks: list, symbol: str = SYM, ts: str = "1652459225000", **extra) -> dict:
    rows = lambda levels: [[p, q, "0", "1"] for p, q in levels]  # noqa: E731
    return {"arg": {"channel": "books", "instId": symbol}, "action": action,
            "data": [{"bids": rows(bids), "asks": rows(asks), "ts": ts, **extra}]}


class StrBook:
    """A plain book of the venue's own strings, to compute OKX's checksum independently of depthd."""

    def __init__(self) -> None:
        self.sides: dict[str, dict[Decimal, str]] = {"bids": {}, "asks": {}}

    def apply(self, frame: dict) -> int:
        d = frame["data"][0]
        if frame["action"] == "snapshot":
            self.sides = {"bids": {}, "asks": {}}
        for side, levels in self.sides.items():
            for p, q, *_ in d[side]:
                if q == "0":
                    levels.pop(Decimal(p), None)
                else:
                    levels[Decimal(p)] = f"{p}:{q}"
        bids = [self.sides["bids"][p] for p in sorted(self.sides["bids"], reverse=True)[:25]]
        asks = [self.sides["asks"][p] for p in sorted(self.sides["asks"])[:25]]
        parts = [x for i in range(25) for x in (bids[i:i + 1] + asks[i:i + 1])]
        crc = zlib.crc32(":".join(parts).encode())
        return crc - (1 << 32) if crc >= 1 << 31 else crc


def with_checksum(strbook: StrBook, frame: dict) -> dict:
    frame["data"][0]["checksum"] = strbook.apply(frame)
    return frame


def shortest(d: Decimal) -> str:
    return format(d.normalize(), "f")


def parsed(raw: bytes) -> dict:
    return orjson.loads(raw)


def is_book(msg: dict, symbol: str = SYM) -> bool:
    return "action" in msg and msg["arg"]["channel"] == "books" and msg["arg"]["instId"] == symbol


# --- real data ---------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_every_captured_book_message_passes_its_checksum(shared_data: Path) -> None:
    replay = CaptureReplay(okx())

    replay.feed_all(received_frames(shared_data / CAPTURE))

    checks = {s: (y.checksum_checks, y.checksum_failures, y.state) for s, y in replay.syncs.items()}
    assert checks == {"BTC-USDT": (98, 0, BookState.LIVE), "BTC-USD-220527": (99, 0, BookState.LIVE),
                      "UNI-USD-SWAP": (93, 0, BookState.LIVE)}
    assert replay.adapter.take_requests() == []
    assert replay.adapter.decode_errors == 0 and not replay.resets


@pytest.mark.shared_data
def test_final_btc_usdt_book_equals_the_independent_reference(shared_data: Path) -> None:
    replay = CaptureReplay(okx())
    replay.feed_all(received_frames(shared_data / CAPTURE))
    ref = expected_final_book(shared_data / "okx_btcusdt" / "expected_final_book.txt")
    book, inst = replay.syncs[SYM].book, INSTRUMENTS[SYM]

    bp, bq, ap, aq = book.top(5)
    assert [(inst.price(p), inst.qty(q)) for p, q in zip(bp, bq, strict=True)] == ref["bids"]
    assert [(inst.price(p), inst.qty(q)) for p, q in zip(ap, aq, strict=True)] == ref["asks"]
    assert (book.n_bid, book.n_ask) == ref["depth"] == (400, 400)


@pytest.mark.shared_data
def test_trades_carry_the_taker_side_and_venue_time(shared_data: Path) -> None:
    replay = CaptureReplay(okx())
    replay.feed_all(received_frames(shared_data / CAPTURE))
    text = (shared_data / "okx_btcusdt" / "expected_final_book.txt").read_text()
    ref = re.search(r"trade_qty: buy=(\S+) sell=(\S+)", text).groups()  # sums printed to 8 significant digits
    snapshot_ts = next(ts for ts, raw in received_frames(shared_data / CAPTURE) if b'"action":"snapshot"' in raw
                       and b'"BTC-USDT"' in raw)
    after = [t for t in replay.trades if t.symbol == SYM and t.ts_recv >= snapshot_ts]

    assert len(after) == 68  # the reference drops the one trade received before the snapshot
    sums = [sum(t.qty for t in after if t.side is side) / 10**8 for side in (Side.BUY, Side.SELL)]
    assert tuple(f"{x:.8g}" for x in sums) == ref
    assert replay.trades[0] == Trade("BTC-USD-220527", 1652459199958_000_000, replay.trades[0].ts_recv, 302188, 1,
                                     Side.BUY)


@pytest.mark.shared_data
def test_a_corrupted_level_fails_the_checksum_and_a_fresh_snapshot_repairs_the_book(shared_data: Path) -> None:
    true, bad = CaptureReplay(okx()), CaptureReplay(okx())
    corrupted_at = None
    dropped = 0
    last_checksum = None
    for ts, raw in received_frames(shared_data / CAPTURE):
        true.feed(ts, raw)
        msg = parsed(raw)
        if not is_book(msg) or msg["action"] != "update":
            bad.feed(ts, raw)
            continue
        last_checksum = msg["data"][0]["checksum"]
        if corrupted_at is not None:
            assert bad.feed(ts, raw) == []  # dropped until the resubscription's snapshot
            dropped += 1
            continue
        top_bids = set(true.syncs[SYM].book.top(25)[0].tolist())
        row = next((r for r in msg["data"][0]["bids"] if r[1] != "0" and round(float(r[0]) * 10) in top_bids), None)
        if row is None:
            bad.feed(ts, raw)
            continue
        row[1] = shortest(Decimal(row[1]) + Decimal("1e-8"))  # one lot more: still a valid level
        bad.feed(ts, orjson.dumps(msg))
        corrupted_at = ts
        sync, adapter = bad.syncs[SYM], bad.adapter
        assert sync.state is BookState.INVALID and sync.checksum_failures == 1
        assert adapter.take_requests() == [Resubscribe(SYM, "checksum")]
        assert adapter.state(SYM) is FeedState.RESYNC
        health = adapter.health.symbol(SYM)
        assert (health.resyncs, health.checksum_failures, health.untradeable) == (1, 1, False)
    assert corrupted_at is not None and dropped > 10
    assert bad.adapter.dropped[SYM] == dropped
    assert all(bad.syncs[s].state is BookState.LIVE and bad.syncs[s].checksum_failures == 0
               for s in ("BTC-USD-220527", "UNI-USD-SWAP"))

    book, inst = true.syncs[SYM].book, INSTRUMENTS[SYM]
    bp, bq, ap, aq = book.top(400)
    levels = lambda px, qty: [(shortest(Decimal(int(p)) * Decimal("0.1")), shortest(Decimal(int(q)) / 10**8))  # noqa: E731
                              for p, q in zip(px, qty, strict=True)]
    snapshot = book_frame("snapshot", levels(bp, bq), levels(ap, aq), checksum=last_checksum)
    checks_before = bad.syncs[SYM].checksum_checks
    (ev,) = bad.feed(corrupted_at + 1, orjson.dumps(snapshot))

    sync = bad.syncs[SYM]
    assert isinstance(ev, BookSnapshot) and sync.state is BookState.LIVE
    assert sync.checksum_checks == checks_before + 1 and sync.checksum_failures == 1
    assert bad.adapter.state(SYM) is FeedState.LIVE and bad.adapter.take_requests() == []
    for mine, theirs in zip(sync.book.top(400), book.top(400), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert inst.price(sync.book.best_bid_px) == inst.price(book.best_bid_px)


@pytest.mark.shared_data
def test_a_snapshot_that_fails_its_checksum_is_resubscribed(shared_data: Path) -> None:
    replay = CaptureReplay(okx())
    ts, raw = next((ts, raw) for ts, raw in received_frames(shared_data / CAPTURE)
                   if b'"action":"snapshot"' in raw and b'"BTC-USDT"' in raw)
    msg = parsed(raw)
    msg["data"][0]["checksum"] += 1

    replay.feed(ts, orjson.dumps(msg))

    assert replay.syncs[SYM].state is BookState.INVALID
    assert replay.adapter.take_requests() == [Resubscribe(SYM, "checksum")]
    assert replay.adapter.health.symbol(SYM).checksum_failures == 1


@pytest.mark.shared_data
def test_a_recording_of_the_capture_replays_through_the_whole_path(shared_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "okx.rec.zst"
    with RecordingWriter(path, "okx", list(INSTRUMENTS)) as rec:
        for ts, raw in received_frames(shared_data / CAPTURE):
            rec.write(ts, "ws", "", raw)
    grids = {s: {"tick_size": i.tick_size, "lot_size": i.lot_size} for s, i in INSTRUMENTS.items()}
    settings = settings_from_dict({"daemon": {"log_level": "error"}, "instruments": grids})

    report = build_report(replay_files(settings, [path]))

    ref = expected_final_book(shared_data / "okx_btcusdt" / "expected_final_book.txt")
    book = report["book"][SYM]
    assert [tuple(x) for x in book["final"]["bids"]] == ref["bids"]
    assert [tuple(x) for x in book["final"]["asks"]] == ref["asks"]
    assert book["state"] == "LIVE" and book["states"]["INVALID"] == 0 and book["absent_deletes"] == 424
    assert all(report["book"][s]["states"]["INVALID"] == 0 for s in INSTRUMENTS)


# --- sequence ids ------------------------------------------------------------------------------


def test_a_prev_seq_id_that_skips_is_a_gap_and_updates_wait_for_the_next_snapshot() -> None:
    adapter = okx()
    (snap,) = adapter.decode(1, "", "ws", book_frame("snapshot", [("100", "1")], [("101", "1")],
                                                     seqId=10, prevSeqId=-1))
    (delta,) = adapter.decode(2, "", "ws", book_frame("update", [("100", "2")], [], seqId=12, prevSeqId=10))

    (reset,) = adapter.decode(3, "", "ws", book_frame("update", [("100", "3")], [], seqId=15, prevSeqId=13))
    dropped = adapter.decode(4, "", "ws", book_frame("update", [("100", "4")], [], seqId=16, prevSeqId=15))
    (again,) = adapter.decode(5, "", "ws", book_frame("snapshot", [("100", "5")], [("101", "1")],
                                                      seqId=20, prevSeqId=-1))

    assert (snap.seq, delta.seq) == (10, 12) and isinstance(delta, BookDelta)
    assert reset == BookReset(SYM, 1652459225000_000_000, 3, "gap")
    assert dropped == [] and adapter.dropped[SYM] == 1
    assert adapter.take_requests() == [Resubscribe(SYM, "gap")]
    assert adapter.health.symbol(SYM).gaps == 1 and adapter.health.symbol(SYM).resyncs == 1
    assert isinstance(again, BookSnapshot) and again.seq == 20 and adapter.state(SYM) is FeedState.LIVE


def test_keepalive_and_maintenance_reset_of_seq_ids_are_not_gaps() -> None:
    adapter = okx()
    adapter.decode(1, "", "ws", book_frame("snapshot", [("100", "1")], [("101", "1")], seqId=10, prevSeqId=-1))

    keepalive = adapter.decode(2, "", "ws", book_frame("update", [], [], seqId=10, prevSeqId=10))
    reset = adapter.decode(3, "", "ws", book_frame("update", [("100", "2")], [], seqId=3, prevSeqId=10))
    after = adapter.decode(4, "", "ws", book_frame("update", [("100", "3")], [], seqId=4, prevSeqId=3))

    assert [type(e) for e in keepalive + reset + after] == [BookDelta] * 3
    assert adapter.health.symbol(SYM).gaps == 0 and adapter.take_requests() == []


# --- connection, resync policy -----------------------------------------------------------------


def test_a_disconnect_resets_every_book_and_waits_for_snapshots() -> None:
    adapter = okx()
    adapter.decode(1, "", "ws", book_frame("snapshot", [("100", "1")], [("101", "1")]))
    adapter.decode(1, "", "ws", book_frame("snapshot", [("5", "1")], [("6", "1")], symbol="UNI-USD-SWAP"))

    resets = adapter.decode(2, "", CH_MARKER, {"event": "disconnected", "symbols": [SYM]})
    late = adapter.decode(3, "", "ws", book_frame("update", [("100", "2")], []))

    assert resets == [BookReset(SYM, 2, 2, "disconnect"), BookReset("UNI-USD-SWAP", 2, 2, "disconnect")]
    assert late == [] and adapter.state(SYM) is FeedState.WAIT
    assert adapter.take_requests() == []  # the reconnect subscribes everything afresh
    assert adapter.decode(4, "", CH_MARKER, {"event": "connected"}) == []
    assert adapter.decode(5, "", CH_MARKER, {"event": "disconnected"}) == []  # no book left to reset


def test_a_symbol_that_keeps_losing_its_book_becomes_untradeable_then_recovers() -> None:
    second = 1_000_000_000
    adapter = okx(ResyncPolicy(max_resyncs=2, window_ns=10 * second))
    snapshot = book_frame("snapshot", [("100", "1")], [("101", "1")])
    for i in range(3):
        adapter.decode(i * second, "", "ws", snapshot)
        adapter.resync(SYM, "checksum", i * second)
    health = adapter.health.symbol(SYM)

    assert health.untradeable and "3 resyncs" in health.untradeable_reason
    assert adapter.health.untradeable() == [SYM]
    assert adapter.take_requests() == [Resubscribe(SYM, "checksum")] * 3

    adapter.decode(5 * second, "", "ws", snapshot)
    assert health.untradeable  # not yet a whole window since the last resync
    adapter.decode(12 * second, "", "ws", snapshot)
    assert not health.untradeable and adapter.health.untradeable() == []


def test_a_second_loss_while_resubscribing_asks_only_once() -> None:
    adapter = okx()
    adapter.decode(1, "", "ws", book_frame("snapshot", [("100", "1")], [("101", "1")]))

    adapter.resync(SYM, "crossed", 2)
    adapter.resync(SYM, "crossed", 3)

    assert adapter.take_requests() == [Resubscribe(SYM, "crossed")]
    assert adapter.health.symbol(SYM).resyncs == 2


# --- frames ------------------------------------------------------------------------------------


def test_bytes_and_parsed_frames_decode_alike() -> None:
    frame = book_frame("snapshot", [("30236.1", "0.18050747")], [("30236.2", "0.001")], checksum=-5)

    (a,) = okx().decode(1, "", "ws", frame)
    (b,) = okx().decode(1, "", "ws", orjson.dumps(frame))
    (c,) = okx().decode(1, "", "ws", orjson.dumps(frame).decode())

    assert a.bid_px.tolist() == b.bid_px.tolist() == c.bid_px.tolist() == [302361]
    assert a.bid_qty.tolist() == [18050747] and a.ask_qty.tolist() == [100000]
    assert (a.checksum, a.ts_venue, a.seq) == (b.checksum, b.ts_venue, b.seq) == (-5, 1652459225000_000_000, 0)


def test_acks_and_tickers_give_no_events() -> None:
    adapter = okx()
    ack = {"event": "subscribe", "arg": {"channel": "books", "instId": SYM}}
    ticker = {"arg": {"channel": "tickers", "instId": SYM}, "data": [{"instId": SYM, "last": "30236"}]}

    assert adapter.decode(1, "", "ws", ack) == [] and adapter.decode(1, "", "ws", ticker) == []


def test_a_venue_error_names_code_and_message() -> None:
    with pytest.raises(DecodeError, match=r"60012.*Invalid request"):
        okx().decode(1, "", "ws", {"event": "error", "code": "60012", "msg": "Invalid request: {...}"})


def test_trades_decode_each_print() -> None:
    frame = {"arg": {"channel": "trades", "instId": SYM},
             "data": [{"instId": SYM, "tradeId": "1", "px": "30236", "sz": "0.0002", "side": "buy", "ts": "17"},
                      {"instId": SYM, "tradeId": "2", "px": "30235.9", "sz": "1", "side": "sell", "ts": "18"}]}

    assert okx().decode(9, "", "ws", frame) == [Trade(SYM, 17_000_000, 9, 302360, 20000, Side.BUY),
                                                Trade(SYM, 18_000_000, 9, 302359, 100_000_000, Side.SELL)]


GOOD = book_frame("update", [("100", "2")], [])


def broken(path: tuple, value: object) -> dict:
    frame = copy.deepcopy(GOOD)
    target = frame
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return frame


@pytest.mark.parametrize(
    ("msg", "problem"),
    [
        (b'{"arg": {', "invalid JSON"),
        ([1, 2], "expected a JSON object"),
        ({"data": []}, "'event' or 'arg'"),
        (broken(("arg", "instId"), None), "no instId"),
        (broken(("data",), {}), "'data' must be a list"),
        (broken(("arg", "channel"), "candle1m"), "unexpected channel 'candle1m'"),
        (broken(("action",), "partial"), "action must be 'snapshot' or 'update'"),
        (broken(("data",), []), "must hold one object"),
        (broken(("data", 0, "bids"), "100"), "bids must be a list"),
        (broken(("data", 0, "bids"), [["100", "2", "0"]]), "not a list of 4 fields"),
        (broken(("data", 0, "bids"), [["abc", "2", "0", "1"]]), "not a number"),
        (broken(("data", 0, "bids"), [["100.05", "2", "0", "1"]]), "off the tick grid"),
        (broken(("data", 0, "bids"), [["100", "0.000000001", "0", "1"]]), "off the lot grid"),
        (broken(("data", 0, "bids"), [["-100", "1", "0", "1"]]), "not a positive finite number"),
        (broken(("data", 0, "bids"), [["100", "-1", "0", "1"]]), "a size that is negative"),
        (broken(("data", 0, "ts"), 1652459225000), "'ts' must be a string"),
        (broken(("data", 0, "checksum"), "123"), "checksum must be a 32-bit integer"),
        (broken(("data", 0, "seqId"), 5), "seqId and prevSeqId must be integers"),
        ({"event": "bogus"}, "unknown event 'bogus'"),
        (broken(("arg", "instId"), "ETH-USDT"), "no instrument for 'ETH-USDT'"),
        ({"arg": {"channel": "trades", "instId": SYM}, "data": [{"px": "1", "sz": "1", "side": "up", "ts": "1"}]},
         "side must be 'buy' or 'sell'"),
        ({"arg": {"channel": "trades", "instId": SYM}, "data": [{"px": "0", "sz": "1", "side": "buy", "ts": "1"}]},
         "must be positive"),
    ],
)
def test_a_malformed_frame_is_a_decode_error_and_changes_nothing(msg: object, problem: str) -> None:
    strbook = StrBook()
    replay = CaptureReplay(okx())
    replay.feed(1, with_checksum(strbook, book_frame("snapshot", [("100", "1")], [("101", "1")])))

    with pytest.raises(DecodeError, match=re.escape(problem)):
        replay.feed(2, msg)

    assert replay.adapter.decode_errors == 1 and replay.adapter.state(SYM) is FeedState.LIVE
    replay.feed(3, with_checksum(strbook, book_frame("update", [("100", "2")], [])))
    sync = replay.syncs[SYM]
    assert sync.state is BookState.LIVE and sync.checksum_checks == 2 and sync.checksum_failures == 0
    assert sync.book.best_bid() == (1000, 200_000_000)


def test_a_bad_frame_counts_against_the_symbol_the_source_read_off_it() -> None:
    adapter = okx()

    with pytest.raises(DecodeError, match="invalid JSON"):
        adapter.decode(1, SYM, "ws", b'{"arg":{"channel":"books","instId":"BTC-USDT"},')

    assert adapter.decode_errors == 1 and adapter.health.symbol(SYM).decode_errors == 1


def test_a_marker_or_channel_it_does_not_know_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="marker"):
        okx().decode(1, "", CH_MARKER, {"event": "reconnecting"})
    with pytest.raises(DecodeError, match="unknown channel 'snapshot'"):
        okx().decode(1, SYM, "snapshot", {})


# --- live helpers ------------------------------------------------------------------------------


def test_subscribe_and_resubscribe_frames() -> None:
    (sub,) = subscribe_frames(["BTC-USDT", "ETH-USDT"])

    assert sub == {"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"},
                                               {"channel": "books", "instId": "ETH-USDT"},
                                               {"channel": "trades", "instId": "BTC-USDT"},
                                               {"channel": "trades", "instId": "ETH-USDT"}]}
    assert resubscribe_frames(SYM) == [{"op": "unsubscribe", "args": [{"channel": "books", "instId": SYM}]},
                                       {"op": "subscribe", "args": [{"channel": "books", "instId": SYM}]}]
    assert DEFAULT_WS_URL == "wss://ws.okx.com:8443/ws/v5/public"
    with pytest.raises(ValueError, match="symbols"):
        subscribe_frames([])


def test_the_venue_registry_builds_the_okx_adapter() -> None:
    adapter = adapter_for("okx", INSTRUMENTS.__getitem__)

    assert isinstance(adapter, OkxAdapter) and adapter.venue == "okx" and adapter.max_depth(SYM) == 0
    assert adapter.verifier(SYM) is adapter.checksum(SYM)
