"""Book benchmark: replay the real Binance L2 datasets into a `Book`, message by message.

Every snapshot and delta line is parsed into int64 tick/lot arrays before the clock starts, so the
figures are the book's own cost: one `apply_snapshot` / `apply_delta` call per venue message and a
read of the best bid and ask after each, as the engine does. A kernel-only figure (the numba
kernels called directly, no `Book` wrapper) and an all-in-numba figure (one compiled loop over every
message, no Python per message) show where the remaining time goes. Each dataset's final top 5 is
checked against the independent checker's `expected_final_book.txt`.

    .venv/bin/python bench/bench_book.py --repeat 7
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from numba import njit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from daemon.book import Book, kernels  # noqa: E402
from daemon.instruments import Instrument  # noqa: E402

DATA = REPO.parent / "shared" / "data"
TARGET = 5_000_000
TOP_N = 5
# Levels per side the kernel-only runs allocate up front (the deepest dataset side holds ~5,000).
CAPACITY = 1 << 14


@dataclass(frozen=True)
class Case:
    """One dataset on one instrument grid."""

    folder: str
    instrument: Instrument


CASES = (
    Case("binance_spot_btcusdt", Instrument("BTCUSDT", tick_size=0.01, lot_size=1e-8)),
    Case("binance_spot_btcusdt", Instrument("BTCUSDT", tick_size=1e-8, lot_size=1e-8)),
    Case("binance_usdm_btcusdt", Instrument("BTCUSDT", tick_size=0.1, lot_size=0.001)),
    Case("binance_usdm_btcusdt", Instrument("BTCUSDT", tick_size=1e-8, lot_size=0.001)),
)

# One venue message: (is snapshot, bid ticks, bid lots, ask ticks, ask lots).
Message = tuple[bool, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Parsed:
    """A dataset's book messages as int arrays, plus the same levels concatenated for numba."""

    messages: list[Message]
    level_updates: int
    flat_px: np.ndarray
    flat_qty: np.ndarray
    # Per message: [is snapshot, bid start, bid end, ask start, ask end] into flat_px / flat_qty.
    bounds: np.ndarray


def load(path: Path, inst: Instrument) -> Parsed:
    """Parse every snapshot/delta line of a normalized NDJSON file into tick/lot arrays."""
    messages: list[Message] = []
    empty = np.zeros((0, 2))
    with gzip.open(path, "rb") as f:
        for line in f:
            obj = orjson.loads(line)
            kind = obj["kind"]
            if kind not in ("snapshot", "delta"):
                continue
            bids = np.asarray(obj["bids"], np.float64).reshape(-1, 2) if obj["bids"] else empty
            asks = np.asarray(obj["asks"], np.float64).reshape(-1, 2) if obj["asks"] else empty
            messages.append((kind == "snapshot", inst.price_to_ticks(bids[:, 0]), inst.qty_to_lots(bids[:, 1]),
                             inst.price_to_ticks(asks[:, 0]), inst.qty_to_lots(asks[:, 1])))
    bounds = np.zeros((len(messages), 5), np.int64)
    px_parts: list[np.ndarray] = []
    qty_parts: list[np.ndarray] = []
    pos = 0
    for i, (snap, bp, bq, ap, aq) in enumerate(messages):
        bounds[i] = (snap, pos, pos + len(bp), pos + len(bp), pos + len(bp) + len(ap))
        px_parts += [bp, ap]
        qty_parts += [bq, aq]
        pos += len(bp) + len(ap)
    return Parsed(messages, pos, np.concatenate(px_parts), np.concatenate(qty_parts), bounds)


def expected_top(path: Path) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """The checker's final top-5 (bids, asks), best first, as (price, qty) decimals."""
    sides: dict[str, list[tuple[float, float]]] = {"bids": [], "asks": []}
    current: list[tuple[float, float]] | None = None
    for line in path.read_text().splitlines():
        if line.startswith("final top"):
            current = sides["bids" if "bids" in line else "asks"]
        elif current is not None and line.startswith("  "):
            p, q = line.split()
            current.append((float(p), float(q)))
        else:
            current = None
    return sides["bids"], sides["asks"]


def run_book(messages: list[Message], symbol: str) -> tuple[float, Book, int | None]:
    """The engine's way: one Book call per message, then read best bid and ask. (seconds, book, crossed)."""
    book = Book(symbol)
    crossed = 0
    t0 = time.perf_counter()
    for snap, bp, bq, ap, aq in messages:
        if snap:
            book.apply_snapshot(bp, bq, ap, aq)
        else:
            book.apply_delta(bp, bq, ap, aq)
        if book.best_bid_px >= book.best_ask_px:
            crossed += 1
    return time.perf_counter() - t0, book, crossed


def roomy_book(symbol: str) -> Book:
    """A Book with room for every level of the datasets, its pages touched: nothing grows or page-faults
    in the timed region of the kernel-only runs."""
    book = Book(symbol, capacity=CAPACITY)
    for a in (book.bid_px, book.bid_qty, book.ask_key, book.ask_qty):
        a.fill(0)
    return book


def run_kernels(messages: list[Message], symbol: str) -> tuple[float, Book, int | None]:
    """The numba kernels called directly per message from Python: the Book wrapper's cost left out."""
    book = roomy_book(symbol)
    bid_px, bid_qty, ask_key, ask_qty = book.bid_px, book.bid_qty, book.ask_key, book.ask_qty
    counters = kernels.new_counters()
    edits = np.zeros((kernels.EDIT_LOG_ROWS, 4), np.int64)
    apply_message, load_side = kernels.apply_message, kernels.load_side
    n_bid = n_ask = 0
    t0 = time.perf_counter()
    for snap, bp, bq, ap, aq in messages:
        if snap:
            n_bid = load_side(bid_px, bid_qty, bp, bq, 1)
            n_ask = load_side(ask_key, ask_qty, ap, aq, -1)
        else:
            n_bid, n_ask = apply_message(bid_px, bid_qty, n_bid, ask_key, ask_qty, n_ask, bp, bq, ap, aq, counters,
                                           edits)
    elapsed = time.perf_counter() - t0
    if n_bid < 0:
        raise RuntimeError(f"bench_book: CAPACITY {CAPACITY} is too small for this dataset")
    book.n_bid, book.n_ask = n_bid, n_ask
    return elapsed, book, None


@njit(cache=True)
def _replay_all(bid_px: np.ndarray, bid_qty: np.ndarray, ask_key: np.ndarray, ask_qty: np.ndarray,
                flat_px: np.ndarray, flat_qty: np.ndarray, bounds: np.ndarray) -> tuple:
    """Every message through the kernels in one compiled loop; returns (n_bid, n_ask, crossed).

    Nobody reads the edit log here: it fills once and then only flags its overflow."""
    counters = np.zeros(kernels.N_COUNTERS, np.int64)
    edits = np.zeros((kernels.EDIT_LOG_ROWS, 4), np.int64)
    n_bid = n_ask = 0
    crossed = 0
    for i in range(bounds.shape[0]):
        b0, b1, a0, a1 = bounds[i, 1], bounds[i, 2], bounds[i, 3], bounds[i, 4]
        if bounds[i, 0]:
            n_bid = kernels.load_side(bid_px, bid_qty, flat_px[b0:b1], flat_qty[b0:b1], 1)
            n_ask = kernels.load_side(ask_key, ask_qty, flat_px[a0:a1], flat_qty[a0:a1], -1)
        else:
            n_bid, n_ask = kernels.apply_message(bid_px, bid_qty, n_bid, ask_key, ask_qty, n_ask, flat_px[b0:b1],
                                                 flat_qty[b0:b1], flat_px[a0:a1], flat_qty[a0:a1], counters, edits)
            if n_bid < 0:
                raise RuntimeError("bench_book: CAPACITY is too small for this dataset")
        if n_bid and n_ask and bid_px[n_bid - 1] >= -ask_key[n_ask - 1]:
            crossed += 1
    return n_bid, n_ask, crossed


def run_numba_loop(parsed: Parsed, symbol: str) -> tuple[float, Book, int | None]:
    """Every message in one compiled loop: the ceiling with no Python per message."""
    book = roomy_book(symbol)
    t0 = time.perf_counter()
    n_bid, n_ask, crossed = _replay_all(book.bid_px, book.bid_qty, book.ask_key, book.ask_qty, parsed.flat_px,
                                        parsed.flat_qty, parsed.bounds)
    elapsed = time.perf_counter() - t0
    book.n_bid, book.n_ask = n_bid, n_ask
    return elapsed, book, crossed


def check_top(book: Book, inst: Instrument, expected: tuple[list, list]) -> bool:
    """True when the book's final top 5 on both sides equals the checker's."""
    bp, bq, ap, aq = book.top(TOP_N)
    bids = [(inst.price(p), inst.qty(q)) for p, q in zip(bp, bq, strict=True)]
    asks = [(inst.price(p), inst.qty(q)) for p, q in zip(ap, aq, strict=True)]
    return bids == expected[0] and asks == expected[1]


def measure(name: str, fn: Callable[[], tuple[float, Book, int | None]], repeat: int, parsed: Parsed,
            inst: Instrument, expected: tuple[list, list]) -> float:
    """Warm up once, time `repeat` runs, print best/median rates and the top-5 check; returns the best rate."""
    fn()
    times: list[float] = []
    ok = True
    crossed: int | None = None
    for _ in range(repeat):
        elapsed, book, crossed = fn()
        times.append(elapsed)
        ok = ok and check_top(book, inst, expected)
    best, med = min(times), statistics.median(times)
    n_msg = len(parsed.messages)
    print(f"  {name:<13} best {parsed.level_updates / best / 1e6:6.2f} M level updates/s "
          f"{n_msg / best / 1e3:7.1f} k msg/s ({best * 1e3:6.1f} ms, {best / n_msg * 1e6:5.2f} us/msg) | "
          f"median {parsed.level_updates / med / 1e6:6.2f} M/s ({med * 1e3:6.1f} ms) | "
          f"crossed {'-' if crossed is None else crossed} | top{TOP_N} {'OK' if ok else 'MISMATCH'}")
    return parsed.level_updates / best


def main() -> int:
    """Parse the datasets, run each way `--repeat` times, print the figures; exit 1 on a top-5 mismatch."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per figure (after one warm-up)")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    if not DATA.is_dir():
        print(f"bench_book: dataset directory {DATA} not found (expected <repo>/../shared/data)", file=sys.stderr)
        return 2
    print(f"numba {__import__('numba').__version__}, numpy {np.__version__}, python {sys.version.split()[0]}; "
          f"repeat {args.repeat}; target {TARGET / 1e6:.0f} M level updates/s (Book, per message)")
    all_ok = True
    for case in CASES:
        path = DATA / case.folder / "normalized.ndjson.gz"
        exp_path = DATA / case.folder / "expected_final_book.txt"
        if not path.is_file() or not exp_path.is_file():
            print(f"bench_book: {path} or {exp_path.name} missing", file=sys.stderr)
            return 2
        inst = case.instrument
        parsed = load(path, inst)
        expected = expected_top(exp_path)
        print(f"\n{case.folder} tick {inst.tick_size:g} lot {inst.lot_size:g}: {len(parsed.messages)} messages, "
              f"{parsed.level_updates} level updates")
        sym = inst.symbol
        rate = measure("Book", lambda p=parsed, s=sym: run_book(p.messages, s), args.repeat, parsed, inst,
                       expected)
        measure("kernels", lambda p=parsed, s=sym: run_kernels(p.messages, s), args.repeat, parsed, inst, expected)
        measure("numba loop", lambda p=parsed, s=sym: run_numba_loop(p, s), args.repeat, parsed, inst, expected)
        _, book, _ = run_book(parsed.messages, sym)
        ok = check_top(book, inst, expected)
        all_ok = all_ok and ok
        print(f"  final depth bids={book.n_bid} asks={book.n_ask}, absent deletes {book.absent_deletes}, "
              f"level updates counted {book.level_updates}; Book {'meets' if rate >= TARGET else 'MISSES'} target")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
