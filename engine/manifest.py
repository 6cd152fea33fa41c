"""The model bundle: `assets/models/manifest.json` and the files it lists.

The manifest is data, not code: one entry per model with its files (sha256, bytes), task, modality,
precision, preprocessing settings, source package and license. A new model of a known kind is a new entry.
Every file's sha256 is checked the first time it is opened, so a corrupt or half-copied bundle fails with
a message naming the file and how to rebuild, instead of a confusing ONNX Runtime error later.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelBundleError, PackNotInstalled

log = logging.getLogger(__name__)

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

    def __init__(self, root: Path | str | None = None, packs: bool = True, search_dirs=None):
        """root: the bundle folder (default: default_bundle_dir()). packs: add the models of installed packs
        (engine.packs; search_dirs: [(where, folder)], default: the user's data folder and beside the app)."""
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
        self.raw = raw  # the bundle's own manifest, without the models packs add
        self.models: dict[str, ModelEntry] = {}
        for item in raw.get("models", []):
            entry = ModelEntry.from_json(item)
            self.models[entry.id] = entry
        # Each model's files are relative to its own folder: the bundle's, or the pack folder it came from.
        self._roots: dict[str, Path] = {}
        self.model_packs: dict[str, str] = {}  # model id -> the pack (name) that added it
        self.found_packs: list = []  # engine.packs.FoundPack, every pack folder found, used or not
        self.used_pack_folders: set[Path] = set()
        if packs:
            self._add_packs(search_dirs)
        self._verified: set[Path] = set()
        self._lock = threading.Lock()

    def _add_packs(self, search_dirs) -> None:
        """The models of every found pack made for this bundle_version; a model the bundle (or an earlier pack)
        already has keeps that copy. Packs for another version are left out with a warning: their models were
        verified against another bundle, and heads and indexes key on the bundle_version."""
        from .packs import find_packs

        self.found_packs = find_packs(search_dirs)
        for pack in self.found_packs:
            if pack.problem:
                log.warning("pack %s left out: %s", pack.folder, pack.problem)
                continue
            if pack.bundle_version != self.bundle_version:
                log.warning("pack %s left out: it is for model bundle version %s, this bundle is %s", pack.folder,
                            pack.bundle_version, self.bundle_version)
                continue
            for entry in pack.entries:
                if entry.id not in self.models:
                    self.models[entry.id] = entry
                    self._roots[entry.id] = pack.folder
                    self.model_packs[entry.id] = pack.name
                    self.used_pack_folders.add(pack.folder)

    def __contains__(self, model_id: str) -> bool:
        return model_id in self.models

    def entry(self, model_id: str) -> ModelEntry:
        found = self.models.get(model_id)
        if found is not None:
            return found
        self._raise_if_in_a_pack(model_id)
        raise ModelBundleError(
            f"model {model_id!r} is not in the bundle at {self.root} (has: {', '.join(sorted(self.models))}); "
            f"{REBUILD_HINT}"
        )

    def _raise_if_in_a_pack(self, model_id: str) -> None:
        from .packs import missing_model_message, pack_for_model

        other_versions = [pack for pack in self.found_packs
                          if not pack.problem and pack.bundle_version != self.bundle_version]
        message = missing_model_message(model_id, self.bundle_version, other_versions)
        if message:
            raise PackNotInstalled(message, pack_for_model(model_id).name, model_id)

    def root_of(self, model_id: str) -> Path:
        """The folder a model's file paths are relative to: the bundle's, or its pack's."""
        return self._roots.get(model_id, self.root)

    def path(self, model_id: str, file_key: str = "model", verify: bool = True) -> Path:
        """Absolute path of one file of a model, sha256-checked once per process."""
        entry = self.entry(model_id)
        if file_key not in entry.files:
            raise ModelBundleError(f"model {model_id!r} has no file {file_key!r} in the manifest; {REBUILD_HINT}")
        item = entry.files[file_key]
        full = self.root_of(model_id) / item.path
        if verify:
            with self._lock:
                if full not in self._verified:
                    self._check(full, item, self._repair_hint(model_id))
                    self._verified.add(full)
        return full

    def verify_all(self) -> list[tuple[str, str, str | None]]:
        """Re-check every file: [(model_id, relative path, error or None)]."""
        report = []
        for entry in self.models.values():
            for item in entry.files.values():
                try:
                    self._check(self.root_of(entry.id) / item.path, item, self._repair_hint(entry.id))
                    report.append((entry.id, item.path, None))
                except ModelBundleError as exc:
                    report.append((entry.id, item.path, str(exc)))
        return report

    def _repair_hint(self, model_id: str) -> str:
        pack = self.model_packs.get(model_id)
        if pack is None:
            return REBUILD_HINT
        from .packs import PACKS

        file_name = PACKS[pack].file_name if pack in PACKS else f"the {pack} pack file"
        return f"install the {pack} pack again: fusiondesk packs install {file_name}"

    @staticmethod
    def _check(full: Path, item: ModelFile, hint: str = REBUILD_HINT) -> None:
        if not full.is_file():
            raise ModelBundleError(f"model file {full} is missing; {hint}")
        size = full.stat().st_size
        if size != item.bytes:
            raise ModelBundleError(f"model file {full} has {size} bytes, the manifest says {item.bytes}; {hint}")
        if sha256_of(full) != item.sha256:
            raise ModelBundleError(f"model file {full} is corrupt (sha256 does not match the manifest); {hint}")
