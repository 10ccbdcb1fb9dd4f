"""The record every replay source yields, the bad-line policy, and chunked line splitting.

A source reads a file in binary chunks, splits them on b"\\n" and parses each line once. A bad
line either raises `InputError` (no handler) or goes to a `BadLineHandler` and is skipped, so
the caller chooses between strict and lenient replay without the readers knowing why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from daemon.errors import InputError

CHUNK_SIZE = 1 << 20


class RawRecord(NamedTuple):
    """One input message with its local receive time and where it came from.

    A NamedTuple rather than a dataclass: one is made per input line, and a tuple is built in C.
    """

    ts_recv: int
    symbol: str
    channel: str
    msg: Any
    path: str
    line: int


class BadLineHandler(Protocol):
    """Receives a bad input line's error instead of letting it stop the replay."""

    def __call__(self, err: InputError) -> None:
        """Take note of a bad line (count it, log it); the reader then skips it."""


def report_bad(on_bad: BadLineHandler | None, err: InputError) -> None:
    """Raise `err` when there is no handler, else hand it over so the caller skips the line."""
    if on_bad is None:
        raise err
    on_bad(err)


def check_readable(name: str) -> None:
    """Raise InputError now, not at the first record, when `name` is not a readable file."""
    p = Path(name)
    if not p.exists():
        raise InputError(name, None, "no such file")
    if not p.is_file():
        raise InputError(name, None, "not a regular file")


class LineSplitter:
    """Yields the newline-terminated lines read through `read`; keeps an unterminated rest in `tail`.

    Lines come without their b"\\n". An exception from `read` propagates after every complete line
    before it has been yielded; whatever partial line was buffered then stays in `tail`.
    """

    def __init__(self, read: Callable[[int], bytes], chunk_size: int = CHUNK_SIZE) -> None:
        self._read = read
        self._chunk_size = chunk_size
        self.tail = b""

    def __iter__(self) -> Iterator[bytes]:
        read, size = self._read, self._chunk_size
        while chunk := read(size):
            lines = (self.tail + chunk).split(b"\n") if self.tail else chunk.split(b"\n")
            self.tail = lines.pop()
            yield from lines
