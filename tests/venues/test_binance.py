"""The Binance adapters' decoding: frames in (raw bytes or parsed), typed events with ticks and lots out,
malformed input refused with the problem named; and the live source's pure helpers."""

from __future__ import annotations

import orjson
import pytest

from daemon.events import BookDelta, Quote, Side, Trade
from daemon.instruments import Instrument
from daemon.venues import DecodeError, adapter_for
from daemon.venues.binance import (
    BinanceSpotAdapter,
    BinanceUsdmAdapter,
    combined_stream_url,
    stream_names,
)
from daemon.venues.binance_sync import SyncState
from tests.venues.test_binance_sync import SYM, depth, instrument, snapshot

MS = 1_000_000
SPOT_TRADE = {"e": "trade", "E": 1723161255343, "s": SYM, "t": 3735683259, "p": "61837.63000000", "q": "0.02000000",
              "T": 1723161255342, "m": True, "M": True}
USDM_TRADE = {"e": "trade", "E": 1723161256322, "T": 1723161256322, "s": SYM, "t": 5266583935, "p": "61800.30",
              "q": "0.006", "X": "MARKET", "m": False}
AGG_TRADE = {"e": "aggTrade", "E": 10, "s": SYM, "a": 26129, "p": "100.01", "q": "2.5", "f": 100, "l": 105,
             "T": 9, "m": False, "M": True}
SPOT_TICKER = {"u": 50093239212, "s": SYM, "b": "61837.63000000", "B": "3.78826000", "a": "61837.64000000",
               "A": "1.54698000"}
USDM_TICKER = {"e": "bookTicker", "u": 5123107839020, "s": SYM, "b": "61800.20", "B": "2.507", "a": "61800.30",
               "A": "2.510", "T": 1723161256313, "E": 1723161256314}


def envelope(stream: str, data: dict) -> dict:
    return {"stream": stream, "data": data}


@pytest.fixture
def spot() -> BinanceSpotAdapter:
    return BinanceSpotAdapter(instrument)


@pytest.fixture
def usdm() -> BinanceUsdmAdapter:
    return BinanceUsdmAdapter(lambda s: Instrument(s, 0.1, 0.001))


def both(adapter, msg: dict, ts: int = 7, symbol: str = "") -> list:
    """Decode a message as raw bytes (fast path) and parsed (dict path); both must agree."""
    fast = adapter.decode(ts, symbol, "ws", orjson.dumps(msg))
    slow = adapter.decode(ts, symbol, "ws", msg)
    assert fast == slow
    return fast


# --- events ------------------------------------------------------------------------------------


def test_adapter_for_names_both_markets() -> None:
    assert type(adapter_for("binance", instrument)) is BinanceSpotAdapter
    assert type(adapter_for("binance_usdm", instrument)) is BinanceUsdmAdapter
    assert (BinanceSpotAdapter.venue, BinanceUsdmAdapter.venue) == ("binance", "binance_usdm")


def test_trade_with_buyer_maker_is_a_sell_at_the_trade_time(spot) -> None:
    (ev,) = both(spot, envelope("btcusdt@trade", SPOT_TRADE))

    assert ev == Trade(SYM, 1723161255342 * MS, 7, 6183763, 2_000_000, Side.SELL)


def test_usdm_market_trade_is_a_buy_when_the_buyer_took(usdm) -> None:
    (ev,) = both(usdm, envelope("btcusdt@trade", USDM_TRADE))

    assert ev == Trade(SYM, 1723161256322 * MS, 7, 618003, 6, Side.BUY)


def test_usdm_print_that_is_not_a_market_trade_gives_nothing(usdm) -> None:
    assert both(usdm, envelope("btcusdt@trade", USDM_TRADE | {"X": "INSURANCE_FUND"})) == []


def test_agg_trade_is_a_trade(spot) -> None:
    (ev,) = both(spot, envelope("btcusdt@aggTrade", AGG_TRADE))

    assert ev == Trade(SYM, 9 * MS, 7, 10001, 250_000_000, Side.BUY)


def test_spot_book_ticker_is_a_quote_at_its_update_id_with_the_receive_time(spot) -> None:
    (ev,) = both(spot, envelope("btcusdt@bookTicker", SPOT_TICKER))

    assert ev == Quote(SYM, 7, 7, 6183763, 378826000, 6183764, 154698000, 50093239212)


def test_usdm_book_ticker_carries_its_event_time(usdm) -> None:
    (ev,) = both(usdm, envelope("btcusdt@bookTicker", USDM_TICKER))

    assert ev == Quote(SYM, 1723161256314 * MS, 7, 618002, 2507, 618003, 2510, 5123107839020)


def test_bare_payload_decodes_like_its_envelope(spot) -> None:
    assert both(spot, SPOT_TRADE) == both(spot, envelope("btcusdt@trade", SPOT_TRADE))


def test_depth_decodes_the_same_on_both_paths(spot) -> None:
    spot.decode(1, SYM, "snapshot", snapshot(10))
    frame = depth(11, 12, bids=((99.99, 0.5), (98.0, 0.0)), asks=((100.01, 1e-8),), event_ms=33)
    other = BinanceSpotAdapter(instrument)
    other.decode(1, SYM, "snapshot", snapshot(10))

    fast = spot.decode(2, "", "ws", frame)
    slow = other.decode(2, "", "ws", orjson.loads(frame))

    assert len(fast) == len(slow) == 1
    for a, b in zip(fast, slow, strict=True):
        assert isinstance(a, BookDelta) and isinstance(b, BookDelta)
        assert (a.symbol, a.ts_venue, a.ts_recv, a.seq) == (b.symbol, b.ts_venue, b.ts_recv, b.seq) == (SYM, 33 * MS,
                                                                                                           2, 12)
        for f in ("bid_px", "bid_qty", "ask_px", "ask_qty"):
            assert getattr(a, f).tolist() == getattr(b, f).tolist()
    assert fast[0].bid_qty.tolist() == [50_000_000, 0]


def test_depth_with_more_levels_than_the_scratch_buffer(spot) -> None:
    spot.decode(1, SYM, "snapshot", snapshot(10))
    bids = [(100.0 - k * 0.01, 1.0) for k in range(6000)]

    (ev,) = spot.decode(2, "", "ws", depth(11, 12, bids=bids, asks=()))

    assert len(ev.bid_px) == 6000 and ev.bid_px[-1] == 10000 - 5999


def test_subscription_answer_gives_nothing(spot) -> None:
    assert spot.decode(1, "", "ws", b'{"result":null,"id":1}') == []
    assert spot.decode(1, "", "ws", {"result": None, "id": 2}) == []


def test_message_symbol_must_match_the_payload(spot) -> None:
    with pytest.raises(DecodeError, match="payload symbol 'BTCUSDT' is not the message's symbol 'ETHUSDT'"):
        spot.decode(1, "ETHUSDT", "ws", orjson.dumps(envelope("btcusdt@trade", SPOT_TRADE)))


# --- malformed input ---------------------------------------------------------------------------


def _depth_data(**change) -> dict:
    data = {"e": "depthUpdate", "E": 5, "s": SYM, "U": 6, "u": 7, "b": [["100.00", "1"]], "a": []}
    data.update(change)
    return {k: v for k, v in data.items() if v is not None}


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (_depth_data(U=None), "depthUpdate: missing 'U'"),
        (_depth_data(u="7"), "'u' must be a non-negative integer, got '7'"),
        (_depth_data(U=9), "first update id U 9 is after the last u 7"),
        (_depth_data(E=None), "missing 'E'"),
        (_depth_data(b=None), "missing 'b'"),
        (_depth_data(b="x"), "'b' must be a list of \\[price, size\\] pairs"),
        (_depth_data(b=[["100.00"]]), "decimal-string pairs, got \\['100.00'\\]"),
        (_depth_data(a=[[100.0, 1.0]]), "decimal-string pairs, got \\[100.0, 1.0\\]"),
        (_depth_data(b=[["abc", "1"]]), "not a pair of decimal numbers: \\['abc', '1'\\]"),
        (_depth_data(b=[["100.005", "1"]]), "'b' has a price off the tick grid 0.01: \\['100.005', '1'\\]"),
        (_depth_data(a=[["100.00", "0.000000001"]]), "'a' has a size off the lot grid 1e-08"),
        (_depth_data(b=[["100.00", "-1"]]), "'b' has a size that is negative"),
        (_depth_data(b=[["0", "1"]]), "'b' has a price that is not a positive finite number"),
        (_depth_data(b=[["nan", "1"]]), "'b' has a price that is not a positive finite number"),
        (_depth_data(s=None), "missing or invalid symbol 's': None"),
        (_depth_data(s="btc usdt"), "not a Binance symbol"),
        (_depth_data(e="kline"), "unknown event type 'kline'"),
        (SPOT_TRADE | {"m": "yes"}, "'m' must be true or false"),
        (SPOT_TRADE | {"p": 61837.63}, "trade: 'p' must be a decimal string, got 61837.63"),
        (SPOT_TRADE | {"q": "0"}, "price and size must be positive"),
        (SPOT_TRADE | {"p": "61837.635"}, "trade: BTCUSDT: price 61837.635 is not a multiple of tick_size 0.01"),
        ({k: v for k, v in SPOT_TICKER.items() if k != "A"}, "bookTicker: missing 'A'"),
        (SPOT_TICKER | {"b": "-1"}, "prices must be positive"),
    ],
)
def test_malformed_frame_is_a_decode_error_that_changes_nothing(spot, data: dict, problem: str) -> None:
    spot.decode(1, "", "ws", depth(1, 5))  # something buffered, to see that it stays as it was
    sync = spot.sync_state(SYM)
    before = (sync.state, [d.delta.seq for d in sync.buffer], sync.last_u)

    for msg in (orjson.dumps(envelope("btcusdt@depth@100ms", data)), envelope("btcusdt@depth@100ms", data)):
        with pytest.raises(DecodeError, match=problem):
            spot.decode(2, "", "ws", msg)

    assert (sync.state, [d.delta.seq for d in sync.buffer], sync.last_u) == before
    if type(data.get("s")) is str and data["s"] == SYM:
        assert spot.health.symbol(SYM).decode_errors == 2


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b'{"stream":"btcusdt@trade","data":{"e":"trade"', "invalid JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'{"stream":"btcusdt@trade","data":[1]}', "'data' of stream 'btcusdt@trade' is not an object"),
        (b'{"data":{}}', "envelope without a 'stream' name"),
        (b'{"error":{"code":2,"msg":"Invalid request: unknown variable"},"id":1}', "venue error: code 2"),
        (b'{"code":-1121,"msg":"Invalid symbol."}', "venue error: code -1121: 'Invalid symbol.'"),
    ],
)
def test_unusable_frame_names_its_problem(spot, raw: bytes, problem: str) -> None:
    with pytest.raises(DecodeError, match=problem):
        spot.decode(1, "BTCUSDT", "ws", raw)
    assert spot.health.symbol(SYM).decode_errors == 1


def test_snapshot_needs_its_symbol(spot) -> None:
    with pytest.raises(DecodeError, match="needs the symbol"):
        spot.decode(1, "", "snapshot", snapshot(5))


@pytest.mark.parametrize(
    ("msg", "problem"),
    [
        (b'{"code":-1003,"msg":"Too many requests"}', "depth snapshot: venue error: code -1003"),
        (b'{"lastUpdateId":"5","bids":[],"asks":[]}', "'lastUpdateId' must be a non-negative integer"),
        (b'{"lastUpdateId":5,"bids":[]}', "depth snapshot: missing 'asks'"),
        (b'{"lastUpdateId":5,', "depth snapshot: invalid JSON"),
        (b'{"lastUpdateId":5,"bids":[["1.001","1"]],"asks":[]}', "'bids' has a price off the tick grid"),
    ],
)
def test_bad_snapshot_is_a_decode_error_and_the_symbol_keeps_waiting(spot, msg: bytes, problem: str) -> None:
    spot.decode(1, "", "ws", depth(1, 5))

    with pytest.raises(DecodeError, match=problem):
        spot.decode(2, SYM, "snapshot", msg)

    assert spot.sync_state(SYM).state is SyncState.WAITING
    assert spot.health.symbol(SYM).decode_errors == 1


def test_usdm_snapshot_carries_its_event_time(usdm) -> None:
    msg = {"lastUpdateId": 100, "E": 1723161256501, "T": 1723161256493, "bids": [["61800.20", "2.909"]],
           "asks": [["61800.30", "1.000"]]}

    (snap,) = usdm.decode(3, SYM, "snapshot", msg)

    assert (snap.ts_venue, snap.ts_recv, snap.seq, snap.complete) == (1723161256501 * MS, 3, 100, False)
    assert snap.bid_px.tolist() == [618002] and snap.bid_qty.tolist() == [2909]


@pytest.mark.parametrize(
    ("msg", "problem"),
    [
        ({"event": "connected", "symbols": "BTCUSDT"}, "'symbols' must be a list of symbol names"),
        ({"event": "connected", "symbols": [""]}, "'symbols' must be a list of symbol names"),
        ([1], "marker: expected a JSON object, got list"),
        (b"{", "marker: invalid JSON"),
    ],
)
def test_bad_marker_is_a_decode_error(spot, msg, problem: str) -> None:
    with pytest.raises(DecodeError, match=problem):
        spot.decode(1, "", "marker", msg)


def test_unknown_channel_is_a_decode_error(spot) -> None:
    with pytest.raises(DecodeError, match="unknown channel 'book'"):
        spot.decode(1, SYM, "book", {})


def test_symbol_without_an_instrument_is_a_decode_error() -> None:
    def no_instrument(symbol: str) -> Instrument:
        raise KeyError(symbol)

    adapter = BinanceSpotAdapter(no_instrument)

    with pytest.raises(DecodeError, match="no instrument for symbol 'BTCUSDT'"):
        adapter.decode(1, "", "ws", orjson.dumps(envelope("btcusdt@trade", SPOT_TRADE)))


# --- helpers for the live source ---------------------------------------------------------------


def test_stream_names_per_symbol() -> None:
    assert stream_names(["BTCUSDT", "ethusdt"]) == [
        "btcusdt@depth@100ms", "btcusdt@trade", "btcusdt@bookTicker",
        "ethusdt@depth@100ms", "ethusdt@trade", "ethusdt@bookTicker",
    ]
    assert stream_names(["BTCUSDT"], depth_speed="", trades="aggTrade", book_ticker=False) == [
        "btcusdt@depth", "btcusdt@aggTrade"]
    assert stream_names(["BTCUSDT"], depth_speed="0ms", trades="") == ["btcusdt@depth@0ms", "btcusdt@bookTicker"]


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [({"depth_speed": "10ms"}, "depth_speed"), ({"trades": "kline"}, "trades"), ({"symbols": ["BTC/USDT"]}, "symbol")],
)
def test_stream_names_refuse_what_binance_does_not_have(kwargs: dict, problem: str) -> None:
    args = {"symbols": ["BTCUSDT"]} | kwargs
    with pytest.raises(ValueError, match=problem):
        stream_names(**args)


def test_combined_stream_url_per_market() -> None:
    assert combined_stream_url(BinanceSpotAdapter.DEFAULT_WS_URL, ["BTCUSDT"]) == (
        "wss://stream.binance.com:9443/stream?streams=btcusdt@depth@100ms/btcusdt@trade/btcusdt@bookTicker")
    assert BinanceUsdmAdapter.stream_url(["BTCUSDT"], depth_speed="0ms", trades="aggTrade", book_ticker=False) == (
        "wss://fstream.binance.com/stream?streams=btcusdt@depth@0ms/btcusdt@aggTrade")
    assert combined_stream_url("ws://127.0.0.1:8765/", ["X"], book_ticker=False).startswith(
        "ws://127.0.0.1:8765/stream?streams=x@depth@100ms")
    with pytest.raises(ValueError, match="ws:// or wss://"):
        combined_stream_url("https://api.binance.com", ["BTCUSDT"])
    with pytest.raises(ValueError, match="no symbols"):
        combined_stream_url("wss://x", [])


def test_snapshot_request_per_market_with_its_weight() -> None:
    assert BinanceSpotAdapter.snapshot_request("btcusdt") == ("/api/v3/depth", {"symbol": "BTCUSDT", "limit": 1000}, 50)
    assert BinanceSpotAdapter.snapshot_request("BTCUSDT", 100)[2] == 5
    assert BinanceSpotAdapter.snapshot_request("BTCUSDT", 5000)[2] == 250
    assert BinanceUsdmAdapter.snapshot_request("BTCUSDT") == ("/fapi/v1/depth", {"symbol": "BTCUSDT", "limit": 1000},
                                                              20)
    assert BinanceUsdmAdapter.snapshot_request("BTCUSDT", 500)[2] == 10
    with pytest.raises(ValueError, match="one of"):
        BinanceUsdmAdapter.snapshot_request("BTCUSDT", 300)
    with pytest.raises(ValueError, match=r"1\.\.5000"):
        BinanceSpotAdapter.snapshot_request("BTCUSDT", 0)


def test_default_urls() -> None:
    assert BinanceSpotAdapter.DEFAULT_REST_URL == "https://api.binance.com"
    assert BinanceUsdmAdapter.DEFAULT_REST_URL == "https://fapi.binance.com"
    assert BinanceUsdmAdapter.DEFAULT_WS_URL == "wss://fstream.binance.com"
