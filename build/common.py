"""Shared pieces of the model-bundle build: paths, manifest entries, sample inputs, verification.

Runs in the export environment (build/.venv: torch, transformers, optimum), never in the app.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUILD_DIR = Path(__file__).resolve().parent
ROOT = BUILD_DIR.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the build verifies models through the app's own engine code

from engine.manifest import sha256_of  # noqa: E402

# Fail fast on any accidental hub access: every weight comes from an installed registry package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


class VerificationError(RuntimeError):
    """A converted model does not match its reference within the recorded threshold."""


@dataclass
class BuildContext:
    out: Path  # assets/models
    cache: Path  # build/cache: intermediate exports, generated samples
    log_lines: list[str] = field(default_factory=list)

    def step_dir(self, name: str) -> Path:
        path = self.cache / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def model_dir(self, name: str) -> Path:
        path = self.out / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log(self, message: str) -> None:
        print(f"  {message}", flush=True)
        self.log_lines.append(message)


def package_version(name: str) -> str:
    return importlib.metadata.version(name)


def source(package: str, *more: str) -> dict[str, Any]:
    """The registry package(s) a model comes from, with the installed versions."""
    packages = [package, *more]
    return {"packages": [{"name": p, "version": package_version(p)} for p in packages]}


def file_record(out: Path, path: Path) -> dict[str, Any]:
    return {"path": path.relative_to(out).as_posix(), "sha256": sha256_of(path), "bytes": path.stat().st_size}


def entry(
    ctx: BuildContext,
    *,
    id: str,
    task: str,
    modality: str,
    precision: str,
    files: dict[str, Path],
    source: dict[str, Any],
    license: str,
    preprocess: dict[str, Any] | None = None,
    verification: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One manifest entry; file hashes and sizes are computed here, never typed by hand."""
    record = {
        "id": id,
        "task": task,
        "modality": modality,
        "precision": precision,
        "files": {key: file_record(ctx.out, path) for key, path in files.items()},
        "preprocess": preprocess or {},
        "source": source,
        "license": license,
        "verification": verification or {},
    }
    record.update(extra)
    return record


def check(name: str, measured: float, threshold: float, higher_is_better: bool = True) -> dict[str, Any]:
    """Compare a measured figure against its threshold; raise loudly when it fails."""
    ok = measured >= threshold if higher_is_better else measured <= threshold
    result = {"metric": name, "measured": round(float(measured), 6), "threshold": threshold,
              "direction": ">=" if higher_is_better else "<="}
    print(f"  verify {name}: {measured:.6f} ({'>=' if higher_is_better else '<='} {threshold}) "
          f"{'ok' if ok else 'FAILED'}", flush=True)
    if not ok:
        raise VerificationError(f"{name} = {measured:.6f}, threshold {threshold}")
    return result


def sample_images() -> dict[str, Any]:
    """scikit-image's real photographs (RGB uint8 arrays), keyed by name."""
    from skimage import data

    names = ["astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "hubble_deep_field", "immunohistochemistry",
             "retina", "cat", "coins", "camera", "page", "moon", "horse", "text", "brick", "grass", "gravel", "colorwheel"]
    images = {}
    for name in names:
        loader = getattr(data, name, None)
        if loader is None:
            continue
        try:
            image = loader()
        except Exception:  # some loaders need pooch downloads in newer scikit-image versions
            continue
        if isinstance(image, tuple):
            image = image[0]
        import numpy as np

        image = np.asarray(image)
        if image.dtype != np.uint8:
            image = (255 * (image.astype("float64") / max(1e-9, float(image.max())))).astype(np.uint8)
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        if image.shape[-1] == 4:
            image = image[..., :3]
        images[name] = image
    return images


SPEECH_SENTENCES = [
    "The quick brown fox jumped over the lazy dog.",
    "Please send the quarterly report to the finance team by Friday.",
    "The weather today is sunny with a light breeze from the west.",
    "My favourite fruits are apples, bananas and oranges.",
    "Turn left at the next traffic light and park near the library.",
    "The meeting has been moved to three o'clock on Tuesday afternoon.",
    "Could you please check whether the printer on the second floor is working again?",
    "We will need three more chairs and a table for the workshop tomorrow morning.",
    "The train to the airport leaves every twenty minutes from platform four.",
    "Remember to save your work before you close the laptop.",
]


def espeak_wav(text: str, path: Path, voice: str = "en-us", words_per_minute: int = 135) -> Path:
    """Speech made with espeak-ng, resampled to 16 kHz mono with sox (both Debian packages)."""
    if path.is_file() and path.stat().st_size > 44:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(raw), text], check=True)
    # -D: no dither, so the same sentence gives the same bytes on every machine and the checks are repeatable
    subprocess.run(["sox", str(raw), "-D", "-r", "16000", "-c", "1", "-b", "16", str(path)], check=True)
    raw.unlink()
    return path


def speech_samples(ctx: BuildContext) -> list[tuple[str, Path]]:
    folder = ctx.step_dir("speech")
    return [(text, espeak_wav(text, folder / f"sentence{i}.wav")) for i, text in enumerate(SPEECH_SENTENCES)]


def copy_into(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def digest_of_files(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
