"""build/weight_storage.py: fp32 weights stored as fp16 + Cast, folded back to fp32 by ONNX Runtime at load."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "build"))

from weight_storage import store_fp32_weights_as_fp16  # noqa: E402

from engine.runtime import Runtime  # noqa: E402

RNG = np.random.default_rng(7)
OUTER = RNG.standard_normal((256, 1024)).astype(np.float32)  # 1 MiB: used only inside the If branches
LOCAL = RNG.standard_normal((256, 1024)).astype(np.float32)  # 1 MiB: an initializer of the else-branch itself
FIRST = RNG.standard_normal((256, 256)).astype(np.float32)  # 256 KiB: below the threshold, stays fp32
SHAPE = np.array([1, 1024], dtype=np.int64)


def _model(path: Path) -> Path:
    """x -> MatMul(FIRST) -> If(c): then MatMul(OUTER), else MatMul(OUTER) + MatMul(LOCAL) -> Reshape(SHAPE).

    OUTER reaches the branches as an implicit input from the outer graph, as the hoisted weights of
    optimum's merged Whisper decoder do.
    """
    def out(name: str):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 1024])

    then = helper.make_graph([helper.make_node("MatMul", ["h", "outer"], ["t"])], "then", [], [out("t")])
    otherwise = helper.make_graph(
        [helper.make_node("MatMul", ["h", "outer"], ["e1"]), helper.make_node("MatMul", ["h", "local"], ["e2"]),
         helper.make_node("Add", ["e1", "e2"], ["e"])],
        "else", [], [out("e")], [numpy_helper.from_array(LOCAL, "local")])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "first"], ["h"]),
         helper.make_node("If", ["c"], ["y0"], then_branch=then, else_branch=otherwise),
         helper.make_node("Reshape", ["y0", "shape"], ["y"])],
        "storage_test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256]),
         helper.make_tensor_value_info("c", TensorProto.BOOL, [1])],
        [out("y")],
        [numpy_helper.from_array(FIRST, "first"), numpy_helper.from_array(OUTER, "outer"),
         numpy_helper.from_array(SHAPE, "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _expected(x: np.ndarray, cond: bool, outer: np.ndarray, local: np.ndarray) -> np.ndarray:
    h = x @ FIRST
    return h @ outer if cond else h @ outer + h @ local


def _graphs(graph):
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _graphs(attribute.g)


def _half(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float16).astype(np.float32)


def test_weights_stored_as_fp16_and_outputs_are_fp32_math_on_rounded_weights(tmp_path):
    src = _model(tmp_path / "fp32.onnx")
    report = store_fp32_weights_as_fp16(src, tmp_path / "fp16.onnx")
    assert sorted(report.converted) == ["local", "outer"]
    assert report.skipped == {}
    # Two 1 MiB weights halved; the 256 KiB one and the int64 shape are untouched.
    assert report.bytes_after < report.bytes_before - 1_000_000
    assert (tmp_path / "fp16.onnx").stat().st_size == report.bytes_after
    assert 0 < report.max_abs_rounding_error <= np.abs(OUTER).max() * 2.0 ** -11

    stored = onnx.load(str(tmp_path / "fp16.onnx"))
    types = {t.name: t.data_type for g in _graphs(stored.graph) for t in g.initializer}
    assert types == {"first": TensorProto.FLOAT, "outer_fp16": TensorProto.FLOAT16, "local_fp16": TensorProto.FLOAT16,
                     "shape": TensorProto.INT64}

    session = Runtime(device="cpu", threads=1).session_for_file(tmp_path / "fp16.onnx")  # the app's own options
    reference = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    x = RNG.standard_normal((1, 256)).astype(np.float32)
    for cond in (True, False):
        feeds = {"x": x, "c": np.array([cond])}
        got = session.run(None, feeds)[0]
        np.testing.assert_allclose(got, _expected(x, cond, _half(OUTER), _half(LOCAL)), rtol=1e-4, atol=1e-3)
        fp32 = reference.run(None, feeds)[0]
        assert not np.array_equal(got, fp32)  # the weights really were rounded ...
        # ... by at most fp16's rounding of each weight (plus fp32 summation noise), not more.
        h = np.abs(x @ FIRST)
        bound = h @ np.abs(OUTER - _half(OUTER)) + (0 if cond else h @ np.abs(LOCAL - _half(LOCAL)))
        assert (np.abs(got - fp32) <= bound + 1e-4 * np.abs(fp32) + 1e-3).all()


@pytest.mark.parametrize("level", ["ORT_ENABLE_BASIC", "ORT_ENABLE_ALL"])
def test_onnxruntime_folds_the_casts_at_session_creation(tmp_path, level):
    """The point of the scheme: no Cast runs per call and every weight is fp32 in the graph ORT executes.

    The app's runtime (engine/runtime.py) uses ORT_ENABLE_ALL; BASIC is the lowest level with constant folding.
    """
    store_fp32_weights_as_fp16(_model(tmp_path / "fp32.onnx"), tmp_path / "fp16.onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(str(tmp_path / "fp16.onnx"), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(tmp_path / "optimized.onnx"))
    ops = [n.op_type for g in _graphs(optimized.graph) for n in g.node]
    assert "Cast" not in ops
    weights = {t.name: t.data_type for g in _graphs(optimized.graph) for t in g.initializer}
    assert weights["outer"] == TensorProto.FLOAT and weights["local"] == TensorProto.FLOAT
    assert TensorProto.FLOAT16 not in weights.values()


def test_unfolded_graph_still_correct(tmp_path):
    """With optimizations off the Cast runs on every call: slower, but the same numbers."""
    store_fp32_weights_as_fp16(_model(tmp_path / "fp32.onnx"), tmp_path / "fp16.onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(tmp_path / "fp16.onnx"), options, providers=["CPUExecutionProvider"])
    x = RNG.standard_normal((1, 256)).astype(np.float32)
    got = session.run(None, {"x": x, "c": np.array([False])})[0]
    np.testing.assert_allclose(got, _expected(x, False, _half(OUTER), _half(LOCAL)), rtol=1e-4, atol=1e-3)


def test_out_of_range_and_overridable_weights_stay_fp32(tmp_path):
    big = np.full((512, 512), 1e5, dtype=np.float32)  # beyond float16's 65504: would become inf
    free = RNG.standard_normal((512, 512)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Add", ["big", "free"], ["s"]), helper.make_node("Add", ["s", "x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [512, 512]),
         helper.make_tensor_value_info("free", TensorProto.FLOAT, [512, 512])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [512, 512])],
        [numpy_helper.from_array(big, "big"), numpy_helper.from_array(free, "free")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(tmp_path / "m.onnx"))
    original = (tmp_path / "m.onnx").read_bytes()
    report = store_fp32_weights_as_fp16(tmp_path / "m.onnx", tmp_path / "copy.onnx")
    assert report.converted == []
    assert set(report.skipped) == {"big", "free"}
    assert "range" in report.skipped["big"] and "graph input" in report.skipped["free"]
    assert (tmp_path / "copy.onnx").read_bytes() == original  # nothing converted: the same bytes
    store_fp32_weights_as_fp16(tmp_path / "m.onnx")  # in place
    assert (tmp_path / "m.onnx").read_bytes() == original
    x = np.zeros((512, 512), np.float32)
    y = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(y, big + free)


def test_names_the_file_it_cannot_read(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a protobuf at all \xff\xfe")
    with pytest.raises(ValueError, match="broken.onnx"):
        store_fp32_weights_as_fp16(bad, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        store_fp32_weights_as_fp16(tmp_path / "missing.onnx")
