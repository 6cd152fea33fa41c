"""Image classifier: photos -> ImageNet-1k labels, probabilities and the 1280-d penultimate feature.

The model (EfficientNet-Lite0 as ONNX) has two outputs, "logits" [N,1000] and "features" [N,1280].
Preprocessing is data in the manifest (resize the short side, centre crop, scale, layout); the functions
here carry it out with PIL's resize and numpy, so the build's verification and the app share one path.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import ModelBundleError
from .imaging import load_image, to_rgb
from .runtime import Runtime, get_runtime

MODEL_ID = "image-classifier"
DEFAULT_PREPROCESS = {"resize": 256, "crop": 224, "mean": 0.498, "std": 0.502, "layout": "NCHW", "resample": "bicubic"}
# Bicubic, as EfficientNet's own preprocessing and the PyTorch reference resize: with bilinear, 93% of 300 photo
# crops kept the reference's top-1 class, with bicubic 96% (the rest are near-ties; bench/bench_commands.py).
RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@dataclass
class ImageResult:
    labels: list[tuple[str, float]]  # top-k (class name, softmax probability), most likely first
    probs: np.ndarray  # [1000] softmax probabilities
    feature: np.ndarray  # [1280] pooled penultimate feature, for heads a user trains

    @property
    def top(self) -> tuple[str, float]:
        return self.labels[0]


# ---- preprocessing: pure functions of an image/array and the manifest's settings ----

def resize_short_side(image: Image.Image, size: int, resample: str = "bicubic") -> Image.Image:
    width, height = image.size
    if min(width, height) == size:
        return image
    if resample not in RESAMPLE:
        raise ModelBundleError(f"unknown resample {resample!r} in the image classifier's settings")
    scale = size / min(width, height)
    new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
    return image.resize(new_size, RESAMPLE[resample])


def center_crop(array: np.ndarray, size: int) -> np.ndarray:
    """Centre size x size window of an HxWxC array (the resize guarantees both sides >= size)."""
    height, width = array.shape[:2]
    top = max(0, (height - size) // 2)
    left = max(0, (width - size) // 2)
    return array[top:top + size, left:left + size]


def normalize(array: np.ndarray, mean: float | Sequence[float], std: float | Sequence[float]) -> np.ndarray:
    """uint8 HxWx3 -> float32 (x/255 - mean) / std."""
    mean_arr = np.asarray(mean, dtype=np.float32)
    std_arr = np.asarray(std, dtype=np.float32)
    return ((array.astype(np.float32) / 255.0) - mean_arr) / std_arr


def to_layout(array: np.ndarray, layout: str) -> np.ndarray:
    if layout == "NCHW":
        return np.ascontiguousarray(array.transpose(2, 0, 1))
    if layout == "NHWC":
        return np.ascontiguousarray(array)
    raise ModelBundleError(f"unknown image layout {layout!r} in the image classifier's settings")


def preprocess_image(image: Image.Image, settings: dict | None = None) -> np.ndarray:
    """One model input (CHW or HWC float32) from an RGB image."""
    settings = {**DEFAULT_PREPROCESS, **(settings or {})}
    resized = resize_short_side(to_rgb(image), int(settings["resize"]), settings["resample"])
    cropped = center_crop(np.asarray(resized), int(settings["crop"]))
    return to_layout(normalize(cropped, settings["mean"], settings["std"]), settings["layout"])


def preprocess_batch(images: Sequence[Image.Image], settings: dict | None = None) -> np.ndarray:
    return np.stack([preprocess_image(image, settings) for image in images])


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


# ---- the model ----

_labels: "weakref.WeakKeyDictionary[Runtime, list[str]]" = weakref.WeakKeyDictionary()
_labels_lock = threading.Lock()


def class_names(runtime: Runtime | None = None) -> list[str]:
    """The 1000 ImageNet class names in output order (the bundle's "labels" file)."""
    runtime = runtime or get_runtime()
    with _labels_lock:
        names = _labels.get(runtime)
        if names is None:
            path = runtime.bundle.path(MODEL_ID, "labels")
            names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            _labels[runtime] = names
        return names


def settings(runtime: Runtime | None = None) -> dict:
    runtime = runtime or get_runtime()
    return {**DEFAULT_PREPROCESS, **runtime.bundle.entry(MODEL_ID).preprocess}


def run_model(session, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logits [N,1000], features [N,1280]) for a preprocessed batch."""
    input_name = session.get_inputs()[0].name
    logits, features = session.run(["logits", "features"], {input_name: batch.astype(np.float32, copy=False)})
    return logits, features


def top2_gap(logits: np.ndarray) -> np.ndarray:
    """The logit margin between each row's best and second-best class."""
    top2 = np.partition(logits, -2, axis=1)[:, -2:]  # [second, best]
    return top2[:, 1] - top2[:, 0]


def run_cascade(fast, full, batch: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """The int8 copy first; the images whose top-2 logit gap is under `margin` run again in fp32.

    Int8 rounding moves the logits a little: it only changes the top class where two classes were nearly tied,
    and the build measured how near (the margin is 1.5x the widest gap at which int8 and fp32 disagreed on its
    calibration images). Clear-cut images keep the int8 answer; close calls get fp32's."""
    return run_cascade_batches(fast, full, [batch], margin)


def run_cascade_batches(fast, full, batches: Iterable[np.ndarray],
                        margin: float) -> tuple[np.ndarray, np.ndarray]:
    """run_cascade over several batches, (logits, features) of all their images in order. The close calls of
    consecutive batches wait and re-run in fp32 together, in batches as large as the input ones: fp32 on two or
    three images at a time, after every batch, used the cores poorly (2 cores, 216 crops: ~505 -> 540-580 img/s).
    Only the waiting close calls are kept, so a long stream of batches never sits in memory."""
    logits: list[np.ndarray] = []
    features: list[np.ndarray] = []
    waiting: list[tuple[int, int, np.ndarray]] = []  # (batch number, row, preprocessed image) to re-run

    def rerun() -> None:
        redo_logits, redo_features = run_model(full, np.stack([image for _, _, image in waiting]))
        for (number, row, _), new_logits, new_features in zip(waiting, redo_logits, redo_features):
            logits[number][row], features[number][row] = new_logits, new_features
        waiting.clear()

    for batch in batches:
        batch_logits, batch_features = run_model(fast, batch)
        logits.append(batch_logits)
        features.append(batch_features)
        waiting.extend((len(logits) - 1, row, batch[row]) for row in np.flatnonzero(top2_gap(batch_logits) < margin))
        if len(waiting) >= len(batch):
            rerun()
    if waiting:
        rerun()
    if not logits:
        raise ValueError("run_cascade_batches needs at least one batch")
    return np.concatenate(logits), np.concatenate(features)


def run_classifier(runtime: Runtime, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bundle's classifier on a preprocessed batch: fp32, or the int8/fp32 cascade when the build chose it."""
    return run_classifier_batches(runtime, [batch])


def run_classifier_batches(runtime: Runtime, batches: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The bundle's classifier on a stream of preprocessed batches: (logits, features) of all images, in order."""
    cascade = runtime.bundle.entry(MODEL_ID).extra.get("cascade")
    full = runtime.session(MODEL_ID, "model")
    if cascade:
        return run_cascade_batches(runtime.session(MODEL_ID, cascade["fast_file"]), full, batches,
                                   float(cascade["margin"]))
    outputs = [run_model(full, batch) for batch in batches]
    return np.concatenate([o[0] for o in outputs]), np.concatenate([o[1] for o in outputs])


def classify_images(images: Sequence[Image.Image], top_k: int = 5, runtime: Runtime | None = None,
                    batch_size: int = 8, prepared: Sequence[np.ndarray] | None = None) -> list[ImageResult]:
    """Top-k ImageNet labels, probabilities and features for each image, in input order.

    prepared: each image's preprocess_image() when already made (engine.pipeline makes them on its decode threads)."""
    if isinstance(images, Image.Image):
        raise TypeError("classify_images takes a list of images")
    runtime = runtime or get_runtime()
    if not images:
        return []
    size = max(1, batch_size)
    if prepared is not None:
        batches = (np.stack(prepared[start:start + size]) for start in range(0, len(prepared), size))
        return _classify_batches(runtime, batches, top_k)
    return _classify_chunks(runtime, (images[start:start + size] for start in range(0, len(images), size)), top_k)


def _classify_chunks(runtime: Runtime, chunks: Iterable[Sequence[Image.Image]], top_k: int) -> list[ImageResult]:
    """Classify a stream of image batches through one cascade run (close calls pooled across batches)."""
    prep = settings(runtime)
    return _classify_batches(runtime, (preprocess_batch(chunk, prep) for chunk in chunks), top_k)


def _classify_batches(runtime: Runtime, batches: Iterable[np.ndarray], top_k: int) -> list[ImageResult]:
    logits, features = run_classifier_batches(runtime, batches)
    names = class_names(runtime)
    return [ImageResult(labels=top_labels(probs, names, top_k), probs=probs, feature=feature)
            for probs, feature in zip(softmax(logits.astype(np.float32)), features.astype(np.float32))]


def top_labels(probs: np.ndarray, names: Sequence[str], top_k: int = 5) -> list[tuple[str, float]]:
    k = max(1, min(int(top_k), len(probs)))
    best = np.argpartition(-probs, k - 1)[:k]
    best = best[np.argsort(-probs[best])]
    return [(names[i] if i < len(names) else f"class {i}", float(probs[i])) for i in best]


def classify_files(paths: Sequence[Path | str], top_k: int = 5, runtime: Runtime | None = None,
                   batch_size: int = 8) -> list[ImageResult]:
    """Decode (at reduced size where the format allows) and classify image files; bad files raise InputFileError."""
    runtime = runtime or get_runtime()
    if not paths:
        return []
    min_side = int(settings(runtime)["resize"])
    size = max(1, batch_size)
    # Decoded a batch at a time, so a long list never holds every full image in memory at once.
    chunks = ([load_image(path, min_side=min_side) for path in paths[start:start + size]]
              for start in range(0, len(paths), size))
    return _classify_chunks(runtime, chunks, top_k)
