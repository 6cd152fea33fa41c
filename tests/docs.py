"""Rendered "scans" for OCR tests and build-time verification.

Each document is black text on off-white paper, turned by a small angle and given sensor noise and a
little blur, so the detector and recogniser see something closer to a phone photo or a flatbed scan
than to a clean screenshot. The ground truth (each line's text and its four corners after the turn)
comes with the image. Everything is seeded: the same call gives the same pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIRS = [Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"), Path("/usr/share/fonts/TTF")]
PAPER = (246, 243, 235)
INK = (18, 18, 22)

INVOICE = [
    "INVOICE No. 2024-0178",
    "Date: 14 March 2024",
    "Bill to: Harbor Supplies Ltd",
    "2 x Steel brackets   $18.40",
    "5 x Wood screws   $6.25",
    "Total due: $24.65",
]
LETTER = [
    "Dear Ms. Thompson,",
    "Thank you for your order of the garden tools.",
    "The parcel will arrive on Thursday morning.",
    "Kind regards,",
    "Daniel Walker",
]
SIGN = [
    "NO PARKING",
    "Loading zone",
    "Monday to Friday 7am - 6pm",
]
PAGE = [
    "Quarterly report, second quarter 2023",
    "Revenue grew by 12% to 4.8 million euros,",
    "driven by strong sales in Spain and Portugal.",
    "Operating costs fell slightly (-3%) after the",
    "move to the new warehouse in Valencia.",
    "Next steps: hire two engineers, open the Lisbon",
    "office on 1 September, and review prices.",
    "Contact: finance@example.com, +34 912 555 018",
]


@dataclass
class Document:
    image: Image.Image
    lines: list[str]
    boxes: list[list[list[float]]]  # per line: 4 corners [x, y] (tl, tr, br, bl) in image pixels


def font_path(name: str = "DejaVuSans.ttf") -> Path:
    for folder in FONT_DIRS:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"font {name} not found in {', '.join(map(str, FONT_DIRS))} "
                            "(install it with: apt-get install -y fonts-dejavu-core)")


def render(
    lines: list[str],
    *,
    font: str = "DejaVuSans.ttf",
    size: int = 30,
    width: int | None = None,
    margin: int = 48,
    line_gap: float = 0.8,
    angle: float = 1.0,
    noise: float = 5.0,
    blur: float = 0.6,
    seed: int = 0,
) -> Document:
    """Typeset `lines` top to bottom, then turn, blur and add noise like a scan."""
    face = ImageFont.truetype(str(font_path(font)), size)
    spans = [face.getbbox(text) for text in lines]
    step = int(size * (1 + line_gap))
    page_w = width or (max(right for _, _, right, _ in spans) + 2 * margin)
    page_h = 2 * margin + step * (len(lines) - 1) + size + size // 2
    page = Image.new("RGB", (page_w, page_h), PAPER)
    draw = ImageDraw.Draw(page)
    boxes = []
    for index, (text, (left, top, right, bottom)) in enumerate(zip(lines, spans)):
        x, y = margin, margin + index * step
        draw.text((x, y), text, font=face, fill=INK)
        boxes.append([[x + left, y + top], [x + right, y + top], [x + right, y + bottom], [x + left, y + bottom]])

    # PIL turns counter-clockwise about the centre for a positive angle; turn the boxes the same way.
    turned = page.rotate(angle, resample=Image.BICUBIC, fillcolor=PAPER)
    boxes = [_rotate_points(box, angle, page_w / 2, page_h / 2) for box in boxes]
    if blur > 0:
        turned = turned.filter(ImageFilter.GaussianBlur(blur))
    pixels = np.asarray(turned).astype(np.float32)
    if noise > 0:
        pixels += np.random.default_rng(seed).normal(0.0, noise, pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return Document(image=image, lines=list(lines), boxes=boxes)


def _rotate_points(points: list[list[float]], angle: float, cx: float, cy: float) -> list[list[float]]:
    theta = math.radians(angle)
    cos, sin = math.cos(theta), math.sin(theta)
    # Image y grows downwards, so a counter-clockwise turn on screen is (x, y) -> (x cos + y sin, -x sin + y cos).
    return [[cx + (x - cx) * cos + (y - cy) * sin, cy - (x - cx) * sin + (y - cy) * cos] for x, y in points]


def documents() -> dict[str, Document]:
    """The standard set: an invoice, a letter and a sign, each with its own font, size, turn and noise."""
    return {
        "invoice": render(INVOICE, font="DejaVuSans.ttf", size=26, angle=0.8, noise=6.0, blur=0.5, seed=1),
        "letter": render(LETTER, font="DejaVuSerif.ttf", size=28, angle=-1.2, noise=5.0, blur=0.7, seed=2),
        "sign": render(SIGN, font="DejaVuSans-Bold.ttf", size=44, angle=1.5, noise=8.0, blur=0.8, seed=3),
    }


def verification_documents() -> dict[str, Document]:
    """The standard set plus a denser page of small print (used by the build's parity check)."""
    found = documents()
    found["page"] = render(PAGE, font="DejaVuSerif.ttf", size=22, angle=-0.6, noise=6.0, blur=0.6, seed=5)
    found["three_lines"] = three_lines()
    return found


def three_lines() -> Document:
    """A small three-line page, the size used for the speed figure."""
    return render(["Meeting notes for Tuesday", "Budget review at 10:30", "Room 4B, second floor"], size=30, seed=4)
