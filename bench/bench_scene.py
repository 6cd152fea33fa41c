"""Scene benchmark (not a test): images per second for object detection and person segmentation.

1. Model only, fp32 vs int8 (static QDQ): the ONNX files the build left in build/cache/scene/ (both
   precisions are made there; the bundle ships the one that kept its accuracy), batch 1 and batch 8.
2. End to end through engine.scene with the shipped bundle: detect() and segment() on photos of mixed sizes
   (preprocessing, decoding, NMS, mask resize included).
3. The live view: one 640x480 webcam-sized frame at a time, detect + draw the boxes, frames per second;
   and background blur (segment + blur) per frame.

    .venv/bin/python bench/bench_scene.py [--seconds 3] [--threads N] [--json out.json]

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CACHE = ROOT / "build" / "cache" / "scene"


def photos() -> list[np.ndarray]:
    from skimage import data

    return [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.stereo_motorcycle()[0],
            np.stack([data.camera()] * 3, axis=-1)]


def rate(work, items: int, seconds: float) -> float:
    """Items per second of `work()` (which handles `items` items), repeated for about `seconds`."""
    work()  # warm-up: session load, first-run allocations
    started, runs = time.perf_counter(), 0
    while time.perf_counter() - started < seconds or runs < 2:
        work()
        runs += 1
    return runs * items / (time.perf_counter() - started)


def model_only(rows: list, threads: int, seconds: float) -> None:
    import onnxruntime as ort

    files = {"detection (NanoDet-m 416)": ("nanodet", (3, 416, 416)),
             "segmentation (selfie 256)": ("selfie", (256, 256, 3))}
    for task, (stem, shape) in files.items():
        for precision in ("fp32", "int8"):
            path = CACHE / f"{stem}_{precision}.onnx"
            if not path.is_file():
                continue
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            for batch in (1, 8):
                feed = {name: np.random.default_rng(0).random((batch, *shape), dtype=np.float32)}
                rows.append((task, f"model only, {precision}", batch,
                             rate(lambda: session.run(None, feed), batch, seconds), f"{path.stat().st_size / 1e6:.1f} MB"))


def end_to_end(rows: list, runtime, seconds: float) -> None:
    from engine import scene

    images = photos()
    detector = runtime.bundle.entry(scene.DETECTOR_ID)
    segmenter = runtime.bundle.entry(scene.SEGMENTER_ID)
    rows.append(("detection (NanoDet-m 416)", f"engine.detect, shipped {detector.precision}", len(images),
                 rate(lambda: scene.detect(images, runtime=runtime), len(images), seconds), "photos 300-741 px"))
    rows.append(("segmentation (selfie 256)", f"engine.segment, shipped {segmenter.precision}", len(images),
                 rate(lambda: scene.segment(images, runtime=runtime), len(images), seconds), "photos 300-741 px"))

    from PIL import Image

    frame = np.asarray(Image.fromarray(images[4]).resize((640, 480)))
    names = scene.class_names(runtime)

    def boxes_frame():
        scene.draw_detections(frame, scene.detect([frame], runtime=runtime)[0], names)

    def blur_frame():
        scene.blur_background(frame, scene.segment([frame], runtime=runtime)[0])

    rows.append(("live view: detect + draw boxes", f"shipped {detector.precision}", 1, rate(boxes_frame, 1, seconds),
                 "640x480 frame"))
    rows.append(("live view: background blur", f"shipped {segmenter.precision}", 1, rate(blur_frame, 1, seconds),
                 "640x480 frame"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: physical cores)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)

    from engine.manifest import ModelBundle
    from engine.runtime import Runtime

    runtime = Runtime(ModelBundle(ROOT / "assets" / "models"), device="cpu", threads=args.threads)
    rows: list[tuple] = []
    model_only(rows, runtime.threads, args.seconds)
    end_to_end(rows, runtime, args.seconds)

    print(f"Scene models, CPU, {runtime.threads} threads\n")
    print("| task | what runs | batch | images/s | note |")
    print("|---|---|---:|---:|---|")
    for task, what, batch, per_second, note in rows:
        print(f"| {task} | {what} | {batch} | {per_second:.1f} | {note} |")
    if args.json:
        args.json.write_text(json.dumps([dict(zip(["task", "what", "batch", "images_per_second", "note"], row))
                                         for row in rows], indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
