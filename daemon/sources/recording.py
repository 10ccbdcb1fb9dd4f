"""The depthd recording format: zstd-compressed NDJSON with a header line.

    {"format": "depthd-recording", "version": 1, "venue": ..., "symbols": [...], "depthd_version": ...}
    {"t": <receive time ns>, "ch": <channel>, "sym": <symbol>, "m": <message as received>}
    ...

Raw wire bytes are spliced into `m` verbatim so replay feeds the venue adapter exactly what the
live feed saw. Lines carry no wall-clock time, so recording the same input twice gives the same
bytes. A recording cut short by a crash replays up to its last complete line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import orjson
import zstandard

from daemon import __version__
from daemon.errors import InputError
from daemon.sources.records import BadLineHandler, LineSplitter, RawRecord, check_readable, report_bad

FORMAT = "depthd-recording"
VERSION = 1
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_MAX_HEADER_BYTES = 1 << 20
RESERVED_HEADER_KEYS = frozenset({"format", "version", "venue", "symbols", "depthd_version"})


class RecordingWriter:
    """Appends receive-stamped venue messages to a new recording; use as a context manager."""

    def __init__(
        self, path: str | Path, venue: str, symbols: list[str], *, level: int = 3, **header_extra: Any
    ) -> None:
        clash = RESERVED_HEADER_KEYS & header_extra.keys()
        if clash:
            raise ValueError(f"header_extra may not set {sorted(clash)}")
        if not isinstance(venue, str) or not venue:
            raise ValueError(f"venue must be a non-empty string, got {venue!r}")
        if not all(isinstance(s, str) for s in symbols):
            raise ValueError(f"symbols must be strings, got {symbols!r}")
        header = {
            "format": FORMAT,
            "version": VERSION,
            "venue": venue,
            "symbols": list(symbols),
            "depthd_version": __version__,
            **header_extra,
        }
        header_line = orjson.dumps(header) + b"\n"
        compressor = zstandard.ZstdCompressor(level=level, write_checksum=True)
        self.path = str(path)
        self._file: BinaryIO = open(self.path, "xb")  # noqa: SIM115
        self._zst = compressor.stream_writer(self._file)
        self._last_t: int | None = None
        self._closed = False
        self._zst.write(header_line)

    def write(self, ts_recv: int, channel: str, symbol: str, msg: Any | bytes) -> None:
        """Append one message; `bytes` are raw wire JSON and are stored byte for byte."""
        if self._closed:
            raise ValueError(f"{self.path}: write to a closed recording")
        if type(ts_recv) is not int or type(channel) is not str or type(symbol) is not str:
            raise TypeError(
                f"need ts_recv: int, channel: str, symbol: str; got {ts_recv!r}, {channel!r}, {symbol!r}"
            )
        if self._last_t is not None and ts_recv < self._last_t:
            raise ValueError(f"ts_recv {ts_recv} goes backwards (last written {self._last_t})")
        m = _raw_json(bytes(msg)) if isinstance(msg, bytes | bytearray | memoryview) else orjson.dumps(msg)
        prefix = orjson.dumps({"t": ts_recv, "ch": channel, "sym": symbol})
        self._zst.write(prefix[:-1] + b',"m":' + m + b"}\n")
        self._last_t = ts_recv

    def flush(self) -> None:
        """End the current zstd block and push it to the OS, so a crash later loses nothing before it."""
        if not self._closed:
            self._zst.flush(zstandard.FLUSH_BLOCK)
            self._file.flush()

    def close(self) -> None:
        """End the zstd frame and close the file; closing twice is harmless. The file is closed even
        when ending the frame fails (a full disk): the error propagates, the handle does not leak."""
        if self._closed:
            return
        self._closed = True
        try:
            self._zst.flush(zstandard.FLUSH_FRAME)
            self._zst.close()
        finally:
            self._file.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _raw_json(msg: bytes) -> bytes:
    """Return wire JSON to splice verbatim, or re-serialized when it spans lines; reject non-JSON."""
    try:
        parsed = orjson.loads(msg)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"raw message is not valid JSON: {exc}") from exc
    if b"\n" in msg or b"\r" in msg:
        return orjson.dumps(parsed)
    return msg


class RecordingReader:
    """Reads a recording: the header now (to fail early), the records on each iteration."""

    def __init__(self, path: str | Path, on_bad: BadLineHandler | None = None, raw_messages: bool = False) -> None:
        self.path = str(path)
        self._on_bad = on_bad
        # raw_messages: hand each `m` on as its bytes exactly as recorded (the writer puts it last), so a
        # venue adapter decodes the very bytes the live feed received, on its fast path
        self.raw_messages = raw_messages
        check_readable(self.path)
        self.header: dict[str, Any] = _read_header(self.path)
        self.venue: str = self.header["venue"]
        self.symbols: list[str] = list(self.header["symbols"])

    def __iter__(self) -> Iterator[RawRecord]:
        """Yield every record after the header, in file order."""
        name, on_bad = self.path, self._on_bad
        loads, decode_error = orjson.loads, orjson.JSONDecodeError
        prev_t: int | None = None
        lineno = 0
        with open(name, "rb") as fh:
            stream = _FrameReader(fh)
            splitter = LineSplitter(stream.read)
            try:
                for raw in splitter:
                    lineno += 1
                    if lineno == 1:
                        continue
                    try:
                        cut = raw.find(b',"m":') if self.raw_messages else -1
                        if cut > 0 and raw.endswith(b"}"):
                            obj = loads(raw[:cut] + b"}")
                            t, ch, sym, m = obj["t"], obj["ch"], obj["sym"], raw[cut + 5:-1]
                        else:
                            obj = loads(raw)
                            t, ch, sym, m = obj["t"], obj["ch"], obj["sym"], obj["m"]
                    except (decode_error, KeyError, TypeError) as exc:
                        report_bad(on_bad, InputError(name, lineno, _shape_problem(raw, exc)))
                        continue
                    if type(t) is not int or type(ch) is not str or type(sym) is not str:
                        report_bad(on_bad, InputError(name, lineno, _type_problem(t, ch, sym)))
                        continue
                    if prev_t is not None and t < prev_t:
                        problem = f"t {t} goes backwards (previous line's t is {prev_t})"
                        report_bad(on_bad, InputError(name, lineno, problem))
                        continue
                    prev_t = t
                    yield RawRecord(t, sym, ch, m, name, lineno)
            except _ZstdFailed as exc:
                problem = f"truncated or corrupt zstd stream after line {lineno}: {exc.__cause__}"
                report_bad(on_bad, InputError(name, lineno + 1, problem))
                return
        if splitter.tail:
            report_bad(on_bad, InputError(name, lineno + 1, "torn last line (truncated recording)"))
        elif not stream.frame_ended:
            report_bad(on_bad, InputError(name, lineno + 1, "no zstd frame end: the recording was not closed "
                                                            "(a crash, or still being written)"))


class _ZstdFailed(Exception):
    """Carries a zstd decoding failure out of the line splitter, apart from handler errors."""


class _FrameReader:
    """Decompresses a file frame by frame; `frame_ended` says whether the data stopped at a frame's end
    (a recording closed properly) or inside one (the process died before closing it)."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._dctx = zstandard.ZstdDecompressor()
        self._dobj = self._dctx.decompressobj()
        self._failed: zstandard.ZstdError | None = None
        self.frame_ended = True

    def read(self, size: int) -> bytes:
        """Up to about `size` compressed bytes' worth of decompressed data; b"" at the end of the file.
        A zstd failure surfaces as `_ZstdFailed` after everything decoded before it was returned."""
        while True:
            if self._failed is not None:
                raise _ZstdFailed() from self._failed
            data = self._fh.read(size)
            if not data:
                return b""
            out = []
            while data:
                try:
                    out.append(self._dobj.decompress(data))
                except zstandard.ZstdError as exc:
                    self._failed = exc
                    break
                if self._dobj.eof:
                    data = self._dobj.unused_data
                    self._dobj = self._dctx.decompressobj()
                    self.frame_ended = True
                else:
                    data = b""
                    self.frame_ended = False
            chunk = b"".join(out)
            if chunk:
                return chunk
            if self._failed is not None:
                raise _ZstdFailed() from self._failed


def _guarded_reader(fh: BinaryIO) -> Callable[[int], bytes]:
    """A `read(size)` over the decompressed stream whose zstd failures surface as `_ZstdFailed`.

    `read1` returns what it has decoded before a failure, so no complete line before it is lost.
    """
    stream = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True, closefd=False)

    def read(size: int) -> bytes:
        try:
            return stream.read1(size)
        except zstandard.ZstdError as exc:
            raise _ZstdFailed() from exc

    return read


def _shape_problem(raw: bytes, exc: Exception) -> str:
    """Say why a line is not a record object."""
    if isinstance(exc, orjson.JSONDecodeError):
        return f"invalid JSON: {exc}"
    if isinstance(exc, KeyError):
        return f"record is missing {exc.args[0]!r} (needs t, ch, sym, m)"
    return "line is not a JSON object"


def _type_problem(t: object, ch: object, sym: object) -> str:
    """Say which record field has the wrong type."""
    if type(t) is not int:
        return f"t is not an integer: {t!r}"
    if type(ch) is not str:
        return f"ch is not a string: {ch!r}"
    return f"sym is not a string: {sym!r}"


def _read_header(name: str) -> dict[str, Any]:
    """Read and check the first line; every failure is InputError at line 1."""
    with open(name, "rb") as fh:
        magic = fh.read(4)
        if not magic:
            raise InputError(name, 1, "empty file; not a depthd recording")
        if magic != _ZSTD_MAGIC:
            raise InputError(name, 1, "not zstd-compressed; not a depthd recording")
        fh.seek(0)
        read = _guarded_reader(fh)
        data = b""
        try:
            while b"\n" not in data and len(data) < _MAX_HEADER_BYTES:
                chunk = read(1 << 16)
                if not chunk:
                    break
                data += chunk
        except _ZstdFailed as exc:
            raise InputError(name, 1, f"truncated or corrupt zstd stream in header: {exc.__cause__}") from exc
    line, newline, _ = data.partition(b"\n")
    if not newline:
        problem = "no header line" if not data else "header line is torn or too long (truncated recording?)"
        raise InputError(name, 1, problem)
    return _check_header(name, line)


def _check_header(name: str, line: bytes) -> dict[str, Any]:
    """Validate the header object's format, version, venue and symbols."""
    try:
        header = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InputError(name, 1, f"header is not valid JSON: {exc}") from exc
    if type(header) is not dict or header.get("format") != FORMAT:
        raise InputError(name, 1, f'missing header: first line is not a {{"format": "{FORMAT}", ...}} object')
    version = header.get("version")
    if type(version) is not int or version != VERSION:
        raise InputError(name, 1, f"unsupported recording version {version!r} (this depthd reads {VERSION})")
    venue, symbols = header.get("venue"), header.get("symbols")
    if type(venue) is not str or not venue:
        raise InputError(name, 1, f"header venue must be a non-empty string, got {venue!r}")
    if type(symbols) is not list or not all(type(s) is str for s in symbols):
        raise InputError(name, 1, f"header symbols must be a list of strings, got {symbols!r}")
    return header
