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


# ---------------------------------------------------------------- generated documents (OCR quality and gate)
#
# Five kinds of everyday document, their text drawn from word pools by a seeded generator, typeset in one of
# the DejaVu faces at 18-40 px and turned by 0-5 degrees either way. bench/bench_ocr.py tunes the OCR's rules
# on the "train" split and reports on the "heldout" split (other seeds, so other text, fonts, sizes and
# turns); tests/test_ocr_quality.py uses a few of each. Nothing above this section depends on it.

KINDS = ("invoice", "recipe", "letter", "timetable", "notice")
FONTS = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono.ttf")

_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]
_COMPANIES = ["Harbor Supplies Ltd", "Northwind Traders", "Blue Lake Dairy", "Castle Print Works", "Green Valley Farm",
              "Oak & Iron Tools", "Riverside Bakery", "Summit Office Store", "Atlas Removals", "Cedar Garden Centre"]
_ITEMS = ["Steel brackets", "Wood screws", "Paint roller", "Copper pipe", "Garden hose", "Printer paper",
          "Light bulbs", "Door hinges", "Cable ties", "Masking tape", "Wall plugs", "Safety gloves", "Drill bits",
          "Extension lead", "Storage boxes", "Floor tiles"]
_PEOPLE = ["Ms. Thompson", "Mr. Alvarez", "Dr. Okafor", "Mrs. Lindqvist", "Mr. Brennan", "Ms. Castellano",
           "Prof. Nakamura", "Mr. Dubois"]
_SIGNERS = ["Daniel Walker", "Sofia Marques", "Peter Jansen", "Amira Haddad", "Laura Becker", "Tom Fletcher"]
_LETTER_SENTENCES = [
    "Thank you for your order of the garden tools.", "The parcel will arrive on Thursday morning.",
    "We are sorry for the delay with your delivery.", "Please find the signed contract enclosed.",
    "Your appointment has been moved to next week.", "The meeting will take place in room 12.",
    "We look forward to working with you again.", "Let me know if the new dates suit you.",
    "The invoice was paid in full on 3 May.", "Our office will be closed over the holidays.",
    "Could you send us a copy of the receipt?", "The keys can be collected from reception.",
]
_DISHES = ["Lemon Olive Oil Cake", "Tomato and Basil Soup", "Spiced Lentil Stew", "Banana Walnut Bread",
           "Roast Chicken with Herbs", "Mushroom Risotto", "Apple Crumble", "Chickpea Curry"]
_INGREDIENTS = ["200 g plain flour", "3 large eggs", "1 tsp baking powder", "150 ml olive oil", "2 lemons, zested",
                "400 g chopped tomatoes", "1 onion, finely diced", "2 cloves of garlic", "500 ml vegetable stock",
                "120 g brown sugar", "1 pinch of salt", "250 g red lentils", "3 ripe bananas", "75 g butter"]
_STEPS = ["Heat the oven to 180 C and line a tin.", "Whisk the eggs and sugar until pale.",
          "Fold in the flour with a large spoon.", "Simmer gently for 25 minutes.",
          "Season with salt and pepper to taste.", "Bake for 40 minutes until golden.",
          "Leave to cool before slicing.", "Stir in the stock a little at a time."]
_PLACES = ["City Centre", "Airport", "Harbour", "University", "North Station", "Old Town", "Hospital",
           "Market Square", "Riverside Park", "Stadium"]
_NOTICE_TITLES = ["NOTICE TO RESIDENTS", "PLEASE NOTE", "LIBRARY HOURS", "WATER SUPPLY WORKS", "LOST PROPERTY"]
_NOTICE_SENTENCES = [
    "The lift in Block C will be out of service", "The car park will be resurfaced next week.",
    "Please keep the fire doors closed at all times.", "Bicycles must be stored in the basement.",
    "Rubbish is collected every Tuesday morning.", "The main entrance is closed for repairs.",
    "Visitors must sign in at the front desk.", "Quiet hours are from 10 pm to 7 am.",
]
_EMAILS = ["office@harbourview.org", "finance@example.com", "help@riverside.net", "info@cedar-garden.co.uk"]


def _price(rng: np.random.Generator, low: float = 1.0, high: float = 900.0) -> str:
    value = float(rng.uniform(low, high))
    return f"{value:,.2f}"


def _date(rng: np.random.Generator) -> str:
    return f"{int(rng.integers(1, 29))} {_MONTHS[int(rng.integers(12))]} {int(rng.integers(2019, 2027))}"


def _phone(rng: np.random.Generator) -> str:
    return f"+{int(rng.integers(30, 50))} {int(rng.integers(100, 999))} {int(rng.integers(100, 999))} {int(rng.integers(100, 999)):03d}"


def generated_lines(kind: str, rng: np.random.Generator) -> list[str]:
    """The text of one document of `kind` (one of KINDS), drawn from the pools above."""
    pick = lambda pool: pool[int(rng.integers(len(pool)))]  # noqa: E731
    if kind == "invoice":
        currency = pick(["$", "EUR ", "GBP "])
        lines = [f"INVOICE No. {int(rng.integers(2019, 2027))}-{int(rng.integers(0, 10000)):04d}",
                 f"Date: {_date(rng)}", f"Bill to: {pick(_COMPANIES)}"]
        for item in rng.choice(len(_ITEMS), int(rng.integers(2, 5)), replace=False):
            lines.append(f"{int(rng.integers(1, 13))} x {_ITEMS[int(item)]}   {currency}{_price(rng, 1, 300)}")
        lines.append(f"VAT {pick(['10', '20', '21', '23'])}%: {currency}{_price(rng, 5, 400)}")
        lines.append(f"Total due: {_price(rng, 20, 3000)} {pick(['EUR', 'USD', 'GBP'])}")
        return lines
    if kind == "recipe":
        lines = [pick(_DISHES), f"Serves {int(rng.integers(2, 9))}, ready in {int(rng.integers(2, 10)) * 5} minutes"]
        lines += [_INGREDIENTS[int(i)] for i in rng.choice(len(_INGREDIENTS), int(rng.integers(3, 6)), replace=False)]
        lines += [_STEPS[int(i)] for i in rng.choice(len(_STEPS), int(rng.integers(2, 4)), replace=False)]
        return lines
    if kind == "letter":
        lines = [_date(rng), f"Dear {pick(_PEOPLE)},"]
        lines += [_LETTER_SENTENCES[int(i)] for i in rng.choice(len(_LETTER_SENTENCES), int(rng.integers(2, 5)), replace=False)]
        lines += [pick(["Kind regards,", "Yours sincerely,", "Best wishes,"]), pick(_SIGNERS)]
        return lines
    if kind == "timetable":
        start, end = rng.choice(len(_PLACES), 2, replace=False)
        lines = [f"Route {int(rng.integers(1, 99))} {_PLACES[int(start)]} - {_PLACES[int(end)]}",
                 pick(["Mondays to Fridays", "Saturdays", "Sundays and holidays"])]
        first = int(rng.integers(5 * 60, 8 * 60))
        gap = int(rng.integers(2, 6)) * 10
        for stop in rng.choice(len(_PLACES), int(rng.integers(3, 6)), replace=False):
            times = [first + k * gap + int(stop) for k in range(3)]
            lines.append(f"{_PLACES[int(stop)]}   " + "   ".join(f"{t // 60:02d}:{t % 60:02d}" for t in times))
        return lines
    if kind == "notice":
        lines = [pick(_NOTICE_TITLES)]
        lines += [_NOTICE_SENTENCES[int(i)] for i in rng.choice(len(_NOTICE_SENTENCES), int(rng.integers(2, 4)), replace=False)]
        lines += [f"from {_date(rng)}.", f"Questions? Call {_phone(rng)}", f"or write to {pick(_EMAILS)}"]
        return lines
    raise ValueError(f"unknown document kind {kind!r}; choose one of {', '.join(KINDS)}")


def generated(kind: str, seed: int, *, font: str | None = None, size: int | None = None,
              angle: float | None = None) -> Document:
    """One document of `kind`: text, face, size (18-40 px), turn (-5..5 degrees) and noise from `seed`."""
    rng = np.random.default_rng([KINDS.index(kind), seed])
    lines = generated_lines(kind, rng)
    font = font or FONTS[int(rng.integers(len(FONTS)))]
    size = size or int(rng.integers(18, 41))
    angle = float(rng.uniform(-5.0, 5.0)) if angle is None else angle
    return render(lines, font=font, size=size, angle=angle, noise=float(rng.uniform(3.0, 8.0)),
                  blur=float(rng.uniform(0.3, 0.8)), line_gap=float(rng.uniform(0.5, 1.0)), seed=seed)


def document_set(split: str, per_kind: int = 8) -> dict[str, Document]:
    """`per_kind` documents of every kind; "train" and "heldout" use disjoint seeds (so other text and looks)."""
    first = {"train": 1000, "heldout": 5000}[split]
    return {f"{kind}-{first + k}": generated(kind, first + k) for kind in KINDS for k in range(per_kind)}


# ---------------------------------------------------------------- photos (OCR line filter and gate)

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera")


def photo(name: str) -> Image.Image:
    """One of scikit-image's photographs (a test-only dependency) as an RGB image."""
    from skimage import data

    pixels = getattr(data, name)()
    image = Image.fromarray(pixels)
    return image.convert("RGB")


def photo_crops(count: int, seed: int = 0, min_mpx: float = 0.3, max_mpx: float = 6.0) -> list[Image.Image]:
    """`count` random crops of the PHOTOS, each resized to 0.3-6 Mpx (so enlarged several times over at the
    top end: a phone photo of the same scene), with the JPEG-like softness of an enlargement."""
    rng = np.random.default_rng(seed)
    sources = {name: photo(name) for name in PHOTOS}
    crops = []
    for index in range(count):
        source = sources[PHOTOS[index % len(PHOTOS)]]
        width, height = source.size
        share = float(rng.uniform(0.35, 1.0))
        crop_w = max(32, int(width * share * rng.uniform(0.7, 1.0)))
        crop_h = max(32, int(height * share * rng.uniform(0.7, 1.0)))
        left, top = int(rng.integers(0, width - crop_w + 1)), int(rng.integers(0, height - crop_h + 1))
        piece = source.crop((left, top, left + crop_w, top + crop_h))
        megapixels = float(np.exp(rng.uniform(np.log(min_mpx), np.log(max_mpx))))
        scale = math.sqrt(megapixels * 1e6 / (crop_w * crop_h))
        crops.append(piece.resize((max(2, int(crop_w * scale)), max(2, int(crop_h * scale))), Image.BICUBIC))
    return crops


def with_sign(background: Image.Image, seed: int, *, share: float | None = None,
              hard: bool = False) -> tuple[Image.Image, list[str]]:
    """`background` with a rendered sign pasted in: its lines drawn from the notice/sign pools, scaled so its
    width is `share` (default 0.2-0.5, from `seed`) of the picture's, at a random place. Returns the picture and
    the sign's lines.

    `hard` makes it look more like a sign photographed from afar: smaller (0.12-0.3 of the width by default),
    faded ink on tinted board, out of focus, and the whole picture saved as a low-quality JPEG.
    """
    import io

    rng = np.random.default_rng([99 + int(hard), seed])
    choices = [SIGN, ["CLOSED", "Back at 3 pm"], ["PRIVATE ROAD", "No entry for vehicles"],
               ["OPEN DAILY", "9:00 - 17:30"], ["CAFE", "Fresh coffee and cakes"], ["EXIT", "Keep clear"],
               ["WET PAINT", "Do not touch"], ["Platform 4", "Trains to the Airport"]]
    lines = choices[seed % len(choices)]
    sign = render(lines, font=FONTS[int(rng.integers(3))], size=44, margin=28, angle=float(rng.uniform(-3, 3)),
                  noise=10.0 if hard else 4.0, blur=float(rng.uniform(1.2, 2.2)) if hard else 0.5, seed=seed).image
    if hard:  # grey ink on a coloured board: the contrast of a weathered sign
        board = np.array([rng.uniform(150, 240), rng.uniform(150, 240), rng.uniform(120, 230)], np.float32)
        ink = np.array([rng.uniform(30, 90)] * 3, np.float32)
        darkness = 1.0 - np.asarray(sign.convert("L"), np.float32)[:, :, None] / 255.0
        sign = Image.fromarray(np.clip(board + (ink - board) * darkness, 0, 255).astype(np.uint8))
    if share is None:
        share = float(rng.uniform(0.12, 0.3)) if hard else float(rng.uniform(0.2, 0.5))
    width = max(8, int(background.width * share))
    height = max(4, int(sign.height * width / sign.width))
    if height > background.height * 0.8:
        height = int(background.height * 0.8)
        width = max(8, int(sign.width * height / sign.height))
    sign = sign.resize((width, height), Image.LANCZOS)
    left = int(rng.integers(0, background.width - width + 1))
    top = int(rng.integers(0, background.height - height + 1))
    picture = background.copy()
    picture.paste(sign, (left, top))
    if hard:
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=int(rng.integers(45, 75)))
        picture = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return picture, list(lines)
