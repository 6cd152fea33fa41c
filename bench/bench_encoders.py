"""Benchmark: the app's image and text encoders against their PyTorch references, in one run.

    build/.venv/bin/python bench/bench_encoders.py [--quick] [--threads 2]

Runs in the export environment (it needs torch and sentence-transformers for the references). Measures
- EfficientNet-Lite0: PyTorch fp32 vs the bundle's classifier (fp32, or the int8/fp32 cascade), batch 8, model only
  (ours through the app's multi-batch call, which re-runs the cascade's close calls in pooled batches of 8; and the
  same with the manifest's split_batches off);
- the same end to end from JPEG files (decode + preprocess + model; the app decodes JPEGs at reduced size);
- MiniLM: sentence-transformers vs the bundle's ONNX encoder, batch 32;
- agreement: image top-1 agreement and logit cosine, text embedding cosine.
Prints a markdown table. Not a test: numbers depend on the machine and on what else is running.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "build"))


def timed(fn, repeats: int) -> float:
    """Best wall time of `repeats` runs after one warm-up run."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def photo_files(folder: Path, count: int) -> list[Path]:
    """JPEGs of scikit-image photos, upscaled to phone-camera size so decoding costs what it costs in real use."""
    from PIL import Image

    from common import sample_images

    photos = sample_images()
    names = [n for n in ("chelsea", "coffee", "rocket", "astronaut", "motorcycle_left", "horse", "cat") if n in photos]
    paths = []
    for i in range(count):
        name = names[i % len(names)]
        image = Image.fromarray(photos[name])
        scale = 2400 / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
        path = folder / f"{i:03d}_{name}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def bench_image(runtime, unsplit, args, rows: list[tuple[str, str, str]]) -> None:
    import torch
    from PIL import Image

    from engine.image import MODEL_ID, classify_files, preprocess_batch, run_classifier_batches, settings, softmax, top2_gap
    from image_step import load_torch_model, make_set, two_output_module
    from common import sample_images

    torch.set_num_threads(args.threads)
    reference = two_output_module(load_torch_model())
    prep = settings(runtime)
    # Crops of every photo (a seed the build's calibration and validation sets do not use), in batches of 8.
    # The whole set, not one batch: with the int8/fp32 cascade the cost depends on how many images are close
    # calls, so the figure must come from a realistic mix.
    validation = make_set(sample_images(), args.per_photo, seed=11)
    batches = [validation[i:i + 8] for i in range(0, len(validation), 8)]

    def torch_run(x):
        with torch.no_grad():
            return reference(x)

    def torch_all():
        return [torch_run(torch.from_numpy(b))[0].numpy() for b in batches]

    def ours_all(engine=runtime):  # the app's multi-batch call: close calls re-run in fp32 in pooled batches of 8
        return run_classifier_batches(engine, batches)[0]

    repeats = max(1, args.repeats // 5)
    t_torch = timed(torch_all, repeats)
    t_onnx = timed(ours_all, repeats)
    t_unsplit = timed(lambda: ours_all(unsplit), repeats)
    rows.append((f"EfficientNet-Lite0, batch 8, model only ({len(validation)} crops)",
                 f"{len(validation) / t_torch:.0f} img/s",
                 f"{len(validation) / t_onnx:.0f} img/s = {t_torch / t_onnx:.1f}x "
                 f"({len(validation) / t_unsplit:.0f} img/s with batches not split across cores)"))

    ref_logits = np.concatenate(torch_all())
    our_logits = ours_all()
    agree = float((ref_logits.argmax(1) == our_logits.argmax(1)).mean())
    cos = (ref_logits * our_logits).sum(1) / (np.linalg.norm(ref_logits, axis=1) * np.linalg.norm(our_logits, axis=1))
    confident = softmax(ref_logits).max(1) >= 0.5
    rows.append((f"image top-1 agreement ({len(validation)} crops)", "reference",
                 f"{agree:.3f} (confident crops: {float((ref_logits.argmax(1) == our_logits.argmax(1))[confident].mean()):.3f})"))
    rows.append(("image logit cosine mean / min", "reference", f"{cos.mean():.4f} / {cos.min():.4f}"))
    cascade = runtime.bundle.entry(MODEL_ID).extra.get("cascade")
    if cascade:
        from engine.image import run_model

        fast = runtime.session(MODEL_ID, cascade["fast_file"])
        fast_logits = np.concatenate([run_model(fast, b)[0] for b in batches])
        share = float((top2_gap(fast_logits) < cascade["margin"]).mean())
        rows.append(("image cascade: crops re-run in fp32 (int8 top-2 gap < margin)", "",
                     f"{share:.0%} (margin {cascade['margin']})"))

    with tempfile.TemporaryDirectory() as folder:
        paths = photo_files(Path(folder), args.files)

        def torch_end_to_end():
            for start in range(0, len(paths), 8):
                images = [Image.open(p).convert("RGB") for p in paths[start:start + 8]]
                torch_run(torch.from_numpy(preprocess_batch(images, prep)))

        t_torch_e2e = timed(torch_end_to_end, max(1, args.repeats // 3))
        t_onnx_e2e = timed(lambda: classify_files(paths, runtime=runtime, batch_size=8), max(1, args.repeats // 3))
    rows.append((f"EfficientNet end to end, {len(paths)} JPEGs 2400 px (decode+preprocess+model)",
                 f"{len(paths) / t_torch_e2e:.0f} img/s", f"{len(paths) / t_onnx_e2e:.0f} img/s"))


def bench_text(runtime, unsplit, args, rows: list[tuple[str, str, str]]) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    from engine.text import encoder
    from text_step import _package_folder, evaluation_sentences

    torch.set_num_threads(args.threads)
    sentences = evaluation_sentences()[: args.sentences]
    model = SentenceTransformer(str(_package_folder()), device="cpu")
    ours = encoder(runtime)
    t_ref = timed(lambda: model.encode(sentences, batch_size=32, normalize_embeddings=True), args.repeats // 2 or 1)
    t_ours = timed(lambda: ours.embed(sentences, batch_size=32), args.repeats // 2 or 1)
    t_unsplit = timed(lambda: encoder(unsplit).embed(sentences, batch_size=32), args.repeats // 2 or 1)
    rows.append((f"MiniLM, batch 32, {len(sentences)} sentences", f"{len(sentences) / t_ref:.0f} sent/s",
                 f"{len(sentences) / t_ours:.0f} sent/s = {t_ref / t_ours:.1f}x "
                 f"({len(sentences) / t_unsplit:.0f} sent/s with batches not split across cores)"))
    ref = model.encode(sentences, batch_size=32, normalize_embeddings=True)
    cos = (ref * ours.embed(sentences, batch_size=32)).sum(1)
    rows.append(("text embedding cosine mean / min", "reference", f"{cos.mean():.4f} / {cos.min():.4f}"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short smoke run with few repeats and inputs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=["image", "text"], help="run one half")
    args = parser.parse_args(argv)
    args.repeats = 2 if args.quick else 10
    args.per_photo = 2 if args.quick else 12
    args.files = 8 if args.quick else 32
    args.sentences = 64 if args.quick else 298

    from engine.manifest import ModelBundle
    from engine.runtime import Runtime

    bundle = ModelBundle(ROOT / "assets" / "models")
    runtime = Runtime(bundle, device="cpu", threads=args.threads)
    # The same models with every batch run whole on all threads (the manifest's split_batches ignored).
    unsplit = Runtime(bundle, device="cpu", threads=args.threads, split_batches=False)
    rows: list[tuple[str, str, str]] = []
    if args.only in (None, "image"):
        bench_image(runtime, unsplit, args, rows)
    if args.only in (None, "text"):
        bench_text(runtime, unsplit, args, rows)
    precisions = {m: runtime.bundle.entry(m).precision for m in ("image-classifier", "text-encoder")
                  if m in runtime.bundle}
    print(f"\n{args.threads} threads; bundle precisions: {precisions}\n")
    print("| what | PyTorch reference | FusionDesk (ONNX Runtime) |")
    print("|---|---|---|")
    for what, ref, ours in rows:
        print(f"| {what} | {ref} | {ours} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
