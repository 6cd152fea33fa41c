"""Scene understanding: what objects are where (NanoDet-m, COCO-80) and which pixels are a person
(MediaPipe selfie segmentation), both on ONNX Runtime and both batched.

    found = detect([image])[0]          # [Detection(label="person", score=0.74, box=[x1, y1, x2, y2]), ...]
    mask = segment([image])[0]          # float32 [H, W] person probability at the image's own size

Boxes and masks are in the pixels of the image passed in; images loaded with engine.imaging.load_image are
already upright (EXIF orientation applied), so a phone photo's boxes land on what a person sees.
Every setting (input size, resize mode, channel order, mean/std, strides, bins, thresholds, output names)
comes from the manifest entries' `preprocess`: the code here is the same for any detector of this family.

NanoDet decodes as in its GFL head: per stride s, class scores [N, 80] (already sigmoid) and, per side, a
distribution over reg_max + 1 bins whose expected value times s is the distance from the prior's centre
((x + 0.5) s, (y + 0.5) s) to the left/top/right/bottom edge. Boxes are mapped back to the original image
before non-maximum suppression, so overlap is judged on the shapes a person sees, class by class.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .errors import InputFileError
from .geometry import resize_linear
from .runtime import Runtime, get_runtime

DETECTOR_ID = "object-detector"
SEGMENTER_ID = "person-segmenter"
DEFAULT_SCORE_THRESHOLD = 0.35
PERSON_PIXEL_THRESHOLD = 0.5  # a pixel is "person" when the segmenter's probability reaches this
PERSON_LABEL = "person"
# A "person" detection is a people claim (what a file is said to contain, its fused vector, people masks) only from
# this score: at the detector's own 0.35 it also says "person" on a star field or a cat. On the 500 photos of
# bench/bench_commands.py: >= 0.35 finds 112/112 photos with a person and claims one in 36/388 without; >= 0.5
# 108/112 and 4/388. `detect` still lists every box from 0.35, with its score.
PERSON_CLAIM_SCORE = 0.5
# Boxes of two classes overlapping this much are one object given two names (cat/dog on the cat photo: IoU 0.98);
# a rider and their motorcycle, or a cup on a table, overlap far less (measured on the scene tests' photos: < 0.6).
SAME_OBJECT_IOU = 0.8
PERSON_BOX_MARGIN = 0.1  # person boxes grow by this share of their size before they cut the mask


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    box: list[float]  # [x1, y1, x2, y2] in the original image's pixels

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "score": round(float(self.score), 4), "box": [round(float(v), 1) for v in self.box]}


# ---------------------------------------------------------------- input

def rgb_array(image: Any) -> np.ndarray:
    """A uint8 RGB array [H, W, 3] from a PIL image or an array (grey, RGB, RGBA; uint8 or float)."""
    from .imaging import image_from_array, to_rgb

    if isinstance(image, Image.Image):
        return np.asarray(to_rgb(image))
    array = np.asarray(image)
    if array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3 and array.size:
        return array  # already what the models take: no copy for webcam frames
    return np.asarray(image_from_array(array))


@dataclass(frozen=True)
class Placement:
    """Where an image sits inside the model's input: input = original * scale + offset, per axis."""

    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        out = boxes.astype(np.float32, copy=True)
        out[:, [0, 2]] = (out[:, [0, 2]] - self.offset_x) / self.scale_x
        out[:, [1, 3]] = (out[:, [1, 3]] - self.offset_y) / self.scale_y
        return out


def resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of a uint8 RGB picture: Pillow's (C, ~2.5x faster than the numpy port, and it averages
    over the pixels it drops when shrinking); other arrays through engine.geometry."""
    if rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3:
        return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR))
    return resize_linear(rgb, width, height)


def fit_into(rgb: np.ndarray, width: int, height: int, mode: str, fill: float = 0.0) -> tuple[np.ndarray, Placement]:
    """Resize an image into width x height: "stretch" ignores the aspect ratio, "letterbox" keeps it and
    centres the image on a `fill` background (NanoDet's own keep-ratio transform)."""
    h, w = rgb.shape[:2]
    if mode == "stretch":
        resized = resize_rgb(rgb, width, height)
        return resized, Placement(width / w, height / h, 0.0, 0.0)
    if mode != "letterbox":
        raise ValueError(f"unknown resize mode {mode!r} in the model's settings")
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = resize_rgb(rgb, new_w, new_h)
    canvas = np.full((height, width, 3), fill, dtype=np.uint8)
    left, top = (width - new_w) // 2, (height - new_h) // 2
    canvas[top:top + new_h, left:left + new_w] = resized
    return canvas, Placement(new_w / w, new_h / h, float(left), float(top))


def detector_input(rgb: np.ndarray, settings: dict) -> tuple[np.ndarray, Placement]:
    """One image as the detector's [3, H, W] float32 input, and how to map its boxes back."""
    width, height = settings["input_size"]
    placed, placement = fit_into(rgb, width, height, settings["resize"])
    pixels = placed.astype(np.float32)
    if settings["color_order"] == "BGR":
        pixels = pixels[..., ::-1]
    pixels = (pixels - np.asarray(settings["mean"], np.float32)) / np.asarray(settings["std"], np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)), placement


def segmenter_input(rgb: np.ndarray, settings: dict) -> np.ndarray:
    """One image as the segmenter's [H, W, 3] float32 input in [0, 1]."""
    width, height = settings["input_size"]
    placed, _ = fit_into(rgb, width, height, settings["resize"])
    return placed.astype(np.float32) * np.float32(settings["scale"])


# ---------------------------------------------------------------- detection

def class_names(runtime: Runtime | None = None) -> list[str]:
    runtime = runtime or get_runtime()
    path = runtime.bundle.path(DETECTOR_ID, "labels")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def detect(images: Sequence[Any], score_threshold: float = DEFAULT_SCORE_THRESHOLD, runtime: Runtime | None = None,
           batch_size: int = 8, prepared: Sequence[tuple[np.ndarray, Placement]] | None = None) -> list[list[Detection]]:
    """Objects in each image, best first: one list of Detections per image, in the images' order.

    prepared: each image's detector_input() when already made (engine.pipeline makes them on its decode threads,
    so the resizing overlaps the model runs of the batch before)."""
    runtime = runtime or get_runtime()
    settings = runtime.bundle.entry(DETECTOR_ID).preprocess
    names = class_names(runtime)
    session = runtime.session(DETECTOR_ID)
    input_name = session.get_inputs()[0].name
    wanted = [name for head in settings["heads"] for name in (head["scores"], head["boxes"])]
    results: list[list[Detection]] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        inputs = prepared[start:start + batch_size] if prepared is not None else \
            [detector_input(rgb_array(image), settings) for image in chunk]
        outputs = dict(zip(wanted, session.run(wanted, {input_name: np.stack([tensor for tensor, _ in inputs])})))
        for row, (image, (_, placement)) in enumerate(zip(chunk, inputs)):
            per_head = [(outputs[head["scores"]][row], outputs[head["boxes"]][row], head["stride"])
                        for head in settings["heads"]]
            results.append(postprocess(per_head, placement, image_hw(image), names, settings, score_threshold))
    return results


def image_hw(image: Any) -> tuple[int, int]:
    """(height, width) of a PIL image or an array."""
    if isinstance(image, Image.Image):
        return image.height, image.width
    return tuple(np.shape(image)[:2])  # type: ignore[return-value]


def postprocess(per_head: list[tuple[np.ndarray, np.ndarray, int]], placement: Placement, image_hw: tuple[int, int],
                names: list[str], settings: dict, score_threshold: float) -> list[Detection]:
    """Raw head outputs of one image -> Detections in its pixels, per-class NMS done, best first."""
    width, height = settings["input_size"]
    boxes, scores, classes = [], [], []
    for class_scores, distributions, stride in per_head:
        found = decode_head(class_scores, distributions, stride, width // stride, settings["reg_max"], score_threshold)
        boxes.append(found[0]), scores.append(found[1]), classes.append(found[2])
    boxes_in, scores_all, classes_all = np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes)
    if scores_all.size == 0:
        return []
    boxes_in[:, [0, 2]] = boxes_in[:, [0, 2]].clip(0, width)
    boxes_in[:, [1, 3]] = boxes_in[:, [1, 3]].clip(0, height)
    original = placement.to_original(boxes_in)
    original[:, [0, 2]] = original[:, [0, 2]].clip(0, image_hw[1])
    original[:, [1, 3]] = original[:, [1, 3]].clip(0, image_hw[0])
    keep = per_class_nms(original, scores_all, classes_all, settings["nms_iou"])
    keep = one_name_per_object(original, scores_all, keep)[: settings["max_detections"]]
    return [Detection(names[int(classes_all[i])], float(scores_all[i]), [float(v) for v in original[i]]) for i in keep]


def decode_head(class_scores: np.ndarray, distributions: np.ndarray, stride: int, grid_width: int, reg_max: int,
                score_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One stride's candidates above the threshold: boxes [K, 4] in input pixels, scores [K], classes [K].

    Every (prior, class) pair above the threshold is a candidate, as in NanoDet's multiclass NMS: one prior
    may hold a person and the bicycle under them."""
    priors, classes = np.nonzero(class_scores >= score_threshold)
    if priors.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    bins = distributions[priors].reshape(-1, 4, reg_max + 1).astype(np.float32)
    bins = np.exp(bins - bins.max(axis=-1, keepdims=True))
    bins /= bins.sum(axis=-1, keepdims=True)
    distances = (bins @ np.arange(reg_max + 1, dtype=np.float32)) * stride  # [K, 4]: left, top, right, bottom
    cx = (priors % grid_width + 0.5) * stride
    cy = (priors // grid_width + 0.5) * stride
    boxes = np.stack([cx - distances[:, 0], cy - distances[:, 1], cx + distances[:, 2], cy + distances[:, 3]], axis=1)
    return boxes.astype(np.float32), class_scores[priors, classes].astype(np.float32), classes


def box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one box [4] against boxes [K, 4] (x1, y1, x2, y2)."""
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression: indices kept, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        order = rest[box_iou(boxes[best], boxes[rest]) <= iou_threshold]
    return keep


def per_class_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float) -> list[int]:
    """NMS within each class only (a cup on a table suppresses neither), merged best first."""
    keep: list[int] = []
    for cls in np.unique(classes):
        members = np.nonzero(classes == cls)[0]
        keep.extend(int(members[i]) for i in nms(boxes[members], scores[members], iou_threshold))
    return sorted(keep, key=lambda i: -float(scores[i]))


def one_name_per_object(boxes: np.ndarray, scores: np.ndarray, keep: list[int],
                        iou_threshold: float = SAME_OBJECT_IOU) -> list[int]:
    """Of boxes of different classes that outline the same thing (IoU >= iou_threshold), only the most confident
    stays: the cat photo gave "cat 0.53" and "dog 0.40" around the same cat. Different things that overlap (a
    person on a motorcycle, a cup on a table) overlap far less and keep both names. `keep` is best first."""
    kept: list[int] = []
    for index in keep:
        if not kept or box_iou(boxes[index], boxes[kept]).max() < iou_threshold:
            kept.append(index)
    return kept


# ---------------------------------------------------------------- segmentation

def segment(images: Sequence[Any], runtime: Runtime | None = None, batch_size: int = 8) -> list[np.ndarray]:
    """Person probability masks, float32 [H, W] in [0, 1], each at its image's own size."""
    runtime = runtime or get_runtime()
    settings = runtime.bundle.entry(SEGMENTER_ID).preprocess
    session = runtime.session(SEGMENTER_ID)
    input_name = session.get_inputs()[0].name
    masks: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        arrays = [rgb_array(image) for image in images[start:start + batch_size]]
        batch = np.stack([segmenter_input(rgb, settings) for rgb in arrays])
        probabilities = session.run(None, {input_name: batch})[0][..., 0]
        for rgb, probability in zip(arrays, probabilities):
            height, width = rgb.shape[:2]
            resized = resize_linear(probability, width, height)
            masks.append(np.clip(resized, 0.0, 1.0).astype(np.float32))
    return masks


def person_fraction(mask: np.ndarray | None, threshold: float = PERSON_PIXEL_THRESHOLD) -> float:
    """Share of the picture that is person (0 for no mask: nobody was found)."""
    return float((mask >= threshold).mean()) if mask is not None and mask.size else 0.0


def claims(detections: Sequence[Detection]) -> list[Detection]:
    """The detections that may be said to be in a picture: all but the unsure persons (PERSON_CLAIM_SCORE)."""
    return [d for d in detections if d.label != PERSON_LABEL or d.score >= PERSON_CLAIM_SCORE]


def person_boxes(detections: Sequence[Detection]) -> list[Detection]:
    """The detections that claim a person (PERSON_CLAIM_SCORE)."""
    return [d for d in claims(detections) if d.label == PERSON_LABEL]


def people_mask(mask: np.ndarray, persons: Sequence[Detection]) -> np.ndarray:
    """The segmenter's mask kept only inside the detector's person boxes (each grown by PERSON_BOX_MARGIN of its
    size, for hair and hands the box cuts off). The selfie segmenter marks any close-up subject as "person" (the
    cat photo: 91% of its pixels); the detector tells a cat from a person, the segmenter draws the outline."""
    height, width = mask.shape
    inside = np.zeros_like(mask, dtype=bool)
    for found in persons:
        x1, y1, x2, y2 = found.box
        grow_x, grow_y = (x2 - x1) * PERSON_BOX_MARGIN, (y2 - y1) * PERSON_BOX_MARGIN
        left, right = int(max(0, np.floor(x1 - grow_x))), int(min(width, np.ceil(x2 + grow_x)))
        top, bottom = int(max(0, np.floor(y1 - grow_y))), int(min(height, np.ceil(y2 + grow_y)))
        inside[top:bottom, left:right] = True
    return np.where(inside, mask, 0.0).astype(np.float32)


def people_masks(images: Sequence[Any], detections: Sequence[Sequence[Detection]] | None = None,
                 runtime: Runtime | None = None) -> list[np.ndarray | None]:
    """Person masks (float32 [H, W], each at its image's size) for the images in which the detector finds a
    person, None for the others: the segmenter runs only where there is someone to outline.

    detections: the detector's findings for these images, in their pixels, when already at hand."""
    runtime = runtime or get_runtime()
    if detections is None:
        detections = detect(list(images), runtime=runtime)
    persons = [person_boxes(found) for found in detections]
    wanted = [i for i, found in enumerate(persons) if found]
    masks: list[np.ndarray | None] = [None] * len(images)
    for i, mask in zip(wanted, segment([images[i] for i in wanted], runtime=runtime)):
        masks[i] = people_mask(mask, persons[i])
    return masks


def in_file_pixels(detections: Sequence[Detection], scale: tuple[float, float]) -> list[Detection]:
    """Boxes found on a reduced decode (file pixels per decoded pixel = scale) moved to the file's own pixels."""
    if tuple(scale) == (1.0, 1.0):
        return list(detections)
    sx, sy = scale
    return [Detection(d.label, d.score, [d.box[0] * sx, d.box[1] * sy, d.box[2] * sx, d.box[3] * sy]) for d in detections]


# ---------------------------------------------------------------- pictures for people

def _color(index: int) -> tuple[int, int, int]:
    # Golden-ratio hues: neighbouring class ids get clearly different colours.
    r, g, b = colorsys.hsv_to_rgb((index * 0.618033988749895) % 1.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def draw_detections(image: Any, detections: Sequence[Detection], names: Sequence[str] | None = None) -> Image.Image:
    """A copy of the image with each detection's box and "label score" drawn on it."""
    canvas = Image.fromarray(rgb_array(image))
    draw = ImageDraw.Draw(canvas)
    short = min(canvas.size)
    line = max(2, short // 200)
    font = _font(max(11, short // 40))
    order = list(names or [])
    for found in detections:
        color = _color(order.index(found.label) if found.label in order else sum(map(ord, found.label)))
        x1, y1, x2, y2 = found.box
        draw.rectangle([x1, y1, x2, y2], outline=color, width=line)
        caption = f"{found.label} {found.score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
        text_w, text_h = right - left, bottom - top + 4
        ty = y1 - text_h if y1 - text_h >= 0 else y1
        draw.rectangle([x1, ty, x1 + text_w + 6, ty + text_h], fill=color)
        draw.text((x1 + 3, ty + 2 - top), caption, fill=(0, 0, 0), font=font)
    return canvas


def mask_image(mask: np.ndarray) -> Image.Image:
    """The probability mask as an 8-bit greyscale picture (white = person)."""
    return Image.fromarray((np.clip(mask, 0, 1) * 255).round().astype(np.uint8), mode="L")


def cutout(image: Any, mask: np.ndarray) -> Image.Image:
    """The person on a transparent background (RGBA; the soft mask edge stays soft)."""
    rgba = Image.fromarray(rgb_array(image)).convert("RGBA")
    rgba.putalpha(mask_image(mask))
    return rgba


def blur_background(image: Any, mask: np.ndarray, radius: float | None = None) -> Image.Image:
    """The picture with everything but the person blurred (a video-call background)."""
    sharp = Image.fromarray(rgb_array(image))
    blurred = sharp.filter(ImageFilter.GaussianBlur(radius or max(4.0, min(sharp.size) / 40)))
    return Image.composite(sharp, blurred, mask_image(mask))


SEGMENT_MODES = {"mask": mask_image, "cutout": cutout, "blur": blur_background}


def render_segmentation(image: Any, mask: np.ndarray, mode: str) -> Image.Image:
    """The picture a person asked for: the mask itself, a transparent cutout, or a blurred background."""
    if mode == "mask":
        return mask_image(mask)
    if mode not in SEGMENT_MODES:
        raise ValueError(f"unknown mode {mode!r}: choose one of {', '.join(SEGMENT_MODES)}")
    return SEGMENT_MODES[mode](image, mask)


# ---------------------------------------------------------------- fusion and batch mode

def object_names(detections: Sequence[Detection]) -> list[str]:
    """Distinct labels, the most confident first ("person, motorcycle")."""
    seen: list[str] = []
    for found in sorted(detections, key=lambda d: -d.score):
        if found.label not in seen:
            seen.append(found.label)
    return seen


def object_tokens(perceptions: Sequence[Any], images: Sequence[Any], runtime: Runtime | None = None,
                  score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> list[list[Detection]]:
    """Add an "objects" token to each image's Perception: the detected names embedded as text, with the
    top detection's score as confidence. Images where nothing was found get no token. Returns the detections."""
    from .fusion import Token
    from .text import embed_texts

    runtime = runtime or get_runtime()
    found = detect(list(images), score_threshold=score_threshold, runtime=runtime)
    texts = [(perception, ", ".join(object_names(detections)), max(d.score for d in detections))
             for perception, detections in zip(perceptions, found) if detections]
    if texts:
        vectors = embed_texts([text for _, text, _ in texts], runtime=runtime)
        for (perception, text, confidence), vector in zip(texts, vectors):
            perception.tokens.append(Token("objects", vector, float(confidence), text=text, source=perception.file))
    return found


# Folder mode (engine.folder): the tasks this module adds, the modalities they fit, and their CSV columns.
FOLDER_TASK_FITS = {"detect": {"image"}, "segment": {"image"}}
FOLDER_TASK_COLUMNS = {"detect": ["detect.objects"], "segment": ["segment.person_fraction", "segment.mask"]}


def folder_results(images: Sequence[Any], rel_paths: Sequence[str], tasks: Sequence[str], out_dir: Path | str | None,
                   runtime: Runtime | None = None, mode: str = "mask",
                   score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                   detections: Sequence[Sequence[Detection]] | None = None) -> list[dict[str, Any]]:
    """Detect/segment results for one batch of decoded images: one {task: result} dict per image.

    Segmentation pictures go to out_dir, mirroring each file's relative path ("a/b.jpg" -> "a/b.mask.png"),
    and the row records that relative path. Written atomically, so a stopped run leaves no half file.
    detections: the detector's findings at its default threshold, in these images' pixels, when already at hand
    (people are looked for only inside person boxes)."""
    from .fileio import atomic_write_bytes

    runtime = runtime or get_runtime()
    rows: list[dict[str, Any]] = [{} for _ in images]
    if "detect" in tasks:
        found = detect(list(images), score_threshold=score_threshold, runtime=runtime)
        for row, objects in zip(rows, found):
            row["detect"] = {"objects": [d.to_json() for d in objects]}
        if detections is None and score_threshold == DEFAULT_SCORE_THRESHOLD:
            detections = found
    if "segment" in tasks:
        for row, image, rel, mask in zip(rows, images, rel_paths, people_masks(list(images), detections, runtime)):
            # Nobody found: no people claim and no picture (a mask of nobody would be a black square).
            result: dict[str, Any] = {"person_fraction": round(person_fraction(mask), 4)}
            if out_dir is not None:
                result["mask"] = None
                if mask is not None:
                    target = segment_output_path(Path(out_dir), rel, mode)
                    atomic_write_bytes(target, png_bytes(render_segmentation(image, mask, mode)))
                    result["mask"] = target.relative_to(Path(out_dir)).as_posix()
            row["segment"] = result
    return rows


def segment_output_path(out_dir: Path, rel_path: str, mode: str) -> Path:
    rel = Path(rel_path)
    return out_dir / rel.parent / f"{rel.stem}.{mode}.png"


def png_bytes(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()



# ---------------------------------------------------------------- files (the CLI and the Files tab)

def _output_path(out_dir: Path, source: str, suffix: str, taken: set[Path]) -> Path:
    """OUT_DIR/<name><suffix>, numbered when two inputs share a name; never an input file itself."""
    stem = Path(source).stem
    target = out_dir / f"{stem}{suffix}"
    number = 2
    while target in taken or target.resolve() == Path(source).resolve():
        target = out_dir / f"{stem}-{number}{suffix}"
        number += 1
    taken.add(target)
    return target


FILE_CHUNK = 8  # images held decoded at full size at once: memory stays bounded however many files are given


def _chunks(paths: Sequence[str | Path]):
    paths = [str(p) for p in paths]
    for start in range(0, len(paths), FILE_CHUNK):
        yield paths[start:start + FILE_CHUNK]


def _load_all(paths: Sequence[str | Path]) -> list[tuple[str, Image.Image | InputFileError]]:
    from .imaging import load_image

    loaded = []
    for path in map(str, paths):
        try:
            loaded.append((path, load_image(path)))
        except InputFileError as exc:
            loaded.append((path, exc))
    return loaded


def detect_files(paths: Sequence[str | Path], score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                 draw_dir: Path | str | None = None, runtime: Runtime | None = None) -> list[dict[str, Any]]:
    """One record per file: {"file", "objects": [{label, score, box}]} (+ "drawn": path), or {"file", "error"}."""
    from .fileio import atomic_write_bytes

    runtime = runtime or get_runtime()
    records, taken = [], set()
    for chunk in _chunks(paths):
        loaded = _load_all(chunk)
        good = [image for _, image in loaded if not isinstance(image, InputFileError)]
        found = iter(detect(good, score_threshold=score_threshold, runtime=runtime))
        for path, image in loaded:
            if isinstance(image, InputFileError):
                records.append({"file": path, "error": image.problem})
                continue
            detections = next(found)
            record: dict[str, Any] = {"file": path, "objects": [d.to_json() for d in detections]}
            if draw_dir is not None:
                target = _output_path(Path(draw_dir), path, ".boxes.png", taken)
                atomic_write_bytes(target, png_bytes(draw_detections(image, detections, class_names(runtime))))
                record["drawn"] = str(target)
            records.append(record)
    return records


def segment_files(paths: Sequence[str | Path], out_dir: Path | str, mode: str = "mask",
                  runtime: Runtime | None = None) -> list[dict[str, Any]]:
    """One record per file: {"file", "person_fraction", "output"} or {"file", "error"}; pictures go to out_dir."""
    from .fileio import atomic_write_bytes

    if mode not in SEGMENT_MODES:
        raise ValueError(f"unknown mode {mode!r}: choose one of {', '.join(SEGMENT_MODES)}")
    runtime = runtime or get_runtime()
    records, taken = [], set()
    for chunk in _chunks(paths):
        loaded = _load_all(chunk)
        masks = iter(people_masks([image for _, image in loaded if not isinstance(image, InputFileError)], runtime=runtime))
        for path, image in loaded:
            if isinstance(image, InputFileError):
                records.append({"file": path, "error": image.problem})
                continue
            mask = next(masks)
            if mask is None:
                records.append({"file": path, "person_fraction": 0.0, "output": None, "note": "no person found"})
                continue
            target = _output_path(Path(out_dir), path, f".{mode}.png", taken)
            atomic_write_bytes(target, png_bytes(render_segmentation(image, mask, mode)))
            records.append({"file": path, "person_fraction": round(person_fraction(mask), 4), "output": str(target)})
    return records
