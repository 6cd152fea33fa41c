"""Self-test: load every model in the bundle and run one real inference on the built-in samples.

Checks answers, not only that something ran: the sample photo must look like a cat, the sample sentence
must be heard, the sample scan must be read. One check per *task* (data-driven: a new model of a known
task needs no new code here).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .runtime import Runtime, get_runtime


@dataclass
class CheckResult:
    model_id: str
    ok: bool
    detail: str
    seconds: float
    providers: list[str]


def _sample(runtime: Runtime, key: str):
    return runtime.bundle.path("samples", key)


def _expect(runtime: Runtime, key: str) -> str:
    return runtime.bundle.entry("samples").extra["expect"][key]


def _check_text(runtime: Runtime, model_id: str) -> str:
    from .text import embed_texts

    vectors = embed_texts(["a cat sleeps on the sofa", "a kitten naps on the couch", "quarterly tax report"],
                          runtime=runtime)
    norms = np.linalg.norm(vectors, axis=1)
    assert np.allclose(norms, 1.0, atol=1e-3), f"embeddings not normalised ({norms})"
    close, far = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert close > far, f"paraphrase similarity {close:.2f} not above unrelated {far:.2f}"
    return f"dim {vectors.shape[1]}, paraphrase {close:.2f} > unrelated {far:.2f}"


def _check_image(runtime: Runtime, model_id: str) -> str:
    from .image import classify_images
    from .imaging import load_image

    result = classify_images([load_image(_sample(runtime, "photo"))], top_k=5, runtime=runtime)[0]
    want = _expect(runtime, "photo")
    names = [name for name, _ in result.labels]
    assert any(want in name for name in names), f"sample photo gave {names[:3]}, expected a {want}"
    return f"sample photo -> {result.labels[0][0]} ({result.labels[0][1]:.2f})"


def _check_bridge(runtime: Runtime, model_id: str) -> str:
    from .fusion import bridge_concepts
    from .image import class_names
    from .text import embed_texts

    names = class_names(runtime)
    probs = np.zeros((1, len(names)), dtype=np.float32)
    probs[0, names.index("tiger cat")] = 1.0
    concept = bridge_concepts(probs, runtime=runtime)[0]
    words = ["cat", "car", "coffee"]
    nearest = words[int(np.argmax(embed_texts(words, runtime=runtime) @ concept))]
    assert nearest == "cat", f"'tiger cat' bridged nearest to {nearest!r}"
    return "'tiger cat' -> nearest word 'cat'"


def _check_fusion(runtime: Runtime, model_id: str) -> str:
    from .fusion import Token, fuse
    from .text import embed_texts

    vectors = embed_texts(["invoice number 42, total due", "a cat", "invoice", "cat", "bicycle"], runtime=runtime)
    tokens = [Token("ocr", vectors[0], 0.9), Token("concepts", vectors[1], 0.5)]
    result = fuse(tokens, ["invoice", "cat", "bicycle"], vectors[2:], runtime=runtime)
    top = [name for name, _ in result.labels[:2]]
    assert set(top) == {"invoice", "cat"}, f"fused labels {result.labels}"
    return f"two tokens -> {result.labels[0][0]} {result.labels[0][1]:.2f}, {result.labels[1][0]} {result.labels[1][1]:.2f}"


def _check_vad(runtime: Runtime, model_id: str) -> str:
    from .audio import load_audio
    from .vad import speech_segments

    audio = load_audio(_sample(runtime, "speech"))
    segments = speech_segments(audio, runtime=runtime)
    assert segments, "no speech found in the sample sentence"
    silence = speech_segments(np.zeros(16000 * 2, dtype=np.float32), runtime=runtime)
    assert not silence, "speech found in silence"
    return f"{len(segments)} speech segment(s), silence -> none"


def _check_speech(runtime: Runtime, model_id: str) -> str:
    from .audio import load_audio
    from .speech import transcribe

    multilingual = bool(runtime.bundle.entry(model_id).extra.get("whisper", {}).get("multilingual"))
    transcript = transcribe(load_audio(_sample(runtime, "speech")), model_id=model_id,
                            language="auto" if multilingual else "en", runtime=runtime)
    want = _expect(runtime, "speech")
    assert want in transcript.text.lower(), f"heard {transcript.text!r}, expected the word {want!r}"
    if multilingual:
        assert transcript.language == "en", f"detected language {transcript.language!r} for English speech"
    return f"{transcript.text.strip()!r}" + (f" [{transcript.language}]" if multilingual else "")


def _check_ocr(runtime: Runtime, model_id: str) -> str:
    from .imaging import load_image
    from .ocr import read_text

    result = read_text(load_image(_sample(runtime, "document")), runtime=runtime)
    want = _expect(runtime, "document")
    assert want in result.text.lower(), f"read {result.text!r}, expected the word {want!r}"
    return f"{len(result.lines)} lines, first {result.lines[0].text!r}"


def _check_detector(runtime: Runtime, model_id: str) -> str:
    from .imaging import load_image
    from .scene import detect

    detections = detect([load_image(_sample(runtime, "photo"))], runtime=runtime)[0]
    want = _expect(runtime, "photo")
    names = [d.label for d in detections]
    assert want in names, f"sample photo: detected {names}, expected a {want}"
    return "detected " + ", ".join(f"{d.label} {d.score:.2f}" for d in detections[:3])


def _check_segmenter(runtime: Runtime, model_id: str) -> str:
    from .imaging import load_image
    from .scene import person_fraction, segment

    image = load_image(_sample(runtime, "photo"))
    mask = segment([image], runtime=runtime)[0]
    assert mask.shape == (image.height, image.width), f"mask {mask.shape} for a {image.size} image"
    assert 0.0 <= float(mask.min()) and float(mask.max()) <= 1.0, "mask values outside 0..1"
    # A selfie model counts a close-up subject of any kind as the foreground (MODELS.md): the cat fills the frame.
    fraction = person_fraction(mask)
    assert fraction > 0.1, f"foreground fraction {fraction:.2f} for a close-up subject"
    return f"mask {mask.shape[1]}x{mask.shape[0]}, foreground {fraction:.0%}"


# One sentence per source language and a word its translation must contain.
TRANSLATION_PROBES = {"en": ("The dog is in the garden.", "jardim"), "pt": ("O cachorro está no jardim.", "garden")}


def _check_translation(runtime: Runtime, model_id: str) -> str:
    from .translate import translate

    source, target = model_id.removeprefix("translate-").split("-")
    sentence, want = TRANSLATION_PROBES[source]
    (done,) = translate([sentence], target=target, source=source, runtime=runtime)
    assert want in done.text.lower(), f"{sentence!r} -> {done.text!r}, expected the word {want!r}"
    return f"{sentence!r} -> {done.text!r}"


CHECKS: dict[str, Callable[[Runtime, str], str]] = {
    "translation": _check_translation,
    "embed": _check_text,
    "object-detection": _check_detector,
    "person-segmentation": _check_segmenter,
    "classify": _check_image,
    "concept-bridge": _check_bridge,
    "fusion": _check_fusion,
    "voice-activity": _check_vad,
    "speech-recognition": _check_speech,
    "ocr": _check_ocr,
}
DATA_TASKS = {"selftest-samples"}  # bundle entries that are data, not models


def run_selftest(runtime: Runtime | None = None, report: Callable[[CheckResult], None] | None = None) -> list[CheckResult]:
    runtime = runtime or get_runtime()
    results = []
    for entry in runtime.bundle.models.values():
        if entry.task in DATA_TASKS:
            continue
        started = time.perf_counter()
        check = CHECKS.get(entry.task)
        try:
            if check is None:
                raise AssertionError(f"no self-test for task {entry.task!r}")
            detail = check(runtime, entry.id)
            ok = True
        except Exception as exc:  # the self-test reports every failure and goes on to the next model
            detail, ok = f"{type(exc).__name__}: {exc}" if not isinstance(exc, AssertionError) else str(exc), False
        providers = sorted({p for info in runtime.loaded() if info.model_id == entry.id for p in info.providers})
        result = CheckResult(entry.id, ok, detail, time.perf_counter() - started, providers)
        results.append(result)
        if report:
            report(result)
    return results
