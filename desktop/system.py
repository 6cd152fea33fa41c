"""Hand a file to the operating system: open it in its default app, or show it in the file manager.

The server runs on the person's own machine (127.0.0.1 only), so what the page asks for here happens on their
desktop, in the native window and in a browser tab alike. Only paths the app itself put in front of the person
(a search result) are passed in; nothing here reads or changes a file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from engine.errors import FusionDeskError

# Linux file managers (Nautilus, Dolphin, Nemo, Caja, Thunar…) implement this D-Bus interface to open a folder
# with one file selected; without it the folder is opened plainly.
FILE_MANAGER_SHOW_ITEMS = ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.FileManager1",
                           "--type=method_call", "/org/freedesktop/FileManager1",
                           "org.freedesktop.FileManager1.ShowItems"]


def open_commands(path: Path, platform: str = sys.platform) -> list[list[str]]:
    """The commands to try, in order, to open `path` in the app the system has for it."""
    if platform == "darwin":
        return [["open", str(path)]]
    if platform == "win32":
        return [["explorer", str(path)]]
    return [["xdg-open", str(path)]]


def reveal_commands(path: Path, platform: str = sys.platform) -> list[list[str]]:
    """The commands to try, in order, to show `path` selected in the file manager."""
    if platform == "darwin":
        return [["open", "-R", str(path)]]
    if platform == "win32":
        return [["explorer", f"/select,{path}"]]
    return [FILE_MANAGER_SHOW_ITEMS + [f"array:string:{path.as_uri()}", "string:"], ["xdg-open", str(path.parent)]]


def _run_first(commands: list[list[str]], what: str, path: Path) -> str:
    if not path.exists():
        raise FusionDeskError(f"{path} is no longer there (moved or deleted since it was indexed)")
    tried = []
    for command in commands:
        if shutil.which(command[0]) is None:
            tried.append(f"{command[0]} is not installed")
            continue
        try:
            # explorer.exe answers 1 even when it worked: on Windows, starting it is success.
            done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, timeout=10, env=os.environ.copy())
        except (OSError, subprocess.TimeoutExpired) as exc:
            tried.append(f"{command[0]}: {exc}")
            continue
        if done.returncode == 0 or command[0] == "explorer":
            return command[0]
        tried.append(f"{command[0]} answered {done.returncode}: {done.stderr.decode(errors='replace').strip()[:200]}")
    raise FusionDeskError(f"could not {what} {path}: " + "; ".join(tried))


def open_file(path: Path | str) -> str:
    """Open the file in its default app; returns the program that did it."""
    return _run_first(open_commands(Path(path)), "open", Path(path))


def reveal_file(path: Path | str) -> str:
    """Show the file in the file manager (selected where the file manager can); returns the program used."""
    return _run_first(reveal_commands(Path(path)), "show", Path(path))
