"""The feature schema: names, order, units and a one-line description of every feature.

The order here is the order of the values in a FeatureSample and of the columns a model sees.
Bump SCHEMA_VERSION whenever a name, its order, unit or meaning changes.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    unit: str
    description: str


FEATURES: tuple[Feature, ...] = (
    Feature("mid", "price", "mid price: (best bid + best ask) / 2"),
    Feature("microprice", "price", "size-weighted mid: (bid * ask_qty + ask * bid_qty) / (bid_qty + ask_qty)"),
    Feature("spread_bps", "bps", "best ask minus best bid, in basis points of mid"),
    Feature("imb_l1", "ratio", "level-1 imbalance: (bid_qty - ask_qty) / (bid_qty + ask_qty), in [-1, 1]"),
    Feature("imb_5", "ratio", "cumulative size imbalance over the best 5 levels per side, in [-1, 1]"),
    Feature("imb_10", "ratio", "cumulative size imbalance over the best 10 levels per side, in [-1, 1]"),
    Feature("bid_depth_1pct", "qty", "total bid size at prices within 1% below mid"),
    Feature("ask_depth_1pct", "qty", "total ask size at prices within 1% above mid"),
    Feature("depth_ratio_1pct", "ratio", "bid_depth_1pct / ask_depth_1pct"),
)

NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
INDEX: dict[str, int] = {name: i for i, name in enumerate(NAMES)}


def index_of(name: str) -> int:
    """Position of a feature in a sample; a KeyError lists the known names."""
    try:
        return INDEX[name]
    except KeyError:
        raise KeyError(f"unknown feature {name!r}; known: {', '.join(NAMES)}") from None
