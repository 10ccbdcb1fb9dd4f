"""Client order ids that are unique across restarts and instances without coordination.

Form: `<prefix>-<boot>-<seq>`, e.g. `dd1-k3x9qz-1a`:

- `prefix`: the instance's name, 1 to 8 of [A-Za-z0-9_], set in config and different for every
  daemon instance trading an account. It lets a daemon tell its own orders from orphans (another
  instance's, the venue's web UI, a human) when it reconciles.
- `boot`: an integer that differs for every start of the instance, in base 36. Give it either the
  value of a counter persisted in the journal and committed (WAL, synced) before the first order of
  the run — `next_boot_id(last)` — or, without a journal, the start time in milliseconds,
  `boot_id_from_time(ns)`, which is unique as long as two starts of the same prefix are more than a
  millisecond apart and the wall clock does not step back across a restart.
- `seq`: 0, 1, 2, ... within the run, in base 36.

Uniqueness: two ids from different instances differ in prefix; from two runs of one instance they
differ in boot; within a run they differ in seq. All three are written canonically (base 36, lower
case, no leading zeros), so equal strings mean equal triples and vice versa. The separator `-` is
not allowed in the prefix, so the split is unambiguous.

Length: prefix ≤ 8, boot and seq each ≤ 13 base-36 digits (< 1.7e20), so at most 36 characters,
within Binance's newClientOrderId limit (36, [A-Za-z0-9-_]) and OKX/Bybit/IB orderRef limits.
(OKX's clOrdId allows only alphanumerics; a gateway for it maps `-` itself.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LEN = 36
MAX_PART = 36**13 - 1  # boot and seq: at most 13 base-36 digits
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_PREFIX = re.compile(r"[A-Za-z0-9_]{1,8}")
_ID = re.compile(r"([A-Za-z0-9_]{1,8})-(0|[1-9a-z][0-9a-z]{0,12})-(0|[1-9a-z][0-9a-z]{0,12})")


def to_base36(n: int) -> str:
    """A non-negative int in canonical lower-case base 36."""
    if n < 0:
        raise ValueError(f"base 36 needs a non-negative int, got {n}")
    out = []
    while True:
        n, d = divmod(n, 36)
        out.append(_DIGITS[d])
        if n == 0:
            return "".join(reversed(out))


@dataclass(frozen=True, slots=True)
class ClientIdParts:
    """A parsed client id: the instance prefix, the boot id and the sequence number within that boot."""

    prefix: str
    boot: int
    seq: int


def next_boot_id(last: int | None) -> int:
    """The boot id after the one persisted last (None on a first start); persist it before trading."""
    boot = 0 if last is None else last + 1
    if boot > MAX_PART:
        raise ValueError(f"boot id {boot} does not fit 13 base-36 digits")
    return boot


def boot_id_from_time(ts_ns: int) -> int:
    """A boot id from the start time (ns since the epoch), in ms; for instances without a journal."""
    if ts_ns < 0:
        raise ValueError(f"start time must be >= 0 ns, got {ts_ns}")
    return ts_ns // 1_000_000


class ClientIdFactory:
    """Makes this run's client ids: `<prefix>-<boot>-<seq>` with seq counting up from `start_seq`."""

    def __init__(self, prefix: str, boot: int, start_seq: int = 0) -> None:
        if not _PREFIX.fullmatch(prefix):
            raise ValueError(f"client id prefix {prefix!r} must be 1 to 8 of [A-Za-z0-9_]")
        if not 0 <= boot <= MAX_PART:
            raise ValueError(f"boot id {boot} must be in 0..36**13-1")
        if not 0 <= start_seq <= MAX_PART:
            raise ValueError(f"start_seq {start_seq} must be in 0..36**13-1")
        self.prefix = prefix
        self.boot = boot
        self._head = f"{prefix}-{to_base36(boot)}-"
        self._seq = start_seq

    def next(self) -> str:
        """A fresh client id, never returned before by any run of this prefix (see the module docstring)."""
        if self._seq > MAX_PART:
            raise ValueError(f"client id sequence of boot {self.boot} is exhausted")
        cid = self._head + to_base36(self._seq)
        self._seq += 1
        return cid

    def is_ours(self, client_id: str) -> bool:
        """Whether an id was made by this instance (any boot): an order we own, not an orphan."""
        return is_ours(client_id, self.prefix)


def parse(client_id: str) -> ClientIdParts | None:
    """The parts of a depthd client id, or None if the string is not one (another tool's or a human's)."""
    m = _ID.fullmatch(client_id)
    if m is None:
        return None
    return ClientIdParts(m.group(1), int(m.group(2), 36), int(m.group(3), 36))


def is_ours(client_id: str, prefix: str) -> bool:
    """Whether a client id is a depthd id with this instance prefix."""
    parts = parse(client_id)
    return parts is not None and parts.prefix == prefix
