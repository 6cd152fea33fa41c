"""Built-in sample inputs for `fusiondesk selftest`: one real photograph, one spoken sentence, one scan.

They ship inside the bundle (and the frozen app), so the self-test runs one real inference per model with
no user files and no network, and checks the answers, not only that something ran.
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from common import BuildContext, entry, espeak_wav, sample_images, source

SPEECH = "The quick brown fox jumped over the lazy dog."
DOCUMENT_LINES = ["FusionDesk offline test", "Invoice 2026-117", "Total due: 42 EUR"]
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def build(ctx: BuildContext, existing: dict[str, dict]) -> list[dict]:
    folder = ctx.model_dir("samples")
    photo = folder / "photo.jpg"
    cat = Image.fromarray(sample_images()["chelsea"])
    cat.thumbnail((320, 320))
    cat.save(photo, quality=90)

    speech = espeak_wav(SPEECH, folder / "speech.wav")

    document = folder / "document.png"
    page = Image.new("RGB", (640, 220), (250, 248, 240))
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(FONT, 30)
    for row, line in enumerate(DOCUMENT_LINES):
        draw.text((30, 25 + row * 60), line, fill=(20, 20, 20), font=font)
    page.save(document)

    return [
        entry(ctx, id="samples", task="selftest-samples", modality="multimodal", precision="n/a",
              files={"photo": photo, "speech": speech, "document": document},
              source=source("scikit-image"), license="photo: scikit-image sample data (BSD-3-Clause); others: made here",
              expect={"photo": "cat", "speech": "fox", "document": "invoice"}),
    ]
