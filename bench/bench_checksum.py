"""Checksum venues benchmark: the cost of verifying OKX and Kraken book checksums, per message, on real data.

The captured OKX (`books`, 3 instruments) and Kraken (`book-1000`, 10 pairs) traffic in ../shared/data is
replayed through the adapters into BookSyncs, as the engine wires them. Three figures a venue:
- verify: one `BookChecksum` call (re-create the venue's text of the top 25 / 10 levels from ticks and
  lots in a numba kernel, CRC32 it, compare), timed around each call as BookSync makes it;
- decode: `adapter.decode` of one book frame from its raw bytes (JSON, levels to ticks and lots, sync rules);
- path: every frame decoded and routed through BookSync (verify included), frames per second.
Per-call times come from perf_counter_ns less the timer's own cost; best-of-N and median-of-N of p50/p99.

    .venv/bin/python bench/bench_checksum.py --repeat 5
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from daemon.instruments import Instrument  # noqa: E402
from daemon.venues.checksum import ChecksumAdapter  # noqa: E402
from daemon.venues.kraken import KrakenAdapter  # noqa: E402
from daemon.venues.okx import OkxAdapter  # noqa: E402
from tests.venues.cryptofeed_capture import CaptureReplay, merged_frames, received_frames  # noqa: E402

DATA = REPO.parent / "shared" / "data"
OKX = {"BTC-USDT": Instrument("BTC-USDT", 0.1, 1e-8), "BTC-USD-220527": Instrument("BTC-USD-220527", 0.1, 1.0),
       "UNI-USD-SWAP": Instrument("UNI-USD-SWAP", 0.001, 1.0)}
KRAKEN_DECIMALS = {"XMR/USD": 2, "SC/EUR": 6, "WAVES/EUR": 6, "ETH/CHF": 5, "KSM/XBT": 8, "OCEAN/XBT": 9,
                   "XBT/CHF": 5, "OMG/USD": 6, "ADA/XBT": 9, "GRT/ETH": 9}
KRAKEN = {p: Instrument(p, 10.0**-d, 1e-8) for p, d in KRAKEN_DECIMALS.items()}


def timer_overhead() -> float:
    """The median ns that a perf_counter_ns pair around nothing costs."""
    clock = time.perf_counter_ns
    out = []
    for _ in range(20_000):
        t0 = clock()
        out.append(clock() - t0)
    return float(np.median(out))


def timed_replay(make: type[ChecksumAdapter], instruments: dict, frames: list) -> tuple[list, list, float]:
    """One replay: per-call ns of every verify and of every book-frame decode, and the untimed path's frames/s."""
    clock = time.perf_counter_ns
    verify_ns: list[int] = []
    decode_ns: list[int] = []
    replay = CaptureReplay(make(instruments.__getitem__))
    for symbol in instruments:
        sync = replay.sync(symbol)
        check = sync.verify

        def timed_verify(book, checksum, check=check) -> bool:
            t0 = clock()
            ok = check(book, checksum)
            verify_ns.append(clock() - t0)
            return ok

        sync.verify = timed_verify
    adapter = replay.adapter
    gc.collect()
    gc.disable()
    try:
        for ts, raw in frames:
            t0 = clock()
            events = adapter.decode(ts, "", "ws", raw)
            dt = clock() - t0
            if events and hasattr(events[0], "checksum"):
                decode_ns.append(dt)
            replay.route(events)
        fresh = CaptureReplay(make(instruments.__getitem__))
        t0 = clock()
        fresh.feed_all(frames)
        path_s = (clock() - t0) / 1e9
    finally:
        gc.enable()
    failures = sum(s.checksum_failures for s in replay.syncs.values())
    if failures:
        raise AssertionError(f"{failures} checksum failures: the benchmark data no longer verifies")
    return verify_ns, decode_ns, len(frames) / path_s


def report(name: str, runs: list[list[int]], overhead: float) -> None:
    """Print best-of-N and median-of-N of p50 / p99 in µs, timer cost removed."""
    figs = np.array([np.percentile(r, [50, 99]) - overhead for r in runs]) / 1e3
    best, med = figs.min(0), np.median(figs, 0)
    print(f"  {name:<28} n={len(runs[0]):>5}  best p50 {best[0]:6.2f}  p99 {best[1]:6.2f} µs | "
          f"median of {len(runs)}: p50 {med[0]:6.2f}  p99 {med[1]:6.2f} µs")


def main() -> None:
    """Run both venues and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"no real data at {DATA}")
    cases = [
        ("okx books (top 25)", OkxAdapter, OKX, list(received_frames(DATA / "okx_btcusdt" / "OKX.ws.1.0"))),
        ("kraken book-1000 (top 10)", KrakenAdapter, KRAKEN,
         list(merged_frames(DATA / "kraken_xmrusd" / "KRAKEN.ws.50.0", DATA / "kraken_xmrusd" / "KRAKEN.ws.48.0"))),
    ]
    overhead = timer_overhead()
    print(f"timer overhead {overhead:.0f} ns (subtracted)")
    for name, make, instruments, frames in cases:
        timed_replay(make, instruments, frames)  # warm-up: numba caches, allocations
        runs = [timed_replay(make, instruments, frames) for _ in range(args.repeat)]
        print(f"{name}: {len(frames)} frames")
        report("verify (one checksum)", [r[0] for r in runs], overhead)
        report("decode (one book frame)", [r[1] for r in runs], overhead)
        rates = [r[2] for r in runs]
        print(f"  {'path (decode + BookSync)':<28} best {max(rates):,.0f} frames/s | "
              f"median {statistics.median(rates):,.0f}")


if __name__ == "__main__":
    main()
