"""Freeze FusionDesk into a double-click app: dist/FusionDesk/ (onedir) and dist/FusionDesk.tar.zst.

    .venv/bin/pip install -e ".[freeze]"      # PyInstaller, once
    .venv/bin/python build/freeze.py          # about 1-2 minutes on 2 cores

Runs PyInstaller on build/freeze.spec with its work and output folders outside the sources (build/work,
dist), then puts beside the executable: the app's LICENSE, THIRD_PARTY_MODELS.txt (every bundled model's
license and source, from the manifest), THIRD_PARTY_SOFTWARE.txt (the bundled Python distributions and
their declared licenses) and BUILD_INFO.json (a fingerprint of everything the build read, so tests can
tell a stale bundle from a current one). Then it archives the folder (tar + zstd; the `zstd` program:
`apt-get install zstd`).

Options: --no-archive (skip the .tar.zst), --check (exit 0 if dist/FusionDesk is current, 1 if not).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "build" / "freeze.spec"
WORK = ROOT / "build" / "work"
DIST = ROOT / "dist"
APP_NAME = "FusionDesk"
APP_DIR = DIST / APP_NAME
ARCHIVE = DIST / f"{APP_NAME}.tar.zst"
# zstd level 12: the core app 381 MB -> 216 MB in 15 s on 2 cores, where gzip -6 gave 229 MB (issue 16 asks a download
# of <= 220 MB); level 19 gives 209 MB but takes 3 minutes, xz -6 202 MB in 2.5 minutes. `tar xf` unpacks it.
ARCHIVE_LEVEL = 12
OLD_ARCHIVE = DIST / f"{APP_NAME}.tar.gz"  # what builds before made: removed, so no stale download stays beside a new one
MODELS = ROOT / "assets" / "models"
MANIFEST = MODELS / "manifest.json"
# The optional packs cut from the full bundle (engine.packs): the app folder carries only the core models.
PACK_NAMES = ["languages"]
BUILD_INFO = "BUILD_INFO.json"
ICON_SIZES = [(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)]

# Everything a build reads from the repo. Model files are covered by the manifest (it holds their sha256).
INPUT_GLOBS = ["engine/**/*.py", "desktop/**/*.py", "build/freeze.spec", "build/freeze.py", "build/hooks/*.py",
               "assets/icon.*", "assets/models/manifest.json", "LICENSE", "pyproject.toml"]


# -- staleness ---------------------------------------------------------------------------------------------------


def input_hashes() -> dict[str, str]:
    """Short hashes of the build's inputs, and one of the installed packages' versions."""
    files = sorted({p for pattern in INPUT_GLOBS for p in ROOT.glob(pattern) if p.is_file() and "__pycache__" not in p.parts})
    hashes = {p.relative_to(ROOT).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in files}
    # A set: the same distribution can be found twice (site-packages and an .egg-info in the working folder when
    # Python runs from the repo root), and the fingerprint must not depend on where Python was started.
    packages = sorted({f"{d.metadata['Name']}=={d.version}".lower() for d in metadata.distributions()})
    hashes["(python and installed packages)"] = hashlib.sha256(
        "\n".join([platform.python_version(), *packages]).encode()).hexdigest()[:16]
    return hashes


def fingerprint(hashes: dict[str, str] | None = None) -> str:
    """Equal fingerprints: nothing the build reads has changed."""
    return hashlib.sha256(json.dumps(hashes or input_hashes(), sort_keys=True).encode()).hexdigest()


def changed_inputs(app_dir: Path = APP_DIR) -> list[str]:
    """What differs between the inputs of the build in app_dir and the repo now."""
    before = (built_info(app_dir) or {}).get("inputs", {})
    now = input_hashes()
    return sorted(name for name in before.keys() | now.keys() if before.get(name) != now.get(name))


def built_info(app_dir: Path = APP_DIR) -> dict | None:
    try:
        return json.loads((app_dir / BUILD_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_current(app_dir: Path = APP_DIR) -> bool:
    info = built_info(app_dir)
    return (bool(info) and info.get("fingerprint") == fingerprint() and (app_dir / executable_name()).is_file()
            and all(path.is_file() for path in pack_files(app_dir.parent)))


def pack_files(dist: Path = DIST) -> list[Path]:
    from engine.packs import PACKS

    return [dist / PACKS[name].file_name for name in PACK_NAMES]


def write_packs() -> None:
    """Each pack file beside the app folder, from the same manifest the spec cut the core from."""
    from engine.packs import write_pack

    for name, path in zip(PACK_NAMES, pack_files()):
        write_pack(MODELS, path, name)
        print(f"freeze: {path.relative_to(ROOT)} {path.stat().st_size / 1e6:.0f} MB", flush=True)


def executable_name() -> str:
    return APP_NAME + (".exe" if sys.platform == "win32" else "")


# -- inputs the spec needs ----------------------------------------------------------------------------------------


def ensure_icons() -> None:
    """Windows and macOS icons from assets/icon.png when nobody has drawn them (build/make_icons.py does)."""
    from PIL import Image

    png = ROOT / "assets" / "icon.png"
    ico, icns = png.with_suffix(".ico"), png.with_suffix(".icns")
    if ico.is_file() and icns.is_file():
        return
    image = Image.open(png).convert("RGBA")
    if not ico.is_file():
        image.save(ico, sizes=ICON_SIZES)
    if not icns.is_file():
        image.resize((512, 512), Image.LANCZOS).save(icns)


def check_inputs() -> None:
    missing = [str(p.relative_to(ROOT)) for p in (MANIFEST, ROOT / "LICENSE", ROOT / "assets" / "icon.png")
               if not p.is_file()]
    if missing:
        raise SystemExit(f"freeze: missing {', '.join(missing)} (the model bundle: bash build/setup.sh models)")
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        raise SystemExit('freeze: PyInstaller is not installed: .venv/bin/pip install -e ".[freeze]"')


# -- the build ----------------------------------------------------------------------------------------------------


def run_pyinstaller() -> None:
    command = [sys.executable, "-m", "PyInstaller", str(SPEC), "--noconfirm", "--log-level", "WARN",
               "--workpath", str(WORK), "--distpath", str(DIST)]
    print("freeze: " + " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


def third_party_models() -> str:
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    lines = [f"Models bundled with {APP_NAME} (model bundle version {manifest.get('bundle_version', '?')}).",
             "Each model's weights come from the registry package named under 'source'; their licenses are",
             "those packages' (or their upstream's) as recorded when the bundle was built.", ""]
    from engine.packs import pack_for_model

    for model in manifest["models"]:
        source = model.get("source", {})
        pack = pack_for_model(model["id"])
        lines.append(f"== {model['id']} ({model['task']}, {model.get('precision', '?')})"
                     + (f": in the {pack.title} pack, {pack.file_name}" if pack else ""))
        lines.append(f"   license: {model.get('license') or 'not stated'}")
        for package in source.get("packages", []):
            where = package.get("registry", "pypi")
            lines.append(f"   source:  {where} package {package['name']}=={package['version']}")
        for key in ("derived_from", "built_by"):
            if source.get(key):
                value = source[key]
                lines.append(f"   {key.replace('_', ' ')}: {', '.join(value) if isinstance(value, list) else value}")
        for item in model["files"].values():
            lines.append(f"   file:    assets/models/{item['path']} ({item['bytes']:,} bytes, sha256 {item['sha256'][:16]}…)")
        lines.append("")
    return "\n".join(lines)


def _license_of(dist: metadata.Distribution) -> str:
    meta = dist.metadata
    declared = meta.get("License-Expression") or ""
    if not declared:
        classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
        short = (meta.get("License") or "").strip().splitlines()
        declared = ", ".join(classifiers) or (short[0][:80] if short else "")
    return declared or "see the package"


def third_party_software() -> str:
    """The Python distributions whose modules the spec collected (it writes their top-level names)."""
    bundled = set(json.loads((WORK / SPEC.stem / "bundled_modules.json").read_text(encoding="utf-8")))
    owners = metadata.packages_distributions()
    names = sorted({dist for module in bundled for dist in owners.get(module, [])} - {"fusiondesk"}, key=str.lower)
    lines = [f"Third-party software bundled with {APP_NAME}, with the licenses the packages declare.",
             "The window's web view (WebKitGTK with GTK, GLib and GStreamer on Linux; WebView2 on Windows; WKWebView",
             "on macOS) is the operating system's own and is not part of this folder. Python itself: PSF License.", ""]
    for name in names:
        dist = metadata.distribution(name)
        lines.append(f"{dist.metadata['Name']} {dist.version}: {_license_of(dist)}")
    return "\n".join(lines) + "\n"


def add_documents(inputs: dict[str, str], seconds: float) -> None:
    shutil.copyfile(ROOT / "LICENSE", APP_DIR / "LICENSE.txt")
    (APP_DIR / "THIRD_PARTY_MODELS.txt").write_text(third_party_models(), encoding="utf-8")
    (APP_DIR / "THIRD_PARTY_SOFTWARE.txt").write_text(third_party_software(), encoding="utf-8")
    info = {"fingerprint": fingerprint(inputs), "inputs": inputs, "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(seconds, 1),
            "python": platform.python_version(), "pyinstaller": metadata.version("pyinstaller"),
            "platform": sys.platform}
    (APP_DIR / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


# Loads each library named on stdin (one per line) and prints those that do not load: dlopen is the check that
# a stripped library is still one the loader accepts.
LOAD_CHECK = """
import ctypes, sys
for line in sys.stdin:
    path = line.rstrip("\\n")
    try:
        ctypes.CDLL(path)
    except OSError:
        print(path)
"""


def elf_files(folder: Path) -> list[Path]:
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as handle:
                if handle.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def not_loading(paths: list[Path], app_dir: Path) -> set[Path]:
    env = dict(os.environ, LD_LIBRARY_PATH=str(app_dir / "_internal"))
    run = subprocess.run([sys.executable, "-c", LOAD_CHECK], input="\n".join(map(str, paths)), env=env,
                         capture_output=True, text=True, check=True)
    return {Path(line) for line in run.stdout.splitlines()}


def strip_libraries(app_dir: Path = APP_DIR) -> int:
    """Take the symbol tables off the bundle's libraries: ~45 MB, 17 of them libpython's, which pyenv-style Python
    builds leave unstripped. PyInstaller's own strip=True strips blindly and breaks the libraries auditwheel
    rewrote with patchelf ("ELF load command address/offset not page-aligned"), so here every library is loaded
    again after stripping and put back as it was if it no longer loads. Returns the bytes saved."""
    if not shutil.which("strip"):
        print("freeze: no `strip` (binutils): the libraries keep their symbol tables", flush=True)
        return 0
    libraries = [p for p in elf_files(app_dir) if ".so" in p.name]
    failing_before = not_loading(libraries, app_dir)  # one loader run for all of them
    loadable = [p for p in libraries if p not in failing_before]
    before = {p: p.stat().st_size for p in loadable}
    with tempfile.TemporaryDirectory(dir=app_dir.parent) as keep:
        originals = {}
        for index, path in enumerate(loadable):
            originals[path] = Path(keep) / str(index)
            shutil.copy2(path, originals[path])
            subprocess.run(["strip", "--strip-unneeded", str(path)], check=True, capture_output=True)
        broken = not_loading(loadable, app_dir)
        for path in broken:
            shutil.copy2(originals[path], path)
    if broken:
        print(f"freeze: left unstripped (they no longer load stripped): {', '.join(sorted(p.name for p in broken))}")
    return sum(size - path.stat().st_size for path, size in before.items())


def make_archive() -> None:
    zstd = shutil.which("zstd")
    if zstd is None:
        raise SystemExit("freeze: the archive needs the zstd program (sudo apt-get install zstd), or use --no-archive")
    partial = ARCHIVE.with_suffix(".part")
    with open(partial, "wb") as out:
        tar = subprocess.Popen(["tar", "-C", str(DIST), "--owner=0", "--group=0", "--numeric-owner", "-cf", "-",
                                APP_NAME], stdout=subprocess.PIPE)
        packed = subprocess.run([zstd, "-q", f"-{ARCHIVE_LEVEL}", "-T0"], stdin=tar.stdout, stdout=out)
        tar.stdout.close()
        if tar.wait() != 0 or packed.returncode != 0:
            partial.unlink(missing_ok=True)
            raise SystemExit(f"freeze: making {ARCHIVE.name} failed (tar {tar.returncode}, zstd {packed.returncode})")
    partial.replace(ARCHIVE)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Freeze FusionDesk into dist/FusionDesk (PyInstaller, onedir).")
    parser.add_argument("--no-archive", action="store_true", help=f"do not write {ARCHIVE.relative_to(ROOT)}")
    parser.add_argument("--check", action="store_true", help="only say whether dist/FusionDesk is current")
    args = parser.parse_args(argv)
    if args.check:
        current = is_current()
        print(f"{APP_DIR.relative_to(ROOT)} is {'current' if current else 'missing or stale'}")
        for name in [] if current else changed_inputs():
            print(f"  changed since the build: {name}")
        return 0 if current else 1

    check_inputs()
    ensure_icons()
    inputs = input_hashes()  # before building: a source edited meanwhile must make this build count as stale
    started = time.monotonic()
    for archive in (ARCHIVE, OLD_ARCHIVE):
        archive.unlink(missing_ok=True)  # an archive of an older build must not survive a new one
    for path in pack_files():
        path.unlink(missing_ok=True)  # nor a pack cut from an older bundle
    run_pyinstaller()
    saved = strip_libraries()
    print(f"freeze: stripped the libraries' symbol tables: {saved / 1e6:.0f} MB less", flush=True)
    add_documents(inputs, time.monotonic() - started)
    write_packs()
    print(f"freeze: {APP_DIR.relative_to(ROOT)} {folder_bytes(APP_DIR) / 1e6:.0f} MB, built in "
          f"{time.monotonic() - started:.0f} s", flush=True)
    if not args.no_archive:
        make_archive()
        print(f"freeze: {ARCHIVE.relative_to(ROOT)} {ARCHIVE.stat().st_size / 1e6:.0f} MB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
