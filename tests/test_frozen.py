"""The frozen app (PyInstaller, dist/FusionDesk): built here when missing or stale, then run as a person would.

- the CLI inside it: `selftest` and a real `classify`, `batch` and `search` run with no network at all (`unshare -n`);
- the server: HTTP 200 and a gradio_client call returning a real classification;
- the window on a virtual screen (Xvfb), on the system's WebKitGTK: the page shows the app, WebKit's mock camera and
  microphone are granted to the app's origin and refused to another, and closing the window ends the program;
- with WebKitGTK's typelib hidden: the message naming the packages, the default browser, exit code 0.

The bundle is rebuilt by build/freeze.py only when its inputs changed (BUILD_INFO.json holds their
fingerprint), so a clean clone (CI) always tests a fresh build and a second local run costs nothing.
FUSIONDESK_FROZEN_ACCEPT_STALE=1 tests whatever dist/FusionDesk holds (quick local iterations on the tests).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT
from media import start_xvfb
from nowebkit import can_hide_typelibs, run_with_browser_fallback, without_webkit_typelib

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the frozen app is built and tested on Linux")

APP_DIR = ROOT / "dist" / "FusionDesk"
EXE = APP_DIR / "FusionDesk"
FREEZE_TIMEOUT = 40 * 60  # a cold freeze on 2 busy cores; normally 1-3 minutes


def _freeze_module():
    spec = importlib.util.spec_from_file_location("fusiondesk_freeze", ROOT / "build" / "freeze.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def frozen_app() -> Path:
    freeze = _freeze_module()
    if os.environ.get("FUSIONDESK_FROZEN_ACCEPT_STALE") and EXE.is_file():
        return EXE
    if not freeze.is_current(APP_DIR):
        if importlib.util.find_spec("PyInstaller") is None:
            pytest.fail('PyInstaller is not installed: .venv/bin/pip install -e ".[freeze]"')
        run = subprocess.run([sys.executable, str(ROOT / "build" / "freeze.py"), "--no-archive"], cwd=ROOT,
                             capture_output=True, text=True, timeout=FREEZE_TIMEOUT)
        assert run.returncode == 0, f"the freeze failed:\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}"
    assert freeze.is_current(APP_DIR), "dist/FusionDesk is still stale after a freeze"
    return EXE


def test_the_archive_unpacks_to_the_app_folder_as_it_was(tmp_path, monkeypatch):
    """build/freeze.py's download archive (tar + zstd) on a small folder: `tar xf` gives back every file, its bytes
    and its executable bit, owned by nobody in particular; without zstd the freeze says what to install."""
    freeze = _freeze_module()
    app = tmp_path / freeze.APP_NAME
    (app / "_internal" / "assets").mkdir(parents=True)
    (app / freeze.APP_NAME).write_bytes(os.urandom(100_000))
    (app / freeze.APP_NAME).chmod(0o755)
    (app / "_internal" / "assets" / "notes.txt").write_text("the models' licences\n" * 500, encoding="utf-8")
    monkeypatch.setattr(freeze, "DIST", tmp_path)
    monkeypatch.setattr(freeze, "ARCHIVE", tmp_path / "FusionDesk.tar.zst")
    freeze.make_archive()
    assert not (tmp_path / "FusionDesk.tar.part").exists()
    out = tmp_path / "unpacked"
    out.mkdir()
    subprocess.run(["tar", "-C", str(out), "-xf", str(freeze.ARCHIVE)], check=True)
    for original in [p for p in app.rglob("*") if p.is_file()]:
        copy = out / original.relative_to(tmp_path)
        assert copy.read_bytes() == original.read_bytes()
        assert copy.stat().st_mode == original.stat().st_mode
    listing = subprocess.run(["tar", "-tvf", str(freeze.ARCHIVE), "--numeric-owner"], capture_output=True, text=True,
                             check=True).stdout
    assert all(line.split()[1] == "0/0" for line in listing.splitlines()), listing

    monkeypatch.setattr(freeze.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match=r"needs the zstd program \(sudo apt-get install zstd\)"):
        freeze.make_archive()


def _app_env(**extra) -> dict:
    """The frozen app's own model bundle (not $FUSIONDESK_MODELS), no display unless given one."""
    env = {k: v for k, v in os.environ.items() if k not in ("FUSIONDESK_MODELS", "DISPLAY", "WAYLAND_DISPLAY",
                                                             "PYTHONPATH", "PYTHONHOME", "FUSIONDESK_WINDOW")}
    env["GSETTINGS_BACKEND"] = "memory"  # GTK's settings without a dconf service (none under Xvfb)
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def offline() -> list[str]:
    """`unshare -n`: a network namespace with no interfaces up, so nothing can be reached, not even loopback."""
    if not shutil.which("unshare") or subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode:
        pytest.skip("unshare -n is not permitted here (needs root or user namespaces)")
    return ["unshare", "-n"]


def test_bundle_contents(frozen_app):
    from engine.packs import PACKS, core_manifest, read_pack_file

    internal = APP_DIR / "_internal"
    manifest = json.loads((ROOT / "assets" / "models" / "manifest.json").read_text())
    # The app folder holds the core models and the core manifest; the Languages pack is its own file beside it.
    core = core_manifest(manifest)
    assert json.loads((internal / "assets" / "models" / "manifest.json").read_text()) == core
    for model in core["models"]:
        for item in model["files"].values():
            assert (internal / "assets" / "models" / item["path"]).stat().st_size == item["bytes"], item["path"]
    for model_id in PACKS["languages"].model_ids:
        assert not (internal / "assets" / "models" / model_id).exists(), f"{model_id} is in the core bundle"
    pack = read_pack_file(APP_DIR.parent / PACKS["languages"].file_name)
    assert pack["bundle_version"] == manifest["bundle_version"]
    assert [entry.id for entry in pack["entries"]] == list(PACKS["languages"].model_ids)
    notices = (APP_DIR / "THIRD_PARTY_MODELS.txt").read_text()
    for model in manifest["models"]:
        assert f"== {model['id']} " in notices
        assert model["license"] and model["license"] in notices
    assert "MIT License" in (APP_DIR / "LICENSE.txt").read_text()
    software = (APP_DIR / "THIRD_PARTY_SOFTWARE.txt").read_text()
    for name in ("gradio", "onnxruntime", "pywebview", "PyGObject"):
        assert name.lower() in software.lower(), f"{name} missing from THIRD_PARTY_SOFTWARE.txt"
    assert "pyside6" not in software.lower()
    # What must not be there: build-time and test tools, Qt (an opt-in of the Python install only).
    for unwanted in ("torch", "transformers", "skimage", "pytest", "playwright", "tkinter", "dask", "distributed",
                     "PySide6", "shiboken6", "qtpy", "webview/platforms/qt.py", "gradio/templates/node"):
        assert not (internal / unwanted).exists(), f"{unwanted} was bundled"
    files = [p.relative_to(internal).as_posix() for p in internal.rglob("*") if p.is_file()]
    assert not [f for f in files if "Qt6" in f or "qt6" in f.lower() or "QtWebEngine" in f], "Qt files were bundled"
    # The window's web view and its GTK stack are the system's: no copies of them, of their typelibs or data
    # (a bundled GTK next to the system's WebKit breaks on the next system update).
    system_stack = ("libgtk-3", "libgdk-3", "libwebkit2gtk", "libjavascriptcoregtk", "libsoup", "libglib-2.0",
                    "libgobject-2.0", "libgio-2.0", "libgirepository", "libcairo.so", "libpango", "libgdk_pixbuf",
                    "libicu", "libgst")
    bundled_stack = [f for f in files if Path(f).name.startswith(system_stack)]
    assert not bundled_stack, f"system libraries were bundled: {bundled_stack[:10]}"
    assert not [f for f in files if f.endswith(".typelib") or f.startswith(("share/", "gi_typelibs/", "lib/gdk-pixbuf"))]
    # ...while PyGObject's own Python side is there: the bundled app imports it and loads the system's typelibs.
    assert list((internal / "gi").glob("_gi.*.so")), "PyGObject was not bundled"
    assert (internal / "gradio" / "blocks_events.py").is_file(), "gradio's .py sources must ship beside the bytecode"


def test_selftest_offline(frozen_app, offline):
    run = subprocess.run([*offline, str(frozen_app), "selftest"], env=_app_env(), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    assert str(APP_DIR / "_internal" / "assets" / "models") in run.stdout, "the frozen app used another model bundle"
    assert " 0 failed" in run.stdout


def test_cli_commands_offline(frozen_app, offline, photos, tmp_path):
    run = subprocess.run([*offline, str(frozen_app), "classify", "--json", "--no-ocr", str(photos["chelsea"]),
                          str(photos["coffee"])], env=_app_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    cat, coffee = json.loads(run.stdout)
    assert any("cat" in item["label"] for item in cat["labels"][:2]), cat["labels"][:3]
    assert any("espresso" in item["label"] or "cup" in item["label"] for item in coffee["labels"][:3]), coffee["labels"]

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("astronaut", "rocket"):
        shutil.copy(photos[name], folder)
    (folder / "broken.jpg").write_bytes(b"not a picture")
    results = tmp_path / "results.jsonl"
    run = subprocess.run([*offline, str(frozen_app), "batch", str(folder), "--out", str(results), "--tasks", "classify"],
                         env=_app_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode in (0, 1), run.stderr  # 1: a file failed (the broken one), the run went on
    records = {Path(r["file"]).name: r for r in map(json.loads, results.read_text().splitlines())}
    assert {"astronaut.jpg", "rocket.jpg", "broken.jpg"} <= set(records)
    assert records["broken.jpg"]["status"] == "error" and records["broken.jpg"]["error"]
    assert records["rocket.jpg"]["status"] == "ok"
    # batch indexed the folder as it went: the frozen app's SQLite has what search needs (FTS5 for the words)
    run = subprocess.run([*offline, str(frozen_app), "search", "a rocket on its launch pad", "--dir", str(folder),
                          "--json"], env=_app_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert Path(json.loads(run.stdout)["results"][0]["path"]).name == "rocket.jpg", run.stdout
    # The cluster extra is never bundled: --cluster says where it can be had instead of failing on an import.
    run = subprocess.run([*offline, str(frozen_app), "index", str(folder), "--cluster", "local"], env=_app_env(),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert "not part of the double-click app" in run.stderr, run.stderr


def _read_address(process: subprocess.Popen, seconds: float = 120) -> str:
    """The app prints 'FusionDesk is running at URL (...)' once the server answers."""
    found: list[str] = []

    def read() -> None:
        for line in process.stdout:
            if " is running at " in line:
                found.append(line.split(" at ", 1)[1].split()[0])
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(seconds)
    assert found, f"no address printed within {seconds:.0f} s (rc {process.poll()})"
    return found[0]


def _stop(app: subprocess.Popen) -> None:
    """Ctrl-C, as a person in a terminal would; killed (with its children) only if it does not stop."""
    app.send_signal(signal.SIGINT)
    try:
        app.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(app.pid, signal.SIGKILL)
        app.wait()


def _window_record(app: subprocess.Popen, marker: Path, stderr: Path, seconds: float = 180) -> dict:
    """The start-up probe's line (desktop/frozen_main.py) once the window shows the app."""
    from desktop.frozen_main import read_probe

    deadline = time.monotonic() + seconds
    while (shown := read_probe(marker)) is None and app.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert shown is not None, f"the window never showed the app (rc {app.poll()}):\n{stderr.read_text()[-3000:]}"
    assert shown["ui_ready"] and shown["title"] == "FusionDesk", shown
    return shown


@contextlib.contextmanager
def _closed_like_a_person(app: subprocess.Popen, marker: Path, stderr: Path):
    """Around a test of a running window: at the end, close it as a person would (the probe closes it when
    `<marker>.close` appears) and expect exit 0; when the test fails first, or it does not end, kill it."""
    def kill() -> None:
        if app.poll() is None:
            os.killpg(app.pid, signal.SIGKILL)
            app.wait()

    try:
        yield
    except BaseException:
        kill()
        raise
    Path(str(marker) + ".close").touch()
    try:
        app.wait(timeout=60)
    finally:
        kill()
    assert app.returncode == 0, stderr.read_text()[-3000:]


def test_server_answers_and_classifies(frozen_app, photos, tmp_path):
    from gradio_client import Client, handle_file

    app = subprocess.Popen([str(frozen_app), "ui", "--browser", "--no-open"], env=_app_env(), stdout=subprocess.PIPE,
                           stderr=open(tmp_path / "stderr.txt", "w"), text=True, start_new_session=True)
    try:
        url = _read_address(app)
        assert url.startswith("http://127.0.0.1:")
        assert urllib.request.urlopen(url, timeout=30).status == 200
        client = Client(url, analytics_enabled=False, verbose=False)
        got = client.predict([handle_file(str(photos["chelsea"]))], "a cat, a cup of coffee, a rocket", 3,
                             api_name="/classify")
        assert got[0]["labels"][0]["label"] == "a cat", got
    finally:
        _stop(app)
    stderr = (tmp_path / "stderr.txt").read_text()
    assert app.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]


def test_the_ui_uses_only_components_whose_front_end_is_bundled():
    """The freeze leaves out gradio's front-end code for components the app never shows (build/hooks/
    gradio_frontend.py): a component added to the UI must be added to its list, or its page would fail to load."""
    sys.path.insert(0, str(ROOT / "build" / "hooks"))
    from gradio_frontend import KEPT_COMPONENTS

    from desktop.ui import build_app

    used = {component["type"] for component in build_app().get_config_file()["components"]}
    assert used <= KEPT_COMPONENTS, f"add to build/hooks/gradio_frontend.py KEPT_COMPONENTS: {used - KEPT_COMPONENTS}"


def test_every_tab_of_the_frozen_page_loads_its_code(frozen_app, photos, tmp_path):
    """The trimmed front end, in Chromium: every tab opened and a photo analysed, with no request for a chunk that
    is not there and no script error."""
    from playwright.sync_api import sync_playwright

    from media import CHROMIUM, chromium_flags

    app = subprocess.Popen([str(frozen_app), "ui", "--browser", "--no-open"], env=_app_env(), stdout=subprocess.PIPE,
                           stderr=open(tmp_path / "stderr.txt", "w"), text=True, start_new_session=True)
    failed: list[str] = []
    problems: list[str] = ["the page was never checked"]
    try:
        url = _read_address(app)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=chromium_flags())
            page = browser.new_page()
            # The front end's own files (gradio ends its event streams by aborting them: those are not failures).
            def front_end(url: str) -> bool:
                return "/assets/" in url or "/static/" in url

            page.on("requestfailed", lambda request: front_end(request.url) and failed.append(
                f"{request.url} ({request.failure})"))
            page.on("response", lambda response: response.status >= 400 and front_end(response.url) and failed.append(
                f"{response.url} {response.status}"))
            page.on("pageerror", lambda error: failed.append(f"script error: {error}"))
            page.goto(url)
            page.get_by_role("tab", name="Files").wait_for(timeout=60_000)
            tabs = page.get_by_role("tab").all_inner_texts()
            assert {"Live", "Files", "Models & settings"} <= {t.strip() for t in tabs}, tabs
            for name in tabs:
                page.get_by_role("tab", name=name.strip()).click()
                page.wait_for_timeout(700)
            page.get_by_role("tab", name="Files").click()
            page.locator("#files-input input[type=file]").set_input_files([str(photos["chelsea"])])
            page.locator("#files-run").click()
            page.locator("#files-status").get_by_text("files analysed").wait_for(timeout=120_000)
            page.get_by_text("Use via API", exact=True).first.click()  # the API page has chunks of its own
            page.wait_for_timeout(2000)
            problems = list(failed)  # closing the browser aborts the page's open event stream: not a failure
            browser.close()
    finally:
        _stop(app)
    assert not problems, problems


@pytest.fixture
def display():
    if not (shutil.which("Xvfb") and shutil.which("import")):
        pytest.skip("needs Debian's xvfb and imagemagick")
    xvfb, name = start_xvfb(range(150, 200))
    yield name
    xvfb.terminate()
    xvfb.wait(timeout=10)


def test_window_shows_the_app(frozen_app, display, runtime, tmp_path):
    """Double-click equivalent: no arguments, a display. The probe (desktop/frozen_main.py) says when the page
    shows the interface, asks for camera and microphone (WebKit's mock devices) on the app's origin and on
    http://localhost:PORT/, and closes the window when asked, as a person closing it would."""
    from PIL import Image

    from engine.ocr import read_text

    marker = tmp_path / "shown.jsonl"
    shot = tmp_path / "screen.png"
    started = time.time()
    app = subprocess.Popen([str(frozen_app)], env=_app_env(DISPLAY=display, FUSIONDESK_STARTUP_PROBE=str(marker),
                                                           FUSIONDESK_PROBE_MEDIA="1", FUSIONDESK_MOCK_CAPTURE="1"),
                           stdout=subprocess.DEVNULL, stderr=open(tmp_path / "stderr.txt", "w"),
                           start_new_session=True)
    with _closed_like_a_person(app, marker, tmp_path / "stderr.txt"):
        shown = _window_record(app, marker, tmp_path / "stderr.txt")
        assert shown["backend"] == "gtk", shown
        media = shown["media"]
        assert media["own_origin"] == {"result": "granted", "audio": 1, "video": 1}, media
        assert media["other_origin"] == {"result": "denied", "error": "NotAllowedError"}, media
        assert media["back"], "the window did not return to the app after the media check"
        print(f"window showed the UI {shown['shown'] - started:.1f} s after launch")
        time.sleep(0.5)  # let the compositor paint the last frame
        subprocess.run(["import", "-display", display, "-window", "root", str(shot)], check=True, timeout=30)
    words = read_text(Image.open(shot).convert("RGB"), runtime=runtime).text
    # The page's own words: its title, or the line under it (the OCR now and then misses the title's large type)
    assert "FusionDesk" in words or "nothing leaves it" in words, f"the app is not on screen; read: {words[:500]}"
    assert "live" in words.lower() and "files" in words.lower(), words[:500]


def test_without_webkitgtk_the_app_opens_in_the_browser(frozen_app, display, tmp_path):
    """The frozen app (which carries no Qt) where WebKitGTK is not installed (its typelib hidden in a private mount
    namespace): it says what to install, opens the page in the default browser, and exits 0 on Ctrl-C."""
    if not can_hide_typelibs():
        pytest.skip("hiding the typelib needs a private mount namespace (root)")
    url, err, rc, opened = run_with_browser_fallback(without_webkit_typelib([str(frozen_app)], tmp_path),
                                                     _app_env(DISPLAY=display), tmp_path)
    assert opened == [url], err[-3000:]
    assert "Namespace WebKit2 not available" in err and "sudo apt-get install gir1.2-webkit2-4.1" in err, err[-3000:]
    assert "Opening FusionDesk in your web browser instead" in err
    assert rc == 0 and "Traceback" not in err, err[-3000:]
