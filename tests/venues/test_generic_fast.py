"""The numba fast path decodes exactly what the JSON + dict path decodes, and defers everything
else (odd shapes, bad values, invalid JSON) to the dict path with its precise errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.instruments import Instrument
from daemon.venues import DecodeError
from daemon.venues.generic import GenericAdapter
from daemon.venues.generic_fast import FALLBACK, KIND_DELTA, KIND_TRADE, OK, scan_head

INST = Instrument("X", 0.01, 1e-8)


def same(a, b) -> bool:
    """Two event lists are equal field by field (arrays compared by value and dtype)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if type(x) is not type(y):
            return False
        for f in x._fields:
            u, v = getattr(x, f), getattr(y, f)
            if isinstance(u, np.ndarray):
                if u.dtype != v.dtype or not np.array_equal(u, v):
                    return False
            elif u != v:
                return False
    return True


def both_paths(adapter: GenericAdapter, line: bytes):
    ts = orjson.loads(line)["ts"]
    return adapter.decode(ts, "X", "book", line), adapter.decode(ts, "X", "book", orjson.loads(line))


def test_fast_path_equals_dict_path_on_every_real_dataset(shared_data: Path) -> None:
    for path in sorted(shared_data.glob("*/normalized.ndjson*")):
        adapter = GenericAdapter(lambda s: Instrument(s, 1e-8, 1e-8))
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            for n, line in enumerate(fh, 1):
                line = line.rstrip(b"\n")
                fast, slow = both_paths(adapter, line)
                assert same(fast, slow), f"{path}:{n}"


@settings(max_examples=300, deadline=None)
@given(
    bids=st.lists(st.tuples(st.integers(1, 10**9), st.integers(0, 10**12)), max_size=30),
    asks=st.lists(st.tuples(st.integers(1, 10**9), st.integers(0, 10**12)), max_size=30),
    kind=st.sampled_from(["delta", "snapshot"]),
)
def test_fast_path_equals_dict_path_on_generated_book_lines(bids, asks, kind) -> None:
    adapter = GenericAdapter(lambda s: INST)
    msg = {"ts": 1_700_000_000_000_000_000, "kind": kind,
           "bids": [[p / 100, q / 1e8] for p, q in bids], "asks": [[p / 100, q / 1e8] for p, q in asks]}

    fast, slow = both_paths(adapter, orjson.dumps(msg))

    assert same(fast, slow)


@pytest.mark.parametrize("line", [
    b'{"ts":1,"kind":"trade","price":1.5e2,"qty":2E-3,"side":"buy"}',
    b'{"ts":1,"kind":"trade","price":100,"qty":0.000000010,"side":"sell"}',
    b'{"ts":1,"kind":"delta","bids":[],"asks":[[0.01,0]]}',
    b'{"ts":1,"kind":"snapshot","asks":[[1.0,1]],"bids":[[0.99,2]]}',
])
def test_fast_path_takes_canonical_lines(line: bytes) -> None:
    from daemon.venues.generic_fast import parse_line

    code = parse_line(line, 0.01, 1e-8, np.empty((4, 8), np.int64))[0]
    fast, slow = both_paths(GenericAdapter(lambda s: INST), line)

    assert code == OK
    assert same(fast, slow)


@pytest.mark.parametrize("line", [
    b'{"ts": 1, "kind": "trade", "price": 1.0, "qty": 1.0, "side": "buy"}',
    b'{"ts":1,"kind":"trade","price":1.0,"qty":1.0,"side":"buy","extra":1}',
    b'{"ts":1,"kind":"trade","price":1.23456789012345678,"qty":1.0,"side":"buy"}',
    b'{"ts":1,"kind":"delta","bids":[[1.0,1]],"asks":[],"bids":[]}',
    b'{"ts":01,"kind":"delta","bids":[],"asks":[]}',
])
def test_fast_path_defers_unusual_but_valid_lines_to_the_dict_path(line: bytes) -> None:
    from daemon.venues.generic_fast import parse_line

    code = parse_line(line, 0.01, 1e-8, np.empty((4, 8), np.int64))[0]

    assert code == FALLBACK


@pytest.mark.parametrize(("line", "problem"), [
    (b'{"ts":1,"kind":"delta","bids":[[1.0,1]],"asks":[[1.0,', "invalid JSON"),
    (b'{"ts":1,"kind":"delta","bids":[[1.005,1]],"asks":[]}', "off the tick grid"),
    (b'{"ts":1,"kind":"delta","bids":[[-1.0,1]],"asks":[]}', "positive finite"),
    (b'{"ts":1,"kind":"trade","price":1.0,"qty":0,"side":"buy"}', "positive"),
    (b'{"ts":1,"kind":"trade","price":1.0,"qty":1,"side":"hold"}', "side"),
    (b'{"ts":1,"kind":"delta","bids":[[1.0,1]]}', "missing 'asks'"),
])
def test_bad_raw_lines_get_the_dict_paths_errors(line: bytes, problem: str) -> None:
    with pytest.raises(DecodeError, match=problem):
        GenericAdapter(lambda s: INST).decode(1, "X", "book", line)


def test_a_line_with_more_levels_than_the_buffers_grows_them() -> None:
    msg = {"ts": 5, "kind": "snapshot", "bids": [[round(1 + i / 100, 2), 1] for i in range(5000)], "asks": []}

    fast, slow = both_paths(GenericAdapter(lambda s: INST), orjson.dumps(msg))

    assert len(fast[0].bid_px) == 5000
    assert same(fast, slow)


def test_scan_head_reads_ts_and_kind_of_canonical_lines_only() -> None:
    assert scan_head(b'{"ts":1723161254087896568,"kind":"trade","price":1}') == (1723161254087896568, KIND_TRADE)
    assert scan_head(b'{"ts":5,"kind":"delta"}') == (5, KIND_DELTA)
    assert scan_head(b'{"ts": 5, "kind": "delta"}') == (-1, 0)
    assert scan_head(b'{"ts":99999999999999999999,"kind":"delta"}') == (-1, 0)
    assert scan_head(b'{"kind":"delta","ts":5}') == (-1, 0)
