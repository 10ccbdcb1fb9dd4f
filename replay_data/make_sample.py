"""Make the sample session that ships in replay_data/: a seeded order-flow simulation of one symbol.

    python replay_data/make_sample.py [--seed 7] [--minutes 20] [--out replay_data/sample.rec.zst]

The model works in integer ticks and lots; decimals appear only in the messages written.

- A latent fair value (in ticks) follows a random walk whose drift switches between regimes
  (flat, up, down; exponential durations).
- Limit adds join the book a geometric distance behind the own touch (some uniformly up to 50 ticks
  deep, some inside a wide spread), with lognormal or round sizes. A cancel takes one order's size
  off a level picked with weight size x closeness to the touch (queue-reactive), so touch queues
  stay finite. Market orders walk up to five levels: one trade line per level hit, then the delta
  that reduces or removes those levels.
- A pressure in [-1, 1], set by the regime and by how far the fair value is from the mid, tilts the
  flow: under an up regime bids get more adds, asks more cancels and buys are more frequent, so
  the level-1 and 5-level depth imbalance build up before the mid moves.
- When the fair value runs three ticks past a side's best quote (after a pause, in a fast trend),
  a quote is re-posted next to it and, in the same message, the levels it would cross are
  cancelled. The book is never crossed or locked, which is asserted after every book message.
- A few feed pauses of several seconds; the one in the middle of the session is followed by a full
  re-snapshot of the book.

The same seed and arguments give a byte-identical file: numpy's default_rng is the only randomness
and no wall clock is read. A JSON summary of the session is printed on stdout.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import itertools
import json
import math
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

SYMBOL = "SIMUSD"
VENUE = "generic"
TICK = 0.01
LOT = 0.0001
T0_NS = 1_767_225_600_000_000_000  # 2026-01-01 00:00:00 UTC
DEFAULT_SEED = 7
DEFAULT_MINUTES = 20.0
DEFAULT_OUT = ROOT / "replay_data" / "sample.rec.zst"
ZSTD_LEVEL = 19
DESCRIPTION = "synthetic L2 session of SIMUSD: seeded order-flow simulation (replay_data/make_sample.py)"

# Clock and feed.
START_TICKS = 10_000  # 100.00
WARMUP_S = 30.0  # flow simulated before the first snapshot, so the book starts in its steady state
MEAN_GAP_S = 0.0125  # mean exponential gap between exchange messages
LATENCY_NS = 250_000  # venue -> receiver, plus an exponential jitter of the same mean
N_PAUSES = 4  # feed pauses besides the one before the mid-session re-snapshot
PAUSE_S = (3.0, 9.0)

# Fair value: ticks per sqrt(second) of noise, ticks per second of drift in a trend regime.
DIFFUSION = 0.6
TREND = 1.4
REGIME_MEAN_S = {0: 22.0, 1: 7.0, -1: 7.0}
PRESSURE_REGIME = 0.9
PRESSURE_GAP = 0.35

# Order flow.
P_ADD, P_CANCEL = 0.53, 0.39  # the rest are market orders
ADD_TILT, CANCEL_TILT, MARKET_TILT = 0.3, 0.3, 0.4
P_ADD_NEAR = 0.7  # an add lands a geometric distance behind the own touch, else uniform in the depth
NEAR_P = 0.4
DEPTH_TICKS = 50
P_IMPROVE = 0.3
STALE_TICKS = 3.0
CANCEL_DECAY = 6.0
CANCEL_FLOOR = 0.08
FAR_WEIGHT = 1e6  # levels DEPTH_TICKS or more behind the touch are pulled first
MIN_LEVELS = 35
MAX_SWEEP = 5
ROUND_SIZES = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
P_ROUND = 0.3

Msg = dict[str, Any]


def px(ticks: int) -> float:
    """Integer ticks to the decimal price written in messages."""
    return round(ticks * TICK, 2)


def qx(lots: int) -> float:
    """Integer lots to the decimal size written in messages."""
    return round(lots * LOT, 4)


def check_book(bids: dict[int, int], asks: dict[int, int]) -> None:
    """Assert that both sides are non-empty, sizes positive and the book neither crossed nor locked."""
    assert bids and asks, "a side of the book is empty"
    bb, ba = max(bids), min(asks)
    assert bb < ba, f"book crossed or locked: bid {px(bb)} >= ask {px(ba)}"
    assert min(bids.values()) > 0 and min(asks.values()) > 0, "a level with size <= 0"


class Simulator:
    """The order-flow model; `messages()` yields (receive time ns, channel, message) in time order."""

    def __init__(self, seed: int, minutes: float) -> None:
        self.rng = np.random.default_rng(seed)
        self.duration = minutes * 60.0
        self.fv = START_TICKS + 0.5
        self.regime = 0
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.t = -WARMUP_S
        self.last_recv = 0
        self._initial_book()

    # --- public -----------------------------------------------------------------------------

    def best(self) -> tuple[int, int]:
        """Best bid and best ask, in ticks."""
        return max(self.bids), min(self.asks)

    def messages(self) -> Iterator[tuple[int, str, Msg]]:
        """Run the session: a snapshot, then the flow, with pauses and one mid-session re-snapshot."""
        while self.t < 0.0:
            self._step(float(self.rng.exponential(MEAN_GAP_S)))
            self._event(0)
        self.t = 0.0
        yield self._recv(T0_NS), "book", self._snapshot(T0_NS)
        pauses = sorted(
            [(self.duration * 0.5, float(self.rng.uniform(*PAUSE_S)), True)]
            + [
                (float(self.rng.uniform(0.05, 0.95)) * self.duration, float(self.rng.uniform(*PAUSE_S)), False)
                for _ in range(N_PAUSES)
            ]
        )
        while True:
            dt = float(self.rng.exponential(MEAN_GAP_S))
            resnap = False
            if pauses and self.t + dt >= pauses[0][0]:
                _, gap, resnap = pauses.pop(0)
                dt += gap
            if self.t + dt > self.duration:
                return
            self._step(dt)
            ts = T0_NS + round(self.t * 1e6) * 1000  # the venue stamps in microseconds
            recv = self._recv(ts)
            if resnap:
                yield recv, "book", self._snapshot(ts)
                continue
            for channel, msg in self._event(ts):
                yield recv, channel, msg

    # --- the model --------------------------------------------------------------------------

    def _initial_book(self) -> None:
        for k in range(DEPTH_TICKS):
            keep = 0.9 if k < 10 else 0.6
            if self.rng.random() < keep:
                self.bids[START_TICKS - k] = self._size(k)
            if self.rng.random() < keep:
                self.asks[START_TICKS + 1 + k] = self._size(k)
        check_book(self.bids, self.asks)

    def _step(self, dt: float) -> None:
        """Advance the clock, switch regime and move the fair value."""
        self.t += dt
        if self.rng.random() < 1.0 - math.exp(-dt / REGIME_MEAN_S[self.regime]):
            self.regime = int(self.rng.choice((-1, 1))) if self.regime == 0 else 0
        self.fv += TREND * self.regime * dt + DIFFUSION * math.sqrt(dt) * float(self.rng.normal())

    def _recv(self, ts: int) -> int:
        """Receive time: venue time plus latency and jitter, never before the previous message."""
        recv = ts + LATENCY_NS + int(self.rng.exponential(LATENCY_NS))
        self.last_recv = max(self.last_recv, recv)
        return self.last_recv

    def _size(self, depth: int) -> int:
        """Lots of one limit order `depth` ticks behind the touch: lognormal or round, bigger when deeper."""
        if self.rng.random() < P_ROUND:
            units = ROUND_SIZES[int(self.rng.integers(len(ROUND_SIZES)))]
        else:
            units = float(self.rng.lognormal(math.log(0.8), 0.9)) * (1.0 + depth / 25.0)
        return max(1, round(units / LOT))

    def _event(self, ts: int) -> list[tuple[str, Msg]]:
        """One exchange event: a stale-quote pull, a limit add, a cancel or a market order."""
        bb, ba = self.best()
        if ba < self.fv - STALE_TICKS:
            return self._pull(ts, bid=True)
        if bb > self.fv + STALE_TICKS:
            return self._pull(ts, bid=False)
        p = math.tanh(PRESSURE_REGIME * self.regime + PRESSURE_GAP * (self.fv - (bb + ba) / 2))
        u = self.rng.random()
        if u < P_ADD:
            bid = self.rng.random() < 0.5 + ADD_TILT * p
            return self._add(ts, bid, p if bid else -p)
        if u < P_ADD + P_CANCEL:
            return self._cancel(ts, bid=self.rng.random() >= 0.5 + CANCEL_TILT * p)
        return self._market(ts, buy=self.rng.random() < 0.5 + MARKET_TILT * p)

    def _add(self, ts: int, bid: bool, tilt: float) -> list[tuple[str, Msg]]:
        """A limit order: inside the spread when it is wide, else mostly at or near the own touch."""
        bb, ba = self.best()
        book = self.bids if bid else self.asks
        if ba - bb > 1 and self.rng.random() < P_IMPROVE * (1.0 + tilt):
            k = 0
            j = int(self.rng.integers(1, ba - bb))
            price = bb + j if bid else ba - j
        else:
            if self.rng.random() < P_ADD_NEAR:
                k = int(self.rng.geometric(NEAR_P)) - 1
            else:
                k = int(self.rng.integers(DEPTH_TICKS))
            price = bb - k if bid else ba + k
        book[price] = book.get(price, 0) + self._size(k)
        change = [[px(price), qx(book[price])]]
        return [self._delta(ts, change, []) if bid else self._delta(ts, [], change)]

    def _cancel(self, ts: int, bid: bool) -> list[tuple[str, Msg]]:
        """One resting order leaves a level picked by size x closeness to the touch (queue-reactive)."""
        book = self.bids if bid else self.asks
        if len(book) <= MIN_LEVELS:
            return self._add(ts, bid, 0.0)
        touch = max(book) if bid else min(book)
        ticks = list(book)
        weights = [
            book[x] * LOT * (math.exp(-abs(x - touch) / CANCEL_DECAY) + CANCEL_FLOOR)
            + (FAR_WEIGHT if abs(x - touch) >= DEPTH_TICKS else 0.0)
            for x in ticks
        ]
        cum = list(itertools.accumulate(weights))
        x = ticks[min(bisect.bisect_right(cum, self.rng.random() * cum[-1]), len(ticks) - 1)]
        size = max(0, book[x] - self._size(abs(x - touch)))
        if size:
            book[x] = size
        else:
            del book[x]
        change = [[px(x), qx(size)]]
        return [self._delta(ts, change, []) if bid else self._delta(ts, [], change)]

    def _market(self, ts: int, buy: bool) -> list[tuple[str, Msg]]:
        """A market order walks up to MAX_SWEEP levels: one trade per level, then the delta."""
        book = self.asks if buy else self.bids
        if len(book) < 2 * MAX_SWEEP:
            return self._add(ts, not buy, 0.0)
        left = max(1, round(float(self.rng.lognormal(math.log(1.0), 1.1)) / LOT))
        out: list[tuple[str, Msg]] = []
        changes = []
        for x in sorted(book, reverse=not buy)[:MAX_SWEEP]:
            fill = min(left, book[x])
            out.append(
                (
                    "trade",
                    {"ts": ts, "kind": "trade", "price": px(x), "qty": qx(fill), "side": "buy" if buy else "sell"},
                )
            )
            book[x] -= fill
            changes.append([px(x), qx(book[x])])
            if book[x] == 0:
                del book[x]
            left -= fill
            if left == 0:
                break
        out.append(self._delta(ts, [], changes) if buy else self._delta(ts, changes, []))
        return out

    def _pull(self, ts: int, bid: bool) -> list[tuple[str, Msg]]:
        """The fair value ran past the other side's best quotes: a `bid` (or ask) is re-quoted next to
        it, and in the same message the levels it would cross are cancelled."""
        own, other = (self.bids, self.asks) if bid else (self.asks, self.bids)
        ref = math.floor(self.fv) if bid else math.floor(self.fv) + 1
        crossed = sorted((x for x in other if (x <= ref if bid else x >= ref)), reverse=not bid)
        for x in crossed:
            del other[x]
        other_changes = [[px(x), 0.0] for x in crossed]
        if not other:  # the whole side was stale: it is re-quoted behind the fair value as well
            back = ref + 1 if bid else ref - 1
            other[back] = self._size(0)
            other_changes.append([px(back), qx(other[back])])
        price = min(ref, min(other) - 1) if bid else max(ref, max(other) + 1)
        own[price] = own.get(price, 0) + self._size(0)
        changes = [[px(price), qx(own[price])]]
        return [self._delta(ts, changes, other_changes) if bid else self._delta(ts, other_changes, changes)]

    # --- messages ---------------------------------------------------------------------------

    def _delta(self, ts: int, bids: list[list[float]], asks: list[list[float]]) -> tuple[str, Msg]:
        check_book(self.bids, self.asks)
        return "book", {"ts": ts, "kind": "delta", "bids": bids, "asks": asks}

    def _snapshot(self, ts: int) -> Msg:
        check_book(self.bids, self.asks)
        return {
            "ts": ts,
            "kind": "snapshot",
            "bids": [[px(x), qx(self.bids[x])] for x in sorted(self.bids, reverse=True)],
            "asks": [[px(x), qx(self.asks[x])] for x in sorted(self.asks)],
        }


class SessionStats:
    """Counts lines and samples the book once a second of venue time, for the JSON summary."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.level_changes = 0
        self.first_recv = self.last_recv = 0
        self.trade_px: list[float] = []
        self.trade_qty = 0.0
        self.buys = 0
        self.max_gap_ns = 0
        self.gaps_over_1s = 0
        self.samples: list[tuple[float, float, float, int, int, int]] = []
        self._next_sample = T0_NS

    def add(self, recv: int, msg: Msg, sim: Simulator) -> None:
        """Account for one written message; `sim` holds the book as it is after the message."""
        if self.kinds.total():
            gap = recv - self.last_recv
            self.max_gap_ns = max(self.max_gap_ns, gap)
            self.gaps_over_1s += gap > 1_000_000_000
        else:
            self.first_recv = recv
        self.last_recv = recv
        self.kinds[msg["kind"]] += 1
        if msg["kind"] == "trade":
            self.trade_px.append(msg["price"])
            self.trade_qty += msg["qty"]
            self.buys += msg["side"] == "buy"
            return
        self.level_changes += len(msg["bids"]) + len(msg["asks"])
        while msg["ts"] >= self._next_sample:
            self._next_sample += 1_000_000_000
            self.samples.append(self._sample(sim))

    @staticmethod
    def _sample(sim: Simulator) -> tuple[float, float, float, int, int, int]:
        bids = sorted(sim.bids, reverse=True)[:5]
        asks = sorted(sim.asks)[:5]
        b1, a1 = sim.bids[bids[0]], sim.asks[asks[0]]
        b5, a5 = sum(sim.bids[x] for x in bids), sum(sim.asks[x] for x in asks)
        mid, spread = (bids[0] + asks[0]) / 2, asks[0] - bids[0]
        return (b1 - a1) / (b1 + a1), (b5 - a5) / (b5 + a5), mid, spread, len(sim.bids), len(sim.asks)

    def summary(self) -> dict[str, Any]:
        """The session's statistics as a JSON-ready dict."""
        s = np.asarray(self.samples)
        lead: dict[str, float] = {}
        for h, (col, depth) in itertools.product((1, 5), ((0, "l1"), (1, "l5"))):
            if len(s) > h + 2:
                corr = np.corrcoef(s[:-h, col], s[h:, 2] - s[:-h, 2])[0, 1]
                lead[f"{depth}_imbalance_vs_mid_move_next_{h}s"] = round(float(corr), 3)
        return {
            "lines": self.kinds.total(),
            "lines_by_kind": dict(sorted(self.kinds.items())),
            "level_changes": self.level_changes,
            "first_ts_recv": self.first_recv,
            "last_ts_recv": self.last_recv,
            "span_s": round((self.last_recv - self.first_recv) / 1e9, 3),
            "feed_gaps_over_1s": self.gaps_over_1s,
            "longest_gap_s": round(self.max_gap_ns / 1e9, 3),
            "mid_range": [round(float(s[:, 2].min()) * TICK, 3), round(float(s[:, 2].max()) * TICK, 3)],
            "trade_price_range": [min(self.trade_px), max(self.trade_px)],
            "trade_volume": round(self.trade_qty, 4),
            "buy_aggressor_share": round(self.buys / len(self.trade_px), 3),
            "levels_per_side_mean": [round(float(s[:, 4].mean()), 1), round(float(s[:, 5].mean()), 1)],
            "one_tick_spread_share": round(float(np.mean(s[:, 3] == 1)), 3),
            "imbalance_lead_corr": lead,
        }


def generate(out: str | Path, seed: int = DEFAULT_SEED, minutes: float = DEFAULT_MINUTES) -> dict[str, Any]:
    """Simulate a session and write it to `out` (replacing it); return the summary statistics."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from daemon.sources.recording import RecordingWriter

    out = Path(out)
    part = out.with_name(out.name + ".part")
    part.unlink(missing_ok=True)
    sim = Simulator(seed, minutes)
    stats = SessionStats()
    header = {
        "description": DESCRIPTION,
        "seed": seed,
        "generator": "replay_data/make_sample.py",
        "minutes": minutes,
        "instrument": {"symbol": SYMBOL, "tick_size": TICK, "lot_size": LOT},
    }
    with RecordingWriter(part, venue=VENUE, symbols=[SYMBOL], level=ZSTD_LEVEL, **header) as writer:
        for recv, channel, msg in sim.messages():
            writer.write(recv, channel, SYMBOL, msg)
            stats.add(recv, msg, sim)
    part.replace(out)
    data = out.read_bytes()
    return {
        "file": out.name,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "seed": seed,
        "minutes": minutes,
        **stats.summary(),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: generate the sample and print its summary as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="default_rng seed (%(default)s)")
    parser.add_argument("--minutes", type=float, default=DEFAULT_MINUTES, help="session length (%(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output file (%(default)s)")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be > 0")
    print(json.dumps(generate(args.out, args.seed, args.minutes), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
