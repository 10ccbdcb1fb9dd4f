"""Reader for hftbacktest's Binance collector files: gzip text, one `<receive ns> <raw JSON>` a line.

The JSON is a combined-stream envelope `{"stream": "btcusdt@depth@100ms", "data": {...}}` as it came
off the wire, except the REST depth snapshot the collector fetched, which is the bare answer
(`{"lastUpdateId": ..., "bids": ..., "asks": ...}`). Records carry the raw JSON bytes (the Binance
adapter's fast path parses them): channel "ws" for envelopes, "snapshot" for the REST answer.

- Venue: "binance_usdm" when the first depth event carries `pu`, else "binance" (spot).
- Symbol: the envelope's stream name, upper case (`btcusdt@trade` -> BTCUSDT). A snapshot line
  names no symbol: it gets the file's, the symbol of the first envelope (the collector writes one
  file per symbol and day). `symbols` lists those of the first SNIFF_LINES lines.
- Order and time: lines are yielded in file order, which is the order the collector processed
  them and the order the sync procedure needs (the snapshot line sits among the depth events it
  must be matched with). A receive time lower than an earlier line's is raised to that time (and
  counted in `clamped`), so each file is non-decreasing: the replay clock never goes back, and
  `merge_by_receive_time` (a heap merge that assumes sorted streams) can join the files of one
  session, `btcusdt_20240808.gz` then `btcusdt_20240809.gz`, into one continuous session.
- A line that is not `<digits> {...}` is a bad line: InputError, or the BadLineHandler's. The JSON
  itself is checked by the adapter.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from daemon.errors import InputError
from daemon.sources.normalized import _guarded, _GzipStream, _open, _read_error, _ReadFailed, _with_tail
from daemon.sources.records import BadLineHandler, LineSplitter, RawRecord, check_readable, report_bad

SPOT, USDM = "binance", "binance_usdm"
SNIFF_LINES = 10_000  # lines read at open for the symbols (and on to the first depth event, for the venue)
_ENVELOPE = b'{"stream":"'
_SNAPSHOT = b'{"lastUpdateId":'


class HftbacktestReader:
    """One collector file: venue and symbols sniffed now (to fail early), records on iteration."""

    def __init__(self, path: str | Path, symbol: str | None = None, on_bad: BadLineHandler | None = None) -> None:
        self.path = str(path)
        self._on_bad = on_bad
        check_readable(self.path)
        self.venue, found = _sniff(self.path)
        if not found:
            raise InputError(self.path, None, "no combined-stream line to take a symbol from")
        self.file_symbol = found[0]
        if symbol is not None and symbol not in found:
            raise InputError(self.path, None, f"symbol {symbol!r} is not in this file ({found})")
        self.symbols = [symbol] if symbol is not None else found
        self._only = symbol
        self.clamped = 0  # lines whose receive time was raised to an earlier line's

    def __iter__(self) -> Iterator[RawRecord]:
        """Yield the records in file order, receive times made non-decreasing."""
        name, on_bad, only, file_symbol = self.path, self._on_bad, self._only, self.file_symbol
        names: dict[bytes, str] = {}
        prev_ts = 0
        lineno = 0
        with _open(name) as fh:
            splitter = LineSplitter(_guarded(fh.read1))
            try:
                for raw in _with_tail(splitter):
                    lineno += 1
                    sp = raw.find(b" ")
                    head = raw[:sp]
                    if sp <= 0 or not head.isdigit() or raw[sp + 1:sp + 2] != b"{":
                        if raw.strip():
                            report_bad(on_bad, InputError(name, lineno, _problem(raw, sp)))
                        continue
                    ts = int(head)
                    if ts < prev_ts:
                        self.clamped += 1
                        ts = prev_ts
                    prev_ts = ts
                    msg = raw[sp + 1:]
                    if msg.startswith(_ENVELOPE):
                        end = msg.find(b'"', 11)
                        stream = msg[11:end]
                        symbol = names.get(stream)
                        if symbol is None:
                            symbol = names[stream] = _stream_symbol(stream)
                        channel = "ws"
                    else:
                        symbol = file_symbol
                        channel = "snapshot" if msg.startswith(_SNAPSHOT) else "ws"
                    if only is None or symbol == only:
                        yield RawRecord(ts, symbol, channel, msg, name, lineno)
            except _ReadFailed as exc:
                raise _read_error(name, lineno, exc.__cause__) from exc.__cause__


def looks_like_hftbacktest(path: str | Path) -> bool:
    """True when the file is gzip and its first line opens with `<digits> {`."""
    try:
        with open(path, "rb") as fh:
            head = _guarded(_GzipStream(fh).read1)(1 << 12)
    except (OSError, _ReadFailed):
        return False
    sp = head.find(b" ")
    return sp > 0 and head[:sp].isdigit() and head[sp + 1:sp + 2] == b"{"


def _sniff(name: str) -> tuple[str, list[str]]:
    """(venue, symbols in order of appearance) from the first SNIFF_LINES lines, read on to the first
    depth event (at most ten times as far) if there was none among them."""
    venue = ""
    symbols: list[str] = []
    seen: set[bytes] = set()
    with _open(name) as fh:
        splitter = LineSplitter(_guarded(fh.read1), 1 << 16)
        try:
            for lineno, raw in enumerate(_with_tail(splitter), 1):
                if lineno > SNIFF_LINES and (venue or lineno > 10 * SNIFF_LINES):
                    break
                msg = raw[raw.find(b" ") + 1:]
                if not msg.startswith(_ENVELOPE):
                    continue
                stream = msg[11:msg.find(b'"', 11)]
                if stream not in seen:
                    seen.add(stream)
                    symbol = _stream_symbol(stream)
                    if symbol not in symbols:
                        symbols.append(symbol)
                if not venue and b"@depth" in stream and b'"depthUpdate"' in msg[:200]:
                    venue = USDM if b'"pu":' in msg else SPOT
        except _ReadFailed as exc:
            raise _read_error(name, 0, exc.__cause__) from exc.__cause__
    return venue or SPOT, symbols


def _stream_symbol(stream: bytes) -> str:
    """`btcusdt@depth@100ms` -> `BTCUSDT`."""
    return stream.split(b"@", 1)[0].decode("ascii", "replace").upper()


def _problem(raw: bytes, sp: int) -> str:
    """Say why a line is not `<receive ns> <JSON object>`."""
    if sp <= 0:
        return f"expected '<receive time ns> <JSON>', got {raw[:60]!r}"
    if not raw[:sp].isdigit():
        return f"receive time is not a non-negative integer: {raw[:sp][:30]!r}"
    return f"message is not a JSON object: {raw[sp + 1:sp + 40]!r}"
