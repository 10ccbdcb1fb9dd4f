"""What a live gateway writes to the journal (`daemon.journal.Journal` implements it), as a Protocol so
the gateways do not import the journal and tests can watch the calls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from daemon.events import Fill, Order


class OrderJournal(Protocol):
    """Orders before they are sent, their events with the state they leave, fills once per trade id."""

    def record_order(self, order: Order, venue: str = "", state: str = "PENDING_NEW") -> object:
        """Journal an order before it is sent (durable); raising means: do not send it."""
        ...

    def record_order_event(self, ts: int, client_id: str, event: str, state: str, venue_order_id: str | None = None,
                           payload: Mapping[str, object] | None = None) -> object:
        """Journal an order's event (ACCEPT, CANCEL_REQUEST, SEND_TIMEOUT, ...) and the state it leaves."""
        ...

    def record_replace(self, ts: int, client_id: str, qty: int, limit_px: int | None, state: str) -> object:
        """Journal a modification the venue confirmed: the order's new quantity and limit price (durable)."""
        ...

    def record_fill(self, fill: Fill, venue: str, state: str | None = None) -> object:
        """Journal a fill once per (venue, trade id) (durable)."""
        ...
