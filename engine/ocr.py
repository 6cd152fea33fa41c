"""Reading text in images: PP-OCRv4 detection, angle classification and recognition on ONNX Runtime.

    result = read_text(Image.open("scan.png"))
    result.text            # rows in reading order, one per line
    result.lines[0].box    # four [x, y] corners in the original image's pixels
    result.lines[0].row    # pieces of one visual row (a split line, table cells) share a row number

The pipeline follows PaddleOCR / RapidOCR (rapidocr_onnxruntime 1.4.4, Apache-2.0, (c) PaddlePaddle
Authors and RapidAI); the detector post-processing, crop, classifier and CTC decoding below are ports of
that code. Every setting comes from the manifest entry's `preprocess`; the character list is the
bundle's `keys` file. The models were trained on OpenCV's BGR channel order, so images are fed as BGR.
The reference runs on OpenCV; the image geometry here is engine.geometry's numpy reproduction of it.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import geometry
from .errors import InputFileError
from .runtime import Runtime, get_runtime

MODEL_ID = "ocr"


@dataclass
class OcrLine:
    text: str
    score: float
    box: list[list[float]]  # tl, tr, br, bl corners [x, y] in original image pixels
    row: int = 0  # lines with the same row number sit side by side (a split line, table columns)


@dataclass
class OcrResult:
    lines: list[OcrLine] = field(default_factory=list)
    text: str = ""  # rows top to bottom, one per line; pieces of a row joined by a space

    @staticmethod
    def of(lines: list[OcrLine]) -> "OcrResult":
        rows: dict[int, list[str]] = {}
        for line in lines:
            rows.setdefault(line.row, []).append(line.text)
        return OcrResult(lines=lines, text="\n".join(" ".join(row) for row in rows.values()))


def read_text(image: Any, runtime: Runtime | None = None) -> OcrResult:
    """Text found in an image (PIL image, or a numpy array in RGB / grey / RGBA order).

    No text, or an empty image, gives an empty result rather than an error.
    """
    runtime = runtime or get_runtime()
    settings = runtime.bundle.entry(MODEL_ID).preprocess
    bgr = to_bgr(image)
    if bgr.size == 0 or min(bgr.shape[:2]) < 2:
        return OcrResult()

    boxes = detect(bgr, settings, runtime)
    if not boxes:
        return OcrResult()
    crops = [crop_box(bgr, box) for box in boxes]
    crops, flipped = fix_upside_down(crops, settings["cls"], runtime)
    # When most lines were upside down the page is, too: read it in its own frame, bottom-up, right to left.
    upside_down = sum(flipped) * 2 > len(flipped)
    rows = reading_rows(boxes, bgr.shape[:2] if upside_down else None)
    order = [index for row in rows for index in row]
    row_of = {index: number for number, row in enumerate(rows) for index in row}
    texts = recognise([crops[i] for i in order], settings["rec"], runtime)

    lines = []
    for index, (text, score) in zip(order, texts):
        text = text.strip()
        if text and score >= settings["text_score"]:
            # + 0.0 turns a clipped -0.0 into 0.0
            box = [[round(float(x), 1) + 0.0, round(float(y), 1) + 0.0] for x, y in boxes[index]]
            lines.append(OcrLine(text=text, score=round(score, 4), box=box, row=row_of[index]))
    return OcrResult.of(lines)


# ---------------------------------------------------------------- input

def to_bgr(image: Any) -> np.ndarray:
    """A 3-channel uint8 BGR array; alpha is flattened onto white (transparent areas read as paper)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            image = image.convert("RGBA")
        elif image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            pass  # 16-bit and float scans: scaled to 8 bits below (PIL's own convert would clip them to white)
        elif image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        array = np.asarray(image)
    elif isinstance(image, np.ndarray):
        array = image
    else:
        raise InputFileError("image", f"cannot read text from a {type(image).__name__}; give a picture")

    array = _as_uint8(array)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise InputFileError("image", f"an image array must be H x W (x 1-4 channels), got shape {array.shape}")
    channels = array.shape[2]
    if channels in (2, 4):
        colour, alpha = array[:, :, :-1].astype(np.float32), array[:, :, -1:].astype(np.float32) / 255.0
        array = (colour * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[:, :, ::-1])


def _as_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        # Floats in [0, 1] are the usual convention (scikit-image); larger values are taken as 0-255.
        peak = float(np.nanmax(array)) if array.size else 0.0
        scale = 255.0 if peak <= 1.0 else 1.0
        return np.clip(np.nan_to_num(array) * scale + 0.5, 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        peak = int(array.max()) if array.size else 0
        if peak > 255:  # 16-bit scans
            return (array.astype(np.float64) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
        return np.clip(array, 0, 255).astype(np.uint8)
    raise InputFileError("image", f"unsupported pixel type {array.dtype}")


# ---------------------------------------------------------------- detection

def detect(bgr: np.ndarray, settings: dict[str, Any], runtime: Runtime) -> list[np.ndarray]:
    """Text boxes (4x2 float arrays, clockwise from top-left) in the original image's pixels."""
    det = settings["det"]
    height, width = bgr.shape[:2]
    # Very large images are shrunk first (detection cost grows with pixels, and text stays legible
    # at 2000 px); tiny ones are enlarged so the network's 32-px stride still sees them.
    scaled, scale_y, scale_x = _fit_sides(bgr, settings["max_side_len"], settings["min_side_len"], det["size_multiple"])
    # A short, wide strip (a single line) is padded top and bottom: DB needs context around the text.
    scaled, pad_top = _letterbox(scaled, settings["min_height"], settings["width_height_ratio"])

    tensor = _det_input(scaled, det)
    session = runtime.session(MODEL_ID, "det")
    probability = session.run(None, {session.get_inputs()[0].name: tensor})[0][0, 0]
    boxes = _db_boxes(probability, det, dest_w=scaled.shape[1], dest_h=scaled.shape[0])

    found = []
    for box in boxes:
        box = _order_clockwise(box)
        box[:, 0] = np.clip(np.floor(box[:, 0]), 0, scaled.shape[1] - 1)
        box[:, 1] = np.clip(np.floor(box[:, 1]), 0, scaled.shape[0] - 1)
        if int(np.linalg.norm(box[0] - box[1])) <= 3 or int(np.linalg.norm(box[0] - box[3])) <= 3:
            continue
        box[:, 1] -= pad_top
        box[:, 0] *= scale_x
        box[:, 1] *= scale_y
        box[:, 0] = np.clip(box[:, 0], 0, width)
        box[:, 1] = np.clip(box[:, 1], 0, height)
        found.append(box.astype(np.float32))
    return found


def _fit_sides(image: np.ndarray, max_side: int, min_side: int, multiple: int) -> tuple[np.ndarray, float, float]:
    """Resize so the long side is <= max_side, or else the short side >= min_side (sides rounded to `multiple`).

    Returns the image and the factors that map its coordinates back to the original.
    """
    height, width = image.shape[:2]
    ratio = 1.0
    if max(height, width) > max_side:
        ratio = max_side / max(height, width)
    elif min(height, width) < min_side:
        ratio = min_side / min(height, width)
    if ratio == 1.0:
        return image, 1.0, 1.0
    new_h = max(multiple, int(round(int(height * ratio) / multiple) * multiple))
    new_w = max(multiple, int(round(int(width * ratio) / multiple) * multiple))
    return geometry.resize_linear(image, new_w, new_h), height / new_h, width / new_w


def _letterbox(image: np.ndarray, min_height: int, max_ratio: float) -> tuple[np.ndarray, int]:
    height, width = image.shape[:2]
    too_wide = max_ratio > 0 and width / height > max_ratio
    if height > min_height and not too_wide:
        return image, 0
    target = max(int(width / max_ratio) if max_ratio > 0 else 0, min_height) * 2
    pad = int(abs(target - height) / 2)
    return np.pad(image, ((pad, pad), (0, 0), (0, 0))), pad  # black bands


def _det_input(image: np.ndarray, det: dict[str, Any]) -> np.ndarray:
    """The detector's input: scaled per `limit_type`, sides rounded to the network's stride multiple."""
    height, width = image.shape[:2]
    limit = det["limit_side_len"]
    if det["limit_type"] == "max":
        ratio = limit / max(height, width) if max(height, width) > limit else 1.0
    else:
        ratio = limit / min(height, width) if min(height, width) < limit else 1.0
    multiple = det["size_multiple"]
    net_h = max(multiple, int(round(int(height * ratio) / multiple) * multiple))
    net_w = max(multiple, int(round(int(width * ratio) / multiple) * multiple))
    resized = geometry.resize_linear(image, net_w, net_h)
    return _normalise(resized, det["mean"], det["std"])[None]


def _normalise(image: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """HWC uint8 -> CHW float32, (x/255 - mean) / std."""
    scaled = image.astype(np.float32) * np.float32(1.0 / 255.0)
    scaled = (scaled - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(scaled.transpose(2, 0, 1))


def _db_boxes(probability: np.ndarray, det: dict[str, Any], dest_w: int, dest_h: int) -> list[np.ndarray]:
    """Differentiable Binarization post-processing: threshold, outlines, score, expand ("unclip")."""
    if det["score_mode"] != "fast":
        # The "slow" mode scores the traced outline itself, which only OpenCV's contour tracing gives.
        raise ValueError(f"the OCR model's settings ask for score_mode {det['score_mode']!r}; only 'fast' is supported")
    mask = probability > det["thresh"]
    if det["use_dilation"]:
        # A 2x2 dilation joins characters whose gaps the threshold opened up.
        mask = geometry.grow_2x2(mask)
    height, width = mask.shape
    # The reference traces contours and takes each one's minimum-area rectangle, which depends only on
    # the contour's convex hull: the hulls are computed directly.
    min_size = det["min_size"]
    boxes = []
    for hull in geometry.outline_hulls(mask)[: det["max_candidates"]]:
        points, short_side = _min_box(hull)
        if short_side < min_size:
            continue
        score = _mean_inside(probability, points)
        if score < det["box_thresh"]:
            continue
        expanded = _unclip(points, det["unclip_ratio"])
        if expanded is None:
            continue
        box, short_side = _min_box(expanded)
        if short_side < min_size + 2:
            continue
        box[:, 0] = np.clip(np.round(box[:, 0] / width * dest_w), 0, dest_w)
        box[:, 1] = np.clip(np.round(box[:, 1] / height * dest_h), 0, dest_h)
        boxes.append(box.astype(np.float32))
    return boxes


def _min_box(contour: np.ndarray) -> tuple[np.ndarray, float]:
    """The minimum-area rectangle as tl, tr, br, bl corners, and its short side."""
    corners, side_a, side_b = geometry.min_area_rect(contour.reshape(-1, 2))
    points = sorted(corners.tolist(), key=lambda p: p[0])
    # Ties in y keep the x-sorted order, as the reference implementation does.
    top_left, bottom_left = (points[0], points[1]) if points[1][1] > points[0][1] else (points[1], points[0])
    top_right, bottom_right = (points[2], points[3]) if points[3][1] > points[2][1] else (points[3], points[2])
    return np.array([top_left, top_right, bottom_right, bottom_left], np.float32), min(side_a, side_b)


def _mean_inside(probability: np.ndarray, polygon: np.ndarray) -> float:
    height, width = probability.shape
    xmin = int(np.clip(np.floor(polygon[:, 0].min()), 0, width - 1))
    xmax = int(np.clip(np.ceil(polygon[:, 0].max()), 0, width - 1))
    ymin = int(np.clip(np.floor(polygon[:, 1].min()), 0, height - 1))
    ymax = int(np.clip(np.ceil(polygon[:, 1].max()), 0, height - 1))
    shifted = polygon - np.array([xmin, ymin], np.float32)
    mask = geometry.polygon_mask(shifted.astype(np.int32), ymax - ymin + 1, xmax - xmin + 1)
    inside = probability[ymin : ymax + 1, xmin : xmax + 1][mask]
    return float(inside.mean()) if inside.size else 0.0


def _unclip(box: np.ndarray, ratio: float) -> np.ndarray | None:
    """Grow the shrunk text kernel back to the full text area by area * ratio / perimeter."""
    import pyclipper

    area = geometry.polygon_area(box)
    perimeter = geometry.polygon_perimeter(box)
    if perimeter <= 0:
        return None
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    paths = offset.Execute(area * ratio / perimeter)
    if len(paths) != 1:  # the reference reshapes all paths into one; several paths mean a degenerate box
        return None
    return np.array(paths[0], np.float32).reshape(-1, 1, 2)


def _order_clockwise(points: np.ndarray) -> np.ndarray:
    by_x = points[np.argsort(points[:, 0], kind="stable")]
    left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    return np.array([left[0], right[0], right[1], left[1]], np.float32)


# ---------------------------------------------------------------- reading order

def reading_order(boxes: list[np.ndarray], turned_page: tuple[int, int] | None = None) -> list[int]:
    """Indices of `boxes` top to bottom, then left to right; boxes on the same row stay together."""
    return [index for row in reading_rows(boxes, turned_page) for index in row]


def reading_rows(boxes: list[np.ndarray], turned_page: tuple[int, int] | None = None) -> list[list[int]]:
    """Indices of `boxes` grouped into rows, rows top to bottom, each row left to right.

    A box joins a row when its vertical centre lies within the band of the row's first box and that box's
    centre within its own band: this works at any resolution (a fixed pixel tolerance does not) and
    tolerates slightly turned scans. `turned_page` (height, width) orders an upside-down page in its
    own frame.
    """
    spans = []
    for box in boxes:
        ys, xs = box[:, 1], box[:, 0]
        top, bottom, left = float(ys.min()), float(ys.max()), float(xs.min())
        if turned_page is not None:
            height, width = turned_page
            top, bottom, left = height - bottom, height - top, width - float(xs.max())
        spans.append((top, bottom, left))

    rows: list[list[int]] = []
    for index in sorted(range(len(boxes)), key=lambda i: (spans[i][0], spans[i][2])):
        top, bottom, _ = spans[index]
        centre = (top + bottom) / 2
        for row in rows:
            a_top, a_bottom, _ = spans[row[0]]
            if a_top <= centre <= a_bottom and top <= (a_top + a_bottom) / 2 <= bottom:
                row.append(index)
                break
        else:
            rows.append([index])
    return [sorted(row, key=lambda i: spans[i][2]) for row in rows]


# ---------------------------------------------------------------- crops

def crop_box(bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The box's content straightened to an upright rectangle (tall crops are taken as vertical text)."""
    crop_w = int(max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3])))
    crop_h = int(max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2])))
    crop_w, crop_h = max(crop_w, 1), max(crop_h, 1)
    target = np.array([[0, 0], [crop_w, 0], [crop_w, crop_h], [0, crop_h]], np.float32)
    matrix = geometry.perspective_matrix(box.astype(np.float32), target)
    crop = geometry.warp_perspective_cubic(bgr, matrix, crop_w, crop_h)
    if crop.shape[0] / crop.shape[1] >= 1.5:
        crop = np.rot90(crop)
    return crop


# ---------------------------------------------------------------- angle classifier

def fix_upside_down(crops: list[np.ndarray], cls: dict[str, Any], runtime: Runtime) -> tuple[list[np.ndarray], list[bool]]:
    """Turn crops the classifier is confident are upside down by 180 degrees; also say which were turned."""
    _, height, width = cls["image_shape"]
    session = runtime.session(MODEL_ID, "cls")
    name = session.get_inputs()[0].name
    flipped_label = cls["labels"].index("180")
    out, flipped = list(crops), [False] * len(crops)
    for batch in _batches_by_width(crops, cls["batch_size"]):
        tensor = np.stack([_fit_width(crops[i], height, width, cls["mean"], cls["std"]) for i in batch])
        probabilities = session.run(None, {name: tensor})[0]
        for index, row in zip(batch, probabilities):
            label = int(np.argmax(row))
            if label == flipped_label and float(row[label]) > cls["thresh"]:
                out[index] = np.ascontiguousarray(crops[index][::-1, ::-1])
                flipped[index] = True
    return out, flipped


def _batches_by_width(crops: list[np.ndarray], size: int) -> list[list[int]]:
    """Indices grouped by aspect ratio, so each batch pads little."""
    order = np.argsort([c.shape[1] / c.shape[0] for c in crops], kind="stable").tolist()
    return [order[i : i + size] for i in range(0, len(order), max(1, size))]


def _fit_width(crop: np.ndarray, height: int, width: int, mean: list[float], std: list[float]) -> np.ndarray:
    """Resize to `height`, keep the aspect ratio up to `width`, pad the right with zeros."""
    resized_w = min(width, int(math.ceil(height * crop.shape[1] / crop.shape[0])))
    resized_w = max(1, resized_w)
    resized = geometry.resize_linear(crop, resized_w, height)
    padded = np.zeros((3, height, width), np.float32)
    padded[:, :, :resized_w] = _normalise(resized, mean, std)
    return padded


# ---------------------------------------------------------------- recognition

_keys_cache: dict[str, list[str]] = {}
_keys_lock = threading.Lock()


def characters(runtime: Runtime) -> list[str]:
    """The CTC alphabet: blank, the dictionary, then space (the order the recogniser was trained with)."""
    path = runtime.bundle.path(MODEL_ID, "keys")
    key = str(path)
    with _keys_lock:
        if key not in _keys_cache:
            keys = path.read_text(encoding="utf-8").split("\n")
            _keys_cache[key] = ["<blank>", *keys, " "]
        return _keys_cache[key]


def recognise(crops: list[np.ndarray], rec: dict[str, Any], runtime: Runtime) -> list[tuple[str, float]]:
    """(text, confidence) for each crop, via greedy CTC decoding."""
    _, height, min_width = rec["image_shape"]
    alphabet = characters(runtime)
    session = runtime.session(MODEL_ID, "rec")
    name = session.get_inputs()[0].name
    results: list[tuple[str, float]] = [("", 0.0)] * len(crops)
    for batch in _batches_by_width(crops, rec["batch_size"]):
        # The batch is as wide as its widest crop (never narrower than the trained width).
        widest = max([min_width / height] + [crops[i].shape[1] / crops[i].shape[0] for i in batch])
        width = int(height * widest)
        tensor = np.stack([_fit_width(crops[i], height, width, rec["mean"], rec["std"]) for i in batch])
        probabilities = session.run(None, {name: tensor})[0]
        for index, steps in zip(batch, probabilities):
            results[index] = ctc_greedy(steps, alphabet)
    return results


def ctc_greedy(steps: np.ndarray, alphabet: list[str]) -> tuple[str, float]:
    """Best class per time step, repeats merged, blanks (index 0) dropped; confidence = mean kept probability."""
    best = steps.argmax(axis=1)
    keep = np.ones(len(best), dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    keep &= best != 0
    if not keep.any():
        return "", 0.0
    text = "".join(alphabet[i] for i in best[keep] if i < len(alphabet))
    return text, float(steps.max(axis=1)[keep].mean())
