"""Reader for the normalized L2 import format (venue "generic"): NDJSON, optionally gzipped.

Each line is `{"ts": ns, "kind": "snapshot"|"delta"|"trade", ...}`. This reader checks only what
replay ordering needs (a JSON object, an integer `ts` that never goes backwards, a known `kind`);
the generic venue adapter validates the payload.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import orjson

from daemon.errors import InputError
from daemon.sources.records import BadLineHandler, LineSplitter, RawRecord, check_readable, report_bad

_CHANNEL_OF_KIND = {"snapshot": "book", "delta": "book", "trade": "trade"}


class _ReadFailed(Exception):
    """Carries a decompression or I/O failure out of the line splitter, apart from handler errors."""


def read_normalized(
    path: str | Path, symbol: str, on_bad: BadLineHandler | None = None
) -> Iterator[RawRecord]:
    """Yield the records of a normalized L2 file in file order; fails now if the file is missing."""
    name = str(path)
    check_readable(name)
    return _records(name, symbol, on_bad)


def _open(name: str) -> BinaryIO:
    """Open for binary reading, through gzip when the name says so."""
    try:
        return gzip.open(name, "rb") if name.endswith(".gz") else open(name, "rb")
    except OSError as exc:
        raise InputError(name, None, f"cannot open: {exc.strerror or exc}") from exc


def _guarded(read: Callable[[int], bytes]) -> Callable[[int], bytes]:
    """Wrap `read` so that its failures surface as `_ReadFailed`."""

    def guarded_read(size: int) -> bytes:
        try:
            return read(size)
        except (EOFError, OSError, zlib.error) as exc:
            raise _ReadFailed() from exc

    return guarded_read


def _records(name: str, symbol: str, on_bad: BadLineHandler | None) -> Iterator[RawRecord]:
    """Parse and check each line, the unterminated last one included; bad lines go to `report_bad`."""
    loads, decode_error, channel_of = orjson.loads, orjson.JSONDecodeError, _CHANNEL_OF_KIND
    prev_ts: int | None = None
    lineno = 0
    with _open(name) as fh:
        splitter = LineSplitter(_guarded(getattr(fh, "read1", fh.read)))
        try:
            for raw in _with_tail(splitter):
                lineno += 1
                try:
                    obj = loads(raw)
                except decode_error as exc:
                    if raw.strip():
                        report_bad(on_bad, InputError(name, lineno, f"invalid JSON: {exc}"))
                    continue
                if type(obj) is not dict:
                    report_bad(on_bad, InputError(name, lineno, "line is not a JSON object"))
                    continue
                ts = obj.get("ts")
                kind = obj.get("kind")
                channel = channel_of.get(kind) if type(kind) is str else None
                if type(ts) is not int or channel is None or (prev_ts is not None and ts < prev_ts):
                    report_bad(on_bad, InputError(name, lineno, _problem(obj, ts, kind, prev_ts)))
                    continue
                prev_ts = ts
                yield RawRecord(ts, symbol, channel, obj, name, lineno)
        except _ReadFailed as exc:
            raise _read_error(name, lineno, exc.__cause__) from exc.__cause__


def _with_tail(splitter: LineSplitter) -> Iterator[bytes]:
    """Yield the complete lines, then the unterminated last line if there is one."""
    yield from splitter
    if splitter.tail:
        yield splitter.tail


def _problem(obj: dict, ts: object, kind: object, prev_ts: int | None) -> str:
    """Say what is wrong with a line that failed the checks in `_records`."""
    if "ts" not in obj:
        return "missing ts"
    if type(ts) is not int:
        return f"ts is not an integer: {ts!r}"
    if type(kind) is not str or kind not in _CHANNEL_OF_KIND:
        return f"unknown kind {kind!r}; expected snapshot, delta or trade"
    return f"ts {ts} goes backwards (previous line's ts is {prev_ts})"


def _read_error(name: str, lineno: int, exc: BaseException | None) -> InputError:
    """Describe a stream that ends early or cannot be read, at the line after the last complete one."""
    if isinstance(exc, EOFError):
        return InputError(name, lineno + 1, f"truncated gzip stream after line {lineno}")
    if isinstance(exc, gzip.BadGzipFile | zlib.error):
        return InputError(name, lineno + 1, f"truncated or corrupt gzip stream after line {lineno}: {exc}")
    return InputError(name, lineno + 1, f"read error after line {lineno}: {exc}")
