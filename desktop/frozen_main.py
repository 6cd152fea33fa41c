"""Entry point of the frozen (PyInstaller) FusionDesk executable: the same commands as `fusiondesk`.

Double-clicked, it opens the app window; `FusionDesk selftest`, `FusionDesk batch ...` and every other
command work as in the CLI. Two things differ from a normal Python start:
- a windowed build on Windows has no console, so `sys.stdout`/`sys.stderr` are None and the first print (or
  uvicorn's logging, which refuses to start without a stream) would fail: they go to a log file instead;
- `multiprocessing` must recognise its own child processes in a frozen program before anything else runs.

`FUSIONDESK_STARTUP_PROBE=<file>` makes the window write a JSON line to that file once the page shows the
app's interface, and close itself when `<file>.close` appears. The smoke test and the start-up benchmark
use it: it is the only way to see "the window is showing the UI" from outside the process.
"""

from __future__ import annotations

import multiprocessing
import os
import sys

LOG_NAME = "fusiondesk.log"
PROBE_ENV = "FUSIONDESK_STARTUP_PROBE"
# Text that only the rendered interface has (a tab title): the HTML shell alone does not count as "shown".
UI_READY_JS = "!!document.body && document.body.innerText.includes('Live') && document.body.innerText.includes('Files')"


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


def install_startup_probe(marker: str) -> None:
    """Wrap the window so that it reports when the UI is visible and closes on request (see module doc)."""
    import json
    import time
    from pathlib import Path

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

    def probed_open_window(url, title=window.TITLE, on_shown=None):
        def shown(w):
            ready = wait_for(lambda: w.evaluate_js(UI_READY_JS), 120)
            record = {"shown": time.time(), "ui_ready": bool(ready), "url": url, "title": w.evaluate_js("document.title")}
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
    marker = os.environ.get(PROBE_ENV)
    if marker:
        install_startup_probe(marker)
    from desktop.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
