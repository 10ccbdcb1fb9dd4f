"""Small ONNX models with depthd metadata: a LightGBM regressor and classifier, and onnx.helper graphs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from daemon.features import schema
from daemon.model.metadata import Histogram, ModelMeta

# A subset of the schema in an order of its own, so the scorer's gather is exercised.
FEATURES: tuple[str, ...] = ("imb_l1", "spread_bps", "ofi_10s", "mid", "tfi_1s", "ret_1s_bps", "imb_5",
                             "vol_10s")
N_TRAIN = 2000


def make_meta(features: tuple[str, ...] = FEATURES, **overrides: Any) -> ModelMeta:
    """ModelMeta for a test model (regression on `variable` unless overridden)."""
    fields: dict[str, Any] = {
        "feature_names": features, "schema_version": schema.SCHEMA_VERSION, "label": "mid_ret_bps",
        "horizon_ms": 1000, "task": "regression", "output_name": "variable", "output_column": 0,
        "data_hash": "0" * 64, "trainer": "test",
    }
    fields.update(overrides)
    return ModelMeta(**fields)


def with_props(model: onnx.ModelProto, props: dict[str, str] | None) -> onnx.ModelProto:
    """The model with its metadata_props replaced by `props` (none if None)."""
    del model.metadata_props[:]
    if props:
        onnx.helper.set_model_props(model, props)
    return model


def save(model: onnx.ModelProto, path: Path, meta: ModelMeta | None) -> Path:
    """Write the model with `meta` (or no depthd metadata) to `path`."""
    with_props(model, meta.to_props() if meta is not None else None)
    path.write_bytes(model.SerializeToString())
    return path


def schema_rows(model_rows: np.ndarray, features: tuple[str, ...] = FEATURES, fill: float = 7.5) -> np.ndarray:
    """Full schema-order vectors holding `model_rows` (model order) in the model's features, `fill` elsewhere."""
    out = np.full((len(model_rows), len(schema.NAMES)), fill, dtype=np.float64)
    out[:, [schema.index_of(n) for n in features]] = model_rows
    return out


def reference_histogram(x: np.ndarray, bins: int = 10) -> Histogram:
    """A quantile histogram of `x` following the metadata binning rule (NaN bin last)."""
    finite = x[~np.isnan(x)]
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=len(edges) + 1)
    fractions = np.append(counts, len(x) - len(finite)) / len(x)
    return Histogram(tuple(edges.tolist()), tuple(fractions.tolist()))


@dataclass(frozen=True)
class LgbmCase:
    """A converted LightGBM model on disk and the native model it came from."""

    path: Path
    model: Any
    meta: ModelMeta
    onnx: onnx.ModelProto


def _training_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N_TRAIN, len(FEATURES))).astype(np.float32)
    X[rng.random(X.shape) < 0.05] = np.nan  # missing values, as windowed features have
    y = np.nan_to_num(X[:, 0]) * 2 - np.nan_to_num(X[:, 1]) + 0.5 * np.nan_to_num(X[:, 3]) ** 2
    return X, y


def _convert(model: Any, **kwargs: Any) -> onnx.ModelProto:
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    return onnxmltools.convert_lightgbm(model, initial_types=[("features", FloatTensorType([None, len(FEATURES)]))],
                                        **kwargs)


@pytest.fixture(scope="session")
def lgbm_regressor(tmp_path_factory: pytest.TempPathFactory) -> LgbmCase:
    """A 30-tree LightGBM regressor on FEATURES, converted to ONNX with depthd metadata."""
    import lightgbm as lgb

    X, y = _training_data()
    model = lgb.LGBMRegressor(n_estimators=30, num_leaves=7, learning_rate=0.2, verbose=-1).fit(X, y)
    onx = _convert(model)
    meta = make_meta(output_name=onx.graph.output[0].name,
                     histograms={n: reference_histogram(X[:, i].astype(np.float64)) for i, n in enumerate(FEATURES)})
    path = save(onx, tmp_path_factory.mktemp("models") / "reg.onnx", meta)
    return LgbmCase(path, model, meta, onx)


@pytest.fixture(scope="session")
def lgbm_classifier(tmp_path_factory: pytest.TempPathFactory) -> LgbmCase:
    """A binary LightGBM classifier converted without ZipMap: `probabilities` (rows, 2), class 1 in column 1."""
    import lightgbm as lgb

    X, y = _training_data(1)
    model = lgb.LGBMClassifier(n_estimators=20, num_leaves=7, verbose=-1).fit(X, (y > 0).astype(int))
    onx = _convert(model, zipmap=False)
    meta = make_meta(task="binary", output_name="probabilities", output_column=1)
    path = save(onx, tmp_path_factory.mktemp("models") / "clf.onnx", meta)
    return LgbmCase(path, model, meta, onx)


def ratio_model(n: int = len(FEATURES), width: int | None = None, dtype: int = TensorProto.FLOAT,
                flat_double: bool = False) -> onnx.ModelProto:
    """y = x[:, 0] / x[:, 1] as a (rows, 1) output named `variable`: 0/0 gives NaN, 1/0 inf.

    `width` declares a different input width than the graph uses (for refusal tests); `flat_double`
    makes the output a (rows,) double tensor, as some sklearn converters write."""
    width = n if width is None else width
    a = np.zeros((width, 1), np.float32)
    b = np.zeros((width, 1), np.float32)
    a[0, 0] = 1.0
    b[1, 0] = 1.0
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "a"], ["num"]),
         helper.make_node("MatMul", ["features", "b"], ["den"]),
         helper.make_node("Div", ["num", "den"], ["ratio" if flat_double else "variable"])],
        "ratio",
        [helper.make_tensor_value_info("features", dtype, [None, width])],
        [helper.make_tensor_value_info("variable", dtype, [None, 1])],
        [numpy_helper.from_array(a, "a"), numpy_helper.from_array(b, "b")],
    )
    if flat_double:
        graph.node.extend([helper.make_node("Cast", ["ratio"], ["ratio64"], to=TensorProto.DOUBLE),
                           helper.make_node("Squeeze", ["ratio64", "axis1"], ["variable"])])
        graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
        del graph.output[:]
        graph.output.append(helper.make_tensor_value_info("variable", TensorProto.DOUBLE, [None]))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture
def ratio_path(tmp_path: Path) -> Path:
    """The ratio model on FEATURES with valid metadata."""
    return save(ratio_model(), tmp_path / "ratio.onnx", make_meta())


