"""Decode + sync + book throughput of the Binance adapter on real depth messages.

Usage: python bench/bench_binance.py [--repeats N] [--data DIR]

For each real session in ../shared/data (Binance spot BTCUSDT, two files; USD-M BTCUSDT) the raw
frames are read into memory first; the session up to its REST snapshot is fed untimed, then every
later depth frame is timed through `adapter.decode` (numba parse, sync procedure), `BookSync` and
the `Book`. Quotes and trades are timed on their own. Without ../shared a synthetic spot session is
used (a snapshot and 20,000 depth frames of ~46 levels). Prints messages/s and us/message in CPU
time (the VM is shared), the median of the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import orjson

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from daemon.book.book import Book  # noqa: E402
from daemon.book.sync import BookSync  # noqa: E402
from daemon.events import BookDelta, BookSnapshot  # noqa: E402
from daemon.instruments import Instrument  # noqa: E402
from daemon.sources import HftbacktestReader, merge_by_receive_time  # noqa: E402
from daemon.venues import adapter_for  # noqa: E402

DATA = REPO.parent / "shared" / "data"
SESSIONS = {
    "binance spot BTCUSDT": (["binance_spot_btcusdt/btcusdt_20240808.gz", "binance_spot_btcusdt/btcusdt_20240809.gz"],
                             0.01, 1e-8),
    "binance usdm BTCUSDT": (["binance_usdm_btcusdt/btcusdt_20240808.gz"], 0.1, 0.001),
}
Frames = list[tuple[int, str, str, bytes]]


def load(files: list[str], data: Path = DATA) -> tuple[str, Frames]:
    """(venue, every record as (ts, symbol, channel, raw bytes)) of one session, in replay order."""
    readers = [HftbacktestReader(data / f) for f in files]
    recs = merge_by_receive_time([iter(r) for r in readers])
    return readers[0].venue, [(r.ts_recv, r.symbol, r.channel, r.msg) for r in recs]


def synthetic(n: int = 20_000, levels: int = 46) -> tuple[str, Frames]:
    """A spot session: one snapshot of 1,000 levels a side, then n continuous depth frames."""
    rng = np.random.default_rng(7)
    bids = [[f"{60000 - i * 0.01:.8f}", "1.00000000"] for i in range(1000)]
    asks = [[f"{60000.01 + i * 0.01:.8f}", "1.00000000"] for i in range(1000)]
    frames: Frames = [(1, "BTCUSDT", "snapshot", orjson.dumps({"lastUpdateId": 100, "bids": bids, "asks": asks}))]
    u = 100
    for k in range(n):
        side = rng.integers(0, 2, levels)
        off = rng.integers(1, 400, levels)
        qty = rng.integers(0, 300_000, levels)
        b = [[f"{60000 - o * 0.01:.8f}", f"{q / 1e5:.8f}"] for s, o, q in zip(side, off, qty, strict=True) if s == 0]
        a = [[f"{60000 + o * 0.01:.8f}", f"{q / 1e5:.8f}"] for s, o, q in zip(side, off, qty, strict=True) if s == 1]
        data = {"e": "depthUpdate", "E": 1_700_000_000_000 + k, "s": "BTCUSDT", "U": u + 1, "u": u + 5, "b": b, "a": a}
        u += 5
        frames.append((2 + k, "", "ws", orjson.dumps({"stream": "btcusdt@depth@100ms", "data": data})))
    return "binance", frames


def run(venue: str, frames: Frames, tick: float, lot: float, only_depth: bool, book: bool = True) -> tuple[int, float]:
    """(frames timed, CPU seconds) for one pass on a fresh adapter and book (`book=False`: the adapter
    alone, its events dropped)."""
    adapter = adapter_for(venue, lambda s: Instrument(s, tick, lot))
    sync = BookSync(Book("BTCUSDT"))
    start = next(i for i, f in enumerate(frames) if f[2] == "snapshot") + 1
    for ts, sym, ch, raw in frames[:start]:
        _route(sync, adapter.decode(ts, sym, ch, raw))
    timed = [f for f in frames[start:] if (b'"depthUpdate"' in f[3][:80]) == only_depth]
    decode, on_delta, on_snapshot, on_quote = adapter.decode, sync.on_delta, sync.on_snapshot, sync.on_quote
    t0 = time.process_time()
    if not book:
        for ts, sym, ch, raw in timed:
            decode(ts, sym, ch, raw)
        return len(timed), time.process_time() - t0
    for ts, sym, ch, raw in timed:
        for ev in decode(ts, sym, ch, raw):
            t = type(ev)
            if t is BookDelta:
                on_delta(ev)
            elif t is BookSnapshot:
                on_snapshot(ev)
            elif t.__name__ == "Quote":
                on_quote(ev)
    elapsed = time.process_time() - t0
    assert sync.live, "the book fell out of sync during the benchmark"
    return len(timed), elapsed


def _route(sync: BookSync, events: list) -> None:
    for ev in events:
        if type(ev) is BookSnapshot:
            sync.on_snapshot(ev)
        elif type(ev) is BookDelta:
            sync.on_delta(ev)


def report(name: str, venue: str, frames: Frames, tick: float, lot: float, repeats: int) -> None:
    """Print the median rate of depth frames (adapter alone, then with BookSync and Book), then of the
    other frames (quotes and trades, with BookSync's quote check)."""
    for label, only_depth, book in (("depth adapter", True, False), ("depth +book", True, True),
                                    ("quote+trade", False, True)):
        runs = [run(venue, frames, tick, lot, only_depth, book) for _ in range(repeats)]
        n = runs[0][0]
        if not n:
            continue
        med = statistics.median(s for _, s in runs)
        print(f"{name:22s} {label:14s} {n:6d} msgs  {n / med:10,.0f} msgs/s  {med / n * 1e6:6.2f} us/msg")


def main(argv: list[str]) -> int:
    """Run every available session (or the synthetic one) and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    args = ap.parse_args(argv[1:])
    sessions = [(name, *load(files, args.data), tick, lot) for name, (files, tick, lot) in SESSIONS.items()
                if all((args.data / f).exists() for f in files)]
    if not sessions:
        print(f"no real data at {args.data}: synthetic spot session", file=sys.stderr)
        sessions = [("synthetic spot", *synthetic(), 0.01, 1e-8)]
    for name, venue, frames, tick, lot in sessions:
        depth = [f for f in frames if b'"depthUpdate"' in f[3][:80]]
        levels = sum(f[3].count(b'"],["') + 1 for f in depth) / max(1, len(depth))
        print(f"{name}: {len(frames)} frames, {len(depth)} depth frames of {levels:.1f} levels on average")
        report(name, venue, frames, tick, lot, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
