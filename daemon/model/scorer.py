"""The ONNX scorer: one feature sample in, one float out, on one thread, without allocating an input.

`Scorer.load` checks a model at the edge: readable ONNX, depthd metadata, trained on the features
the calculator computes (names and schema version), a single float input of the model's width and
the declared output present as a tensor. A model that does not fit is a ModelError naming the file.

On the hot path `score` gathers the model's features out of the sample vector (schema order) into a
pre-allocated float32 row that an onnxruntime IOBinding reads in place, and the result is written
into a pre-allocated output: per call no input or output array is made and no dict is built. A
failure (an exception, or a NaN/inf score) never raises: it returns NaN, is counted and is logged
once per run of failures. NaN features are passed through: converted tree models route missing
values as LightGBM does; only a non-finite output is an error.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import structlog

from daemon.errors import ModelError
from daemon.features import schema
from daemon.model.metadata import ModelMeta, check_schema

log = structlog.get_logger("depthd.model")

_FLOAT_TENSOR = "tensor(float)"
_OUTPUT_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64}
# Rows per onnxruntime call in score_batch: bounds the float32 copy and the output of one call.
_BATCH_CHUNK = 1 << 16


def session_options() -> ort.SessionOptions:
    """One thread, sequential execution: a score must not compete with the event loop for cores."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # onnxruntime's own warnings go to stderr outside structlog (and converters' declared label shapes
    # trigger spurious ones); real problems surface as exceptions.
    so.log_severity_level = 3
    return so


class Scorer:
    """A loaded, validated model that scores one sample vector (schema order) at a time."""

    def __init__(self, path: Path, session: ort.InferenceSession, meta: ModelMeta, model_hash: str,
                 names: Sequence[str]) -> None:
        """Use `Scorer.load`; this wires an already validated session."""
        self.path = path
        self.meta = meta
        self.model_hash = model_hash
        self._session = session
        index = {name: i for i, name in enumerate(names)}
        self._width = len(names)
        self._idx = np.array([index[n] for n in meta.feature_names], dtype=np.intp)
        self._input_name = session.get_inputs()[0].name
        self._col = max(meta.output_column, 0)  # -1: the output has one value per row
        n = len(meta.feature_names)
        self._x = np.zeros((1, n), dtype=np.float32)
        self._row = self._x[0]
        probe = _probe(session, self._input_name, meta, path)
        self._out = np.zeros(probe.shape, dtype=probe.dtype)
        self._out_flat = self._out.reshape(-1)
        self._binding = session.io_binding()
        self._binding.bind_input(self._input_name, "cpu", 0, np.float32, list(self._x.shape), self._x.ctypes.data)
        self._binding.bind_output(meta.output_name, "cpu", 0, self._out.dtype, list(self._out.shape),
                                  self._out.ctypes.data)
        self._run = session.run_with_iobinding
        self.calls = 0
        self.errors = 0
        self.failures = 0
        self.nan_scores = 0
        self.consecutive_errors = 0

    @classmethod
    def load(cls, path: str | Path, names: Sequence[str] = schema.NAMES,
             schema_version: int = schema.SCHEMA_VERSION) -> Scorer:
        """Read, validate and prepare a model file; a ModelError names the file and what does not fit."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"{path}: cannot read the model file ({exc.strerror or exc})") from None
        try:
            session = ort.InferenceSession(data, session_options(), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
            raise ModelError(f"{path}: not a loadable ONNX model ({_first_line(exc)})") from None
        meta = ModelMeta.from_props(session.get_modelmeta().custom_metadata_map, source=str(path))
        check_schema(meta, names, schema_version, source=str(path))
        _check_io(session, meta, path)
        return cls(path, session, meta, hashlib.sha256(data).hexdigest(), names)

    # --- scoring ---------------------------------------------------------------------------------

    def score(self, values: np.ndarray) -> float:
        """Score one sample's full feature vector (schema order); NaN, counted and logged, on failure."""
        self.calls += 1
        try:
            self._row[:] = values[self._idx]
            self._run(self._binding)
        except Exception as exc:
            self._failed(exc)
            return math.nan
        y = float(self._out_flat[self._col])
        if not math.isfinite(y):
            self._non_finite(y)
            return math.nan
        if self.consecutive_errors:
            log.info("model_score_recovered", model=str(self.path), after=self.consecutive_errors)
            self.consecutive_errors = 0
        return y

    def score_batch(self, X: np.ndarray, model_order: bool = False) -> np.ndarray:
        """Score many rows (schema-order vectors, or the model's own columns if `model_order`) for offline use.

        Returns float64 scores, NaN where the model's output is not finite; a failing run is a ModelError.
        The per-sample counters are left alone.
        """
        X = np.asarray(X)
        want = len(self._idx) if model_order else self._width
        if X.ndim != 2 or X.shape[1] != want:
            raise ModelError(f"{self.path}: score_batch wants rows of {want} features, got shape {X.shape}")
        out = np.empty(X.shape[0], dtype=np.float64)
        name, col = self.meta.output_name, self._col
        for start in range(0, X.shape[0], _BATCH_CHUNK):
            part = X[start:start + _BATCH_CHUNK]
            rows = np.ascontiguousarray(part if model_order else part[:, self._idx], dtype=np.float32)
            try:
                res = self._session.run([name], {self._input_name: rows})[0]
            except Exception as exc:
                raise ModelError(f"{self.path}: batch scoring failed ({_first_line(exc)})") from None
            out[start:start + len(rows)] = np.asarray(res).reshape(len(rows), -1)[:, col]
        out[~np.isfinite(out)] = np.nan
        return out

    # --- health ----------------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """True unless the last score failed (and before the first score)."""
        return self.consecutive_errors == 0

    @property
    def input_row(self) -> np.ndarray:
        """The pre-allocated (1, n) float32 input every `score` call fills and the model reads in place."""
        return self._x

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The model's features in its input order."""
        return self.meta.feature_names

    def stats(self) -> dict[str, object]:
        """Counters and identity for metrics and reports."""
        return {"path": str(self.path), "model_hash": self.model_hash, "data_hash": self.meta.data_hash,
                "calls": self.calls, "errors": self.errors, "failures": self.failures,
                "nan_scores": self.nan_scores, "consecutive_errors": self.consecutive_errors,
                "healthy": self.healthy}

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self.failures += 1
        self.consecutive_errors += 1
        if self.consecutive_errors == 1:
            log.warning("model_score_failed", model=str(self.path), reason=_first_line(exc), exc_info=exc)
        else:
            log.debug("model_score_failed", model=str(self.path), reason=_first_line(exc),
                      run=self.consecutive_errors)

    def _non_finite(self, y: float) -> None:
        self.errors += 1
        self.nan_scores += 1
        self.consecutive_errors += 1
        (log.warning if self.consecutive_errors == 1 else log.debug)(
            "model_score_failed", model=str(self.path), reason="non-finite output", value=str(y),
            run=self.consecutive_errors)


def _check_io(session: ort.InferenceSession, meta: ModelMeta, path: Path) -> None:
    """Refuse a model whose input is not one float (rows, n_features) tensor or that lacks its output."""
    inputs = session.get_inputs()
    n = len(meta.feature_names)
    if len(inputs) != 1:
        raise ModelError(f"{path}: the model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                         f"want one float tensor of shape (rows, {n})")
    inp = inputs[0]
    shape = list(inp.shape)
    if inp.type != _FLOAT_TENSOR or len(shape) != 2 or shape[1] != n:
        raise ModelError(f"{path}: input {inp.name!r} is {inp.type} of shape {shape}; want tensor(float) of "
                         f"shape (rows, {n}) for the {n} features in its metadata")
    outputs = {o.name: o for o in session.get_outputs()}
    out = outputs.get(meta.output_name)
    if out is None:
        raise ModelError(f"{path}: the metadata names output {meta.output_name!r} but the model's outputs are "
                         f"{', '.join(sorted(outputs))}")
    if out.type not in _OUTPUT_DTYPES:
        raise ModelError(f"{path}: output {out.name!r} is {out.type}; want a float tensor (for a classifier "
                         f"converted by onnxmltools, pass zipmap=False)")
    if meta.output_column < -1:
        raise ModelError(f"{path}: output_column {meta.output_column} is invalid (-1 = the single value, "
                         "else a column index)")


def _probe(session: ort.InferenceSession, input_name: str, meta: ModelMeta, path: Path) -> np.ndarray:
    """Score one all-zero row: proves the model runs and gives the output's shape for one row."""
    x = np.zeros((1, len(meta.feature_names)), dtype=np.float32)
    try:
        y = np.asarray(session.run([meta.output_name], {input_name: x})[0])
    except Exception as exc:
        raise ModelError(f"{path}: the model fails on a test row ({_first_line(exc)})") from None
    if y.ndim == 0 or y.shape[0] != 1 or y.dtype not in (np.float32, np.float64):
        raise ModelError(f"{path}: output {meta.output_name!r} for one row has shape {y.shape} and dtype "
                         f"{y.dtype}; want float (1, k)")
    width = y.size
    if meta.output_column == -1 and width != 1:
        raise ModelError(f"{path}: output_column -1 names a single-value output but {meta.output_name!r} has "
                         f"{width} columns")
    if meta.output_column >= width:
        raise ModelError(f"{path}: output_column {meta.output_column} is out of range: output "
                         f"{meta.output_name!r} has {width} column(s)")
    return y


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
