"""Whole-replay benchmark: every stage on (parse, sync, book, features, strategy, risk, paper broker).

Replays the real datasets in ../shared/data in-process, message by message as `depthd replay` does,
and prints messages/s and peak memory. `--memory` replays a short and a long synthetic session made
by replay_data/make_sample.py and compares peak memory, to show it does not grow with length.

    python bench/bench_replay.py [--repeat 3] [--memory]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import io
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))

from daemon.config import settings_from_dict  # noqa: E402
from daemon.logs import configure_logging  # noqa: E402
from daemon.replay import Replay  # noqa: E402

DATASETS = {
    "binance_spot_btcusdt": {"tick_size": 0.01, "lot_size": 1e-8},
    "binance_usdm_btcusdt": {"tick_size": 0.1, "lot_size": 0.001},
    "lobster_amzn_l1": {"tick_size": 0.0001, "lot_size": 1},
}


def bench_settings(symbol: str, grid: dict[str, float]) -> object:
    """A config that trades the dataset so that every stage does work (orders and fills included)."""
    return settings_from_dict({
        "daemon": {"log_level": "error"},
        "instruments": {symbol: grid},
        "replay": {"symbol": symbol},
        "strategy": {"name": "imbalance", "params": {"threshold": 0.3, "max_position": 0.01,
                                                     "position_step": 0.0025 if grid["lot_size"] < 1 else 0.01}},
        "risk": {"max_position": 100.0, "max_order_qty": 100.0, "max_notional": 10_000_000.0},
        "paper": {"latency_us": 500, "taker_fee_bps": 2.0, "maker_fee_bps": -0.5},
    })


def run_once(settings: object, files: list[str]) -> tuple[float, int, int, int]:
    """One replay; CPU seconds (steadier than wall time on a shared machine), messages, fills, samples."""
    replay = Replay(settings, files)
    gc.collect()
    t0 = time.process_time()
    result = replay.run()
    secs = time.process_time() - t0
    counts = result.path.engine.counts
    return secs, result.stats.messages, counts["fills"], counts["samples"]


def bench_datasets(repeat: int) -> None:
    if not DATA.is_dir():
        sys.exit(f"no real data: {DATA} is absent (it lives in ../shared/data beside the repo)")
    for name, grid in DATASETS.items():
        folder = DATA / name
        files = sorted(str(p) for p in folder.glob("normalized.ndjson*"))
        settings = bench_settings(name.upper(), grid)
        run_once(settings, files)  # warm: numba's cache, imports
        rates = []
        for _ in range(repeat):
            secs, n, fills, samples = run_once(settings, files)
            rates.append(n / secs)
        print(f"{name:24s} {n:7d} msgs  best {max(rates):10,.0f} msg/s  median {statistics.median(rates):10,.0f} msg/s"
              f"  ({samples} strategy samples, {fills} fills)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {rss:.1f} MB")


def bench_memory() -> None:
    spec = importlib.util.spec_from_file_location("make_sample", REPO / "replay_data" / "make_sample.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    settings = settings_from_dict({"daemon": {"log_level": "error"},
                                   "instruments": {"SIMUSD": {"tick_size": 0.01, "lot_size": 0.0001}}})
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in (10, 60):
            path = Path(tmp) / f"s{minutes}.rec.zst"
            with contextlib.redirect_stdout(io.StringIO()):
                mod.main(["--seed", "3", "--minutes", str(minutes), "--out", str(path)])
            replay = Replay(settings, [str(path)])
            tracemalloc.start()
            result = replay.run()
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            print(f"synthetic {minutes:3d} min: {result.stats.messages:8d} msgs, traced peak {peak / 2**20:7.2f} MB "
                  f"(book depth {sum(s.book.n_bid + s.book.n_ask for s in result.path.engine.syncs.values())}, "
                  f"fills {result.path.engine.counts['fills']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory", action="store_true", help="also compare a short and a long replay's memory")
    args = parser.parse_args()
    configure_logging("error")
    bench_datasets(args.repeat)
    if args.memory:
        bench_memory()


if __name__ == "__main__":
    main()
