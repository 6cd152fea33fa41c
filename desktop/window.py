"""The native window: pywebview's Qt backend around the local Gradio server.

Camera and microphone: pywebview 6.2.1 grants them to every page in two ways that we replace.
- It appends `--use-fake-ui-for-media-stream` to QTWEBENGINE_CHROMIUM_FLAGS, which makes Chromium grant
  getUserMedia to any origin without asking anyone. We drop that flag.
- Its Qt permission handler passes a plain int where PySide6 6.12 wants a `PermissionPolicy`, raises a
  TypeError, and getUserMedia then never resolves. Ours grants camera and microphone to the app's own
  origin (scheme, host and port of the local server) and denies everything else.
Closing the window stops the server; with no display, the app says so and serves for a browser instead.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger("fusiondesk.window")

TITLE = "FusionDesk"
FAKE_UI_FLAG = "--use-fake-ui-for-media-stream"
MEDIA_FEATURES = ("MediaAudioCapture", "MediaVideoCapture", "MediaAudioVideoCapture")


def origin_of(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    return parts.scheme, (parts.hostname or "").lower(), port


def media_allowed(request_origin: str, app_url: str, feature: str) -> bool:
    """Camera/microphone only, and only for the app's own origin: another page loaded in the window (a
    link followed by mistake) must not get them."""
    return feature in MEDIA_FEATURES and origin_of(request_origin) == origin_of(app_url)


# What a person can do when the window cannot open: the window is pywebview on Qt's web engine (PySide6), which
# FusionDesk installs and the frozen app carries, so a missing or broken one is a damaged install or a system whose
# graphics libraries Qt cannot use.
WINDOW_ADVICE = ("the window needs pywebview and Qt (PySide6), which come with FusionDesk: reinstall it "
                 "(`pip install -e .`), or use the app in a browser with `fusiondesk ui --browser`")


def has_display() -> bool:
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _install_permission_policy(app_url: str) -> None:
    """Patch pywebview's Qt page before the window exists (pinned to pywebview 6.2.1's layout)."""
    from qtpy.QtWebEngineCore import QWebEnginePage

    from webview.platforms import qt as webview_qt

    appended = webview_qt.environ_append

    def environ_append_without_fake_ui(key: str, *values: str, sep: str = " ") -> None:
        kept = [v for v in values if v != FAKE_UI_FLAG]
        if kept:
            appended(key, *kept, sep=sep)

    def on_feature_permission_requested(page, url, feature) -> None:
        name = getattr(feature, "name", str(feature)).split(".")[-1]
        allowed = media_allowed(url.toString(), app_url, name)
        policy = QWebEnginePage.PermissionPolicy
        page.setFeaturePermission(url, feature, policy.PermissionGrantedByUser if allowed else policy.PermissionDeniedByUser)
        log.info("%s %s for %s", "granted" if allowed else "denied", name, url.toString())

    webview_qt.environ_append = environ_append_without_fake_ui
    webview_qt.BrowserView.WebPage.onFeaturePermissionRequested = on_feature_permission_requested
    flags = os.environ.get("QTWEBENGINE_CHROMIUM_FLAGS", "").split()
    os.environ["QTWEBENGINE_CHROMIUM_FLAGS"] = " ".join(f for f in flags if f != FAKE_UI_FLAG)


_open_window = None  # the native window while it is shown: the page's "Choose…" buttons open dialogs in it


def can_choose_folders() -> bool:
    """True while the app runs in its own window (a browser tab has no way to give the server a folder's path:
    there the person types or pastes it)."""
    return _open_window is not None


def choose_folder(start: str = "") -> str | None:
    """The system's folder dialog, opened in the window at `start` (a folder that exists) or where it was last;
    the chosen folder, or None when the person cancelled or there is no window."""
    import webview

    window = _open_window
    if window is None:
        return None
    start_at = str(Path(start).expanduser()) if start and Path(start).expanduser().is_dir() else ""
    chosen = window.create_file_dialog(webview.FileDialog.FOLDER, directory=start_at)
    return chosen[0] if chosen and chosen[0] else None  # pywebview gives ("",) on cancel with Qt, None elsewhere


def open_window(url: str, title: str = TITLE, on_shown=None) -> None:
    """Show `url` in a native window; returns when the window is closed."""
    global _open_window
    os.environ.setdefault("PYWEBVIEW_GUI", "qt")
    os.environ.setdefault("QT_API", "pyside6")
    import webview

    _install_permission_policy(url)
    icon = Path(__file__).resolve().parent.parent / "assets" / "icon.png"
    window = webview.create_window(title, url, width=1280, height=860, min_size=(800, 600))
    if on_shown is not None:
        window.events.loaded += lambda: on_shown(window)
    _open_window = window
    try:
        webview.start(gui="qt", icon=str(icon) if icon.is_file() else None, private_mode=True)
    finally:
        _open_window = None


def run_app(browser: bool = False, port: int = 0, open_browser: bool = True, on_shown=None) -> int:
    """`fusiondesk` / `fusiondesk ui`: serve on 127.0.0.1, show it, stop the server when done."""
    from desktop.ui import launch

    if not browser and not has_display():
        print("fusiondesk: no display found (DISPLAY/WAYLAND_DISPLAY unset), so no window can open; "
              "serving for a browser instead", file=sys.stderr)
        browser, open_browser = True, False
    started = time.monotonic()
    app, url = launch(port=port, open_browser=browser and open_browser)
    print(f"FusionDesk is running at {url} (started in {time.monotonic() - started:.1f} s)", flush=True)
    try:
        if not browser:
            try:
                open_window(url, on_shown=on_shown)
                return 0
            except Exception as exc:  # no Qt, no web engine, a broken graphics stack: the app still runs
                log.debug("the window could not open", exc_info=True)
                print(f"fusiondesk: the app's window could not open ({type(exc).__name__}: {exc}); {WINDOW_ADVICE}. "
                      "Opening FusionDesk in your web browser instead.", file=sys.stderr, flush=True)
                import webbrowser

                webbrowser.open(url)
        # Ctrl-C is what stops it, so it must work even where the app was started with SIGINT ignored (a
        # background job of a non-interactive shell is): Python then leaves the signal ignored.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.default_int_handler)
        print("press Ctrl-C to stop", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        app.close()  # the window is gone (or Ctrl-C): nothing should keep serving in the background
    return 0
