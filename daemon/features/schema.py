"""The feature schema: names, order, units and a one-line description of every feature.

The order here is the order of the values in a FeatureSample and of the columns a model sees.
Bump SCHEMA_VERSION whenever a name, its order, unit or meaning changes: a model records the
version it was trained on and the scorer refuses one that does not match.

Conventions every description relies on:

- bb/ba are the best bid/ask prices, bq/aq their sizes; mid = (bb + ba) / 2. Prices and sizes are
  decimals (ticks and lots times the instrument's grid). Every book feature is NaN while the book
  is not LIVE or a side is empty, and so is any ratio whose denominator is 0.
- "best N levels" sums the N best levels of a side (fewer if the side has fewer).
- A band of X bps holds the bid levels priced >= mid * (1 - X/1e4) and the ask levels priced
  <= mid * (1 + X/1e4), computed in ticks in float64 as `mid_ticks * (1.0 - X / 10_000.0)`; that
  rounding makes a level exactly on the edge count on the bid side and not on the ask side.
- Windows of W seconds are (now - W, now] of receive time. A windowed feature is NaN until the
  calculator has watched the symbol for W: now - (first event it was given for the symbol) >= W;
  book events dropped before the first snapshot are not given to it.
- A "book change" is a snapshot or delta processed while the book is (or becomes) LIVE. The state
  that compares one book with the previous one (OFI, EWMAs, persistence, the time since the mid
  changed) belongs to a LIVE two-sided period: it restarts when the book leaves LIVE or loses a
  side, and those features are NaN meanwhile. The flow windows (ofi_*, book_rate_10s and the trade
  features) keep counting what they saw, under the window rules only.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 2


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    unit: str
    description: str


_WINDOWS = (1, 10, 60)
_BANDS = (10, 50, 100)


def _build() -> tuple[Feature, ...]:
    f = Feature
    out = [
        # price
        f("mid", "price", "mid price: (bb + ba) / 2"),
        f("microprice", "price", "size-weighted mid: (bb * aq + ba * bq) / (bq + aq)"),
        f("wmid_5", "price", "weighted mid over the best 5 levels: (vwap_bid5 * ask_qty5 + vwap_ask5 * bid_qty5) "
                             "/ (bid_qty5 + ask_qty5)"),
        f("spread_ticks", "ticks", "best ask minus best bid, in ticks"),
        f("spread_bps", "bps", "best ask minus best bid, in basis points of mid"),
        f("micro_mid_bps", "bps", "microprice minus mid, in basis points of mid"),
        f("wmid5_mid_bps", "bps", "wmid_5 minus mid, in basis points of mid"),
        # imbalance
        f("imb_l1", "ratio", "level-1 imbalance: (bq - aq) / (bq + aq), in [-1, 1]"),
    ]
    out += [f(f"imb_{n}", "ratio", f"size imbalance over the best {n} levels per side: (B - A) / (B + A)")
            for n in (3, 5, 10, 20)]
    out += [f(f"imb_{x}bp", "ratio", f"size imbalance of the levels within {x} bps of mid: (B - A) / (B + A)")
            for x in _BANDS]
    out += [
        f("depth_ratio_100bp", "ratio", "bid_qty_100bp / ask_qty_100bp"),
        f("depth_imb_10", "ratio", "notional (price x size) imbalance over the best 10 levels per side"),
    ]
    # depth and shape
    for x in _BANDS:
        out += [f(f"bid_qty_{x}bp", "qty", f"total bid size within {x} bps below mid"),
                f(f"ask_qty_{x}bp", "qty", f"total ask size within {x} bps above mid")]
    for x in _BANDS:
        out += [f(f"bid_notional_{x}bp", "quote", f"sum of price x size of the bids within {x} bps below mid"),
                f(f"ask_notional_{x}bp", "quote", f"sum of price x size of the asks within {x} bps above mid")]
    for x in (10, 100):
        out += [f(f"bid_levels_{x}bp", "count", f"number of bid levels within {x} bps below mid"),
                f(f"ask_levels_{x}bp", "count", f"number of ask levels within {x} bps above mid")]
    out += [
        f("bid_slope_10", "qty/bps", "size of the best 10 bid levels / distance in bps of mid from bb to the "
                                     "10th (or deepest) bid"),
        f("ask_slope_10", "qty/bps", "size of the best 10 ask levels / distance in bps of mid from ba to the "
                                     "10th (or deepest) ask"),
        f("cost_buy_bps", "bps", "(vwap - mid) / mid in bps of buying [features] cost_notional from the asks; "
                                 "NaN if the asks hold less"),
        f("cost_sell_bps", "bps", "(mid - vwap) / mid in bps of selling [features] cost_notional into the bids; "
                                  "NaN if the bids hold less"),
    ]
    # flow
    out += [f(f"ofi_{w}s", "qty", f"order-flow imbalance (Cont-Kukanov-Stoikov) of the best levels, summed over "
                                  f"the book changes of the last {w} s") for w in _WINDOWS]
    out += [f(f"tfi_{w}s", "ratio", f"trade-flow imbalance of the last {w} s: (buy - sell) / (buy + sell) taker "
                                    "size; NaN without trades") for w in _WINDOWS]
    out += [f(f"vol_{w}s", "qty", f"traded size of the last {w} s") for w in _WINDOWS]
    out += [
        f("trade_rate_10s", "1/s", "trades per second over the last 10 s"),
        f("book_rate_10s", "1/s", "book changes per second over the last 10 s"),
    ]
    # dynamics
    out += [f(f"ret_{w}s_bps", "bps", f"mid return over the last {w} s: (mid - mid {w} s ago) / mid {w} s ago, "
                                      "in bps") for w in _WINDOWS]
    out += [
        f("ewma_vol_10s", "bps/sqrt(s)", "realised volatility: sqrt(time-decayed (tau 10 s) sum of squared log mid "
                                         "changes in bps^2 / 10 s); NaN for the first 10 s of a LIVE period"),
        f("ewma_spread_10s", "bps", "time-weighted EWMA (tau 10 s) of spread_bps over the current LIVE period"),
        f("imb_persist_s", "s", "how long imb_l1 has stayed beyond +/- [features] imbalance_threshold, signed by "
                                "the side; 0 inside"),
        f("since_trade_s", "s", "time since the last trade; NaN before the first"),
        f("since_mid_s", "s", "time since the mid last changed (or since the book became LIVE)"),
    ]
    return tuple(out)


FEATURES: tuple[Feature, ...] = _build()
NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
INDEX: dict[str, int] = {name: i for i, name in enumerate(NAMES)}
WINDOWS_S: tuple[int, ...] = _WINDOWS
BANDS_BPS: tuple[int, ...] = _BANDS


def index_of(name: str) -> int:
    """Position of a feature in a sample; a KeyError lists the known names."""
    try:
        return INDEX[name]
    except KeyError:
        raise KeyError(f"unknown feature {name!r}; known: {', '.join(NAMES)}") from None


def describe() -> list[dict[str, str | int]]:
    """The schema as a list of {index, name, unit, description}, for reports and model metadata."""
    return [{"index": i, "name": f.name, "unit": f.unit, "description": f.description}
            for i, f in enumerate(FEATURES)]
