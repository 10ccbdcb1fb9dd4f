"""A fake systemd NOTIFY_SOCKET for tests: a unix datagram socket read by a thread of its own, so each
datagram is stamped with the time it arrived even while the event loop under test is blocked."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


class NotifySocket:
    """Binds a datagram socket at `path` (or in the abstract namespace when it starts with "@")."""

    def __init__(self, path: str | Path) -> None:
        self.name = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:] if self.name.startswith("@") else self.name)
        self.sock.settimeout(0.05)
        self.received: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="notify-socket", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.received.append((time.monotonic(), data.decode()))

    def drain(self) -> list[tuple[float, str]]:
        """Every datagram received so far, as (monotonic arrival time, text)."""
        time.sleep(0.01)  # let the reader take what is in flight
        with self._lock:
            return list(self.received)

    def messages(self, field: str) -> list[float]:
        """Arrival times of the datagrams holding `field` (e.g. "WATCHDOG=1")."""
        return [t for t, text in self.drain() if field in text.split("\n")]

    def close(self) -> None:
        """Stop the reader and release the socket."""
        self._stop.set()
        self._thread.join(1)
        self.sock.close()
