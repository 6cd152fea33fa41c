"""Reading text in images: PP-OCRv4 detection, angle classification and recognition on ONNX Runtime.

    result = read_text(Image.open("scan.png"))
    result.text            # rows in reading order, one per line
    result.lines[0].box    # four [x, y] corners in the original image's pixels
    result.lines[0].row    # pieces of one visual row (a split line, table cells) share a row number
    result.rejected        # lines read but judged not to be text (noise in a photo), each with its reason

    gate = text_presence([small_photo, small_scan])   # a cheap look at many pictures at once
    read_text(photo, presence=gate[0])                # "none": nothing run; "regions": only there; "page": all

The pipeline follows PaddleOCR / RapidOCR (rapidocr_onnxruntime 1.4.4, Apache-2.0, (c) PaddlePaddle
Authors and RapidAI); the detector post-processing, crop, classifier and CTC decoding below are ports of
that code. Every setting comes from the manifest entry's `preprocess`; the character list is the
bundle's `keys` file. The models were trained on OpenCV's BGR channel order, so images are fed as BGR.
The reference runs on OpenCV; the image geometry here is engine.geometry's numpy reproduction of it.

Four things are this app's own, each tuned on training sets of rendered documents and photographs and
reported on held-out ones by bench/bench_ocr.py (the comments at each give the figures):
- word spaces: the recogniser, trained mostly on Chinese, often drops the space between English words
  ("Totaldue:1,440.00EUR"); they are put back from the CTC alignment (`ctc_greedy_spaced`), and digits
  and letters it confuses inside a token are put right (`fix_confusions`);
- rows of a turned page are found in the page's level frame (`page_slope`), so a turned table keeps its rows;
- a line filter: in photographs the detector finds "text" in buttons, eyes and stars and the recogniser
  reads it ("O", "2000", "coiLsNg"); lines that are neither confident nor word-like are set aside
  (`judge_line`, vocabulary from the text encoder's WordPiece tokenizer);
- a text-presence gate (`text_presence`): the detector run once at a small size, which says whether to read
  a picture at all, only in some regions of it, or as a page.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import geometry
from .errors import InputFileError
from .runtime import Runtime, get_runtime

MODEL_ID = "ocr"
# The line filter's vocabulary: the text encoder's WordPiece tokenizer (bert-base-uncased, 30522 entries).
VOCABULARY_MODEL_ID = "text-encoder"


@dataclass
class OcrLine:
    text: str
    score: float
    box: list[list[float]]  # tl, tr, br, bl corners [x, y] in original image pixels
    row: int = 0  # lines with the same row number sit side by side (a split line, table columns)
    reason: str = ""  # set on rejected lines only: why the line filter judged it not to be text


@dataclass
class OcrResult:
    lines: list[OcrLine] = field(default_factory=list)
    text: str = ""  # rows top to bottom, one per line; pieces of a row joined by a space
    rejected: list[OcrLine] = field(default_factory=list)  # read, but judged noise (see judge_line)

    @staticmethod
    def of(lines: list[OcrLine], rejected: list[OcrLine] | None = None) -> "OcrResult":
        rows: dict[int, list[str]] = {}
        for line in lines:
            rows.setdefault(line.row, []).append(line.text)
        text = "\n".join(" ".join(row) for row in rows.values())
        return OcrResult(lines=lines, text=text, rejected=list(rejected or []))


@dataclass
class TextPresence:
    """What the cheap look (`text_presence`) saw in one picture.

    kind: "none" (no text: read_text runs nothing), "regions" (text in parts of the picture, e.g. a sign in a
    photo: read_text reads only `regions`, at full resolution) or "page" (a document, screenshot or scan:
    read_text reads the whole picture, as without a gate).
    """

    kind: str
    regions: list[tuple[float, float, float, float]] = field(default_factory=list)  # (left, top, right, bottom), 0..1
    coverage: float = 0.0  # share of the picture inside the text boxes the gate found
    boxes: int = 0  # how many text boxes the gate found


def read_text(image: Any, runtime: Runtime | None = None, presence: TextPresence | None = None, *,
              keep_all: bool = False, literal: bool = False) -> OcrResult:
    """Text found in an image (PIL image, or a numpy array in RGB / grey / RGBA order).

    presence: what `text_presence` said about this picture (it may have looked at a reduced copy: regions
    are relative). None or "page" reads the whole picture; "regions" runs the detector on those parts of
    the full-resolution image only (small text stays legible) and the rest of the pipeline as usual;
    "none" returns an empty result without running anything.
    keep_all: keep every line read, also those the line filter judges noise (`result.rejected` stays empty).
    literal: the recogniser's characters as it emitted them (no restored spaces, no digit/letter fixes),
    which is what RapidOCR gives (0 character errors against it on the build's verification documents,
    0.13% with the spaces and fixes); it implies keep_all.
    No text, or an empty image, gives an empty result rather than an error.
    """
    runtime = runtime or get_runtime()
    if presence is not None and presence.kind == "none":
        return OcrResult()
    settings = runtime.bundle.entry(MODEL_ID).preprocess
    bgr = to_bgr(image)
    if bgr.size == 0 or min(bgr.shape[:2]) < 2:
        return OcrResult()

    if presence is not None and presence.kind == "regions":
        boxes = detect_in_regions(bgr, presence.regions, settings, runtime)
    else:
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
    texts = recognise([crops[i] for i in order], settings["rec"], runtime, literal=literal)

    if not literal:
        texts = drop_echoes(order, texts, boxes, row_of)
    vocabulary = None if keep_all or literal else word_vocabulary(runtime)
    lines, rejected = [], []
    for index, (text, score) in zip(order, texts):
        text = text.strip()
        if text and score >= settings["text_score"]:
            # + 0.0 turns a clipped -0.0 into 0.0
            box = [[round(float(x), 1) + 0.0, round(float(y), 1) + 0.0] for x, y in boxes[index]]
            line = OcrLine(text=text, score=round(score, 4), box=box, row=row_of[index])
            reason = "" if keep_all or literal else judge_line(text, score, vocabulary)
            if reason:
                line.reason = reason
                rejected.append(line)
            else:
                lines.append(line)
    return OcrResult.of(lines, rejected)


def drop_echoes(order: list[int], texts: list[tuple[str, float]], boxes: list[np.ndarray], row_of: dict[int, int]
                ) -> list[tuple[str, float]]:
    """The detector sometimes splits one line into two boxes that overlap (unclipping grows each box), and the
    first box's end then shows the start of the second box's first word: "Total due: 1,250.00 E" + "EUR". Where
    two boxes of a row overlap and the first text ends with a word that begins the second text's first word,
    that echo is dropped from the first. (`literal` keeps the recogniser's output, as RapidOCR gives it.)"""
    texts = list(texts)
    for k in range(len(order) - 1):
        a, b = order[k], order[k + 1]
        if row_of[a] != row_of[b] or float(boxes[a][:, 0].max()) <= float(boxes[b][:, 0].min()):
            continue
        words, following = texts[k][0].split(), texts[k + 1][0].split()
        if len(words) >= 2 and following and len(words[-1]) < len(following[0]) \
                and following[0].startswith(words[-1]):
            texts[k] = (" ".join(words[:-1]), texts[k][1])
    return texts


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


REGION_DETECT_MIN_SIDE = 128
# ... and shrunk when its long side is over REGION_DETECT_MAX_SIDE: a region is mostly its text, large at reading
# resolution. 60 photos with a sign (half of them small and faded), regions from photos read at long side 2000:
# 117/128 sign lines read at every cap from no cap down to 320 px, 134 ms per photo without a cap, 99 at 640.
REGION_DETECT_MAX_SIDE = 640


def detect_in_regions(bgr: np.ndarray, regions: list[tuple[float, float, float, float]], settings: dict[str, Any],
                      runtime: Runtime) -> list[np.ndarray]:
    """Text boxes found by running `detect` on each region (relative left, top, right, bottom) of the image,
    in the whole image's pixels. The regions are cut from the image as given, so a sign that is small in a
    large photo is detected at full resolution rather than at the 2000-px limit of a whole-picture pass."""
    height, width = bgr.shape[:2]
    # A region is detected at its own resolution, enlarged only when its short side is under
    # REGION_DETECT_MIN_SIDE, not to the whole-picture pass's 736 px: a region is mostly its text, and
    # enlarged 3-5 times its lines broke into words. Measured on 60 photos with a sign: 114 of 117 sign
    # lines read at 439 ms per photo enlarged to 736 px, 117 at 131 ms at the region's own size, 117 at 139 ms
    # with small regions enlarged to 128 px (a guard for thumbnails, where a region may be a few dozen pixels).
    det = dict(settings["det"], limit_type="min", limit_side_len=REGION_DETECT_MIN_SIDE)
    settings = dict(settings, det=det, max_side_len=REGION_DETECT_MAX_SIDE)
    found = []
    for left, top, right, bottom in regions:
        x0, x1 = max(0, int(math.floor(left * width))), min(width, int(math.ceil(right * width)))
        y0, y1 = max(0, int(math.floor(top * height))), min(height, int(math.ceil(bottom * height)))
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        for box in detect(bgr[y0:y1, x0:x1], settings, runtime):
            box[:, 0] += x0
            box[:, 1] += y0
            found.append(box)
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


# Rows of a turned page are found in the page's own level frame. At a few degrees the axis-aligned bands of
# a wide row's ends no longer overlap (a timetable turned 4.7 degrees: its times fell into rows of their own
# and the page read "07:09 07:39 | Stadium 06:39 | ..."). Measured on the 40 held-out documents of
# bench/bench_ocr.py (turned -5..5 degrees): WER 0.0334 -> 0.0125 (timetables 0.080 -> 0.009, letters
# 0.058 -> 0.007), the same from a 0 to a 2-degree minimum; pages turned less than 1 degree are ordered
# exactly as before.
ROW_LEVELLING_MIN_DEGREES = 1.0


def page_slope(boxes: list[np.ndarray]) -> float:
    """The page's turn in radians (positive: lines fall to the right): the width-weighted median slope of the
    top edges of boxes at least three times as wide as high (short pieces' slopes are too noisy); 0 when
    there are none."""
    slopes, widths = [], []
    for box in boxes:
        dx, dy = float(box[1][0] - box[0][0]), float(box[1][1] - box[0][1])
        height = float(np.hypot(*(box[3] - box[0])))
        if dx > 0 and dx >= 3 * height:
            slopes.append(math.atan2(dy, dx))
            widths.append(dx)
    if not slopes:
        return 0.0
    order = np.argsort(slopes)
    cumulative = np.cumsum(np.asarray(widths)[order])
    return float(np.asarray(slopes)[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def reading_rows(boxes: list[np.ndarray], turned_page: tuple[int, int] | None = None) -> list[list[int]]:
    """Indices of `boxes` grouped into rows, rows top to bottom, each row left to right.

    A box joins a row when its vertical centre lies within the band of the row's first box and that box's
    centre within its own band: this works at any resolution (a fixed pixel tolerance does not) and
    tolerates slightly turned scans. `turned_page` (height, width) orders an upside-down page in its
    own frame. A page turned by ROW_LEVELLING_MIN_DEGREES or more is levelled first (see `page_slope`).
    """
    slope = page_slope(boxes)
    if abs(math.degrees(slope)) >= ROW_LEVELLING_MIN_DEGREES:
        cos, sin = math.cos(slope), math.sin(slope)
        # Turned back about the origin: only the boxes' relative places matter below.
        boxes = [np.stack([box[:, 0] * cos + box[:, 1] * sin, box[:, 1] * cos - box[:, 0] * sin], axis=1)
                 for box in boxes]
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


def recognise(crops: list[np.ndarray], rec: dict[str, Any], runtime: Runtime,
              literal: bool = False) -> list[tuple[str, float]]:
    """(text, confidence) for each crop, via greedy CTC decoding; word spaces restored and digit/letter
    confusions fixed unless `literal`."""
    alphabet = characters(runtime)
    texts = []
    for best, probability, space in recognition_steps(crops, rec, runtime):
        text, score = spaced_text(best, probability, space, alphabet, restore_spaces=not literal)
        texts.append((text if literal else fix_confusions(text), score))
    return texts


def recognition_steps(crops: list[np.ndarray], rec: dict[str, Any],
                      runtime: Runtime) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """For each crop, per CTC time step: the most likely class, its probability and the space's probability
    (all the decoding below needs; the full distribution is 6,625 classes a step)."""
    _, height, min_width = rec["image_shape"]
    space = len(characters(runtime)) - 1
    session = runtime.session(MODEL_ID, "rec")
    name = session.get_inputs()[0].name
    results: list[Any] = [None] * len(crops)
    for batch in _batches_by_width(crops, rec["batch_size"]):
        # The batch is as wide as its widest crop (never narrower than the trained width).
        widest = max([min_width / height] + [crops[i].shape[1] / crops[i].shape[0] for i in batch])
        width = int(height * widest)
        tensor = np.stack([_fit_width(crops[i], height, width, rec["mean"], rec["std"]) for i in batch])
        probabilities = session.run(None, {name: tensor})[0]
        for index, steps in zip(batch, probabilities):
            results[index] = (steps.argmax(axis=1), steps.max(axis=1), steps[:, space].copy())
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


# ---------------------------------------------------------------- word spaces
#
# CTC emits each character at one or a few time steps (a step is 8 px of the 48-px-high crop) and blanks
# between. Where the recogniser dropped a space, the alignment still shows it: a run of blank steps as long
# as a whole character pitch, during which the space class had some probability. Measured on the boundaries
# between consecutive characters of 100 rendered documents (bench/bench_ocr.py's training split: 5 kinds,
# 4 DejaVu faces, 18-40 px, turned 0-5 degrees), 14,947 boundaries of which 2,661 are word spaces: the
# recogniser emitted 2,493 of them itself (and 2 spaces that are not there). Of the 168 it dropped, the
# space probability between the two characters was >= 0.03 in all but 6 (median 0.24), while 99% of
# non-space boundaries stay under 0.004; and the blank gap was at least one pitch (the median step from
# one character's start to the next's) in 98%, against 14% of non-space boundaries. Both together:
# 6 spaces missed and 5 spaces wrongly inserted, out of 168 + 12,284 (thresholds from 0.005 to 0.03 all
# give 11-14 errors). Inserted spaces are never put before closing punctuation or around "@" (without
# this rule 14 spaces were wrongly inserted, 9 of them there: "Dubois|,", "office|@", "05|:43") and need
# much stronger evidence inside a number (digit, then . , : - /, then digit): 370 such boundaries in the
# documents, never a space, space probability up to 0.19 ("05:|43"). Held-out (bench/bench_ocr.py, 40 other
# documents): WER 0.113 -> 0.039 with the spaces alone (0.0125 with levelled rows, the fixes below and the
# filter), CER 0.028 -> 0.0013. Decoding a 6-line page this way costs ~1.6 ms more than plain greedy.

SPACE_MIN_PROBABILITY = 0.01  # the space class's highest probability between the two characters
SPACE_MIN_GAP = 1.0  # blank steps between the two characters, in character pitches
NUMBER_SPACE_MIN_PROBABILITY = 0.5  # inside a number ("1,440.00", "2026-0417", "10:30")
NUMBER_SPACE_MIN_GAP = 1.5
NO_SPACE_BEFORE = frozenset(",.:;!?%)]}@")
NO_SPACE_AFTER = frozenset("([{@$")
NUMBER_JOINERS = frozenset(".,:-/")


def ctc_greedy_spaced(steps: np.ndarray, alphabet: list[str]) -> tuple[str, float]:
    """ctc_greedy, with the word spaces the recogniser dropped put back (same characters and confidence
    otherwise; spaces it emitted itself are kept, never doubled)."""
    return spaced_text(steps.argmax(axis=1), steps.max(axis=1), steps[:, len(alphabet) - 1], alphabet)


def spaced_text(best: np.ndarray, best_probability: np.ndarray, space_probability: np.ndarray,
                alphabet: list[str], restore_spaces: bool = True) -> tuple[str, float]:
    """Greedy CTC text from per-step best classes, their probabilities and the space class's probability;
    `restore_spaces=False` gives exactly ctc_greedy's text and confidence."""
    space = len(alphabet) - 1
    starts = np.flatnonzero(np.r_[True, best[1:] != best[:-1]])  # first step of each run of one class
    ends = np.r_[starts[1:] - 1, len(best) - 1]
    classes = best[starts]
    emitted = classes != 0
    if not emitted.any():
        return "", 0.0
    score = float(best_probability[starts[emitted]].mean())
    if not restore_spaces:
        return "".join(alphabet[c] for c in classes[emitted] if c < len(alphabet)), score
    chars = [(int(c), int(first), int(last)) for c, first, last in zip(classes[emitted], starts[emitted], ends[emitted])
             if c < len(alphabet)]
    letter_starts = [first for c, first, _ in chars if c != space]
    # The line's character pitch in steps; a line of one or two characters has no pitch to speak of.
    pitch = float(np.median(np.diff(letter_starts))) if len(letter_starts) >= 3 else math.inf

    out: list[str] = []
    previous: tuple[int, int, int] | None = None  # the last non-space character: class, first, last step
    for cls, first, last in chars:
        if cls == space:
            if out and out[-1] != " ":
                out.append(" ")
            continue
        char = alphabet[cls]
        if previous is not None and out[-1] != " ":
            gap = first - previous[2] - 1
            between = space_probability[previous[2] + 1 : first]
            chance = float(between.max()) if len(between) else 0.0
            before = alphabet[previous[0]]
            if char in NO_SPACE_BEFORE or before in NO_SPACE_AFTER:
                pass
            elif before in NUMBER_JOINERS and len(out) >= 2 and out[-2].isdigit() and char.isdigit():
                if chance >= NUMBER_SPACE_MIN_PROBABILITY and gap >= NUMBER_SPACE_MIN_GAP * pitch:
                    out.append(" ")
            elif chance >= SPACE_MIN_PROBABILITY and gap >= SPACE_MIN_GAP * pitch:
                out.append(" ")
        out.append(char)
        previous = (cls, first, last)
    return "".join(out), score


# ---------------------------------------------------------------- digit / letter confusions
#
# The recogniser confuses 0/O and 1/l/I by shape; inside a token the other characters say which was meant.
# Measured on the 100 training documents (after restoring spaces): 14 such word errors ("INV0ICE",
# "0ctober", "1l", "3l", "INV0lCE"), WER 0.0213 -> 0.0173, no word made wrong. Held-out: 8 tokens changed,
# all 8 made right ("INV0ICE", "1,130.4l", "0ctober", "2l"). Ordinals and times with am/pm
# ("1st", "7am") keep their letters: only o/O/l/I count as digits, only 0 as a letter.

DIGIT_FOR_LETTER = {"o": "0", "O": "0", "l": "1", "I": "1"}
_TOKEN_PARTS = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)


def fix_confusions(text: str) -> str:
    """Digits read as letters inside numbers ("1,2oo.00" -> "1,200.00") and 0 read for O inside words
    ("INV0ICE" -> "INVOICE"); a lower-case l inside an upper-case word is an I."""
    return " ".join(_fix_token(token) for token in text.split(" "))


def _fix_token(token: str) -> str:
    lead, core, trail = _TOKEN_PARTS.match(token).groups()
    if not core:
        return token
    digits = sum(c.isdigit() for c in core)
    letters = sum(c.isalpha() for c in core)
    confusable = sum(c in DIGIT_FOR_LETTER for c in core)
    if digits and confusable and letters == confusable:
        # A number with a few letters that look like digits.
        core = "".join(DIGIT_FOR_LETTER.get(c, c) for c in core)
    elif digits and digits == core.count("0") and letters >= 2 and core.replace("0", "").isalpha():
        # A word with zeros in it: an upper-case word, or the start of a word, takes O; otherwise o.
        upper = sum(c.isupper() for c in core) * 2 > letters
        core = "".join(("O" if upper or i == 0 else "o") if c == "0" else c for i, c in enumerate(core))
    others = [c for c in core if c != "l"]
    if "l" in core and len(others) >= 2 and all(c.isupper() for c in others):
        core = core.replace("l", "I")
    return lead + core + trail


# ---------------------------------------------------------------- line filter
#
# Photographs without text still give the detector shapes to box (eyes, buttons, stars, fur), and the
# recogniser reads them: "D", "O", "2000", "★", "coiLsNg". Tuned on every line (confidence >= 0.5) read in
# 205 photographs (200 random crops of scikit-image's astronaut, chelsea, coffee, rocket and camera at
# 0.3-6 Mpx, and the five whole ones): 45 of them gave 63 noise lines, plus 11 correct readings of the
# astronaut's mission patch ("HAWLEY": real text, if small); against 1,717 real lines: 869 from 100 rendered
# documents, 425 from 200 photos with a sign pasted in, 423 from 200 with a small, faded, blurred sign.
# Confidence separates most of it: real lines 0.70 at the lowest (1st percentile 0.90), noise lines median
# 0.56, 95th percentile 0.80. The rest is shape: one character ("M" 0.90, "E" 0.83), a symbol ("★" 0.95),
# a number read off round things ("00" 0.73), letter soup. The thresholds below keep all 1,717 real lines
# and leave 8 of the 205 photos with text (3.9%), 7 of them a correct "HAWLEY" and one "AWLEY" (0.92);
# a minimum confidence of 0.6 leaves 12 photos, 0.7 leaves 6 but loses a real line (0.697).
# Held-out (bench/bench_ocr.py: 205 other photos, 40 other documents, 100 other sign photos): photos with any
# text 48 (23.4%) -> 9 (4.4%), 8 of them only names off the astronaut's patch, the ninth "HAWLEY" plus "AM";
# real lines kept: 360 of 360 document lines, 214 of 214 sign lines. Behind the gate: no photo has text left.
# The vocabulary loads once per tokenizer file (~60 ms); judging a line costs microseconds.


@dataclass(frozen=True)
class Vocabulary:
    """Whole words and word-continuation pieces of a WordPiece vocabulary, lower case, letters only."""

    words: frozenset[str]
    pieces: frozenset[str]

    def pieces_in(self, word: str) -> int | None:
        """How many vocabulary pieces WordPiece splits `word` into (longest match first, as BERT's
        tokenizer does); None when some part matches nothing."""
        word = word.lower()
        count = start = 0
        while start < len(word):
            table = self.words if start == 0 else self.pieces
            end = len(word)
            while end > start and word[start:end] not in table:
                end -= 1
            if end == start:
                return None
            count += 1
            start = end
        return count


_vocabulary_cache: dict[str, Vocabulary] = {}
_vocabulary_lock = threading.Lock()


def word_vocabulary(runtime: Runtime) -> Vocabulary | None:
    """The text encoder's WordPiece vocabulary, loaded once per tokenizer file; None when the bundle has no
    text encoder (the line filter then judges by confidence and character shape alone)."""
    if VOCABULARY_MODEL_ID not in runtime.bundle:
        return None
    path = runtime.bundle.path(VOCABULARY_MODEL_ID, "tokenizer")
    key = str(path)
    with _vocabulary_lock:
        if key not in _vocabulary_cache:
            from tokenizers import Tokenizer

            entries = Tokenizer.from_file(key).get_vocab()
            words = frozenset(token for token in entries if token.isalpha())
            pieces = frozenset(token[2:] for token in entries if token.startswith("##") and token[2:].isalpha())
            _vocabulary_cache[key] = Vocabulary(words=words, pieces=pieces)
        return _vocabulary_cache[key]


FILTER_MIN_CONFIDENCE = 0.65  # below: rejected whatever it says
FILTER_SURE_CONFIDENCE = 0.9  # from here: kept unless it is one character or has no letters or digits
FILTER_MIN_WORD_SHARE = 0.3  # in between: kept when at least this share of its letters is in word-like words
FILTER_NUMBER_CONFIDENCE = 0.8  # a line with no words (numbers, codes) needs this confidence
MAX_PIECES_PER_LETTER = 0.34  # a word not in the vocabulary is word-like up to one piece per three letters

_NUMBER = re.compile(r"^[(\[]?[+\-$€£¥#~]?\d[\d.,:/\-]*(%|°|[^\W\d_]{1,3})?[)\].,;:]?$")
_EMAIL = re.compile(r"^[\w.+\-]+@[\w\-]+(\.[\w\-]+)+[.,;]?$")
_LETTER_RUNS = re.compile(r"[^\W\d_]+")
_REPEATED_LETTER = re.compile(r"([^\W\d_])\1\1", re.IGNORECASE)


def judge_line(text: str, score: float, vocabulary: Vocabulary | None) -> str:
    """Why a recognised line is not text (a short reason), or "" when it passes."""
    chars = text.replace(" ", "")
    if not any(c.isalnum() for c in chars):
        return "no letters or digits"
    if len(chars) == 1:
        return "a single character"
    if score < FILTER_MIN_CONFIDENCE:
        return f"low confidence {score:.2f}"
    share = word_share(text, vocabulary)
    if share is None:
        if score < FILTER_NUMBER_CONFIDENCE:
            return f"no words, confidence {score:.2f}"
        return ""
    if score < FILTER_SURE_CONFIDENCE and share < FILTER_MIN_WORD_SHARE:
        return "not word-like"
    return ""


def word_share(text: str, vocabulary: Vocabulary | None) -> float | None:
    """The share of a line's letters (in words of two letters or more) that belong to word-like words;
    None when it has no such words (numbers, codes, single letters).

    Word-like: a whole vocabulary word, or a word WordPiece splits into few pieces (names such as
    "Lindqvist": 3 pieces for 9 letters); not when a letter repeats three times ("AAAARA") or the case
    changes inside the word ("coiLsNg"). E-mail addresses count as words; numbers, dates, prices and phone
    numbers are left out of the share, so they pass on a line of words.
    """
    good = total = 0
    for token in text.split():
        if _EMAIL.match(token):
            letters = sum(c.isalpha() for c in token)
            good, total = good + letters, total + letters
            continue
        if _NUMBER.match(token):
            continue
        for word in _LETTER_RUNS.findall(token):
            if len(word) < 2:
                continue
            total += len(word)
            if _REPEATED_LETTER.search(word):
                continue
            if not (word.islower() or word.isupper() or (word[0].isupper() and word[1:].islower())):
                continue
            if vocabulary is None:
                good += len(word)  # no vocabulary: shape alone
                continue
            pieces = vocabulary.pieces_in(word)
            if pieces is not None and (pieces == 1 or pieces / len(word) <= MAX_PIECES_PER_LETTER):
                good += len(word)
    return good / total if total else None


# ---------------------------------------------------------------- text-presence gate
#
# A whole-picture detector pass on a 6 Mpx photo (long side 2000) takes ~0.7 s, and most photos have no text.
# The gate runs the same detector once on the picture shrunk to long side GATE_SIDE. Cost per picture on
# 2 cores (quiet machine, batch of one): 320 px ~20 ms, 384 ~25, 448 ~32-41, 512 ~55. Batching pictures was
# slower per picture on CPU (448 px: 43 ms one at a time, 49 in fours, 74 in eights: ONNX Runtime allocates
# each run's activations afresh, this model's memory arena being off); pictures one at a time, one per core at
# once, on one thread each, are fastest (Runtime.run_each).
# A text box is one of the detector's own boxes at least GATE_MIN_ASPECT times as long as high: the blobs it
# boxes in photos (an eye, a button, a star) are near square (aspect 1.1-1.5), text lines are not (signs
# 1.75 at the least, 5th percentile 3.6). Share of pictures with a text box, tuning sets, by size:
#   size  documents*  signs 20-50% wide  small faded signs 12-30%  plain photos (205)
#   384   100%        99.0%              72%                       2.0%
#   448   100%        99.5%              84%                       3.9%
#   512   100%        100%               89%                       10.7%
#   640   100%        100%               97%                       11.2%
#   (* 40 documents at 0.5-3 Mpx and 12 dense pages of 25-45 lines at 16-25 px; at 320 px, 96%)
# 448 keeps the cost near 40 ms while signs of a fifth of the picture's width or more are all found; a sign
# smaller and fainter than that is missed one time in six (`side` can be raised where that matters).
# "page" vs "regions": documents had 6 text boxes or more spanning 46% of the picture or more, signs at
# most 3 boxes spanning at most 20%. Regions: each box grown by REGION_MARGIN of its heights on every side
# (at the gate's size a sign's other lines are often too faint to box): 2 -> 3 heights read 210 -> 212
# of 213 sign lines for 13% more time.
# Held-out (bench/bench_ocr.py; pictures reduced to long side 768, 2 threads): (a) 38-41 ms per picture;
# (b) 50 of 50 documents (0.5-3 Mpx, dense pages included) judged "page"; (c) 95 of 100 photos with a sign
# judged "regions": 49 of 50 signs 20-50% wide (the miss, three lines 22% wide whose text is 5 px high at
# 448 px, is found at 512) and 46 of 50 small faded ones; sign lines read through the gate 110/113 and
# 92/100, against 113/113 and 100/100 without it; (d) of 205 plain photos 200 judged "none", 4 "regions",
# 1 "page", and after the line filter none has text left. Reading time after the gate: plain photos 579 ms
# -> 2 ms, photos with a sign 717 -> 124 ms (their regions detected at their own size).

GATE_SIDE = 448  # the picture's long side for the gate's detector pass
# The page check (`page_check`): whether a picture is a page of text (a document, a scan, a screenshot), at a
# side small enough that only a page's many lines show. Measured on 30 held-out documents, 60 photo crops and
# 40 photos with a pasted sign (pictures at long side 768): at 192 px 30/30 documents "page", no photo and no
# sign "page"; at 160 px 29/30 documents; at 128 px 20/30. 4.4 ms a picture on 2 cores (448 px: 20 ms).
PAGE_SIDE = 192
GATE_MIN_ASPECT = 2.0  # a text box is at least twice as long as it is high
PAGE_MIN_BOXES = 4  # "page": at least this many text boxes ...
PAGE_MIN_SPAN = 0.25  # ... spread over at least this share of the picture (their bounding rectangle)
REGION_MARGIN = 3.0  # a region is its text box grown by this many box heights on every side ...
REGION_MIN_MARGIN = 0.03  # ... and at least this share of the picture's long side
REGIONS_MAX_SHARE = 0.5  # regions covering more of the picture than this are read as a page


def text_presence(images: list[Any], runtime: Runtime | None = None, side: int = GATE_SIDE,
                  prepared: list[np.ndarray | None] | None = None) -> list[TextPresence]:
    """For each picture, whether it has text and where: the OCR detector run once at a small size (long side
    `side`), the pictures shared out over the cores (Runtime.run_each).

    The pictures may be reduced copies (the gate needs only `side` pixels); regions are relative (0..1), so
    they apply to the full-resolution picture given to `read_text` afterwards. prepared: each picture's
    gate_picture(image, side), when the caller has made them already.

    Measured on held-out pictures at 448 px (bench/bench_ocr.py): (b) documents judged "page": 50 of 50;
    (c) photos with a pasted sign judged "regions" or "page": 49 of 50 signs 20-50% of the width, 46 of 50 small
    faded ones, their lines read through the gate 202/213 against 213/213 without it; (d) plain photos: 5 of 205
    judged "regions"/"page", none with text after the line filter. A photo without text then costs the gate
    (about 20 ms on 2 cores) instead of ~0.6 s of reading.
    """
    runtime = runtime or get_runtime()
    det = runtime.bundle.entry(MODEL_ID).preprocess["det"]
    name = runtime.session(MODEL_ID, "det").get_inputs()[0].name
    multiple = det["size_multiple"]
    pictures = prepared if prepared is not None else [gate_picture(image, side) for image in images]
    black = (0.0 - np.asarray(det["mean"], np.float32)) / np.asarray(det["std"], np.float32)
    feeds, fed = [], []
    for index, picture in enumerate(pictures):
        if picture is None:
            continue
        height, width = picture.shape[:2]
        tensor = np.empty((1, 3, -(-height // multiple) * multiple, -(-width // multiple) * multiple), np.float32)
        tensor[:] = black[:, None, None]  # padding reads as black, as in the whole-picture pass
        tensor[0, :, :height, :width] = _normalise(picture, det["mean"], det["std"])
        feeds.append({name: tensor})
        fed.append(index)
    found = [TextPresence(kind="none") for _ in pictures]
    for index, (probability,) in zip(fed, runtime.run_each(MODEL_ID, "det", feeds)):
        height, width = pictures[index].shape[:2]
        found[index] = _presence(_gate_boxes(probability[0, 0, :height, :width], det), height, width)
    return found


def page_check(images: list[Any], runtime: Runtime | None = None,
               prepared: list[np.ndarray | None] | None = None) -> list[bool]:
    """For each picture, whether it is a page of text (PAGE_SIDE): what makes a picture a document."""
    return [found.kind == "page" for found in text_presence(images, runtime, PAGE_SIDE, prepared)]


def gate_picture(image: Any, side: int) -> np.ndarray | None:
    """The picture as BGR with its long side `side` (None when empty). PIL images are shrunk by PIL first
    (fast, and it averages pixels, which keeps small text visible better than point sampling)."""
    from PIL import Image

    if isinstance(image, Image.Image) and image.mode in ("RGB", "L", "RGBA", "LA") and max(image.size) > side:
        scale = side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.BILINEAR, reducing_gap=2.0)
    bgr = to_bgr(image)
    height, width = bgr.shape[:2]
    if bgr.size == 0 or min(height, width) < 2:
        return None
    if max(height, width) != side:
        scale = side / max(height, width)
        bgr = geometry.resize_linear(bgr, max(1, round(width * scale)), max(1, round(height * scale)))
    return bgr


def _gate_boxes(probability: np.ndarray, det: dict[str, Any]) -> list[tuple[float, float, float, float, float]]:
    """Axis-aligned rectangles (left, top, right, bottom, thickness, in the map's pixels) of the text-shaped boxes:
    the detector's own thresholds, then only boxes at least GATE_MIN_ASPECT times as long as high."""
    mask = probability > det["thresh"]
    if det["use_dilation"]:
        mask = geometry.grow_2x2(mask)
    rectangles = []
    for hull in geometry.outline_hulls(mask)[: det["max_candidates"]]:
        points, short_side = _min_box(hull)
        if short_side < det["min_size"]:
            continue
        long_side = max(float(np.linalg.norm(points[0] - points[1])), float(np.linalg.norm(points[1] - points[2])))
        if long_side < GATE_MIN_ASPECT * short_side or _mean_inside(probability, points) < det["box_thresh"]:
            continue
        rectangles.append((float(points[:, 0].min()), float(points[:, 1].min()),
                           float(points[:, 0].max()), float(points[:, 1].max()), short_side))
    return rectangles


def _presence(boxes: list[tuple[float, float, float, float, float]], height: int, width: int) -> TextPresence:
    if not boxes:
        return TextPresence(kind="none")
    area = float(height * width)
    coverage = min(1.0, sum((r - l) * (b - t) for l, t, r, b, _ in boxes) / area)
    span_w = max(b[2] for b in boxes) - min(b[0] for b in boxes)
    span_h = max(b[3] for b in boxes) - min(b[1] for b in boxes)
    span = span_w * span_h / area
    if len(boxes) >= PAGE_MIN_BOXES and span >= PAGE_MIN_SPAN:
        return TextPresence(kind="page", coverage=coverage, boxes=len(boxes))
    floor = REGION_MIN_MARGIN * max(height, width)
    regions = []
    for left, top, right, bottom, thickness in boxes:
        margin = max(REGION_MARGIN * thickness, floor)
        regions.append((max(0.0, (left - margin) / width), max(0.0, (top - margin) / height),
                        min(1.0, (right + margin) / width), min(1.0, (bottom + margin) / height)))
    regions = _merge_overlapping(regions)
    if sum((r - l) * (b - t) for l, t, r, b in regions) > REGIONS_MAX_SHARE:
        return TextPresence(kind="page", coverage=coverage, boxes=len(boxes))
    return TextPresence(kind="regions", regions=[tuple(round(v, 4) for v in r) for r in regions],
                        coverage=coverage, boxes=len(boxes))


def _merge_overlapping(rectangles: list[tuple[float, float, float, float]]) -> list[tuple[float, float, float, float]]:
    """Rectangles that overlap joined into their bounding rectangle, until none overlap (so no text is
    detected twice)."""
    merged = list(rectangles)
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                a, b = merged[i], merged[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    merged[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    return sorted(merged, key=lambda r: (r[1], r[0]))
