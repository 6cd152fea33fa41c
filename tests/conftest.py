"""Shared fixtures: the real model bundle, real inputs (scikit-image photos, espeak-ng speech), temp settings."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
# The bundle the app itself would use: $FUSIONDESK_MODELS (e.g. a bundle rebuilt elsewhere), else assets/models.
BUNDLE = Path(os.environ.get("FUSIONDESK_MODELS") or ROOT / "assets" / "models")

# Tests never touch the user's real settings or data, and nothing phones home. Set at import, before any
# fixture of any scope (and every subprocess a test starts) could reach the real user folders.
_SESSION_USER_DIR = Path(tempfile.mkdtemp(prefix="fusiondesk-tests-"))
os.environ["FUSIONDESK_CONFIG_DIR"] = str(_SESSION_USER_DIR / "config")
os.environ["FUSIONDESK_DATA_DIR"] = str(_SESSION_USER_DIR / "data")


def pytest_sessionfinish(session, exitstatus):
    import shutil

    shutil.rmtree(_SESSION_USER_DIR, ignore_errors=True)
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("user")
    monkeypatch.setenv("FUSIONDESK_CONFIG_DIR", str(home / "config"))
    monkeypatch.setenv("FUSIONDESK_DATA_DIR", str(home / "data"))


@pytest.fixture(scope="session")
def bundle():
    from engine.manifest import ModelBundle

    if not (BUNDLE / "manifest.json").is_file():
        pytest.fail("the model bundle is not built: run `bash build/setup.sh models` (the README's test command does)")
    return ModelBundle(BUNDLE)


@pytest.fixture(scope="session")
def runtime(bundle):
    """One runtime for the whole session: sessions are loaded once, as in the app."""
    from engine.runtime import Runtime, set_runtime

    rt = Runtime(bundle, device="cpu")
    set_runtime(rt)
    return rt


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> dict[str, Path]:
    """scikit-image's real photographs as JPEG files."""
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    files = {}
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        path = folder / f"{name}.jpg"
        Image.fromarray(getattr(data, name)()).save(path, quality=92)
        files[name] = path
    return files


def speak(text: str, path: Path, voice: str = "en-us", wpm: int = 135, rate: int = 16000) -> Path:
    """espeak-ng speech as a WAV file at the given sample rate (sox resamples)."""
    raw = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(raw), text], check=True)
    # -D: no dither, so the same text always gives the same bytes (tests cache peer results by content)
    subprocess.run(["sox", str(raw), "-D", "-r", str(rate), "-c", "1", "-b", "16", str(path)], check=True)
    raw.unlink()
    return path


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("speech")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


UI_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def server(runtime):
    """The app's Gradio server, one per UI test module, on 127.0.0.1."""
    from desktop.ui import launch

    app, url = launch()
    yield url
    app.close()


@pytest.fixture
def page(browser, server):
    """A fresh browser page on the app. `browser` is each UI module's own: Chromium with that module's fake devices."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.goto(server)
    page.get_by_text("FusionDesk", exact=True).first.wait_for()
    yield page
    context.close()
