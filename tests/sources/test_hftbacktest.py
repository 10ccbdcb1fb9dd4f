"""The hftbacktest collector reader: `<receive ns> <raw JSON>` gzip lines in, RawRecords of raw bytes out."""

from __future__ import annotations

import gzip
import itertools
import random
from pathlib import Path

import orjson
import pytest

from daemon.errors import InputError
from daemon.sources import merge_by_receive_time, open_replay_input
from daemon.sources.hftbacktest import HftbacktestReader, looks_like_hftbacktest

SPOT_DEPTH = {"stream": "btcusdt@depth@100ms", "data": {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 1, "u": 2,
                                                        "b": [], "a": []}}
USDM_DEPTH = {"stream": "btcusdt@depth@0ms", "data": {"e": "depthUpdate", "E": 1, "T": 1, "s": "BTCUSDT", "U": 1,
                                                      "u": 2, "pu": 0, "b": [], "a": []}}
TRADE = {"stream": "btcusdt@trade", "data": {"e": "trade", "s": "BTCUSDT"}}
ETH_TRADE = {"stream": "ethusdt@trade", "data": {"e": "trade", "s": "ETHUSDT"}}
SNAPSHOT = {"lastUpdateId": 2, "bids": [], "asks": []}


def write(path: Path, lines: list[tuple[int, dict] | bytes]) -> Path:
    """A collector file: (receive ns, message) pairs as `<ns> <json>`, or raw lines as they are."""
    body = b"".join(x if isinstance(x, bytes) else b"%d %s\n" % (x[0], orjson.dumps(x[1])) for x in lines)
    path.write_bytes(gzip.compress(body))
    return path


def test_spot_file_is_venue_binance_with_the_symbol_of_its_streams(tmp_path: Path) -> None:
    path = write(tmp_path / "btcusdt_20240808.gz", [(1, TRADE), (2, SPOT_DEPTH), (3, SNAPSHOT)])

    reader = HftbacktestReader(path)

    assert (reader.venue, reader.symbols) == ("binance", ["BTCUSDT"])


def test_usdm_file_is_told_by_pu_in_its_first_depth_event(tmp_path: Path) -> None:
    path = write(tmp_path / "btcusdt_20240808.gz", [(1, TRADE), (2, USDM_DEPTH)])

    assert HftbacktestReader(path).venue == "binance_usdm"


def test_records_carry_the_raw_json_their_channel_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "x.gz", [(5, SPOT_DEPTH), (6, SNAPSHOT), (7, TRADE)])

    recs = list(HftbacktestReader(path))

    assert [(r.ts_recv, r.symbol, r.channel, r.line) for r in recs] == [
        (5, "BTCUSDT", "ws", 1), (6, "BTCUSDT", "snapshot", 2), (7, "BTCUSDT", "ws", 3)]
    assert recs[0].msg == orjson.dumps(SPOT_DEPTH) and type(recs[0].msg) is bytes
    assert recs[1].path == str(path)


def test_file_order_is_kept_and_a_receive_time_that_goes_back_is_raised(tmp_path: Path) -> None:
    path = write(tmp_path / "x.gz", [(10, SPOT_DEPTH), (8, SNAPSHOT), (12, TRADE), (11, TRADE)])
    reader = HftbacktestReader(path)

    recs = list(reader)

    assert [(r.line, r.ts_recv) for r in recs] == [(1, 10), (2, 10), (3, 12), (4, 12)]
    assert reader.clamped == 2


def test_snapshot_line_gets_the_files_symbol_and_a_given_symbol_narrows(tmp_path: Path) -> None:
    path = write(tmp_path / "x.gz", [(1, SPOT_DEPTH), (2, ETH_TRADE), (3, SNAPSHOT), (4, TRADE)])

    assert HftbacktestReader(path).symbols == ["BTCUSDT", "ETHUSDT"]
    eth = HftbacktestReader(path, "ETHUSDT")
    assert eth.symbols == ["ETHUSDT"]
    assert [(r.symbol, r.line) for r in eth] == [("ETHUSDT", 2)]
    assert [r.channel for r in HftbacktestReader(path, "BTCUSDT")] == ["ws", "snapshot", "ws"]


def test_unknown_symbol_is_an_input_error(tmp_path: Path) -> None:
    path = write(tmp_path / "x.gz", [(1, SPOT_DEPTH)])

    with pytest.raises(InputError, match="symbol 'XRPUSDT' is not in this file"):
        HftbacktestReader(path, "XRPUSDT")


def test_file_without_a_stream_line_is_an_input_error(tmp_path: Path) -> None:
    path = write(tmp_path / "x.gz", [(1, SNAPSHOT)])

    with pytest.raises(InputError, match="no combined-stream line"):
        HftbacktestReader(path)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b"garbage\n", "expected '<receive time ns> <JSON>'"),
        (b"12a {}\n", "receive time is not a non-negative integer"),
        (b"-5 {}\n", "receive time is not a non-negative integer"),
        (b"12 [1]\n", "message is not a JSON object"),
    ],
)
def test_bad_line_is_an_input_error_naming_file_and_line(tmp_path: Path, line: bytes, problem: str) -> None:
    path = write(tmp_path / "x.gz", [(1, TRADE), line, (3, TRADE)])

    with pytest.raises(InputError, match=f"x.gz:2: {problem}"):
        list(HftbacktestReader(path))


def test_bad_lines_go_to_the_handler_and_are_skipped(tmp_path: Path) -> None:
    path = write(tmp_path / "x.gz", [(1, TRADE), b"garbage\n", b"\n", (3, TRADE)])
    bad: list[InputError] = []

    recs = list(HftbacktestReader(path, on_bad=bad.append))

    assert [r.line for r in recs] == [1, 4]
    assert [e.line for e in bad] == [2]


def test_truncated_gzip_yields_the_complete_lines_then_an_input_error(tmp_path: Path) -> None:
    rng = random.Random(3)
    full = write(tmp_path / "full.gz", [(0, SPOT_DEPTH)] + [(k, TRADE | {"x": rng.random()}) for k in range(29_999)])
    cut = tmp_path / "cut.gz"
    cut.write_bytes(full.read_bytes()[:-5000])
    got = []

    with pytest.raises(InputError, match="truncated"):
        got.extend(HftbacktestReader(cut))
    assert 10_000 < len(got) < 30_000
    assert [r.line for r in got] == list(range(1, len(got) + 1))


def test_open_replay_input_recognises_a_collector_file(tmp_path: Path) -> None:
    path = write(tmp_path / "btcusdt_20240808.gz", [(1, USDM_DEPTH), (2, TRADE)])

    venue, symbols, records = open_replay_input(path, None, None)

    assert (venue, symbols) == ("binance_usdm", ["BTCUSDT"])
    assert [r.channel for r in records] == ["ws", "ws"]
    assert open_replay_input(path, "BTCUSDT", None)[1] == ["BTCUSDT"]


def test_other_gz_files_are_not_taken_for_collector_files(tmp_path: Path) -> None:
    plain = tmp_path / "prices.gz"
    plain.write_bytes(gzip.compress(b'{"ts": 1}\n'))
    not_gzip = tmp_path / "fake.gz"
    not_gzip.write_bytes(b"1 {}\n")
    normalized = tmp_path / "x.ndjson.gz"
    normalized.write_bytes(gzip.compress(b'{"ts":1,"kind":"trade","price":1.0,"qty":1.0,"side":"buy"}\n'))

    assert not looks_like_hftbacktest(plain) and not looks_like_hftbacktest(not_gzip)
    for path in (plain, not_gzip):
        with pytest.raises(InputError, match="unknown input format"):
            open_replay_input(path, None, None)
    assert open_replay_input(normalized, None, None)[0] == "generic"


# --- the real files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "venue", "lines", "snapshots"),
    [
        ("binance_spot_btcusdt/btcusdt_20240808.gz", "binance", 41_249, 1),
        ("binance_spot_btcusdt/btcusdt_20240809.gz", "binance", 58_325, 0),
        ("binance_usdm_btcusdt/btcusdt_20240808.gz", "binance_usdm", 93_954, 1),
    ],
)
def test_real_collector_files(shared_data: Path, name: str, venue: str, lines: int, snapshots: int) -> None:
    reader = HftbacktestReader(shared_data / name)

    recs = list(reader)

    assert (reader.venue, reader.symbols) == (venue, ["BTCUSDT"])
    assert len(recs) == lines and recs[-1].line == lines
    assert sum(r.channel == "snapshot" for r in recs) == snapshots
    assert reader.clamped == 0


def test_two_files_of_one_session_merge_into_one_continuous_stream(shared_data: Path) -> None:
    folder = shared_data / "binance_spot_btcusdt"
    first, second = folder / "btcusdt_20240808.gz", folder / "btcusdt_20240809.gz"

    merged = list(merge_by_receive_time([iter(HftbacktestReader(second)), iter(HftbacktestReader(first))]))

    assert len(merged) == 41_249 + 58_325
    assert [r.path for r in merged[41_248:41_250]] == [str(first), str(second)]
    assert all(a.ts_recv <= b.ts_recv for a, b in itertools.pairwise(merged))
