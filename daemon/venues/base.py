"""The adapter protocol every venue implements, and lookup of an adapter by venue name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from daemon.errors import VenueError
from daemon.events import MarketEvent
from daemon.instruments import Instrument


class DecodeError(VenueError):
    """A venue message that cannot be turned into an event; the message says what is wrong."""


class VenueAdapter(Protocol):
    """Turns one raw message (as received, parsed) into market events. Pure."""

    def decode(self, ts_recv: int, symbol: str, channel: str, msg: Any) -> list[MarketEvent]:
        """The events in one message; a DecodeError says what is wrong with it."""


def adapter_for(venue: str, instrument: Callable[[str], Instrument]) -> VenueAdapter:
    """The adapter for a venue name; an unknown venue is a DecodeError naming the known ones."""
    from daemon.venues.generic import GenericAdapter

    adapters: dict[str, Callable[[Callable[[str], Instrument]], VenueAdapter]] = {"generic": GenericAdapter}
    try:
        return adapters[venue](instrument)
    except KeyError:
        raise DecodeError(f"no adapter for venue {venue!r}; known: {', '.join(sorted(adapters))}") from None
