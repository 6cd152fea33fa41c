"""The perception plan: which models run on an input, decided from cheap evidence first.

Every surface asks this module what to perceive and how to label it - `classify`, `describe`, `embed`, `batch`,
`index`, the Files tab, Live and Teach - so a file gets the same evidence and the same answer wherever a person
meets it. engine.perceive carries the plan out; nothing else decides which model runs.

What a surface *will use* decides what runs at all (`options_for`):
- text in images: every picture gets the page check (the OCR detector at 192 px, ~4 ms): a page of text is read
  in full and makes the picture a document. Where the text of a photo can change what is shown (labels, text
  shown or kept, search), the text gate (448 px, ~20 ms) finds the regions with text (a sign) and only those are
  read, at full resolution. `read` reads every picture in full (a person asked for its text).
- objects (the detector, ~40 ms a photo on 2 cores): only when its answer is used - labels that name things the
  detector knows (COCO: "a cup", "cat"), boxes drawn, the `detect` task, and search (the fused vector of an
  indexed photo includes what is in it).
- people (the segmenter): only when asked for (people overlays, background blur, the `segment` task), and then its
  mask counts as people only inside the boxes of persons the detector found (engine.scene.people_mask): a selfie
  model marks any close-up subject, a cat included.

What an input *is* decides how it is labelled when the person gave no labels (`default_labels`): photos get the
image classifier's ImageNet classes; documents (pictures that are mostly text), recordings and text notes get
the kinds and topics below, scored through the fusion head on what was read, heard or written - never ImageNet
classes, which name objects ("web site", "envelope", "eggnog") and say nothing true about an invoice or a voice note.
"""

from __future__ import annotations

import re
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Iterable

import numpy as np

from .runtime import Runtime

if TYPE_CHECKING:
    from .perceive import Perception, PerceptionOptions

# Labels for documents (pictures that are mostly text) and text notes when the person gave none: kinds of
# paper and notes people keep, as they would name them.
DOCUMENT_KINDS = (
    "invoice", "receipt", "letter", "email", "recipe", "timetable", "menu", "form", "contract", "report",
    "notice", "sign", "ticket", "bank statement", "certificate", "meeting notes", "shopping list", "to-do list",
    "news article", "poem",
)
# Labels for recordings when the person gave none: what kind of speech it is.
RECORDING_TOPICS = (
    "meeting", "lecture", "phone message", "voice memo", "reminder", "shopping list", "directions", "interview",
    "news report", "weather report", "announcement", "story", "conversation", "song",
)
DEFAULT_LABEL_SETS = {"document": DOCUMENT_KINDS, "text": DOCUMENT_KINDS, "recording": RECORDING_TOPICS}

# A label "names a thing the detector knows" when it contains a COCO class name as a word, or its embedding is
# this close to one (a mug ~ cup 0.6+, kitten ~ cat; invoice, meeting notes, sunset < 0.4 to every COCO name).
COCO_SIMILARITY = 0.6


def options_for(
    labels: Iterable[str] = (),
    *,
    read: bool = False,
    read_all: bool = False,
    boxes: bool = False,
    people: bool = False,
    search: bool = False,
    base: "PerceptionOptions | None" = None,
    runtime: Runtime | None = None,
) -> "PerceptionOptions":
    """What to perceive for a surface that will use: `labels` (the person's), the text in pictures (`read`: shown,
    translated, kept), every picture's text in full (`read_all`, the `read` command), object boxes, people masks,
    or a vector for search.

    `base`: the caller's other settings (speech model, language, top_k, ...), copied, never changed."""
    from .perceive import PerceptionOptions
    from .runtime import get_runtime

    options = replace(base) if base is not None else PerceptionOptions()
    labels = [label for label in labels if label.strip()]
    if options.ocr != "never":
        # Text in a photo is looked for where it can change what is shown: labels it may decide, text shown or
        # kept, search. Otherwise only pages are read: they make a picture a document, labelled by its kind.
        options.ocr = "always" if read_all else "auto" if (labels or read or search) else "pages"
    runtime = runtime or get_runtime()
    has_detector = "object-detector" in runtime.bundle
    options.objects = has_detector and (boxes or search or people or names_detector_things(labels, runtime))
    options.people = people and has_detector and "person-segmenter" in runtime.bundle
    return options


# ---------------------------------------------------------------------------------------------- labels


def default_label_set(perception: "Perception") -> tuple[str, ...] | None:
    """The built-in labels for what this input is; None for photos (they get the classifier's own classes)."""
    if perception.modality == "image":
        return DEFAULT_LABEL_SETS["document"] if perception.kind == "document" else None
    if perception.modality == "audio":
        return DEFAULT_LABEL_SETS["recording"]
    return DEFAULT_LABEL_SETS["text"]


_coco_cache: dict[int, tuple[list[str], np.ndarray]] = {}
_coco_lock = threading.Lock()


def _coco_names(runtime: Runtime) -> tuple[list[str], np.ndarray]:
    from .scene import class_names
    from .text import embed_texts

    key = id(runtime)
    with _coco_lock:
        found = _coco_cache.get(key)
    if found is None:
        names = class_names(runtime)
        found = (names, embed_texts(names, runtime=runtime))
        with _coco_lock:
            _coco_cache[key] = found
    return found


def _words(text: str) -> set[str]:
    words = set(re.findall(r"[a-z]+", text.lower()))
    return words | {w[:-1] for w in words if w.endswith("s")} | {w[:-2] for w in words if w.endswith("es")}


def names_detector_things(labels: list[str], runtime: Runtime) -> bool:
    """Whether any label names something the object detector finds (then its answer can decide the label)."""
    if not labels or "object-detector" not in runtime.bundle:
        return False
    from .text import embed_texts

    names, vectors = _coco_names(runtime)
    for label in labels:
        words = _words(label)
        if any(set(name.split()) <= words for name in names):
            return True
    similarity = embed_texts(list(labels), runtime=runtime) @ vectors.T
    return bool(similarity.max() >= COCO_SIMILARITY)
