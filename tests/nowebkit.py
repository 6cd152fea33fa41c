"""A machine without WebKitGTK, made for one command: a private mount namespace (`unshare -m`, root) in which every
girepository folder is a copy without WebKit2's typelibs, so PyGObject and pywebview find no WebKitGTK
("Namespace WebKit2 not available") exactly as on a system where gir1.2-webkit2-4.1 is not installed. Nothing
outside that one process tree sees the change."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

TYPELIB_DIRS = [Path(p) for p in ("/usr/lib/x86_64-linux-gnu/girepository-1.0",
                                  "/usr/lib/aarch64-linux-gnu/girepository-1.0", "/usr/lib64/girepository-1.0",
                                  "/usr/lib/girepository-1.0") if Path(p).is_dir()]


def can_hide_typelibs() -> bool:
    return bool(TYPELIB_DIRS) and shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount --bind /tmp {TYPELIB_DIRS[0]}"], capture_output=True).returncode == 0


def without_webkit_typelib(command: list[str], scratch: Path) -> list[str]:
    """`command`, to be run where WebKitGTK's typelibs are hidden (copies of the others go under `scratch`)."""
    script = []
    for number, folder in enumerate(TYPELIB_DIRS):
        copy = scratch / f"typelibs{number}"
        copy.mkdir()
        for typelib in folder.iterdir():
            if not typelib.name.startswith("WebKit2"):
                shutil.copy2(typelib, copy)
        script.append(f"mount --bind {copy} {folder}")
    return ["unshare", "-m", "sh", "-c", " && ".join(script + ['exec "$@"']), "sh", *command]


def run_with_browser_fallback(command: list[str], env: dict, scratch: Path) -> tuple[str, str, int, list[str]]:
    """Start the app (with a display but no usable web view) and a $BROWSER script that notes the address it is
    given; once the browser was asked, Ctrl-C. Returns (the printed address, stderr, exit code, the addresses the
    browser got)."""
    opened = scratch / "opened.txt"
    browser = scratch / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    browser.chmod(0o755)
    stderr = scratch / "stderr.txt"
    with open(stderr, "w") as err_file:
        app = subprocess.Popen(command, env=env | {"BROWSER": str(browser)}, stdout=subprocess.PIPE, stderr=err_file,
                               text=True, start_new_session=True)
    url = ""
    try:
        for line in app.stdout:
            if "FusionDesk is running at" in line:
                url = line.split(" at ")[1].split()[0]
                break
        deadline = time.monotonic() + 60
        while not opened.exists() and app.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert url, f"no address printed (rc {app.poll()}): {stderr.read_text()[-3000:]}"
        assert urllib.request.urlopen(url, timeout=10).status == 200
    finally:
        if app.poll() is None:
            os.killpg(app.pid, signal.SIGINT)  # Ctrl-C in its terminal: the whole process group
        try:
            app.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(app.pid, signal.SIGKILL)
            app.wait()
    return url, stderr.read_text(), app.returncode, opened.read_text().split() if opened.exists() else []
