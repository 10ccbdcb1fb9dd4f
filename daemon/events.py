"""Event and action types that travel along the path: small, immutable, typed.

Market events carry two timestamps in ns (DESIGN rule 8): `ts_venue`, the venue's own time, and
`ts_recv`, the local receive time. Prices are int ticks and sizes int lots (rule 9). Book events
carry their levels as int64 numpy arrays: a delta's size 0 deletes the level.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class Side(enum.IntEnum):
    """Order or aggressor side; the value is the sign it gives a position."""

    BUY = 1
    SELL = -1

    @property
    def opposite(self) -> Side:
        """The other side."""
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(enum.StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class Liquidity(enum.StrEnum):
    MAKER = "maker"
    TAKER = "taker"


# --- market data -------------------------------------------------------------------------------
# One of these is made per venue message, so they are NamedTuples: as immutable as a frozen
# dataclass, built in C at a third of the cost. Compare them by type and fields, never as tuples.


class _BookLevels(NamedTuple):
    """Price levels of one symbol from one venue message, both sides as int64 arrays.

    `seq` is the venue's update id of the message (Binance `u`, OKX `seqId`; 0 when the venue has
    none); `checksum` the venue's checksum of the book after the message, for BookSync to verify
    (None: no checksum); `complete` is False for a snapshot that holds only the top of the book
    (Binance REST: 1,000 levels a side), so the book knows how deep it can be trusted.
    """

    symbol: str
    ts_venue: int
    ts_recv: int
    bid_px: np.ndarray
    bid_qty: np.ndarray
    ask_px: np.ndarray
    ask_qty: np.ndarray
    seq: int = 0
    checksum: int | None = None
    complete: bool = True

    @property
    def n_levels(self) -> int:
        """How many (price, size) pairs the message carries."""
        return len(self.bid_px) + len(self.ask_px)


class BookSnapshot(_BookLevels):
    """The whole visible book of one symbol: replaces every level."""

    __slots__ = ()


class BookDelta(_BookLevels):
    """Level changes from one venue message: each (price, size) sets a level; size 0 deletes it."""

    __slots__ = ()


class Trade(NamedTuple):
    """A print on the venue; `side` is the aggressor's (taker's) side."""

    symbol: str
    ts_venue: int
    ts_recv: int
    price: int
    qty: int
    side: Side


class Quote(NamedTuple):
    """The venue's own best bid and ask (Binance `bookTicker`), as of its update id `seq`.

    BookSync compares it with the book when the book is at the same `seq`: a mismatch means the book
    is wrong, and it is resynchronised.
    """

    symbol: str
    ts_venue: int
    ts_recv: int
    bid_px: int
    bid_qty: int
    ask_px: int
    ask_qty: int
    seq: int


class BookReset(NamedTuple):
    """The venue's sync rules lost the book of one symbol (a sequence gap, a disconnect, a stale
    snapshot): it is unknown, and not to be traded on, until the next snapshot."""

    symbol: str
    ts_venue: int
    ts_recv: int
    reason: str


MarketEvent = BookSnapshot | BookDelta | Trade | Quote | BookReset


# --- strategy and orders -----------------------------------------------------------------------


class TargetPosition(NamedTuple):
    """What a strategy wants to hold in a symbol, in lots (signed), with its confidence in [0, 1].

    A NamedTuple like the market events: a strategy answers every sample with one.
    """

    symbol: str
    ts: int
    target: int
    confidence: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """An order the engine wants to send, before risk has seen it."""

    symbol: str
    ts: int
    side: Side
    qty: int
    order_type: OrderType
    limit_px: int | None = None
    reduce_only: bool = False
    tag: str = ""

    def __post_init__(self) -> None:
        if self.qty <= 0:
            raise ValueError(f"OrderIntent qty must be > 0, got {self.qty}")
        if (self.order_type is OrderType.LIMIT) != (self.limit_px is not None):
            raise ValueError("a limit intent needs limit_px and a market intent must not have one")


@dataclass(frozen=True, slots=True)
class Order:
    """An intent that passed risk, with the client order id it is known by."""

    client_id: str
    symbol: str
    ts: int
    side: Side
    qty: int
    order_type: OrderType
    limit_px: int | None = None
    tag: str = ""

    @classmethod
    def from_intent(cls, client_id: str, intent: OrderIntent) -> Order:
        """The order an intent becomes once risk has passed it."""
        return cls(client_id, intent.symbol, intent.ts, intent.side, intent.qty, intent.order_type,
                   intent.limit_px, intent.tag)


@dataclass(frozen=True, slots=True)
class RiskReject:
    """An intent the risk gate refused, with a stable reason code and a readable detail."""

    intent: OrderIntent
    reason: str
    detail: str


# --- broker events -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderAccepted:
    client_id: str
    symbol: str
    ts: int


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution: price in ticks, size in lots, fee in quote currency (positive = paid)."""

    client_id: str
    symbol: str
    ts: int
    side: Side
    price: int
    qty: int
    fee: float
    liquidity: Liquidity
    trade_id: str


@dataclass(frozen=True, slots=True)
class OrderCanceled:
    client_id: str
    symbol: str
    ts: int
    reason: str
    leaves_qty: int


@dataclass(frozen=True, slots=True)
class OrderRejected:
    client_id: str
    symbol: str
    ts: int
    reason: str


BrokerEvent = OrderAccepted | Fill | OrderCanceled | OrderRejected
