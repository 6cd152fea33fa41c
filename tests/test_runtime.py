"""The foundation: manifest, hash checks, provider choice, lazy sessions, the fusion graphs' mechanics."""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from engine.errors import FusionDeskError, ModelBundleError
from engine.fusion import build_bridge_graph, build_head_graph
from engine.manifest import SCHEMA_VERSION, ModelBundle, sha256_of
from engine.runtime import ProviderWarning, Runtime, SplitBatchSession, choose_providers


def tiny_scale_model(factor: float) -> onnx.ModelProto:
    """y = x * factor: the smallest real graph, to check the session code's mechanics."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "factor"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        initializer=[helper.make_tensor("factor", TensorProto.FLOAT, [], [factor])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def write_bundle(folder: Path, factor: float = 2.0, session: dict | None = None) -> Path:
    model_path = folder / "tiny" / "model.onnx"
    model_path.parent.mkdir(parents=True)
    onnx.save(tiny_scale_model(factor), model_path)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "bundle_version": "test",
        "models": [{
            "id": "tiny", "task": "scale", "modality": "none", "precision": "fp32",
            "files": {"model": {"path": "tiny/model.onnx", "sha256": sha256_of(model_path),
                                "bytes": model_path.stat().st_size}},
            "preprocess": {"factor": factor}, "source": {"packages": []}, "license": "MIT",
            **({"session": session} if session else {}),
        }],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_tiny_model_runs_through_the_session_code(tmp_path):
    runtime = Runtime(ModelBundle(write_bundle(tmp_path)), device="cpu")
    entry = runtime.bundle.entry("tiny")
    assert entry.preprocess == {"factor": 2.0} and entry.total_bytes > 0
    (y,) = runtime.session("tiny").run(None, {"x": np.ones((2, 3), np.float32)})
    assert np.allclose(y, 2.0)
    assert runtime.providers_for("tiny") == ["CPUExecutionProvider"]


def test_sessions_load_once_under_concurrency(tmp_path):
    runtime = Runtime(ModelBundle(write_bundle(tmp_path)), device="cpu")
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(runtime.session("tiny"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(s) for s in seen}) == 1


def test_split_batches_only_where_the_manifest_asks_and_with_the_same_answer(tmp_path):
    split_bundle = ModelBundle(write_bundle(tmp_path / "split", factor=3.0, session={"split_batches": True}))
    split = Runtime(split_bundle, device="cpu", threads=3)
    assert isinstance(split.session("tiny"), SplitBatchSession)
    # One thread, the switch off, or a model that does not ask: an ordinary session.
    assert not isinstance(Runtime(split_bundle, device="cpu", threads=1).session("tiny"), SplitBatchSession)
    whole = Runtime(split_bundle, device="cpu", threads=3, split_batches=False)
    assert not isinstance(whole.session("tiny"), SplitBatchSession)
    plain = Runtime(ModelBundle(write_bundle(tmp_path / "plain", factor=3.0)), device="cpu", threads=3)
    assert not isinstance(plain.session("tiny"), SplitBatchSession)
    rng = np.random.default_rng(0)
    for size in (1, 2, 3, 5, 8):
        x = rng.standard_normal((size, 3)).astype(np.float32)
        (got,) = split.session("tiny").run(None, {"x": x})
        (expected,) = whole.session("tiny").run(["y"], {"x": x})
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_allclose(got, x * 3.0)
    assert split.session("tiny").get_inputs()[0].name == "x"  # the rest is the wrapped session's
    split.close()


class RecordingSession:
    """Stands in for an ORT session: records which thread ran which share, and waits at a barrier so that the
    test fails (BrokenBarrierError) unless every share runs at the same time."""

    def __init__(self, parties: int, fail_on_size: int | None = None):
        self.barrier = threading.Barrier(parties, timeout=10)
        self.fail_on_size = fail_on_size
        self.calls: list[tuple[int, int]] = []

    def run(self, output_names, feeds, run_options=None):
        self.barrier.wait()
        x = feeds["x"]
        self.calls.append((threading.get_ident(), len(x)))
        if len(x) == self.fail_on_size:
            raise RuntimeError(f"share of {len(x)} failed")
        return [x * 2, x[:, :1]]


def test_split_batch_shares_run_at_once_in_balanced_order_preserving_parts():
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=2)
    inner = RecordingSession(parties=3)
    x = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)
    doubled, first_column = SplitBatchSession(inner, pool, workers=3).run(None, {"x": x})
    np.testing.assert_array_equal(doubled, x * 2)  # concatenated back in input order
    np.testing.assert_array_equal(first_column, x[:, :1])
    assert sorted(size for _, size in inner.calls) == [2, 2, 3]
    assert threading.get_ident() in {thread for thread, _ in inner.calls}  # the caller ran one share itself
    assert len({thread for thread, _ in inner.calls}) == 3

    # Inputs that do not share a batch size run whole, once.
    single = RecordingSession(parties=1)
    SplitBatchSession(single, pool, workers=3).run(None, {"x": x, "other": np.zeros((2, 3))})
    assert [size for _, size in single.calls] == [7]

    # A failing share's error reaches the caller, after every other share has finished.
    # Five rows in two shares: the caller runs 2, the pool 3, and the pool's share fails.
    failing = RecordingSession(parties=2, fail_on_size=3)
    with pytest.raises(RuntimeError, match="share of 3 failed"):
        SplitBatchSession(failing, pool, workers=2).run(None, {"x": x[:5]})
    assert len(failing.calls) == 2
    pool.shutdown()


def test_corrupt_model_file_is_named_with_the_rebuild_hint(tmp_path):
    folder = write_bundle(tmp_path)
    model = folder / "tiny" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-5] ^= 0xFF  # same size, different content: only the hash can tell
    model.write_bytes(bytes(data))
    runtime = Runtime(ModelBundle(folder), device="cpu")
    with pytest.raises(ModelBundleError, match=r"model\.onnx is corrupt.*build/setup\.sh models"):
        runtime.session("tiny")
    report = runtime.bundle.verify_all()
    assert report[0][2] is not None and "corrupt" in report[0][2]


def test_missing_and_truncated_files_and_bad_manifests(tmp_path):
    folder = write_bundle(tmp_path / "a")
    model = folder / "tiny" / "model.onnx"
    model.write_bytes(model.read_bytes()[:10])
    with pytest.raises(ModelBundleError, match="has 10 bytes"):
        ModelBundle(folder).path("tiny")
    model.unlink()
    with pytest.raises(ModelBundleError, match="is missing"):
        ModelBundle(folder).path("tiny")
    with pytest.raises(ModelBundleError, match="not in the bundle"):
        ModelBundle(folder).entry("nope")
    with pytest.raises(ModelBundleError, match="no model bundle"):
        ModelBundle(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(ModelBundleError, match="cannot read"):
        ModelBundle(bad)
    (bad / "manifest.json").write_text(json.dumps({"schema_version": 99, "models": []}))
    with pytest.raises(ModelBundleError, match="schema_version 99"):
        ModelBundle(bad)
    (bad / "manifest.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION, "models": [{"id": "x"}]}))
    with pytest.raises(ModelBundleError, match="malformed"):
        ModelBundle(bad)


def test_provider_choice():
    assert choose_providers("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.warns(ProviderWarning, match="no GPU provider"):
        assert choose_providers("gpu", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(FusionDeskError, match="unknown device"):
        choose_providers("tpu")


def test_gpu_request_on_this_machine_warns_and_runs_on_cpu(tmp_path):
    import onnxruntime as ort

    if any(p in ort.get_available_providers() for p in ("CUDAExecutionProvider", "DmlExecutionProvider")):
        pytest.skip("this machine has a GPU provider")  # CI and the dev machines have none
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runtime = Runtime(ModelBundle(write_bundle(tmp_path)), device="gpu")
        runtime.session("tiny")
    assert any(issubclass(w.category, ProviderWarning) for w in caught)
    assert runtime.info("tiny").providers == ["CPUExecutionProvider"]


def test_fusion_head_graph_matches_numpy_and_ignores_masked_tokens():
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    dim = 16
    session = ort.InferenceSession(build_head_graph(dim=dim).SerializeToString(), providers=["CPUExecutionProvider"])
    tokens = rng.normal(size=(2, 3, dim)).astype(np.float32)
    tokens /= np.linalg.norm(tokens, axis=-1, keepdims=True)
    confidence = np.array([[0.9, 0.4, 0.5], [1.0, 1.0, 1.0]], np.float32)
    mask = np.array([[1, 1, 0], [1, 1, 1]], np.float32)
    labels = rng.normal(size=(4, dim)).astype(np.float32)
    labels /= np.linalg.norm(labels, axis=-1, keepdims=True)
    fused, scores, attention = session.run(None, {"tokens": tokens, "confidence": confidence, "mask": mask,
                                                  "labels": labels})
    sim = tokens @ labels.T
    bias = np.log(confidence) + (mask - 1) * 1e4
    logits = sim / 0.1 + bias[..., None]
    att = np.exp(logits - logits.max(1, keepdims=True))
    att /= att.sum(1, keepdims=True)
    evidence = (att * sim).sum(1) / 0.05
    expected = np.exp(evidence - evidence.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    assert np.allclose(scores, expected, atol=1e-5)
    assert np.allclose(attention[0, 2], 0.0)  # the absent token gets no weight
    weights = np.exp(bias) / np.exp(bias).sum(1, keepdims=True)
    want = (tokens * weights[..., None]).sum(1)
    want /= np.linalg.norm(want, axis=-1, keepdims=True)
    assert np.allclose(fused, want, atol=1e-5)


def test_bridge_graph_is_a_normalised_probability_weighted_sum():
    import onnxruntime as ort

    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(10, 6)).astype(np.float32)
    session = ort.InferenceSession(build_bridge_graph(matrix).SerializeToString(), providers=["CPUExecutionProvider"])
    probs = rng.dirichlet(np.ones(10), size=3).astype(np.float32)
    (concept,) = session.run(None, {"probs": probs})
    want = probs @ matrix
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    assert np.allclose(concept, want, atol=1e-5)


def test_every_bundled_model_met_its_recorded_thresholds(bundle):
    """The build measured each converted model against its reference; the figures it recorded must hold."""
    checked = 0
    for entry in bundle.models.values():
        for name, result in entry.verification.items():
            if not isinstance(result, dict) or "measured" not in result:
                continue
            if result.get("direction", ">=") == ">=":
                assert result["measured"] >= result["threshold"], (entry.id, name, result)
            else:
                assert result["measured"] <= result["threshold"], (entry.id, name, result)
            checked += 1
    assert checked >= 5, f"only {checked} verification figures recorded in the manifest"


def test_bundle_files_match_their_hashes(bundle):
    problems = [(model, path, error) for model, path, error in bundle.verify_all() if error]
    assert not problems
