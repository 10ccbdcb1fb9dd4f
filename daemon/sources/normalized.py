"""Reader for the normalized L2 import format (venue "generic"): NDJSON, optionally gzipped.

Each line is `{"ts": ns, "kind": "snapshot"|"delta"|"trade", ...}`. This reader checks only what
replay ordering needs (a JSON object, an integer `ts` that never goes backwards, a known `kind`);
the generic venue adapter validates the payload.

With `raw_lines=True` a line that opens in the canonical shape `{"ts":<digits>,"kind":"<kind>"`
is not parsed here: its bytes go to the adapter, whose numba fast path parses them in one pass
(and which reports invalid JSON in such a line as a bad line, with its file and line number).
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
from daemon.venues.generic_fast import KIND_DELTA, KIND_SNAPSHOT, KIND_TRADE, scan_head

_CHANNEL_OF_KIND = {"snapshot": "book", "delta": "book", "trade": "trade"}
_CHANNEL_OF_CODE = {KIND_SNAPSHOT: "book", KIND_DELTA: "book", KIND_TRADE: "trade"}


class _ReadFailed(Exception):
    """Carries a decompression or I/O failure out of the line splitter, apart from handler errors."""


def read_normalized(
    path: str | Path, symbol: str, on_bad: BadLineHandler | None = None, raw_lines: bool = False
) -> Iterator[RawRecord]:
    """Yield the records of a normalized L2 file in file order; fails now if the file is missing."""
    name = str(path)
    check_readable(name)
    return _records(name, symbol, on_bad, raw_lines)


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


def _records(name: str, symbol: str, on_bad: BadLineHandler | None, raw_lines: bool) -> Iterator[RawRecord]:
    """Parse and check each line, the unterminated last one included; bad lines go to `report_bad`."""
    loads, decode_error, channel_of = orjson.loads, orjson.JSONDecodeError, _CHANNEL_OF_KIND
    prev_ts: int | None = None
    lineno = 0
    with _open(name) as fh:
        splitter = LineSplitter(_guarded(getattr(fh, "read1", fh.read)))
        try:
            for raw in _with_tail(splitter):
                lineno += 1
                if raw_lines:
                    ts, kind_code = scan_head(raw)
                    if ts >= 0 and (prev_ts is None or ts >= prev_ts):
                        prev_ts = ts
                        yield RawRecord(ts, symbol, _CHANNEL_OF_CODE[kind_code], raw, name, lineno)
                        continue
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
