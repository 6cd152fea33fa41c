"""The engine's public tasks: classify, transcribe, read, describe, embed.

Each takes file paths and returns plain JSON-ready dicts, one per file, in the shapes the CLI prints and
the UI shows. A file that cannot be used yields {"file", "error"} and the others are still processed.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

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


def label_set_for(perception: Perception, labels: list[str]) -> str:
    """Where an item's labels come from, for people reading them: "yours", "imagenet" (photos), or the built-in
    kinds of documents and recordings (engine.plan)."""
    from .plan import default_label_set

    if labels:
        return "yours"
    found = default_label_set(perception)
    if found is None:
        return "imagenet"
    return "recording topics" if perception.modality == "audio" else "document kinds"


def score_perception(perception: Perception, labels: list[str], runtime: Runtime, top_k: int) -> list[dict[str, Any]]:
    """Labels for one perceived item: the user's labels through the fusion head; without them, what fits the
    item (engine.plan.default_label_set): a photo's ImageNet classes, a document's kind, a recording's topic."""
    from .plan import default_label_set

    if not labels:
        if default_label_set(perception) is None:
            return [{"label": name, "score": round(score, 4)} for name, score in perception.concepts[:top_k]]
        labels = list(default_label_set(perception))
    if not perception.tokens:
        return []
    result = fuse(perception.tokens, labels, LabelSpace.embed(labels, runtime), runtime=runtime)
    return [{"label": name, "score": round(score, 4)} for name, score in result.labels[:top_k]]


def classify_record(path: str, perceived: Perception, labels: list[str], runtime: Runtime, top_k: int,
                    with_text_lines: bool = False) -> dict[str, Any]:
    """The record `classify --json` prints for one file (and the Files tab, the API and batch rows show)."""
    record = {
        "file": path,
        "modality": perceived.modality,
        "label_set": label_set_for(perceived, labels),
        "labels": score_perception(perceived, labels, runtime, top_k),
        "evidence": perceived.evidence(),
    }
    if with_text_lines and perceived.ocr is not None:
        record["ocr_lines"] = text_lines_json(perceived.ocr)
    return record


def classify_options(labels: list[str], options: PerceptionOptions | None = None, top_k: int = 5, read: bool = False,
                     boxes: bool = False, people: bool = False, runtime: Runtime | None = None) -> PerceptionOptions:
    """The perception plan for labelling files (engine.plan): classify, describe, the Files tab and the API.
    read: the text in pictures is shown or used (describe, the Files tab's "read text")."""
    from .plan import options_for

    return options_for(labels, read=read, boxes=boxes, people=people, runtime=runtime,
                       base=options or PerceptionOptions(top_k=max(top_k, 5)))


def classify_stream(
    paths: Iterable[str | Path],
    labels: list[str] | None = None,
    top_k: int = 5,
    options: PerceptionOptions | None = None,
    runtime: Runtime | None = None,
    with_text_lines: bool = False,
) -> Iterator[tuple[dict[str, Any], Perception | InputFileError]]:
    """(record, perception) per file, in order, streamed: `options` as the plan made them (classify_options)."""
    from .pipeline import perceive_paths

    runtime = runtime or get_runtime()
    labels = labels or []
    options = options or classify_options(labels, top_k=top_k, runtime=runtime)
    for path, perceived in perceive_paths(paths, Perceiver(runtime, options)):
        if isinstance(perceived, InputFileError):
            yield error_record(perceived), perceived
        else:
            yield classify_record(path, perceived, labels, runtime, top_k, with_text_lines), perceived


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
    from the same OCR pass that feeds the labels, for a caller that shows both. `options`: the caller's
    settings (speech model, language, top_k); what runs is the perception plan's decision."""
    runtime = runtime or get_runtime()
    labels = labels or []
    options = classify_options(labels, options, top_k, runtime=runtime)
    if head:
        return _classify_with_head([str(p) for p in paths], head, top_k, options, runtime)
    return [record for record, _ in classify_stream(paths, labels, top_k, options, runtime, with_text_lines)]


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
    progress: Callable[[str, str, float, float | None], None] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Transcripts as JSON records, plus the Transcript objects keyed by file (for SRT/VTT/TXT export).
    Each file is streamed (engine.speech.transcribe): memory does not grow with its length.
    progress(file, stage, seconds done, seconds in all or None), as engine.speech.transcribe reports it."""
    from .speech import transcribe

    runtime = runtime or get_runtime()
    model_id = model_id or speech_model_for(language, task)
    runtime.bundle.entry(model_id)  # a model of a pack that is not installed: said once, before any file is read
    records, transcripts = [], {}
    for path in map(str, paths):
        report = None if progress is None else (lambda stage, done, total, path=path: progress(path, stage, done, total))
        try:
            transcript = transcribe(path, model_id=model_id, language=language, task=task, beam_size=beam_size,
                                    runtime=runtime, progress=report)
        except InputFileError as exc:
            records.append(error_record(exc))
            continue
        transcripts[path] = transcript
        records.append({"file": path, **transcript_record(transcript, model_id, task)})
    return records, transcripts


def transcript_record(transcript, model_id: str, task: str = "transcribe") -> dict[str, Any]:
    """A Transcript as `transcribe --json` prints it (and batch rows and the Files tab carry it)."""
    return {
        "text": transcript.text,
        "language": transcript.language,
        "segments": [{"start": round(s.start, 2), "end": round(s.end, 2), "text": s.text} for s in transcript.segments],
        "duration": round(float(transcript.duration), 2),
        "model": model_id,
        "task": task,
    }


def read_files(paths: Iterable[str | Path], runtime: Runtime | None = None) -> list[dict[str, Any]]:
    """The text of each picture, read in full (a person asked for it), lines that are not words set aside."""
    from .pipeline import perceive_paths

    runtime = runtime or get_runtime()
    perceiver = Perceiver(runtime, PerceptionOptions(ocr="always"))
    records = []
    for path, perceived in perceive_paths(paths, perceiver):
        if isinstance(perceived, InputFileError):
            records.append(error_record(perceived))
        elif perceived.modality != "image":
            records.append({"file": path, "error": f"is a {perceived.modality} file: `read` reads text in pictures"})
        else:
            records.append({"file": path, **read_record(perceived.ocr)})
    return records


def read_record(result) -> dict[str, Any]:
    """An OcrResult as `read --json` and batch rows give it: the text and lines that passed the quality filter,
    and the lines set aside with the reason (only when there are any)."""
    if result is None:
        return {"text": "", "lines": []}
    record: dict[str, Any] = {"text": result.text, "lines": text_lines_json(result)}
    if result.rejected:
        record["rejected_lines"] = [{"text": line.text, "score": round(float(line.score), 4), "reason": line.reason}
                                    for line in result.rejected]
    return record


def text_lines_json(result) -> list[dict[str, Any]]:
    """An OcrResult's lines as `read --json` prints them."""
    return [{"text": line.text, "score": round(float(line.score), 4),
             "box": [[round(float(x), 1), round(float(y), 1)] for x, y in line.box]} for line in result.lines]


def embed_files(paths: Iterable[str | Path], options: PerceptionOptions | None = None,
                runtime: Runtime | None = None) -> list[dict[str, Any]]:
    """The fused vector of each file in the shared 384-d space (what search indexes)."""
    from .pipeline import perceive_paths
    from .plan import options_for

    runtime = runtime or get_runtime()
    # The vector search indexes: perceived as `index` perceives (objects included), so the two agree.
    options = options_for(search=True, base=options, runtime=runtime)
    records = []
    for path, perceived in perceive_paths(paths, Perceiver(runtime, options)):
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
    perceiver = Perceiver(runtime, classify_options(labels or [], options, top_k, read=True, runtime=runtime))
    perceived_all = perceiver.perceive_files(paths)
    if text and text.strip():
        perceived_all.append(perceiver.perceive_text(text, PROMPT_NAME))
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
    names, matrix = describe_labels(perceptions, labels or [], runtime)
    result = fuse(tokens, names, matrix, runtime=runtime)
    answer["labels"] = [{"label": n, "score": round(s, 4)} for n, s in result.labels[:top_k]]
    best = result.labels[0][0]
    weights = result.attention[best]
    answer["tokens"] = [{"kind": t.kind, "file": t.source, "text": t.text[:300], "confidence": round(t.confidence, 3),
                         "weight_for_best": round(w, 3)} for t, w in zip(tokens, weights)]
    answer["answer"] = summarise(perceptions, best, result.labels[0][1], tokens, weights)
    return answer


def describe_labels(perceptions: list[Perception], labels: list[str], runtime: Runtime) -> tuple[list[str], np.ndarray]:
    """The labels a described item is scored against: the person's, else what fits its parts (ImageNet classes
    when a photo is among them, the built-in kinds and topics of its documents, recordings and notes)."""
    from .plan import default_label_set

    if labels:
        return labels, LabelSpace.embed(labels, runtime)
    names: list[str] = []
    matrices: list[np.ndarray] = []
    if any(default_label_set(p) is None for p in perceptions):
        imagenet_names, imagenet_matrix = LabelSpace.imagenet(runtime)
        names, matrices = list(imagenet_names), [imagenet_matrix]
    extra = list(dict.fromkeys(label for p in perceptions for label in (default_label_set(p) or ())
                               if label not in names))
    if extra:
        names += extra
        matrices.append(LabelSpace.embed(extra, runtime))
    return names, np.concatenate(matrices)


PROMPT_NAME = "--text"  # the source name of the text given with describe (the prompt): never repeated back
# What each kind of token is, for a sentence saying which evidence carried the answer.
EVIDENCE_NAMES = {"concepts": "what {name} shows", "objects": "the things found in {name}",
                  "ocr": "the text in {name}", "transcript": "what was said in {name}", "text": "the text of {name}"}


def summarise(perceptions: list[Perception], best: str, score: float, tokens: list[Token], weights: list[float]) -> str:
    """One or two sentences a person can read: the best label, the evidence that carried it, and what was seen,
    read and heard (the prompt itself is not repeated back)."""
    strongest = tokens[int(np.argmax(weights))]
    kind = strongest.kind.removesuffix("-en")
    if strongest.source == PROMPT_NAME:
        why = "your prompt"
    else:
        why = EVIDENCE_NAMES.get(kind, kind + " of {name}").format(name=Path(strongest.source).name or "the input")
        if strongest.kind.endswith("-en"):
            why += " (translated)"
    parts = []
    for p in perceptions:
        if p.file == PROMPT_NAME:
            continue
        name = Path(p.file).name
        if p.modality == "image" and p.kind == "document":
            parts.append(f"{name} is a document that reads “{_clip(p.ocr.text)}”")
            continue
        if p.modality == "image":
            seen = " or ".join(n for n, _ in p.concepts[:2]) or "nothing recognisable"
            found = f", with {', '.join(object_names_of(p))}" if p.objects else ""
            words = f", and the words “{_clip(p.ocr.text, 60)}”" if p.ocr is not None and p.ocr.text.strip() else ""
            parts.append(f"{name} shows {seen}{found}{words}")
        elif p.modality == "audio":
            heard = p.transcript.text.strip() if p.transcript is not None else ""
            parts.append(f"{name} says “{_clip(heard)}”" if heard else f"{name} has no speech")
        elif p.text:
            parts.append(f"{name} says “{_clip(p.text)}”")
    return f"Most likely {best} ({score:.0%}), mostly from {why}." + (" " + "; ".join(parts) + "." if parts else "")


def object_names_of(perception: Perception) -> list[str]:
    from .scene import object_names

    return object_names(perception.objects or [])


def _clip(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
