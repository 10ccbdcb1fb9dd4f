"""The numba fast path decodes exactly what the JSON + dict path decodes, takes every real frame, and
defers everything else to the dict path with its precise errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.instruments import Instrument
from daemon.sources.hftbacktest import HftbacktestReader
from daemon.venues import DecodeError
from daemon.venues.binance import BinanceSpotAdapter, BinanceUsdmAdapter
from daemon.venues.binance_fast import FALLBACK, KIND_DEPTH, NEED_ROOM, OK, decimal_grid, parse_frame

FILES = [("binance_spot_btcusdt/btcusdt_20240808.gz", 0.01, 1e-8),
         ("binance_spot_btcusdt/btcusdt_20240809.gz", 0.01, 1e-8),
         ("binance_usdm_btcusdt/btcusdt_20240808.gz", 0.1, 0.001)]
SPOT_GRID = (1, 2, 1, 8)


def same(a: list, b: list) -> bool:
    """Two event lists are equal field by field (arrays by value and dtype)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if type(x) is not type(y):
            return False
        for u, v in zip(x, y, strict=True):
            if isinstance(u, np.ndarray):
                if u.dtype != v.dtype or not np.array_equal(u, v):
                    return False
            elif u != v:
                return False
    return True


def parse(raw: bytes, grid: tuple = SPOT_GRID, cap: int = 64) -> tuple:
    return parse_frame(raw, b"BTCUSDT", grid, np.empty(4 * cap, np.int64))


@pytest.mark.parametrize(("name", "tick", "lot"), FILES)
def test_fast_path_takes_every_real_frame_and_equals_the_dict_path(shared_data: Path, name: str, tick: float,
                                                                   lot: float) -> None:
    reader = HftbacktestReader(shared_data / name)
    cls = BinanceUsdmAdapter if reader.venue == "binance_usdm" else BinanceSpotAdapter
    fast, slow = cls(lambda s: Instrument(s, tick, lot)), cls(lambda s: Instrument(s, tick, lot))
    grid = (*decimal_grid(tick), *decimal_grid(lot))
    buf = np.empty(4 * 4096, np.int64)
    frames = 0
    for rec in reader:
        if rec.channel == "ws":
            frames += 1
            assert parse_frame(rec.msg, b"BTCUSDT", grid, buf)[0] == OK, f"{name}:{rec.line}"
        a = fast.decode(rec.ts_recv, rec.symbol, rec.channel, rec.msg)
        b = slow.decode(rec.ts_recv, rec.symbol, rec.channel, orjson.loads(rec.msg))
        assert same(a, b), f"{name}:{rec.line}"
    assert frames > 40_000


def test_depth_frame_fields() -> None:
    raw = (b'{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":20,"T":19,"s":"BTCUSDT","U":5,"u":9,'
           b'"pu":4,"b":[["100.10","1.5"],["99.00","0"]],"a":[["100.20","0.00000001"]]}}\n')
    buf = np.empty(4 * 8, np.int64)

    code, kind, nb, na, e, t, first, last, prev, *_ = parse_frame(raw, b"BTCUSDT", SPOT_GRID, buf)

    assert (code, kind, nb, na, e, t, first, last, prev) == (OK, KIND_DEPTH, 2, 1, 20, 19, 5, 9, 4)
    assert buf[:6].tolist() == [10010, 9900, 150_000_000, 0, 10020, 1]


def test_too_many_levels_asks_for_room() -> None:
    levels = ",".join(f'["{100 + k}.00","1"]' for k in range(10))
    raw = f'{{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":[{levels}],"a":[]}}'.encode()

    assert parse(raw, cap=4)[0] == NEED_ROOM
    assert parse(raw, cap=16)[0] == OK


@pytest.mark.parametrize(
    "raw",
    [
        b'{"stream":"x","data":{"e":"trade","E":1,"s":"ETHUSDT","t":1,"p":"1.00","q":"1","T":1,"m":true}}',  # symbol
        b'{"stream":"x","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1.00","q":"1","T":1,"m":true,"z":1}}',
        b'{"stream":"x","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1.00","q":"1","T":1}}',  # no m
        b'{"stream":"x","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1.001","q":"1","T":1,"m":true}}',
        b'{"stream":"x","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1e2","q":"1","T":1,"m":true}}',
        b'{"stream":"x","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"-1.00","q":"1","T":1,"m":true}}',
        b'{"stream":"x","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"01.00","q":"1","T":1,"m":true}}',
        b'{"stream":"x","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1.","q":"1","T":1,"m":true}}',
        b'{"stream":"x","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"0","q":"1","T":1,"m":true}}',
        b'{"stream":"x","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":1.0,"q":"1","T":1,"m":true}}',
        b'{"stream":"x", "data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1.00","q":"1","T":1,"m":true}}',
        b'{"stream":"x","data":{"e":"trade","E":1,"E":2,"s":"BTCUSDT","t":1,"p":"1.00","q":"1","T":1,"m":true}}',
        b'{"stream":"x","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1.00","q":"1","T":1,"m":true}}x',
        b'{"stream":"x","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":3,"u":2,"b":[],"a":[]}}',  # U > u
        b'{"stream":"x","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":[["1.00"]],"a":[]}}',
        b'{"stream":"x","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":[]}}',  # no a
        b'{"stream":"x","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":99999999999999999999,"b":[],"a":[]}}',
        b'{"stream":"x\\"y","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1.00","q":"1","T":1,"m":true}}',
        b'{"stream":"x","data":{"e":"kline","E":1,"s":"BTCUSDT"}}',
        b'{"result":null,"id":1}',
        b'{"stream":"x","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1.00","q":"1","T":1,"m":true,"X":"ADL"}}',
        b"",
        b"{",
    ],
)
def test_anything_unusual_falls_back_to_the_dict_path(raw: bytes) -> None:
    assert parse(raw)[0] == FALLBACK


def test_decimal_grid_forms() -> None:
    assert decimal_grid(0.01) == (1, 2)
    assert decimal_grid(1e-8) == (1, 8)
    assert decimal_grid(0.5) == (5, 1)
    assert decimal_grid(25.0) == (25, 0)
    assert decimal_grid(1 / 3) == (0, 0)


def test_grid_with_a_step_that_is_not_a_power_of_ten() -> None:
    frame = b'{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"%s","q":"1","T":1,"m":true}'

    assert parse(frame % b"100.5", (5, 1, 1, 0))[9] == 201
    assert parse(frame % b"100.2", (5, 1, 1, 0))[0] == FALLBACK  # off a 0.5 grid


_decimals = st.integers(0, 10).flatmap(lambda d: st.tuples(st.integers(0, 10**12), st.just(d)))


def _text(value: tuple[int, int]) -> str:
    mant, d = value
    s = str(mant).rjust(d + 1, "0")
    return f"{s[:-d]}.{s[-d:]}" if d else s


@settings(max_examples=300, deadline=None)
@given(bids=st.lists(st.tuples(_decimals, _decimals), max_size=12),
       asks=st.lists(st.tuples(_decimals, _decimals), max_size=12),
       tick=st.sampled_from([0.01, 0.1, 0.5, 1e-8, 5.0]), lot=st.sampled_from([1e-8, 0.001, 1.0]))
def test_fast_and_dict_paths_agree_on_any_decimals(bids, asks, tick: float, lot: float) -> None:
    data = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 11, "u": 12,
            "b": [[_text(p), _text(q)] for p, q in bids], "a": [[_text(p), _text(q)] for p, q in asks]}
    raw = orjson.dumps({"stream": "btcusdt@depth@100ms", "data": data})
    fast, slow = (BinanceSpotAdapter(lambda s: Instrument(s, tick, lot)) for _ in range(2))
    snap = orjson.dumps({"lastUpdateId": 10, "bids": [], "asks": []})
    fast.decode(0, "BTCUSDT", "snapshot", snap)  # the symbol is known: its frames take the fast path
    slow.decode(0, "BTCUSDT", "snapshot", snap)

    try:
        expected = slow.decode(1, "", "ws", orjson.loads(raw))
    except DecodeError as exc:
        with pytest.raises(DecodeError) as got:
            fast.decode(1, "", "ws", raw)
        assert str(got.value) == str(exc)
        return
    assert same(fast.decode(1, "", "ws", raw), expected)
