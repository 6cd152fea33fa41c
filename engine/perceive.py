"""Perception: a file (or a webcam frame, a recording, a typed text) -> what was seen, read and heard,
as evidence for people and as modality tokens in the shared text space for the fusion head.

    image -> ImageNet concepts (bridged into the text space)
             + text, where a cheap look finds any (OCR at full resolution on those pages and regions only)
             + objects and people, where the plan asks for them (engine.plan)
    audio -> voice activity -> Whisper transcript (+ pooled encoder states for trained heads)
    text  -> the text itself

Which models run is engine.plan's decision (PerceptionOptions); this module carries it out, a batch at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FusionDeskError, InputFileError
from .fusion import Token, bridge_concepts
from .runtime import Runtime, get_runtime

# How far a transcript is trusted: Whisper on clear speech is reliable, but less than text a person typed.
TRANSCRIPT_CONFIDENCE = 0.9
TEXT_CONFIDENCE = 1.0
MIN_CONCEPT_CONFIDENCE = 0.2  # an unsure classifier still says something useful about the kind of scene
# A picture is a *document* (labelled by its kind, described by its text) when the text check finds a page of text
# and at least this many words on it pass the OCR's quality filter; a photo with a shop sign stays a photo.
MIN_DOCUMENT_WORDS = 5
OCR_MODES = ("auto", "always", "never")


@dataclass
class PerceptionOptions:
    # auto: look for text cheaply and read only where there is some; always: read every image in full (the `read`
    # task, which a person asks for); never: no text (Live frames). True/False mean auto/never.
    ocr: str = "auto"
    objects: bool = False  # object detection (engine.plan turns it on where its answer is used)
    people: bool = False  # person masks, counted only inside the detector's person boxes
    top_k: int = 5
    speech_model: str = "whisper-tiny.en"
    language: str = "en"
    task: str = "transcribe"  # or "translate" (multilingual model only)
    beam_size: int = 1
    acoustic_features: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.ocr, bool):
            self.ocr = "auto" if self.ocr else "never"
        if self.ocr not in OCR_MODES:
            raise ValueError(f"ocr must be one of {', '.join(OCR_MODES)}, not {self.ocr!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "ocr" and isinstance(value, bool):  # teach heads and older callers switch it with a bool
            value = "auto" if value else "never"
        super().__setattr__(name, value)


@dataclass
class ImageInput:
    """A picture to perceive. `image` is what the classifier, the text check and the detector see; it may be a
    reduced decode of `path` (by `scale`), which is then decoded again at reading resolution where text is found.
    Every box a Perception reports is in the pixels of the file (or of `image` when there is no file)."""

    image: Any  # PIL RGB image
    name: str = "image"
    path: Path | None = None
    scale: tuple[float, float] = (1.0, 1.0)  # file pixels per pixel of `image`, per axis
    prepared: dict[str, Any] = field(default_factory=dict)  # model inputs made ahead: see prepare_inputs

    def prepare_inputs(self, options: PerceptionOptions, runtime: Runtime) -> "ImageInput":
        """Make the inputs of the models the plan will run on this picture (resize, crop, normalise) now: the
        file pipeline calls this on its decode threads, so the numpy/Pillow work overlaps the model runs of the
        batch before instead of waiting for them on one core."""
        from .image import preprocess_image, settings

        self.prepared["classifier"] = preprocess_image(self.image, settings(runtime))
        if options.objects:
            from .scene import DETECTOR_ID, detector_input, rgb_array

            self.prepared["detector"] = detector_input(rgb_array(self.image), runtime.bundle.entry(DETECTOR_ID).preprocess)
        return self


@dataclass
class Perception:
    """Everything perceived in one input, plus its tokens."""

    file: str
    modality: str
    kind: str = ""  # image: "photo" | "document"; audio: "recording"; text: "text"
    tokens: list[Token] = field(default_factory=list)
    concepts: list[tuple[str, float]] = field(default_factory=list)  # ImageNet top-k, images only
    image_probs: np.ndarray | None = None
    image_feature: np.ndarray | None = None  # 1280-d, for trained heads
    text_presence: Any = None  # engine.ocr.TextPresence: what the cheap look for text found
    ocr: Any = None  # engine.ocr.OcrResult: the lines that passed its quality filter, and those rejected
    transcript: Any = None  # engine.speech.Transcript
    acoustic_feature: np.ndarray | None = None  # pooled Whisper encoder states, for trained heads
    text: str | None = None
    image_size: tuple[int, int] | None = None  # the file's (or frame's) size
    objects: list | None = None  # engine.scene.Detection list in file pixels; None: the detector did not run
    people_mask: np.ndarray | None = None  # person probability inside the detector's person boxes, at image's size
    person_fraction: float | None = None  # None: not asked; 0.0: no person found

    def evidence(self) -> dict[str, Any]:
        """What the answer rests on, in plain JSON."""
        found: dict[str, Any] = {"kind": self.kind} if self.kind else {}
        if self.concepts and self.kind != "document":
            found["concepts"] = [{"label": name, "score": round(score, 4)} for name, score in self.concepts]
        if self.objects:
            found["objects"] = [d.to_json() for d in self.objects]
        if self.person_fraction is not None:
            found["person_fraction"] = round(float(self.person_fraction), 4)
        if self.ocr is not None:
            found["ocr_text"] = self.ocr.text
            if self.ocr.rejected:
                found["ocr_rejected"] = [{"text": line.text, "score": round(float(line.score), 4), "reason": line.reason}
                                         for line in self.ocr.rejected]
        if self.transcript is not None:
            found["transcript"] = self.transcript.text
        if self.text is not None:
            found["text"] = self.text if len(self.text) <= 2000 else self.text[:2000] + "…"
        return found


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


def _all_prepared(inputs: list[ImageInput], model: str) -> list | None:
    """The inputs made ahead for `model`, when every picture has one (else the model makes them itself)."""
    found = [item.prepared.get(model) for item in inputs]
    return found if all(x is not None for x in found) else None


class Perceiver:
    """Turns inputs into Perceptions, batching what batches (every image model, text embedding)."""

    def __init__(self, runtime: Runtime | None = None, options: PerceptionOptions | None = None, decode_workers: int = 4):
        self.runtime = runtime or get_runtime()
        self.options = options or PerceptionOptions()
        self.decode_workers = decode_workers

    # -- files ----------------------------------------------------------------------------------------------

    def perceive_files(self, paths: list[str | Path]) -> list[Perception | InputFileError]:
        """One result per path, in order: a Perception, or the InputFileError that explains the failure.
        Files are decoded and perceived a batch at a time (engine.pipeline), so memory does not grow with the list."""
        from .pipeline import perceive_paths

        return [perceived for _, perceived in perceive_paths(paths, self)]

    # -- images -------------------------------------------------------------------------------------------------

    def perceive_images(self, images: list, names: list[str] | None = None) -> list[Perception]:
        """Pictures (PIL images, webcam frames, or ImageInputs from decoded files) -> Perceptions, each model run
        once for the whole list."""
        from .image import classify_images

        inputs = [item if isinstance(item, ImageInput) else ImageInput(item, (names or [])[i] if names else f"image{i}")
                  for i, item in enumerate(images)]
        if not inputs:
            return []
        classified = classify_images([item.image for item in inputs], top_k=self.options.top_k, runtime=self.runtime,
                                     prepared=_all_prepared(inputs, "classifier"))
        perceptions = []
        for item, result in zip(inputs, classified):
            width, height = item.image.size
            size = (round(width * item.scale[0]), round(height * item.scale[1]))
            perceptions.append(Perception(file=item.name, modality="image", kind="photo", image_size=size,
                                          concepts=[(n, float(s)) for n, s in result.labels],
                                          image_probs=result.probs, image_feature=result.feature))
        if self.options.ocr != "never":
            self._read_text(inputs, perceptions)
        detections = self._detect(inputs, perceptions) if self.options.objects else None
        if self.options.people:
            self._find_people(inputs, perceptions, detections)
        self._image_tokens(perceptions, classified)
        for perception in perceptions:
            self.add_translations(perception)
        return perceptions

    def _read_text(self, inputs: list[ImageInput], perceptions: list[Perception]) -> None:
        """The cheap look for text on every picture; the full OCR only where it found some (or on every picture
        when the plan says `always`). A picture with a page of real words is a document."""
        from .ocr import TextPresence, text_presence

        presences = text_presence([item.image for item in inputs], runtime=self.runtime)
        for item, perception, presence in zip(inputs, perceptions, presences):
            perception.text_presence = presence
            reading = TextPresence(kind="page") if self.options.ocr == "always" else presence
            if reading.kind == "none":
                continue
            perception.ocr = self._ocr(item, reading)
            words = sum(len(line.text.split()) for line in perception.ocr.lines)
            if presence.kind == "page" and words >= MIN_DOCUMENT_WORDS:
                perception.kind = "document"

    def _ocr(self, item: ImageInput, presence):
        """OCR at reading resolution: a reduced decode is decoded again (only these files pay for it); line boxes
        come back in the file's pixels, as `fusiondesk read` gives them."""
        from .imaging import load_image
        from .ocr import MODEL_ID, read_text

        picture, scale = item.image, item.scale
        max_side = int(self.runtime.bundle.entry(MODEL_ID).preprocess.get("max_side_len", 2000))
        file_side = max(item.image.size[0] * scale[0], item.image.size[1] * scale[1])
        if item.path is not None and max(item.image.size) + 1 < min(max_side, file_side):
            picture = load_image(item.path, max_side=max_side)
            scale = (item.image.size[0] * item.scale[0] / picture.size[0],
                     item.image.size[1] * item.scale[1] / picture.size[1])
        result = read_text(picture, runtime=self.runtime, presence=presence)
        if scale != (1.0, 1.0):
            for line in result.lines + result.rejected:
                line.box = [[x * scale[0], y * scale[1]] for x, y in line.box]
        return result

    def _detect(self, inputs: list[ImageInput], perceptions: list[Perception]) -> list[list]:
        """Objects in every picture, one batched detector run; boxes stored in file pixels. Returns the detections
        in the pictures' own pixels (where the people masks are)."""
        from .scene import detect, in_file_pixels

        found = detect([item.image for item in inputs], runtime=self.runtime, prepared=_all_prepared(inputs, "detector"))
        for item, perception, detections in zip(inputs, perceptions, found):
            perception.objects = in_file_pixels(detections, item.scale)
        return found

    def _find_people(self, inputs: list[ImageInput], perceptions: list[Perception], detections: list[list] | None) -> None:
        """Person masks where the detector found a person; a picture without one has no people (fraction 0)."""
        from .scene import people_masks

        if detections is None:
            from .scene import detect

            detections = detect([item.image for item in inputs], runtime=self.runtime)
        masks = people_masks([item.image for item in inputs], detections, runtime=self.runtime)
        for perception, mask in zip(perceptions, masks):
            perception.people_mask = mask
            perception.person_fraction = 0.0 if mask is None else float((mask >= 0.5).mean())

    def _image_tokens(self, perceptions: list[Perception], classified: list) -> None:
        """Concepts (photos only: a document's ImageNet classes say nothing true about it), objects, text read."""
        from .scene import object_names
        from .text import embed_texts

        photos = [(p, c) for p, c in zip(perceptions, classified) if p.kind == "photo"]
        if photos:
            concepts = bridge_concepts(np.stack([c.probs for _, c in photos]), runtime=self.runtime)
            for (perception, result), concept in zip(photos, concepts):
                perception.tokens.append(Token("concepts", concept, max(MIN_CONCEPT_CONFIDENCE, float(result.labels[0][1])),
                                               text=", ".join(n for n, _ in result.labels[:3]), source=perception.file))
        # Detected objects are their own token: "a person riding a motorcycle" is matched by what is where, not
        # only by the ImageNet concept of the whole picture. Text read is its own token. One encoder call for both.
        wanted: list[tuple[Perception, str, str, float]] = []
        for perception in perceptions:
            if perception.objects:
                wanted.append((perception, "objects", ", ".join(object_names(perception.objects)),
                               max(d.score for d in perception.objects)))
            if perception.ocr is not None and perception.ocr.text.strip():
                wanted.append((perception, "ocr", perception.ocr.text,
                               float(np.mean([line.score for line in perception.ocr.lines]))))
        if wanted:
            vectors = embed_texts([text for _, _, text, _ in wanted], runtime=self.runtime)
            for (perception, kind, text, confidence), vector in zip(wanted, vectors):
                perception.tokens.append(Token(kind, vector, confidence, text=text, source=perception.file))

    def add_translations(self, perception: Perception) -> None:
        """Portuguese text read or heard also enters the (English) text space translated, so it can match
        English labels and search queries; nothing happens when the translation pack is not installed."""
        from .translate import english_tokens

        perception.tokens += english_tokens(perception, runtime=self.runtime)

    # -- recordings and text --------------------------------------------------------------------------------

    def perceive_audio_file(self, path: str | Path) -> Perception:
        from .audio import load_audio

        return self.perceive_audio(load_audio(path), str(path))

    def perceive_audio(self, samples: np.ndarray, name: str = "recording") -> Perception:
        """16 kHz mono float32 samples -> transcript (+ acoustic feature when asked)."""
        from .speech import encoder_features, transcribe
        from .text import embed_texts

        transcript = transcribe(samples, model_id=self.options.speech_model, language=self.options.language,
                                task=self.options.task, beam_size=self.options.beam_size, runtime=self.runtime)
        perception = Perception(file=name, modality="audio", kind="recording", transcript=transcript)
        if transcript.text.strip():
            vector = embed_texts([transcript.text], runtime=self.runtime)[0]
            perception.tokens.append(Token("transcript", vector, TRANSCRIPT_CONFIDENCE, text=transcript.text, source=name))
        if self.options.acoustic_features:
            perception.acoustic_feature = encoder_features(samples, model_id=self.options.speech_model, runtime=self.runtime)
        self.add_translations(perception)
        return perception

    def perceive_text(self, text: str, name: str = "text") -> Perception:
        return self.perceive_texts([text], [name])[0]

    def perceive_texts(self, texts: list[str], names: list[str]) -> list[Perception]:
        """Typed or saved text: one text-encoder call for all of them."""
        from .text import embed_texts

        perceptions = [Perception(file=name, modality="text", kind="text", text=text) for text, name in zip(texts, names)]
        worded = [p for p in perceptions if p.text.strip()]
        if worded:
            for perception, vector in zip(worded, embed_texts([p.text for p in worded], runtime=self.runtime)):
                perception.tokens.append(Token("text", vector, TEXT_CONFIDENCE, text=perception.text, source=perception.file))
        for perception in perceptions:
            self.add_translations(perception)
        return perceptions
