"""Debian packages of the frozen app, built with dpkg-deb from what build/freeze.py made:

    .venv/bin/python build/freeze.py     # dist/FusionDesk/ and dist/FusionDesk-languages.pack
    .venv/bin/python build/deb.py        # dist/fusiondesk_<version>_<arch>.deb, dist/fusiondesk-languages_<version>_all.deb
    sudo apt-get install ./dist/fusiondesk_*.deb [./dist/fusiondesk-languages_*.deb]

fusiondesk: the onedir app in /opt/fusiondesk, `fusiondesk` on the PATH, an entry in the desktop's app menu with
the app's icon. Its Depends are the system libraries the bundle links directly but does not carry (each file's
NEEDED entries as the loader resolves them, and dpkg's owner of each) plus what it loads by name at run time and
ldd cannot see: the WebKitGTK web view (GObject introspection), GStreamer's plugins that give the window a
microphone, PortAudio for the CLI's live capture.
fusiondesk-languages: the language pack, unpacked where the app looks for packs beside itself
(/opt/fusiondesk/packs/languages). It is optional: the core app says which features need it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "build")]

import freeze  # noqa: E402  (what the freeze wrote, and where)
from engine.fileio import link_or_copy  # noqa: E402
from engine.packs import PACKS, install_pack  # noqa: E402

DIST, APP_DIR = freeze.DIST, freeze.APP_DIR
PACK_FILE = DIST / PACKS["languages"].file_name
STAGING = ROOT / "build" / "work" / "deb"
INSTALL_DIR = Path("/opt/fusiondesk")
PACKAGE = "fusiondesk"
LANGUAGE_PACKAGE = "fusiondesk-languages"
MAINTAINER = "FusionDesk developers <fusiondesk@localhost>"
# Loaded by name at run time, so ldd cannot find them: the web view and its introspection data, the GStreamer
# elements WebKit records the microphone with (MediaRecorder: plugins-bad and libav) and hears a PulseAudio or
# PipeWire source through, PortAudio (loaded by sounddevice).
RUNTIME_DEPENDS = ["gir1.2-webkit2-4.1", "gstreamer1.0-plugins-good", "gstreamer1.0-plugins-bad",
                   "gstreamer1.0-libav", "gstreamer1.0-pulseaudio | gstreamer1.0-pipewire", "libportaudio2"]

DESKTOP_ENTRY = """[Desktop Entry]
Type=Application
Name=FusionDesk
GenericName=Offline multimodal AI
Comment=Classify, transcribe, read and search your own photos, scans and recordings, on this computer only
Exec={exe}
Icon=fusiondesk
Terminal=false
Categories=Utility;Graphics;AudioVideo;
Keywords=AI;OCR;speech;transcribe;search;photos;camera;microphone;
"""


def version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def architecture() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()


def readable_by_everyone(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def needed_names(path: Path) -> set[str]:
    dynamic = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True).stdout
    return {line.split("[", 1)[1].split("]", 1)[0] for line in dynamic.splitlines() if "(NEEDED)" in line}


def system_libraries(app_dir: Path) -> set[str]:
    """The libraries outside the bundle that its programs and libraries link directly (NEEDED entries, resolved
    where the loader would find them; what those link in turn is their packages' own business, as with
    dpkg-shlibdeps)."""
    internal = app_dir / "_internal"
    env = dict(os.environ, LD_LIBRARY_PATH=str(internal))
    outside: set[str] = set()
    missing: set[str] = set()
    for path in freeze.elf_files(app_dir):
        direct = needed_names(path)
        run = subprocess.run(["ldd", str(path)], capture_output=True, text=True, env=env)
        for line in run.stdout.splitlines():
            name = line.split("=>", 1)[0].strip()
            if "=>" not in line or name not in direct:
                continue
            if "not found" in line:
                missing.add(name)
                continue
            resolved = line.split("=>", 1)[1].split("(")[0].strip()
            if resolved and not Path(resolved).resolve().is_relative_to(app_dir.resolve()):
                outside.add(resolved)
    if missing:
        raise SystemExit(f"deb: the bundle links libraries this machine does not have: {', '.join(sorted(missing))}")
    return outside


def owning_packages(paths: set[str]) -> set[str]:
    """dpkg's owner of each library (the path as linked, or where its symlink points: /lib is /usr/lib here)."""
    owners: set[str] = set()
    for path in sorted(paths):
        real = str(Path(path).resolve())
        usr_merged = [p.replace("/usr/lib/", "/lib/", 1) if p.startswith("/usr/lib/") else "/usr" + p
                      for p in (path, real) if p.startswith(("/usr/lib/", "/lib/"))]
        for candidate in dict.fromkeys([path, real, *usr_merged]):
            run = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
            if run.returncode == 0:
                owners.add(run.stdout.split(":", 1)[0].split(",")[0].strip())
                break
        else:
            raise SystemExit(f"deb: no Debian package owns {path}, which the bundle links")
    return owners


def control(package: str, arch: str, depends: list[str], installed_kib: int, description: str) -> str:
    return (f"Package: {package}\nVersion: {version()}\nArchitecture: {arch}\nMaintainer: {MAINTAINER}\n"
            f"Installed-Size: {installed_kib}\nDepends: {', '.join(depends)}\nSection: graphics\nPriority: optional\n"
            f"Homepage: https://fusiondesk.invalid\nDescription: {description}\n")


def folder_kib(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) // 1024 + 1


def finish_package(staging: Path, package: str, arch: str, depends: list[str], compression: str,
                   description: str) -> Path:
    """Write DEBIAN/control for what is staged and build dist/<package>_<version>_<arch>.deb (atomically)."""
    (staging / "DEBIAN").mkdir()
    (staging / "DEBIAN/control").write_text(control(package, arch, depends, folder_kib(staging), description),
                                            encoding="utf-8")
    out = DIST / f"{package}_{version()}_{arch}.deb"
    partial = out.with_suffix(".part")
    subprocess.run(["dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build", str(staging), str(partial)],
                   check=True, stdout=subprocess.DEVNULL)
    partial.replace(out)
    return out


def app_package(arch: str, compression: str) -> Path:
    staging = STAGING / PACKAGE
    shutil.rmtree(staging, ignore_errors=True)
    opt = staging / INSTALL_DIR.relative_to("/")
    opt.parent.mkdir(parents=True)
    # Hard links where possible: the app is ~350 MB and dpkg-deb only reads the staging folder.
    shutil.copytree(APP_DIR, opt, symlinks=True, copy_function=link_or_copy)
    exe = INSTALL_DIR / "FusionDesk"
    (staging / "usr/bin").mkdir(parents=True)
    (staging / "usr/bin/fusiondesk").symlink_to(exe)
    applications = staging / "usr/share/applications"
    applications.mkdir(parents=True)
    (applications / "fusiondesk.desktop").write_text(DESKTOP_ENTRY.format(exe=exe), encoding="utf-8")
    from PIL import Image

    icon = Image.open(ROOT / "assets" / "icon.png").convert("RGBA")
    for size in (48, 128, 256):
        folder = staging / f"usr/share/icons/hicolor/{size}x{size}/apps"
        folder.mkdir(parents=True)
        icon.resize((size, size), Image.LANCZOS).save(folder / "fusiondesk.png")
    depends = sorted(owning_packages(system_libraries(APP_DIR)) | set(RUNTIME_DEPENDS))
    return finish_package(staging, PACKAGE, arch, depends, compression,
                          "offline multimodal AI for your own photos, scans, recordings, camera and microphone\n"
                          " FusionDesk classifies what it sees, transcribes what it hears, reads text in images, searches a\n"
                          " folder by meaning and processes an archive in one go, all on this computer: no account, no\n"
                          " network. English speech, image, OCR, text and scene models are included; other languages and\n"
                          " translation are in the optional package fusiondesk-languages.")


def language_package(compression: str) -> Path:
    staging = STAGING / LANGUAGE_PACKAGE
    shutil.rmtree(staging, ignore_errors=True)
    packs_dir = staging / INSTALL_DIR.relative_to("/") / "packs"
    packs_dir.mkdir(parents=True)
    # Verified and unpacked exactly as `fusiondesk packs install` does, but into the app's own packs/ folder, and
    # only if it is the pack for the bundle the app package carries.
    core = json.loads((APP_DIR / "_internal" / "assets" / "models" / "manifest.json").read_text(encoding="utf-8"))
    install_pack(PACK_FILE, str(core.get("bundle_version", "")), packs_dir=packs_dir)
    readable_by_everyone(packs_dir)  # installs go through a private staging folder (0700): every user reads these
    return finish_package(staging, LANGUAGE_PACKAGE, "all", [f"{PACKAGE} (= {version()})"], compression,
                          "FusionDesk language pack: speech in other languages and translation\n"
                          " Whisper base (multilingual speech recognition) and the English-Portuguese translation models\n"
                          " for FusionDesk, installed beside the app in /opt/fusiondesk/packs.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build FusionDesk's .deb packages from dist/ (run build/freeze.py first).")
    parser.add_argument("--compression", default="xz", choices=["xz", "zstd", "gzip"],
                        help="dpkg-deb's compressor (default xz: the smallest download)")
    args = parser.parse_args(argv)
    if not shutil.which("dpkg-deb"):
        raise SystemExit("deb: dpkg-deb is not installed (a Debian or Ubuntu machine builds the packages)")
    for needed in (APP_DIR / "FusionDesk", PACK_FILE):
        if not needed.is_file():
            raise SystemExit(f"deb: {needed.relative_to(ROOT)} is missing: run .venv/bin/python build/freeze.py first")
    for out in (app_package(architecture(), args.compression), language_package(args.compression)):
        print(f"deb: {out.relative_to(ROOT)} {out.stat().st_size / 1e6:.0f} MB", flush=True)
    shutil.rmtree(STAGING, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
