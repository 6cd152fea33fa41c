"""Draw FusionDesk's icon with Pillow: three overlapping circles (seeing, hearing, reading) meeting in one
bright centre (the fused answer), on a rounded dark-blue square. Writes assets/icon.png (512 px),
assets/icon.ico (16-256 px, Windows) and assets/icon.icns (macOS).

    .venv/bin/python build/make_icons.py
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
SIZE = 1024  # drawn large, scaled down: smooth edges without hand-made antialiasing
COLOURS = [(255, 107, 107), (78, 205, 196), (255, 209, 102)]  # image, audio, text
BACKGROUND_TOP, BACKGROUND_BOTTOM = (28, 42, 84), (12, 18, 40)


def rounded_square() -> Image.Image:
    gradient = Image.new("RGB", (SIZE, SIZE))
    draw = ImageDraw.Draw(gradient)
    for y in range(SIZE):
        t = y / (SIZE - 1)
        draw.line([(0, y), (SIZE, y)], fill=tuple(round(a + (b - a) * t) for a, b in zip(BACKGROUND_TOP, BACKGROUND_BOTTOM)))
    mask = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(mask).rounded_rectangle([40, 40, SIZE - 40, SIZE - 40], radius=200, fill=255)
    icon = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    icon.paste(gradient, (0, 0), mask)
    return icon


def circles() -> Image.Image:
    """Additive light: where two circles overlap the colour brightens, where all three meet it turns white."""
    light = Image.new("RGB", (SIZE, SIZE), (0, 0, 0))
    centre, orbit, radius = SIZE / 2, SIZE * 0.13, SIZE * 0.24
    for i, colour in enumerate(COLOURS):
        angle = math.radians(-90 + 120 * i)
        cx, cy = centre + orbit * math.cos(angle), centre + 20 + orbit * math.sin(angle)
        layer = Image.new("RGB", (SIZE, SIZE), (0, 0, 0))
        ImageDraw.Draw(layer).ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=tuple(c * 3 // 4 for c in colour))
        light = ImageChops.add(light, layer)
    return light


def draw_icon() -> Image.Image:
    icon = rounded_square()
    light = circles()
    alpha = light.convert("L").point(lambda v: 255 if v > 0 else 0).filter(ImageFilter.GaussianBlur(1.5))
    glow = light.filter(ImageFilter.GaussianBlur(28))
    icon.paste(glow, (0, 0), glow.convert("L").point(lambda v: min(255, v)))
    icon.paste(light, (0, 0), alpha)
    # Keep the rounded corners transparent after the glow.
    corners = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(corners).rounded_rectangle([40, 40, SIZE - 40, SIZE - 40], radius=200, fill=255)
    icon.putalpha(ImageChops.multiply(icon.getchannel("A"), corners))
    return icon


def main() -> None:
    ASSETS.mkdir(parents=True, exist_ok=True)
    icon = draw_icon()
    icon.resize((512, 512), Image.LANCZOS).save(ASSETS / "icon.png", optimize=True)
    icon.resize((256, 256), Image.LANCZOS).save(ASSETS / "icon.ico", sizes=[(s, s) for s in (16, 24, 32, 48, 64, 128, 256)])
    icon.save(ASSETS / "icon.icns")
    for name in ("icon.png", "icon.ico", "icon.icns"):
        print(f"wrote {ASSETS / name} ({(ASSETS / name).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
