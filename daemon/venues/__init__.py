"""Venue adapters: pure decoders from a venue's raw messages to BookSnapshot / BookDelta / Trade."""

from daemon.venues.base import DecodeError, VenueAdapter, adapter_for

__all__ = ["DecodeError", "VenueAdapter", "adapter_for"]
