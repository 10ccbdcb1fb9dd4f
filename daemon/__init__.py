"""depthd: an asyncio live-trading daemon for L2 order-book strategies."""

__version__ = "0.1.0"
