"""The engine's public tasks: classify, transcribe, read, describe, embed.

Each takes file paths and returns plain JSON-ready dicts, one per file, in the shapes the CLI prints and
the UI shows. A file that cannot be used yields {"file", "error"} and the others are still processed.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .errors import InputFileError
from .fusion import Token, fuse
from .perceive import Perceiver, Perception, PerceptionOptions
from .runtime import Runtime, get_runtime

ENGLISH_SPEECH_MODEL = "whisper-tiny.en"
MULTILINGUAL_SPEECH_MODEL = "whisper-base"


def speech_model_for(language: str, task: str = "transcribe", preferred: str | None = None) -> str:
    """The multilingual base model for other languages and for translation; for English, the model chosen in
    the settings (the fast tiny.en unless the user picked the multilingual one), or `preferred`."""
    if task == "translate" or language != "en":
        return MULTILINGUAL_SPEECH_MODEL
    if preferred is None:
        from .settings import SPEECH_MODELS, load_settings

        preferred = SPEECH_MODELS.get(load_settings().speech_model, ENGLISH_SPEECH_MODEL)
    return preferred


def error_record(error: InputFileError) -> dict[str, Any]:
    return {"file": error.path, "error": error.problem}


def parse_labels(text: str | None) -> list[str]:
    """'cat, dog ,car' -> ['cat', 'dog', 'car']; blanks and duplicates dropped, order kept."""
    if not text:
        return []
    seen: dict[str, None] = {}
    for part in text.replace("\n", ",").split(","):
        label = part.strip()
        if label and label not in seen:
            seen[label] = None
    return list(seen)


class LabelSpace:
    """Label names and their embeddings, cached: the same labels are scored against every file of a run."""

    _cache: dict[tuple[int, tuple[str, ...]], np.ndarray] = {}
    _lock = threading.Lock()

    @classmethod
    def embed(cls, labels: list[str], runtime: Runtime) -> np.ndarray:
        from .text import embed_texts

        key = (id(runtime), tuple(labels))
        with cls._lock:
            found = cls._cache.get(key)
        if found is None:
            found = embed_texts(list(labels), runtime=runtime)
            with cls._lock:
                if len(cls._cache) > 64:
                    cls._cache.clear()
                cls._cache[key] = found
        return found

    _imagenet: dict[int, tuple[list[str], np.ndarray]] = {}

    @classmethod
    def imagenet(cls, runtime: Runtime) -> tuple[list[str], np.ndarray]:
        """The 1000 ImageNet names and their embeddings (shipped in the bundle), loaded once per runtime."""
        from .image import class_names

        key = id(runtime)
        with cls._lock:
            found = cls._imagenet.get(key)
        if found is None:
            found = (class_names(runtime), np.load(runtime.bundle.path("concept-bridge", "class_embeddings")))
            with cls._lock:
                cls._imagenet[key] = found
        return found


def score_perception(perception: Perception, labels: list[str], runtime: Runtime, top_k: int) -> list[dict[str, Any]]:
    """Labels for one perceived item: the user's labels through the fusion head, else ImageNet classes."""
    if labels:
        if not perception.tokens:
            return []
        result = fuse(perception.tokens, labels, LabelSpace.embed(labels, runtime), runtime=runtime)
        return [{"label": name, "score": round(score, 4)} for name, score in result.labels[:top_k]]
    if perception.modality == "image":
        return [{"label": name, "score": round(score, 4)} for name, score in perception.concepts[:top_k]]
    if not perception.tokens:
        return []
    names, matrix = LabelSpace.imagenet(runtime)
    result = fuse(perception.tokens, names, matrix, runtime=runtime)
    return [{"label": name, "score": round(score, 4)} for name, score in result.labels[:top_k]]


def classify_files(
    paths: Iterable[str | Path],
    labels: list[str] | None = None,
    top_k: int = 5,
    options: PerceptionOptions | None = None,
    runtime: Runtime | None = None,
    head: str | None = None,
    with_text_lines: bool = False,
) -> list[dict[str, Any]]:
    """Labels for each file; with_text_lines adds the OCR lines of pictures ("ocr_lines", as `read` gives them)
    from the same OCR pass that feeds the labels, for a caller that shows both."""
    runtime = runtime or get_runtime()
    paths = [str(p) for p in paths]
    labels = labels or []
    # A copy: the caller's options are theirs (the OCR switch below is this call's business).
    options = dataclasses.replace(options) if options else PerceptionOptions(top_k=max(top_k, 5))
    if head:
        return _classify_with_head(paths, head, top_k, options, runtime)
    # OCR is what lets a label be decided by text in a picture; without labels, ImageNet names need no OCR.
    if not labels and not with_text_lines:
        options.ocr = False
    records = []
    for path, perceived in zip(paths, Perceiver(runtime, options).perceive_files(paths)):
        if isinstance(perceived, InputFileError):
            records.append(error_record(perceived))
            continue
        record = {
            "file": path,
            "modality": perceived.modality,
            "labels": score_perception(perceived, labels, runtime, top_k),
            "evidence": perceived.evidence(),
        }
        if with_text_lines and perceived.ocr is not None:
            record["ocr_lines"] = text_lines_json(perceived.ocr)
        records.append(record)
    return records


def _classify_with_head(paths: list[str], head_name: str, top_k: int, options: PerceptionOptions,
                        runtime: Runtime) -> list[dict[str, Any]]:
    """A trained head's classes (engine.teach) instead of label names; the head decides what is perceived."""
    from .teach import classify_with_head, load_head

    head = load_head(head_name, runtime)
    perceived_all = Perceiver(runtime, head.perception_options(options)).perceive_files(paths)
    good = [i for i, p in enumerate(perceived_all) if not isinstance(p, InputFileError)]
    scored = dict(zip(good, classify_with_head([perceived_all[i] for i in good], head, runtime, top_k)))
    records = []
    for index, (path, perceived) in enumerate(zip(paths, perceived_all)):
        result = perceived if isinstance(perceived, InputFileError) else scored[index]
        if isinstance(result, InputFileError):
            records.append(error_record(result))
            continue
        records.append({"file": path, "modality": perceived.modality, "head": head.name, "labels": result,
                        "evidence": perceived.evidence()})
    return records


def transcribe_files(
    paths: Iterable[str | Path],
    language: str = "en",
    task: str = "transcribe",
    beam_size: int = 1,
    model_id: str | None = None,
    runtime: Runtime | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Transcripts as JSON records, plus the Transcript objects keyed by file (for SRT/VTT/TXT export)."""
    from .audio import load_audio
    from .speech import transcribe

    runtime = runtime or get_runtime()
    model_id = model_id or speech_model_for(language, task)
    records, transcripts = [], {}
    for path in map(str, paths):
        try:
            transcript = transcribe(load_audio(path), model_id=model_id, language=language, task=task,
                                    beam_size=beam_size, runtime=runtime)
        except InputFileError as exc:
            records.append(error_record(exc))
            continue
        transcripts[path] = transcript
        records.append({
            "file": path,
            "text": transcript.text,
            "language": transcript.language,
            "segments": [{"start": round(s.start, 2), "end": round(s.end, 2), "text": s.text} for s in transcript.segments],
            "duration": round(float(transcript.duration), 2),
            "model": model_id,
            "task": task,
        })
    return records, transcripts


def read_files(paths: Iterable[str | Path], runtime: Runtime | None = None) -> list[dict[str, Any]]:
    from .imaging import load_image
    from .ocr import read_text

    runtime = runtime or get_runtime()
    records = []
    for path in map(str, paths):
        try:
            result = read_text(load_image(path), runtime=runtime)
        except InputFileError as exc:
            records.append(error_record(exc))
            continue
        records.append({"file": path, "text": result.text, "lines": text_lines_json(result)})
    return records


def text_lines_json(result) -> list[dict[str, Any]]:
    """An OcrResult's lines as `read --json` prints them."""
    return [{"text": line.text, "score": round(float(line.score), 4),
             "box": [[round(float(x), 1), round(float(y), 1)] for x, y in line.box]} for line in result.lines]


def embed_files(paths: Iterable[str | Path], options: PerceptionOptions | None = None,
                runtime: Runtime | None = None) -> list[dict[str, Any]]:
    """The fused vector of each file in the shared 384-d space (what search indexes)."""
    runtime = runtime or get_runtime()
    paths = [str(p) for p in paths]
    records = []
    for path, perceived in zip(paths, Perceiver(runtime, options).perceive_files(paths)):
        if isinstance(perceived, InputFileError):
            records.append(error_record(perceived))
            continue
        if not perceived.tokens:
            records.append({"file": path, "modality": perceived.modality, "error": "nothing to embed "
                            "(no speech, text or recognisable content found)"})
            continue
        vector = fuse(perceived.tokens, runtime=runtime).fused
        records.append({"file": path, "modality": perceived.modality, "dim": int(vector.shape[0]),
                        "vector": [round(float(v), 6) for v in vector]})
    return records


def describe_files(
    paths: Iterable[str | Path],
    text: str | None = None,
    labels: list[str] | None = None,
    top_k: int = 5,
    options: PerceptionOptions | None = None,
    runtime: Runtime | None = None,
) -> dict[str, Any]:
    """One fused answer for several inputs together (a photo, a voice note and a caption are one item)."""
    runtime = runtime or get_runtime()
    paths = [str(p) for p in paths]
    perceiver = Perceiver(runtime, options)
    perceived_all = perceiver.perceive_files(paths)
    if text and text.strip():
        perceived_all.append(perceiver.perceive_text(text, "--text"))
    errors = [error_record(p) for p in perceived_all if isinstance(p, InputFileError)]
    perceptions = [p for p in perceived_all if isinstance(p, Perception)]
    tokens: list[Token] = [token for p in perceptions for token in p.tokens]
    answer: dict[str, Any] = {
        "files": paths,
        "text": text or None,
        "modalities": sorted({p.modality for p in perceptions}),
        "labels": [],
        "evidence": [{"file": p.file, "modality": p.modality, **p.evidence()} for p in perceptions],
        "errors": errors,
    }
    if not tokens:
        answer["answer"] = "Nothing could be perceived in these inputs."
        return answer
    if labels:
        names, matrix = labels, LabelSpace.embed(labels, runtime)
    else:
        names, matrix = LabelSpace.imagenet(runtime)
    result = fuse(tokens, names, matrix, runtime=runtime)
    answer["labels"] = [{"label": n, "score": round(s, 4)} for n, s in result.labels[:top_k]]
    best = result.labels[0][0]
    weights = result.attention[best]
    answer["tokens"] = [{"kind": t.kind, "file": t.source, "text": t.text[:300], "confidence": round(t.confidence, 3),
                         "weight_for_best": round(w, 3)} for t, w in zip(tokens, weights)]
    answer["answer"] = summarise(perceptions, best, tokens, weights)
    return answer


def summarise(perceptions: list[Perception], best: str, tokens: list[Token], weights: list[float]) -> str:
    """A sentence a person can read: the best label and the evidence that carried it."""
    parts = []
    for p in perceptions:
        if p.concepts:
            parts.append(f"{Path(p.file).name} looks like {p.concepts[0][0]} ({p.concepts[0][1]:.0%})")
        if p.ocr is not None and p.ocr.text.strip():
            parts.append(f"it reads \"{_clip(p.ocr.text)}\"")
        if p.transcript is not None and p.transcript.text.strip():
            parts.append(f"{Path(p.file).name} says \"{_clip(p.transcript.text)}\"")
        if p.modality == "text" and p.text:
            parts.append(f"the text says \"{_clip(p.text)}\"")
    strongest = tokens[int(np.argmax(weights))]
    return f"Best match: {best} (mostly from the {strongest.kind}). " + "; ".join(parts) + "."


def _clip(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
