"""Benchmark of Teach (not a test): training time and cross-validated accuracy of each candidate head against the
nearest-class-mean baseline, on the same feature blocks. Prints a markdown table.

    .venv/bin/python bench/bench_teach.py                 # real encoders on generated inputs + synthetic scaling
    .venv/bin/python bench/bench_teach.py --synthetic-only

Real sets (made with the tests' generators): crops of four scikit-image photographs, two espeak-ng voices saying
different sentences, rendered invoices versus letters. Each set is perceived once; every candidate is then
cross-validated on the same blocks. Synthetic sets (low-rank class signal, missing modalities) show how training
time grows with hundreds of examples.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from engine import teach  # noqa: E402


def photo_set(folder: Path, per_class: int) -> Path:
    from PIL import Image
    from skimage import data

    from test_teach import crops

    for index, name in enumerate(("astronaut", "chelsea", "coffee", "rocket")):
        (folder / name).mkdir(parents=True)
        for i, shot in enumerate(crops(Image.fromarray(getattr(data, name)()).convert("RGB"), per_class, seed=index)):
            shot.save(folder / name / f"{i}.jpg", quality=90)
    return folder


def voice_set(folder: Path, per_class: int) -> Path:
    from conftest import speak
    from test_teach import SENTENCES, VOICES

    for label, voice in VOICES.items():
        (folder / label).mkdir(parents=True)
        for i in range(per_class):
            speak(SENTENCES[i % len(SENTENCES)], folder / label / f"{i}.wav", voice=voice, wpm=125 + 10 * (i % 3))
    return folder


def document_set(folder: Path, per_class: int) -> Path:
    from test_teach import documents, render

    for kind in ("invoice", "letter"):
        (folder / kind).mkdir(parents=True)
        for i, lines in enumerate(documents(kind, per_class, 0)):
            render(folder / kind / f"{i}.png", lines, seed=i)
    return folder


def synthetic_set(per_class: int, classes: int = 5):
    from test_teach import synthetic

    return synthetic(per_class, classes, seed=7)


def measure(name: str, features: teach.Features, y: np.ndarray, folds: int, perceive_s: float | None) -> list[str]:
    classes = int(y.max()) + 1
    scores = teach.cross_validate(features, y, classes, folds)
    best = teach.choose(scores)
    rows = []
    for score in scores:
        started = time.perf_counter()
        teach.TrainedModel.fit(score.kind, features, y, classes)
        fit_s = time.perf_counter() - started
        rows.append(f"| {name} | {len(y)} | {', '.join(features.dims)} | {score.kind}{' **(chosen)**' if score is best else ''} "
                    f"| {score.accuracy:.1%} | {score.log_loss:.3f} | {score.seconds:.2f} | {fit_s:.2f} | "
                    f"{'' if perceive_s is None else f'{perceive_s:.1f}'} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic-only", action="store_true")
    parser.add_argument("--per-class", type=int, default=12, help="examples per class in the real sets")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    print("| set | examples | blocks | model | CV accuracy | CV log-loss | CV seconds | final fit seconds | perceive seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    if not args.synthetic_only:
        from engine.runtime import Runtime
        from engine.manifest import ModelBundle

        runtime = Runtime(ModelBundle(ROOT / "assets" / "models"))
        speech = teach.speech_model_setting(runtime)
        for name, make in (("photo crops (4 photos)", photo_set), ("espeak-ng voices (2)", voice_set),
                           ("documents (invoice/letter)", document_set)):
            with tempfile.TemporaryDirectory() as tmp:
                classes, examples = teach.collect_examples(make(Path(tmp), args.per_class))
                started = time.perf_counter()
                kept, items, _ = teach.perceive_examples(examples, runtime, speech)
                perceive_s = time.perf_counter() - started
            y = np.array([examples[row].label for row in kept])
            for row in measure(name, teach.stack_features(items), y, args.folds, perceive_s):
                print(row, flush=True)
    for per_class in (20, 60):
        features, y = synthetic_set(per_class)
        for row in measure(f"synthetic, 5 classes", features, y, args.folds, None):
            print(row, flush=True)


if __name__ == "__main__":
    main()
