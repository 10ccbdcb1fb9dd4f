"""The market behind the fake venues: a true book, and the events that move it.

`TrueBook` is the book as the venue itself knows it: per side a dict of Decimal price -> the level's
row of strings exactly as the venue sends it (`[price, qty]` for Binance, `[px, sz, "0", orders]` for
OKX), plus an update id. It is plain Python on purpose (the fake is not a hot path, and it must stay
independent of the daemon's decoding and book code, so that it can judge them).

A source produces what moves the market, venue-neutral:
- `start() -> BookStart`: the initial book (rows best first) and update id;
- `next_event() -> Depth | Print | None`: one book change (rows, qty "0..." deletes) or one trade;
  None when a recording is exhausted.

Sources: `SyntheticSource(style, seed)` (seeded random walk, never crossed, endless) and the real
recordings in ../shared/data: `BinanceRecording` (hftbacktest files, spot or USD-M, keeps the recorded
U/u/pu) and `OkxRecording` (cryptofeed capture, keeps the recorded checksum for comparison).
"""

from __future__ import annotations

import bisect
import gzip
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple, Protocol

import orjson

DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"

Row = Sequence[str]


_SCALE = 12
_UNIT = 10**_SCALE


def is_zero(qty: str) -> bool:
    """True for a size string that deletes a level ("0", "0.000", "0.00000000")."""
    return not qty.strip("0.")


def price_key(px: str) -> int:
    """A decimal price string as an exact integer of 1e-12 units: the true book's sort key (fast, exact)."""
    whole, _, frac = px.partition(".")
    if len(frac) > _SCALE:
        frac = frac.rstrip("0")
        if len(frac) > _SCALE:
            raise ValueError(f"price {px!r} has more than {_SCALE} decimals")
    try:
        return int(whole) * _UNIT + (int(frac.ljust(_SCALE, "0")) if frac else 0)
    except ValueError:
        raise ValueError(f"price {px!r} is not a plain decimal number") from None


class BookStart(NamedTuple):
    """The initial book of a source: rows best first, and the update id it is at."""

    bids: list[Row]
    asks: list[Row]
    update_id: int


class Depth(NamedTuple):
    """One book change as the venue sends it; `ids` = recorded Binance (U, u, pu), `checksum` = recorded OKX."""

    bids: list[Row]
    asks: list[Row]
    ids: tuple[int, int, int | None] | None = None
    checksum: int | None = None


class Print(NamedTuple):
    """One trade; `side` is the aggressor (taker) side, "buy" or "sell"."""

    price: str
    qty: str
    side: str
    trade_id: int


Event = Depth | Print


class Source(Protocol):
    """What moves one symbol's market."""

    def start(self) -> BookStart:
        """The initial book; called once, before next_event."""

    def next_event(self) -> Event | None:
        """The next change or trade, None when there are no more."""


class BookSide:
    """One side of the true book: price key (`price_key`) -> row, and the keys kept sorted."""

    def __init__(self, bids: bool) -> None:
        self.bids = bids
        self.rows: dict[int, Row] = {}
        self._keys: list[int] = []

    def __len__(self) -> int:
        return len(self.rows)

    def set(self, row: Row) -> tuple[int, Row | None]:
        """Apply one level (zero size deletes; deleting an absent level is a no-op); returns (key, previous row)."""
        key = price_key(row[0])
        prev = self.rows.get(key)
        self._put(key, None if is_zero(row[1]) else row, prev)
        return key, prev

    def restore(self, key: int, prev: Row | None) -> None:
        """Undo one `set`: put back the previous row (or remove the level)."""
        self._put(key, prev, self.rows.get(key))

    def _put(self, key: int, row: Row | None, cur: Row | None) -> None:
        if row is None:
            if cur is not None:
                del self.rows[key]
                del self._keys[bisect.bisect_left(self._keys, key)]
            return
        if cur is None:
            bisect.insort(self._keys, key)
        self.rows[key] = row

    def top(self, n: int | None = None) -> list[Row]:
        """The best n rows (all when n is None), best first."""
        keys = self._keys[::-1] if self.bids else self._keys
        if n is not None:
            keys = keys[:n]
        return [self.rows[k] for k in keys]

    def best(self) -> Row | None:
        """The best row, or None for an empty side."""
        if not self._keys:
            return None
        return self.rows[self._keys[-1] if self.bids else self._keys[0]]

    def copy(self) -> BookSide:
        """An independent copy (rows are immutable by convention and shared)."""
        out = BookSide(self.bids)
        out.rows = dict(self.rows)
        out._keys = list(self._keys)
        return out


Undo = list[tuple[bool, int, Row | None]]


class TrueBook:
    """The venue's own book of one symbol and its update id."""

    def __init__(self, start: BookStart) -> None:
        self.bids = BookSide(bids=True)
        self.asks = BookSide(bids=False)
        for row in start.bids:
            self.bids.set(row)
        for row in start.asks:
            self.asks.set(row)
        self.update_id = start.update_id

    def apply(self, bids: Sequence[Row], asks: Sequence[Row]) -> Undo:
        """Apply one change; returns what undoes it (for stale snapshots)."""
        undo: Undo = []
        for row in bids:
            undo.append((True, *self.bids.set(row)))
        for row in asks:
            undo.append((False, *self.asks.set(row)))
        return undo

    def crossed(self) -> bool:
        """Best bid at or above best ask."""
        bb, ba = self.bids.best(), self.asks.best()
        return bb is not None and ba is not None and price_key(bb[0]) >= price_key(ba[0])

    def decimals(self) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """(bids, asks) as (price, qty) Decimals, best first, every level."""
        return ([(Decimal(r[0]), Decimal(r[1])) for r in self.bids.top()],
                [(Decimal(r[0]), Decimal(r[1])) for r in self.asks.top()])

    def rewound(self, undos: Sequence[Undo], update_id: int) -> TrueBook:
        """A copy of this book with `undos` (newest last) taken back, at `update_id`."""
        out = TrueBook(BookStart([], [], update_id))
        out.bids, out.asks = self.bids.copy(), self.asks.copy()
        for undo in reversed(undos):
            for is_bid, key, prev in reversed(undo):
                (out.bids if is_bid else out.asks).restore(key, prev)
        return out


@dataclass(frozen=True)
class Style:
    """How a venue writes numbers: decimals of price and size, tick and lot in those units, OKX-style rows."""

    price_dp: int
    qty_dp: int
    tick_units: int
    lot_units: int
    strip: bool = False
    okx_rows: bool = False

    def fmt(self, units: int, dp: int) -> str:
        """Integer units of 10**-dp as the venue writes them."""
        whole, frac = divmod(units, 10**dp)
        s = f"{whole}.{frac:0{dp}d}" if dp else str(whole)
        if self.strip and dp:
            s = s.rstrip("0").rstrip(".")
        return s

    def row(self, tick: int, lots: int, orders: int) -> Row:
        """One level row (lots 0 = a delete)."""
        px = self.fmt(tick * self.tick_units, self.price_dp)
        qty = self.fmt(lots * self.lot_units, self.qty_dp)
        if self.okx_rows:
            return [px, qty, "0", str(orders if lots else 0)]
        return [px, qty]


SPOT = Style(price_dp=8, qty_dp=8, tick_units=1_000_000, lot_units=1_000)
USDM = Style(price_dp=2, qty_dp=3, tick_units=10, lot_units=1)
OKX = Style(price_dp=1, qty_dp=8, tick_units=1, lot_units=100, strip=True, okx_rows=True)


class SyntheticSource:
    """A seeded random-walk market: levels added, changed and removed on both sides, never crossed.

    The mid wanders as best levels are removed and new ones placed inside the spread; each side keeps
    between `min_levels` and `max_levels` levels (the worst are deleted past the maximum), and a few
    changes delete levels that are not in the book (as real feeds do).
    """

    def __init__(self, style: Style, seed: int = 1, *, mid: int = 60_000, levels: int = 60, min_levels: int = 10,
                 max_levels: int = 200, max_changes: int = 8, trade_ratio: float = 0.25,
                 ghost_ratio: float = 0.05, update_id: int = 1_000_000) -> None:
        if not 0 < min_levels <= levels <= max_levels:
            raise ValueError(f"need 0 < min_levels <= levels <= max_levels, got {min_levels}, {levels}, {max_levels}")
        self.style = style
        self._rng = random.Random(seed)
        self._min, self._max, self._max_changes = min_levels, max_levels, max_changes
        self._trade_ratio, self._ghost_ratio = trade_ratio, ghost_ratio
        self._update_id = update_id
        self._trade_id = 1_000_000
        self._qty: tuple[dict[int, int], dict[int, int]] = ({}, {})  # (bids, asks): tick -> lots
        self._ticks: tuple[list[int], list[int]] = ([], [])  # ascending
        mid_tick = mid * 10**style.price_dp // style.tick_units
        bid, ask = mid_tick - 1, mid_tick + 1
        for _ in range(levels):
            self._put(0, bid, self._lots())
            self._put(1, ask, self._lots())
            bid -= self._rng.randint(1, 3)
            ask += self._rng.randint(1, 3)

    def start(self) -> BookStart:
        """The initial book."""
        bids = [self._row(0, t) for t in reversed(self._ticks[0])]
        asks = [self._row(1, t) for t in self._ticks[1]]
        return BookStart(bids, asks, self._update_id)

    def next_event(self) -> Event:
        """A trade (with probability trade_ratio) or a book change of 1..max_changes levels."""
        rng = self._rng
        if rng.random() < self._trade_ratio:
            self._trade_id += 1
            buy = rng.random() < 0.5
            tick = self._best(1) if buy else self._best(0)
            px = self.style.fmt(tick * self.style.tick_units, self.style.price_dp)
            qty = self.style.fmt(rng.randint(1, 500) * self.style.lot_units, self.style.qty_dp)
            return Print(px, qty, "buy" if buy else "sell", self._trade_id)
        touched: tuple[dict[int, int], dict[int, int]] = ({}, {})
        for _ in range(rng.randint(1, self._max_changes)):
            side = rng.randint(0, 1)
            r = rng.random()
            if r < 0.45:
                tick = self._pick(side)
                self._put(side, tick, self._lots())
            elif r < 0.7 and len(self._ticks[side]) > self._min:
                tick = self._pick(side)
                self._put(side, tick, 0)
            else:
                tick = self._new_tick(side)
                self._put(side, tick, self._lots())
            touched[side][tick] = self._qty[side].get(tick, 0)
        for side in (0, 1):
            while len(self._ticks[side]) > self._max:
                tick = self._ticks[side][0] if side == 0 else self._ticks[side][-1]
                self._put(side, tick, 0)
                touched[side][tick] = 0
        if rng.random() < self._ghost_ratio:
            side = rng.randint(0, 1)
            worst = self._ticks[side][0] - 1 if side == 0 else self._ticks[side][-1] + 1
            ghost = worst - rng.randint(0, 50) if side == 0 else worst + rng.randint(0, 50)
            touched[side].setdefault(ghost, 0)
        bids = [self._row(0, t, touched[0][t]) for t in touched[0]]
        asks = [self._row(1, t, touched[1][t]) for t in touched[1]]
        return Depth(bids, asks)

    def _lots(self) -> int:
        return self._rng.randint(1, 20_000)

    def _row(self, side: int, tick: int, lots: int | None = None) -> Row:
        lots = self._qty[side][tick] if lots is None else lots
        return self.style.row(tick, lots, 1 + tick % 7)

    def _best(self, side: int) -> int:
        return self._ticks[side][-1] if side == 0 else self._ticks[side][0]

    def _pick(self, side: int) -> int:
        """An existing level, most often near the top."""
        ticks = self._ticks[side]
        i = min(int(self._rng.expovariate(1 / 5)), len(ticks) - 1)
        return ticks[-1 - i] if side == 0 else ticks[i]

    def _new_tick(self, side: int) -> int:
        """A price for a new level: below the best ask for a bid (above the best bid for an ask)."""
        off = int(self._rng.expovariate(1 / 8))
        return self._best(1) - 1 - off if side == 0 else self._best(0) + 1 + off

    def _put(self, side: int, tick: int, lots: int) -> None:
        qty, ticks = self._qty[side], self._ticks[side]
        if lots:
            if tick not in qty:
                bisect.insort(ticks, tick)
            qty[tick] = lots
        elif tick in qty:
            del qty[tick]
            del ticks[bisect.bisect_left(ticks, tick)]


def _binance_lines(paths: Sequence[Path]) -> Iterator[bytes]:
    for path in paths:
        with gzip.open(path, "rb") as f:
            for line in f:
                yield line.split(b" ", 1)[1]


class BinanceRecording:
    """hftbacktest's recorded Binance traffic (spot or USD-M BTCUSDT): the REST snapshot line is the start,
    then the recorded depth events (U/u/pu kept; those already in the snapshot skipped) and trades in
    order. Recorded bookTickers are not replayed: the fake derives its own from the true book."""

    def __init__(self, paths: Sequence[Path], *, futures: bool) -> None:
        missing = [str(p) for p in paths if not Path(p).is_file()]
        if missing:
            raise FileNotFoundError(f"recorded Binance data not found: {', '.join(missing)}")
        self._futures = futures
        self._lines = _binance_lines(paths)
        self._pending: list[Event] = []

    @classmethod
    def for_market(cls, market: str, data_dir: Path = DATA_DIR) -> BinanceRecording:
        """The recording of BTCUSDT for market "spot" or "usdm" in the shared data folder."""
        if market == "spot":
            folder = data_dir / "binance_spot_btcusdt"
            return cls([folder / "btcusdt_20240808.gz", folder / "btcusdt_20240809.gz"], futures=False)
        if market == "usdm":
            return cls([data_dir / "binance_usdm_btcusdt" / "btcusdt_20240808.gz"], futures=True)
        raise ValueError(f"market must be 'spot' or 'usdm', got {market!r}")

    def start(self) -> BookStart:
        """Read up to the snapshot line; depth events recorded before it and not in it are kept for later."""
        early: list[Depth] = []
        for raw in self._lines:
            msg = orjson.loads(raw)
            if "lastUpdateId" in msg:
                last = msg["lastUpdateId"]
                self._pending = [d for d in early if d.ids and (d.ids[1] >= last if self._futures else d.ids[1] > last)]
                return BookStart(msg["bids"], msg["asks"], last)
            ev = self._event(msg)
            if isinstance(ev, Depth):
                early.append(ev)
        raise ValueError("recorded Binance data has no REST snapshot line")

    def next_event(self) -> Event | None:
        """The next recorded depth event or trade; None at the end of the files."""
        if self._pending:
            return self._pending.pop(0)
        for raw in self._lines:
            if raw.startswith(b'{"stream":"btcusdt@bookTicker"'):
                continue
            ev = self._event(orjson.loads(raw))
            if ev is not None:
                return ev
        return None

    def _event(self, msg: dict) -> Event | None:
        data = msg.get("data")
        if not isinstance(data, dict):
            return None
        kind = data.get("e")
        if kind == "depthUpdate":
            return Depth(data["b"], data["a"], (data["U"], data["u"], data.get("pu")))
        if kind == "trade" and data.get("X", "MARKET") == "MARKET":
            return Print(data["p"], data["q"], "sell" if data["m"] else "buy", data["t"])
        return None


class OkxRecording:
    """cryptofeed's capture of OKX v5 (`T: {json}` lines are received frames): the first `books` snapshot of
    `inst_id` is the start, then its `books` updates (with the recorded checksum) and trades in order."""

    def __init__(self, path: Path = DATA_DIR / "okx_btcusdt" / "OKX.ws.1.0", inst_id: str = "BTC-USDT") -> None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"recorded OKX data not found: {path}")
        self._inst = inst_id
        self._frames = self._read(Path(path))
        self._pending: list[Event] = []

    def _read(self, path: Path) -> Iterator[dict]:
        with open(path, "rb") as f:
            for line in f:
                if line.startswith(b"wss://") or line.startswith(b"https://"):
                    continue
                _, sep, body = line.partition(b": ")
                if sep and body.startswith(b"{"):
                    msg = orjson.loads(body)
                    if msg.get("arg", {}).get("instId") == self._inst and "data" in msg:
                        yield msg

    def start(self) -> BookStart:
        """The first books snapshot of the instrument (trades before it are skipped)."""
        for msg in self._frames:
            if msg["arg"]["channel"] == "books" and msg.get("action") == "snapshot":
                (book,) = msg["data"]
                return BookStart(book["bids"], book["asks"], 0)
        raise ValueError(f"recorded OKX data has no books snapshot of {self._inst}")

    def next_event(self) -> Event | None:
        """The next books update or trade; None at the end of the file."""
        while not self._pending:
            msg = next(self._frames, None)
            if msg is None:
                return None
            channel = msg["arg"]["channel"]
            if channel == "books" and msg.get("action") == "update":
                self._pending = [Depth(d["bids"], d["asks"], None, d.get("checksum")) for d in msg["data"]]
            elif channel == "trades":
                self._pending = [Print(d["px"], d["sz"], d["side"], int(d["tradeId"])) for d in msg["data"]]
        return self._pending.pop(0)
