"""The native window on a virtual screen (Xvfb, started here), run from the sources as `fusiondesk` runs it.

- The default Linux window, pywebview's GTK backend on the system's WebKitGTK: it shows the app, grants WebKit's
  mock camera and microphone to the app's own origin (the Live tab's camera preview gets frames, MediaRecorder
  records the microphone) and refuses them to another origin of the same server, opens the system's folder
  dialog, and closing it stops the server.
- With WebKitGTK's typelib hidden (a private mount namespace), the app says what to install, opens the page in
  the default browser (a $BROWSER script that notes the address) and exits 0 when stopped.
- The opt-in Qt WebEngine window (FUSIONDESK_WINDOW=qt, the `qt` extra): the same origin rule.
- The origin rule of every web view (WebKitGTK, Qt, WebView2, WKWebView) as pure functions.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from media import start_xvfb
from nowebkit import can_hide_typelibs, run_with_browser_fallback, without_webkit_typelib

needs_screen = pytest.mark.skipif(not (shutil.which("Xvfb") and shutil.which("import")),
                                  reason="needs Debian's xvfb and imagemagick")

# Runs inside the app's process: the window's `loaded` callback screenshots the screen, asks for camera and
# microphone on the app's page, chooses a folder in the system's dialog (GTK), asks again from another origin of
# the same server (http://localhost:PORT/), then closes the window the way a person would.
DRIVER = r"""
import json, socket, subprocess, sys, threading, time
from urllib.parse import urlsplit

from desktop import window

shot, backend = sys.argv[1], sys.argv[2]
out = {"backend": window.window_backend()}
ASK = ("window.__media = 'pending'; navigator.mediaDevices.getUserMedia({video: true, audio: true})"
       ".then(s => {window.__media = 'granted audio ' + s.getAudioTracks().length + ' video ' + s.getVideoTracks().length;"
       " s.getTracks().forEach(t => t.stop())}, e => {window.__media = 'denied: ' + e.name}); 'asked'")
READY = "!!document.body && document.body.innerText.includes('Labels shown')"

def ask_media(w):
    w.evaluate_js(ASK)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        answer = w.evaluate_js("window.__media")
        if answer != "pending":
            return answer
        time.sleep(0.2)
    return "no answer"

def wait_for(w, expression, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if w.evaluate_js(expression):
                return True
        except Exception:  # between two pages
            pass
        time.sleep(0.2)
    return False

def accept_gtk_folder_dialog(seconds=20):
    # The dialog runs on GTK's main loop: look for it and press its "Open" (OK) there, as a person would.
    from gi.repository import GLib, Gtk
    seen = []
    def look():
        for found in Gtk.Window.list_toplevels():
            if isinstance(found, Gtk.FileChooserDialog) and found.get_visible() and not seen:
                seen.append(found.get_title())
                found.response(Gtk.ResponseType.OK)
        return False
    deadline = time.monotonic() + seconds
    while not seen and time.monotonic() < deadline:
        GLib.idle_add(look)
        time.sleep(0.3)
    return seen[0] if seen else None

def choose_folder_in_dialog(w):
    # The Folder tab's "Choose…" opens the system's folder dialog (at this process's working directory, as the
    # folder box is empty); accepting it puts that folder in the box.
    box = "document.querySelector('#folder-dir textarea, #folder-dir input')"
    w.evaluate_js("[...document.querySelectorAll('[role=tab]')].find(t => t.innerText.trim() === 'Folder').click()")
    wait_for(w, "!!document.querySelector('#folder-choose')")
    w.evaluate_js("document.querySelector('#folder-choose').click()")
    out["dialog"] = accept_gtk_folder_dialog()
    if out["dialog"]:
        wait_for(w, f"{box}.value !== ''")
        out["chosen_folder"] = w.evaluate_js(f"{box}.value")

RECORD = ("window.__rec = 'pending'; navigator.mediaDevices.getUserMedia({audio: true}).then(s => {"
          " const r = new MediaRecorder(s), parts = []; r.ondataavailable = e => parts.push(e.data);"
          " r.onstop = () => {s.getTracks().forEach(t => t.stop());"
          " window.__rec = r.mimeType + ' ' + parts.reduce((n, b) => n + b.size, 0)};"
          " r.start(); setTimeout(() => r.stop(), 1500)}, e => {window.__rec = 'denied: ' + e.name}); 'asked'")

def record_audio(w):
    # MediaRecorder on the microphone: WebKitGTK encodes with GStreamer (gstreamer1.0-plugins-bad, -libav).
    w.evaluate_js(RECORD)
    wait_for(w, "window.__rec !== 'pending'", 20)
    return w.evaluate_js("window.__rec")

def webcam_preview(w):
    # The Live tab's own camera: gradio's "Click to Access Webcam" asks for the camera and shows its preview.
    w.evaluate_js("[...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Click to Access Webcam')"
                  ".click()")
    wait_for(w, "(document.querySelector('video') || {}).videoWidth > 0", 20)
    return w.evaluate_js("(() => { const v = document.querySelector('video');"
                         " return v ? [v.videoWidth, v.videoHeight] : null })()")

def shown(w):
    if "app_url" in out:
        return  # the second page (another origin) loaded: handled below
    out["app_url"] = w.get_current_url()
    wait_for(w, READY + " && !document.body.innerText.includes('Loading')")  # gradio's own spinner gone
    time.sleep(2.0)  # let WebKit paint it
    subprocess.run(["import", "-window", "root", shot], check=True)
    out["own_origin"] = ask_media(w)
    if backend == "gtk":
        out["recorded"] = record_audio(w)
        out["webcam_preview"] = webcam_preview(w)
        choose_folder_in_dialog(w)
    other = f"http://localhost:{urlsplit(out['app_url']).port}"
    w.load_url(other + "/")
    out["other_loaded"] = wait_for(w, f"location.origin === '{other}' && {READY}")
    out["other_origin"] = ask_media(w)
    w.destroy()

out["rc"] = window.run_app(on_shown=shown)
probe = socket.socket()
out["server_stopped"] = probe.connect_ex(("127.0.0.1", urlsplit(out["app_url"]).port)) != 0
probe.close()
print("RESULT " + json.dumps(out), flush=True)
"""


def _app_env(display: str | None, backend: str = "gtk") -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), FUSIONDESK_WINDOW=backend,
               GSETTINGS_BACKEND="memory")  # GTK's settings without a dconf service (none under Xvfb)
    env.pop("WAYLAND_DISPLAY", None)
    if backend == "gtk":
        env["FUSIONDESK_MOCK_CAPTURE"] = "1"  # WebKit's mock camera and microphone
    else:
        env["QTWEBENGINE_CHROMIUM_FLAGS"] = "--use-fake-device-for-media-stream"  # Chromium's fake devices
        if os.geteuid() == 0:
            env["QTWEBENGINE_DISABLE_SANDBOX"] = "1"  # Chromium's sandbox refuses root; only CI and tests run as root
    if display:
        env["DISPLAY"] = display
    else:
        env.pop("DISPLAY", None)
    return env


@pytest.fixture(scope="module")
def display():
    xvfb, name = start_xvfb(range(90, 140))
    yield name
    xvfb.terminate()
    xvfb.wait(timeout=10)


def _run_window(display: str, folder: Path, backend: str) -> tuple[dict, Path]:
    shot = folder / "screen.png"
    pick = folder / "picked"  # the app's working directory: where the folder dialog opens when the box is empty
    pick.mkdir()
    run = subprocess.run([sys.executable, "-c", DRIVER, str(shot), backend], cwd=pick,
                         env=_app_env(display, backend), capture_output=True, text=True, timeout=180)
    line = next((l for l in run.stdout.splitlines() if l.startswith("RESULT ")), None)
    assert line, f"the window run gave no result (rc {run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    result = json.loads(line[len("RESULT "):])
    result["stderr"] = run.stderr
    return result, shot


@pytest.fixture(scope="module")
def window_run(display, tmp_path_factory):
    return _run_window(display, tmp_path_factory.mktemp("gtk-window"), "gtk")


@needs_screen
def test_window_shows_the_app(window_run, runtime):
    from PIL import Image

    from engine.ocr import read_text

    result, shot = window_run
    assert result["backend"] == "gtk"
    screen = Image.open(shot).convert("RGB")
    pixels = np.asarray(screen)
    assert pixels.std() > 20, "the screen is blank"
    words = read_text(screen, runtime=runtime).text
    assert "FusionDesk" in words, f"the title is not on screen; read: {words[:500]}"
    for expected in ("live", "files", "offline", "labels shown"):  # OCR sometimes changes a capital
        assert expected in words.lower(), f"{expected!r} not on screen; read: {words[:500]}"


@needs_screen
def test_media_only_for_the_apps_own_origin(window_run):
    result, _ = window_run
    assert result["own_origin"] == "granted audio 1 video 1", result["own_origin"]
    kind, size = result["recorded"].rsplit(" ", 1)  # e.g. "audio/mp4; codecs=mp4a 13318"
    assert kind.startswith("audio/") and int(size) > 1000, result["recorded"]
    width, height = result["webcam_preview"] or (0, 0)
    assert width > 0 and height > 0, "the Live tab's camera preview got no frames"
    assert result["other_loaded"], "the page did not load from http://localhost:PORT/"
    assert result["other_origin"] == "denied: NotAllowedError", result["other_origin"]
    # the decisions are logged with the page that asked
    assert "Traceback" not in result["stderr"], result["stderr"][-3000:]


@needs_screen
def test_choose_opens_the_system_folder_dialog(window_run):
    result, shot = window_run
    assert result["dialog"], "no folder dialog opened"
    assert result["chosen_folder"] == str(shot.parent / "picked")


@needs_screen
def test_closing_the_window_stops_the_server(window_run):
    result, _ = window_run
    assert result["rc"] == 0
    assert result["server_stopped"]


@needs_screen
@pytest.mark.skipif(importlib.util.find_spec("PySide6") is None, reason='the opt-in Qt window needs ".[qt]"')
def test_qt_window_keeps_the_same_origin_rule(display, tmp_path):
    from PIL import Image

    result, shot = _run_window(display, tmp_path, "qt")
    assert result["backend"] == "qt"
    assert np.asarray(Image.open(shot).convert("L")).std() > 20, "the screen is blank"
    assert result["own_origin"] == "granted audio 1 video 1", result["own_origin"]
    assert result["other_loaded"] and result["other_origin"].startswith("denied"), result["other_origin"]
    assert result["rc"] == 0 and result["server_stopped"]


def test_no_display_prints_the_address(tmp_path):
    """No display: say so, serve for a browser, print the address; Ctrl-C stops it."""
    app = subprocess.Popen([sys.executable, "-m", "desktop"], cwd=ROOT, env=_app_env(None), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in app.stdout:  # other libraries may print first; the app's own line names the address
            seen.append(line)
            if "FusionDesk is running at" in line:
                break
        assert seen and "FusionDesk is running at" in seen[-1], ("".join(seen), app.poll())
        url = seen[-1].split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        assert urllib.request.urlopen(url, timeout=10).status == 200
    finally:
        app.send_signal(signal.SIGINT)
        _, err = app.communicate(timeout=30)
    assert "no display found" in err
    assert app.returncode == 0, err
    assert "Traceback" not in err


# -- WebKitGTK missing ---------------------------------------------------------------------------------------------

needs_mount_namespace = pytest.mark.skipif(not can_hide_typelibs(),
                                           reason="hiding the typelib needs a private mount namespace (root)")


@needs_mount_namespace
def test_without_webkitgtk_the_app_says_what_to_install_and_opens_the_browser(display, tmp_path):
    """The default install (no Qt) on a machine without WebKitGTK: a message naming the packages, the page in the
    default browser, serving until Ctrl-C, exit code 0, never a traceback."""
    env = _app_env(display, backend="gtk")
    del env["FUSIONDESK_WINDOW"]  # the default choice, as installed
    env["PYTHONPATH"] = f"{tmp_path / 'no-qt'}{os.pathsep}{ROOT}"
    (tmp_path / "no-qt").mkdir()
    # The test environment has the qt extra; the default install does not: hide it, so the default is WebKitGTK.
    (tmp_path / "no-qt" / "sitecustomize.py").write_text(
        "import sys\nfor name in ('PySide6', 'qtpy'):\n    sys.modules[name] = None\n")
    url, err, rc, opened = run_with_browser_fallback(
        without_webkit_typelib([sys.executable, "-m", "desktop"], tmp_path), env, tmp_path)
    assert opened == [url], err
    assert "the app's window could not open (ValueError: Namespace WebKit2 not available" in err, err
    assert "sudo apt-get install gir1.2-webkit2-4.1" in err and "gstreamer1.0-plugins-bad" in err, err
    assert "Opening FusionDesk in your web browser instead" in err
    assert rc == 0 and "Traceback" not in err, err


@needs_mount_namespace
@pytest.mark.skipif(importlib.util.find_spec("PySide6") is None, reason='needs the qt extra (".[qt]")')
def test_without_webkitgtk_an_installed_qt_is_the_window(tmp_path):
    command = [sys.executable, "-c", "from desktop.window import window_backend, webkitgtk_problem;"
               "print(window_backend()); print(webkitgtk_problem())"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("FUSIONDESK_WINDOW", None)
    hidden = subprocess.run(without_webkit_typelib(command, tmp_path), env=env, capture_output=True, text=True,
                            timeout=60)
    assert hidden.stdout.split("\n")[:2] == ["qt", "Namespace WebKit2 not available"], hidden.stdout + hidden.stderr
    normal = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert normal.stdout.split("\n")[:2] == ["gtk", "None"], normal.stdout + normal.stderr


# -- the rule, per web view ----------------------------------------------------------------------------------------


def test_permission_policy():
    from desktop.window import media_allowed

    app = "http://127.0.0.1:7861/"
    assert media_allowed("http://127.0.0.1:7861/", app, "MediaVideoCapture")
    assert media_allowed("http://127.0.0.1:7861", app, "MediaAudioVideoCapture")
    assert not media_allowed("http://127.0.0.1:7862/", app, "MediaVideoCapture")
    assert not media_allowed("http://localhost:7861/", app, "MediaAudioCapture")
    assert not media_allowed("https://example.com/", app, "MediaVideoCapture")
    assert not media_allowed("http://127.0.0.1:7861/", app, "Geolocation")


def test_webkitgtk_rule():
    from desktop.window import webkitgtk_allows

    app = "http://127.0.0.1:7861/"
    assert webkitgtk_allows("UserMediaPermissionRequest", "http://127.0.0.1:7861/?view=live", app)
    assert not webkitgtk_allows("UserMediaPermissionRequest", "http://localhost:7861/", app)
    assert not webkitgtk_allows("UserMediaPermissionRequest", "https://127.0.0.1:7861/", app)
    assert not webkitgtk_allows("UserMediaPermissionRequest", None, app)  # no page yet
    assert not webkitgtk_allows("UserMediaPermissionRequest", app, app, display=True)  # screen capture
    for other in ("GeolocationPermissionRequest", "NotificationPermissionRequest", "ClipboardPermissionRequest",
                  "DeviceInfoPermissionRequest", "PointerLockPermissionRequest"):
        assert not webkitgtk_allows(other, app, app), other


def test_webview2_rule():
    from desktop.window import webview2_allows

    app = "http://127.0.0.1:7861/"
    assert webview2_allows("http://127.0.0.1:7861/", "Camera", app)
    assert webview2_allows("http://127.0.0.1:7861/index.html", "Microphone", app)
    assert not webview2_allows("http://localhost:7861/", "Camera", app)
    assert not webview2_allows("https://example.com/", "Microphone", app)
    for other in ("Geolocation", "Notifications", "ClipboardRead", "OtherSensors", "UnknownPermission"):
        assert not webview2_allows("http://127.0.0.1:7861/", other, app), other


def test_wkwebview_rule():
    from desktop.window import wkwebview_allows

    app = "http://127.0.0.1:7861/"
    for capture_type in (0, 1, 2):  # camera, microphone, both
        assert wkwebview_allows("http", "127.0.0.1", 7861, capture_type, app)
    assert not wkwebview_allows("http", "localhost", 7861, 1, app)
    assert not wkwebview_allows("https", "127.0.0.1", 7861, 1, app)
    assert not wkwebview_allows("http", "127.0.0.1", 0, 1, app)  # port 0: the scheme's default, 80
    assert wkwebview_allows("http", "127.0.0.1", 0, 1, "http://127.0.0.1/")
    assert not wkwebview_allows("http", "127.0.0.1", 7861, 7, app)  # an unknown capture type


def test_backend_choice(monkeypatch):
    from desktop import window

    system = "gtk" if sys.platform == "linux" else "native"
    for name, expected in (("gtk", system), ("native", system), ("qt", "qt"), ("QT ", "qt")):
        monkeypatch.setenv(window.BACKEND_ENV, name)
        assert window.window_backend() == expected, name
    monkeypatch.delenv(window.BACKEND_ENV)
    if sys.platform == "linux" and window.webkitgtk_problem() is None:
        assert window.window_backend() == "gtk"
    assert "gir1.2-webkit2-4.1" in window.WINDOW_ADVICE["gtk"] and "fusiondesk[qt]" in window.WINDOW_ADVICE["qt"]
