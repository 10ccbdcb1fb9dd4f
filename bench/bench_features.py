"""Feature benchmark: the cost of one feature update after a book change, and `depthd features` throughput.

Part 1 replays the real Binance L2 datasets into a `Book` and, after each message, times the
`FeatureCalculator.on_book` call (all 56 features: book state + flow state) with perf_counter_ns,
one call at a time, and reports the median / p90 / p99 (the timer's own cost is printed beside
it and not subtracted). Trades and samples are timed the same way.
Part 2 runs `depthd features` (the replay path with a sample sink, then the Parquet write) over
every normalized dataset in ../shared/data and reports messages per second.

    .venv/bin/python bench/bench_features.py --repeat 3
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

REPO = Path(__file__).resolve().parent.parent
for p in (REPO, REPO / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from bench_book import CASES, load  # noqa: E402

from daemon.book import Book  # noqa: E402
from daemon.config import settings_from_dict  # noqa: E402
from daemon.events import Side, Trade  # noqa: E402
from daemon.features import FeatureCalculator  # noqa: E402
from daemon.features.calculator import FeatureParams  # noqa: E402
from daemon.logs import configure_logging  # noqa: E402
from daemon.model.dataset import collect_features  # noqa: E402

DATA = REPO.parent / "shared" / "data"
TARGET_UPDATE_NS = 2_000
TARGET_MSGS = 50_000


def timer_overhead() -> float:
    ts = []
    for _ in range(20_000):
        t0 = time.perf_counter_ns()
        ts.append(time.perf_counter_ns() - t0)
    return statistics.median(ts)


def trades_of(path: Path, inst) -> list[tuple[int, bool, int]]:
    out = []
    with gzip.open(path, "rb") as f:
        for line in f:
            if b'"trade"' in line:
                o = orjson.loads(line)
                out.append((o["ts"], o["side"] == "buy", round(o["qty"] / inst.lot_size)))
    return out


def time_updates(case, params: FeatureParams) -> dict[str, float]:
    path = DATA / case.folder / "normalized.ndjson.gz"
    parsed = load(path, case.instrument)
    sym = case.instrument.symbol
    calc = FeatureCalculator({sym: case.instrument}, params)
    book = Book(sym)
    ts = 1_700_000_000_000_000_000
    book_ns = np.empty(len(parsed.messages), np.int64)
    sample_ns = []
    on_book = calc.on_book
    clock = time.perf_counter_ns
    for i, (snap, bp, bq, ap, aq) in enumerate(parsed.messages):
        if snap:
            book.apply_snapshot(bp, bq, ap, aq)
        else:
            book.apply_delta(bp, bq, ap, aq)
        ts += 50_000_000  # 50 ms of event time per message: the 1/10/60 s windows fill and roll
        t0 = clock()
        on_book(book, True, ts)
        book_ns[i] = clock() - t0
        if i % 2 == 0:
            t0 = clock()
            calc.sample(sym, ts)
            sample_ns.append(clock() - t0)
    trade_ns = []
    for _t, buy, lots in trades_of(path, case.instrument)[:20_000]:
        ts += 1_000_000
        tr = Trade(sym, ts, ts, 0, lots, Side.BUY if buy else Side.SELL)
        t0 = clock()
        calc.on_trade(tr)
        trade_ns.append(clock() - t0)
    return {"book_p50": float(np.median(book_ns[100:])), "book_p90": float(np.percentile(book_ns[100:], 90)),
            "book_p99": float(np.percentile(book_ns[100:], 99)), "levels": book.n_bid + book.n_ask,
            "trade_p50": statistics.median(trade_ns) if trade_ns else float("nan"),
            "sample_p50": statistics.median(sample_ns)}


def features_throughput(folder: str) -> tuple[int, float]:
    path = next((DATA / folder).glob("normalized.ndjson*"))
    settings = settings_from_dict({"replay": {"symbol": folder}})
    t0 = time.perf_counter()
    table, replay = collect_features(settings, [path])
    with tempfile.TemporaryDirectory() as tmp:
        table.write(Path(tmp) / "f.parquet")
    return replay.stats.messages, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per case; the best is reported")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"no real data at {DATA}: ../shared is absent", file=sys.stderr)
        return 2
    configure_logging("warning")
    print(f"timer overhead (median of an empty timed region): {timer_overhead():.0f} ns\n")
    print("1) feature update after a book change (all features), per call")
    print(f"{'dataset':28} {'tick':>6} {'levels':>7} {'p50 ns':>8} {'p90 ns':>8} {'p99 ns':>8} "
          f"{'trade p50':>10} {'sample p50':>11}")
    worst = 0.0
    for case in CASES[::2]:
        runs = [time_updates(case, FeatureParams(cost_notional=10_000.0)) for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r["book_p50"])
        worst = max(worst, best["book_p50"])
        print(f"{case.folder:28} {case.instrument.tick_size:>6g} {best['levels']:>7} {best['book_p50']:>8.0f} "
              f"{best['book_p90']:>8.0f} {best['book_p99']:>8.0f} {best['trade_p50']:>10.0f} "
              f"{best['sample_p50']:>11.0f}")
    print(f"target: median < {TARGET_UPDATE_NS} ns -> {'OK' if worst < TARGET_UPDATE_NS else 'MISSED'}\n")
    print("2) depthd features (replay path + sample sink + Parquet write)")
    print(f"{'dataset':28} {'messages':>9} {'seconds':>8} {'msg/s':>9}")
    total_m = 0
    total_s = 0.0
    for folder in sorted(d.name for d in DATA.iterdir() if d.is_dir()):
        runs = [features_throughput(folder) for _ in range(args.repeat)]
        n, secs = min(runs, key=lambda r: r[1])
        total_m += n
        total_s += secs
        print(f"{folder:28} {n:>9} {secs:>8.2f} {n / secs:>9.0f}")
    rate = total_m / total_s
    print(f"{'all':28} {total_m:>9} {total_s:>8.2f} {rate:>9.0f}  "
          f"target >= {TARGET_MSGS} msg/s -> {'OK' if rate >= TARGET_MSGS else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
