"""Why `classify` and the PyTorch reference pipeline sometimes disagree (not a test): the same fp32 classifier
session, the same photos, only the decode and the resize changed, one change at a time.

The reference (bench/bench_commands.py's PyTorch loop, and build/image_step.py's verification) decodes every JPEG
in full and resizes the short side to 256 with bicubic filtering. The app decodes JPEGs reduced in the DCT (Pillow's
draft mode: 1/2, 1/4, 1/8 of the size, never below what the models need) because a full decode of a 6 Mpx photo
costs more than the classifier itself. This script measures, for each variant, top-1 agreement with the reference
path and the decode + preprocess time per photo, and lists the reference's top-2 probability gap on each
disagreement (a small gap is a near-tie that any resampling difference flips).

    .venv/bin/python bench/bench_agreement.py [--photos 300] [--seed 5]

Photos: random crops of scikit-image's astronaut, chelsea, coffee, rocket, camera and motorcycle, resized to
0.3-6 Mpx, JPEG quality 85-92 (photographs a person could take, each with something ImageNet can name).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.image import center_crop, normalize, preprocess_image, run_model, settings, to_layout  # noqa: E402
from engine.imaging import load_image  # noqa: E402
from engine.manifest import ModelBundle  # noqa: E402
from engine.pipeline import WORKING_MAX_SIDE  # noqa: E402
from engine.runtime import Runtime  # noqa: E402


def make_photos(count: int, seed: int, folder: Path) -> list[Path]:
    from skimage import data

    sources = [Image.fromarray(getattr(data, name)()).convert("RGB")
               for name in ("astronaut", "chelsea", "coffee", "rocket", "camera")]
    sources.append(Image.fromarray(data.stereo_motorcycle()[0]))
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        source = sources[i % len(sources)]
        w, h = source.size
        cw, ch = int(w * rng.uniform(0.4, 1)), int(h * rng.uniform(0.4, 1))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        scale = (rng.uniform(0.3, 6.0) * 1e6 / (cw * ch)) ** 0.5
        photo = source.crop((x, y, x + cw, y + ch)).resize((max(1, int(cw * scale)), max(1, int(ch * scale))),
                                                           Image.Resampling.BICUBIC)
        path = folder / f"{i:04d}.jpg"
        photo.save(path, "JPEG", quality=int(rng.integers(85, 93)))
        paths.append(path)
    return paths


def reference_input(image: Image.Image, resample) -> np.ndarray:
    """Short side to 256 with `resample`, centre crop 224, the model's normalisation (build/image_step.py's)."""
    w, h = image.size
    scale = 256 / min(w, h)
    resized = image.resize((max(256, round(w * scale)), max(256, round(h * scale))), resample)
    return to_layout(normalize(center_crop(np.asarray(resized), 224), 0.498, 0.502), "NCHW")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()

    runtime = Runtime(ModelBundle(ROOT / "assets" / "models"), device="cpu")
    session = runtime.session("image-classifier", "model")
    app_settings = settings(runtime)

    def logits(batch: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([run_model(session, np.stack(batch[i:i + 8]))[0] for i in range(0, len(batch), 8)])

    with tempfile.TemporaryDirectory() as tmp:
        paths = make_photos(args.photos, args.seed, Path(tmp))
        bicubic, bilinear = Image.Resampling.BICUBIC, Image.Resampling.BILINEAR
        reference = logits([reference_input(load_image(p), bicubic) for p in paths])
        top1 = reference.argmax(1)
        probs = np.exp(reference - reference.max(1, keepdims=True))
        probs = np.sort(probs / probs.sum(1, keepdims=True), 1)
        gaps = probs[:, -1] - probs[:, -2]
        variants = [
            ("full decode, bilinear", lambda p: reference_input(load_image(p), bilinear)),
            ("reduced decode (short side >= 256), bilinear",
             lambda p: reference_input(load_image(p, max_side=WORKING_MAX_SIDE, min_side=256), bilinear)),
            ("reduced decode (short side >= 256), bicubic: the app",
             lambda p: preprocess_image(load_image(p, max_side=WORKING_MAX_SIDE, min_side=256), app_settings)),
            ("reduced decode (short side >= 512), bicubic",
             lambda p: reference_input(load_image(p, max_side=1024, min_side=512), bicubic)),
            ("full decode, bicubic: the reference path", lambda p: reference_input(load_image(p), bicubic)),
        ]
        print(f"{len(paths)} photos (seed {args.seed}); fp32 classifier session; agreement with the reference path\n")
        print("| decode and resize | top-1 agreement | decode + preprocess, ms/photo | reference top-2 gap at each "
              "disagreement |")
        print("|---|---:|---:|---|")
        for name, prepare in variants:
            started = time.perf_counter()
            batch = [prepare(p) for p in paths]
            seconds = time.perf_counter() - started
            got = logits(batch).argmax(1)
            differ = np.flatnonzero(got != top1)
            shown = ", ".join(f"{g:.3f}" for g in sorted(gaps[differ])[:10]) + (" ..." if len(differ) > 10 else "")
            print(f"| {name} | {np.mean(got == top1):.1%} | {seconds / len(paths) * 1000:.1f} | {shown or '-'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
