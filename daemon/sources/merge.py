"""Interleave several replay inputs into one session ordered by local receive time."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from operator import attrgetter

from daemon.sources.records import RawRecord

_receive_time = attrgetter("ts_recv")


def merge_by_receive_time(streams: Sequence[Iterable[RawRecord]]) -> Iterator[RawRecord]:
    """K-way merge by `ts_recv`; ties go to the lower stream index, then to file order (deterministic).

    Each stream must already be in receive-time order, which the readers enforce.
    """
    if len(streams) == 1:
        return iter(streams[0])
    return heapq.merge(*streams, key=_receive_time)
