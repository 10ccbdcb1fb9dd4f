"""The live recorder: rotating, crash-safe recording files that never stop trading.

Each file is a complete depthd recording (`RecordingWriter`: header, then one line a message)
named `{venue}_{YYYYmmddTHHMMSS}Z_{n:04d}.rec.zst` after its first line's receive time (UTC) and
the recorder's file counter `n`. A new file starts when the receive time crosses a `rotate_s`
boundary (every UTC hour by default) or once the file has grown past `max_bytes` on disk (checked
at each flush and every `size_check_lines` lines, so a file overshoots by at most that much).
`on_rotate(path)` is called for every new file, the first included, right after its first line:
a feed uses it to record a checkpoint snapshot so that each file replays on its own.

Crash safety: `flush()` ends a zstd block and hands it to the OS, so a process killed after it
leaves a file whose complete lines replay; the torn tail is reported by `RecordingReader` to its
bad-line handler. Run `run_flusher()` as a task (every `flush_interval_s`) or call `flush()` from
the owner's own timer. Data reaches the OS, not necessarily the platter: no fsync.

`write` never raises (trading must not stop because of the disk):
- a disk error (ENOSPC, EFBIG, EIO, a vanished directory, ...) is counted in `errors`, logged at
  error level once per failure run, `failing` is set with `last_error`, and the file is abandoned
  (closed as far as possible, its complete lines stay readable). While failing, lines are dropped
  (`dropped_lines`) and a new file is tried at most every `retry_s` by `now()`; the first line
  written again ends the run (logged);
- a file that vanished under us (deleted, directory removed) is noticed at the next size check;
  it counts as an error and the next line starts a new file (the directory is made again);
- raw bytes that are not JSON (a malformed frame) are recorded as a JSON string of their text, so a
  replay meets the same bad frame (`malformed_kept`);
- a bad message (not JSON-serialisable, wrong argument types) is counted in `bad_lines` and
  `dropped_lines` and logged (at counts 1, 2, 4, 8, ...);
- a receive time earlier than the last one written is recorded as the last one (`clamped`),
  because a replay needs non-decreasing time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import structlog
import zstandard

from daemon.sources.recording import RESERVED_HEADER_KEYS, RecordingWriter

log = structlog.get_logger("depthd.recorder")

MiB = 1 << 20


class Recorder:
    """Writes a live session to rotating recording files in `directory`; see the module docstring."""

    def __init__(
        self,
        directory: str | Path,
        venue: str,
        symbols: list[str],
        *,
        now: Callable[[], int] = time.time_ns,
        rotate_s: float = 3600,
        max_bytes: int = 512 * MiB,
        level: int = 3,
        flush_interval_s: float = 1.0,
        header_extra: dict[str, Any] | None = None,
        on_rotate: Callable[[str], None] | None = None,
        retry_s: float = 5.0,
        size_check_lines: int = 1024,
    ) -> None:
        if not isinstance(venue, str) or not venue or "/" in venue:
            raise ValueError(f"venue must be a non-empty string without '/', got {venue!r}")
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            raise ValueError(f"symbols must be a list of strings, got {symbols!r}")
        if not rotate_s > 0 or not flush_interval_s > 0 or not retry_s >= 0:
            raise ValueError(f"need rotate_s > 0, flush_interval_s > 0, retry_s >= 0; got {rotate_s!r}, "
                             f"{flush_interval_s!r}, {retry_s!r}")
        if type(max_bytes) is not int or max_bytes < 1 or type(size_check_lines) is not int or size_check_lines < 1:
            raise ValueError(f"max_bytes and size_check_lines must be positive ints, got {max_bytes!r}, "
                             f"{size_check_lines!r}")
        extra = dict(header_extra or {})
        clash = RESERVED_HEADER_KEYS & extra.keys()
        if clash:
            raise ValueError(f"header_extra may not set {sorted(clash)}")
        orjson.dumps(extra)  # fail now, not at the first file, when it is not JSON
        self.directory = Path(directory)
        self.venue = venue
        self.symbols = list(symbols)
        self._now = now
        self._rotate_ns = int(rotate_s * 1e9)
        self.max_bytes = max_bytes
        self._level = level
        self.flush_interval_s = flush_interval_s
        self._header_extra = extra
        self.on_rotate = on_rotate
        self._retry_ns = int(retry_s * 1e9)
        self._size_check = size_check_lines
        self._writer: RecordingWriter | None = None
        self._slot = 0  # rotation period of the open file
        self._file_lines = 0
        self._file_bytes = 0
        self._closed_bytes = 0
        self._next_n = 0
        self._last_t: int | None = None
        self._retry_at = 0
        self._run_dropped = 0  # lines dropped in the current failure run
        self._closed = False
        self.files: list[str] = []
        self.lines = 0
        self.bytes_written = 0  # compressed bytes on disk, as of the last size check
        self.errors = 0
        self.dropped_lines = 0
        self.bad_lines = 0
        self.malformed_kept = 0  # frames that were not JSON, recorded as JSON strings of their text
        self.clamped = 0
        self.hook_errors = 0
        self.failing = False
        self.last_error = ""

    @property
    def path(self) -> str | None:
        """The file being written now, or None between files."""
        return self._writer.path if self._writer is not None else None

    def write(self, ts_recv: int, channel: str, symbol: str, msg: bytes | Any) -> None:
        """Record one message (raw wire bytes are kept verbatim); never raises, see the module docstring."""
        try:
            self._write(ts_recv, channel, symbol, msg)
        except Exception as exc:  # a bug here must not reach the trading path either
            self.errors += 1
            self.dropped_lines += 1
            self.last_error = f"write: {type(exc).__name__}: {exc}"
            log.error("recorder internal error", error=self.last_error, exc_info=exc)

    def flush(self) -> None:
        """End the current zstd block and push it to the OS; checks the file's size. Never raises."""
        w = self._writer
        if w is None:
            return
        try:
            w.flush()
        except (OSError, zstandard.ZstdError) as exc:
            self._fail(exc, "flush")
            return
        self._check_size()

    async def run_flusher(self) -> None:
        """Flush every `flush_interval_s` until `close()` (run it as a task; cancelling it is fine)."""
        while not self._closed:
            await asyncio.sleep(self.flush_interval_s)
            self.flush()

    def close(self) -> None:
        """End the current file properly; later writes are dropped. Never raises; closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        self._end_file()

    def _write(self, ts: int, channel: str, symbol: str, msg: Any) -> None:
        """`write`, allowed to raise only on bugs."""
        if self._closed:
            self.dropped_lines += 1
            if self.dropped_lines & (self.dropped_lines - 1) == 0:
                log.warning("recorder closed; line dropped", dropped_lines=self.dropped_lines)
            return
        if type(ts) is not int or type(channel) is not str or type(symbol) is not str:
            self._bad(f"need ts_recv: int, channel: str, symbol: str; got {ts!r}, {channel!r}, {symbol!r}")
            return
        if self._last_t is not None and ts < self._last_t:
            ts = self._last_t
            self.clamped += 1
        slot = ts // self._rotate_ns
        if self._writer is not None and slot != self._slot:
            self._end_file()
        w, opened = self._writer, False
        if w is None:
            if self.failing and self._now() < self._retry_at:
                self._drop()
                return
            w, opened = self._open(ts, slot), True
            if w is None:
                self._drop()
                return
        try:
            w.write(ts, channel, symbol, msg)
        except (OSError, zstandard.ZstdError) as exc:
            self._fail(exc, "write")
            self._drop()
            return
        except (TypeError, ValueError) as exc:
            if not isinstance(msg, bytes | bytearray | memoryview):
                self._bad(f"{type(exc).__name__}: {exc}")
                return
            # a frame that is not JSON is kept as a JSON string of its text, so that a replay meets the
            # same bad frame where the live session met it (and counts it the same way)
            self.malformed_kept += 1
            try:
                w.write(ts, channel, symbol, orjson.dumps(bytes(msg).decode("utf-8", "replace")))
            except (OSError, zstandard.ZstdError) as exc2:
                self._fail(exc2, "write")
                self._drop()
                return
        self._last_t = ts
        self.lines += 1
        self._file_lines += 1
        if self.failing:
            self.failing = False
            log.info("recorder writing again", path=w.path, dropped_lines=self._run_dropped, errors=self.errors)
            self._run_dropped = 0
        if opened and self.on_rotate is not None:
            try:
                self.on_rotate(w.path)
            except Exception as exc:
                self.hook_errors += 1
                log.error("recorder on_rotate hook raised", path=w.path, error=f"{type(exc).__name__}: {exc}",
                          exc_info=exc)
        if self._file_lines % self._size_check == 0:
            self._check_size()

    def _open(self, ts: int, slot: int) -> RecordingWriter | None:
        """Start a new file named after `ts`; None (counted, logged) when the disk refuses."""
        stamp = datetime.fromtimestamp(ts // 1_000_000_000, UTC).strftime("%Y%m%dT%H%M%S")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            while True:
                path = self.directory / f"{self.venue}_{stamp}Z_{self._next_n:04d}.rec.zst"
                self._next_n += 1
                try:
                    w = RecordingWriter(path, self.venue, self.symbols, level=self._level, **self._header_extra)
                except FileExistsError:
                    continue
                break
        except OSError as exc:
            self._fail(exc, "open")
            return None
        self._writer, self._slot, self._file_lines, self._file_bytes = w, slot, 0, 0
        self.files.append(w.path)
        log.info("recorder file started", path=w.path, files=len(self.files))
        return w

    def _end_file(self) -> None:
        """Close the current file properly (rotation, close); a failure abandons it."""
        w = self._writer
        if w is None:
            return
        try:
            w.close()
        except (OSError, zstandard.ZstdError) as exc:
            self._fail(exc, "close")
            return
        self._writer = None
        self._note_size(w.path)
        self._closed_bytes += self._file_bytes
        self._file_bytes = 0

    def _check_size(self) -> None:
        """Note the open file's size on disk; start a new file past max_bytes or when the file vanished."""
        w = self._writer
        if w is None:
            return
        if not self._note_size(w.path):
            self.errors += 1
            self.last_error = f"{w.path} vanished (deleted, or its directory removed)"
            log.error("recorder file vanished; starting a new one", path=w.path, errors=self.errors)
            self._abandon()
            self._closed_bytes += self._file_bytes
            self._file_bytes = 0
        elif self._file_bytes > self.max_bytes:
            self._end_file()

    def _note_size(self, path: str) -> bool:
        """Update the byte counts from the file's size on disk; False when the file is gone."""
        try:
            self._file_bytes = os.stat(path).st_size
        except FileNotFoundError:
            return False
        except OSError:
            return True
        self.bytes_written = self._closed_bytes + self._file_bytes
        return True

    def _fail(self, exc: Exception, where: str) -> None:
        """A disk error: count it, log the first of a run, abandon the file, retry after retry_s."""
        self.errors += 1
        path = self._writer.path if self._writer is not None else str(self.directory)
        self.last_error = f"{where} {path}: {type(exc).__name__}: {exc}"
        if not self.failing:
            self.failing = True
            log.error("recorder cannot write; dropping lines until the disk recovers", error=self.last_error,
                      errno=getattr(exc, "errno", None), retry_s=self._retry_ns / 1e9)
        self._abandon()
        self._retry_at = self._now() + self._retry_ns

    def _abandon(self) -> None:
        """Let go of the open file after a failure, closing its descriptor even when closing it properly fails."""
        w, self._writer = self._writer, None
        if w is None:
            return
        with contextlib.suppress(Exception):  # the disk just failed; what could be written is in the file
            w.close()
        raw = getattr(w, "_file", None)  # RecordingWriter has no abort(): close the descriptor itself
        if raw is not None and not raw.closed:
            with contextlib.suppress(OSError):
                raw.close()  # closes the descriptor even when its last flush fails

    def _drop(self) -> None:
        """Count a line lost to a disk failure."""
        self.dropped_lines += 1
        self._run_dropped += 1

    def _bad(self, problem: str) -> None:
        """Count and (sparsely) log a message that cannot be recorded."""
        self.bad_lines += 1
        self.dropped_lines += 1
        if self.bad_lines & (self.bad_lines - 1) == 0:
            log.warning("recorder dropped a bad message", problem=problem, bad_lines=self.bad_lines)
