"""Training data through the identical path: replay the recordings, keep every feature sample.

The rows come from the same FeatureCalculator, clock and sampling cadence as live trading, so a
model sees in training exactly what it will see when it scores.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

from daemon import __version__
from daemon.config import Settings
from daemon.features.table import FeatureTable, TableBuilder
from daemon.replay import Replay


def collect_features(settings: Settings, inputs: Sequence[str | Path], skip_bad: bool = False,
                     progress: Callable[[int], None] | None = None) -> tuple[FeatureTable, Replay]:
    """Replay the inputs through the configured path and return every sample it took (and the replay).

    The strategy and model are left out: the samples depend on the market data alone, and a test
    proves they equal what the strategy sees in a full replay.
    """
    builder = TableBuilder()
    replay = Replay(settings, [str(p) for p in inputs], skip_bad=skip_bad, progress=progress, sample_sink=builder.add,
                    trade=False)
    replay.run()
    meta = {"depthd.version": __version__, "depthd.inputs": ",".join(Path(p).name for p in inputs),
            "depthd.sample_interval_ms": str(settings.features.sample_interval_ms)}
    return builder.table(meta), replay


def inputs_hash(inputs: Sequence[str | Path], settings: Settings) -> str:
    """sha256 over the bytes of every input file (in order) and the feature settings: names the training data."""
    h = hashlib.sha256()
    for p in inputs:
        h.update(Path(p).name.encode() + b"\0")
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    h.update(settings.features.model_dump_json().encode())
    return h.hexdigest()
