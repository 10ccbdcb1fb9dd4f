"""Replay input sources: the recording format, the normalized L2 import format, and merging.

`open_replay_input` picks the reader from the file name, so the CLI and the app need not know
the formats.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from daemon.errors import InputError
from daemon.sources.hftbacktest import HftbacktestReader, looks_like_hftbacktest
from daemon.sources.merge import merge_by_receive_time
from daemon.sources.normalized import read_normalized
from daemon.sources.recording import FORMAT, VERSION, RecordingReader, RecordingWriter
from daemon.sources.records import BadLineHandler, RawRecord

__all__ = [
    "FORMAT",
    "VERSION",
    "BadLineHandler",
    "HftbacktestReader",
    "RawRecord",
    "RecordingReader",
    "RecordingWriter",
    "merge_by_receive_time",
    "open_replay_input",
    "read_normalized",
]

RECORDING_SUFFIX = ".rec.zst"
NORMALIZED_SUFFIXES = (".ndjson.gz", ".jsonl.gz", ".ndjson", ".jsonl")
GENERIC_VENUE = "generic"


def open_replay_input(
    path: str | Path, symbol: str | None, on_bad: BadLineHandler | None = None
) -> tuple[str, list[str], Iterator[RawRecord]]:
    """Open one replay file by its suffix and return (venue, symbols, records).

    A recording names its venue and symbols in its header; a given `symbol` must be one of them
    and narrows the records to it (and to the lines of no symbol: connection markers). A normalized
    file is venue "generic", and its symbol is the given one or else the file name without the
    suffix. Any other `.gz` whose first line opens with `<digits> {` is an hftbacktest collector file
    (venue "binance" or "binance_usdm", symbols from its stream names; a given `symbol` narrows the
    records to it).
    """
    name = str(path)
    base = Path(name).name
    if base.endswith(RECORDING_SUFFIX):
        reader = RecordingReader(name, on_bad)
        # a venue adapter decodes the recorded bytes themselves, as the live feed did (its fast path)
        reader.raw_messages = reader.venue != GENERIC_VENUE
        if symbol is None:
            return reader.venue, reader.symbols, iter(reader)
        if symbol not in reader.symbols:
            raise InputError(name, None, f"symbol {symbol!r} is not in this recording ({reader.symbols})")
        # lines about no one symbol (connection markers) concern every symbol of the connection
        return reader.venue, [symbol], (r for r in reader if r.symbol == symbol or not r.symbol)
    for suffix in NORMALIZED_SUFFIXES:
        if base.endswith(suffix):
            sym = symbol if symbol is not None else base[: -len(suffix)]
            if not sym:
                raise InputError(name, None, "cannot take a symbol from the file name; pass one")
            return GENERIC_VENUE, [sym], read_normalized(name, sym, on_bad, raw_lines=True)
    if base.endswith(".gz") and looks_like_hftbacktest(name):
        hbt = HftbacktestReader(name, symbol, on_bad)
        return hbt.venue, hbt.symbols, iter(hbt)
    raise InputError(name, None,
                     "unknown input format; expected .rec.zst or .ndjson[.gz] (or an hftbacktest collector .gz)")
