"""open_replay_input: picks the reader from the file name and names venue and symbols."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from daemon.errors import InputError
from daemon.sources import RecordingWriter, open_replay_input

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
LINE = orjson.dumps({"ts": 1, "kind": "trade", "price": 1.0, "qty": 1.0, "side": "buy"}) + b"\n"


def test_recording_gives_venue_and_symbols_from_header(tmp_path: Path) -> None:
    path = tmp_path / "session.rec.zst"
    with RecordingWriter(path, "okx", ["BTC-USDT", "ETH-USDT"]) as writer:
        writer.write(1, "books", "BTC-USDT", {"a": 1})

    venue, symbols, records = open_replay_input(path, None, None)

    assert (venue, symbols) == ("okx", ["BTC-USDT", "ETH-USDT"])
    assert [r.msg for r in records] == [b'{"a":1}'], "a venue adapter gets the recorded bytes"


def test_recording_with_symbol_keeps_only_that_symbol(tmp_path: Path) -> None:
    path = tmp_path / "session.rec.zst"
    with RecordingWriter(path, "okx", ["BTC-USDT", "ETH-USDT"]) as writer:
        writer.write(1, "books", "BTC-USDT", {"a": 1})
        writer.write(2, "books", "ETH-USDT", {"a": 2})
        writer.write(3, "marker", "", {"event": "disconnected"})

    venue, symbols, records = open_replay_input(path, "ETH-USDT", None)

    assert (venue, symbols) == ("okx", ["ETH-USDT"])
    assert [r.msg for r in records] == [b'{"a":2}', b'{"event":"disconnected"}'], "and the connection's markers"


def test_recording_with_unknown_symbol_is_input_error(tmp_path: Path) -> None:
    path = tmp_path / "session.rec.zst"
    RecordingWriter(path, "okx", ["BTC-USDT"]).close()

    with pytest.raises(InputError, match="'ETH-USDT' is not in this recording"):
        open_replay_input(path, "ETH-USDT", None)


@pytest.mark.parametrize(
    ("name", "symbol"),
    [
        ("normalized.ndjson.gz", "normalized"),
        ("BTCUSDT.ndjson", "BTCUSDT"),
        ("eth.usd.jsonl", "eth.usd"),
        ("x.jsonl.gz", "x"),
    ],
)
def test_normalized_file_is_generic_with_symbol_from_stem(tmp_path: Path, name: str, symbol: str) -> None:
    path = tmp_path / name
    path.write_bytes(gzip.compress(LINE) if name.endswith(".gz") else LINE)

    venue, symbols, records = open_replay_input(path, None, None)

    assert (venue, symbols) == ("generic", [symbol])
    assert [(r.symbol, r.channel) for r in records] == [(symbol, "trade")]


def test_given_symbol_overrides_the_stem(tmp_path: Path) -> None:
    path = tmp_path / "normalized.ndjson"
    path.write_bytes(LINE)

    _, symbols, records = open_replay_input(path, "BTCUSDT", None)

    assert symbols == ["BTCUSDT"]
    assert next(records).symbol == "BTCUSDT"


def test_bad_lines_go_to_the_given_handler(tmp_path: Path) -> None:
    path = tmp_path / "x.ndjson"
    path.write_bytes(b"oops\n" + LINE)
    errors: list[InputError] = []

    _, _, records = open_replay_input(path, None, errors.append)

    assert len(list(records)) == 1
    assert [e.line for e in errors] == [1]


@pytest.mark.parametrize("name", ["data.csv", "session.zst", "x.json", "x.ndjson.zst"])
def test_unknown_suffix_is_input_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(LINE)

    with pytest.raises(InputError, match=r"unknown input format; expected \.rec\.zst or \.ndjson\[\.gz\]"):
        open_replay_input(path, None, None)


def test_missing_file_is_input_error_at_open(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        open_replay_input(tmp_path / "absent.ndjson.gz", None, None)


@pytest.mark.shared_data
def test_reads_every_record_of_the_real_okx_file() -> None:
    path = SHARED_DATA / "okx_btcusdt" / "normalized.ndjson"
    if not path.exists():
        pytest.skip(f"real dataset not present at {path} (needs the shared data checkout beside the repo)")

    venue, symbols, records = open_replay_input(path, "BTC-USDT", None)
    counted = list(records)

    assert (venue, symbols) == ("generic", ["BTC-USDT"])
    assert len(counted) == 166
    assert {r.channel for r in counted} == {"book", "trade"}
