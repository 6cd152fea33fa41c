"""OCR on rendered scans, through the real model bundle (assets/models, entry "ocr")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import ocr
from engine.errors import InputFileError
from engine.manifest import ModelBundle
from engine.runtime import Runtime
from tests import docs

BUNDLE = Path(__file__).resolve().parents[1] / "assets" / "models"

# Words each document must yield (compared lower-case with spaces removed: the recogniser sometimes
# drops a space, and a line the detector splits in two is rejoined by the reading order).
KEY_WORDS = {
    "invoice": ["invoice", "2024-0178", "14 march 2024", "harbor supplies", "steel brackets", "$18.40",
                "wood screws", "$6.25", "total due", "$24.65"],
    "letter": ["dear ms. thompson", "thank you for your order", "garden tools", "parcel will arrive",
               "thursday morning", "kind regards", "daniel walker"],
    "sign": ["no parking", "loading zone", "monday to friday", "7am", "6pm"],
}
# One word of each line, in the order the lines were typeset.
LINE_MARKERS = {
    "invoice": ["invoice", "march", "harbor", "steel", "wood", "total"],
    "letter": ["dear", "thankyou", "parcel", "kindregards", "daniel"],
    "sign": ["noparking", "loading", "monday"],
}


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    return Runtime(ModelBundle(BUNDLE), device="cpu")


@pytest.fixture(scope="module")
def rendered() -> dict[str, docs.Document]:
    return docs.documents()


@pytest.fixture(scope="module")
def results(rendered, runtime) -> dict[str, ocr.OcrResult]:
    return {name: ocr.read_text(doc.image, runtime=runtime) for name, doc in rendered.items()}


def squash(text: str) -> str:
    return "".join(text.lower().split())


def aabb(box) -> tuple[float, float, float, float]:
    xs, ys = [p[0] for p in box], [p[1] for p in box]
    return min(xs), min(ys), max(xs), max(ys)


def iou(a, b) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


@pytest.mark.parametrize("name", sorted(KEY_WORDS))
def test_documents_are_read(results, name):
    text = squash(results[name].text)
    missing = [word for word in KEY_WORDS[name] if squash(word) not in text]
    assert not missing, f"{name}: missing {missing} in {results[name].text!r}"
    assert all(0.5 <= line.score <= 1.0 for line in results[name].lines)
    assert squash(results[name].text) == squash("".join(line.text for line in results[name].lines))


@pytest.mark.parametrize("name", sorted(LINE_MARKERS))
def test_reading_order(results, name):
    text = squash(results[name].text)
    positions = [text.find(marker) for marker in LINE_MARKERS[name]]
    assert -1 not in positions, (name, results[name].text)
    assert positions == sorted(positions), f"{name}: lines out of order: {results[name].text!r}"


@pytest.mark.parametrize("name", sorted(KEY_WORDS))
def test_boxes_lie_inside_the_image_and_around_the_words(rendered, results, name):
    doc, result = rendered[name], results[name]
    width, height = doc.image.size
    for line in result.lines:
        assert len(line.box) == 4 and all(len(p) == 2 for p in line.box)
        assert all(0 <= x <= width and 0 <= y <= height for x, y in line.box), line
    found = [aabb(line.box) for line in result.lines]
    for text, truth_box in zip(doc.lines, doc.boxes):
        truth = aabb(truth_box)
        # Boxes centred on this line (a line may come back as two or three pieces).
        pieces = [b for b in found
                  if truth[0] <= (b[0] + b[2]) / 2 <= truth[2] and truth[1] <= (b[1] + b[3]) / 2 <= truth[3]]
        assert pieces, f"no box on {text!r}"
        union = (min(b[0] for b in pieces), min(b[1] for b in pieces), max(b[2] for b in pieces), max(b[3] for b in pieces))
        assert iou(union, truth) >= 0.6, (text, union, truth)
    # No box floats on blank paper.
    truths = [aabb(b) for b in doc.boxes]
    for b in found:
        centre = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
        assert any(t[0] <= centre[0] <= t[2] and t[1] <= centre[1] <= t[3] for t in truths), b


def test_blank_and_empty_images_give_no_lines(runtime):
    paper = np.full((400, 600, 3), 244, np.float32) + np.random.default_rng(0).normal(0, 4, (400, 600, 3))
    blank = ocr.read_text(Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8)), runtime=runtime)
    assert blank.lines == [] and blank.text == ""
    assert ocr.read_text(np.zeros((0, 0, 3), np.uint8), runtime=runtime).lines == []
    assert ocr.read_text(Image.new("RGB", (1, 1), "white"), runtime=runtime).lines == []


def test_upside_down_line_is_read_thanks_to_the_classifier(runtime):
    doc = docs.render(["Fragile: this side up"], size=34, angle=0.5, seed=7)
    turned = doc.image.transpose(Image.Transpose.ROTATE_180)
    settings = runtime.bundle.entry("ocr").preprocess
    bgr = ocr.to_bgr(turned)
    crops = [ocr.crop_box(bgr, box) for box in ocr.detect(bgr, settings, runtime)]
    _, flipped = ocr.fix_upside_down(crops, settings["cls"], runtime)
    assert flipped and all(flipped)
    result = ocr.read_text(turned, runtime=runtime)
    assert "fragile:thissideup" in squash(result.text), result.text


def test_upside_down_page_keeps_its_reading_order(rendered, runtime):
    turned = rendered["letter"].image.transpose(Image.Transpose.ROTATE_180)
    text = squash(ocr.read_text(turned, runtime=runtime).text)
    positions = [text.find(marker) for marker in LINE_MARKERS["letter"]]
    assert -1 not in positions and positions == sorted(positions), text


def test_big_image_is_scaled_down_and_boxes_map_back(rendered, runtime):
    doc = rendered["letter"]
    factor = 3.5  # 2590 px wide: over the 2000 px detection limit
    big = doc.image.resize((int(doc.image.width * factor), int(doc.image.height * factor)), Image.BICUBIC)
    result = ocr.read_text(big, runtime=runtime)
    assert "daniel walker" in result.text.lower()
    first = next(line for line in result.lines if "dear" in line.text.lower())
    expected = tuple(v * factor for v in aabb(doc.boxes[0]))
    assert iou(aabb(first.box), expected) >= 0.6, (first.box, expected)
    assert max(x for line in result.lines for x, _ in line.box) <= big.width


def test_input_kinds_agree(runtime):
    doc = docs.three_lines()
    reference = ocr.read_text(doc.image, runtime=runtime).text
    assert "budget review" in reference.lower()
    assert ocr.read_text(np.asarray(doc.image), runtime=runtime).text == reference
    grey = ocr.read_text(doc.image.convert("L"), runtime=runtime).text
    assert squash("Meeting notes for Tuesday") in squash(grey)
    # Dark text on a transparent background reads as text on white paper.
    rgba = Image.new("RGBA", doc.image.size, (0, 0, 0, 0))
    rgba.putalpha(Image.eval(doc.image.convert("L"), lambda v: 255 - v))
    assert squash("Room 4B") in squash(ocr.read_text(rgba, runtime=runtime).text)


def test_bad_input_is_a_plain_error(runtime):
    with pytest.raises(InputFileError):
        ocr.read_text("not an image", runtime=runtime)
    with pytest.raises(InputFileError):
        ocr.read_text(np.zeros((8, 8, 7), np.uint8), runtime=runtime)


def test_ctc_greedy_merges_repeats_and_drops_blanks():
    alphabet = ["<blank>", "a", "b", " "]
    steps = np.full((7, 4), 0.01, np.float32)
    for t, k in enumerate([1, 1, 0, 1, 2, 0, 3]):
        steps[t, k] = 0.9
    text, score = ocr.ctc_greedy(steps, alphabet)
    assert text == "aab " and score == pytest.approx(0.9)
    assert ocr.ctc_greedy(np.eye(4, dtype=np.float32)[[0, 0]], alphabet) == ("", 0.0)


def test_reading_order_keeps_rows_together():
    def box(x0, y0, x1, y1):
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)

    # A right-hand price sits 6 px higher than its item; the next row starts below both.
    boxes = [box(300, 94, 380, 120), box(10, 140, 200, 166), box(10, 100, 200, 126), box(10, 10, 300, 40)]
    assert ocr.reading_order(boxes) == [3, 2, 0, 1]
    # The same page turned upside down reads in its own frame.
    turned = [box(400 - b[2, 0], 200 - b[2, 1], 400 - b[0, 0], 200 - b[0, 1]) for b in boxes]
    assert ocr.reading_order(turned, (200, 400)) == [3, 2, 0, 1]
    assert ocr.reading_rows(boxes) == [[3], [2, 0], [1]]


def test_pieces_of_a_row_join_with_a_space():
    lines = [ocr.OcrLine("Loading", 0.99, [], row=0), ocr.OcrLine("zone", 0.98, [], row=0),
             ocr.OcrLine("Monday", 0.97, [], row=1)]
    assert ocr.OcrResult.of(lines).text == "Loading zone\nMonday"


def test_manifest_records_the_parity_check():
    entry = ModelBundle(BUNDLE).entry("ocr")
    assert entry.task == "ocr" and entry.modality == "image" and entry.license == "Apache-2.0"
    assert set(entry.files) == {"det", "cls", "rec", "keys"}
    cer = entry.verification["line_cer_vs_rapidocr"]
    assert cer["direction"] == "<=" and cer["threshold"] <= 0.02
    assert cer["measured"] <= cer["threshold"]
    boxes = entry.verification["box_iou_vs_rapidocr"]
    assert boxes["measured"] >= boxes["threshold"]
    assert entry.verification["reference_chars"] > 500
