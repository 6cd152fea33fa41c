"""Live benchmark (not a test): how fast the Live tab labels webcam frames, and how soon a spoken phrase's
text is ready after the speaker stops.

1. Webcam labels per second, end to end: the app served on 127.0.0.1, headless Chromium with a fake camera
   (a 30 fps Y4M feed of scikit-image photos), Gradio's streaming webcam input; counted from the frames the
   page reports as labelled over a fixed time: labels only, with object boxes drawn, and with boxes plus a
   blurred background. Also the classifier alone on the same frames, for comparison.
2. Phrase delay: espeak-ng sentences, separated by pauses, fed to the Live tab's phrase transcriber in
   real time, in the chunk size the browser microphone sends; the delay is from the moment the last
   spoken sample arrived to the moment the phrase's text was ready (voice activity must first hear the
   pause, then Whisper transcribes).
3. Under load: labels per second with a Files-tab analysis running all along in the same server (a second
   page keeps clicking Analyse), against the same count without it; the frames the browser sent per second;
   and the lag, how long ago the camera produced the frame whose labels are shown (every frame of this feed
   carries its number), which would grow and grow if frames queued.

    .venv/bin/python bench/bench_live.py [--seconds 20] [--json out.json] [--load-only]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

SENTENCES = [
    "The quick brown fox jumped over the lazy dog.",
    "Please send the invoice to the accounting team.",
    "The meeting starts at nine tomorrow morning.",
    "I left my keys on the kitchen table.",
]


def speech(text: str, folder: Path) -> np.ndarray:
    import soundfile as sf

    raw, wav = folder / "raw.wav", folder / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "135", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav)], check=True)
    samples, _ = sf.read(wav, dtype="float32")
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    return samples[loud[0]: loud[-1] + 1]  # espeak pads with silence: the phrase ends at its last sound


def bench_phrase_delay(chunk_seconds: float, pause_seconds: float = 1.5) -> dict:
    from desktop.capture import PhraseTranscriber

    rate, chunk = 16000, int(16000 * chunk_seconds)
    with tempfile.TemporaryDirectory() as folder:
        phrases = [speech(text, Path(folder)) for text in SENTENCES]
    stream, ends = [np.zeros(rate // 2, np.float32)], []
    for samples in phrases:
        stream.append(samples)
        ends.append(sum(len(s) for s in stream))
        stream.append(np.zeros(int(rate * pause_seconds), np.float32))
    audio = np.concatenate(stream)

    warm = PhraseTranscriber(language="en")  # every session loaded before the clock starts, as in a running app
    warm.feed(np.concatenate([phrases[1], np.zeros(rate, np.float32)]))
    warm.flush()
    transcriber = PhraseTranscriber(language="en")
    start = time.monotonic()
    arrived: dict[int, float] = {}  # phrase index -> when its last sample arrived
    results = []
    for offset in range(0, len(audio), chunk):
        due = start + (offset + chunk) / rate  # a microphone delivers a chunk once it has been spoken
        time.sleep(max(0.0, due - time.monotonic()))
        for index, end in enumerate(ends):
            if offset < end <= offset + chunk:
                arrived[index] = time.monotonic()
        for phrase in transcriber.feed(audio[offset: offset + chunk]):
            if phrase.final and phrase.text:
                index = min(range(len(ends)), key=lambda i: abs(ends[i] / rate - phrase.end))
                results.append({"said": SENTENCES[index], "heard": phrase.text,
                                "delay_s": round(phrase.ready_at - arrived.get(index, phrase.ready_at), 3)})
    delays = [r["delay_s"] for r in results]
    return {"chunk_s": chunk_seconds, "phrases": results, "median_delay_s": float(np.median(delays)) if delays else None,
            "max_delay_s": max(delays) if delays else None}


def bench_classifier_alone(frames: int = 60) -> dict:
    from PIL import Image
    from skimage import data

    from desktop.ui import frame_labels, perceive_frame

    def label(image):
        return frame_labels(perceive_frame(image, [], 5), [], 5)

    images = [Image.fromarray(data.chelsea()).resize((640, 480)), Image.fromarray(data.coffee()).resize((640, 480))]
    label(images[0])
    start = time.monotonic()
    for i in range(frames):
        label(images[i % 2])
    return {"frames": frames, "labels_per_s": round(frames / (time.monotonic() - start), 1)}


def frames_reported(page) -> int:
    """The count of labelled frames the Live tab shows under the labels."""
    return int(re.search(r"(\d+) frames$", page.locator("#live-fps").inner_text().strip()).group(1))


def bench_webcam_in_browser(seconds: float, boxes: bool = False, background: str = "keep") -> dict:
    from playwright.sync_api import sync_playwright
    from skimage import data

    from desktop.ui import launch
    from media import CHROMIUM, chromium_flags, write_y4m

    folder = Path(tempfile.mkdtemp(prefix="fusiondesk-bench-"))
    camera = write_y4m(folder / "camera.y4m", [data.chelsea(), data.coffee()], seconds_each=1.0, fps=30, size=(640, 480))
    app, url = launch()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=chromium_flags(video=camera))
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url)
            if boxes:
                page.locator("#live-boxes input").check()
            if background != "keep":
                page.locator("#live-background").get_by_text(background.capitalize(), exact=True).click()
            page.get_by_text("Click to Access Webcam").click()
            page.get_by_role("button", name="capture photo").click()
            page.locator("#live-fps").get_by_text("frames per second").wait_for(timeout=30_000)
            time.sleep(3)  # warm-up: sessions loaded, stream settled
            first, t0 = frames_reported(page), time.monotonic()
            time.sleep(seconds)
            last, t1 = frames_reported(page), time.monotonic()
            shown = page.locator("#live-fps").inner_text().strip().splitlines()[-1]
            browser.close()
    finally:
        app.close()
    return {"boxes": boxes, "background": background, "seconds": round(t1 - t0, 1), "frames_labelled": last - first,
            "labels_per_s": round((last - first) / (t1 - t0), 1), "page_shows": shown.strip()}


# -- under load: the same webcam count while a Files analysis runs, and how old each labelled frame is ----------

AHEAD_FRAMES = 10  # see frame_lags
CODE_BITS = 8  # a frame's number, stamped into the picture as black/white squares along its bottom edge


def stamped_camera(path: Path, seconds: float = 4.0, fps: int = 30, size: tuple[int, int] = (640, 480)) -> Path:
    """A looping Y4M feed like the other runs' (cat, then coffee, a second each) whose every frame carries its
    own number, so that the server can tell which frame it was handed: the lag is then how long ago the camera
    produced the frame whose labels are shown."""
    from PIL import Image, ImageOps
    from skimage import data

    from media import rgb_to_i420

    width, height = size
    photos = [np.asarray(ImageOps.fit(Image.fromarray(p).convert("RGB"), size)) for p in (data.chelsea(), data.coffee())]
    count = round(seconds * fps)
    assert count <= 2 ** CODE_BITS
    side = width // (2 * CODE_BITS)
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for index in range(count):
            frame = photos[(index // fps) % len(photos)].copy()
            frame[height - side:, : 2 * side * CODE_BITS] = 255
            for bit in range(CODE_BITS):
                if index >> bit & 1:
                    frame[height - side:, 2 * side * bit: 2 * side * bit + side] = 0
            out.write(b"FRAME\n" + rgb_to_i420(frame))
    return path


def frame_number(frame) -> int | None:
    """The number stamped_camera put into a frame (read at the squares' centres, so any scaling is fine)."""
    frame = np.asarray(frame)
    if frame.ndim != 3:
        return None
    height, width = frame.shape[:2]
    side = width / (2 * CODE_BITS)
    y = int(height - side / 2)
    luma = frame[..., :3].mean(axis=2)
    return sum(1 << bit for bit in range(CODE_BITS) if luma[y, int(2 * side * bit + side / 2)] < 128)


# Runs in the page: every frame the camera's <video> presents, its stamped number and the wall time (ms), so the
# lag is measured against when the browser had the frame, not against a guess of the fake camera's clock.
WATCH_FRAMES_JS = """([bits]) => {
    const video = document.querySelector('[data-testid="webcam-video"]');
    const canvas = document.createElement('canvas');
    const context = canvas.getContext('2d', {willReadFrequently: true});
    window.fdFrames = [];
    const watch = () => {
        const width = video.videoWidth, height = video.videoHeight;
        if (width && height) {
            const side = width / (2 * bits);
            canvas.width = width; canvas.height = Math.ceil(side);
            context.drawImage(video, 0, height - side, width, side, 0, 0, width, side);
            const strip = context.getImageData(0, 0, width, canvas.height).data;
            let number = 0;
            for (let bit = 0; bit < bits; bit++) {
                const at = (Math.floor(side / 2) * width + Math.floor(2 * side * bit + side / 2)) * 4;
                if ((strip[at] + strip[at + 1] + strip[at + 2]) / 3 < 128) number |= 1 << bit;
            }
            window.fdFrames.push([number, Date.now()]);
        }
        video.requestVideoFrameCallback(watch);
    };
    video.requestVideoFrameCallback(watch);
}"""


def frame_lags(calls: list[dict], shown: list[list[float]], period: int) -> dict:
    """How old each labelled frame was when its labels were ready: the handler's end (wall clock) minus when the
    page's video presented that frame. The feed loops every `period` frames and the page presents only some
    of them, so the presented numbers are counted on (unwrapped) and a frame's time is read off that line."""
    if len(shown) < 2:
        return {}
    positions, times = [], []
    for number, millis in shown:
        step = 0 if not positions else (int(number) - positions[-1]) % period
        positions.append(int(number) if not positions else positions[-1] + step)
        times.append(millis / 1000)
    positions, times = np.array(positions), np.array(times)
    lags, ages = [], []
    for call in calls:
        before = np.flatnonzero(times <= call["wall_start"])
        if not call["labelled"] or call["frame"] is None or not before.size:
            continue
        latest = positions[before[-1]]  # the newest frame the page had presented when the handler started
        ahead = (call["frame"] - latest) % period
        # The handler's frame is that one or an older one, or one a few frames newer: the page's canvas can
        # grab a frame before the page's frame callback has reported it.
        position = latest + ahead if ahead <= AHEAD_FRAMES else latest - (latest - call["frame"]) % period
        presented = float(np.interp(position, positions, times))
        lags.append(call["wall_end"] - presented)
        ages.append(call["wall_start"] - presented)
    if not lags:
        return {}
    third = max(1, len(lags) // 3)
    return {"lag_median_s": round(float(np.median(lags)), 3), "lag_p90_s": round(float(np.percentile(lags, 90)), 3),
            "lag_max_s": round(float(np.max(lags)), 3), "frame_age_at_start_median_s": round(float(np.median(ages)), 3),
            # frames that queued would show as a lag that keeps growing: the first third against the last
            "lag_median_first_third_s": round(float(np.median(lags[:third])), 3),
            "lag_median_last_third_s": round(float(np.median(lags[-third:])), 3),
            "frame_age_at_start_p90_s": round(float(np.percentile(ages, 90)), 3),
            "frame_age_at_start_max_s": round(float(np.max(ages)), 3), "frames_timed": len(lags)}


def bench_webcam_under_load(seconds: float, load: bool, boxes: bool = False) -> dict:
    """Labels per second, frames the browser sent, and the lag, with or without a Files-tab analysis running
    all along in the same server (a second page clicks Analyse on four photos, OCR, boxes and person masks on:
    the Files tab's defaults, through the app's queue, as a person would)."""
    import functools

    from PIL import Image
    from playwright.sync_api import sync_playwright
    from skimage import data

    import desktop.ui as ui
    from media import CHROMIUM, chromium_flags

    fps, period = 30, 120
    folder = Path(tempfile.mkdtemp(prefix="fusiondesk-bench-"))
    camera = stamped_camera(folder / "camera.y4m", seconds=period / fps, fps=fps)
    photos = []
    for name, picture in (("astronaut", data.astronaut()), ("chelsea", data.chelsea()), ("coffee", data.coffee()),
                          ("motorcycle", data.stereo_motorcycle()[0])):
        photos.append(folder / f"{name}.jpg")
        Image.fromarray(picture).save(photos[-1], quality=92)

    calls: list[dict] = []
    analyses: list[float] = []  # when each Files analysis ended
    analysing: list[tuple[float, float]] = []  # and when each ran
    classify, analyse = ui.classify_frame, ui.analyse_files

    @functools.wraps(classify)
    def counted_classify(frame, *args, **kwargs):
        start, wall_start = time.monotonic(), time.time()
        out = classify(frame, *args, **kwargs)
        skipped = out[0] == ui.gr.skip()  # a frame the handler dropped: nothing shown for it
        calls.append({"start": start, "end": time.monotonic(), "wall_start": wall_start, "wall_end": time.time(),
                      "labelled": not skipped, "frame": frame_number(frame) if frame is not None else None})
        return out

    @functools.wraps(analyse)
    def counted_analyse(*args, **kwargs):
        start = time.monotonic()
        try:
            return analyse(*args, **kwargs)
        finally:  # counted even if it failed, so that the next one is started
            analyses.append(time.monotonic())
            analysing.append((start, analyses[-1]))

    ui.classify_frame, ui.analyse_files = counted_classify, counted_analyse  # picked up by the page built next
    try:
        app, url = ui.launch()
    finally:
        ui.classify_frame, ui.analyse_files = classify, analyse
    posts: list[float] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=chromium_flags(video=camera))
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("request", lambda r: posts.append(time.monotonic())
                    if r.method == "POST" and re.search(r"/stream/[0-9a-f]+$", r.url) else None)
            page.goto(url)
            if boxes:
                page.locator("#live-boxes input").check()
            page.get_by_text("Click to Access Webcam").click()
            page.get_by_role("button", name="capture photo").click()
            page.locator("#live-fps").get_by_text("frames per second").wait_for(timeout=30_000)
            page.evaluate(WATCH_FRAMES_JS, [CODE_BITS])
            files_page, clicks = None, 0
            if load:
                files_page = browser.new_page(viewport={"width": 1280, "height": 1000})
                files_page.goto(url)
                files_page.get_by_role("tab", name="Files").click()
                files_page.locator("#files-input input[type=file]").set_input_files([str(p) for p in photos])
                for photo in photos:
                    files_page.locator("#files-input").get_by_text(photo.stem).first.wait_for()

            def keep_busy(until: float) -> None:
                nonlocal clicks
                while time.monotonic() < until:
                    if files_page is not None and len(analyses) >= clicks:  # the last analysis is done: start another
                        files_page.locator("#files-run").click()
                        clicks += 1
                    page.wait_for_timeout(100)

            keep_busy(time.monotonic() + 4)  # warm-up: sessions loaded, the stream and the load settled
            first, t0, done0 = frames_reported(page), time.monotonic(), len(analyses)
            keep_busy(t0 + seconds)
            last, t1 = frames_reported(page), time.monotonic()
            shown = page.evaluate("window.fdFrames")
            browser.close()
    finally:
        app.close()
    window = [c for c in calls if t0 <= c["start"] <= t1]
    durations = [c["end"] - c["start"] for c in window]
    sent = [t for t in posts if t0 <= t <= t1]
    to_monotonic = time.monotonic() - time.time()
    presented = [m for _, m in shown if t0 <= m / 1000 + to_monotonic <= t1]
    result = {"load": "Files analysis" if load else "none", "boxes": boxes, "seconds": round(t1 - t0, 1),
              "labels_per_s": round((last - first) / (t1 - t0), 1),
              "frames_sent_per_s": round(len(sent) / (t1 - t0), 1),
              "handler_calls_per_s": round(len(window) / (t1 - t0), 1),
              "frames_skipped_by_handler": sum(not c["labelled"] for c in window),
              "analyses_finished": len(analyses) - done0 if load else 0,
              "camera_frames_per_s": round(len(presented) / (t1 - t0), 1),
              # the share of the time spent in the handler itself; the rest is Gradio's decoding and sending of
              # each frame and its labels, and waiting for the next frame
              "handler_busy_share": round(sum(durations) / (t1 - t0), 2),
              "handler_s_median": round(float(np.median(durations)), 3) if durations else None,
              "handler_s_max": round(max(durations), 3) if durations else None}
    # Frames the page sent that no handler call ever saw: Gradio keeps only the newest one waiting.
    result["frames_dropped_unseen_per_s"] = round(result["frames_sent_per_s"] - result["handler_calls_per_s"], 1)
    if load:  # share of the window with an analysis running (one still running at the end counts to the end)
        spans = analysing + ([(analyses[-1] if analyses else t0, t1)] if clicks > len(analyses) else [])
        result["files_busy_share"] = round(sum(max(0.0, min(b, t1) - max(a, t0)) for a, b in spans) / (t1 - t0), 2)
    result.update(frame_lags(window, shown, period))
    return result


def choose(page, label: str, option: str) -> None:
    page.get_by_label(label).click()
    page.get_by_role("option", name=option, exact=True).click()


def screenshot_inputs(work: Path) -> dict[str, Path]:
    """What the screenshots show: real photos, an espeak-ng voice note, a rendered invoice, a broken file, and
    a Teach workspace (crops of two photos) in a throwaway data folder."""
    import os

    from PIL import Image, ImageDraw, ImageFont
    from skimage import data
    import soundfile as sf

    os.environ["FUSIONDESK_DATA_DIR"] = str(work / "data")  # never the person's own heads and results
    os.environ["FUSIONDESK_CONFIG_DIR"] = str(work / "config")
    archive = work / "archive"
    archive.mkdir()
    Image.fromarray(data.chelsea()).save(archive / "chelsea.jpg", quality=92)
    Image.fromarray(data.coffee()).save(archive / "coffee.jpg", quality=92)
    Image.fromarray(data.stereo_motorcycle()[0]).save(archive / "motorcycle.jpg", quality=92)
    sf.write(archive / "voice-note.wav", np.concatenate([np.zeros(8000, np.float32), speech(SENTENCES[1], work)]), 16000)
    scan = Image.new("RGB", (900, 260), "white")
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 40)
    draw = ImageDraw.Draw(scan)
    draw.text((40, 40), "INVOICE 2024-117", fill="black", font=font)
    draw.text((40, 140), "Total due: 1,250.00 EUR", fill="black", font=font)
    scan.save(archive / "scan.png")
    (work / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")

    from desktop.ui_teach import add_class, remember_workspace, workspace

    rng = np.random.default_rng(0)
    for name, photo in (("my cat", data.chelsea()), ("my coffee", data.coffee())):
        add_class("kitchen", name)
        image = Image.fromarray(photo)
        for i in range(6):
            side = int(min(image.size) * rng.uniform(0.5, 0.9))
            x, y = (int(rng.integers(0, s - side + 1)) for s in image.size)
            image.crop((x, y, x + side, y + side)).resize((224, 224)).save(workspace("kitchen") / name / f"{i}.jpg")
    remember_workspace("kitchen")  # the Teach tab opens on it, as after an earlier session
    return {"archive": archive, "broken": work / "broken.jpg"}


def take_screenshots(folder: Path) -> list[str]:
    """The tabs in use, for the README: Live (fake camera, object boxes on, a fused answer), Files (photos with
    boxes and person masks, a recording translated into Portuguese, a scan, a broken file), Teach (a model
    trained on webcam-like crops), Folder (a batch run), Search (a query over the indexed folder), Models."""
    from playwright.sync_api import sync_playwright
    from skimage import data

    from media import CHROMIUM, chromium_flags, write_y4m

    folder.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fusiondesk-shots-"))
    inputs = screenshot_inputs(work)
    camera = write_y4m(work / "camera.y4m", [data.coffee()], seconds_each=1.0, fps=30, size=(640, 480))
    from desktop.ui import launch

    app, url = launch()
    shots = []

    def shot(page, name: str) -> None:
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
        shots.append(str(folder / f"{name}.png"))

    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=chromium_flags(video=camera))
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.locator("#live-boxes input").check()
            page.get_by_text("Click to Access Webcam").click()
            page.get_by_role("button", name="capture photo").click()
            page.locator("#live-fps").get_by_text("frames per second").wait_for()
            page.locator("#live-objects").get_by_text("cup").wait_for()
            page.get_by_label("Prompt (optional)").fill("Is this the coffee I ordered?")
            page.get_by_role("button", name="Fuse frame + words + prompt").click()
            page.locator("#live-answer").get_by_text("Most likely").wait_for()
            shot(page, "live")
            page.goto(url)  # a fresh page: the camera stream stops and leaves the cores to the other tabs
            page.get_by_text("FusionDesk", exact=True).first.wait_for()

            page.get_by_role("tab", name="Files").click()
            archive = inputs["archive"]
            files = [archive / n for n in ("motorcycle.jpg", "voice-note.wav", "scan.png")] + [inputs["broken"]]
            choose(page, "Translate transcripts and text into", "Portuguese")
            page.locator("#files-input input[type=file]").set_input_files([str(f) for f in files])
            for f in files:
                page.locator("#files-input").get_by_text(f.stem).first.wait_for()
            page.locator("#files-run").click()
            page.locator("#files-status").get_by_text("files analysed").wait_for()
            shot(page, "files")

            page.get_by_role("tab", name="Teach").click()
            page.get_by_role("button", name="Train", exact=True).click()
            page.get_by_text("cross-validated accuracy").wait_for()
            shot(page, "teach")

            page.get_by_role("tab", name="Folder").click()
            page.get_by_label("Folder", exact=True).fill(str(archive))
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_text(re.compile(r"Done in [\d.]+ s")).wait_for()
            shot(page, "folder")

            page.get_by_role("tab", name="Search").click()  # the Folder run made the folder searchable
            page.get_by_label("Search", exact=True).fill("a cup of coffee")
            page.get_by_role("button", name="Search", exact=True).click()
            page.get_by_text("coffee.jpg").first.wait_for()
            page.locator("#search-results .fd-result").first.click()  # the best match opened below the list
            page.locator("#search-preview-picture img").wait_for()
            shot(page, "search")

            page.get_by_role("tab", name="Models & settings").click()
            page.locator("#models-licenses").get_by_text("UNCONFIRMED").first.wait_for()
            shot(page, "models")
            browser.close()
    finally:
        app.close()
    return shots


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20, help="how long to count webcam frames")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--screenshots", metavar="DIR", help="only take screenshots of the main tabs into DIR")
    parser.add_argument("--boxes", action="store_true", help="under load: with object boxes drawn on every frame")
    parser.add_argument("--load-only", action="store_true",
                        help="only the webcam alone and under load (a Files analysis running), with lags")
    args = parser.parse_args()
    if args.screenshots:
        for shot in take_screenshots(Path(args.screenshots)):
            print(f"wrote {shot}")
        return 0

    import onnxruntime as ort
    import os

    report = {"cpu_count": os.cpu_count(), "onnxruntime": ort.__version__}
    for key, load in (("webcam_alone", False), ("webcam_under_load", True)):
        result = report[key] = bench_webcam_under_load(args.seconds, load, args.boxes)
        print(f"webcam, load {result['load']}: {result['labels_per_s']} labelled frames/s (the page sent "
              f"{result['frames_sent_per_s']}/s, {result['frames_dropped_unseen_per_s']}/s dropped unseen; the handler "
              f"took {result['handler_s_median']} s a frame, median); lag "
              f"median {result.get('lag_median_s')} s, 90% {result.get('lag_p90_s')} s, "
              f"max {result.get('lag_max_s')} s, first/last third {result.get('lag_median_first_third_s')}/{result.get('lag_median_last_third_s')} s"
              + (f"; Files analysis running {result['files_busy_share']:.0%} of the time, "
                 f"{result['analyses_finished']} finished" if load else ""), flush=True)
    if args.load_only:
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        return 0
    report["classifier_alone"] = bench_classifier_alone()
    print(f"classifier alone: {report['classifier_alone']['labels_per_s']} frames/s", flush=True)
    for key, boxes, background in (("webcam_in_browser", False, "keep"), ("webcam_with_boxes", True, "keep"),
                                   ("webcam_with_boxes_and_blur", True, "blur")):
        report[key] = bench_webcam_in_browser(args.seconds, boxes=boxes, background=background)
        print(f"webcam in the browser (boxes {'on' if boxes else 'off'}, background {background}): "
              f"{report[key]['labels_per_s']} labelled frames/s (page shows: {report[key]['page_shows']})", flush=True)
    for chunk in (0.1, 0.2):
        result = bench_phrase_delay(chunk)
        report[f"phrase_delay_chunk_{chunk}s"] = result
        print(f"phrase delay, {chunk:.1f} s chunks: median {result['median_delay_s']:.2f} s, "
              f"max {result['max_delay_s']:.2f} s", flush=True)
        for item in result["phrases"]:
            print(f"  {item['delay_s']:.2f} s  {item['heard']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
