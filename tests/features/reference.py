"""A slow, independent reference of every feature of daemon/features/schema.py, for parity tests.

Written from the specification (the schema's docstring and descriptions, and the exact rules for
bands, wmid_5, slope, cost, OFI, windows, warm-up, returns and the EWMA / persistence state), not
from the streaming kernels: plain Python over a dict book, recomputed from scratch at every sample
where that is affordable. It shares with depthd only the feature names and their order.

It also keeps its own copy of the generic sync rules (INIT / LIVE / INVALID: a delta without a LIVE
book is dropped and makes the book INVALID; a crossed or locked result makes it INVALID and clears
it), because the calculator is told of exactly the book events the engine processes while the book
is, or just stopped being, LIVE.

Choices the specification leaves open, made here and named so a disagreement can be discussed:
- A LIVE book with an empty side has no mid: its book features are NaN, and it ends the state of
  the LIVE period the way leaving LIVE does (OFI chain, EWMAs, imbalance persistence, mid-change
  time); the next two-sided book starts it again (its OFI term is 0, ewma_vol_10s is NaN for 10 s).
  It still counts as a book change for book_rate_10s, and its mid (NaN) is the one ret_* sees.
- ofi_*, book_rate_10s and the trade features are flow features: they are not NaN just because
  the book is not LIVE (the windows and the warm-up are their only rules).
- "the mid changed" compares mids as tick sums (bb + ba); imb_l1 against the threshold is computed
  from sizes in lots (the ratio is the same, and exact up to one rounding).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from daemon.events import BookDelta, BookSnapshot, MarketEvent, Trade
from daemon.features.schema import NAMES

NS = 1_000_000_000
TAU_NS = 10e9
WINDOWS = (1, 10, 60)
BANDS = (10, 50, 100)
NAN = math.nan
COL = {name: i for i, name in enumerate(NAMES)}


@dataclass(frozen=True)
class RefParams:
    cost_notional: float = 1000.0
    imbalance_threshold: float = 0.3


def _ratio(num: float, den: float) -> float:
    return num / den if den != 0 else NAN


class _Period:
    """State of the current LIVE period (from the book change that made the book LIVE)."""

    def __init__(self, ts: int) -> None:
        self.start = ts
        self.prev_top: tuple[int, int, int, int] | None = None  # bb, bq, ba, aq (ticks, lots)
        self.prev_mid_key: int | None = None  # bb + ba, None with an empty side
        self.prev_mid = NAN
        self.prev_spread = NAN
        self.ts_last = ts  # ts of the previous book change (the one whose spread is in force)
        self.vol_v = 0.0
        self.vol_ts = ts
        self.ewma_spread = NAN
        self.persist_s = 0
        self.persist_since = ts
        self.mid_changed_ts = ts


class ReferenceSymbol:
    """One symbol: its own sync state and dict book, its history, and `sample(now)`."""

    def __init__(self, tick: float, lot: float, params: RefParams | None = None) -> None:
        self.tick = tick
        self.lot = lot
        self.params = params or RefParams()
        self.state = "INIT"
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.first_seen: int | None = None
        self.period: _Period | None = None
        # every LIVE book change: receive time and its OFI term
        self.change_ts: list[int] = []
        self.change_e: list[float] = []
        # every on_book call (LIVE or not): receive time and the mid after it (NaN when not LIVE)
        self.mid_ts: list[int] = []
        self.mid_val: list[float] = []
        # trades: receive time, size (decimal) and aggressor sign
        self.trade_ts: list[int] = []
        self.trade_qty: list[float] = []
        self.trade_sign: list[int] = []
        self.last_trade_ts: int | None = None
        self.book_calls = 0  # how often the calculator would have been told of the book

    @property
    def live(self) -> bool:
        return self.state == "LIVE"

    # --- input -----------------------------------------------------------------------------------

    def on_event(self, ev: MarketEvent) -> None:
        if type(ev) is Trade:
            self.on_trade(ev.ts_recv, int(ev.side), int(ev.qty))
        elif type(ev) is BookSnapshot:
            self.on_snapshot(ev.ts_recv, _pairs(ev.bid_px, ev.bid_qty), _pairs(ev.ask_px, ev.ask_qty))
        elif type(ev) is BookDelta:
            self.on_delta(ev.ts_recv, _pairs(ev.bid_px, ev.bid_qty), _pairs(ev.ask_px, ev.ask_qty))
        else:  # pragma: no cover
            raise TypeError(type(ev))

    def on_trade(self, ts: int, sign: int, lots: int) -> None:
        self._seen(ts)
        self.trade_ts.append(ts)
        self.trade_qty.append(lots * self.lot)
        self.trade_sign.append(sign)
        self.last_trade_ts = ts

    def on_snapshot(self, ts: int, bids: Iterable[tuple[int, int]], asks: Iterable[tuple[int, int]]) -> None:
        before = self.state
        self.bids = {p: q for p, q in bids if q != 0}
        self.asks = {p: q for p, q in asks if q != 0}
        self.state = "INVALID" if self._crossed() else "LIVE"
        self._after_book_event(ts, before)

    def on_delta(self, ts: int, bids: Iterable[tuple[int, int]], asks: Iterable[tuple[int, int]]) -> None:
        before = self.state
        if before != "LIVE":
            self.state = "INVALID"  # dropped: no trusted book to apply it to
            self._after_book_event(ts, before)
            return
        for side, changes in ((self.bids, bids), (self.asks, asks)):
            for p, q in changes:
                if q == 0:
                    side.pop(p, None)
                else:
                    side[p] = q
        self.state = "INVALID" if self._crossed() else "LIVE"
        self._after_book_event(ts, before)

    def _crossed(self) -> bool:
        return bool(self.bids) and bool(self.asks) and max(self.bids) >= min(self.asks)

    def _seen(self, ts: int) -> None:
        if self.first_seen is None:
            self.first_seen = ts

    def _after_book_event(self, ts: int, before: str) -> None:
        if self.state == "INVALID":
            self.bids.clear()
            self.asks.clear()
        if self.state != "LIVE" and before != "LIVE":
            return  # the engine does not tell the calculator
        self.book_calls += 1
        self._seen(ts)
        if self.state != "LIVE":
            self.period = None
            self.mid_ts.append(ts)
            self.mid_val.append(NAN)
            return
        self._live_change(ts)

    def _top(self) -> tuple[int, int, int, int] | None:
        if not self.bids or not self.asks:
            return None
        bb = max(self.bids)
        ba = min(self.asks)
        return bb, self.bids[bb], ba, self.asks[ba]

    def _live_change(self, ts: int) -> None:
        top = self._top()
        mid = (top[0] * self.tick + top[2] * self.tick) / 2.0 if top else NAN
        mid_key = top[0] + top[2] if top else None
        spread = (top[2] * self.tick - top[0] * self.tick) / mid * 1e4 if top else NAN
        s = self._imb_state(top)
        self.change_ts.append(ts)
        self.mid_ts.append(ts)
        self.mid_val.append(mid)
        p = self.period
        if top is None:  # one-sided: no mid, and the period's state ends as if the book left LIVE
            self.change_e.append(0.0)
            self.period = None
            return
        if p is None:  # this change makes the book LIVE (or two-sided): a new period, nothing to compare
            p = self.period = _Period(ts)
            self.change_e.append(0.0)
            p.ewma_spread = spread
            p.persist_s = s
            p.persist_since = ts
        else:
            self.change_e.append(self._ofi_term(p.prev_top, top))
            if mid_key != p.prev_mid_key:
                p.mid_changed_ts = ts
                r = math.log(mid / p.prev_mid) * 1e4
                p.vol_v = p.vol_v * math.exp(-(ts - p.vol_ts) / TAU_NS) + r * r
                p.vol_ts = ts
            a = math.exp(-(ts - p.ts_last) / TAU_NS)
            p.ewma_spread = p.ewma_spread * a + p.prev_spread * (1.0 - a)
            if s != p.persist_s:
                p.persist_s = s
                p.persist_since = ts
        p.ts_last = ts
        p.prev_top = top
        p.prev_mid_key = mid_key
        p.prev_mid = mid
        p.prev_spread = spread

    def _imb_state(self, top: tuple[int, int, int, int] | None) -> int:
        if top is None:
            return 0
        bq, aq = top[1], top[3]  # in lots: the ratio is the same, and exact up to one rounding
        imb = (bq - aq) / (bq + aq)
        thr = self.params.imbalance_threshold
        return 1 if imb > thr else -1 if imb < -thr else 0

    def _ofi_term(self, prev: tuple[int, int, int, int] | None, cur: tuple[int, int, int, int] | None) -> float:
        if prev is None or cur is None:
            return 0.0
        bb_p, bq_p, ba_p, aq_p = prev
        bb_n, bq_n, ba_n, aq_n = cur
        lot = self.lot
        e = 0.0
        if bb_n >= bb_p:
            e += bq_n * lot
        if bb_n <= bb_p:
            e -= bq_p * lot
        if ba_n <= ba_p:
            e -= aq_n * lot
        if ba_n >= ba_p:
            e += aq_p * lot
        return e

    # --- output ----------------------------------------------------------------------------------

    def sample(self, now: int) -> np.ndarray:
        out = dict.fromkeys(NAMES, NAN)
        live = self.live
        if live:
            out.update(book_features(self.bids, self.asks, self.tick, self.lot, self.params.cost_notional))
        self._flow(now, out)
        self._dynamics(now, out)
        values = np.array([out[n] for n in NAMES], dtype=np.float64)
        return values

    def _warm(self, now: int, w: int) -> bool:
        return self.first_seen is not None and now - self.first_seen >= w * NS

    def _flow(self, now: int, out: dict[str, float]) -> None:
        for w in WINDOWS:
            if not self._warm(now, w):
                continue
            lo, hi = now - w * NS, now
            i, j = bisect_right(self.change_ts, lo), bisect_right(self.change_ts, hi)
            out[f"ofi_{w}s"] = float(sum(self.change_e[i:j]))
            i, j = bisect_right(self.trade_ts, lo), bisect_right(self.trade_ts, hi)
            buy = sum(q for q, s in zip(self.trade_qty[i:j], self.trade_sign[i:j], strict=True) if s > 0)
            sell = sum(q for q, s in zip(self.trade_qty[i:j], self.trade_sign[i:j], strict=True) if s < 0)
            out[f"tfi_{w}s"] = _ratio(buy - sell, buy + sell)
            out[f"vol_{w}s"] = float(buy + sell)
            if w == 10:
                out["trade_rate_10s"] = (j - i) / 10.0
                i, j = bisect_right(self.change_ts, lo), bisect_right(self.change_ts, hi)
                out["book_rate_10s"] = (j - i) / 10.0
            mid_now = self._current_mid()
            mid_then = self._mid_at(now - w * NS)
            if not (math.isnan(mid_now) or math.isnan(mid_then)):
                out[f"ret_{w}s_bps"] = (mid_now - mid_then) / mid_then * 1e4

    def _current_mid(self) -> float:
        top = self._top() if self.live else None
        return (top[0] * self.tick + top[2] * self.tick) / 2.0 if top else NAN

    def _mid_at(self, t: int) -> float:
        """The mid after the last book call at or before t (NaN if none, or the book was not LIVE)."""
        k = bisect_right(self.mid_ts, t)
        return self.mid_val[k - 1] if k else NAN

    def _dynamics(self, now: int, out: dict[str, float]) -> None:
        if self.last_trade_ts is not None:
            out["since_trade_s"] = (now - self.last_trade_ts) / 1e9
        p = self.period
        if p is None or not self.live:
            return
        if now - p.start >= TAU_NS:
            v = p.vol_v * math.exp(-(now - p.vol_ts) / TAU_NS)
            out["ewma_vol_10s"] = math.sqrt(v / 10.0)
        a = math.exp(-(now - p.ts_last) / TAU_NS)
        out["ewma_spread_10s"] = p.ewma_spread * a + p.prev_spread * (1.0 - a)
        out["imb_persist_s"] = p.persist_s * (now - p.persist_since) / 1e9 if p.persist_s else 0.0
        out["since_mid_s"] = (now - p.mid_changed_ts) / 1e9


def _pairs(px: np.ndarray, qty: np.ndarray) -> list[tuple[int, int]]:
    return list(zip(px.tolist(), qty.tolist(), strict=True))


def book_features(bids: dict[int, int], asks: dict[int, int], tick: float, lot: float,
                  cost_notional: float) -> dict[str, float]:
    """Every book-state feature of a dict book (ticks -> lots); {} (all NaN) with an empty side."""
    if not bids or not asks:
        return {}
    bl = sorted(bids.items(), reverse=True)  # best (highest) first
    al = sorted(asks.items())  # best (lowest) first
    bpx = [p * tick for p, _ in bl]
    bsz = [q * lot for _, q in bl]
    apx = [p * tick for p, _ in al]
    asz = [q * lot for _, q in al]
    bb, bq, ba, aq = bpx[0], bsz[0], apx[0], asz[0]
    mid = (bb + ba) / 2.0
    mid_ticks = (bl[0][0] + al[0][0]) / 2.0
    f: dict[str, float] = {}
    f["mid"] = mid
    f["microprice"] = (bb * aq + ba * bq) / (bq + aq)
    b5, a5 = sum(bsz[:5]), sum(asz[:5])
    vwap_b5 = sum(p * q for p, q in zip(bpx[:5], bsz[:5], strict=True)) / b5
    vwap_a5 = sum(p * q for p, q in zip(apx[:5], asz[:5], strict=True)) / a5
    f["wmid_5"] = (vwap_b5 * a5 + vwap_a5 * b5) / (b5 + a5)
    f["spread_ticks"] = float(al[0][0] - bl[0][0])
    f["spread_bps"] = (ba - bb) / mid * 1e4
    f["micro_mid_bps"] = (f["microprice"] - mid) / mid * 1e4
    f["wmid5_mid_bps"] = (f["wmid_5"] - mid) / mid * 1e4
    f["imb_l1"] = _ratio(bq - aq, bq + aq)
    for n in (3, 5, 10, 20):
        b, a = sum(bsz[:n]), sum(asz[:n])
        f[f"imb_{n}"] = _ratio(b - a, b + a)
    band: dict[int, tuple[list[int], list[int]]] = {}
    for x in BANDS:
        lo = mid_ticks * (1.0 - x / 10_000.0)
        hi = mid_ticks * (1.0 + x / 10_000.0)
        band[x] = ([i for i, (p, _) in enumerate(bl) if p >= lo], [i for i, (p, _) in enumerate(al) if p <= hi])
    for x in BANDS:
        ib, ia = band[x]
        b, a = sum(bsz[i] for i in ib), sum(asz[i] for i in ia)
        f[f"imb_{x}bp"] = _ratio(b - a, b + a)
        f[f"bid_qty_{x}bp"] = float(b)
        f[f"ask_qty_{x}bp"] = float(a)
        f[f"bid_notional_{x}bp"] = float(sum(bpx[i] * bsz[i] for i in ib))
        f[f"ask_notional_{x}bp"] = float(sum(apx[i] * asz[i] for i in ia))
        f[f"bid_levels_{x}bp"] = float(len(ib))
        f[f"ask_levels_{x}bp"] = float(len(ia))
    f["depth_ratio_100bp"] = _ratio(f["bid_qty_100bp"], f["ask_qty_100bp"])
    nb = sum(p * q for p, q in zip(bpx[:10], bsz[:10], strict=True))
    na = sum(p * q for p, q in zip(apx[:10], asz[:10], strict=True))
    f["depth_imb_10"] = _ratio(nb - na, nb + na)
    bid_dist = (bb - bpx[min(10, len(bpx)) - 1]) / mid * 1e4
    ask_dist = (apx[min(10, len(apx)) - 1] - ba) / mid * 1e4
    f["bid_slope_10"] = _ratio(sum(bsz[:10]), bid_dist)
    f["ask_slope_10"] = _ratio(sum(asz[:10]), ask_dist)
    vwap_buy = _vwap_for_notional(apx, asz, cost_notional)
    vwap_sell = _vwap_for_notional(bpx, bsz, cost_notional)
    f["cost_buy_bps"] = (vwap_buy - mid) / mid * 1e4
    f["cost_sell_bps"] = (mid - vwap_sell) / mid * 1e4
    return {k: v for k, v in f.items() if k in COL}


def _vwap_for_notional(px: list[float], qty: list[float], notional: float) -> float:
    """Average price of trading `notional` quote through levels best first, the last one partially;
    NaN if they hold less."""
    if sum(p * q for p, q in zip(px, qty, strict=True)) < notional:
        return NAN
    spent = 0.0
    got = 0.0
    for p, q in zip(px, qty, strict=True):
        if spent + p * q >= notional:
            got += (notional - spent) / p
            break
        spent += p * q
        got += q
    return notional / got
