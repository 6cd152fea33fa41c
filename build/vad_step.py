"""Voice activity model: silero-vad's own ONNX file, copied as it is (2.3 MB, fp32; there is nothing to
convert and quantizing a 2 MB recurrent model would only risk its accuracy).

Verified by running the engine's numpy loop (engine/vad.py) over the copied file and the package's
reference pipeline (the TorchScript model + `get_speech_timestamps`) over the same espeak-ng speech with
pauses: the speech probabilities must agree and the segments must be the same to within one window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import common
from common import BuildContext

MODEL_ID = "vad"
PACKAGE = "silero-vad"
PREPROCESS = {"sample_rate": 16000, "window_samples": 512, "context_samples": 64, "state_shape": [2, 1, 128]}


def package_model() -> Path:
    import silero_vad

    return Path(silero_vad.__file__).resolve().parent / "data" / "silero_vad.onnx"


def speech_with_pauses(ctx: BuildContext) -> np.ndarray:
    """The shared espeak-ng sentences, separated by pauses of different lengths and led by silence."""
    import soundfile as sf

    rate = PREPROCESS["sample_rate"]
    pieces = [np.zeros(rate, dtype=np.float32)]
    for i, (_, path) in enumerate(common.speech_samples(ctx)):
        samples, file_rate = sf.read(str(path), dtype="float32")
        assert file_rate == rate, f"{path} is {file_rate} Hz"
        pieces += [samples, np.zeros(int(rate * (0.4 + 0.5 * (i % 3))), dtype=np.float32)]
    return np.concatenate(pieces)


def reference_segments(audio: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Segments and per-window probabilities from the package's TorchScript model and its own code."""
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    model = load_silero_vad(onnx=False)
    tensor = torch.from_numpy(audio)
    segments = get_speech_timestamps(tensor, model, sampling_rate=PREPROCESS["sample_rate"])
    model.reset_states()
    step = PREPROCESS["window_samples"]
    probabilities = []
    with torch.no_grad():
        for start in range(0, len(audio), step):
            window = tensor[start:start + step]
            if len(window) < step:
                window = torch.nn.functional.pad(window, (0, step - len(window)))
            probabilities.append(model(window, PREPROCESS["sample_rate"]).item())
    return [(s["start"], s["end"]) for s in segments], np.asarray(probabilities, dtype=np.float32)


def engine_segments(model_path: Path, audio: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The same, through the app's own loop over the bundled ONNX file."""
    import onnxruntime as ort

    from engine.vad import VadSettings, segments_from_probabilities, speech_probabilities

    settings = VadSettings.from_preprocess(PREPROCESS)
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    probabilities = speech_probabilities(audio, session, settings)
    return segments_from_probabilities(probabilities, len(audio), settings), probabilities


def segments_agree(ours: list[tuple[int, int]], theirs: list[tuple[int, int]], tolerance: int) -> float:
    """Fraction of segments matched one to one with both ends within `tolerance` samples (0 if the counts differ)."""
    if len(ours) != len(theirs):
        return 0.0
    if not ours:
        return 1.0
    matched = sum(abs(a0 - b0) <= tolerance and abs(a1 - b1) <= tolerance for (a0, a1), (b0, b1) in zip(ours, theirs))
    return matched / len(ours)


def build(ctx: BuildContext, existing: dict[str, dict]) -> list[dict]:
    model_path = common.copy_into(package_model(), ctx.model_dir(MODEL_ID) / "silero_vad.onnx")
    audio = speech_with_pauses(ctx)

    theirs, reference_probabilities = reference_segments(audio)
    ours, our_probabilities = engine_segments(model_path, audio)
    ctx.log(f"reference segments (samples): {theirs}")
    ctx.log(f"engine segments (samples):    {ours}")

    verification = {
        "segments_within_one_window": common.check(
            "vad segments match silero-vad get_speech_timestamps (fraction, within 512 samples)",
            segments_agree(ours, theirs, PREPROCESS["window_samples"]), 1.0),
        "probability_max_abs_diff": common.check(
            "vad speech probability max |onnx - torchscript|",
            float(np.abs(our_probabilities - reference_probabilities).max()), 0.02, higher_is_better=False),
        "segments_found": common.check(f"vad speech segments found in {len(common.SPEECH_SENTENCES)} sentences",
                                       len(ours), len(common.SPEECH_SENTENCES)),
        "audio_seconds": round(len(audio) / PREPROCESS["sample_rate"], 2),
    }
    return [
        common.entry(
            ctx,
            id=MODEL_ID,
            task="voice-activity",
            modality="audio",
            precision="fp32",
            files={"model": model_path},
            source=common.source(PACKAGE),
            license="MIT",
            preprocess=PREPROCESS,
            verification=verification,
        )
    ]
