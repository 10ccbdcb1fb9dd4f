"""The broker port: what the engine may ask of any broker (paper, ccxt, IB) and how it hears back.

A broker is built with an `on_event` sink and reports everything through it: OrderAccepted, Fill,
OrderCanceled and OrderRejected (`daemon.events.BrokerEvent`). `submit` and `cancel` return nothing;
their outcome always arrives as events, possibly later (latency) and possibly from inside the call
(an order refused on the spot is reported before `submit` returns).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from daemon.brokers.lifecycle import OrderState
from daemon.events import BrokerEvent, Order

BrokerEventSink = Callable[[BrokerEvent], None]


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """A read-only view of a live order: the order as sent, how much filled and where it stands."""

    order: Order
    filled_qty: int
    leaves_qty: int
    state: OrderState


class Broker(Protocol):
    """Sends orders and cancels to a venue (real or simulated); results come back via `on_event`."""

    def submit(self, order: Order) -> None:
        """Send an order; acceptance, fills, cancels or a reject are reported as events."""
        ...

    def cancel(self, client_id: str) -> None:
        """Ask to cancel an order by client id; an OrderCanceled event confirms it."""
        ...

    def open_orders(self, symbol: str | None = None) -> list[OpenOrder]:
        """Orders not yet in a terminal state (all symbols, or one), in submission order."""
        ...
