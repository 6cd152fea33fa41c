"""The model bundle: `assets/models/manifest.json` and the files it lists.

The manifest is data, not code: one entry per model with its files (sha256, bytes), task, modality,
precision, preprocessing settings, source package and license. A new model of a known kind is a new entry.
Every file's sha256 is checked the first time it is opened, so a corrupt or half-copied bundle fails with
a message naming the file and how to rebuild, instead of a confusing ONNX Runtime error later.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelBundleError

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
REBUILD_HINT = "rebuild the model bundle with: bash build/setup.sh models"


def default_bundle_dir() -> Path:
    """Where the bundle lives: $FUSIONDESK_MODELS, the frozen app's own copy, or the repo's assets/models."""
    env = os.environ.get("FUSIONDESK_MODELS")
    if env:
        return Path(env)
    import sys

    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "assets" / "models"
    return Path(__file__).resolve().parent.parent / "assets" / "models"


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelFile:
    path: str  # relative to the bundle directory
    sha256: str
    bytes: int


@dataclass(frozen=True)
class ModelEntry:
    id: str
    task: str
    modality: str
    precision: str
    files: dict[str, ModelFile]
    preprocess: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    license: str = ""
    verification: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files.values())

    @staticmethod
    def from_json(raw: dict[str, Any]) -> "ModelEntry":
        try:
            files = {
                key: ModelFile(path=str(f["path"]), sha256=str(f["sha256"]), bytes=int(f["bytes"]))
                for key, f in raw["files"].items()
            }
            known = {"id", "task", "modality", "precision", "files", "preprocess", "source", "license", "verification"}
            return ModelEntry(
                id=str(raw["id"]),
                task=str(raw["task"]),
                modality=str(raw["modality"]),
                precision=str(raw["precision"]),
                files=files,
                preprocess=dict(raw.get("preprocess", {})),
                source=dict(raw.get("source", {})),
                license=str(raw.get("license", "")),
                verification=dict(raw.get("verification", {})),
                extra={k: v for k, v in raw.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelBundleError(f"manifest entry {raw.get('id', '?')!r} is malformed ({exc}); {REBUILD_HINT}") from exc


class ModelBundle:
    """The manifest plus hash-checked access to the files it lists."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else default_bundle_dir()
        manifest_path = self.root / MANIFEST_NAME
        if not manifest_path.is_file():
            raise ModelBundleError(f"no model bundle at {self.root} (missing {MANIFEST_NAME}); {REBUILD_HINT}")
        try:
            raw = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelBundleError(f"cannot read {manifest_path}: {exc}; {REBUILD_HINT}") from exc
        if not isinstance(raw, dict) or raw.get("schema_version") != SCHEMA_VERSION:
            raise ModelBundleError(
                f"{manifest_path} has schema_version {raw.get('schema_version') if isinstance(raw, dict) else None!r}, "
                f"this app reads {SCHEMA_VERSION}; {REBUILD_HINT}"
            )
        self.bundle_version: str = str(raw.get("bundle_version", ""))
        self.raw = raw
        self.models: dict[str, ModelEntry] = {}
        for item in raw.get("models", []):
            entry = ModelEntry.from_json(item)
            self.models[entry.id] = entry
        self._verified: set[str] = set()
        self._lock = threading.Lock()

    def __contains__(self, model_id: str) -> bool:
        return model_id in self.models

    def entry(self, model_id: str) -> ModelEntry:
        try:
            return self.models[model_id]
        except KeyError:
            raise ModelBundleError(
                f"model {model_id!r} is not in the bundle at {self.root} (has: {', '.join(sorted(self.models))}); "
                f"{REBUILD_HINT}"
            ) from None

    def path(self, model_id: str, file_key: str = "model", verify: bool = True) -> Path:
        """Absolute path of one file of a model, sha256-checked once per process."""
        entry = self.entry(model_id)
        if file_key not in entry.files:
            raise ModelBundleError(f"model {model_id!r} has no file {file_key!r} in the manifest; {REBUILD_HINT}")
        item = entry.files[file_key]
        full = self.root / item.path
        if verify:
            with self._lock:
                if item.path not in self._verified:
                    self._check(full, item)
                    self._verified.add(item.path)
        return full

    def verify_all(self) -> list[tuple[str, str, str | None]]:
        """Re-check every file: [(model_id, relative path, error or None)]."""
        report = []
        for entry in self.models.values():
            for item in entry.files.values():
                try:
                    self._check(self.root / item.path, item)
                    report.append((entry.id, item.path, None))
                except ModelBundleError as exc:
                    report.append((entry.id, item.path, str(exc)))
        return report

    @staticmethod
    def _check(full: Path, item: ModelFile) -> None:
        if not full.is_file():
            raise ModelBundleError(f"model file {full} is missing; {REBUILD_HINT}")
        size = full.stat().st_size
        if size != item.bytes:
            raise ModelBundleError(f"model file {full} has {size} bytes, the manifest says {item.bytes}; {REBUILD_HINT}")
        if sha256_of(full) != item.sha256:
            raise ModelBundleError(f"model file {full} is corrupt (sha256 does not match the manifest); {REBUILD_HINT}")
