"""Benchmark of WHOLE COMMANDS as a user meets them (start-up included), against plain peer pipelines on the same
files, in one run. Not a test: the numbers depend on the machine and on what else is running.

Reproduce the README figures (2 cores, quiet machine):

    .venv/bin/python bench/bench_commands.py --photos 200 --folder 500 --naive 100 --json bench-commands.json

A short smoke run (a shared machine; figures are noisy):

    .venv/bin/python bench/bench_commands.py --photos 30 --folder 40 --naive 10

What it measures, each command and each peer in its own process, so that its wall time and its peak memory
(ru_maxrss of that one child, from os.wait4) are its own:

1. `fusiondesk classify <--photos files> --json` (.venv/bin/fusiondesk, the whole process) against a PyTorch
   reference loop in build/.venv (the whole process too, imports included): EfficientNet-Lite0 loaded as
   build/image_step.py's load_torch_model() loads it, PIL full decode + EXIF transpose + RGB, short side to 256
   BICUBIC, centre crop 224, (x/255 - 0.498)/0.502, NCHW, batches of 8, torch.no_grad, torch.set_num_threads(2).
   Seconds, peak MB, speed ratio (reference seconds / ours), top-1 agreement of our labels[0] with the
   reference's argmax class name (the bundle's ImageNet names), and every disagreement with the reference's
   top-2 probability gap (a small gap is a near-tie, a large one a real difference).
2. `fusiondesk batch <folder> --out results.jsonl` (default tasks; it also indexes the folder as it goes),
   the same with --no-index (results only), and `fusiondesk index <folder>` on --folder photos, each with its own empty FUSIONDESK_DATA_DIR / FUSIONDESK_CONFIG_DIR (a fresh index every time, no
   user settings), against a NAIVE SEQUENTIAL LOOP in .venv over the first --naive of the same photos, one
   file at a time, no gating, public engine API only (the table prints the steps it runs):
     batch peer: engine.imaging.load_image(path) at full size -> engine.image.classify_images([img]) ->
                 engine.ocr.read_text(img) -> engine.text.embed_texts([ocr text]) when there is text (what
                 `batch`'s default tasks use; the detector runs only where labels name objects, engine.plan).
     index peer: the same, plus the objects' names embedded, the ImageNet probabilities bridged into the text
                 space (engine.fusion.bridge_concepts) and the fusion head (engine.fusion.fuse) for the vector.
                 It stores nothing (no SQLite, no file hashes), which flatters it slightly.
   Compared like for like: `batch --no-index` with the batch peer; `batch` (rows and index) and `index` with
   the index peer. files/s for each (ours: files / whole command; naive: files / its loop, interpreter start-up left out), the
   ratio ours / naive, and peak MB.
3. Truthfulness on the same photos, read tolerantly from the batch results, the index's stored OCR text and the
   classify JSON: the share of photos WITHOUT text (no sign, and a source photograph without lettering of its
   own) that got OCR text, the share of photos WITH text whose sign was read (at least half its words), and the
   photos given a "person" object although their source photograph has no person in it.
Every run also reports its CPU seconds (user + system, from the same wait4): on a shared machine they move less
than wall time.

The photo set is made once per --seed under --work (default /tmp/fusiondesk-bench-commands) and reused: crops
and resizes of scikit-image's colour photographs (and the grey cameraman), 0.3 to 6 megapixels, JPEG quality
85-92, most in subfolders, about 5% stored sideways with EXIF orientation 6, and 10% with a rendered sign
(tests/docs.py render(): shop signs, notices, street names) pasted in at 10-40% of the photo's width, slightly
turned. manifest.json beside the photos says which have text (and what it says) and which source each came from.

Every command's stdout and stderr are kept under WORK/runs/<time>/; a command that exits non-zero is reported
in the tables and its stderr tail printed, and the exit code of this script is then 1.

The script finds everything from its own place (ROOT = its parent's parent): to time another checkout's engine
with the same environments, put a copy of this file in that checkout's bench/, link .venv, build/.venv and
assets/models into it, and run it there with PYTHONPATH=<that checkout> (the app is installed editable, and
PYTHONPATH comes first).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP_PYTHON = ROOT / ".venv" / "bin" / "python"
FUSIONDESK = ROOT / ".venv" / "bin" / "fusiondesk"
TORCH_PYTHON = ROOT / "build" / ".venv" / "bin" / "python"

GENERATOR_VERSION = 2  # bump when the photo recipe changes: cached sets of another version are made again
# scikit-image photographs: name -> (a person in it, lettering of its own in it). People: astronaut (Eileen Collins),
# camera (the cameraman). Lettering: the astronaut's mission patch (crew names), the motorcycle's YAMAHA tank and
# the labelled boxes behind it. Photos from lettered sources count neither as "with text" nor "without text".
SOURCES = {
    "astronaut": (True, True), "chelsea": (False, False), "coffee": (False, False), "rocket": (False, False),
    "camera": (True, False), "motorcycle_left": (False, True), "hubble_deep_field": (False, False),
    "immunohistochemistry": (False, False), "retina": (False, False),
}
SIGNS = [
    ["BAKERY", "Fresh bread daily"],
    ["OPEN", "Mon - Sat 9am to 7pm"],
    ["NO PARKING", "Loading zone"],
    ["Elm Street"],
    ["KEEP OUT", "Private property"],
    ["PHARMACY"],
    ["Station Road", "City centre 2 km"],
    ["SALE", "50% off all shoes"],
    ["Please close the gate"],
    ["CAFE ROMA", "Espresso - Cakes - Wine"],
    ["Harbour Lane"],
    ["WET PAINT"],
    ["Platform 3", "Trains to Lisbon"],
    ["Bus stop", "Lines 12, 27 and 40"],
    ["Queen Victoria Road"],
    ["Closed for renovation", "Reopening in May"],
    ["HARDWARE STORE", "Keys cut while you wait"],
    ["Fire exit", "Keep clear"],
]
SIGN_COLOURS = [  # (ink, background)
    ((18, 18, 22), (246, 243, 235)), ((250, 250, 250), (20, 90, 50)), ((255, 255, 255), (25, 55, 140)),
    ((200, 20, 20), (250, 250, 245)), ((20, 20, 20), (245, 200, 40)), ((255, 255, 255), (170, 25, 30)),
]
SIGN_FONTS = ["DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf"]


# --------------------------------------------------------------------------------------------- the photo set


def _source_images() -> dict:
    from PIL import Image
    from skimage import data

    images = {}
    for name in SOURCES:
        try:
            array = data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(data, name)()
        except Exception as exc:  # a loader that needs a download this machine cannot make
            print(f"  (skipping scikit-image {name}: {type(exc).__name__})", file=sys.stderr)
            continue
        images[name] = Image.fromarray(array).convert("RGB")
    if not images:
        raise SystemExit("no scikit-image photographs could be loaded")
    return images


def _sign(rng, lines: list[str]):
    """A rendered sign (tests/docs.py), recoloured, as (RGB image, L mask) not yet turned."""
    from PIL import Image, ImageOps

    sys.path.insert(0, str(ROOT / "tests"))
    from docs import render

    size = int(rng.integers(40, 64))
    doc = render(lines, font=SIGN_FONTS[int(rng.integers(len(SIGN_FONTS)))], size=size, margin=int(size * 0.7),
                 angle=0.0, noise=float(rng.uniform(2, 6)), blur=float(rng.uniform(0.3, 0.8)),
                 seed=int(rng.integers(1 << 30)))
    ink, paper = SIGN_COLOURS[int(rng.integers(len(SIGN_COLOURS)))]
    sign = ImageOps.colorize(doc.image.convert("L"), black=ink, white=paper)
    return sign, Image.new("L", sign.size, 255)


def make_photo(index: int, seed: int, sources: dict, pool: Path) -> dict:
    """Photo `index` of the set: the same pixels and the same file for the same (seed, index)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng([seed, index])
    names = sorted(sources)
    name = names[index % len(names)]
    source = sources[name]
    w, h = source.size
    cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    crop = source.crop((x, y, x + cw, y + ch))
    megapixels = float(rng.uniform(0.3, 6.0))
    scale = math.sqrt(megapixels * 1e6 / (cw * ch))
    photo = crop.resize((max(1, round(cw * scale)), max(1, round(ch * scale))), Image.Resampling.BICUBIC)
    entry = {"index": index, "source": name, "person": SOURCES[name][0], "source_lettering": SOURCES[name][1],
             "width": photo.width, "height": photo.height,
             "megapixels": round(photo.width * photo.height / 1e6, 2), "text": None}
    if index % 10 == 3:  # exactly one photo in ten, spread over the sources (9 of them: coprime with 10)
        lines = SIGNS[int(rng.integers(len(SIGNS)))]
        sign, mask = _sign(rng, lines)
        width = max(8, int(photo.width * rng.uniform(0.10, 0.40)))
        height = max(4, round(sign.height * width / sign.width))
        sign = sign.resize((width, height), Image.Resampling.LANCZOS)
        mask = mask.resize((width, height), Image.Resampling.BILINEAR)
        angle = float(rng.uniform(-8, 8))
        sign = sign.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
        mask = mask.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
        px = int(rng.integers(0, max(1, photo.width - sign.width)))
        py = int(rng.integers(0, max(1, photo.height - sign.height)))
        photo.paste(sign, (px, py), mask)
        entry["text"] = {"lines": lines, "sign_width_px": width, "sign_height_px": height, "angle": round(angle, 1),
                         "box": [px, py, px + sign.width, py + sign.height]}
    if index % 5 == 0:
        rel = f"IMG_{index:05d}.jpg"
    else:
        album = ["2023 holiday", "2024/garden", "phone/DCIM/Camera", "scans and shop"][index % 4]
        rel = f"{album}/IMG_{index:05d}.jpg"
    quality = int(rng.integers(85, 93))
    sideways = rng.random() < 0.05
    path = pool / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if sideways:  # pixels stored turned; the EXIF tag says "turn 90 degrees clockwise to view"
        exif = Image.Exif()
        exif[0x0112] = 6
        photo.transpose(Image.Transpose.ROTATE_90).save(path, quality=quality, exif=exif.tobytes())
    else:
        photo.save(path, quality=quality)
    entry.update(rel=rel, quality=quality, exif_orientation=6 if sideways else 1)
    return entry


def photo_set(work: Path, count: int, seed: int) -> tuple[Path, list[dict]]:
    """The first `count` photos of the seeded set under WORK/photos-s<seed>/pool, made where missing."""
    base = work / f"photos-s{seed}"
    pool = base / "pool"
    manifest_path = base / "manifest.json"
    entries: list[dict] = []
    if manifest_path.is_file():
        found = json.loads(manifest_path.read_text())
        if found.get("version") == GENERATOR_VERSION:
            entries = [e for e in found["photos"] if (pool / e["rel"]).is_file()]
            entries = entries[: next((i for i, e in enumerate(entries) if e["index"] != i), len(entries))]
        else:
            shutil.rmtree(base, ignore_errors=True)
    if len(entries) < count:
        try:
            import skimage  # noqa: F401  (the app's .venv has it with the test extras)
        except ImportError:
            if not TORCH_PYTHON.exists():
                raise SystemExit("scikit-image is needed to make the photos: .venv/bin/pip install scikit-image")
            subprocess.run([str(TORCH_PYTHON), __file__, "--child", "photos", "--work", str(work), "--seed", str(seed),
                            "--photos", str(count)], check=True)
            return photo_set(work, count, seed)
        print(f"making photos {len(entries)}..{count - 1} in {pool} ...", file=sys.stderr)
        sources = _source_images()
        for index in range(len(entries), count):
            entries.append(make_photo(index, seed, sources, pool))
            if (index + 1) % 50 == 0:
                print(f"  {index + 1}/{count}", file=sys.stderr)
        manifest_path.write_text(json.dumps({"version": GENERATOR_VERSION, "seed": seed, "photos": entries}, indent=1))
    return pool, entries[:count]


def folder_of(work: Path, seed: int, pool: Path, entries: list[dict]) -> Path:
    """A folder holding exactly these photos (hard links into the pool, same relative paths)."""
    folder = work / f"photos-s{seed}" / f"folder-{len(entries)}"
    marker = folder.with_name(folder.name + ".done")
    if marker.is_file() and folder.is_dir():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    for entry in entries:
        target = folder / entry["rel"]
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(pool / entry["rel"], target)
        except OSError:
            shutil.copy2(pool / entry["rel"], target)
    marker.write_text("ok\n")
    return folder


# ------------------------------------------------------------------------------------------ measured processes


def measure(name: str, argv: list[str], logs: Path, env: dict | None = None, timeout: float | None = None) -> dict:
    """Run one command in its own process: wall seconds, peak MB (ru_maxrss of that child), exit code, logs."""
    stdout, stderr = logs / f"{name}.stdout", logs / f"{name}.stderr"
    (logs / f"{name}.cmd").write_text(" ".join(_quote(a) for a in argv) + "\n")
    print(f"running {name}: {' '.join(_quote(a) for a in argv)[:300]}", file=sys.stderr)
    timed_out = threading.Event()
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=ROOT,
                                env=env or dict(os.environ), start_new_session=True)

        def kill() -> None:
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        if timer:
            timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: tell Popen so it does not wait again
    result = {"name": name, "argv": argv, "rc": proc.returncode, "seconds": seconds,
              "peak_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime, "stdout": str(stdout), "stderr": str(stderr),
              "timed_out": timed_out.is_set()}
    if proc.returncode != 0:
        tail = stderr.read_text(errors="replace")[-2500:]
        print(f"\n!! {name} exited with {proc.returncode}{' (timed out)' if timed_out.is_set() else ''}; "
              f"stderr tail ({stderr}):\n{tail}\n", file=sys.stderr)
    return result


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def isolated_env(base: Path) -> dict:
    """Environment for one of our runs: an empty user data folder and config folder of its own."""
    shutil.rmtree(base, ignore_errors=True)
    (base / "data").mkdir(parents=True)
    (base / "config").mkdir(parents=True)
    return dict(os.environ, FUSIONDESK_DATA_DIR=str(base / "data"), FUSIONDESK_CONFIG_DIR=str(base / "config"))


def read_json_out(path: str):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def last_json_line(path: str) -> dict:
    try:
        lines = [line for line in Path(path).read_text().splitlines() if line.strip().startswith("{")]
        return json.loads(lines[-1]) if lines else {}
    except (OSError, ValueError):
        return {}


# ---------------------------------------------------------------- child: the PyTorch reference (build/.venv)


def child_torch(args) -> None:
    started = time.perf_counter()
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "build"))
    from image_step import load_torch_model

    torch.set_num_threads(args.threads)
    paths = [line for line in Path(args.list).read_text().splitlines() if line]
    model = load_torch_model()
    loaded = time.perf_counter()

    def prepare(path: str) -> np.ndarray:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image).convert("RGB")
        scale = 256 / min(image.size)
        image = image.resize((max(256, round(image.width * scale)), max(256, round(image.height * scale))),
                             Image.Resampling.BICUBIC)
        left, top = round((image.width - 224) / 2), round((image.height - 224) / 2)
        array = np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float32)
        return ((array / 255.0 - 0.498) / 0.502).transpose(2, 0, 1)

    rows = []
    for start in range(0, len(paths), args.batch):
        chunk = paths[start:start + args.batch]
        batch = torch.from_numpy(np.ascontiguousarray(np.stack([prepare(p) for p in chunk])))
        with torch.no_grad():
            probs = torch.softmax(model(batch), dim=1).numpy()
        for path, row in zip(chunk, probs):
            top = np.argsort(-row)[:2]
            rows.append({"file": path, "top1": int(top[0]), "p1": float(row[top[0]]), "top2": int(top[1]),
                         "gap": float(row[top[0]] - row[top[1]])})
    done = time.perf_counter()
    Path(args.out).write_text(json.dumps(rows))
    print(json.dumps({"files": len(rows), "import_and_load_s": loaded - started, "loop_s": done - loaded,
                      "threads": torch.get_num_threads(), "torch": torch.__version__}))


# ------------------------------------------------------------------------- child: the naive loop (.venv)

NAIVE_STEPS = {
    "batch": ["engine.imaging.load_image(path)  (full size, EXIF applied)",
              "engine.image.classify_images([img])",
              "engine.ocr.read_text(img)",
              "engine.text.embed_texts([ocr text])  (when there is text)"],
    "index": ["engine.imaging.load_image(path)  (full size, EXIF applied)",
              "engine.image.classify_images([img])",
              "engine.ocr.read_text(img)",
              "engine.scene.detect([img])",
              "engine.text.embed_texts([ocr text])  (when there is text)",
              "engine.text.embed_texts([object names])  (when objects were found)",
              "engine.fusion.bridge_concepts(probs) -> fusion tokens -> engine.fusion.fuse(tokens).fused"],
}


def child_naive(args) -> None:
    """What a straightforward script does: each file on its own, every model on it, one after another."""
    started = time.perf_counter()
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from engine.fusion import Token, bridge_concepts, fuse
    from engine.image import classify_images
    from engine.imaging import load_image
    from engine.ocr import read_text
    from engine.runtime import Runtime, set_runtime
    from engine.scene import detect, object_names
    from engine.text import embed_texts

    if args.device or args.threads:
        set_runtime(Runtime(device=args.device or "auto", threads=args.threads or None))
    paths = [line for line in Path(args.list).read_text().splitlines() if line]
    loop_start = time.perf_counter()
    per_file, failed = [], 0
    with open(args.out, "w") as out:
        for path in paths:
            t0 = time.perf_counter()
            row: dict = {"file": path}
            try:
                image = load_image(path)
                result = classify_images([image])[0]
                ocr = read_text(image)
                # The detector answers what `index` uses (what is in a photo, for search); `batch` without labels
                # that name objects does not run it, so neither does its peer.
                found = detect([image])[0] if args.peer == "index" else []
                tokens = []
                if ocr.text.strip():
                    vector = embed_texts([ocr.text])[0]
                    tokens.append(Token("ocr", vector, float(np.mean([line.score for line in ocr.lines] or [0.0]))))
                if args.peer == "index":
                    concept = bridge_concepts(result.probs[None])[0]
                    tokens.append(Token("concepts", concept, max(0.2, float(result.labels[0][1]))))
                    if found:
                        names = embed_texts([", ".join(object_names(found))])[0]
                        tokens.append(Token("objects", names, float(max(d.score for d in found))))
                    row["dim"] = int(fuse(tokens).fused.shape[0])
                row.update(label=result.labels[0][0], ocr_text=ocr.text, objects=[d.label for d in found])
            except Exception as exc:  # a file's failure is that file's row, as in the app
                row["error"] = f"{type(exc).__name__}: {exc}"
            failed += "error" in row
            per_file.append(time.perf_counter() - t0)
            out.write(json.dumps(row) + "\n")
    done = time.perf_counter()
    print(json.dumps({"files": len(paths), "import_s": loop_start - started, "loop_s": done - loop_start,
                      "first_file_s": per_file[0] if per_file else 0.0, "failed": failed, "steps": NAIVE_STEPS[args.peer]}))


# ------------------------------------------------------------------------------------------ truthfulness


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", (text or "").lower())


def text_found(expected_lines: list[str], read: str) -> tuple[bool, float]:
    """(found, share of the sign's words read): found when at least half of its words (2+ characters) were read."""
    wanted = [w for w in _words(" ".join(expected_lines)) if len(w) >= 2]
    got = set(_words(read))
    share = sum(w in got for w in wanted) / len(wanted) if wanted else 0.0
    return share >= 0.5, share


def _get(data, *keys, default=None):
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


def _object_labels(*lists) -> list[str]:
    labels = []
    for items in lists:
        for item in items or []:
            label = item.get("label") if isinstance(item, dict) else item
            if isinstance(label, str):
                labels.append(label)
    return labels


def truth_of_rows(rows: dict[str, dict], by_rel: dict[str, dict]) -> dict:
    """Counts over result rows keyed by relative path: OCR where there is no text, text found, person claims."""
    stats = {"rows": 0, "error_rows": 0, "ocr_rows": 0, "no_text": 0, "no_text_with_ocr": 0, "with_text": 0, "text_any": 0,
             "text_found": 0, "lettered_source": 0, "lettered_source_with_ocr": 0, "no_person": 0,
             "person_claims": 0, "person_sources": 0, "person_found": 0,
             "false_texts": [], "missed_texts": [], "person_claim_files": []}
    for rel, entry in by_rel.items():
        row = rows.get(rel)
        if row is None:
            continue
        stats["rows"] += 1
        if row.get("status", "ok") != "ok" or "error" in row and row.get("error"):
            stats["error_rows"] += 1
            continue
        readings = [_get(row, "classify", "evidence", "ocr_text"), _get(row, "evidence", "ocr_text"),
                    _get(row, "read", "text"), row.get("ocr_text")]
        stats["ocr_rows"] += any(r is not None for r in readings)  # rows where OCR ran (or was reported) at all
        ocr = next((r for r in readings if isinstance(r, str) and r.strip()), "")
        objects = _object_labels(_get(row, "classify", "evidence", "objects"), _get(row, "evidence", "objects"),
                                 _get(row, "detect", "objects"), row.get("objects"))
        if entry["text"] is None and entry.get("source_lettering"):
            stats["lettered_source"] += 1
            stats["lettered_source_with_ocr"] += bool(ocr.strip())
        elif entry["text"] is None:
            stats["no_text"] += 1
            if ocr.strip():
                stats["no_text_with_ocr"] += 1
                stats["false_texts"].append({"file": rel, "source": entry["source"], "ocr_text": ocr[:120]})
        else:
            stats["with_text"] += 1
            stats["text_any"] += bool(ocr.strip())
            found, share = text_found(entry["text"]["lines"], ocr)
            stats["text_found"] += found
            if not found:
                stats["missed_texts"].append({"file": rel, "sign": " / ".join(entry["text"]["lines"]),
                                              "sign_width_px": entry["text"]["sign_width_px"],
                                              "read": ocr[:120], "words_read": round(share, 2)})
        if entry["person"]:
            stats["person_sources"] += 1
            stats["person_found"] += "person" in objects
        else:
            stats["no_person"] += 1
            if "person" in objects:
                stats["person_claims"] += 1
                stats["person_claim_files"].append({"file": rel, "source": entry["source"]})
    return stats


def index_ocr_rows(data_dir: Path) -> dict[str, dict]:
    """The OCR text the index stored per file, read straight from its SQLite file (tolerant of schema changes)."""
    import sqlite3

    rows: dict[str, dict] = {}
    for path in sorted(data_dir.rglob("*.sqlite")):
        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            columns = {r[1] for r in con.execute("PRAGMA table_info(items)")}
            if not {"path", "ocr_text"} <= columns:
                continue
            error = "error" if "error" in columns else "NULL"
            for rel, text, problem in con.execute(f"SELECT path, ocr_text, {error} FROM items"):
                rows[rel] = {"status": "error" if problem else "ok", "ocr_text": text or ""}
            con.close()
        except sqlite3.Error:
            continue
    return rows


# ------------------------------------------------------------------------------------------------ the run


def class_names() -> list[str]:
    sys.path.insert(0, str(ROOT))
    try:
        from engine.image import class_names as names_of
        from engine.manifest import ModelBundle
        from engine.runtime import Runtime

        return names_of(Runtime(ModelBundle(ROOT / "assets" / "models"), device="cpu"))
    except Exception as exc:  # the API moved: read the manifest directly
        print(f"(engine.image.class_names failed: {exc}; reading the manifest)", file=sys.stderr)
        manifest = json.loads((ROOT / "assets" / "models" / "manifest.json").read_text())
        models = manifest["models"]
        entry = models["image-classifier"] if isinstance(models, dict) else \
            next(m for m in models if m.get("id") == "image-classifier")
        labels = entry["files"]["labels"]
        labels = labels.get("path") if isinstance(labels, dict) else labels
        return [l.strip() for l in (ROOT / "assets" / "models" / labels).read_text().splitlines() if l.strip()]


def fusiondesk_argv(args) -> list[str]:
    argv = [str(FUSIONDESK)]
    if args.device:
        argv += ["--device", args.device]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    return argv


def run_classify(args, pool: Path, entries: list[dict], logs: Path, report: dict) -> None:
    paths = [str(pool / e["rel"]) for e in entries]
    listing = logs / "classify-files.txt"
    listing.write_text("\n".join(paths) + "\n")
    ours = measure("classify", fusiondesk_argv(args) + ["classify", *paths, "--json"], logs,
                   isolated_env(logs / "env-classify"), args.timeout)
    ref_out = logs / "torch-reference.json"
    reference = measure("torch-reference", [str(TORCH_PYTHON), __file__, "--child", "torch", "--list", str(listing),
                                            "--out", str(ref_out), "--threads", str(args.torch_threads)],
                        logs, dict(os.environ), args.timeout)
    reference["detail"] = last_json_line(reference["stdout"])
    names = class_names()
    records = read_json_out(ours["stdout"]) or []
    ref_rows = read_json_out(str(ref_out)) or []
    ours_by_file = {r.get("file"): r for r in records if isinstance(r, dict)}
    compared, agree, errors, disagreements = 0, 0, 0, []
    source_of = {str(pool / e["rel"]): e["source"] for e in entries}
    by_source: dict[str, list[int]] = {}  # source photograph -> [agree, compared]
    for ref in ref_rows:
        mine = ours_by_file.get(ref["file"])
        if mine is None or mine.get("error") or not mine.get("labels"):
            errors += 1
            continue
        compared += 1
        our_label = mine["labels"][0].get("label")
        ref_label = names[ref["top1"]] if ref["top1"] < len(names) else f"class {ref['top1']}"
        counts = by_source.setdefault(source_of.get(ref["file"], "?"), [0, 0])
        counts[1] += 1
        if our_label == ref_label:
            agree += 1
            counts[0] += 1
        else:
            disagreements.append({"file": os.path.relpath(ref["file"], pool), "ours": our_label,
                                  "ours_score": mine["labels"][0].get("score"), "reference": ref_label,
                                  "reference_p1": round(ref["p1"], 4),
                                  "reference_second": names[ref["top2"]] if ref["top2"] < len(names) else "",
                                  "reference_top2_gap": round(ref["gap"], 4)})
    disagreements.sort(key=lambda d: d["reference_top2_gap"])
    report["classify"] = {"photos": len(paths), "ours": ours, "reference": reference, "compared": compared,
                          "agree": agree, "unusable": errors, "disagreements": disagreements, "by_source": by_source,
                          "ratio": reference["seconds"] / ours["seconds"] if ours["seconds"] else None}
    by_abs = {str(pool / e["rel"]): e for e in entries}
    rows = {os.path.relpath(f, pool): r for f, r in ours_by_file.items() if f in by_abs}
    report.setdefault("truth", {})["classify"] = truth_of_rows(rows, {e["rel"]: e for e in entries})


def run_folder(args, folder: Path, entries: list[dict], logs: Path, report: dict) -> None:
    by_rel = {e["rel"]: e for e in entries}
    results = logs / "batch-results.jsonl"
    results.unlink(missing_ok=True)
    batch = measure("batch", fusiondesk_argv(args) + ["batch", str(folder), "--out", str(results)], logs,
                    isolated_env(logs / "env-batch"), args.timeout)
    rows = {}
    if results.is_file():
        for line in results.read_text().splitlines():
            try:
                row = json.loads(line)
                rows[row.get("file")] = row
            except ValueError:
                pass
    batch["files_done"] = len(rows)
    batch["failed_files"] = sum(1 for r in rows.values() if r.get("status", "ok") != "ok")
    report.setdefault("truth", {})["batch"] = truth_of_rows(rows, by_rel)

    # `batch` also indexes the folder as it goes (a processed folder is searchable); --no-index writes results only.
    plain_results = logs / "batch-no-index-results.jsonl"
    plain_results.unlink(missing_ok=True)
    plain = measure("batch-no-index", fusiondesk_argv(args) + ["batch", str(folder), "--out", str(plain_results),
                                                              "--no-index"],
                    logs, isolated_env(logs / "env-batch-no-index"), args.timeout)
    plain["files_done"] = sum(1 for line in plain_results.read_text().splitlines() if line.strip()) \
        if plain_results.is_file() else 0
    plain["failed_files"] = 0 if plain["files_done"] else len(entries)

    index_env = isolated_env(logs / "env-index")
    index = measure("index", fusiondesk_argv(args) + ["index", str(folder), "--json"], logs, index_env, args.timeout)
    summary = read_json_out(index["stdout"]) or {}
    index["summary"] = summary
    index["files_done"] = summary.get("items", len(entries))
    index["failed_files"] = summary.get("failed", 0)
    report["truth"]["index"] = truth_of_rows(index_ocr_rows(Path(index_env["FUSIONDESK_DATA_DIR"])), by_rel)
    report["folder"] = {"photos": len(entries), "batch": batch, "batch_no_index": plain, "index": index, "naive": {}}

    if args.naive <= 0:
        return
    subset = entries[: args.naive]
    listing = logs / "naive-files.txt"
    listing.write_text("\n".join(str(folder / e["rel"]) for e in subset) + "\n")
    for peer in ("batch", "index"):
        out = logs / f"naive-{peer}.jsonl"
        argv = [str(APP_PYTHON), __file__, "--child", "naive", "--peer", peer, "--list", str(listing), "--out", str(out)]
        if args.device:
            argv += ["--device", args.device]
        if args.threads:
            argv += ["--threads", str(args.threads)]
        result = measure(f"naive-{peer}", argv, logs, isolated_env(logs / f"env-naive-{peer}"), args.timeout)
        result["detail"] = last_json_line(result["stdout"])
        report["folder"]["naive"][peer] = result
        if peer == "batch" and out.is_file():
            naive_rows = {}
            for line in out.read_text().splitlines():
                row = json.loads(line)
                naive_rows[os.path.relpath(row["file"], folder)] = row
            report["truth"]["naive loop"] = truth_of_rows(naive_rows, {e["rel"]: e for e in subset})


# ------------------------------------------------------------------------------------------------ printing


def _rc(result: dict) -> str:
    if result["rc"] == 0:
        return "0"
    return f"**{result['rc']}{' (timed out)' if result.get('timed_out') else ''}**"


def _pct(part: int, whole: int) -> str:
    return f"{part}/{whole} ({part / whole:.0%})" if whole else "-"


def print_report(report: dict, args) -> None:
    print(f"\n## Whole commands vs peers ({os.cpu_count()} CPUs; work dir {report['work']})\n")
    c = report.get("classify")
    if c:
        ours, ref = c["ours"], c["reference"]
        detail = ref.get("detail", {})
        print(f"### 1. `fusiondesk classify` on {c['photos']} photos vs a PyTorch reference loop\n")
        print("| run | exit | seconds | CPU seconds | photos/s | peak memory | note |")
        print("|---|---:|---:|---:|---:|---:|---|")
        print(f"| `fusiondesk classify <{c['photos']} photos> --json` | {_rc(ours)} | {ours['seconds']:.1f} | "
              f"{ours['cpu_s']:.1f} | {c['photos'] / ours['seconds']:.1f} | {ours['peak_mb']:.0f} MB | whole process |")
        note = (f"whole process; imports + model {detail['import_and_load_s']:.1f} s, loop {detail['loop_s']:.1f} s, "
                f"{detail.get('threads')} threads, torch {detail.get('torch')}" if detail else "whole process")
        print(f"| PyTorch EfficientNet-Lite0 reference (build/.venv) | {_rc(ref)} | {ref['seconds']:.1f} | "
              f"{ref['cpu_s']:.1f} | {c['photos'] / ref['seconds']:.1f} | {ref['peak_mb']:.0f} MB | {note} |")
        ratio = f"{c['ratio']:.2f}x" if c["ratio"] else "-"
        if c["unusable"] or ours["rc"] != 0 or ref["rc"] != 0:
            ratio += " (NOT COMPARABLE: a run failed or gave error records)"
        print(f"\nSpeed ratio (reference seconds / ours): **{ratio}**. Top-1 agreement with the reference: "
              f"**{_pct(c['agree'], c['compared'])}**" + (f" ({c['unusable']} photos without a usable answer)"
                                                          if c["unusable"] else "") + ".")
        # Where the two disagree matters: on a micrograph or a star field no ImageNet class is right, and the
        # top classes are near-ties that any resampling difference flips.
        print("\nAgreement by source photograph: " + ", ".join(
            f"{name} {a}/{n}" for name, (a, n) in sorted(c.get("by_source", {}).items())) + ".")
        if c["disagreements"]:
            near = sum(d["reference_top2_gap"] < 0.1 for d in c["disagreements"])
            print(f"\n{len(c['disagreements'])} disagreements, {near} of them near-ties (reference top-2 probability "
                  f"gap < 0.1), closest first:\n")
            print("| file | ours (score) | reference (p) | reference's 2nd | reference top-2 gap |")
            print("|---|---|---|---|---:|")
            for d in c["disagreements"][: args.show]:
                print(f"| {d['file']} | {d['ours']} ({d['ours_score']}) | {d['reference']} ({d['reference_p1']}) | "
                      f"{d['reference_second']} | {d['reference_top2_gap']:.4f} |")
            if len(c["disagreements"]) > args.show:
                print(f"| ... {len(c['disagreements']) - args.show} more in --json | | | | |")
    f = report.get("folder")
    if f:
        print(f"\n### 2. Folder commands on {f['photos']} photos vs a naive sequential loop\n")
        print("| run | exit | files | seconds | CPU seconds | files/s | peak memory | note |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for key, label in (("batch", "`fusiondesk batch <folder> --out results.jsonl` (results + index)"),
                           ("batch_no_index", "`fusiondesk batch <folder> --out results.jsonl --no-index`"),
                           ("index", "`fusiondesk index <folder>` (fresh index)")):
            if key not in f:
                continue
            r = f[key]
            failed = f" (**{r['failed_files']} failed**)" if r.get("failed_files") else ""
            print(f"| {label} | {_rc(r)} | {r['files_done']}{failed} | {r['seconds']:.1f} | {r['cpu_s']:.1f} | "
                  f"{r['files_done'] / r['seconds']:.2f} | {r['peak_mb']:.0f} MB | whole command |")
        for peer, r in f["naive"].items():
            d = r.get("detail") or {}
            files = d.get("files", 0)
            loop = d.get("loop_s") or float("nan")
            r["files_per_s"] = files / loop if files else float("nan")
            failed = f" (**{d['failed']} failed**)" if d.get("failed") else ""
            print(f"| naive loop, {peer} peer, first {files} photos | {_rc(r)} | {files}{failed} | {r['seconds']:.1f} | "
                  f"{r['cpu_s']:.1f} | "
                  f"{r['files_per_s']:.2f} | {r['peak_mb']:.0f} MB | files/s over its loop ({loop:.1f} s; first "
                  f"file {d.get('first_file_s', float('nan')):.1f} s incl. model loading; start-up "
                  f"{d.get('import_s', float('nan')):.1f} s left out) |")
        # What does the same work: batch --no-index and the batch peer (rows); batch and index, the index peer.
        for key, peer, name in (("batch_no_index", "batch", "batch --no-index"), ("batch", "index", "batch"),
                                ("index", "index", "index")):
            if key not in f or peer not in f["naive"]:
                continue
            ours = f[key]
            naive = f["naive"][peer]
            rate = ours["files_done"] / ours["seconds"]
            broken = ours.get("failed_files") or ours["rc"] != 0 or naive["rc"] != 0 \
                or (naive.get("detail") or {}).get("failed")
            print(f"\n`{name}` / naive {peer} peer: **{rate / naive['files_per_s']:.2f}x** files/s"
                  + (" (NOT COMPARABLE: a run failed or has error rows)" if broken else "") + ".", end="")
        if f["naive"]:
            print("\n\nWhat the naive peers run, per file, one file at a time:\n")
            for peer, r in f["naive"].items():
                steps = (r.get("detail") or {}).get("steps") or NAIVE_STEPS[peer]
                print(f"- {peer} peer: " + " -> ".join(steps))
    t = report.get("truth")
    if t:
        print("\n### 3. Truthfulness on the same photos\n")
        print("| results | rows | error rows | photos WITHOUT text given OCR text | photos WITH text: any text "
              "| WITH text: sign read (>= half its words) | no sign, lettered source: text read "
              "| person claimed, no person in the photo | person found where there is one |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, s in t.items():
            label = {"classify": "classify JSON" + ("" if s["ocr_rows"] else " (no OCR in it)"), "batch": "batch results.jsonl",
                     "index": "index (OCR text it stored)", "naive loop": "naive batch loop (its subset)"}.get(name, name)
            people = "-" if name == "index" else _pct(s["person_claims"], s["no_person"])
            found = "-" if name == "index" else _pct(s["person_found"], s["person_sources"])
            ocr_cols = ("-",) * 4 if not s["ocr_rows"] and name != "index" else (
                _pct(s["no_text_with_ocr"], s["no_text"]), _pct(s["text_any"], s["with_text"]),
                _pct(s["text_found"], s["with_text"]), _pct(s["lettered_source_with_ocr"], s["lettered_source"]))
            print(f"| {label} | {s['rows']} | {s['error_rows']} | {' | '.join(ocr_cols)} | {people} | {found} |")
        print("\n(WITHOUT text: no sign pasted in and a source photograph with no lettering of its own; lettered "
              "sources, the astronaut's mission patch and the motorcycle's YAMAHA, are counted apart. A person "
              "claim is an object labelled person on a photo of "
              + ", ".join(name for name, (person, _) in SOURCES.items() if not person) + ".)")
        batch = t.get("batch")
        if batch and batch["false_texts"]:
            print("\nOCR text on photos without text (batch), first ones:\n")
            for item in batch["false_texts"][: args.show]:
                print(f"- {item['file']} ({item['source']}): {item['ocr_text']!r}")
        if batch and batch["missed_texts"]:
            print("\nSigns not read (batch):\n")
            for item in batch["missed_texts"][: args.show]:
                print(f"- {item['file']}: sign {item['sign']!r} ({item['sign_width_px']} px wide) -> read "
                      f"{item['read']!r}")
        for name in ("batch", "classify"):
            s = t.get(name)
            if s and s["person_claim_files"]:
                sources = {}
                for item in s["person_claim_files"]:
                    sources[item["source"]] = sources.get(item["source"], 0) + 1
                print(f"\nPerson claims without a person ({name}), by source photo: "
                      + ", ".join(f"{k} {v}" for k, v in sorted(sources.items())))
    failed = [r["name"] for r in report["runs"] if r["rc"] != 0]
    if failed:
        print(f"\n**Commands that exited non-zero: {', '.join(failed)}** (logs in {report['logs']}).")
    print(f"\nLogs (stdout/stderr of every command): {report['logs']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=200, help="photos given to `fusiondesk classify` (default 200)")
    parser.add_argument("--folder", type=int, default=500, help="photos in the folder for batch/index (default 500)")
    parser.add_argument("--naive", type=int, default=100, help="photos the naive loops process (default 100; 0: skip)")
    parser.add_argument("--only", choices=["classify", "folder"], help="run one half")
    parser.add_argument("--work", default="/tmp/fusiondesk-bench-commands", help="photo cache and logs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="passed as `fusiondesk --device` and to the naive loop "
                                                       "(default cpu, like the PyTorch reference; '' for the user's)")
    parser.add_argument("--threads", type=int, default=0, help="`fusiondesk --threads` and the naive loop's "
                                                               "(default: the app's own, one per physical core)")
    parser.add_argument("--torch-threads", type=int, default=2, help="torch.set_num_threads of the reference")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before a command is killed")
    parser.add_argument("--show", type=int, default=20, help="rows listed per detail table")
    parser.add_argument("--json", help="also write every figure and detail to this JSON file")
    parser.add_argument("--child", choices=["torch", "naive", "photos"], help=argparse.SUPPRESS)
    parser.add_argument("--list", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--peer", choices=["batch", "index"], help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=8, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "torch":
        args.threads = args.threads or 2
        return child_torch(args) or 0
    if args.child == "naive":
        return child_naive(args) or 0
    if args.child == "photos":  # scikit-image from build/.venv when the app's environment lacks it
        photo_set(Path(args.work), args.photos, args.seed)
        return 0

    for needed in (FUSIONDESK, APP_PYTHON) + ((TORCH_PYTHON,) if args.only != "folder" else ()):
        if not needed.exists():
            raise SystemExit(f"{needed} is missing: run `bash build/setup.sh` first")
    work = Path(args.work)
    logs = work / "runs" / time.strftime("%Y%m%d-%H%M%S")
    logs.mkdir(parents=True, exist_ok=True)
    wanted = max(args.photos if args.only != "folder" else 0, args.folder if args.only != "classify" else 0)
    pool, entries = photo_set(work, wanted, args.seed)
    report: dict = {"work": str(work), "logs": str(logs), "args": vars(args), "cpus": os.cpu_count()}
    if args.only != "folder" and args.photos > 0:
        run_classify(args, pool, entries[: args.photos], logs, report)
    if args.only != "classify" and args.folder > 0:
        subset = entries[: args.folder]
        run_folder(args, folder_of(work, args.seed, pool, subset), subset, logs, report)
    report["runs"] = [r for r in (_get(report, "classify", "ours"), _get(report, "classify", "reference"),
                                  _get(report, "folder", "batch"), _get(report, "folder", "index"),
                                  *(_get(report, "folder", "naive", default={}) or {}).values()) if r]
    photos_with_text = sum(e["text"] is not None for e in entries)
    print(f"\nPhoto set: {len(entries)} photos (seed {args.seed}), {photos_with_text} with a sign, "
          f"{sum(e['exif_orientation'] == 6 for e in entries)} stored sideways (EXIF 6), "
          f"{min(e['megapixels'] for e in entries):.1f}-{max(e['megapixels'] for e in entries):.1f} MP; "
          f"sources: {', '.join(sorted({e['source'] for e in entries}))}.")
    print_report(report, args)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
        print(f"JSON: {args.json}")
    return 1 if any(r["rc"] != 0 for r in report["runs"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
