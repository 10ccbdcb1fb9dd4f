"""Recorder: file naming, rotation by hour and size, disk failures and recovery, crash safety."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from daemon.errors import InputError
from daemon.sources.recorder import Recorder
from daemon.sources.recording import RecordingReader

REPO = Path(__file__).resolve().parents[2]
SEC = 1_000_000_000


def ns(*args: int) -> int:
    """A UTC wall time as ns since the epoch."""
    return int(datetime(*args, tzinfo=UTC).timestamp()) * SEC


def read(path: str | Path) -> tuple[list[tuple[int, str, str, object]], list[InputError]]:
    """(t, ch, sym, msg) of every record a file gives, and the problems its reader reported."""
    errors: list[InputError] = []
    records = [(r.ts_recv, r.channel, r.symbol, r.msg) for r in RecordingReader(path, on_bad=errors.append)]
    return records, errors


def pad(i: int) -> bytes:
    """A raw wire message that compresses poorly (pseudo-random hex), so files grow."""
    return b'{"i":%d,"pad":"%s"}' % (i, hashlib.blake2b(i.to_bytes(8, "big")).hexdigest().encode())


class Clock:
    def __init__(self, t: int = 0) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def test_lines_replay_from_a_file_named_after_the_first_receive_time(tmp_path: Path) -> None:
    t0 = ns(2024, 8, 8, 22, 59, 59) + 123
    rec = Recorder(tmp_path / "rec" / "deep", "binance", ["BTCUSDT"], header_extra={"session": "s1"})
    rec.write(t0, "ws", "BTCUSDT", b'{"e":"depthUpdate", "u":1}')
    rec.write(t0 + 1, "snapshot", "BTCUSDT", {"lastUpdateId": 1, "bids": [], "asks": []})
    rec.close()

    assert rec.files == [str(tmp_path / "rec" / "deep" / "binance_20240808T225959Z_0000.rec.zst")]
    reader = RecordingReader(rec.files[0])
    assert (reader.venue, reader.symbols, reader.header["session"]) == ("binance", ["BTCUSDT"], "s1")
    assert read(rec.files[0]) == ([
        (t0, "ws", "BTCUSDT", {"e": "depthUpdate", "u": 1}),
        (t0 + 1, "snapshot", "BTCUSDT", {"lastUpdateId": 1, "bids": [], "asks": []}),
    ], [])
    assert (rec.lines, rec.errors, rec.dropped_lines, rec.failing) == (2, 0, 0, False)
    assert rec.bytes_written == os.path.getsize(rec.files[0])


def test_a_new_file_starts_when_the_receive_time_enters_a_new_hour(tmp_path: Path) -> None:
    times = [ns(2024, 8, 8, 22, 59, 59), ns(2024, 8, 8, 23, 0, 0) - 1, ns(2024, 8, 8, 23, 0, 0),
             ns(2024, 8, 8, 23, 30, 0), ns(2024, 8, 9, 0, 0, 1)]
    rotated: list[tuple[str, int]] = []
    rec = Recorder(tmp_path, "okx", ["BTC-USDT"], on_rotate=lambda path: rotated.append((path, rec.lines)))
    for t in times:
        rec.write(t, "ws", "BTC-USDT", {"t": t})
    rec.close()

    names = [Path(p).name for p in rec.files]
    assert names == ["okx_20240808T225959Z_0000.rec.zst", "okx_20240808T230000Z_0001.rec.zst",
                     "okx_20240809T000001Z_0002.rec.zst"]
    assert rotated == [(rec.files[0], 1), (rec.files[1], 3), (rec.files[2], 5)]  # after each file's first line
    assert [[r[0] for r in read(p)[0]] for p in rec.files] == [times[:2], times[2:4], times[4:]]


def test_a_new_file_starts_once_the_file_outgrows_max_bytes(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, "t", ["X"], max_bytes=20_000, level=1)
    growth = 0
    for i in range(3000):
        rec.write(SEC + i, "ws", "X", pad(i))
        if i % 50 == 49:
            before = rec.bytes_written
            rec.flush()  # what the flusher timer does; it also checks the size
            growth = max(growth, rec.bytes_written - before)
    rec.close()

    assert len(rec.files) >= 5
    sizes = [os.path.getsize(p) for p in rec.files]
    assert all(s <= 20_000 + growth + 100 for s in sizes), (sizes, growth)
    assert rec.bytes_written == sum(sizes)
    records = [r for p in rec.files for r in read(p)[0]]
    assert [t for t, *_ in records] == [SEC + i for i in range(3000)]
    assert len({Path(p).name[:-len("_0000.rec.zst")] for p in rec.files}) == 1  # same second, told apart by n


def test_receive_time_going_back_is_recorded_as_the_last_one(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, "t", ["X"])
    for t in (10 * SEC, 9 * SEC, 11 * SEC):
        rec.write(t, "ws", "X", {})
    rec.close()
    assert [r[0] for r in read(rec.files[0])[0]] == [10 * SEC, 10 * SEC, 11 * SEC]
    assert rec.clamped == 1


def test_bad_messages_are_counted_and_dropped_never_raised(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, "t", ["X"])
    rec.write(SEC, "ws", "X", b"pong")  # a frame that is not JSON: kept as a JSON string, for replay to meet
    rec.write(SEC, "ws", "X", {"x": {1, 2}})  # not serialisable
    rec.write("1", "ws", "X", {})  # type: ignore[arg-type]
    rec.write(SEC, "ws", "X", {"ok": 1})
    rec.close()
    rec.write(2 * SEC, "ws", "X", {"late": 1})

    assert (rec.bad_lines, rec.dropped_lines, rec.lines, rec.errors, rec.malformed_kept) == (2, 3, 2, 0, 1)
    assert read(rec.files[0])[0] == [(SEC, "ws", "X", "pong"), (SEC, "ws", "X", {"ok": 1})]


def test_a_directory_that_cannot_be_made_fails_softly_and_recovers(tmp_path: Path) -> None:
    blocker = tmp_path / "disk"
    blocker.write_bytes(b"a file where the directory should be")
    clock = Clock(1_000 * SEC)
    rec = Recorder(blocker / "rec", "t", ["X"], now=clock, retry_s=5)

    for i in range(10):
        rec.write(SEC + i, "ws", "X", {"i": i})
    assert rec.failing and rec.errors == 1 and rec.dropped_lines == 10 and rec.files == []
    assert "open" in rec.last_error and "disk" in rec.last_error

    clock.t += 5 * SEC
    rec.write(SEC + 10, "ws", "X", {"i": 10})  # retry: still broken
    assert rec.errors == 2 and rec.failing

    blocker.unlink()
    rec.write(SEC + 11, "ws", "X", {"i": 11})  # not yet time to retry
    assert rec.dropped_lines == 12 and rec.files == []
    clock.t += 5 * SEC
    rec.write(SEC + 12, "ws", "X", {"i": 12})
    rec.write(SEC + 13, "ws", "X", {"i": 13})
    rec.close()

    assert not rec.failing and rec.errors == 2 and rec.lines == 2
    assert [r[3] for r in read(rec.files[0])[0]] == [{"i": 12}, {"i": 13}]


def test_a_vanished_directory_is_noticed_and_recording_goes_on_in_a_new_file(tmp_path: Path) -> None:
    directory = tmp_path / "rec"
    rec = Recorder(directory, "t", ["X"])
    for i in range(5):
        rec.write(SEC + i, "ws", "X", {"i": i})
    rec.flush()
    shutil.rmtree(directory)
    rec.write(SEC + 5, "ws", "X", {"i": 5})  # lands in the deleted file: cannot be known yet
    rec.flush()
    assert rec.errors == 1 and "vanished" in rec.last_error and not rec.failing
    for i in range(6, 9):
        rec.write(SEC + i, "ws", "X", {"i": i})
    rec.close()

    assert len(rec.files) == 2 and Path(rec.files[1]).parent == directory
    assert [r[3]["i"] for r in read(rec.files[1])[0]] == [6, 7, 8]


async def test_the_flusher_pushes_blocks_to_disk_until_close(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, "t", ["X"], flush_interval_s=0.01)
    flusher = asyncio.create_task(rec.run_flusher())
    rec.write(SEC, "ws", "X", {"i": 1})
    path = rec.files[0]
    async with asyncio.timeout(5):
        while os.path.getsize(path) == 0:
            await asyncio.sleep(0.005)
    assert read(path)[0] == [(SEC, "ws", "X", {"i": 1})]  # readable while still open
    rec.close()
    await asyncio.wait_for(flusher, 5)


def test_a_file_cut_anywhere_replays_a_prefix_and_keeps_every_flushed_line(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "rec", "t", ["X"], level=1)
    flushed: list[tuple[int, int]] = []  # (file size after a flush, lines in it)
    for i in range(3000):
        rec.write(SEC + i, "ws", "X", pad(i) if i % 3 else {"i": i, "a": list(range(i % 50))})
        if i % 100 == 99:
            rec.flush()
            flushed.append((os.path.getsize(rec.files[0]), i + 1))
    rec.close()
    data = Path(rec.files[0]).read_bytes()
    full, problems = read(rec.files[0])
    assert len(full) == 3000 and problems == []

    cuts = sorted({1, 4, 20, len(data) // 3, len(data) // 2, len(data) - 1}
                  | {s + d for s, _ in flushed for d in (-1, 0, 1, 17)})
    cut_file = tmp_path / "cut.rec.zst"
    for cut in cuts:
        cut_file.write_bytes(data[:cut])
        if cut < flushed[0][0]:
            with pytest.raises(InputError):  # not even the header is complete: refused, named
                read(cut_file)
            continue
        records, problems = read(cut_file)
        assert records == full[:len(records)], cut
        assert len(records) >= max(n for s, n in flushed if s <= cut), cut
        assert len(problems) <= 1, (cut, problems)


def test_a_file_cut_at_a_flush_reports_its_missing_end(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, "t", ["X"])
    for i in range(100):
        rec.write(SEC + i, "ws", "X", {"i": i})
    rec.flush()
    records, problems = read(rec.files[0])  # the file as a crash right now would leave it
    assert len(records) == 100
    assert len(problems) == 1


RECORD_FOREVER = """
import os, sys
from daemon.logs import configure_logging
from daemon.sources.recorder import Recorder
configure_logging("error")
rec = Recorder(sys.argv[1], "t", ["X"], level=1)
for i in range(10**9):
    rec.write(10**9 + i, "ws", "X", b'{"i":%d,"pad":"%s"}' % (i, os.urandom(24).hex().encode()))
    if i % 100 == 99:
        rec.flush()
        if i == 1999:
            print("flushed", i + 1, flush=True)
"""


def test_a_recorder_killed_mid_write_leaves_a_file_that_replays(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", RECORD_FOREVER, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"flushed 2000\n"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL

    [path] = list(tmp_path.iterdir())
    records, problems = read(path)
    assert len(records) >= 2000 and len(problems) <= 1
    assert [t for t, *_ in records] == [SEC + i for i in range(len(records))]
    assert [m["i"] for *_, m in records] == list(range(len(records)))


RECORD_ON_A_FULL_DISK = """
import json, os, resource, signal, sys
from daemon.logs import configure_logging
from daemon.sources.recorder import Recorder
configure_logging("error")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of killing us
clock = [0]
rec = Recorder(sys.argv[1], "t", ["X"], now=lambda: clock[0], retry_s=1.0, level=1)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, hard))
i = 0
def write(n):
    global i
    for _ in range(n):
        rec.write(10**9 + i, "ws", "X", b'{"i":%d,"pad":"%s"}' % (i, os.urandom(24).hex().encode()))
        i += 1
out = {}
while not rec.failing and i < 200_000:
    write(1)
out["failed_at"], out["errors_at_failure"], out["last_error"] = i, rec.errors, rec.last_error
write(500)  # the retry interval has not passed: dropped without touching the disk
out["dropped_while_failing"], out["errors_while_failing"] = rec.dropped_lines, rec.errors
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # the disk has room again
clock[0] += 2 * 10**9
out["first_after"] = i
write(1000)
out["failing_after"] = rec.failing
rec.close()
out["files"], out["lines"], out["errors"] = rec.files, rec.lines, rec.errors
out["open_recordings"] = sum(os.readlink(f"/proc/self/fd/{fd}").endswith(".rec.zst")
                             for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}"))
print(json.dumps(out))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs RLIMIT_FSIZE and /proc")
def test_a_full_disk_efbig_is_survived_counted_and_recovered_from(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", RECORD_ON_A_FULL_DISK, str(tmp_path)], cwd=REPO, capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    out = json.loads(done.stdout)

    assert out["errors_at_failure"] == 1
    assert "File too large" in out["last_error"], out["last_error"]
    assert out["errors_while_failing"] == 1 and out["dropped_while_failing"] >= 501
    assert out["failing_after"] is False and out["errors"] == 1
    assert out["open_recordings"] == 0  # the abandoned file's descriptor was closed
    assert b"recorder cannot write" in done.stderr  # logged once at error level
    assert done.stderr.count(b"recorder cannot write") == 1

    first, second = out["files"]
    assert os.path.getsize(first) <= 300_000
    records, problems = read(first)
    assert [m["i"] for *_, m in records] == list(range(len(records))) and len(problems) <= 1
    assert 0 < len(records) < out["failed_at"]
    records, problems = read(second)
    assert [m["i"] for *_, m in records] == list(range(out["first_after"], out["first_after"] + 1000))
    assert problems == []


def test_real_binance_session_rotates_at_midnight_and_keeps_every_message(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "binance_spot_btcusdt"
    lines = []
    for name in ("btcusdt_20240808.gz", "btcusdt_20240809.gz"):
        with gzip.open(folder / name, "rb") as fh:
            lines.extend(itertools.islice(fh, 20_000))
    wire = [(int(t), raw) for t, _, raw in (line.rstrip(b"\n").partition(b" ") for line in lines)]

    rec = Recorder(tmp_path, "binance", ["BTCUSDT"])
    for t, raw in wire:
        rec.write(t, "snapshot" if raw.startswith(b'{"lastUpdateId"') else "ws", "BTCUSDT", raw)
    rec.close()

    assert [Path(p).name for p in rec.files] == ["binance_20240808T235413Z_0000.rec.zst",
                                                  "binance_20240809T000000Z_0001.rec.zst"]
    records = [r for p in rec.files for r in read(p)[0]]
    assert [(t, m) for t, _, _, m in records] == [(t, orjson.loads(raw)) for t, raw in wire]
    assert rec.errors == rec.dropped_lines == rec.clamped == 0
