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

try:  # ISA-L inflates the same gzip format about four times faster than zlib; zlib is the fallback
    from isal import isal_zlib as _inflate
except ImportError:  # pragma: no cover - platforms without an isal wheel
    _inflate = zlib  # type: ignore[assignment]
_InflateError = _inflate.error
_GZIP_WBITS = 31  # a gzip header and trailer around the deflate stream

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


def _open(name: str) -> BinaryIO | _GzipStream:
    """Open for binary reading, through gzip when the name says so."""
    try:
        fh = open(name, "rb")  # noqa: SIM115 - closed by the caller's with-block
        return _GzipStream(fh) if name.endswith(".gz") else fh
    except OSError as exc:
        raise InputError(name, None, f"cannot open: {exc.strerror or exc}") from exc


class _GzipStream:
    """A (multi-member) gzip file inflated chunk by chunk: all the data before a truncated end is
    handed out first, and the read after it raises EOFError, as the stdlib's gzip module does."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._inflater = _inflate.decompressobj(_GZIP_WBITS)
        self._started = False

    def read1(self, size: int) -> bytes:
        """Up to a chunk of inflated bytes; b"" at the clean end of the file."""
        while True:
            chunk = self._fh.read(size)
            if not chunk:
                if self._started and not self._inflater.eof:
                    raise EOFError("Compressed file ended before the end-of-stream marker was reached")
                return b""
            self._started = True
            out = self._inflater.decompress(chunk)
            while self._inflater.eof and self._inflater.unused_data:
                rest = self._inflater.unused_data
                self._inflater = _inflate.decompressobj(_GZIP_WBITS)
                out += self._inflater.decompress(rest)
            if out:
                return out

    def __enter__(self) -> _GzipStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()


def _guarded(read: Callable[[int], bytes]) -> Callable[[int], bytes]:
    """Wrap `read` so that its failures surface as `_ReadFailed`."""

    def guarded_read(size: int) -> bytes:
        try:
            return read(size)
        except (EOFError, OSError, zlib.error, _InflateError) as exc:
            raise _ReadFailed() from exc

    return guarded_read


def _records(name: str, symbol: str, on_bad: BadLineHandler | None, raw_lines: bool) -> Iterator[RawRecord]:
    """Parse and check each line, the unterminated last one included; bad lines go to `report_bad`."""
    loads, decode_error, channel_of = orjson.loads, orjson.JSONDecodeError, _CHANNEL_OF_KIND
    prev_ts: int | None = None
    lineno = 0
    with _open(name) as fh:
        splitter = LineSplitter(_guarded(fh.read1))
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
    if isinstance(exc, gzip.BadGzipFile | zlib.error | _InflateError):
        return InputError(name, lineno + 1, f"truncated or corrupt gzip stream after line {lineno}: {exc}")
    return InputError(name, lineno + 1, f"read error after line {lineno}: {exc}")
