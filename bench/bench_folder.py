"""Benchmark of batch folder mode (not a test): files per second for images, audio minutes per second, and peak
memory, against a naive sequential loop (decode the full image, one file at a time) in the same run.

    .venv/bin/python bench/bench_folder.py                   # 2000 images, 24 recordings
    .venv/bin/python bench/bench_folder.py --images 500 --naive 150 --recordings 8

The images are made from scikit-image's sample photographs with random crops and resizes (640 to 3000 px
on the long side, as from phones and cameras). Each measurement runs in its own process so that its
peak memory (ru_maxrss) is its own. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SENTENCES = [
    "the quarterly budget meeting moved to thursday afternoon",
    "please remember to water the tomato plants in the greenhouse every evening",
    "the train to the airport leaves from platform seven at half past nine",
    "our new office opens next monday with a small party for the whole team",
]


def make_images(folder: Path, count: int, seed: int = 0) -> None:
    import numpy as np
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    sources = [Image.fromarray(getattr(data, name)()).convert("RGB")
               for name in ("astronaut", "chelsea", "coffee", "rocket", "camera")]
    for i in range(count):
        source = sources[i % len(sources)]
        w, h = source.size
        cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = source.crop((x, y, x + cw, y + ch))
        side = int(rng.integers(640, 3001))
        scale = side / max(crop.size)
        image = crop.resize((max(1, int(crop.width * scale)), max(1, int(crop.height * scale))), Image.BILINEAR)
        sub = folder / f"set{i % 10}"
        sub.mkdir(parents=True, exist_ok=True)
        image.save(sub / f"img{i:05d}.jpg", quality=88)


def make_recordings(folder: Path, count: int) -> float:
    """espeak-ng recordings of two to three sentences; returns their total minutes."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    seconds = 0.0
    for i in range(count):
        text = ". ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(2 + i % 2))
        raw = folder / f"rec{i:03d}.raw.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
        out = folder / f"rec{i:03d}.wav"
        subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(out)], check=True)
        raw.unlink()
        seconds += sf.info(str(out)).duration
    return seconds / 60


# -- the measured runs (each in its own process) ---------------------------------------------------------------


def run_pipeline(folder: str, tasks: str, workers: int) -> dict:
    from engine.folder import BatchOptions, run_batch

    out = Path(tempfile.mkdtemp()) / "results.jsonl"
    start = time.perf_counter()
    options = BatchOptions(tasks=tuple(tasks.split(",")), workers=workers, batch_size=16, index=False)
    summary = run_batch(folder, out, options)
    return {"files": summary.ok + summary.failed, "failed": summary.failed, "seconds": time.perf_counter() - start}


def run_naive(folder: str, tasks: str, limit: int) -> dict:
    """What a first script would do: every file decoded in full, perceived alone, one after another."""
    from PIL import Image

    from engine.audio import load_audio
    from engine.filetypes import modality_of
    from engine.perceive import Perceiver, PerceptionOptions

    perceiver = Perceiver(options=PerceptionOptions(ocr="read" in tasks))
    paths = sorted(p for p in Path(folder).rglob("*") if p.is_file())[:limit]
    start = time.perf_counter()
    for path in paths:
        if modality_of(path) == "image":
            with Image.open(path) as image:
                perceiver.perceive_images([image.convert("RGB")], [str(path)])
        else:
            perceiver.perceive_audio(load_audio(path), str(path))
    return {"files": len(paths), "failed": 0, "seconds": time.perf_counter() - start}


def child(args) -> None:
    if args.child == "pipeline":
        result = run_pipeline(args.folder, args.tasks, args.workers)
    else:
        result = run_naive(args.folder, args.tasks, args.limit)
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps(result))


def measure(mode: str, folder: Path, tasks: str, workers: int = 4, limit: int = 0) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--folder", str(folder), "--tasks", tasks,
               "--workers", str(workers), "--limit", str(limit)]
    done = subprocess.run(command, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def search_timing(items: int = 100_000) -> tuple[float, float]:
    """(first search incl. loading the matrix from SQLite, a later search) over `items` stored vectors."""
    import numpy as np

    os.environ.setdefault("FUSIONDESK_DATA_DIR", tempfile.mkdtemp())
    from engine.index import FolderIndex

    folder = Path(tempfile.mkdtemp())
    vectors = np.random.default_rng(0).standard_normal((items, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with FolderIndex(folder) as index, index._transaction() as con:
        con.executemany("INSERT INTO items (path, size, mtime, hash, modality, vector, space) VALUES (?, 1, 0, '', "
                        "'image', ?, 'x')", ((f"f{i}.jpg", v.tobytes()) for i, v in enumerate(vectors)))
    with FolderIndex(folder) as index:
        start = time.perf_counter()
        index.search_vector(vectors[1], top=10)
        first = time.perf_counter() - start
        start = time.perf_counter()
        index.search_vector(vectors[2], top=10)
        later = time.perf_counter() - start
    return first, later


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--naive", type=int, default=300, help="images the (slow) naive loop processes")
    parser.add_argument("--recordings", type=int, default=24)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--tasks", default="classify", help="image tasks to time (classify; classify,read adds OCR)")
    parser.add_argument("--child", choices=["pipeline", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    work = Path(tempfile.mkdtemp(prefix="fusiondesk-bench-"))
    print(f"generating {args.images} images and {args.recordings} recordings in {work} ...", file=sys.stderr)
    make_images(work / "images", args.images)
    small = work / "images-small"
    make_images(small, min(args.images, 500), seed=1)
    minutes = make_recordings(work / "audio", args.recordings) if args.recordings else 0.0

    rows = []
    for label, folder in (("images", work / "images"), (f"{min(args.images, 500)} other images (memory check)", small)):
        result = measure("pipeline", folder, args.tasks, args.workers)
        rows.append((f"batch pipeline, {label}", result, f"{result['files'] / result['seconds']:.1f} files/s"))
    naive = measure("naive", work / "images", args.tasks, limit=args.naive)
    rows.append((f"naive loop, first {args.naive} images", naive, f"{naive['files'] / naive['seconds']:.1f} files/s"))
    if args.recordings:
        audio = measure("pipeline", work / "audio", "transcribe", args.workers)
        rows.append((f"batch pipeline, {args.recordings} recordings ({minutes:.1f} min)", audio,
                     f"{minutes / audio['seconds']:.2f} audio min/s"))
        naive_audio = measure("naive", work / "audio", "transcribe", limit=args.recordings)
        rows.append(("naive loop, same recordings", naive_audio, f"{minutes / naive_audio['seconds']:.2f} audio min/s"))
    first, later = search_timing()

    print(f"\nTasks for images: {args.tasks}; {args.workers} decode workers; {os.cpu_count()} CPUs.\n")
    print("| run | files | seconds | speed | peak memory |")
    print("|---|---:|---:|---:|---:|")
    for label, result, speed in rows:
        print(f"| {label} | {result['files']} | {result['seconds']:.1f} | {speed} | {result['peak_mb']:.0f} MB |")
    print(f"\nSearch over 100,000 indexed items: {first * 1000:.0f} ms for the first query (loads the matrix "
          f"from SQLite), {later * 1000:.1f} ms for each later one.")


if __name__ == "__main__":
    main()
