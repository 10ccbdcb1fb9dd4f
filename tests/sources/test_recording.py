"""RecordingWriter and RecordingReader: round trips, header checks, bad lines, torn files."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest
import zstandard

import daemon
from daemon.errors import InputError
from daemon.sources import FORMAT, VERSION, RawRecord, RecordingReader, RecordingWriter

RAW = b'{"e":"depthUpdate","E":1723161255320,"b":[["61800.20","2.909"]],  "a":[]}'


def decompressed(path: Path) -> bytes:
    """The recording's decompressed bytes."""
    with path.open("rb") as fh:
        return zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True).read()


def zst(text: bytes) -> bytes:
    """`text` zstd-compressed, for hand-made recordings."""
    return zstandard.ZstdCompressor().compress(text)


def write_zst(path: Path, text: bytes) -> Path:
    """Write `text` zstd-compressed and return the path."""
    path.write_bytes(zst(text))
    return path


def header_line(**override: object) -> bytes:
    """A valid header line with some fields replaced."""
    header = {"format": FORMAT, "version": VERSION, "venue": "binance", "symbols": ["BTCUSDT"]}
    return orjson.dumps({**header, **override}) + b"\n"


def record_line(t: int) -> bytes:
    """One well-formed record line at receive time t."""
    return orjson.dumps({"t": t, "ch": "depth", "sym": "BTCUSDT", "m": {"u": t}}) + b"\n"


def test_round_trip_yields_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / "s.rec.zst"
    with RecordingWriter(path, "binance", ["BTCUSDT", "ETHUSDT"]) as writer:
        writer.write(10, "depth", "BTCUSDT", {"u": 1, "b": [["1.5", "2"]]})
        writer.write(10, "trade", "ETHUSDT", [1, "x", None])
        writer.write(25, "snapshot", "BTCUSDT", RAW)

    records = list(RecordingReader(path))

    assert records == [
        RawRecord(10, "BTCUSDT", "depth", {"u": 1, "b": [["1.5", "2"]]}, str(path), 2),
        RawRecord(10, "ETHUSDT", "trade", [1, "x", None], str(path), 3),
        RawRecord(25, "BTCUSDT", "snapshot", orjson.loads(RAW), str(path), 4),
    ]


def test_raw_bytes_are_spliced_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "s.rec.zst"
    with RecordingWriter(path, "binance", ["BTCUSDT"]) as writer:
        writer.write(1, "depth", "BTCUSDT", RAW)

    text = decompressed(path)

    assert b',"m":' + RAW + b"}\n" in text


def test_raw_bytes_spanning_lines_are_stored_parsed(tmp_path: Path) -> None:
    path = tmp_path / "s.rec.zst"
    with RecordingWriter(path, "binance", ["BTCUSDT"]) as writer:
        writer.write(1, "depth", "BTCUSDT", b'{"a":\n 1}')

    records = list(RecordingReader(path))

    assert decompressed(path).count(b"\n") == 2
    assert records[0].msg == {"a": 1}


def test_writer_rejects_raw_bytes_that_are_not_json(tmp_path: Path) -> None:
    writer = RecordingWriter(tmp_path / "s.rec.zst", "binance", ["BTCUSDT"])

    with pytest.raises(ValueError, match="not valid JSON"):
        writer.write(1, "depth", "BTCUSDT", b"pong")

    writer.close()


def test_writer_rejects_receive_time_going_backwards(tmp_path: Path) -> None:
    writer = RecordingWriter(tmp_path / "s.rec.zst", "binance", ["BTCUSDT"])
    writer.write(5, "depth", "BTCUSDT", {})

    with pytest.raises(ValueError, match="goes backwards"):
        writer.write(4, "depth", "BTCUSDT", {})

    writer.close()


def test_writer_rejects_header_extra_that_overrides_a_core_field(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="may not set"):
        RecordingWriter(tmp_path / "s.rec.zst", "binance", ["BTCUSDT"], version=2)

    assert not (tmp_path / "s.rec.zst").exists()


def test_write_after_close_is_an_error(tmp_path: Path) -> None:
    writer = RecordingWriter(tmp_path / "s.rec.zst", "binance", ["BTCUSDT"])
    writer.close()

    with pytest.raises(ValueError, match="closed"):
        writer.write(1, "depth", "BTCUSDT", {})


def test_writer_refuses_to_overwrite_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "s.rec.zst"
    path.write_bytes(b"precious")

    with pytest.raises(FileExistsError):
        RecordingWriter(path, "binance", ["BTCUSDT"])

    assert path.read_bytes() == b"precious"


def test_header_carries_venue_symbols_version_and_extras(tmp_path: Path) -> None:
    path = tmp_path / "s.rec.zst"
    RecordingWriter(path, "okx", ["BTC-USDT"], level=1, created_ns=123, account="paper").close()

    reader = RecordingReader(path)

    assert reader.header == {
        "format": "depthd-recording",
        "version": 1,
        "venue": "okx",
        "symbols": ["BTC-USDT"],
        "depthd_version": daemon.__version__,
        "created_ns": 123,
        "account": "paper",
    }
    assert (reader.venue, reader.symbols) == ("okx", ["BTC-USDT"])
    assert list(reader) == []


def test_same_input_gives_identical_bytes(tmp_path: Path) -> None:
    paths = [tmp_path / "a.rec.zst", tmp_path / "b.rec.zst"]
    for path in paths:
        with RecordingWriter(path, "binance", ["BTCUSDT"]) as writer:
            for t in range(100):
                writer.write(t, "depth", "BTCUSDT", {"u": t})

    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_reader_can_iterate_twice(tmp_path: Path) -> None:
    path = write_zst(tmp_path / "s.rec.zst", header_line() + record_line(1) + record_line(2))
    reader = RecordingReader(path)

    assert list(reader) == list(reader)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty file"),
        (b'{"format": "depthd-recording"}\n', "not zstd-compressed"),
        (zst(b""), "no header line"),
        (zst(b'{"format": "depthd-recor'), "header line is torn"),
        (zst(b"{not json}\n"), "header is not valid JSON"),
        (zst(b"[1]\n"), "missing header"),
        (zst(record_line(1)), "missing header"),
        (zst(header_line(format="other")), "missing header"),
        (zst(header_line(version=2)), "unsupported recording version 2"),
        (zst(header_line(version="1")), "unsupported recording version '1'"),
        (zst(header_line(venue="")), "venue must be a non-empty string"),
        (zst(header_line(symbols="BTCUSDT")), "symbols must be a list of strings"),
    ],
)
def test_header_problems_are_input_errors_at_line_1(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "s.rec.zst"
    path.write_bytes(content)

    with pytest.raises(InputError, match=problem) as info:
        RecordingReader(path)

    assert info.value.line == 1


def test_missing_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        RecordingReader(tmp_path / "absent.rec.zst")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b'{"t": 3, "ch": "depth", "sym": "BTCUSDT", "m": {', "invalid JSON"),
        (b'{"t": 3, "ch": "depth", "sym": "BTCUSDT"}', "missing 'm'"),
        (b'{"ch": "depth", "sym": "BTCUSDT", "m": 1}', "missing 't'"),
        (b"[3, 4]", "not a JSON object"),
        (b'{"t": 3.0, "ch": "depth", "sym": "BTCUSDT", "m": 1}', "t is not an integer"),
        (b'{"t": 3, "ch": 7, "sym": "BTCUSDT", "m": 1}', "ch is not a string"),
        (b'{"t": 3, "ch": "depth", "sym": null, "m": 1}', "sym is not a string"),
        (b'{"t": 1, "ch": "depth", "sym": "BTCUSDT", "m": 1}', "goes backwards"),
    ],
)
def test_bad_record_line_raises_with_its_line_number(tmp_path: Path, line: bytes, problem: str) -> None:
    path = write_zst(tmp_path / "s.rec.zst", header_line() + record_line(2) + line + b"\n" + record_line(5))

    with pytest.raises(InputError, match=problem) as info:
        list(RecordingReader(path))

    assert info.value.line == 3


def test_with_handler_bad_record_lines_are_counted_and_skipped(tmp_path: Path) -> None:
    text = header_line() + record_line(2) + b"garbage\n" + record_line(1) + b"\n" + record_line(7)
    path = write_zst(tmp_path / "s.rec.zst", text)
    errors: list[InputError] = []

    records = list(RecordingReader(path, on_bad=errors.append))

    assert [(r.line, r.ts_recv) for r in records] == [(2, 2), (6, 7)]
    assert [e.line for e in errors] == [3, 4, 5]


def test_torn_last_line_is_reported_after_the_complete_lines(tmp_path: Path) -> None:
    path = write_zst(tmp_path / "s.rec.zst", header_line() + record_line(1) + record_line(2)[:-1])
    seen: list[int] = []

    with pytest.raises(InputError, match="torn last line") as info:
        for record in RecordingReader(path):
            seen.append(record.ts_recv)

    assert seen == [1]
    assert info.value.line == 3


def test_torn_last_line_goes_to_handler_and_iteration_ends(tmp_path: Path) -> None:
    path = write_zst(tmp_path / "s.rec.zst", header_line() + record_line(1) + b'{"t": 2, "ch"')
    errors: list[InputError] = []

    records = list(RecordingReader(path, on_bad=errors.append))

    assert [r.ts_recv for r in records] == [1]
    assert [(e.line, e.problem) for e in errors] == [(3, "torn last line (truncated recording)")]


def test_corrupt_zstd_mid_file_is_input_error(tmp_path: Path) -> None:
    good = zstandard.ZstdCompressor().compress(header_line() + record_line(1))
    path = tmp_path / "s.rec.zst"
    path.write_bytes(good + b"\x00garbage that is not a zstd frame")

    with pytest.raises(InputError, match="truncated or corrupt zstd stream after line 2") as info:
        list(RecordingReader(path))

    assert info.value.line == 3


def make_long_recording(path: Path, n: int, flush_every: int = 397) -> list[RawRecord]:
    """Write n hard-to-compress records spanning several zstd blocks, return them as read back."""
    rng = random.Random(7)
    with RecordingWriter(path, "binance", ["BTCUSDT"]) as writer:
        for t in range(n):
            writer.write(t, "depth", "BTCUSDT", {"u": t, "pad": rng.randbytes(rng.randrange(300)).hex()})
            if t % flush_every == 0:
                writer.flush()
    return list(RecordingReader(path))


def test_recording_cut_anywhere_yields_only_complete_lines_or_input_error(tmp_path: Path) -> None:
    full_path = tmp_path / "full.rec.zst"
    full = make_long_recording(full_path, 1500)
    data = full_path.read_bytes()
    cuts = sorted({*range(0, len(data), max(1, len(data) // 150)), *range(len(data) - 12, len(data))})
    cut_path = tmp_path / "cut.rec.zst"
    outcomes = set()

    for cut in cuts:
        cut_path.write_bytes(data[:cut])
        errors: list[InputError] = []
        try:
            got = list(RecordingReader(cut_path, on_bad=errors.append))
        except InputError as exc:
            assert exc.line == 1, (cut, exc)
            outcomes.add("header")
            continue
        assert [(r.ts_recv, r.msg) for r in got] == [(r.ts_recv, r.msg) for r in full[: len(got)]], cut
        assert all("torn last line" in e.problem or "no zstd frame end" in e.problem for e in errors), (cut, errors)
        assert errors, f"a recording cut at {cut} of {len(data)} bytes must report its missing end"
        outcomes.add("torn" if "torn" in errors[-1].problem else "unclosed")

    assert outcomes == {"header", "torn", "unclosed"}


def test_recording_cut_raises_input_error_without_handler(tmp_path: Path) -> None:
    full_path = tmp_path / "full.rec.zst"
    make_long_recording(full_path, 600, flush_every=10**9)
    data = full_path.read_bytes()
    cut_path = tmp_path / "cut.rec.zst"
    cut_path.write_bytes(data[:-20])

    with pytest.raises(InputError, match="torn last line"):
        list(RecordingReader(cut_path))
