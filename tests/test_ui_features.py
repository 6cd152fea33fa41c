"""The app's scene, translation and trained-head features, end to end in headless Chromium (Playwright driving
Debian's /usr/bin/chromium), the app served once for the module: object boxes and person masks on uploaded
photos, a Portuguese voice note shown with its English translation, the Live tab drawing boxes on a fake camera
and classifying it with a head taught in the test, the license notes of the Models tab, and the optional tabs."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import UI_TIMEOUT_MS, speak
from desktop.system import FILE_MANAGER_SHOW_ITEMS
from media import CHROMIUM, chromium_flags, write_y4m

TIMEOUT_MS = UI_TIMEOUT_MS


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    from skimage import data

    folder = tmp_path_factory.mktemp("ui-features")
    motorcycle = folder / "motorcycle.jpg"
    Image.fromarray(data.stereo_motorcycle()[0]).save(motorcycle, quality=92)
    astronaut = folder / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(astronaut, quality=92)
    # Whisper base hears this Brazilian voice as Portuguese (tests/test_translate.py); Marian makes English of it.
    note = speak("O cachorro está latindo no quintal.", folder / "nota.wav", voice="pt-br")
    camera = write_y4m(folder / "camera.y4m", [data.chelsea(), data.coffee()], seconds_each=1.5)
    return {"motorcycle": motorcycle, "astronaut": astronaut, "note": note, "camera": camera,
            "chelsea": data.chelsea(), "coffee": data.coffee()}


@pytest.fixture(scope="module")
def browser(media):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=chromium_flags(video=media["camera"]))
        yield instance
        instance.close()


def choose(page, label: str, option: str) -> None:
    """Pick an option of a Gradio dropdown by the dropdown's label and the option's name."""
    page.get_by_label(label).click()
    page.get_by_role("option", name=option, exact=True).click()


def analyse(page, *paths) -> str:
    page.locator("#files-input input[type=file]").set_input_files([str(p) for p in paths])
    for path in paths:
        page.locator("#files-input").get_by_text(path.stem).first.wait_for()
    page.locator("#files-run").click()
    page.locator("#files-status").get_by_text("files analysed").wait_for()
    return page.locator("#files-results").inner_text()


def start_camera(page) -> None:
    page.get_by_role("tab", name="Live").click()
    page.get_by_text("Click to Access Webcam").click()
    page.get_by_role("button", name="capture photo").click()


def seen_within(locator, names: set[str], seconds: float) -> set[str]:
    """Which of the names a streaming output showed at some point (the fake feed alternates two photos)."""
    seen: set[str] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not names <= seen:
        text = locator.inner_text().lower()
        seen |= {name for name in names if name.lower() in text}
        time.sleep(0.2)
    return seen


def test_photos_show_boxes_and_people(page, media):
    page.get_by_role("tab", name="Files").click()
    results = analyse(page, media["motorcycle"], media["astronaut"])
    objects = page.locator("#files-results .fd-objects")
    assert "motorcycle" in objects.nth(0).inner_text() and "person" in objects.nth(1).inner_text(), results
    people = page.locator("#files-results .fd-people")
    assert re.search(r"cover (\d+)%", people.nth(1).inner_text()).group(1) not in ("0", "1", "2")  # the astronaut
    captions = page.locator("#files-pictures").inner_text()
    for caption in ("motorcycle.jpg: objects", "astronaut.jpg: objects", "astronaut.jpg: people"):
        assert caption in captions, captions


def test_portuguese_voice_note_shows_its_english_translation(page, media):
    page.get_by_role("tab", name="Files").click()
    choose(page, "Speech language", "Portuguese")
    choose(page, "Translate transcripts and text into", "English")
    analyse(page, media["note"])
    row = page.locator("#files-results .fd-transcript tr").first
    original, translation = row.locator("td").nth(1).inner_text(), row.locator(".fd-translation").inner_text()
    assert "dog" in translation.lower(), (original, translation)
    assert "dog" not in original.lower()  # the transcript itself stays Portuguese, the English is beside it


def test_live_boxes_are_drawn_on_the_camera(page):
    page.get_by_role("tab", name="Live").click()
    page.locator("#live-boxes input").check()
    start_camera(page)
    seen = seen_within(page.locator("#live-objects"), {"cat", "cup"}, 25)
    assert seen, "no object named while boxes were on"
    assert page.locator("#live-view img").first.get_attribute("src")  # the boxed frame is shown
    fps = float(re.search(r"([\d.]+)\s*frames per second", page.locator("#live-fps").inner_text()).group(1))
    assert fps > 0.5


def crops(photo: np.ndarray, count: int, seed: int) -> list[Image.Image]:
    """Square crops at random places and sizes: a few "shots" of the same thing."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(photo)
    out = []
    for _ in range(count):
        side = int(min(image.size) * rng.uniform(0.5, 0.9))
        x, y = (int(rng.integers(0, s - side + 1)) for s in image.size)
        out.append(image.crop((x, y, x + side, y + side)).resize((224, 224)))
    return out


def test_live_tab_classifies_with_a_trained_head(page, media, runtime, tmp_path):
    from engine import teach

    for index, (name, photo) in enumerate((("kitty", media["chelsea"]), ("mug", media["coffee"]))):
        (tmp_path / name).mkdir()
        for i, shot in enumerate(crops(photo, 4, seed=index)):
            shot.save(tmp_path / name / f"{i}.jpg", quality=90)
    teach.train_head(tmp_path, "kitchen", folds=2, runtime=runtime)
    page.locator("#live-head-refresh").click()
    choose(page, "Your model (from the Teach tab)", "kitchen (kitty, mug)")
    start_camera(page)
    seen = seen_within(page.locator("#live-labels"), {"kitty", "mug"}, 25)
    assert seen == {"kitty", "mug"}, f"head classes seen: {seen}"
    assert "espresso" not in page.locator("#live-labels").inner_text()  # the head's classes, not ImageNet's


def test_models_tab_states_unconfirmed_licenses(page, runtime):
    page.get_by_role("tab", name="Models & settings").click()
    notes = page.locator("#models-licenses")
    notes.get_by_text("UNCONFIRMED").first.wait_for()
    shown = notes.inner_text()
    for model_id, entry in runtime.bundle.models.items():
        if "UNCONFIRMED" in (entry.license or ""):
            assert model_id in shown
    assert any(m.startswith("translate-") for m in runtime.bundle.models)


@pytest.mark.parametrize("tab, button", [("Teach", "Add class"), ("Folder", "Run"), ("Search", "Index this folder")])
def test_optional_tabs_are_in_the_app_and_load(page, tab, button):
    page.get_by_role("tab", name=tab).click()
    page.get_by_role("button", name=button, exact=True).wait_for()
    assert "Traceback" not in page.locator("body").inner_text()


def test_heard_phrases_get_their_translation(runtime):
    from desktop.capture import Phrase
    from desktop.ui import heard_markdown, new_hearing_state

    state = new_hearing_state()
    state["phrases"] = [Phrase(0.0, 2.0, "O gato dorme no sofá."), Phrase(2.5, 4.0, "The cat sleeps.")]
    assert "→" not in heard_markdown(state)
    state["target"] = "en"
    shown = heard_markdown(state)
    assert re.search(r"O gato dorme no sofá\. → \*[^*]*cat[^*]*\*", shown, re.I), shown
    assert "The cat sleeps. →" not in shown  # already English: nothing beside it


def test_without_the_translation_pack_the_choice_says_so(runtime, tmp_path):
    import gradio as gr

    from desktop.ui import translation_choice
    from engine.manifest import ModelBundle
    from engine.runtime import Runtime, set_runtime

    raw = dict(runtime.bundle.raw)
    raw["models"] = [m for m in raw["models"] if not m["id"].startswith("translate-")]
    (tmp_path / "manifest.json").write_text(json.dumps(raw), encoding="utf-8")
    set_runtime(Runtime(ModelBundle(tmp_path), device="cpu"))
    try:
        with gr.Blocks():
            choice = translation_choice("Translate into", "t")
    finally:
        set_runtime(runtime)
    assert choice.interactive is False and "translation is not installed" in choice.info
    with gr.Blocks():
        assert [value for _, value in translation_choice("Translate into", "t").choices] == ["none", "en", "pt"]


def test_files_tab_reads_text_and_labels_from_one_ocr_pass(runtime, tmp_path, monkeypatch):
    """A scan with labels and "read text" on: the labels are decided by the text and the lines are shown,
    and the page is read once (OCR is the slowest step for a scan)."""
    import engine.ocr
    from desktop.ui import analyse_paths
    from docs import documents

    invoice = documents()["invoice"]
    path = tmp_path / "scan.png"
    invoice.image.save(path)
    passes = []
    real_read_text = engine.ocr.read_text

    def counting_read_text(*args, **kwargs):
        passes.append(1)
        return real_read_text(*args, **kwargs)

    monkeypatch.setattr(engine.ocr, "read_text", counting_read_text)
    records, _, _ = analyse_paths([str(path)], ["an invoice or bill", "a love letter"], "en", read_text=True)
    record = records[0]
    assert record["labels"][0]["label"] == "an invoice or bill"
    assert any("Total due" in line["text"] for line in record["ocr_lines"])
    assert "INVOICE" in record["ocr_text"]
    assert len(passes) == 1


def test_a_gpu_choice_that_cannot_be_honoured_says_so(runtime):
    """'gpu' on an onnxruntime without a GPU provider (this machine, CI) runs on the CPU, and the settings say it."""
    import onnxruntime as ort

    from desktop.ui import settings_summary
    from engine.runtime import GPU_PROVIDERS, Runtime, set_runtime

    if any(p in ort.get_available_providers() for p in GPU_PROVIDERS):
        pytest.skip("this onnxruntime has a GPU provider")
    assert "Running on **CPU**" in settings_summary() and "no GPU provider" not in settings_summary()
    set_runtime(Runtime(runtime.bundle, device="gpu"))
    try:
        shown = settings_summary()
    finally:
        set_runtime(runtime)
    assert "no GPU provider: everything runs on the CPU" in shown and "Running on **CPU**" in shown


def test_a_processed_folder_is_searchable_and_a_typed_query_is_what_is_searched(page, media, tmp_path, monkeypatch):
    """Folder tab -> Search tab with no index step; a file left attached does not hijack a typed query; a query
    with nothing like it in the folder says so instead of listing every file; a result opens (picture, text, a
    recording from the part that matches) and is handed to the system's file manager."""
    import soundfile as sf

    from docs import INVOICE, render

    folder = tmp_path / "archive"
    folder.mkdir()
    Image.fromarray(media["chelsea"]).save(folder / "cat.jpg", quality=90)
    Image.open(media["motorcycle"]).save(folder / "motorcycle.jpg", quality=90)
    render(INVOICE, seed=5).image.save(folder / "invoice_scan.png")
    first, rate = sf.read(speak("The museum is closed on Mondays.", tmp_path / "a.wav"), dtype="float32")
    second, _ = sf.read(speak("Remember to water the tomato plants in the garden.", tmp_path / "b.wav"), dtype="float32")
    sf.write(folder / "memo.wav", np.concatenate([first, np.zeros(3 * rate, np.float32), second]), rate)
    page.get_by_role("tab", name="Folder").click()
    translate = page.get_by_label("translate", exact=True)
    assert not page.locator("#folder-target").is_visible()  # a task's options only while it is chosen
    translate.check()
    page.locator("#folder-target").wait_for(state="visible")
    translate.uncheck()
    page.locator("#folder-target").wait_for(state="hidden")
    page.get_by_label("Folder", exact=True).fill(str(folder))
    page.locator("#folder-run").click()
    page.locator("#folder-status").get_by_text("searchable now").wait_for(timeout=180_000)

    page.get_by_role("tab", name="Search").click()
    page.locator("#search-like input[type=file]").set_input_files(str(folder / "cat.jpg"))
    page.locator("#search-by").get_by_label("files like the one below").wait_for()
    expect_checked = page.locator("#search-by").get_by_label("files like the one below")
    deadline = time.monotonic() + 20
    while not expect_checked.is_checked() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert expect_checked.is_checked()  # attaching a file means "like this file"...
    page.get_by_label("Search", exact=True).fill("the invoice")  # ...until the person types (or pastes) a query
    page.locator("#search-button").click()
    results = page.locator("#search-results")
    results.get_by_text("invoice_scan.png").first.wait_for()
    shown = results.inner_text()
    assert results.locator(".fd-result").first.inner_text().startswith("1. invoice_scan.png"), shown
    assert "cat.jpg" not in shown and "motorcycle.jpg" not in shown  # good matches only

    page.get_by_label("Search", exact=True).fill("a quantum physics lecture")
    page.locator("#search-button").click()
    results.get_by_text("No good match").wait_for()

    preview = page.locator("#search-preview-text")
    page.get_by_label("Search", exact=True).fill("jobs to do in the vegetable garden")
    page.locator("#search-button").click()
    results.get_by_text("memo.wav").first.click()  # a result card opens below the list...
    preview.get_by_text("where it says").wait_for()
    assert re.search(r"Plays from 0:0[3-9], where it says “.*tomato", preview.inner_text()), preview.inner_text()
    page.locator("#search-preview-audio audio, #search-preview-audio button").first.wait_for()  # ...with its player

    page.get_by_label("Search", exact=True).fill("the invoice")
    page.locator("#search-button").click()
    results.get_by_text("invoice_scan.png").first.click()
    preview.get_by_text("INVOICE").first.wait_for()
    assert "Reads:" in preview.inner_text()

    # The file manager is the desktop's: here a stand-in program on PATH records what it was asked to show.
    asked = tmp_path / "asked.txt"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("dbus-send", "xdg-open"):
        (bin_dir / program).write_text(f'#!/bin/sh\necho "{program} $*" >> "{asked}"\n')
        (bin_dir / program).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    page.get_by_label("Search", exact=True).fill("a cat")
    page.locator("#search-button").click()
    page.locator(".fd-thumbs img").first.click()  # a thumbnail opens its picture
    page.locator("#search-preview-picture img").wait_for()
    page.locator("#search-reveal").click()
    page.locator("#search-action").get_by_text("Showed cat.jpg in its folder (dbus-send)").wait_for()
    page.locator("#search-open").click()
    page.locator("#search-action").get_by_text("Opened cat.jpg (xdg-open)").wait_for()
    assert asked.read_text().splitlines() == [
        f"dbus-send {' '.join(FILE_MANAGER_SHOW_ITEMS[1:])} array:string:{(folder / 'cat.jpg').as_uri()} string:",
        f"xdg-open {folder / 'cat.jpg'}"]


def test_files_tab_offers_no_empty_subtitles_and_no_english_to_english(runtime, tmp_path):
    import soundfile as sf

    from desktop.ui import analyse_files

    silent = tmp_path / "silence.wav"
    sf.write(silent, np.zeros(16000 * 3, dtype=np.int16), 16000)
    spoken = speak("The museum is closed on Mondays and open late on Fridays.", tmp_path / "museum.wav")
    page, _, downloads, status = analyse_files([str(silent), str(spoken)], "", "en", False, (), "en", progress=None)
    assert "2 of 2 files analysed" in status
    names = sorted(Path(d).name for d in downloads)
    assert not any(name.startswith("silence.") and name.endswith((".srt", ".vtt", ".txt")) for name in names), names
    assert {"museum.srt", "museum.vtt", "museum.txt"} <= set(names), names
    assert "Already in English: nothing to translate." in page
    assert "—" not in page  # no column of dashes where nothing needed translating


def pick_class(page, name: str) -> None:
    page.get_by_role("combobox", name="Class", exact=True).click()
    page.get_by_role("option", name=name, exact=True).click()


def start_model(page, model: str, classes: tuple[str, ...]) -> None:
    """Teach tab: name the model and add its classes, as a person would."""
    page.get_by_role("tab", name="Teach").click()
    page.get_by_label("Model name").fill(model)
    for name in classes:
        page.get_by_label("New class").fill(name)
        page.get_by_role("button", name="Add class", exact=True).click()
        page.locator("#teach-added").get_by_text(f"Added the class {name}").wait_for()


def test_teach_keeps_the_work_and_edits_class_cards(page, media, tmp_path):
    """Classes and examples go into the chosen class, survive a page reload, and can be deleted; training with
    too little says what to do in plain words."""
    from skimage import data

    photos = []
    for i, box in enumerate([(0, 0, 300, 250), (100, 40, 420, 300)]):
        path = tmp_path / f"cat-{i}.jpg"
        Image.fromarray(data.chelsea()).crop(box).save(path, quality=90)
        photos.append(path)
    start_model(page, "pets", ("cat", "cup"))
    pick_class(page, "cat")
    page.locator("#teach-other-examples").get_by_text("No examples in cat yet").wait_for()
    page.locator("#teach-uploads input[type=file]").set_input_files([str(p) for p in photos])
    page.locator("#teach-uploads").get_by_text("cat-1").first.wait_for()
    page.get_by_role("button", name="Add files to this class").click()
    page.locator("#teach-added").get_by_text("Added 2 file(s) to cat (2 examples)").wait_for()
    assert page.locator("#teach-examples img").count() == 2  # the class card shows its pictures

    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("To train, add at least two classes with a few examples each").first.wait_for()

    page.reload()
    page.get_by_role("tab", name="Teach").click()
    deadline = time.monotonic() + 20
    while page.get_by_label("Model name").input_value() != "pets" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert page.get_by_label("Model name").input_value() == "pets"  # the work comes back after a reload
    counts = page.locator("#teach-counts")
    counts.get_by_text("cup").wait_for()
    assert "cat" in counts.inner_text()

    pick_class(page, "cat")
    page.locator("#teach-examples img").nth(1).wait_for()
    page.get_by_role("button", name="Delete this example").click()
    page.locator("#teach-added").get_by_text("Deleted").wait_for()
    assert page.locator("#teach-examples img").count() == 1
    pick_class(page, "cup")
    page.get_by_role("button", name="Delete this class").click()
    page.locator("#teach-added").get_by_text("Deleted the class cup and its 0 example(s)").wait_for()
    assert "cup" not in counts.inner_text()


def test_a_transcript_row_plays_the_recording_from_its_start(page, tmp_path):
    import soundfile as sf

    first, rate = sf.read(speak("The museum is closed on Mondays.", tmp_path / "a.wav"), dtype="float32")
    second, _ = sf.read(speak("It opens again on Tuesday morning.", tmp_path / "b.wav"), dtype="float32")
    clip = tmp_path / "museum.wav"
    sf.write(clip, np.concatenate([first, np.zeros(3 * rate, np.float32), second]), rate)
    page.get_by_role("tab", name="Files").click()
    analyse(page, clip)
    rows = page.locator("#files-results tr.fd-play")
    rows.nth(1).wait_for()  # two phrases, two rows: the second starts after the pause
    start = rows.last.locator("td.fd-time").inner_text().split("→")[0].strip()  # "mm:ss.ss"
    minutes, seconds = start.split(":")
    rows.last.click()
    player = page.locator("#files-results audio.fd-player")
    deadline = time.monotonic() + 10
    state = {}
    while time.monotonic() < deadline:
        state = player.evaluate("a => ({time: a.currentTime, paused: a.paused, error: a.error && a.error.code})")
        if not state["paused"] and state["time"] >= 0:
            break
        time.sleep(0.2)
    assert state["error"] is None, state  # the page could load the recording
    assert not state["paused"], state
    assert int(minutes) * 60 + float(seconds) > 2.0
    assert state["time"] >= int(minutes) * 60 + float(seconds) - 0.05, state  # played from the row's start


def test_a_snapshot_lands_in_the_chosen_class_and_the_work_survives_a_restart(page, browser, tmp_path):
    """The webcam snapshot goes into the class picked (not the first one); a new app process on the same data
    folder brings back the model name, classes and examples."""
    import signal
    import subprocess
    import sys

    from conftest import ROOT
    from desktop.ui_teach import class_counts

    start_model(page, "desk", ("cat", "cup"))
    pick_class(page, "cup")
    page.get_by_role("tab", name="Webcam").click()
    snapshot = page.locator("#teach-snapshot")
    snapshot.get_by_text("Click to Access Webcam").click()
    taken = snapshot.locator("img:visible")
    for _ in range(5):  # the fake camera can take a moment to deliver its first frame on a busy machine
        snapshot.get_by_role("button", name="capture photo").click()
        try:
            taken.first.wait_for(timeout=5000)
            break
        except Exception:
            continue
    taken.first.wait_for()
    page.get_by_role("button", name="Add snapshot to this class").click()
    page.locator("#teach-added").get_by_text("Added a snapshot to cup (1 example)").wait_for()
    assert class_counts("desk") == {"cat": 0, "cup": 1}
    assert page.locator("#teach-examples img").count() == 1

    env = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY")}
    app = subprocess.Popen([sys.executable, "-m", "desktop"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        url = next(line.split(" at ")[1].split()[0] for line in app.stdout if "FusionDesk is running at" in line)
        again = browser.new_page()
        again.set_default_timeout(UI_TIMEOUT_MS)
        again.goto(url)
        again.get_by_role("tab", name="Teach").click()
        deadline = time.monotonic() + 30
        while again.get_by_label("Model name").input_value() != "desk" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert again.get_by_label("Model name").input_value() == "desk"
        again.locator("#teach-counts").get_by_text("cup").wait_for()
        pick_class(again, "cup")
        again.locator("#teach-examples img").first.wait_for()
        again.close()
    finally:
        app.send_signal(signal.SIGINT)
        _, log = app.communicate(timeout=30)
    assert "warning" not in log.lower(), log  # the app's own log carries no third-party noise


def test_the_models_tab_says_when_a_gpu_choice_cannot_be_honoured(page, runtime):
    import onnxruntime as ort

    from engine.runtime import set_runtime

    if any(p in ort.get_available_providers() for p in ("CUDAExecutionProvider", "DmlExecutionProvider",
                                                         "CoreMLExecutionProvider")):
        pytest.skip("this machine has a GPU provider: the choice is honoured")
    page.get_by_role("tab", name="Models & settings").click()
    page.get_by_label("gpu", exact=True).check()
    try:
        page.get_by_role("button", name="Apply and save").click()
        page.get_by_text("this ONNX Runtime has no GPU provider: everything runs on the CPU").wait_for()
        assert "Running on CPU" in page.get_by_text("Running on").last.inner_text()
    finally:
        set_runtime(runtime)  # the rest of the module goes on with the session's CPU runtime


def test_files_tab_in_the_page_offers_no_empty_downloads(page, tmp_path):
    import soundfile as sf

    silent = tmp_path / "silence.wav"
    sf.write(silent, np.zeros(16000 * 3, dtype=np.int16), 16000)
    spoken = speak("The museum is closed on Mondays and open late on Fridays.", tmp_path / "museum.wav")
    page.get_by_role("tab", name="Files").click()
    page.locator("#files-input input[type=file]").set_input_files([str(silent), str(spoken)])
    page.locator("#files-input").get_by_text("museum").first.wait_for()
    page.locator("#files-run").click()
    page.locator("#files-status").get_by_text("2 of 2 files analysed").wait_for()
    offered = page.locator("#files-downloads")
    offered.get_by_text("museum").first.wait_for()  # a file is listed as its stem, then its suffix
    rows = [re.sub(r"\s+", "", row.inner_text()) for row in offered.locator("tr").all()]  # "museum.srt90.0B…"
    names = {m.group(0) for row in rows for m in [re.match(r".+?\.(srt|vtt|txt|csv|json)", row)] if m}
    assert {"museum.srt", "museum.vtt", "museum.txt"} <= names, rows
    assert not any(re.match(r"silence\.(srt|vtt|txt)", n) for n in names), names  # no empty subtitles offered
