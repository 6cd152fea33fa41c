"""Perception: a file (or a webcam frame, a recording, a typed text) -> what was seen, read and heard,
as evidence for people and as modality tokens in the shared text space for the fusion head.

    image -> ImageNet concepts (bridged into the text space) + OCR text
    audio -> voice activity -> Whisper transcript (+ pooled encoder states for trained heads)
    text  -> the text itself
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FusionDeskError, InputFileError
from .filetypes import modality_of, read_text_file
from .fusion import Token, bridge_concepts
from .runtime import Runtime, get_runtime

# How far a transcript is trusted: Whisper on clear speech is reliable, but less than text a person typed.
TRANSCRIPT_CONFIDENCE = 0.9
TEXT_CONFIDENCE = 1.0
MIN_CONCEPT_CONFIDENCE = 0.2  # an unsure classifier still says something useful about the kind of scene


@dataclass
class Perception:
    """Everything perceived in one input, plus its tokens."""

    file: str
    modality: str
    tokens: list[Token] = field(default_factory=list)
    concepts: list[tuple[str, float]] = field(default_factory=list)  # ImageNet top-k, images only
    image_probs: np.ndarray | None = None
    image_feature: np.ndarray | None = None  # 1280-d, for trained heads
    ocr: Any = None  # engine.ocr.OcrResult
    transcript: Any = None  # engine.speech.Transcript
    acoustic_feature: np.ndarray | None = None  # pooled Whisper encoder states, for trained heads
    text: str | None = None
    image_size: tuple[int, int] | None = None
    objects: list | None = None  # engine.scene.Detection list, images only

    def evidence(self) -> dict[str, Any]:
        """What the answer rests on, in plain JSON."""
        found: dict[str, Any] = {}
        if self.concepts:
            found["concepts"] = [{"label": name, "score": round(score, 4)} for name, score in self.concepts]
        if self.objects:
            found["objects"] = [d.to_json() for d in self.objects]
        if self.ocr is not None:
            found["ocr_text"] = self.ocr.text
        if self.transcript is not None:
            found["transcript"] = self.transcript.text
        if self.text is not None:
            found["text"] = self.text if len(self.text) <= 2000 else self.text[:2000] + "…"
        return found


@dataclass
class PerceptionOptions:
    ocr: bool = True
    objects: bool = True  # object detection, when the bundle has a detector
    top_k: int = 5
    speech_model: str = "whisper-tiny.en"
    language: str = "en"
    task: str = "transcribe"  # or "translate" (multilingual model only)
    beam_size: int = 1
    acoustic_features: bool = False


def guard_file(path, work):
    """Run work() for one file: its InputFileError, or any unexpected failure, becomes that file's error; a
    broken model bundle (FusionDeskError) is not the file's fault and stops the run."""
    try:
        return work()
    except InputFileError as exc:
        return exc
    except FusionDeskError:
        raise
    except Exception as exc:
        return InputFileError(path, f"could not be processed ({type(exc).__name__}: {exc})")


class Perceiver:
    """Turns inputs into Perceptions, batching what batches (image classification, text embedding)."""

    def __init__(self, runtime: Runtime | None = None, options: PerceptionOptions | None = None, decode_workers: int = 4):
        self.runtime = runtime or get_runtime()
        self.options = options or PerceptionOptions()
        self.decode_workers = decode_workers

    # -- files ----------------------------------------------------------------------------------------------

    def perceive_files(self, paths: list[str | Path]) -> list[Perception | InputFileError]:
        """One result per path, in order: a Perception, or the InputFileError that explains the failure."""
        results: list[Perception | InputFileError | None] = [None] * len(paths)
        by_modality: dict[str, list[int]] = {"image": [], "audio": [], "text": []}
        for index, path in enumerate(paths):
            try:
                path = Path(path)
                if not path.exists():
                    raise InputFileError(path, "no such file")
                if path.is_dir():
                    raise InputFileError(path, "is a folder, not a file (use `fusiondesk batch` for folders)")
                by_modality[modality_of(path)].append(index)
            except InputFileError as exc:
                results[index] = exc
        if by_modality["image"]:
            self._perceive_image_files(paths, by_modality["image"], results)
        for index in by_modality["audio"]:
            results[index] = guard_file(paths[index], lambda p=paths[index]: self.perceive_audio_file(p))
        for index in by_modality["text"]:
            results[index] = guard_file(paths[index], lambda p=paths[index]: self.perceive_text(read_text_file(p), str(p)))
        return results  # type: ignore[return-value]

    def _perceive_image_files(self, paths, indices: list[int], results: list) -> None:
        from .imaging import load_image

        def decode(index: int):
            try:
                return load_image(paths[index])
            except InputFileError as exc:
                return exc
            except Exception as exc:  # a decoder bug must not take the whole batch down
                return InputFileError(paths[index], f"cannot decode the image ({exc})")

        with ThreadPoolExecutor(max_workers=self.decode_workers) as pool:
            decoded = list(pool.map(decode, indices))
        good = [(index, image) for index, image in zip(indices, decoded) if not isinstance(image, Exception)]
        for index, image in zip(indices, decoded):
            if isinstance(image, Exception):
                results[index] = image
        if good:
            perceptions = self.perceive_images([image for _, image in good], [str(paths[i]) for i, _ in good])
            for (index, _), perception in zip(good, perceptions):
                results[index] = perception

    # -- in-memory inputs -----------------------------------------------------------------------------------

    def perceive_images(self, images: list, names: list[str] | None = None) -> list[Perception]:
        """PIL images (files already decoded, webcam frames) -> Perceptions, classified as one batch."""
        from .image import classify_images
        from .text import embed_texts

        names = names or [f"image{i}" for i in range(len(images))]
        classified = classify_images(images, top_k=self.options.top_k, runtime=self.runtime)
        concepts = bridge_concepts(np.stack([c.probs for c in classified]), runtime=self.runtime)
        perceptions = []
        for name, image, result, concept in zip(names, images, classified, concepts):
            top_label, top_score = result.labels[0]
            perception = Perception(file=name, modality="image", concepts=[(n, float(s)) for n, s in result.labels],
                                    image_probs=result.probs, image_feature=result.feature, image_size=image.size)
            perception.tokens.append(Token("concepts", concept, max(MIN_CONCEPT_CONFIDENCE, float(top_score)),
                                           text=", ".join(n for n, _ in result.labels[:3]), source=name))
            if self.options.ocr:
                from .ocr import read_text

                perception.ocr = read_text(image, runtime=self.runtime)
            perceptions.append(perception)
        if self.options.objects and "object-detector" in self.runtime.bundle:
            from .scene import object_tokens

            # Detected objects are their own token: "a person riding a motorcycle" is matched by what is where,
            # not only by the ImageNet concept of the whole picture.
            for perception, found in zip(perceptions, object_tokens(perceptions, images, runtime=self.runtime)):
                perception.objects = found
        ocr_texts = [(p, p.ocr.text) for p in perceptions if p.ocr is not None and p.ocr.text.strip()]
        if ocr_texts:
            vectors = embed_texts([text for _, text in ocr_texts], runtime=self.runtime)
            for (perception, text), vector in zip(ocr_texts, vectors):
                scores = [line.score for line in perception.ocr.lines] or [0.0]
                perception.tokens.append(Token("ocr", vector, float(np.mean(scores)), text=text, source=perception.file))
        for perception in perceptions:
            self.add_translations(perception)
        return perceptions

    def add_translations(self, perception: Perception) -> None:
        """Portuguese text read or heard also enters the (English) text space translated, so it can match
        English labels and search queries; nothing happens when the translation pack is not installed."""
        from .translate import english_tokens

        perception.tokens += english_tokens(perception, runtime=self.runtime)

    def perceive_audio_file(self, path: str | Path) -> Perception:
        from .audio import load_audio

        return self.perceive_audio(load_audio(path), str(path))

    def perceive_audio(self, samples: np.ndarray, name: str = "recording") -> Perception:
        """16 kHz mono float32 samples -> transcript (+ acoustic feature when asked)."""
        from .speech import encoder_features, transcribe
        from .text import embed_texts

        transcript = transcribe(samples, model_id=self.options.speech_model, language=self.options.language,
                                task=self.options.task, beam_size=self.options.beam_size, runtime=self.runtime)
        perception = Perception(file=name, modality="audio", transcript=transcript)
        if transcript.text.strip():
            vector = embed_texts([transcript.text], runtime=self.runtime)[0]
            perception.tokens.append(Token("transcript", vector, TRANSCRIPT_CONFIDENCE, text=transcript.text, source=name))
        if self.options.acoustic_features:
            perception.acoustic_feature = encoder_features(samples, model_id=self.options.speech_model, runtime=self.runtime)
        self.add_translations(perception)
        return perception

    def perceive_text(self, text: str, name: str = "text") -> Perception:
        from .text import embed_texts

        perception = Perception(file=name, modality="text", text=text)
        if text.strip():
            vector = embed_texts([text], runtime=self.runtime)[0]
            perception.tokens.append(Token("text", vector, TEXT_CONFIDENCE, text=text, source=name))
        self.add_translations(perception)
        return perception
