"""ONNX export of a trained model: conversion, metadata, the parity check and an atomic write.

The model file takes one float32 tensor `features` [N, n_features] in ModelMeta.feature_names order.
Regression models output `variable` [N, 1] (the prediction in bps); binary models output
`probabilities` [N, 2] (column 1 = P(up)). Outputs are float32.

Fidelity (the parity check demands |onnx - native| < 1e-5): onnxmltools writes tree thresholds and
leaf values as float32 attributes and onnxruntime's float tree kernel also sums the trees in float32,
which is off by ~5e-5 for a 80 bps prediction and flips any row whose value sits on a threshold
that float32 rounding moved. So:

- `snap_to_float32` rewrites the fitted LightGBM model: every threshold rounded *down* to a float32
  (for a float32 x, x <= t holds exactly when x <= float32_down(t), so predictions on float32 data do
  not change) and every leaf value rounded to the nearest float32 (a change of < 1e-7 relative).
  After that the float32 attributes onnxmltools writes are exact.
- `_widen_trees` casts the input to float64 and turns those attributes into float64 tensors
  (ai.onnx.ml opset 3), so onnxruntime compares and sums in float64 like LightGBM; only the final
  float32 output rounds.
- The sklearn pipeline runs in float64 inside the graph too (cast, impute with the fitted medians,
  then the scaler and linear model converted by skl2onnx) so float32 cancellation cannot bite.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from daemon.errors import ModelError
from daemon.model.metadata import ModelMeta

INPUT_NAME = "features"
PARITY_TOL = 1e-5
_ML_OPSET = {"": 17, "ai.onnx.ml": 3}


def output_of(task: str) -> tuple[str, int]:
    """(output tensor name, column) the scorer reads: the prediction, or P(up) in column 1."""
    return ("probabilities", 1) if task == "binary" else ("variable", -1)


def _float32_down(values: np.ndarray) -> np.ndarray:
    """The largest float32 <= each value."""
    down = values.astype(np.float32)
    above = down.astype(np.float64) > values
    down[above] = np.nextafter(down[above], np.float32(-np.inf))
    return down


def snap_to_float32(model: Any) -> None:
    """Round a fitted LightGBM sklearn model's thresholds down, and leaf values, to float32 (in place)."""
    import lightgbm as lgb

    lines = []
    for line in model.booster_.model_to_string().split("\n"):
        if line.startswith("tree_sizes="):
            continue  # byte sizes of the trees change with the text; LightGBM parses without them
        key, sep, rest = line.partition("=")
        if sep and key in ("threshold", "leaf_value"):
            values = np.array(rest.split(), dtype=np.float64)
            snapped = _float32_down(values) if key == "threshold" else values.astype(np.float32)
            line = key + "=" + " ".join(repr(float(v)) for v in snapped)
        lines.append(line)
    model._Booster = lgb.Booster(model_str="\n".join(lines))


def _widen_trees(onx: onnx.ModelProto) -> None:
    """Make the tree ensembles read float64 input with float64 thresholds and weights (in place)."""
    g = onx.graph
    wide = INPUT_NAME + "_f64"
    for node in g.node:
        if not node.op_type.startswith("TreeEnsemble"):
            continue
        attrs = []
        for a in node.attribute:
            if a.name in ("nodes_values", "target_weights", "class_weights", "base_values"):
                tensor = helper.make_tensor(a.name + "_as_tensor", TensorProto.DOUBLE, [len(a.floats)],
                                            np.asarray(a.floats, dtype=np.float64))
                a = helper.make_attribute(a.name + "_as_tensor", tensor)
            attrs.append(a)
        del node.attribute[:]
        node.attribute.extend(attrs)
        node.input[:] = [wide if i == INPUT_NAME else i for i in node.input]
    nodes = [helper.make_node("Cast", [INPUT_NAME], [wide], to=TensorProto.DOUBLE, name="cast_in"), *g.node]
    del g.node[:]
    g.node.extend(nodes)
    for opset in onx.opset_import:
        if opset.domain == "ai.onnx.ml":
            opset.version = max(opset.version, 3)


def to_onnx(model: Any, trainer: str, task: str, n_features: int) -> onnx.ModelProto:
    """Convert a fitted LightGBM model or sklearn Pipeline to ONNX with the depthd input/outputs."""
    if trainer == "lightgbm":
        from onnxmltools import convert_lightgbm
        from onnxmltools.convert.common.data_types import FloatTensorType

        onx = convert_lightgbm(model, initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
                               zipmap=False)
        _widen_trees(onx)
    elif trainer == "sklearn":
        onx = _sklearn_to_onnx(model, task, n_features)
    else:
        raise ModelError(f"unknown trainer {trainer!r}")
    name, _ = output_of(task)
    keep = [o for o in onx.graph.output if o.name == name]
    if len(keep) != 1:
        raise ModelError(f"converted model has no output {name!r} ({[o.name for o in onx.graph.output]})")
    del onx.graph.output[:]
    onx.graph.output.extend(keep)
    onx.graph.name = "depthd"
    onx.doc_string = ""
    opsets = sorted((o.domain, o.version) for o in onx.opset_import)  # converters emit them in set order
    del onx.opset_import[:]
    onx.opset_import.extend(helper.make_opsetid(d, v) for d, v in opsets)
    return onx


def _sklearn_to_onnx(pipe: Any, task: str, n_features: int) -> onnx.ModelProto:
    """Cast to float64, impute NaN with the imputer's statistics, then skl2onnx scaler + model, cast out."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType

    options = {id(pipe[-1]): {"zipmap": False}} if task == "binary" else None
    inner = convert_sklearn(pipe[1:], initial_types=[("imputed", DoubleTensorType([None, n_features]))],
                            options=options, target_opset=_ML_OPSET)
    g = inner.graph
    stats = np.asarray(pipe[0].statistics_, dtype=np.float64).reshape(1, n_features)
    g.initializer.append(onnx.numpy_helper.from_array(stats, "impute_values"))
    pre = [helper.make_node("Cast", [INPUT_NAME], ["features_f64"], to=TensorProto.DOUBLE, name="cast_in"),
           helper.make_node("IsNaN", ["features_f64"], ["features_nan"], name="isnan"),
           helper.make_node("Where", ["features_nan", "impute_values", "features_f64"], ["imputed"], name="impute")]
    post = []
    for out in g.output:
        if out.type.tensor_type.elem_type != TensorProto.DOUBLE:
            continue
        inner_name = out.name + "_f64"
        for node in g.node:
            node.output[:] = [inner_name if o == out.name else o for o in node.output]
            node.input[:] = [inner_name if i == out.name else i for i in node.input]
        post.append(helper.make_node("Cast", [inner_name], [out.name], to=TensorProto.FLOAT, name="cast_" + out.name))
        out.type.tensor_type.elem_type = TensorProto.FLOAT
    nodes = pre + list(g.node) + post
    del g.node[:]
    g.node.extend(nodes)
    del g.input[:]
    g.input.append(helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, n_features]))
    return inner


def with_metadata(onx: onnx.ModelProto, meta: ModelMeta) -> bytes:
    """The serialized model with `meta.to_props()` as its metadata_props (sorted keys: deterministic)."""
    props = meta.to_props()
    del onx.metadata_props[:]
    for key in sorted(props):
        onx.metadata_props.append(onnx.StringStringEntryProto(key=key, value=props[key]))
    onnx.checker.check_model(onx)
    return onx.SerializeToString(deterministic=True)


def session(data: bytes) -> Any:
    """An onnxruntime session on one intra-op thread (as the scorer runs it)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"onnxruntime cannot load the exported model: {exc}") from None


def ort_predict(sess: Any, x: np.ndarray, output_name: str, output_column: int) -> np.ndarray:
    """Score float32 rows with onnxruntime and return the scorer's column as float64."""
    out = sess.run([output_name], {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]
    out = np.asarray(out, dtype=np.float64)
    return out.reshape(len(x), -1)[:, output_column] if out.ndim == 2 else out.reshape(len(x))


def check_parity(data: bytes, x: np.ndarray, native: np.ndarray, task: str, tol: float = PARITY_TOL) -> float:
    """Max |onnxruntime - native| over rows x (float32); ModelError naming the worst row if >= tol."""
    name, column = output_of(task)
    got = ort_predict(session(data), x, name, column)
    if got.shape != native.shape:
        raise ModelError(f"ONNX parity check failed: onnxruntime gave {got.shape} predictions, native {native.shape}")
    diff = np.abs(got - native)
    diff[np.isnan(got) & np.isnan(native)] = 0.0
    diff[np.isnan(diff)] = np.inf
    worst = float(diff.max()) if len(diff) else 0.0
    bad = diff >= tol
    if bad.any():
        i = int(np.argmax(diff))
        raise ModelError(f"ONNX parity check failed: {int(bad.sum())} of {len(x)} hold-out rows differ by >= {tol:g} "
                         f"(max {worst:.3g} at row {i}: onnx {float(got[i]):.9g} vs native {float(native[i]):.9g}); "
                         "nothing written")
    return worst


def throughput(data: bytes, x: np.ndarray, task: str, min_rows: int = 100_000, repeats: int = 3) -> float:
    """Batch-scoring rows/s of onnxruntime (1 thread) over x, tiled to >= min_rows; best of `repeats`."""
    if len(x) == 0:
        return 0.0
    name, column = output_of(task)
    sess = session(data)
    batch = np.ascontiguousarray(np.tile(x, (max(1, -(-min_rows // len(x))), 1)), dtype=np.float32)
    ort_predict(sess, batch[: min(len(batch), 1024)], name, column)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        ort_predict(sess, batch, name, column)
        best = min(best, time.perf_counter() - start)
    return len(batch) / best if best > 0 else float("inf")


def write_model(data: bytes, path: str | Path) -> None:
    """Write the model bytes atomically: a temp file beside it, fsynced, then renamed over."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out)
