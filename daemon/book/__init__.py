"""The order book: numpy arrays and numba kernels, and the per-symbol sync state machine."""

from daemon.book.book import NO_PRICE, Book
from daemon.book.sync import BookState, BookSync

__all__ = ["NO_PRICE", "Book", "BookState", "BookSync"]
