"""read_normalized: records from the normalized L2 format, and every kind of bad line."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from daemon.errors import InputError
from daemon.sources import RawRecord, read_normalized

SNAPSHOT = {"ts": 100, "kind": "snapshot", "bids": [[10.0, 1.0]], "asks": [[11.0, 2.0]]}
DELTA = {"ts": 200, "kind": "delta", "bids": [[10.0, 0]], "asks": []}
TRADE = {"ts": 300, "kind": "trade", "price": 11.0, "qty": 0.5, "side": "buy"}


def write_lines(path: Path, lines: list[bytes | dict], gz: bool = False) -> Path:
    """Write each item as one line (dicts as JSON) and return the path."""
    data = b"".join((orjson.dumps(x) if isinstance(x, dict) else x) + b"\n" for x in lines)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_yields_one_record_per_line_with_book_and_trade_channels(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "x.ndjson", [SNAPSHOT, DELTA, TRADE])

    records = list(read_normalized(path, "BTCUSDT"))

    assert records == [
        RawRecord(100, "BTCUSDT", "book", SNAPSHOT, str(path), 1),
        RawRecord(200, "BTCUSDT", "book", DELTA, str(path), 2),
        RawRecord(300, "BTCUSDT", "trade", TRADE, str(path), 3),
    ]


def test_reads_gzipped_file(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "x.ndjson.gz", [SNAPSHOT, DELTA, TRADE], gz=True)

    records = list(read_normalized(path, "X"))

    assert [r.ts_recv for r in records] == [100, 200, 300]


def test_skips_blank_lines_and_keeps_physical_line_numbers(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "x.ndjson", [SNAPSHOT, b"", b"   \r", DELTA])

    records = list(read_normalized(path, "X"))

    assert [r.line for r in records] == [1, 4]


def test_reads_last_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "x.ndjson"
    path.write_bytes(orjson.dumps(SNAPSHOT) + b"\n" + orjson.dumps(DELTA))

    records = list(read_normalized(path, "X"))

    assert [r.line for r in records] == [1, 2]


def test_equal_timestamps_are_allowed(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "x.ndjson", [SNAPSHOT, {**TRADE, "ts": 100}])

    records = list(read_normalized(path, "X"))

    assert len(records) == 2


def test_malformed_json_raises_input_error_naming_file_and_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "x.ndjson", [SNAPSHOT, DELTA, b'{"ts": 300, "kind": "tr'])

    with pytest.raises(InputError) as info:
        list(read_normalized(path, "X"))

    assert info.value.line == 3
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}:3: invalid JSON")


def test_yields_good_lines_before_the_bad_one_raises(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "x.ndjson", [SNAPSHOT, b"not json", DELTA])
    seen: list[int] = []

    with pytest.raises(InputError):
        for record in read_normalized(path, "X"):
            seen.append(record.line)

    assert seen == [1]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b"[1, 2]", "not a JSON object"),
        (b'{"kind": "delta", "bids": [], "asks": []}', "missing ts"),
        (b'{"ts": 1.5e2, "kind": "delta"}', "ts is not an integer"),
        (b'{"ts": "150", "kind": "delta"}', "ts is not an integer"),
        (b'{"ts": true, "kind": "delta"}', "ts is not an integer"),
        (b'{"ts": 18446744073709551616, "kind": "delta"}', "ts is not an integer"),
        (b'{"ts": 150, "kind": "ticker"}', "unknown kind 'ticker'"),
        (b'{"ts": 150}', "unknown kind None"),
        (b'{"ts": 150, "kind": ["delta"]}', "unknown kind"),
    ],
)
def test_rejects_structurally_bad_line(tmp_path: Path, line: bytes, problem: str) -> None:
    path = write_lines(tmp_path / "x.ndjson", [SNAPSHOT, line])

    with pytest.raises(InputError, match=problem) as info:
        list(read_normalized(path, "X"))

    assert info.value.line == 2


def test_ts_going_backwards_is_a_bad_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "x.ndjson", [DELTA, {**TRADE, "ts": 199}])

    with pytest.raises(InputError, match="goes backwards") as info:
        list(read_normalized(path, "X"))

    assert info.value.line == 2


def test_with_handler_bad_lines_are_counted_and_skipped(tmp_path: Path) -> None:
    lines = [SNAPSHOT, b"{oops", DELTA, {**TRADE, "ts": 150}, b'{"ts": 400, "kind": "x"}', TRADE]
    path = write_lines(tmp_path / "x.ndjson", lines)
    errors: list[InputError] = []

    records = list(read_normalized(path, "X", on_bad=errors.append))

    assert [r.line for r in records] == [1, 3, 6]
    assert [e.line for e in errors] == [2, 4, 5]


def test_backwards_check_compares_with_last_good_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "x.ndjson", [SNAPSHOT, {**DELTA, "ts": 50}, {**TRADE, "ts": 120}])
    errors: list[InputError] = []

    records = list(read_normalized(path, "X", on_bad=errors.append))

    assert [r.ts_recv for r in records] == [100, 120]
    assert [e.line for e in errors] == [2]


def test_truncated_gzip_yields_good_lines_then_raises_with_line(tmp_path: Path) -> None:
    lines = [{**DELTA, "ts": i, "pad": "x" * (i % 97)} for i in range(2000)]
    full = write_lines(tmp_path / "full.ndjson.gz", lines, gz=True).read_bytes()
    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(full[: len(full) // 2])
    seen: list[int] = []

    with pytest.raises(InputError, match="truncated gzip stream after line") as info:
        for record in read_normalized(path, "X"):
            seen.append(record.line)

    assert seen == list(range(1, len(seen) + 1))
    assert len(seen) > 0
    assert info.value.line == len(seen) + 1
    assert f"after line {len(seen)}" in info.value.problem


@pytest.mark.parametrize("cut", [1, 5, 11, 30, -9, -8, -1])
def test_gzip_cut_anywhere_raises_only_input_error(tmp_path: Path, cut: int) -> None:
    full = write_lines(tmp_path / "full.ndjson.gz", [SNAPSHOT, DELTA, TRADE], gz=True).read_bytes()
    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(full[:cut])

    with pytest.raises(InputError, match="gzip stream after line"):
        list(read_normalized(path, "X"))


def test_truncated_gzip_raises_even_with_handler(tmp_path: Path) -> None:
    full = write_lines(tmp_path / "full.ndjson.gz", [SNAPSHOT, DELTA, TRADE], gz=True).read_bytes()
    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(full[:-1])
    errors: list[InputError] = []

    with pytest.raises(InputError, match="truncated gzip"):
        list(read_normalized(path, "X", on_bad=errors.append))

    assert errors == []


def test_corrupt_gzip_is_input_error(tmp_path: Path) -> None:
    path = tmp_path / "x.ndjson.gz"
    path.write_bytes(b"this is not gzip\n")

    with pytest.raises(InputError, match="corrupt gzip stream after line 0") as info:
        list(read_normalized(path, "X"))

    assert info.value.line == 1


def test_missing_file_raises_at_call_time(tmp_path: Path) -> None:
    path = tmp_path / "absent.ndjson"

    with pytest.raises(InputError, match="no such file") as info:
        read_normalized(path, "X")

    assert info.value.line is None


def test_raw_lines_hands_canonical_lines_over_as_bytes(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "x.ndjson", [SNAPSHOT, b'{"ts": 150, "kind": "delta", "bids": [], "asks": []}',
                                               DELTA, TRADE])

    records = list(read_normalized(path, "X", raw_lines=True))

    assert [r.ts_recv for r in records] == [100, 150, 200, 300]
    assert [r.channel for r in records] == ["book", "book", "book", "trade"]
    assert records[0].msg == orjson.dumps(SNAPSHOT)
    assert records[1].msg == {"ts": 150, "kind": "delta", "bids": [], "asks": []}, "non-canonical: parsed here"


def test_raw_lines_still_refuses_time_going_backwards(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "x.ndjson", [DELTA, SNAPSHOT])

    with pytest.raises(InputError, match="goes backwards") as err:
        list(read_normalized(path, "X", raw_lines=True))

    assert err.value.line == 2


def test_reads_a_multi_member_gzip_as_one_stream(tmp_path: Path) -> None:
    path = tmp_path / "x.ndjson.gz"
    path.write_bytes(gzip.compress(orjson.dumps(SNAPSHOT) + b"\n") + gzip.compress(orjson.dumps(DELTA) + b"\n")
                     + gzip.compress(orjson.dumps(TRADE) + b"\n"))

    records = list(read_normalized(path, "X", raw_lines=True))

    assert [r.ts_recv for r in records] == [100, 200, 300]


def test_an_empty_gzip_file_has_no_records(tmp_path: Path) -> None:
    path = tmp_path / "x.ndjson.gz"
    path.write_bytes(b"")

    assert list(read_normalized(path, "X")) == []
