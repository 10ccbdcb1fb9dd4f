"""Venue adapters: pure decoders (and sync rules) from a venue's raw messages to market events."""

from daemon.venues.base import (
    CH_MARKER,
    CH_SNAPSHOT,
    CH_WS,
    BaseAdapter,
    DecodeError,
    FeedRequest,
    Resubscribe,
    SnapshotRequest,
    VenueAdapter,
    adapter_for,
)
from daemon.venues.health import FeedHealth, ResyncPolicy, SymbolHealth

__all__ = ["CH_MARKER", "CH_SNAPSHOT", "CH_WS", "BaseAdapter", "DecodeError", "FeedHealth", "FeedRequest",
           "Resubscribe", "ResyncPolicy", "SnapshotRequest", "SymbolHealth", "VenueAdapter", "adapter_for"]
