"""FeatureTable: the sampled feature rows of a replay (timestamp, symbol, live flag, every feature).

`depthd features` writes one to Parquet or CSV and `depthd train` builds its dataset from one.
Rows are kept in the order the engine sampled them (event time, then symbol); values are float64
with NaN for a feature that could not be computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from daemon.errors import InputError
from daemon.features import schema
from daemon.features.calculator import FeatureSample

_FIXED = ("ts", "symbol", "live")


@dataclass
class FeatureTable:
    """Columns of sampled features; `values[i, j]` is feature `names[j]` of row i."""

    names: tuple[str, ...]
    schema_version: int
    ts: np.ndarray  # int64 ns, receive-time clock
    symbol: np.ndarray  # str objects
    live: np.ndarray  # bool: the book was LIVE at the sample
    values: np.ndarray  # float64 (rows, features)
    meta: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ts)

    def column(self, name: str) -> np.ndarray:
        """One feature's values (a view)."""
        return self.values[:, self.names.index(name)]

    def complete_rows(self) -> np.ndarray:
        """Mask of the rows where every feature has a value."""
        return ~np.isnan(self.values).any(axis=1)

    def for_symbol(self, symbol: str) -> FeatureTable:
        """The rows of one symbol, in time order."""
        mask = self.symbol == symbol
        return FeatureTable(self.names, self.schema_version, self.ts[mask], self.symbol[mask], self.live[mask],
                            self.values[mask], dict(self.meta))

    def write(self, path: str | Path) -> None:
        """Write to `.parquet` or `.csv` (chosen by suffix), atomically (a temp file renamed over)."""
        import pyarrow as pa

        out = Path(path)
        cols = {"ts": pa.array(self.ts, pa.int64()), "symbol": pa.array(self.symbol.tolist(), pa.string()),
                "live": pa.array(self.live, pa.bool_())}
        for j, name in enumerate(self.names):
            cols[name] = pa.array(self.values[:, j], pa.float64())
        meta = {"depthd.schema_version": str(self.schema_version), **self.meta}
        table = pa.table(cols).replace_schema_metadata(meta)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        suffix = out.suffix.lower()
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, tmp, compression="zstd", compression_level=1)
        elif suffix == ".csv":
            import pyarrow.csv as pacsv

            pacsv.write_csv(table, tmp)
        else:
            raise ValueError(f"{out}: output must end in .parquet or .csv")
        tmp.replace(out)

    @classmethod
    def read(cls, path: str | Path) -> FeatureTable:
        """Read a table written by `write`; an InputError names a file that is not one."""
        import pyarrow as pa

        src = Path(path)
        suffix = src.suffix.lower()
        try:
            if suffix == ".parquet":
                import pyarrow.parquet as pq

                table = pq.read_table(src)
            elif suffix == ".csv":
                import pyarrow.csv as pacsv

                table = pacsv.read_csv(src)
            else:
                raise InputError(str(src), None, "feature table must end in .parquet or .csv")
        except (OSError, pa.ArrowException) as exc:
            raise InputError(str(src), None, f"cannot read feature table: {exc}") from None
        names = tuple(n for n in table.column_names if n not in _FIXED)
        missing = [c for c in _FIXED if c not in table.column_names]
        if missing:
            raise InputError(str(src), None, f"not a feature table: no column(s) {', '.join(missing)}")
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        version = int(meta.pop("depthd.schema_version", schema.SCHEMA_VERSION))
        values = np.column_stack([table.column(n).to_numpy(zero_copy_only=False).astype(np.float64)
                                  for n in names]) if names else np.empty((len(table), 0))
        return cls(names, version, table.column("ts").to_numpy().astype(np.int64),
                   np.asarray(table.column("symbol").to_pylist(), dtype=object),
                   table.column("live").to_numpy(zero_copy_only=False).astype(bool), values, meta)


class TableBuilder:
    """Collects FeatureSamples (as the engine's sample sink) into a FeatureTable.

    A sample is already a private copy, so collecting is a list append (`add`, the cheapest sink);
    the columns are built once, by `table`.
    """

    def __init__(self, names: tuple[str, ...] = schema.NAMES) -> None:
        self.names = names
        self._samples: list[FeatureSample] = []
        self.add = self._samples.append

    def __call__(self, sample: FeatureSample) -> None:
        """Append one sample."""
        self._samples.append(sample)

    @property
    def rows(self) -> int:
        """Samples collected so far."""
        return len(self._samples)

    def table(self, meta: dict[str, str] | None = None) -> FeatureTable:
        """The rows collected so far, as a table."""
        samples = self._samples
        n = len(samples)
        values = np.stack([smp.values for smp in samples]) if n else np.empty((0, len(self.names)))
        return FeatureTable(self.names, schema.SCHEMA_VERSION, np.fromiter((s.ts for s in samples), np.int64, n),
                            np.array([s.symbol for s in samples], dtype=object),
                            np.fromiter((s.live for s in samples), bool, n), values, dict(meta or {}))
