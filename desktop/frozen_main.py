"""Entry point of the frozen (PyInstaller) FusionDesk executable: the same commands as `fusiondesk`.

Double-clicked, it opens the app window; `FusionDesk selftest`, `FusionDesk batch ...` and every other
command work as in the CLI. Two things differ from a normal Python start:
- a windowed build on Windows has no console, so `sys.stdout`/`sys.stderr` are None and the first print (or
  uvicorn's logging, which refuses to start without a stream) would fail: they go to a log file instead;
- `multiprocessing` must recognise its own child processes in a frozen program before anything else runs.

`FUSIONDESK_STARTUP_PROBE=<file>` makes the window write a JSON line to that file once the page shows the
app's interface, and close itself when `<file>.close` appears. The smoke test and the start-up benchmark
use it: it is the only way to see "the window is showing the UI" from outside the process.
With `FUSIONDESK_PROBE_MEDIA=1` as well, before writing that line the window asks for camera and microphone
(getUserMedia) on the app's page, then on the same server under another origin (http://localhost:PORT/), and
returns to the app: the line's "media" holds both answers. Tests run it with FUSIONDESK_MOCK_CAPTURE=1
(WebKit's mock devices), which checks the window's permission rule in the frozen app itself.
"""

from __future__ import annotations

import multiprocessing
import os
import sys

LOG_NAME = "fusiondesk.log"
PROBE_ENV = "FUSIONDESK_STARTUP_PROBE"
MEDIA_PROBE_ENV = "FUSIONDESK_PROBE_MEDIA"
# Text that only the rendered interface has (a tab title): the HTML shell alone does not count as "shown".
UI_READY_JS = "!!document.body && document.body.innerText.includes('Live') && document.body.innerText.includes('Files')"
# The page fully drawn: the header too, and gradio's "Loading..." gone (the tabs alone show before that).
UI_SETTLED_JS = (UI_READY_JS + " && document.body.innerText.includes('FusionDesk')"
                 " && !document.body.innerText.includes('Loading')")
# Asks for one microphone and one camera; the answer lands in window.__fdMedia (the tracks are stopped at once).
ASK_MEDIA_JS = ("window.__fdMedia = 'pending'; navigator.mediaDevices.getUserMedia({audio: true, video: true}).then("
                "s => {window.__fdMedia = {result: 'granted', audio: s.getAudioTracks().length, "
                "video: s.getVideoTracks().length}; s.getTracks().forEach(t => t.stop())}, "
                "e => {window.__fdMedia = {result: 'denied', error: e.name}}); 'asked'")


def read_probe(marker) -> dict | None:
    """The probe's record (see module doc) once its whole line is in the file; None before (the file may exist
    and still be empty or half-written)."""
    import json
    from pathlib import Path

    try:
        text = Path(marker).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return json.loads(text.split("\n", 1)[0]) if "\n" in text else None


def _log_stream():
    from pathlib import Path

    import platformdirs

    folder = Path(os.environ.get("FUSIONDESK_LOG_DIR") or platformdirs.user_log_dir("FusionDesk", appauthor=False))
    folder.mkdir(parents=True, exist_ok=True)
    return open(folder / LOG_NAME, "a", encoding="utf-8", errors="backslashreplace", buffering=1)


def guard_streams() -> None:
    """Give a windowed build somewhere to write: its missing stdout/stderr become the user's log file."""
    if sys.stdout is not None and sys.stderr is not None:
        return
    try:
        stream = _log_stream()
    except OSError:
        stream = open(os.devnull, "w", encoding="utf-8")  # no writable log folder: still must not crash
    if sys.stdout is None:
        sys.stdout = stream
    if sys.stderr is None:
        sys.stderr = stream


def restore_system_library_path() -> None:
    """PyInstaller's bootloader puts the bundle's folder first on LD_LIBRARY_PATH (Linux), and every program the
    app starts inherits it: WebKitGTK's web and network processes (the window), GStreamer's plugin scanner, the
    default browser. Those are the system's programs and must load the system's libraries, not the bundle's copies
    of zlib, SQLite or libffi (a bundle built on another release would break them). This process has already loaded
    what it needs, and the loader reads the variable only at start, so it is safe to put back here. A frozen child of
    the app (multiprocessing) is set up again by its own bootloader."""
    if sys.platform != "linux" or not getattr(sys, "frozen", False):
        return
    original = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
    if original:
        os.environ["LD_LIBRARY_PATH"] = original
    else:
        os.environ.pop("LD_LIBRARY_PATH", None)


def install_startup_probe(marker: str) -> None:
    """Wrap the window so that it reports when the UI is visible and closes on request (see module doc)."""
    import json
    import time
    from pathlib import Path
    from urllib.parse import urlsplit

    from desktop import window

    open_window = window.open_window
    close_request = Path(marker + ".close")

    def wait_for(predicate, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return True
            except Exception:  # the page is between loads: ask again
                pass
            time.sleep(0.05)
        return False

    def ask_media(w) -> dict:
        w.evaluate_js(ASK_MEDIA_JS)
        answer = {}
        wait_for(lambda: answer.update(value=w.evaluate_js("window.__fdMedia")) or answer["value"] != "pending", 20)
        return answer.get("value") if isinstance(answer.get("value"), dict) else {"result": str(answer.get("value"))}

    def visit(w, address: str) -> bool:
        parts = urlsplit(address)
        w.load_url(address)
        return wait_for(lambda: w.evaluate_js("location.origin") == f"{parts.scheme}://{parts.netloc}"
                        and w.evaluate_js(UI_SETTLED_JS), 60)

    def media_check(w, url: str) -> dict:
        """getUserMedia on the app's page, then from another origin of the same server, then back to the app."""
        other = f"http://localhost:{urlsplit(url).port}/"
        media = {"own_origin": ask_media(w), "other_url": other}
        media["other_origin"] = ask_media(w) if visit(w, other) else {"result": "the other origin did not load"}
        media["back"] = visit(w, url)
        return media

    def probed_open_window(url, title=window.TITLE, on_shown=None):
        def shown(w):
            if getattr(shown, "done", False):
                return  # a later page load (the media check's): the window was already reported
            shown.done = True
            ready = wait_for(lambda: w.evaluate_js(UI_READY_JS), 120)
            record = {"shown": time.time(), "ui_ready": bool(ready), "url": url, "title": w.evaluate_js("document.title"),
                      "backend": window.window_backend()}
            if ready and os.environ.get(MEDIA_PROBE_ENV) == "1":
                record["media"] = media_check(w, url)
            with open(marker, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
            if on_shown is not None:
                on_shown(w)
            wait_for(close_request.exists, 3600)
            w.destroy()

        return open_window(url, title=title, on_shown=shown)

    window.open_window = probed_open_window


def main() -> int:
    multiprocessing.freeze_support()
    guard_streams()
    restore_system_library_path()
    marker = os.environ.get(PROBE_ENV)
    if marker:
        install_startup_probe(marker)
    from desktop.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
