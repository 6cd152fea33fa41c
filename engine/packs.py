"""Optional model packs: the core bundle ships what most people use (English speech, image, OCR, text, scene);
the larger models that only some people need (multilingual speech, translation) come as a pack file that the app
installs, lists and removes.

A pack file (`FusionDesk-<name>.pack`) is a zip archive: `pack.json` (format, pack name, title, the
bundle_version of the bundle it was cut from, and the full manifest entries of its models) and the model files
at their manifest-relative paths, deflated (PACK_COMPRESSION says why). Installing extracts into a
temporary folder beside the destination, checks every file's size and sha256 against its entry, and only then
renames the folder into place, so a failed or interrupted install never leaves a half pack where the app looks.

Installed, a pack is a folder `<packs dir>/<name>/` with the same pack.json and files. The app looks in two packs
dirs (`pack_search_dirs`): the user's data folder (`<data_dir>/packs/`, where `fusiondesk packs install` writes)
and, in the frozen app, `<folder of the executable>/packs/` (where a system package puts a pack; read-only to
the app). engine.manifest.ModelBundle adds the models of every found pack made for its own bundle_version.

The packs themselves are data (PACKS): a new pack is a new entry, and `split_bundle` cuts any full bundle into
the core and the pack files at build time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from .errors import ModelBundleError, PackError
from .fileio import atomic_write_text, free_space, link_or_copy, storage_error
from .manifest import MANIFEST_NAME, ModelEntry, ModelFile

log = logging.getLogger(__name__)

APP_NAME = "FusionDesk"
PACK_FORMAT = 1
PACK_MANIFEST = "pack.json"
PACKS_FOLDER = "packs"
# Measured on the Languages pack (bundle 58340639bd01): deflate takes its 211 MB to 170 MB (the int8/fp16 ONNX
# weights shrink 8-23%, tokenizers 75-82%, the npz shortlists not at all): 41 MB less to download, for ~7 s when
# the build writes it and under 2 s of inflating at install, next to the sha256 check that reads it all anyway.
PACK_COMPRESSION = zipfile.ZIP_DEFLATED
PACK_COMPRESSLEVEL = 6  # zlib's default
# Fixed member times: the same bundle always gives the same pack bytes (reproducible builds, comparable hashes).
MEMBER_TIME = (2020, 1, 1, 0, 0, 0)
PACK_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
MAX_PACK_JSON_BYTES = 16 << 20  # a real one is a few KB; never read a huge member into memory to find out
STALE_SECONDS = 3600  # a leftover staging folder this old is from an install that died, not one in progress


@dataclass(frozen=True)
class PackSpec:
    """One optional pack: its models, and for each a feature in words (what a person misses without it)."""

    name: str
    title: str
    description: str
    features: dict[str, str]  # model id -> the feature it gives, in words

    @property
    def model_ids(self) -> tuple[str, ...]:
        return tuple(self.features)

    @property
    def file_name(self) -> str:
        return f"{APP_NAME}-{self.name}.pack"

    def how_to_add(self) -> str:
        return (f"install it with `fusiondesk packs install {self.file_name}` or in Models & settings "
                f"(the pack file comes with the app's download)")


PACKS: dict[str, PackSpec] = {
    "languages": PackSpec(
        name="languages",
        title="Languages",
        description="speech in about 99 languages and speech translated into English (Whisper base), "
                    "English <-> Portuguese text translation",
        features={
            "whisper-base": "multilingual speech (whisper-base: speech in other languages than English, speech "
                            "translated into English, the multilingual speech setting)",
            "translate-en-pt": "English -> Portuguese translation (translate-en-pt)",
            "translate-pt-en": "Portuguese -> English translation (translate-pt-en)",
        },
    ),
}


def pack_for_model(model_id: str) -> PackSpec | None:
    return next((spec for spec in PACKS.values() if model_id in spec.features), None)


# -- where packs are found -----------------------------------------------------------------------------------------


def user_packs_dir() -> Path:
    from .settings import data_dir

    return data_dir() / PACKS_FOLDER


def app_packs_dir() -> Path | None:
    """`packs/` beside the frozen executable (a system package installs packs there); None from a source checkout,
    whose assets/models already holds every model."""
    if not getattr(sys, "frozen", False):
        return None
    return Path(sys.executable).resolve().parent / PACKS_FOLDER


def pack_search_dirs() -> list[tuple[str, Path]]:
    """(where, folder), the user's first: a pack the user installed wins over an older copy beside the app."""
    dirs = [("user", user_packs_dir())]
    beside_app = app_packs_dir()
    if beside_app is not None:
        dirs.append(("app", beside_app))
    return dirs


@dataclass
class FoundPack:
    """An installed pack folder as read from its pack.json (problem set when it cannot be used at all)."""

    name: str
    folder: Path
    where: str  # "user" (the data folder: removable) | "app" (beside the app: read-only)
    title: str = ""
    bundle_version: str = ""
    entries: list[ModelEntry] = field(default_factory=list)
    problem: str | None = None

    @property
    def bytes(self) -> int:
        return sum(entry.total_bytes for entry in self.entries)


def read_pack_folder(folder: Path, where: str) -> FoundPack:
    found = FoundPack(name=folder.name, folder=folder, where=where)
    try:
        raw = json.loads((folder / PACK_MANIFEST).read_text(encoding="utf-8"))
        meta = _check_pack_json(raw)
    except (OSError, ValueError) as exc:
        found.problem = f"cannot read {folder / PACK_MANIFEST} ({exc})"
        return found
    except PackError as exc:
        found.problem = f"{folder / PACK_MANIFEST}: {exc.problem}"
        return found
    found.title, found.bundle_version, found.entries = meta["title"], meta["bundle_version"], meta["entries"]
    if meta["name"] != folder.name:
        found.problem = f"{folder} holds the pack {meta['name']!r}, not {folder.name!r}"
    return found


def find_packs(search_dirs: Iterable[tuple[str, Path]] | None = None) -> list[FoundPack]:
    """Every pack folder in the search dirs, in their order. Hidden folders are installs in progress."""
    found = []
    for where, root in pack_search_dirs() if search_dirs is None else search_dirs:
        try:
            folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            continue  # no packs folder there (the usual case)
        found += [read_pack_folder(folder, where) for folder in folders]
    return found


def missing_model_message(model_id: str, bundle_version: str = "", other_versions: Iterable[FoundPack] = ()) -> str | None:
    """What to tell a person who asked for a model that lives in a pack which is not installed (None: the model
    is in no pack)."""
    spec = pack_for_model(model_id)
    if spec is None:
        return None
    message = (f"{spec.features[model_id]} needs the {spec.title} pack ({spec.file_name}), which is not installed: "
               f"{spec.how_to_add()}")
    for pack in other_versions:
        if pack.name == spec.name:
            message += (f". The {spec.title} pack at {pack.folder} is for model bundle version "
                        f"{pack.bundle_version}, this app's is {bundle_version}: install the pack that came with this "
                        "version of the app")
    return message


# -- cutting a full bundle into the core and the packs (build time) ---------------------------------------------------


def _read_manifest(bundle_dir: Path) -> dict[str, Any]:
    path = Path(bundle_dir) / MANIFEST_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelBundleError(f"cannot read {path}: {exc}") from exc


def pack_models(manifest: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The manifest entries of one pack's models, all of which the bundle must have."""
    spec = PACKS[name]
    by_id = {model["id"]: model for model in manifest.get("models", [])}
    missing = [model_id for model_id in spec.model_ids if model_id not in by_id]
    if missing:
        raise ModelBundleError(f"the model bundle has no {', '.join(missing)}: cannot cut the {spec.title} pack "
                               "(build the full bundle with: bash build/setup.sh models)")
    return [by_id[model_id] for model_id in spec.model_ids]


def core_manifest(manifest: dict[str, Any], packs: Iterable[str] | None = None) -> dict[str, Any]:
    """The same manifest (same bundle_version: heads and indexes made with the full bundle stay valid) without the
    models of the packs."""
    in_packs = {model_id for name in (PACKS if packs is None else packs) for model_id in PACKS[name].model_ids}
    return {**manifest, "models": [model for model in manifest.get("models", []) if model["id"] not in in_packs]}


def pack_json(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    spec = PACKS[name]
    return {"format": PACK_FORMAT, "name": spec.name, "title": spec.title, "description": spec.description,
            "bundle_version": manifest.get("bundle_version", ""), "models": pack_models(manifest, name)}


def write_pack(bundle_dir: Path | str, pack_file: Path | str, name: str = "languages") -> Path:
    """The pack file of one pack, cut from a full bundle; written beside itself and renamed when complete."""
    bundle_dir, pack_file = Path(bundle_dir), Path(pack_file)
    meta = pack_json(_read_manifest(bundle_dir), name)
    pack_file.parent.mkdir(parents=True, exist_ok=True)
    partial = pack_file.with_name(f".{pack_file.name}.part")
    try:
        with zipfile.ZipFile(partial, "w", compression=PACK_COMPRESSION, compresslevel=PACK_COMPRESSLEVEL,
                             allowZip64=True) as archive:
            info = zipfile.ZipInfo(PACK_MANIFEST, MEMBER_TIME)
            info.compress_type = PACK_COMPRESSION
            archive.writestr(info, json.dumps(meta, indent=2) + "\n")
            for model in meta["models"]:
                for item in model["files"].values():
                    source = bundle_dir / item["path"]
                    if not source.is_file() or source.stat().st_size != item["bytes"]:
                        raise ModelBundleError(f"{source} is missing or not the size the manifest says: cannot cut "
                                               f"the {PACKS[name].title} pack")
                    info = zipfile.ZipInfo(_safe_member(item["path"]).as_posix(), MEMBER_TIME)
                    info.compress_type = PACK_COMPRESSION
                    info.external_attr = 0o644 << 16
                    with open(source, "rb") as src, archive.open(info, "w", force_zip64=True) as out:
                        shutil.copyfileobj(src, out, 1 << 20)
        with open(partial, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, pack_file)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return pack_file


def split_bundle(src_bundle_dir: Path | str, core_dir: Path | str, pack_file: Path | str,
                 name: str = "languages") -> tuple[Path, Path]:
    """A full bundle cut in two: core_dir gets the core manifest and the core models' files (hard links where the
    file system allows, else copies), pack_file the pack. Returns (core manifest path, pack file)."""
    src, core = Path(src_bundle_dir), Path(core_dir)
    manifest = _read_manifest(src)
    core_raw = core_manifest(manifest, [name])
    pack_models(manifest, name)  # fails before writing anything when the bundle lacks a pack model
    for model in core_raw["models"]:
        for item in model["files"].values():
            target = core / _safe_member(item["path"])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            link_or_copy(src / item["path"], target)
    manifest_path = atomic_write_text(core / MANIFEST_NAME, json.dumps(core_raw, indent=2) + "\n")
    return manifest_path, write_pack(src, pack_file, name)


# -- installing and removing ----------------------------------------------------------------------------------------


def _safe_member(name: str) -> PurePosixPath:
    """A relative path inside the pack folder, or PackError: absolute paths, `..`, drive letters and backslashes
    could write outside it (a zip's member names are whatever its maker wrote)."""
    path = PurePosixPath(name)
    if (not name or "\\" in name or "\0" in name or path.is_absolute() or re.match(r"^[A-Za-z]:", name)
            or any(part in ("", ".", "..") for part in name.split("/"))):
        raise PackError(name, "unsafe path (it would write outside the pack folder)")
    return path


def _check_pack_json(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise PackError(PACK_MANIFEST, "is not a JSON object")
    if raw.get("format") != PACK_FORMAT:
        raise PackError(PACK_MANIFEST, f"is pack format {raw.get('format')!r}; this app reads format {PACK_FORMAT} "
                                       "(a pack from a newer or older app)")
    name = raw.get("name")
    if not isinstance(name, str) or not PACK_NAME_PATTERN.match(name):
        raise PackError(PACK_MANIFEST, f"names the pack {name!r}, which is not a valid pack name")
    models = raw.get("models")
    if not isinstance(models, list) or not models:
        raise PackError(PACK_MANIFEST, "lists no models")
    try:
        entries = [ModelEntry.from_json(model) for model in models]
    except (ModelBundleError, AttributeError) as exc:
        raise PackError(PACK_MANIFEST, f"has a malformed model entry ({exc})") from None
    for entry in entries:
        for item in entry.files.values():
            try:
                _safe_member(item.path)
            except PackError:
                raise PackError(PACK_MANIFEST, f"lists the file {item.path!r} (model {entry.id}), whose path would "
                                               "write outside the pack folder: refused") from None
    return {"name": name, "title": str(raw.get("title") or name), "bundle_version": str(raw.get("bundle_version", "")),
            "entries": entries, "raw": raw}


def _open_pack(pack_file: Path) -> zipfile.ZipFile:
    if not pack_file.is_file():
        raise PackError(pack_file, "no such file" if not pack_file.exists() else "is not a file")
    try:
        return zipfile.ZipFile(pack_file)
    except zipfile.BadZipFile:
        with open(pack_file, "rb") as handle:
            starts_like_zip = handle.read(4) == b"PK\x03\x04"
        if starts_like_zip:  # the zip directory is at the end: an incomplete download or copy loses it first
            raise PackError(pack_file, "is truncated or damaged (its archive directory is missing: an incomplete "
                                       "download or copy?); get the pack file again") from None
        raise PackError(pack_file, f"is not a {APP_NAME} pack (not a zip archive)") from None
    except OSError as exc:
        raise PackError(pack_file, f"cannot be read ({exc.strerror or exc})") from None


def read_pack_file(pack_file: Path | str) -> dict[str, Any]:
    """The checked pack.json of a pack file (without extracting anything)."""
    pack_file = Path(pack_file)
    with _open_pack(pack_file) as archive:
        return _pack_meta(archive, pack_file)


def _pack_meta(archive: zipfile.ZipFile, pack_file: Path) -> dict[str, Any]:
    for member in archive.namelist():
        try:
            _safe_member(member.rstrip("/") if member.endswith("/") else member)
        except PackError:
            raise PackError(pack_file, f"holds the member {member!r}, whose path would write outside the pack "
                                       "folder: refused") from None
    try:
        if archive.getinfo(PACK_MANIFEST).file_size > MAX_PACK_JSON_BYTES:
            raise PackError(pack_file, f"is not a {APP_NAME} pack (its {PACK_MANIFEST} is far too large)")
        raw = json.loads(archive.read(PACK_MANIFEST).decode("utf-8"))
    except KeyError:
        raise PackError(pack_file, f"is not a {APP_NAME} pack (a zip archive without {PACK_MANIFEST})") from None
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        raise PackError(pack_file, f"is truncated or damaged ({PACK_MANIFEST} cannot be read: {exc})") from None
    except ValueError as exc:
        raise PackError(pack_file, f"is not a {APP_NAME} pack ({PACK_MANIFEST} is not valid JSON: {exc})") from None
    try:
        return _check_pack_json(raw)
    except PackError as exc:
        raise PackError(pack_file, f"{PACK_MANIFEST} {exc.problem}") from None


def _extract_verified(archive: zipfile.ZipFile, pack_file: Path, entries: list[ModelEntry], staging: Path) -> None:
    for entry in entries:
        for item in entry.files.values():
            _extract_one(archive, pack_file, entry.id, item, staging)


def _extract_one(archive: zipfile.ZipFile, pack_file: Path, model_id: str, item: ModelFile, staging: Path) -> None:
    """One file streamed out of the archive, its size and sha256 checked against the pack's manifest entry."""
    try:
        info = archive.getinfo(item.path)
    except KeyError:
        raise PackError(pack_file, f"is incomplete: it has no {item.path} (model {model_id})") from None
    if info.file_size != item.bytes:
        raise PackError(pack_file, f"is corrupt: {item.path} (model {model_id}) has {info.file_size} bytes, its "
                                   f"manifest says {item.bytes}")
    target = staging / item.path
    target.parent.mkdir(parents=True, exist_ok=True)
    digest, written = hashlib.sha256(), 0
    try:
        with archive.open(info) as src, open(target, "wb") as out:
            while block := src.read(1 << 20):
                written += len(block)
                if written > item.bytes:
                    break
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:  # a CRC that does not match, data cut short
        raise PackError(pack_file, f"is corrupt or truncated: {item.path} (model {model_id}) is damaged "
                                   f"({exc})") from None
    if written != item.bytes or digest.hexdigest() != item.sha256:
        raise PackError(pack_file, f"is corrupt: {item.path} (model {model_id}) does not match the sha256 in its "
                                   "manifest")


def _clear_stale(packs_dir: Path) -> None:
    """Staging and old-copy folders of installs or removals that died part-way (a crash, a power cut)."""
    try:
        leftovers = [p for p in packs_dir.iterdir() if p.name.startswith(".") and p.is_dir()]
    except OSError:
        return
    for folder in leftovers:
        try:
            if time.time() - folder.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass


def install_pack(pack_file: Path | str, bundle_version: str, packs_dir: Path | None = None) -> FoundPack:
    """Install a pack file into packs_dir (default: the user's data folder): extract into a staging folder beside
    it, verify every file, then rename into `<packs_dir>/<name>`. An installed copy is replaced only after the new
    one verified; on any error nothing changes."""
    pack_file = Path(pack_file)
    packs_dir = user_packs_dir() if packs_dir is None else Path(packs_dir)
    with _open_pack(pack_file) as archive:
        meta = _pack_meta(archive, pack_file)
        name, title = meta["name"], meta["title"]
        if meta["bundle_version"] != bundle_version:
            raise PackError(pack_file, f"is the {title} pack for model bundle version {meta['bundle_version'] or '?'}; "
                                       f"this app's bundle is version {bundle_version}: use the pack file that came "
                                       "with this version of the app")
        needed = sum(entry.total_bytes for entry in meta["entries"])
        try:
            packs_dir.mkdir(parents=True, exist_ok=True)
            _clear_stale(packs_dir)
            if shutil.disk_usage(packs_dir).free < needed:
                raise PackError(packs_dir, f"has no room for the {title} pack: it needs {needed / 1e6:.0f} MB "
                                           f"({free_space(packs_dir)})")
            staging = Path(tempfile.mkdtemp(prefix=f".{name}.installing-", dir=packs_dir))
        except OSError as exc:
            raise storage_error(exc, packs_dir, "choose another data folder (FUSIONDESK_DATA_DIR)") from exc
        try:
            _extract_verified(archive, pack_file, meta["entries"], staging)
            atomic_write_text(staging / PACK_MANIFEST, json.dumps(meta["raw"], indent=2) + "\n")
            _move_into_place(staging, packs_dir / name)
        except OSError as exc:
            raise storage_error(exc, packs_dir, "choose another data folder (FUSIONDESK_DATA_DIR)") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already when it was renamed into place
    log.info("installed the %s pack from %s into %s", title, pack_file, packs_dir / name)
    return read_pack_folder(packs_dir / name, "user")


def _move_into_place(staging: Path, dest: Path) -> None:
    """Rename the verified staging folder to dest. A folder cannot be renamed over a non-empty one, so an old copy
    is first renamed aside (and put back if the second rename fails), then deleted."""
    if not dest.exists():
        os.rename(staging, dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
    os.rmdir(old)
    os.rename(dest, old)
    try:
        os.rename(staging, dest)
    except BaseException:
        os.rename(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)


def remove_pack(name: str, packs_dir: Path | None = None, search_dirs: Iterable[tuple[str, Path]] | None = None) -> Path:
    """Delete an installed pack from the user's data folder (renamed aside first, so the app never sees half of
    it). A pack beside the app belongs to the system package that put it there: refused, saying so."""
    packs_dir = user_packs_dir() if packs_dir is None else Path(packs_dir)
    if not PACK_NAME_PATTERN.match(name or ""):
        raise PackError(name, "is not a pack name (see `fusiondesk packs list`)")
    folder = packs_dir / name
    if folder.is_dir():
        doomed = Path(tempfile.mkdtemp(prefix=f".{name}.removing-", dir=packs_dir))
        os.rmdir(doomed)
        try:
            os.rename(folder, doomed)
        except OSError as exc:
            raise storage_error(exc, folder, "remove it by hand") from exc
        shutil.rmtree(doomed, ignore_errors=True)
        log.info("removed the %s pack from %s", name, folder)
        return folder
    found = [pack for pack in find_packs(search_dirs) if pack.name == name]
    beside_app = next((pack for pack in found if pack.where == "app"), None)
    if beside_app is not None:
        raise PackError(beside_app.folder, "came with the app and is read-only to it: remove it with the system's "
                                           "package manager (the package that installed it)")
    title = PACKS[name].title if name in PACKS else name
    raise PackError(folder, f"the {title} pack is not installed there (nothing to remove)")


# -- what `packs list` and the Models tab show ---------------------------------------------------------------------


def pack_rows(bundle) -> list[dict[str, Any]]:
    """Every known or found pack: name, title, size, where it is, and its state in words ("ok", "for model bundle
    version X", "not installed", "built into this bundle", or a problem)."""
    found = bundle.found_packs
    rows = []
    for spec in PACKS.values():
        mine = [pack for pack in found if pack.name == spec.name]
        if not mine:
            if all(model_id in bundle.models and model_id not in bundle.model_packs for model_id in spec.model_ids):
                size = sum(bundle.models[model_id].total_bytes for model_id in spec.model_ids)
                rows.append(_row(spec.name, spec.title, size, str(bundle.root), "built into this model bundle",
                                 spec.file_name))
            else:
                rows.append(_row(spec.name, spec.title, None, "", "not installed", spec.file_name))
    for pack in found:
        spec = PACKS.get(pack.name)
        rows.append(_row(pack.name, pack.title or (spec.title if spec else pack.name), pack.bytes, str(pack.folder),
                         _state(pack, bundle), spec.file_name if spec else "", pack.where))
    return rows


def _state(pack: FoundPack, bundle) -> str:
    if pack.problem:
        return f"damaged: {pack.problem}"
    if pack.bundle_version != bundle.bundle_version:
        return (f"for another version: made for model bundle version {pack.bundle_version}, this app's is "
                f"{bundle.bundle_version} (ignored)")
    if pack.folder not in bundle.used_pack_folders:
        return "ok, not needed: its models are already there (in the bundle or another copy of the pack)"
    return "ok"


def _row(name, title, size, where, state, file_name, place="") -> dict[str, Any]:
    return {"name": name, "title": title, "bytes": size, "where": where, "place": place, "state": state,
            "file": file_name}
