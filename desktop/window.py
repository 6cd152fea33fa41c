"""The native window: pywebview around the local Gradio server, on the web view the system already has.

Which web view (`window_backend()`):
- Linux: pywebview's GTK backend on the system's WebKitGTK (Debian/Ubuntu: `gir1.2-webkit2-4.1`). Nothing of it is
  in the frozen app: the OS keeps it up to date, and the bundle stays small.
- Windows: WebView2 (Edge, part of Windows 10/11); macOS: WKWebView. pywebview's own defaults there.
- Qt WebEngine (PySide6) on request: `pip install "fusiondesk[qt]"`, then FUSIONDESK_WINDOW=qt. It is also used
  when WebKitGTK cannot load but Qt is installed. Never in the frozen app (it would add ~330 MB).

Camera and microphone: one rule for every web view (`media_allowed`): granted to the app's own origin (scheme,
host and port of the local server), denied to any other page the window might show, and every other permission
(location, notifications, ...) denied. desktop/webview_hooks.py wires it into each backend; the per-backend
functions below turn what each web view reports into that rule and are unit-tested on any platform.

If the window cannot open (no display, WebKitGTK not installed, a broken Qt), the app says what to install and
serves the same UI to the default browser instead.
"""

from __future__ import annotations

import importlib.util
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
BACKEND_ENV = "FUSIONDESK_WINDOW"  # gtk | qt | native; unset: the platform's default (see window_backend)
# Tests only: WebKitGTK's built-in fake camera and microphone, so getUserMedia can be checked on a machine with
# neither (CI under Xvfb). Never on by default: a person's window must use their real devices.
MOCK_CAPTURE_ENV = "FUSIONDESK_MOCK_CAPTURE"
# The names the rule speaks in (Qt WebEngine's feature names; the other web views are mapped onto them).
MEDIA_FEATURES = ("MediaAudioCapture", "MediaVideoCapture", "MediaAudioVideoCapture")

# What a person can do when the window cannot open, per backend.
WEBKITGTK_PACKAGES = "gir1.2-webkit2-4.1"
# GStreamer: the microphone and camera (pulseaudio/-good), and MediaRecorder's audio encoders (-bad, libav).
GSTREAMER_PACKAGES = "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav gstreamer1.0-pulseaudio"
BROWSER_HINT = "or use the app in a browser with `fusiondesk ui --browser`"
WINDOW_ADVICE = {
    "gtk": ("the window uses your system's web view, WebKitGTK, which is not installed or cannot load: install it "
            f"with `sudo apt-get install {WEBKITGTK_PACKAGES}` (and, for the microphone and camera, "
            f"`sudo apt-get install {GSTREAMER_PACKAGES}`), {BROWSER_HINT}"),
    "qt": ("the Qt window needs pywebview with PySide6 (Qt WebEngine): `pip install \"fusiondesk[qt]\"`, or unset "
           f"{BACKEND_ENV} to use the system's web view, {BROWSER_HINT}"),
    "native": ("the window uses the system's web view (WebView2 on Windows: install the \"Microsoft Edge WebView2 "
               f"Runtime\"; WKWebView on macOS), {BROWSER_HINT}"),
}


# -- the rule ----------------------------------------------------------------------------------------------------


def origin_of(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    return parts.scheme, (parts.hostname or "").lower(), port


def media_allowed(request_origin: str, app_url: str, feature: str) -> bool:
    """Camera/microphone only, and only for the app's own origin: another page loaded in the window (a
    link followed by mistake) must not get them."""
    return feature in MEDIA_FEATURES and origin_of(request_origin) == origin_of(app_url)


def webkitgtk_allows(request_type: str, page_uri: str | None, app_url: str, *, display: bool = False) -> bool:
    """WebKitGTK's `permission-request`: `request_type` is the request's class name. A UserMediaPermissionRequest
    carries no origin, so the page the web view shows when it asks is what is checked (the app's page embeds no
    frames from other origins). A screen-capture request (getDisplayMedia) comes as the same type: denied."""
    if request_type != "UserMediaPermissionRequest" or display:
        return False
    return media_allowed(page_uri or "", app_url, "MediaAudioVideoCapture")


# WebView2's CoreWebView2PermissionKind names for the media features (every other kind is denied).
WEBVIEW2_MEDIA_KINDS = {"Camera": "MediaVideoCapture", "Microphone": "MediaAudioCapture"}


def webview2_allows(uri: str, kind: str, app_url: str) -> bool:
    """WebView2's PermissionRequested event: `uri` of the requesting frame, `kind` a CoreWebView2PermissionKind name."""
    return media_allowed(uri, app_url, WEBVIEW2_MEDIA_KINDS.get(kind, ""))


# WKWebView's WKMediaCaptureType values (macOS 12+).
WKWEBVIEW_CAPTURE_TYPES = {0: "MediaVideoCapture", 1: "MediaAudioCapture", 2: "MediaAudioVideoCapture"}


def wkwebview_allows(protocol: str, host: str, port: int, capture_type: int, app_url: str) -> bool:
    """WKUIDelegate's requestMediaCapturePermissionForOrigin: the origin comes as a WKSecurityOrigin's protocol,
    host and port (0 for the scheme's default port)."""
    origin = f"{protocol}://{host}" + (f":{port}" if port else "")
    return media_allowed(origin, app_url, WKWEBVIEW_CAPTURE_TYPES.get(capture_type, ""))


# -- which web view ------------------------------------------------------------------------------------------------


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def webkitgtk_problem() -> str | None:
    """Why pywebview's GTK backend cannot load here, or None. Cheap: reads the typelibs, starts no GTK."""
    if not _importable("gi"):
        return "PyGObject (the `gi` module) is not installed"
    import gi

    try:
        gi.require_version("Gtk", "3.0")
    except ValueError as exc:
        return str(exc)
    for version in ("4.1", "4.0"):  # pywebview takes either
        try:
            gi.require_version("WebKit2", version)
            return None
        except ValueError as exc:
            problem = str(exc)
    return problem


def window_backend() -> str:
    """'gtk', 'qt' or 'native' (pywebview's default for Windows and macOS): FUSIONDESK_WINDOW when set, else
    WebKitGTK on Linux, or Qt if WebKitGTK cannot load and the qt extra is installed."""
    wanted = os.environ.get(BACKEND_ENV, "").strip().lower()
    if wanted in ("gtk", "native"):
        # The system's web view is WebKitGTK on Linux. Never pywebview's own pick there: it could be its Qt
        # backend without our permission handler, which grants camera and microphone to every page.
        return "gtk" if sys.platform == "linux" else "native"
    if wanted == "qt":
        return wanted
    if wanted:
        log.warning("%s=%s is not a window backend (gtk, qt, native): using the default", BACKEND_ENV, wanted)
    if sys.platform != "linux":
        return "native"
    if webkitgtk_problem() and _importable("PySide6") and _importable("qtpy"):
        return "qt"
    return "gtk"


def has_display() -> bool:
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


# -- the window ----------------------------------------------------------------------------------------------------


_open_window = None  # the native window while it is shown: the page's "Choose…" buttons open dialogs in it


def can_choose_folders() -> bool:
    """True while the app runs in its own window (a browser tab has no way to give the server a folder's path:
    there the person types or pastes it)."""
    return _open_window is not None


def choose_folder(start: str = "") -> str | None:
    """The system's folder dialog, opened in the window at `start` (a folder that exists, else the working folder);
    the chosen folder, or None when the person cancelled or there is no window."""
    import webview

    window = _open_window
    if window is None:
        return None
    # GTK's dialog needs a folder to open in (Qt took "" as "where it was last").
    start_at = Path(start).expanduser() if start and Path(start).expanduser().is_dir() else Path.cwd()
    chosen = window.create_file_dialog(webview.FileDialog.FOLDER, directory=str(start_at))
    return chosen[0] if chosen and chosen[0] else None  # pywebview gives ("",) on cancel with Qt, None elsewhere


def open_window(url: str, title: str = TITLE, on_shown=None) -> None:
    """Show `url` in a native window; returns when the window is closed. Raises when the web view cannot load."""
    global _open_window
    from desktop import webview_hooks

    backend = window_backend()
    gui = webview_hooks.prepare(backend, url, mock_capture=os.environ.get(MOCK_CAPTURE_ENV) == "1")
    import webview

    icon = Path(__file__).resolve().parent.parent / "assets" / "icon.png"
    window = webview.create_window(title, url, width=1280, height=860, min_size=(800, 600))
    webview_hooks.attach(backend, window, url)
    # Once the page's document is in, its own scripts render the interface: models can warm up meanwhile without
    # taking the CPU from the web view's start (measured: warming up at once added 0.3 s to the window's start).
    window.events.loaded += warm_up_photo_models
    if on_shown is not None:
        window.events.loaded += lambda: on_shown(window)
    _open_window = window
    try:
        webview.start(gui=gui, icon=str(icon) if icon.is_file() else None, private_mode=True)
    finally:
        _open_window = None


def warm_up_photo_models() -> None:
    """Load what a first photo needs (the classifier, its fast cascade, the session set-up) by classifying the
    bundle's own sample photo once, in the background while the page loads: the person's first photo then answers
    in a tenth of the time. Only an optimisation: a failure is logged and the first real request loads the models."""
    def warm() -> None:
        try:
            from engine.runtime import get_runtime
            from engine.tasks import classify_files

            runtime = get_runtime()  # the app's own: its bundle is read and its sessions kept, nothing twice
            classify_files([runtime.bundle.path("samples", "photo")], labels=[], top_k=1, runtime=runtime)
        except Exception:
            log.debug("warming up the photo models failed", exc_info=True)

    global _warmed_up
    with _warm_up_lock:
        if _warmed_up:  # the page loads again on a reload: the models are already there
            return
        _warmed_up = True
    # Not a daemon: quitting while it runs must wait for it (a fraction of a second). A daemon thread still creating
    # an ONNX Runtime session while the interpreter shuts down aborts the process (SIGABRT, seen at Ctrl-C).
    threading.Thread(target=warm, name="warm-up", daemon=False).start()


_warm_up_lock = threading.Lock()
_warmed_up = False


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
    if browser:
        warm_up_photo_models()  # in a window it starts once the page is loading (open_window)
    try:
        if not browser:
            try:
                open_window(url, on_shown=on_shown)
                return 0
            except Exception as exc:  # no WebKitGTK, no Qt, a broken graphics stack: the app still runs
                log.debug("the window could not open", exc_info=True)
                advice = WINDOW_ADVICE.get(window_backend(), WINDOW_ADVICE["native"])
                print(f"fusiondesk: the app's window could not open ({type(exc).__name__}: {exc}); {advice}. "
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
