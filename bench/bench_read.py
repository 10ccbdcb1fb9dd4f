"""Read throughput of the replay sources on a real dataset: normalized .ndjson.gz, then a recording.

Usage: python bench/bench_read.py [path-to-normalized.ndjson.gz]
Prints lines/s (parse and checks included) as the best of a few runs.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from daemon.sources import RawRecord, RecordingReader, RecordingWriter, read_normalized  # noqa: E402

DEFAULT = REPO.parent / "shared/data/binance_usdm_btcusdt/normalized.ndjson.gz"
RUNS = 3


def best_rate(read: Callable[[], Iterable[RawRecord]]) -> tuple[int, float]:
    """Return (records, best records/s) over RUNS full passes."""
    best = float("inf")
    n = 0
    for _ in range(RUNS):
        start = time.perf_counter()
        n = sum(1 for _ in read())
        best = min(best, time.perf_counter() - start)
    return n, n / best


def main(argv: list[str]) -> int:
    """Time reading the normalized file, and the same records as a depthd recording."""
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT
    if not path.exists():
        print(f"no dataset at {path}", file=sys.stderr)
        return 2
    n, rate = best_rate(lambda: read_normalized(path, "BTCUSDT"))
    print(f"normalized  {path.name}: {n} lines, {rate:,.0f} lines/s")
    with tempfile.TemporaryDirectory() as tmp:
        rec = Path(tmp) / "bench.rec.zst"
        with RecordingWriter(rec, "generic", ["BTCUSDT"]) as writer:
            for r in read_normalized(path, "BTCUSDT"):
                writer.write(r.ts_recv, r.channel, r.symbol, r.msg)
        n, rate = best_rate(lambda: RecordingReader(rec))
        print(f"recording   {rec.name} ({rec.stat().st_size:,} B): {n} lines, {rate:,.0f} lines/s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
