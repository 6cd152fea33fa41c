"""The native window (pywebview, Qt WebEngine) on a virtual screen (Xvfb, started here): it shows the app,
grants camera and microphone to the app's own origin only, and closing it stops the server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT
from media import start_xvfb

pytestmark = pytest.mark.skipif(not (shutil.which("Xvfb") and shutil.which("import")),
                                reason="needs Debian's xvfb and imagemagick")

# Runs inside the app's process: the window's `loaded` callback screenshots the screen, asks for the camera
# from the app's page and from another origin, then closes the window the way a person would.
DRIVER = r"""
import json, socket, subprocess, sys, threading, time
from functools import partial
from http.server import HTTPServer, SimpleHTTPRequestHandler

from desktop import window

shot, other_dir = sys.argv[1], sys.argv[2]
out = {}
ASK = ("window.__media = 'pending'; navigator.mediaDevices.getUserMedia({video: true, audio: true})"
       ".then(s => {s.getTracks().forEach(t => t.stop()); window.__media = 'granted'},"
       " e => {window.__media = 'denied: ' + e.name}); 'asked'")

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
    while time.monotonic() < deadline and not w.evaluate_js(expression):
        time.sleep(0.2)

def file_dialog(seconds=20):
    from qtpy.QtWidgets import QApplication, QFileDialog
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [d for d in QApplication.topLevelWidgets() if isinstance(d, QFileDialog) and d.isVisible()]
        if found:
            return found[0]
        time.sleep(0.2)

def choose_folder_in_dialog(w):
    # The Folder tab's "Choose…" opens the system's folder dialog (at this process's working directory, as the
    # folder box is empty); accepting it, as a person pressing "Choose" would, puts that folder in the box.
    from qtpy.QtCore import QMetaObject, Qt
    box = "document.querySelector('#folder-dir textarea, #folder-dir input')"
    w.evaluate_js("[...document.querySelectorAll('[role=tab]')].find(t => t.innerText.trim() === 'Folder').click()")
    wait_for(w, "!!document.querySelector('#folder-choose')")
    w.evaluate_js("document.querySelector('#folder-choose').click()")
    dialog = file_dialog()
    out["dialog"] = dialog.windowTitle() if dialog is not None else None
    if dialog is not None:
        QMetaObject.invokeMethod(dialog, "accept", Qt.ConnectionType.QueuedConnection)
        wait_for(w, f"{box}.value !== ''")
        out["chosen_folder"] = w.evaluate_js(f"{box}.value")

def shown(w):
    if "app_url" in out:
        return  # the second page (another origin) loaded: handled below
    out["app_url"] = w.get_current_url()
    wait_for(w, "document.body.innerText.includes('Labels shown')")
    time.sleep(1.0)  # let the page paint
    subprocess.run(["import", "-window", "root", shot], check=True)
    out["own_origin"] = ask_media(w)
    choose_folder_in_dialog(w)
    other = HTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=other_dir))
    threading.Thread(target=other.serve_forever, daemon=True).start()
    w.load_url(f"http://127.0.0.1:{other.server_address[1]}/index.html")
    wait_for(w, "document.title === 'other'")
    out["other_origin"] = ask_media(w)
    w.destroy()

out["rc"] = window.run_app(on_shown=shown)
port = int(out["app_url"].rsplit(":", 1)[1].strip("/"))
probe = socket.socket()
out["server_stopped"] = probe.connect_ex(("127.0.0.1", port)) != 0
probe.close()
print("RESULT " + json.dumps(out), flush=True)
"""


@pytest.fixture(scope="module")
def display():
    xvfb, name = start_xvfb(range(90, 140))
    yield name
    xvfb.terminate()
    xvfb.wait(timeout=10)


def _app_env(display: str | None) -> dict:
    env = dict(os.environ, QTWEBENGINE_CHROMIUM_FLAGS="--use-fake-device-for-media-stream",
               PYTHONPATH=str(ROOT))
    if os.geteuid() == 0:
        env["QTWEBENGINE_DISABLE_SANDBOX"] = "1"  # Chromium's sandbox refuses root; only CI and tests run as root
    env.pop("WAYLAND_DISPLAY", None)
    if display:
        env["DISPLAY"] = display
    else:
        env.pop("DISPLAY", None)
    return env


@pytest.fixture(scope="module")
def window_run(display, tmp_path_factory):
    folder = tmp_path_factory.mktemp("window")
    other = folder / "other"
    other.mkdir()
    (other / "index.html").write_text("<html><head><title>other</title></head><body>another site</body></html>")
    shot = folder / "screen.png"
    pick = folder / "picked"  # the app's working directory: where the folder dialog opens when the box is empty
    pick.mkdir()
    run = subprocess.run([sys.executable, "-c", DRIVER, str(shot), str(other)], cwd=pick, env=_app_env(display),
                         capture_output=True, text=True, timeout=150)
    line = next((l for l in run.stdout.splitlines() if l.startswith("RESULT ")), None)
    assert line, f"the window run gave no result (rc {run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    return json.loads(line[len("RESULT "):]), shot


def test_window_shows_the_app(window_run, runtime):
    from PIL import Image

    from engine.ocr import read_text

    result, shot = window_run
    screen = Image.open(shot).convert("RGB")
    pixels = np.asarray(screen)
    assert pixels.std() > 20, "the screen is blank"
    words = read_text(screen, runtime=runtime).text
    assert "FusionDesk" in words, f"the title is not on screen; read: {words[:500]}"
    for expected in ("live", "files", "offline", "labels shown"):  # OCR sometimes changes a capital
        assert expected in words.lower(), f"{expected!r} not on screen; read: {words[:500]}"


def test_media_only_for_the_apps_own_origin(window_run):
    result, _ = window_run
    assert result["own_origin"] == "granted"
    assert result["other_origin"].startswith("denied"), result["other_origin"]


def test_choose_opens_the_system_folder_dialog(window_run):
    result, shot = window_run
    assert result["dialog"], "no folder dialog opened"
    assert result["chosen_folder"] == str(shot.parent / "picked")


def test_closing_the_window_stops_the_server(window_run):
    result, _ = window_run
    assert result["rc"] == 0
    assert result["server_stopped"]


def test_no_display_prints_the_address(tmp_path):
    """No display: say so, serve for a browser, print the address; Ctrl-C stops it."""
    import signal
    import urllib.request

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


def test_a_window_that_cannot_open_falls_back_to_the_browser(tmp_path):
    """A display but no usable window (here pywebview fails to import, as with a damaged install): the app says
    why and what to do, opens the page in the default browser ($BROWSER, a script that notes the address), and
    serves until Ctrl-C, never a traceback."""
    import signal
    import urllib.request

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "webview.py").write_text('raise ImportError("libQt6WebEngineCore.so.6: cannot open shared object file")\n')
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    browser.chmod(0o755)
    env = _app_env(":99") | {"PYTHONPATH": f"{broken}{os.pathsep}{ROOT}", "BROWSER": str(browser)}
    app = subprocess.Popen([sys.executable, "-m", "desktop"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in app.stdout:
            seen.append(line)
            if "FusionDesk is running at" in line:
                break
        url = seen[-1].split(" at ")[1].split()[0]
        deadline = time.monotonic() + 30
        while not opened.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert opened.read_text().split() == [url]
        assert urllib.request.urlopen(url, timeout=10).status == 200
    finally:
        app.send_signal(signal.SIGINT)
        _, err = app.communicate(timeout=30)
    assert "the app's window could not open (ImportError: libQt6WebEngineCore.so.6" in err, err
    assert "fusiondesk ui --browser" in err and "Opening FusionDesk in your web browser instead" in err
    assert app.returncode == 0 and "Traceback" not in err, err


def test_permission_policy():
    from desktop.window import media_allowed

    app = "http://127.0.0.1:7861/"
    assert media_allowed("http://127.0.0.1:7861/", app, "MediaVideoCapture")
    assert media_allowed("http://127.0.0.1:7861", app, "MediaAudioVideoCapture")
    assert not media_allowed("http://127.0.0.1:7862/", app, "MediaVideoCapture")
    assert not media_allowed("http://localhost:7861/", app, "MediaAudioCapture")
    assert not media_allowed("https://example.com/", app, "MediaVideoCapture")
    assert not media_allowed("http://127.0.0.1:7861/", app, "Geolocation")
