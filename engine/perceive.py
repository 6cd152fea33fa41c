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
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import FusionDeskError, InputFileError
from .fusion import Token, bridge_concepts
from .runtime import Runtime, get_runtime

if TYPE_CHECKING:
    from .audio import AudioFile

# How far a transcript is trusted: Whisper on clear speech is reliable, but less than text a person typed.
TRANSCRIPT_CONFIDENCE = 0.9
TEXT_CONFIDENCE = 1.0
MIN_CONCEPT_CONFIDENCE = 0.2  # an unsure classifier still says something useful about the kind of scene
# A picture is a *document* (labelled by its kind, described by its text) when the text check finds a page of text
# and at least this many words on it pass the OCR's quality filter; a photo with a shop sign stays a photo.
MIN_DOCUMENT_WORDS = 5
OCR_MODES = ("auto", "pages", "always", "never")


@dataclass
class PerceptionOptions:
    # What is read in pictures (engine.plan chooses):
    #   auto: pages of text in full, and elsewhere only the regions where a cheap look finds text (a sign);
    #   pages: only pages of text (documents), when the text of a photo would not be used (classify without labels);
    #   always: every picture in full (the `read` command: a person asked for its text);
    #   never: nothing (Live frames).
    # Whatever the mode, a picture is a document only when the page check says it is a page (the same everywhere).
    # True/False mean auto/never.
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
    prepared: dict[str, Any] = field(default_factory=dict)  # model inputs made ahead: see prepare
    text: "TextLook | None" = None  # the looks for text, when taken ahead: see prepare

    def prepare(self, options: PerceptionOptions, runtime: Runtime) -> "ImageInput":
        """Do now what this picture alone needs before the batched models run: their inputs (resize, crop,
        normalise), the looks for text (page check, text gate: small detector runs, one thread each) and, where text
        was found in a reduced decode, the decode at reading resolution. The file pipeline calls this on its decode
        threads, so all of it overlaps the batch before's model runs instead of queueing behind them on one core."""
        from .image import preprocess_image, settings

        self.prepared["classifier"] = preprocess_image(self.image, settings(runtime))
        if options.ocr != "never":
            self.text = look_for_text([self], options, runtime)[0]
        if options.objects:
            from .scene import DETECTOR_ID, detector_input, rgb_array

            self.prepared["detector"] = detector_input(rgb_array(self.image), runtime.bundle.entry(DETECTOR_ID).preprocess)
        return self


@dataclass
class TextLook:
    """What the looks for text found in one picture, and the picture to read it from."""

    page: bool  # the page check: a page of text (what makes a picture a document)
    presence: Any  # engine.ocr.TextPresence: what to read (none / regions / page)
    reading: Any = None  # the picture at reading resolution, when it differs from ImageInput.image
    reading_scale: tuple[float, float] = (1.0, 1.0)  # file pixels per pixel of `reading`


def look_for_text(items: list[ImageInput], options: PerceptionOptions, runtime: Runtime) -> list[TextLook]:
    """The page check on every picture and (in "auto" mode, on those that are not pages) the text gate, each
    picture's detector run on one core (Runtime.run_each); then, where there is something to read and the picture
    is a reduced decode of a file, the file decoded again at reading resolution (only these files pay for it)."""
    from .imaging import load_image
    from .ocr import MODEL_ID, TextPresence, page_check, text_presence

    pictures = [item.image for item in items]
    pages = page_check(pictures, runtime)
    presences = [TextPresence(kind="page" if page or options.ocr == "always" else "none") for page in pages]
    if options.ocr == "auto":
        others = [i for i, page in enumerate(pages) if not page]
        for i, found in zip(others, text_presence([pictures[i] for i in others], runtime)):
            presences[i] = found
    max_side = int(runtime.bundle.entry(MODEL_ID).preprocess.get("max_side_len", 2000))
    looks = []
    for item, page, presence in zip(items, pages, presences):
        look = TextLook(page, presence, item.image, item.scale)
        file_side = max(item.image.size[0] * item.scale[0], item.image.size[1] * item.scale[1])
        if presence.kind != "none" and item.path is not None and max(item.image.size) + 1 < min(max_side, file_side):
            look.reading = load_image(item.path, max_side=max_side)
            look.reading_scale = (item.image.size[0] * item.scale[0] / look.reading.size[0],
                                  item.image.size[1] * item.scale[1] / look.reading.size[1])
        looks.append(look)
    return looks


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
        """Read what the looks for text found (engine.pipeline takes them on its decode threads; pictures given
        directly get them here). Pages are read in full, other pictures only in the regions with text (or every
        picture in full when the plan says `always`). A page of real words is a document."""
        missing = [item for item in inputs if item.text is None]
        for item, look in zip(missing, look_for_text(missing, self.options, self.runtime)):
            item.text = look
        for item, perception in zip(inputs, perceptions):
            look = item.text
            perception.text_presence = look.presence
            if look.presence.kind == "none":
                continue
            perception.ocr = self._ocr(look)
            words = sum(len(line.text.split()) for line in perception.ocr.lines)
            if look.page and words >= MIN_DOCUMENT_WORDS:
                perception.kind = "document"

    def _ocr(self, look: TextLook):
        """OCR at reading resolution; line boxes come back in the file's pixels, as `fusiondesk read` gives them."""
        from .ocr import read_text

        result = read_text(look.reading, runtime=self.runtime, presence=look.presence)
        sx, sy = look.reading_scale
        if (sx, sy) != (1.0, 1.0):
            for line in result.lines + result.rejected:
                line.box = [[x * sx, y * sy] for x, y in line.box]
        return result

    def _detect(self, inputs: list[ImageInput], perceptions: list[Perception]) -> list[list]:
        """Objects in every picture, one batched detector run; boxes stored in file pixels. Returns the detections
        in the pictures' own pixels (where the people masks are)."""
        from .scene import claims, detect, in_file_pixels

        found = detect([item.image for item in inputs], runtime=self.runtime, prepared=_all_prepared(inputs, "detector"))
        found = [claims(detections) for detections in found]
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
        from .audio import AudioFile

        return self.perceive_audio(AudioFile(path), str(path))

    def perceive_audio(self, samples: np.ndarray | AudioFile, name: str = "recording") -> Perception:
        """16 kHz mono float32 samples, or an engine.audio.AudioFile (streamed) -> transcript (+ acoustic feature
        when asked)."""
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
