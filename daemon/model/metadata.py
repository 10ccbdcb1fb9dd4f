"""What a depthd model file says about itself: ONNX metadata written by `depthd train`.

The metadata is one JSON document under the ONNX metadata key `depthd` (the canonical copy, read
by the scorer), plus a few plain keys (`depthd.feature_names`, ...) for humans and tools such as
netron. It carries everything needed to refuse a model that does not fit: the feature names in the
model's input order, the feature-schema version, the label and horizon, a hash of the training
inputs, the out-of-sample metrics and per-feature reference histograms for drift checks.

Reference histogram of a feature: `edges` are the B-1 sorted interior cut points; a value v falls
in bin `searchsorted(edges, v, side="right")` (0..B-1) and NaN in bin B; `fractions` has B+1
entries (the last for NaN) that sum to 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from daemon.errors import ModelError

META_KEY = "depthd"
FORMAT = "depthd-model"
FORMAT_VERSION = 1
TASKS = ("regression", "binary")


@dataclass(frozen=True)
class Histogram:
    """A feature's reference distribution: interior bin edges and the fraction in each bin (+ NaN)."""

    edges: tuple[float, ...]
    fractions: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.fractions) != len(self.edges) + 2:
            raise ModelError(f"histogram has {len(self.edges)} edges but {len(self.fractions)} fractions "
                             f"(want edges + 2)")
        if any(not math.isfinite(e) for e in self.edges) or list(self.edges) != sorted(set(self.edges)):
            raise ModelError("histogram edges must be finite, strictly increasing numbers")
        if any(not (f >= 0) for f in self.fractions) or abs(sum(self.fractions) - 1.0) > 1e-6:
            raise ModelError("histogram fractions must be >= 0 and sum to 1")


@dataclass(frozen=True)
class ModelMeta:
    """The depthd metadata of one model; `to_props`/`from_props` map it to ONNX metadata strings."""

    feature_names: tuple[str, ...]
    schema_version: int
    label: str
    horizon_ms: int
    task: str
    output_name: str
    output_column: int
    data_hash: str
    trainer: str
    metrics: Mapping[str, Any] = field(default_factory=dict)
    histograms: Mapping[str, Histogram] = field(default_factory=dict)
    depthd_version: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.feature_names:
            raise ModelError("model metadata lists no features")
        if len(set(self.feature_names)) != len(self.feature_names):
            raise ModelError("model metadata lists a feature twice")
        if self.task not in TASKS:
            raise ModelError(f"model task {self.task!r} is not one of {', '.join(TASKS)}")
        if self.horizon_ms <= 0:
            raise ModelError(f"model label horizon must be > 0 ms (got {self.horizon_ms})")
        unknown = sorted(set(self.histograms) - set(self.feature_names))
        if unknown:
            raise ModelError(f"histograms for features the model does not use: {', '.join(unknown)}")

    def to_props(self) -> dict[str, str]:
        """ONNX metadata_props: the canonical JSON under `depthd` plus readable copies of key fields."""
        doc = asdict(self)
        doc["feature_names"] = list(self.feature_names)
        doc["histograms"] = {k: {"edges": list(h.edges), "fractions": list(h.fractions)}
                             for k, h in self.histograms.items()}
        doc = {"format": FORMAT, "format_version": FORMAT_VERSION, **doc}
        return {
            META_KEY: orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
            "depthd.feature_names": ",".join(self.feature_names),
            "depthd.schema_version": str(self.schema_version),
            "depthd.label": self.label,
            "depthd.data_hash": self.data_hash,
        }

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "model") -> ModelMeta:
        """Parse and validate the metadata of a model file; a ModelError names what is wrong."""
        raw = props.get(META_KEY)
        if raw is None:
            raise ModelError(f"{source}: no '{META_KEY}' metadata (not a model written by `depthd train`)")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ModelError(f"{source}: '{META_KEY}' metadata is not valid JSON ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ModelError(f"{source}: '{META_KEY}' metadata is not a {FORMAT} document")
        if doc.get("format_version") != FORMAT_VERSION:
            raise ModelError(f"{source}: model metadata format version {doc.get('format_version')!r} "
                             f"is not supported (want {FORMAT_VERSION})")
        try:
            return cls(
                feature_names=tuple(_strs(doc["feature_names"])),
                schema_version=int(doc["schema_version"]),
                label=str(doc["label"]),
                horizon_ms=int(doc["horizon_ms"]),
                task=str(doc["task"]),
                output_name=str(doc["output_name"]),
                output_column=int(doc["output_column"]),
                data_hash=str(doc["data_hash"]),
                trainer=str(doc["trainer"]),
                metrics=dict(doc.get("metrics") or {}),
                histograms={str(k): Histogram(tuple(map(float, v["edges"])), tuple(map(float, v["fractions"])))
                            for k, v in (doc.get("histograms") or {}).items()},
                depthd_version=str(doc.get("depthd_version", "")),
                extra=dict(doc.get("extra") or {}),
            )
        except KeyError as exc:
            raise ModelError(f"{source}: model metadata lacks {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{source}: model metadata has a bad value ({exc})") from None


def _strs(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("feature_names must be a list of strings")
    return value


def schema_differences(meta: ModelMeta, names: Sequence[str], schema_version: int) -> list[str]:
    """Every way the model's features differ from the calculator's schema ([] when it fits)."""
    problems = []
    if meta.schema_version != schema_version:
        problems.append(f"schema version {meta.schema_version} (model) != {schema_version} (calculator)")
    known = set(names)
    missing = [n for n in meta.feature_names if n not in known]
    if missing:
        problems.append(f"features the calculator does not compute: {', '.join(missing)}")
    return problems


def check_schema(meta: ModelMeta, names: Sequence[str], schema_version: int, source: str = "model") -> None:
    """Raise ModelError listing the differences if the model was not trained on these features."""
    problems = schema_differences(meta, names, schema_version)
    if problems:
        raise ModelError(f"{source} does not match the feature calculator: " + "; ".join(problems))
