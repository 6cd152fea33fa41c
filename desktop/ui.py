"""The app's interface: a Gradio Blocks page served on 127.0.0.1 (shown in the native window or a browser).

Tabs: Live (webcam labels or a trained head's classes, optional object boxes and background blur/removal,
microphone transcription with its translation, a fused answer), Files (any mix of images, recordings and texts,
with object boxes, person masks and translations side by side), the optional tabs other modules provide (folder,
search, teach) when they are installed, and
Models & settings. Every handler calls the engine's public API with the process-wide runtime, so model
sessions are created once and shared by all requests; every handler turns failures into a message a person
can read (gr.Error or a status line), never a traceback.
"""

from __future__ import annotations

import os

# Nothing phones home: these must be set before gradio (or huggingface_hub) is first imported.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from desktop import gradio_import  # noqa: E402

gradio_import.install()  # before gradio's first import: skips its type-stub regeneration (2 s of every start)

import csv  # noqa: E402
import functools  # noqa: E402
import html  # noqa: E402
import importlib  # noqa: E402
import importlib.util  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import socket  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import deque  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from engine.errors import FusionDeskError  # noqa: E402
from engine.filetypes import text_name  # noqa: E402
from engine.runtime import Runtime, default_threads, get_runtime, set_runtime  # noqa: E402

log = logging.getLogger("fusiondesk.ui")

HOST = "127.0.0.1"  # browsers grant camera and microphone to loopback origins only, and nothing else may connect
ASSETS = Path(__file__).resolve().parent.parent / "assets"
ICON = ASSETS / "icon.png"
FPS_WINDOW = 30  # frames the live frames-per-second figure averages over
MIC_STREAM_EVERY = 0.2  # seconds of browser audio per chunk: short enough that a phrase's end is seen quickly
CAMERA_STREAM_EVERY = 0.04  # ask for frames faster than the classifier runs: it then sets the pace
LIVE_CAMERA_QUEUE = "live-camera"  # the webcam stream's own Gradio concurrency group (see _live_tab)
# Analyses of files (the Files tab and the script API) share one concurrency group of two: the models already use
# every core, so more at once only adds memory and makes each wait longer; Live has its own group and never waits
# behind them. At most QUEUE_MAX_SIZE requests wait; past that a request is refused at once with gradio's "Queue is
# full" rather than waiting minutes (measured: bench/bench_concurrency.py).
ANALYSIS_QUEUE = "analysis"
ANALYSIS_CONCURRENCY = 2
QUEUE_MAX_SIZE = 32
LANGUAGES = [("English (fast model)", "en"), ("Detect the language", "auto"), ("German", "de"), ("French", "fr"),
             ("Spanish", "es"), ("Italian", "it"), ("Portuguese", "pt"), ("Dutch", "nl"), ("Chinese", "zh"),
             ("Japanese", "ja")]
TRANSLATION_TARGETS = {"en": "English", "pt": "Portuguese"}  # what engine.translate can write
NO_TRANSLATION = "none"
BACKGROUNDS = [("Keep", "keep"), ("Blur", "blur"), ("Remove", "remove")]
MIN_PEOPLE_SHOWN = 0.05  # share of person pixels below which the Files tab draws no people picture
NO_HEAD = ""  # the Live tab's head choice meaning "ImageNet classes / your labels"

# Tabs other modules provide: (tab title, module, function that builds the tab inside the current Blocks).
# A module that is not installed is left out (and logged); one that is installed but broken fails loudly.
OPTIONAL_TABS = [
    ("Folder", "desktop.ui_folder", "folder_tab"),
    ("Search", "desktop.ui_folder", "search_tab"),
    ("Teach", "desktop.ui_teach", "teach_tab"),
]

CSS = """
.fd-offline {font-size: 0.9em; opacity: 0.85}
/* Rows and cards that do something when clicked: a transcript row plays, a search result opens. */
.fd-play, .fd-result {cursor: pointer}
.fd-play:hover, .fd-result:hover {background: var(--background-fill-secondary)}
.fd-player {width: 100%; margin: 4px 0}
/* Thumbnails one size, however few: Gradio's gallery gives a single picture the whole width. */
.fd-thumbs .grid-container {grid-template-columns: repeat(6, minmax(100px, 1fr)) !important}
.fd-card {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 10px 14px; margin: 8px 0}
.fd-card h4 {margin: 0 0 6px 0}
/* Gradio labels the button that starts a streaming webcam "Record"; nothing is recorded: it starts the camera. */
#live-camera .icon-with-text:has(> .icon[title="start recording"]) {font-size: 0}
#live-camera .icon-with-text:has(> .icon[title="start recording"])::after {content: "Start camera"; font-size: var(--text-md); white-space: nowrap}
.fd-error {border-color: #d33; background: rgba(221, 51, 51, 0.08)}
.fd-bar {display: grid; grid-template-columns: minmax(8em, 16em) 1fr 4.5em; gap: 8px; align-items: center; margin: 2px 0}
.fd-track {background: var(--neutral-200); border-radius: 4px; height: 0.9em; overflow: hidden}
.fd-fill {background: var(--color-accent); height: 100%}
.fd-time {font-family: monospace; opacity: 0.7; white-space: nowrap; padding-right: 10px; vertical-align: top}
.fd-muted {opacity: 0.65}
.fd-translation {font-style: italic; padding-left: 14px; vertical-align: top}
.fd-objects span {display: inline-block; border-radius: 4px; padding: 0 6px; margin: 2px 4px 2px 0;
                  background: var(--neutral-200)}
"""


# -- small helpers -----------------------------------------------------------------------------------------------


def readable_errors(handler):
    """Errors become a message in the page: the engine's own errors as they are, anything else briefly
    (the traceback goes to the log, where a developer looks, not to the person using the app)."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except FusionDeskError as exc:  # as text the page takes: a file name's bad bytes as \xNN
            raise gr.Error(text_name(str(exc)), print_exception=False) from None
        except Exception as exc:
            log.exception("%s failed", handler.__name__)
            raise gr.Error(text_name(f"Something went wrong ({type(exc).__name__}: {exc}). The details are in the "
                                     "log."), print_exception=False) from None

    return wrapper


def parse_labels(text: str | None) -> list[str]:
    from engine.tasks import parse_labels as engine_parse_labels

    return engine_parse_labels(text)


def display_name(path: str) -> str:
    # Gradio keeps uploads as <temp>/<hash>/<original name>: the original name is what the person knows. A name
    # that is not valid UTF-8 shows its bad bytes as \xNN (engine.filetypes.text_name): the page is UTF-8.
    return text_name(Path(path).name)


def esc(text: Any) -> str:
    return html.escape(str(text))


def offline_status() -> str:
    analytics = os.environ.get("GRADIO_ANALYTICS_ENABLED", "").lower() in ("false", "0")
    hub_offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    ok = analytics and hub_offline
    mark = "● **Offline**" if ok else "▲ **Not fully offline**"
    return (f"{mark} · served on {HOST} only · analytics {'off' if analytics else 'ON'} · "
            f"model downloads {'off' if hub_offline else 'ON'} · every model runs on this computer")


_session_temp: tempfile.TemporaryDirectory | None = None
_session_temp_lock = threading.Lock()


def results_dir(prefix: str = "results-") -> Path:
    """A fresh folder for files offered as downloads, inside one per-process temporary folder that is deleted
    when the app exits: copies for download must not pile up in /tmp across runs (the user's own files are
    never written here)."""
    global _session_temp
    # Under a lock: two analyses starting at once each made a folder, and the one replaced was deleted with the
    # other's downloads being written into it (its TemporaryDirectory collected: a failed Files analysis).
    with _session_temp_lock:
        if _session_temp is None:
            _session_temp = tempfile.TemporaryDirectory(prefix="fusiondesk-")
        return Path(tempfile.mkdtemp(prefix=prefix, dir=_session_temp.name))


# -- HTML views of results ----------------------------------------------------------------------------------------


def bars_html(labels: list[dict]) -> str:
    rows = []
    for item in labels:
        pct = max(0.0, min(1.0, float(item["score"]))) * 100
        rows.append(f'<div class="fd-bar"><span>{esc(item["label"])}</span>'
                    f'<div class="fd-track"><div class="fd-fill" style="width:{pct:.1f}%"></div></div>'
                    f'<span>{pct:.1f}%</span></div>')
    return "".join(rows) or '<p class="fd-muted">(no labels: nothing recognisable was found)</p>'


LABEL_SET_TITLES = {"yours": "Your labels", "imagenet": "Looks like", "document kinds": "Kind of document",
                    "recording topics": "What the recording is"}


def label_set_html(record: dict) -> str:
    """The score bars under a title that says what they are (a photo's classes, a document's kind, ...)."""
    title = LABEL_SET_TITLES.get(record.get("label_set", ""), "")
    heading = f'<p class="fd-muted">{esc(title)}</p>' if title else ""
    if not record["labels"] and record.get("modality") == "audio":
        return heading and ""  # a silent clip: the transcript part says "no speech found"
    return heading + bars_html(record["labels"])


def clock(seconds: float) -> str:
    minutes, rest = divmod(max(0.0, seconds), 60)
    return f"{int(minutes):02d}:{rest:05.2f}"


def translation_cell(item: dict) -> str:
    """The translation column of a transcript or OCR row (empty where nothing needed translating)."""
    if "translation" not in item:
        return ""
    text = item["translation"]
    shown = esc(text) if text else '<span class="fd-muted" title="already in that language">—</span>'
    return f'<td class="fd-translation">{shown}</td>'


# A transcript row plays the recording from the row's start (the card's own player), as Buzz does.
PLAY_FROM = ("var a=this.closest('.fd-card').querySelector('audio.fd-player');"
             "if(a){{a.currentTime={start:.2f};a.play();}}")


def transcript_html(segments: list[dict], audio_src: str | None = None) -> str:
    """The transcript as a table; with `audio_src` (a URL the page can load), a player above it and each row
    playing the recording from its start when clicked."""
    if not segments:
        return '<p class="fd-muted">(no speech found)</p>'
    player = (f'<audio class="fd-player" controls preload="metadata" src="{esc(audio_src)}"></audio>'
              if audio_src else "")

    def row(s: dict) -> str:
        play = (f' class="fd-play" title="Play from here" onclick="{esc(PLAY_FROM.format(start=float(s["start"])))}"'
                if audio_src else "")
        return (f'<tr{play}><td class="fd-time">{clock(s["start"])} → {clock(s["end"])}</td>'
                f'<td>{esc(s["text"].strip())}</td>{translation_cell(s)}</tr>')

    return f'{player}<table class="fd-transcript">{"".join(row(s) for s in segments)}</table>'


def served_url(path: str) -> str | None:
    """The page's URL of a file Gradio already serves (an upload, in its cache), or None for any other file:
    nothing outside what the app was given is ever offered to the page."""
    from urllib.parse import quote

    from gradio.utils import get_upload_folder

    cache = Path(get_upload_folder()).resolve()
    try:
        resolved = Path(path).resolve()
    except OSError:
        return None
    if not resolved.is_file() or not resolved.is_relative_to(cache):
        return None
    return "gradio_api/file=" + quote(str(resolved))


def ocr_html(lines: list[dict]) -> str:
    rows = "".join(f"<tr><td>{esc(line['text'])} <span class='fd-muted'>({line['score']:.2f})</span></td>"
                   f"{translation_cell(line)}</tr>" for line in lines)
    return f'<p><b>Text in the image</b></p><table class="fd-ocr">{rows}</table>'


def objects_html(objects: list[dict]) -> str:
    if not objects:
        return '<p class="fd-objects fd-muted">Objects: none found</p>'
    items = "".join(f"<span>{esc(o['label'])} {o['score'] * 100:.0f}%</span>" for o in objects)
    return f'<p class="fd-objects"><b>Objects</b> {items}</p>'


def card(title: str, body: str, error: bool = False) -> str:
    return f'<div class="fd-card{" fd-error" if error else ""}"><h4>{esc(title)}</h4>{body}</div>'


def record_html(record: dict) -> str:
    name = display_name(record["file"])
    if "error" in record:
        return card(f"Could not use {name}", f"<p>{esc(record['error'])}</p>", error=True)
    parts = []
    if record.get("labels") is not None:
        parts.append(label_set_html(record))
    if "segments" in record:
        parts.append(f'<p class="fd-muted">{record["duration"]:.1f} s · language {esc(record["language"])}</p>')
        parts.append(transcript_html(record["segments"], served_url(record["file"])))
    if "objects" in record:
        parts.append(objects_html(record["objects"]))
    if "person_fraction" in record:
        parts.append(f'<p class="fd-people"><b>People</b> cover {record["person_fraction"] * 100:.0f}% of the picture</p>')
    if record.get("ocr_lines"):
        parts.append(ocr_html(record["ocr_lines"]))
    if record.get("text_excerpt"):
        excerpt = f"<td class='fd-muted'>{esc(record['text_excerpt'])}</td>"
        translated = translation_cell({"translation": record["text_translation"]} if "text_translation" in record else {})
        parts.append(f"<table class='fd-text'><tr>{excerpt}{translated}</tr></table>")
    if record.get("already_in"):
        parts.append(f'<p class="fd-muted">Already in {esc(record["already_in"])}: nothing to translate.</p>')
    return card(f"{name} ({record['modality']})", "".join(parts))


def draw_ocr_boxes(path: str, lines: list[dict], out_dir: Path) -> str | None:
    """The image with each line of text read outlined (what the OCR saw, where)."""
    from PIL import ImageDraw

    from engine.imaging import load_image

    if not lines:
        return None
    image = load_image(path).convert("RGB")
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 400))
    for line in lines:
        points = [tuple(p) for p in line["box"]]
        draw.line(points + [points[0]], fill=(230, 40, 40), width=width)
    target = fresh_path(out_dir, f"{Path(path).stem}-text-boxes.png")
    image.save(target)
    return str(target)


def fresh_path(folder: Path, name: str) -> Path:
    """folder/name, or name-2, name-3... when an earlier file of this analysis took it (photo.jpg and
    photo.png, or two uploads of the same name, must not overwrite each other's pictures)."""
    target, number = folder / name, 1
    while target.exists():
        number += 1
        target = folder / f"{Path(name).stem}-{number}{Path(name).suffix}"
    return target


# -- scene pictures and translations (Files and Live) ---------------------------------------------------------------


def translation_choice(label: str, elem_id: str) -> gr.Dropdown:
    """The target-language choice. Without the Languages pack it says so plainly and stays off; the tabs refresh it
    at each page load (refresh_translation_choice), so a pack installed in Models & settings counts after a reload."""
    return gr.Dropdown(label=label, elem_id=elem_id, **_translation_choice_state())


def refresh_translation_choice() -> gr.Dropdown:
    return gr.Dropdown(**_translation_choice_state())


def _translation_choice_state() -> dict[str, Any]:
    from engine.translate import available_targets

    targets = [t for t in available_targets(get_runtime()) if t in TRANSLATION_TARGETS]
    if not targets:
        return {"choices": [("No translation", NO_TRANSLATION)], "value": NO_TRANSLATION, "interactive": False,
                "info": "translation is not installed: it needs the Languages pack (FusionDesk-languages.pack); add it "
                        "in Models & settings (Packs), then reload the page"}
    return {"choices": [("No translation", NO_TRANSLATION)] + [(TRANSLATION_TARGETS[t], t) for t in targets],
            "value": NO_TRANSLATION, "interactive": True, "info": "shown beside the original (English <-> Portuguese)"}


def translations(texts: list[str], target: str | None) -> list[str | None]:
    """Each text in the target language, or None where nothing needed translating (no target chosen, an empty
    text, a text already in that language)."""
    from engine.translate import translate

    if not target or target == NO_TRANSLATION or not texts:
        return [None] * len(texts)
    done = translate(texts, target=target, source="auto", runtime=get_runtime())
    return [t.text if t.source != t.target and t.text.strip() and t.text.strip().lower() != text.strip().lower()
            else None for t, text in zip(done, texts)]


def add_translations(records: list[dict], target: str | None) -> None:
    """Transcript segments, OCR lines and text excerpts get a "translation" beside them, in one batch."""
    if not target or target == NO_TRANSLATION:
        return
    slots: list[tuple[dict, str, str]] = []  # (where the translation goes, under which key, the original)
    for record in records:
        slots += [(item, "translation", item["text"].strip()) for item in record.get("segments") or []]
        slots += [(item, "translation", item["text"]) for item in record.get("ocr_lines") or []]
        if record.get("text_excerpt"):
            slots.append((record, "text_translation", record["text_excerpt"]))
    for (holder, key, _), translated in zip(slots, translations([text for _, _, text in slots], target)):
        holder[key] = translated
    from engine.translate import LANGUAGES

    for record in records:
        # A file whose every text is already in the chosen language gets one line saying so, not a column of dashes.
        holders = [(item, "translation") for item in (record.get("segments") or []) + (record.get("ocr_lines") or [])]
        if "text_translation" in record:
            holders.append((record, "text_translation"))
        if holders and all(holder.get(key) is None for holder, key in holders):
            for holder, key in holders:
                holder.pop(key, None)
            record["already_in"] = LANGUAGES.get(target, target)


def detections_from(objects: list[dict]):
    from engine.scene import Detection

    return [Detection(o["label"], float(o["score"]), list(o["box"])) for o in objects]


def people_overlay(image, mask: np.ndarray):
    """The photo with everything that is not a person dimmed: where the segmenter sees people, at a glance."""
    from PIL import Image

    from engine.scene import mask_image

    dimmed = Image.eval(image, lambda v: v // 4)
    return Image.composite(image, dimmed, mask_image(mask))


def scene_pictures(records: list[dict], perceptions: dict[str, Any], out_dir: Path) -> list[tuple[str, str]]:
    """For each photo: its detected objects drawn as boxes, and the people found in it (the segmenter's mask
    inside the detector's person boxes), as the perception found them. Gallery items (file, caption)."""
    from engine.geometry import resize_linear
    from engine.imaging import load_image
    from engine.scene import class_names, draw_detections

    runtime = get_runtime()
    pictures = []
    for record in records:
        perceived = perceptions.get(record["file"])
        if "error" in record or perceived is None or record.get("modality") != "image":
            continue
        wants_boxes, wants_people = "objects" in record, perceived.people_mask is not None
        if not (record.get("objects") or wants_people):
            continue
        image = load_image(record["file"])
        stem, name = Path(record["file"]).stem, display_name(record["file"])
        if wants_boxes and perceived.objects:
            # Boxes are in the file's pixels, and so is this picture.
            drawn = draw_detections(image, perceived.objects, class_names(runtime))
            target = fresh_path(out_dir, f"{stem}-objects.jpg")
            drawn.save(target, quality=90)
            pictures.append((str(target), f"{name}: objects"))
        if wants_people and record["person_fraction"] >= MIN_PEOPLE_SHOWN:  # a sliver of a person: nothing to show
            mask = resize_linear(perceived.people_mask, image.width, image.height)
            target = fresh_path(out_dir, f"{stem}-people.jpg")
            people_overlay(image, np.clip(mask, 0.0, 1.0)).save(target, quality=90)
            pictures.append((str(target), f"{name}: people ({record['person_fraction']:.0%})"))
    return pictures


# -- Files tab -----------------------------------------------------------------------------------------------------


def analyse_paths(paths: list[str], labels: list[str], language: str, read_text: bool, top_k: int = 5,
                  progress=None, boxes: bool = False, people: bool = False) -> tuple[list[dict], dict, dict]:
    """Every file through the one perception plan `classify` uses (engine.tasks.classify_stream): records (the
    CLI's shapes, plus what the page shows), the Transcript objects of recordings (for subtitle downloads), and
    the perceptions by file (for the pictures of objects and people)."""
    from engine.perceive import PerceptionOptions
    from engine.tasks import classify_options, classify_stream, speech_model_for, transcript_record

    runtime = get_runtime()
    speech_model = speech_model_for(language)
    base = PerceptionOptions(top_k=max(5, top_k), speech_model=speech_model, language=language)
    options = classify_options(labels, base, top_k, read=read_text, boxes=boxes, people=people, runtime=runtime)
    records, transcripts, perceptions = [], {}, {}
    if progress is not None:
        progress(0.0, desc=f"{len(paths)} file(s)")
    stream = classify_stream(paths, labels, top_k, options, runtime, with_text_lines=read_text)
    for index, (record, perceived) in enumerate(stream):
        if progress is not None:
            progress((index + 1) / max(1, len(paths)), desc=f"{display_name(record['file'])} ({index + 1} of {len(paths)})")
        records.append(record)
        if "error" in record:
            continue
        perceptions[record["file"]] = perceived
        if record["modality"] == "audio":
            record.update(transcript_record(perceived.transcript, speech_model))
            transcripts[record["file"]] = perceived.transcript
        elif record["modality"] == "image":
            if boxes:
                record["objects"] = record["evidence"].get("objects", [])
            if people:
                record["person_fraction"] = record["evidence"].get("person_fraction", 0.0)
            if read_text:
                record.setdefault("ocr_lines", [])
                record["ocr_text"] = record["evidence"].get("ocr_text", "")
        elif record["modality"] == "text":
            text = record.get("evidence", {}).get("text", "")
            record["text_excerpt"] = text[:400] + ("…" if len(text) > 400 else "")
    return records, transcripts, perceptions


def write_downloads(records: list[dict], transcripts: dict, out_dir: Path) -> list[str]:
    """results.json, results.csv, and SRT/VTT/TXT for each recording."""
    public = [public_record(r) for r in records]
    files = [out_dir / "results.json", out_dir / "results.csv"]
    files[0].write_text(json.dumps(public, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "modality", "kind", "rank", "label_or_text", "score", "start", "end", "translation"])
    for r in public:
        if "error" in r:
            writer.writerow([r["file"], "", "error", "", r["error"], "", "", "", ""])
            continue
        for rank, item in enumerate(r.get("labels") or [], 1):
            writer.writerow([r["file"], r["modality"], "label", rank, item["label"], item["score"], "", "", ""])
        for item in r.get("objects") or []:
            writer.writerow([r["file"], r["modality"], "object", "", item["label"], item["score"], "", "", ""])
        for s in r.get("segments") or []:
            writer.writerow([r["file"], r["modality"], "speech", "", s["text"].strip(), "", s["start"], s["end"],
                             s.get("translation") or ""])
        for line in r.get("ocr_lines") or []:
            writer.writerow([r["file"], r["modality"], "text-in-image", "", line["text"], line["score"], "", "",
                             line.get("translation") or ""])
    files[1].write_text(buffer.getvalue(), encoding="utf-8")
    for source, transcript in transcripts.items():
        if not transcript.segments:
            continue  # a silent clip: no empty subtitle files to download (the card says "no speech found")
        stem = Path(source).stem
        for fmt, text in (("srt", transcript.to_srt()), ("vtt", transcript.to_vtt()), ("txt", transcript.to_txt())):
            target = fresh_path(out_dir, f"{stem}.{fmt}")
            target.write_text(text, encoding="utf-8")
            files.append(target)
    return [str(f) for f in files]


def public_record(record: dict) -> dict:
    """A record as downloaded or returned by the API: the file by its own name, not the upload's temp path."""
    out = dict(record)
    out["file"] = display_name(record["file"])
    out.pop("text_excerpt", None)
    return out


@readable_errors
def analyse_files(files, labels_text, language, read_text, scene=(), target=NO_TRANSLATION, progress=gr.Progress()):
    paths = [f if isinstance(f, str) else f.name for f in (files or [])]
    if not paths:
        raise gr.Error("Add some files first: photos, scans, recordings or text files.", print_exception=False)
    scene = set(scene or ())
    records, transcripts, perceptions = analyse_paths(paths, parse_labels(labels_text), language or "en",
                                                      bool(read_text), progress=progress, boxes="boxes" in scene,
                                                      people="people" in scene)
    out_dir = results_dir()
    pictures = scene_pictures(records, perceptions, out_dir)
    add_translations(records, target)
    for record in records:
        if record.get("ocr_lines"):
            drawn = draw_ocr_boxes(record["file"], record["ocr_lines"], out_dir)
            if drawn:
                pictures.append((drawn, f"{display_name(record['file'])}: text"))
    failed = [r for r in records if "error" in r]
    status = f"{len(records) - len(failed)} of {len(records)} files analysed"
    if failed:
        status += " · could not use: " + "; ".join(f"{display_name(r['file'])} ({r['error']})" for r in failed)
    page = "".join(record_html(r) for r in records)
    return page, pictures, write_downloads(records, transcripts, out_dir), status


# -- API endpoints (same records as the CLI's --json) -------------------------------------------------------------


def _api_paths(files) -> list[str]:
    return [f if isinstance(f, str) else f.name for f in (files or [])]


@readable_errors
def api_classify(files, labels_text, top_k):
    from engine.tasks import classify_files

    records = classify_files(_api_paths(files), labels=parse_labels(labels_text), top_k=int(top_k or 5))
    return [public_record(r) for r in records]


@readable_errors
def api_transcribe(files, language):
    from engine.tasks import transcribe_files

    records, _ = transcribe_files(_api_paths(files), language=language or "en")
    return [public_record(r) for r in records]


@readable_errors
def api_read(files):
    from engine.tasks import read_files

    return [public_record(r) for r in read_files(_api_paths(files))]


@readable_errors
def api_describe(files, text, labels_text):
    from engine.tasks import describe_files

    answer = describe_files(_api_paths(files), text=text or None, labels=parse_labels(labels_text) or None)
    answer["files"] = [display_name(p) for p in answer["files"]]
    for item in answer.get("evidence", []) + answer.get("errors", []):
        item["file"] = display_name(item["file"])
    for token in answer.get("tokens", []):
        token["file"] = display_name(token["file"]) if token.get("file") else token.get("file")
    return answer


# -- Live tab ------------------------------------------------------------------------------------------------------


def perceive_frame(image, labels: list[str], top_k: int, head=None, boxes: bool = False, people: bool = False):
    """One webcam frame through the perception plan (engine.plan) as Live uses it: no text reading (a frame a
    second of OCR would stop the stream; the fused answer below reads the frame it is given), the detector when
    boxes are drawn, the background is cut at people, or a label names a thing it finds; a taught head reads
    what it was trained on."""
    from engine.perceive import PerceptionOptions, Perceiver
    from engine.plan import options_for

    runtime = get_runtime()
    base = PerceptionOptions(ocr="never", top_k=max(5, top_k))
    if head is not None:
        base = head.perception_options(base)
    options = options_for([] if head is not None else labels, boxes=boxes, people=people, base=base, runtime=runtime)
    if head is None:
        options.ocr = "never"
    return Perceiver(runtime, options).perceive_images([image], ["camera"])[0]


def frame_labels(perception, labels: list[str], top_k: int, head=None) -> list[tuple[str, float]]:
    """A perceived frame's top labels: a trained head's classes (engine.teach.Head), ImageNet classes, or the
    user's labels through the fusion head."""
    from engine.tasks import score_perception

    runtime = get_runtime()
    if head is not None:
        from engine.teach import classify_with_head

        (result,) = classify_with_head([perception], head, runtime, top_k)
        if isinstance(result, Exception):
            raise result
        return [(item["label"], float(item["score"])) for item in result]
    return [(item["label"], item["score"]) for item in score_perception(perception, labels, runtime, top_k)]


def head_choices() -> list[tuple[str, str]]:
    from engine.teach import list_heads

    return [("None: ImageNet classes or your labels", NO_HEAD)] + [
        (f"{h.name} ({', '.join(h.classes)})", h.name) for h in list_heads()]


def refresh_heads(current: str | None = None):
    choices = head_choices()
    return gr.update(choices=choices, value=current if current in {v for _, v in choices} else NO_HEAD)


def live_head(state: dict, name: str | None):
    """The picked head, loaded once (and again when its file changes) rather than for every frame."""
    from engine.teach import head_path, load_head

    if not name:
        state["head"] = None
        return None
    stamp = (name, head_path(name).stat().st_mtime_ns if head_path(name).is_file() else None)
    if state.get("head") is None or state["head"][0] != stamp:
        state["head"] = (stamp, load_head(name, get_runtime()))
    return state["head"][1]


def scene_frame(image, perception, boxes: bool, background: str):
    """The frame as the Live view shows it: the background blurred or removed around the people found (none
    found: all of it is background), objects boxed. None when neither is asked for."""
    from PIL import Image

    from engine import scene

    if not boxes and background == "keep":
        return None, []
    picture = image
    if background in ("blur", "remove"):
        mask = perception.people_mask
        if mask is None:
            mask = np.zeros((image.height, image.width), np.float32)
        if background == "blur":
            picture = scene.blur_background(image, mask)
        else:
            cut = scene.cutout(image, mask)
            picture = Image.new("RGB", cut.size, (255, 255, 255))
            picture.paste(cut, mask=cut.getchannel("A"))
    found = perception.objects or []
    if boxes:
        picture = scene.draw_detections(picture, found, scene.class_names(get_runtime()))
    return picture, found


def new_vision_state() -> dict:
    return {"times": deque(maxlen=FPS_WINDOW), "frame": None, "labels": [], "frames": 0, "head": None}


def frames_per_second(times: deque) -> float:
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


def classify_frame(frame, labels_text, top_k, state, boxes=False, background="keep", head_name=NO_HEAD):
    """Streaming handler for the webcam: label the newest frame (with the picked head, if any), draw boxes and
    blur or remove the background when asked, keep the frame for the fused answer."""
    from engine.imaging import image_from_array

    state = state or new_vision_state()
    if frame is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), state
    try:
        image = image_from_array(np.asarray(frame))
        head, labels = live_head(state, head_name), parse_labels(labels_text)
        background = background or "keep"
        perception = perceive_frame(image, labels, int(top_k or 5), head, boxes=bool(boxes),
                                    people=background != "keep")
        labels = frame_labels(perception, labels, int(top_k or 5), head)
        picture, found = scene_frame(image, perception, bool(boxes), background)
    except FusionDeskError as exc:
        return gr.skip(), f"Error: {exc}", gr.skip(), gr.skip(), state
    state["times"].append(time.monotonic())
    state["frame"], state["labels"] = image, labels
    state["frames"] += 1
    fps = frames_per_second(state["times"])
    objects = ("Objects: " + (", ".join(f"{d.label} {d.score:.0%}" for d in found) or "none found")) if boxes else ""
    return ({name: float(score) for name, score in labels},
            f"**{fps:.1f}** frames per second · {state['frames']} frames",
            picture if picture is not None else gr.skip(), objects, state)


def new_hearing_state() -> dict:
    return {"listener": None, "phrases": [], "language": None, "target": NO_TRANSLATION, "translated": {}}


def _listener(state: dict, language: str):
    from desktop.capture import BackgroundTranscriber, PhraseTranscriber

    if state["listener"] is None or state["language"] != language:
        if state["listener"] is not None:
            state["phrases"] += state["listener"].finish()
        transcriber = PhraseTranscriber(model_id=speech_model_id(language), language=language, preview_every=1.5)
        state["listener"], state["language"] = BackgroundTranscriber(transcriber), language
    return state["listener"]


def speech_model_id(language: str) -> str:
    from engine.tasks import speech_model_for

    return speech_model_for(language)  # honours the speech model chosen in the settings


def heard_markdown(state: dict) -> str:
    phrases, preview, problem = list(state["phrases"]), "", None
    if state.get("listener") is not None:
        live, preview = state["listener"].snapshot()
        phrases += live
        problem = state["listener"].error
    shown = phrases[-50:]
    lines = [f"`{clock(p.start)}` {p.text}" + (f" → *{t}*" if t else "")
             for p, t in zip(shown, phrase_translations(state, [p.text for p in shown]))]
    if preview:
        lines.append(f"*{preview} …*")
    if problem:
        lines.append(f"Error: {problem}")
    if lines:
        return "\n\n".join(lines)
    if state.get("listener") is not None:
        return "*(listening: speak, and each phrase appears when you pause)*"
    return "*(microphone off: start it in the microphone box to hear what is said)*"


def phrase_translations(state: dict, texts: list[str]) -> list[str | None]:
    """Finished phrases in the chosen language, each translated once (this runs for every microphone chunk)."""
    target = state.get("target") or NO_TRANSLATION
    if target == NO_TRANSLATION:
        return [None] * len(texts)
    cache = state.setdefault("translated", {})
    missing = [t for t in dict.fromkeys(texts) if (target, t) not in cache]
    try:
        for text, done in zip(missing, translations(missing, target)):
            cache[(target, text)] = done
    except FusionDeskError as exc:
        return [f"(not translated: {exc})"] * len(texts)
    return [cache[(target, t)] for t in texts]


def set_heard_target(target, state):
    state = state or new_hearing_state()
    state["target"] = target or NO_TRANSLATION
    return heard_markdown(state), state


def hear_chunk(chunk, language, state):
    """Streaming handler for the browser microphone: queue the audio for the background transcriber (voice
    activity cuts phrases, each is transcribed when it ends, previewed while spoken) and show the text so far."""
    from engine.audio import StreamResampler, to_mono_16k

    state = state or new_hearing_state()
    if chunk is None:
        return gr.skip(), state
    rate, samples = chunk
    try:
        # One resampler for the whole stream (chunks resampled one by one are bent at every boundary).
        resampler = state.get("resampler")
        if resampler is None or resampler.from_rate != int(rate):
            resampler = state["resampler"] = StreamResampler(int(rate))
        mono = to_mono_16k(np.asarray(samples), int(rate), target_rate=int(rate))  # mixed to mono, rate kept
        _listener(state, language or "en").push(resampler.push(mono))
    except FusionDeskError as exc:
        return f"Error: {exc}", state
    return heard_markdown(state), state


def stop_hearing(state):
    state = state or new_hearing_state()
    if state.get("listener") is not None:
        if state.get("resampler") is not None:
            state["listener"].push(state.pop("resampler").flush())
        state["phrases"] += state["listener"].finish()
        state["listener"] = None
    return heard_markdown(state), state


def clear_hearing(state):
    if state and state.get("listener") is not None:
        state["listener"].finish(timeout=0)
    target = (state or {}).get("target", NO_TRANSLATION)
    state = new_hearing_state()
    state["target"] = target
    return heard_markdown(state), state


@readable_errors
def record_system_microphone(seconds, device, language, state):
    """The same capture code as `fusiondesk listen`, for when the window cannot reach the microphone."""
    from desktop.capture import CaptureUnavailable, Phrase, record
    from engine.speech import transcribe

    state = state or new_hearing_state()
    try:
        samples, chosen = record(float(seconds), device or None)
    except CaptureUnavailable as exc:
        return heard_markdown(state), f"Error: {exc}", state
    transcript = transcribe(samples, model_id=speech_model_id(language or "en"), language=language or "en",
                            task="transcribe", beam_size=1)
    offset = state["phrases"][-1].end if state["phrases"] else 0.0
    for segment in transcript.segments:
        if segment.text.strip():
            state["phrases"].append(Phrase(offset + segment.start, offset + segment.end, segment.text.strip()))
    found = "no speech heard" if not transcript.text.strip() else f"{len(transcript.segments)} phrase(s)"
    return heard_markdown(state), f"Recorded {float(seconds):.0f} s from {chosen.name}: {found}.", state


def microphone_choices() -> tuple[list[tuple[str, str]], str]:
    from desktop.capture import CaptureUnavailable, input_devices

    try:
        devices = input_devices()
    except CaptureUnavailable as exc:
        return [], f"System microphone: {exc}"
    if not devices:
        return [], "System microphone: none found. Plug one in, or use the in-app microphone above or a recording."
    return [(d.name, str(d.index)) for d in devices], f"System microphone: {len(devices)} found."


@readable_errors
def fused_answer(vision, hearing, prompt, labels_text, progress=gr.Progress()):
    """The latest frame, the latest words and a typed prompt as one item -> one answer (engine's describe)."""
    from engine.tasks import describe_files

    vision, hearing = vision or {}, hearing or {}
    folder = results_dir()
    paths = []
    if vision.get("frame") is not None:
        vision["frame"].convert("RGB").save(folder / "camera.png")
        paths.append(str(folder / "camera.png"))
    phrases = list(hearing.get("phrases") or [])
    if hearing.get("listener") is not None:
        phrases += hearing["listener"].snapshot()[0]
    words = " ".join(p.text for p in phrases[-3:]).strip()
    if words:
        (folder / "heard.txt").write_text(words, encoding="utf-8")
        paths.append(str(folder / "heard.txt"))
    if not paths and not (prompt or "").strip():
        raise gr.Error("Nothing to fuse yet: start the camera, speak, or type a prompt.", print_exception=False)
    progress(0.1, desc="perceiving the frame, the words and the prompt")
    answer = describe_files(paths, text=prompt or None, labels=parse_labels(labels_text) or None)
    labels = {item["label"]: float(item["score"]) for item in answer["labels"]}
    used = ", ".join(name for name, present in (("camera frame", "camera.png"), ("words heard", "heard.txt"))
                     if any(p.endswith(present) for p in paths))
    return (f"{live_wording(answer['answer'])}\n\n*Fused from: {used or 'the prompt'}"
            f"{' + prompt' if used and prompt else ''}.*"), labels


# The Live answer speaks of the camera and of what was said, not of the files the frame and the words were put in.
LIVE_WORDING = [("what camera.png shows", "what the camera sees"), ("the things found in camera.png", "the things the "
                "camera sees"), ("the text in camera.png", "the text the camera sees"), ("camera.png shows", "the camera "
                "sees"), ("camera.png", "the camera"), ("what was said in heard.txt", "what you said"),
                ("the text of heard.txt", "what you said"), ("heard.txt says", "you said"), ("heard.txt", "what you said")]


def live_wording(answer: str) -> str:
    for internal, said in LIVE_WORDING:
        answer = answer.replace(internal, said)
    # Sentences start with a capital letter again where a file name was replaced.
    return re.sub(r"(^|[.!?] )([a-z])", lambda m: m.group(1) + m.group(2).upper(), answer)


# -- Models & settings tab -----------------------------------------------------------------------------------------


def models_table() -> list[list[Any]]:
    from engine.runtime import choose_providers

    runtime = get_runtime()
    rows = []
    for entry in runtime.bundle.models.values():
        if entry.task == "selftest-samples":
            continue  # the self-test's inputs, not a model
        loaded = [info for info in runtime.loaded() if info.model_id == entry.id]
        if loaded:
            provider = ", ".join(p.replace("ExecutionProvider", "") for p in loaded[0].providers)
        else:
            provider = f"{choose_providers(runtime.device)[0].replace('ExecutionProvider', '')} (not loaded yet)"
        rows.append([entry.id, entry.task, entry.modality, f"{entry.total_bytes / 1e6:.1f} MB", entry.precision,
                     provider, entry.license])
    from engine.packs import PACKS

    for spec in PACKS.values():  # so people know what a pack would add
        rows += [[model_id, "", "", "", "", f"in the {spec.title} pack, not installed", ""]
                 for model_id in spec.model_ids if model_id not in runtime.bundle]
    return rows


def settings_summary() -> str:
    runtime = get_runtime()
    import onnxruntime as ort

    from engine.runtime import GPU_PROVIDERS

    # Say what is really used: "gpu" on an onnxruntime without a GPU provider runs on the CPU.
    gpu = next((p for p in GPU_PROVIDERS if p in ort.get_available_providers()), None)
    where = f"GPU ({gpu.replace('ExecutionProvider', '')})" if gpu and runtime.device != "cpu" else "CPU"
    warning = ("⚠ **You chose gpu, but this ONNX Runtime has no GPU provider: everything runs on the CPU.** "
               if runtime.device == "gpu" and gpu is None else "")
    return (f"{warning}Running on **{where}** (device setting: {runtime.device}) with **{runtime.threads}** threads "
            f"per model · "
            f"ONNX Runtime {ort.__version__} providers available: {', '.join(ort.get_available_providers())} · "
            f"bundle {runtime.bundle.root} (version {runtime.bundle.bundle_version})")


def license_notes() -> str:
    """Licenses that are not plainly confirmed, said in words (the table's column is easy to overlook)."""
    notes = [f"- **{entry.id}**: {entry.license}" for entry in get_runtime().bundle.models.values()
             if any(word in (entry.license or "").upper() for word in ("UNCONFIRMED", "UNKNOWN"))]
    if not notes:
        return "Every model's license is stated in the table."
    return "**Licenses to know about** (weights whose license their package does not confirm):\n\n" + "\n".join(notes)


def model_overview() -> tuple[str, list[list[Any]], str]:
    return settings_summary(), models_table(), license_notes()


def packs_table() -> list[list[Any]]:
    from engine.packs import pack_rows

    return [[row["name"], row["title"], "-" if row["bytes"] is None else f"{row['bytes'] / 1e6:.0f} MB", row["state"],
             row["where"] or f"install {row['file']}"] for row in pack_rows(get_runtime().bundle)]


def removable_packs() -> gr.Dropdown:
    """The packs installed in the user's data folder (a pack beside the app belongs to its system package)."""
    from engine.packs import pack_rows

    names = sorted({row["name"] for row in pack_rows(get_runtime().bundle) if row["place"] == "user"})
    return gr.Dropdown(names, value=names[0] if names else None)


def _reload_bundle() -> None:
    """A new runtime on the bundle as it is now (with or without the pack): the old one keeps serving whatever
    is running on it."""
    from engine.manifest import ModelBundle

    current = get_runtime()
    set_runtime(Runtime(ModelBundle(current.bundle.root), device=current.device, threads=current.threads))


@readable_errors
def install_pack_file(upload):
    from engine.manifest import ModelBundle
    from engine.packs import install_pack

    path = getattr(upload, "name", upload)
    if not path:
        raise gr.Error("Choose a pack file first (FusionDesk-languages.pack).", print_exception=False)
    pack = install_pack(path, ModelBundle(get_runtime().bundle.root, packs=False).bundle_version)
    _reload_bundle()
    status = (f"Installed the **{pack.title}** pack ({pack.bytes / 1e6:.0f} MB) into `{pack.folder}`. Reload the page "
              "to use it in Live and Files.")
    return status, packs_table(), removable_packs(), models_table()


@readable_errors
def remove_pack_named(name):
    from engine.packs import remove_pack

    if not name:
        raise gr.Error("No pack installed in your data folder to remove.", print_exception=False)
    folder = remove_pack(name)
    _reload_bundle()
    return f"Removed the {name} pack from `{folder}`.", packs_table(), removable_packs(), models_table()


@readable_errors
def apply_settings(device, threads, speech_model):
    from engine.settings import SPEECH_MODELS, Settings, save_settings

    settings = Settings(device=device, threads=int(threads or 0), speech_model=speech_model)
    current = get_runtime()
    current.bundle.entry(SPEECH_MODELS[settings.speech_model])  # a model of a pack that is not installed: say so
    # A new runtime (new sessions on the chosen device) only when device or threads changed; 0 threads means
    # the default (one per physical core), which may differ from the current count.
    if settings.device != current.device or (settings.threads or default_threads()) != current.threads:
        set_runtime(Runtime(current.bundle, device=settings.device, threads=settings.threads or None))
    path = save_settings(settings)
    return f"Saved to {path}. " + settings_summary(), models_table(), license_notes()


# -- the page ------------------------------------------------------------------------------------------------------


def _live_tab(app: gr.Blocks) -> None:
    vision = gr.State(new_vision_state())
    hearing = gr.State(new_hearing_state())
    with gr.Row():
        with gr.Column():
            camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Camera",
                              webcam_options=gr.WebcamOptions(mirror=False), elem_id="live-camera")
            live_labels_text = gr.Textbox(label="Your labels (optional, comma-separated)",
                                          placeholder="e.g. a person, a cup, a cat, a book — empty: ImageNet classes")
            with gr.Row():
                live_head_name = gr.Dropdown(head_choices(), value=NO_HEAD, label="Your model (from the Teach tab)",
                                             elem_id="live-head", scale=4)
                heads_refresh = gr.Button("↻", size="sm", scale=0, min_width=40, elem_id="live-head-refresh")
            live_top = gr.Slider(1, 10, value=5, step=1, label="Labels shown")
            with gr.Row():
                live_boxes = gr.Checkbox(value=False, label="Draw object boxes (about 0.2 s more a frame)",
                                         elem_id="live-boxes")
                live_background = gr.Radio(BACKGROUNDS, value="keep", label="Background", elem_id="live-background")
        with gr.Column():
            seen = gr.Label(label="What the camera sees", num_top_classes=10, elem_id="live-labels")
            fps = gr.Markdown("*(start the camera)*", elem_id="live-fps")
            view = gr.Image(label="Objects and background", type="pil", format="jpeg", interactive=False,
                            visible=False, elem_id="live-view")
            objects = gr.Markdown(elem_id="live-objects")
    # Frames never queue, so a slow frame (a busy machine) costs frame rate, never lag. Gradio 6 sees to it: the
    # page posts a frame every CAMERA_STREAM_EVERY without waiting for labels, each post replaces the stream's
    # one pending frame (gradio/routes.py, POST /stream/{event_id}: `event.data = body`), and when a frame is
    # done the next call takes whatever frame is newest; the ones in between are dropped unseen. So the handler
    # needs no age check of its own (a frame waiting for it is at most one post interval old), and measured
    # (bench/bench_live.py, under load) the lag stays ~0.1-0.2 s and does not grow. The stream has its own
    # concurrency group, one stream at a time: it never waits behind a Files analysis or a Folder run, which
    # have groups of their own, and holds its slot for as long as the camera streams.
    camera.stream(classify_frame, [camera, live_labels_text, live_top, vision, live_boxes, live_background,
                                   live_head_name],
                  [seen, fps, view, objects, vision], stream_every=CAMERA_STREAM_EVERY, concurrency_limit=1,
                  concurrency_id=LIVE_CAMERA_QUEUE, show_progress="hidden", api_visibility="private")
    for option in (live_boxes, live_background):
        option.change(lambda boxes, background: gr.update(visible=bool(boxes) or background != "keep"),
                      [live_boxes, live_background], [view], api_visibility="private")
    heads_refresh.click(refresh_heads, [live_head_name], [live_head_name], api_visibility="private")
    app.load(refresh_heads, [live_head_name], [live_head_name], api_visibility="private")

    with gr.Row():
        with gr.Column():
            microphone = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Microphone")
            live_language = gr.Dropdown(LANGUAGES, value="en", label="Spoken language")
            live_target = translation_choice("Translate what is heard into", "live-translate")
            app.load(refresh_translation_choice, None, [live_target], api_visibility="private")
            with gr.Accordion("Record with the system microphone", open=False):
                choices, mic_status_text = microphone_choices()
                device = gr.Dropdown(choices, value=choices[0][1] if choices else None, label="Device")
                seconds = gr.Slider(1, 30, value=5, step=1, label="Seconds")
                record_button = gr.Button("Record")
                mic_status = gr.Markdown(mic_status_text)
        with gr.Column():
            heard = gr.Markdown(heard_markdown(new_hearing_state()), label="Heard", elem_id="live-heard")
            clear = gr.Button("Clear", size="sm")
    microphone.stream(hear_chunk, [microphone, live_language, hearing], [heard, hearing], stream_every=MIC_STREAM_EVERY,
                      concurrency_limit=1, show_progress="hidden", api_visibility="private")
    microphone.stop_recording(stop_hearing, [hearing], [heard, hearing], api_visibility="private")
    clear.click(clear_hearing, [hearing], [heard, hearing], api_visibility="private")
    live_target.change(set_heard_target, [live_target, hearing], [heard, hearing], api_visibility="private")
    record_button.click(record_system_microphone, [seconds, device, live_language, hearing],
                        [heard, mic_status, hearing], api_visibility="private")

    gr.Markdown("### One answer from everything at once")
    with gr.Row():
        prompt = gr.Textbox(label="Prompt (optional)", placeholder="What is this? / Is this the coffee I ordered?", scale=3)
        fuse_labels = gr.Textbox(label="Answer with these labels (optional)", scale=2)
        fuse_button = gr.Button("Fuse frame + words + prompt", variant="primary", scale=1)
    with gr.Row():
        answer = gr.Markdown(elem_id="live-answer")
        answer_labels = gr.Label(label="Fused labels", num_top_classes=5)
    fuse_button.click(fused_answer, [vision, hearing, prompt, fuse_labels], [answer, answer_labels],
                      api_visibility="private")


def _files_tab(app: gr.Blocks) -> None:
    with gr.Row():
        with gr.Column(scale=2):
            files = gr.File(file_count="multiple", label="Photos, scans, recordings, text files", elem_id="files-input")
            labels_text = gr.Textbox(label="Your labels (optional, comma-separated)",
                                     placeholder="e.g. invoice, receipt, letter — empty: ImageNet classes")
            with gr.Row():
                language = gr.Dropdown(LANGUAGES, value="en", label="Speech language")
                read_text = gr.Checkbox(value=True, label="Read text in images (OCR)")
            with gr.Row():
                scene = gr.CheckboxGroup([("Object boxes", "boxes"), ("Person mask", "people")], value=["boxes", "people"],
                                         label="Show on photos", elem_id="files-scene")
                target = translation_choice("Translate transcripts and text into", "files-translate")
                app.load(refresh_translation_choice, None, [target], api_visibility="private")
            run = gr.Button("Analyse", variant="primary", elem_id="files-run")
        with gr.Column(scale=3):
            status = gr.Markdown(elem_id="files-status")
            results = gr.HTML(elem_id="files-results")
            pictures = gr.Gallery(label="Objects, people and text found in images", columns=2, height="auto",
                                  object_fit="contain", elem_id="files-pictures")
            downloads = gr.File(label="Download results (JSON, CSV, SRT, VTT, TXT)", file_count="multiple",
                                interactive=False, elem_id="files-downloads")
    run.click(analyse_files, [files, labels_text, language, read_text, scene, target],
              [results, pictures, downloads, status], api_visibility="private", concurrency_id=ANALYSIS_QUEUE,
              concurrency_limit=ANALYSIS_CONCURRENCY)


def _models_tab(app: gr.Blocks) -> None:
    from engine.settings import load_settings

    settings = load_settings()
    summary = gr.Markdown()  # the offline status is the app's own banner, above every tab
    table = gr.Dataframe(headers=["model", "task", "modality", "size", "precision", "provider", "license"],
                         interactive=False, label="Models in the bundle", elem_id="models-table")
    licenses = gr.Markdown(elem_id="models-licenses")
    refresh = gr.Button("Refresh", size="sm")
    with gr.Row():
        device = gr.Radio(["auto", "cpu", "gpu"], value=settings.device, label="Device")
        threads = gr.Number(value=settings.threads, precision=0, minimum=0, maximum=256,
                            label="Threads per model (0 = one per physical core)")
        speech = gr.Radio([("English (whisper tiny.en, fast)", "english"), ("Multilingual (whisper base)", "multilingual")],
                          value=settings.speech_model, label="Speech model for English")
    save = gr.Button("Apply and save", variant="primary")
    refresh.click(model_overview, None, [summary, table, licenses], api_visibility="private")
    app.load(model_overview, None, [summary, table, licenses], api_visibility="private")
    save.click(apply_settings, [device, threads, speech], [summary, table, licenses], api_visibility="private")

    gr.Markdown("### Packs\nOptional models that the core download leaves out: the **Languages** pack "
                "(`FusionDesk-languages.pack`) adds speech in other languages, speech translated into English and "
                "English <-> Portuguese translation.")
    packs = gr.Dataframe(headers=["pack", "title", "size", "state", "where"], interactive=False, label="Packs",
                         elem_id="packs-table")
    with gr.Row():
        pack_file = gr.File(label="Pack file to install", file_types=[".pack"], elem_id="packs-file")
        with gr.Column():
            install = gr.Button("Install pack", elem_id="packs-install")
            removable = gr.Dropdown([], label="Installed pack to remove", elem_id="packs-removable")
            remove = gr.Button("Remove pack", size="sm", elem_id="packs-remove")
    pack_status = gr.Markdown(elem_id="packs-status")
    install.click(install_pack_file, [pack_file], [pack_status, packs, removable, table], api_visibility="private")
    remove.click(remove_pack_named, [removable], [pack_status, packs, removable, table], api_visibility="private")
    app.load(lambda: (packs_table(), removable_packs()), None, [packs, removable], api_visibility="private")


def _api_endpoints() -> None:
    """Endpoints for scripts (gradio_client): the same JSON records as the CLI's --json output."""
    with gr.Group(visible=False):
        files = gr.File(file_count="multiple")
        labels_text = gr.Textbox()
        text = gr.Textbox()
        language = gr.Textbox(value="en")
        top_k = gr.Number(value=5, precision=0)
        out = gr.JSON()
        trigger = gr.Button()
    shared = {"concurrency_id": ANALYSIS_QUEUE, "concurrency_limit": ANALYSIS_CONCURRENCY}
    trigger.click(api_classify, [files, labels_text, top_k], out, api_name="classify", **shared)
    trigger.click(api_transcribe, [files, language], out, api_name="transcribe", **shared)
    trigger.click(api_read, [files], out, api_name="read", **shared)
    trigger.click(api_describe, [files, text, labels_text], out, api_name="describe", **shared)


def optional_tabs() -> list[tuple[str, Any]]:
    """The optional tabs whose modules are installed, as (title, builder)."""
    found = []
    for title, module_name, function in OPTIONAL_TABS:
        if importlib.util.find_spec(module_name) is None:
            log.info("tab %s left out: %s is not installed", title, module_name)
            continue
        found.append((title, getattr(importlib.import_module(module_name), function)))
        log.info("tab %s from %s.%s", title, module_name, function)
    return found


def build_app() -> gr.Blocks:
    # Gradio copies every uploaded and returned file into its cache; without this the copies of a user's photos
    # and recordings would stay in the temp folder forever. Daily sweep, and the whole cache at each start.
    with gr.Blocks(title="FusionDesk", delete_cache=(86400, 86400)) as app:
        gr.Markdown("# FusionDesk\nSee, hear and read on your own computer: nothing leaves it.")
        gr.Markdown(offline_status(), elem_classes=["fd-offline"], elem_id="offline-status")
        with gr.Tab("Live"):
            _live_tab(app)
        with gr.Tab("Files"):
            _files_tab(app)
        for title, build_tab in optional_tabs():
            with gr.Tab(title):
                build_tab(app)
        with gr.Tab("Models & settings"):
            _models_tab(app)
        _api_endpoints()
    return app


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


# Gradio 6's file route (`/file=<url>`, `/gradio_api/file=<url>`) fetches an http(s) URL from the internet when
# asked (route_utils.secure_url_stream_response): any page open in the person's browser could make the app go
# online that way. FusionDesk never fetches from the network, so such requests are refused before gradio sees them.
# A scheme is two letters or more: "C:" is a Windows path to a file in gradio's cache, not a URL.
REMOTE_FILE_REQUEST = re.compile(r"/file=\s*([a-z][a-z0-9+.-]+:|//)", re.IGNORECASE)


class LocalFilesOnly:
    """ASGI middleware in front of the app: refuses file requests that name a URL."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and REMOTE_FILE_REQUEST.search(scope.get("path", "")):
            from starlette.responses import PlainTextResponse

            refusal = PlainTextResponse("FusionDesk serves files from this computer only; it never fetches from "
                                        "the network.", status_code=403)
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


def launch(port: int = 0, open_browser: bool = False, quiet: bool = True) -> tuple[gr.Blocks, str]:
    """Build and serve the app on 127.0.0.1 in background threads; returns the app and its address."""
    from starlette.middleware import Middleware

    app = build_app()
    app.queue(default_concurrency_limit=2, max_size=QUEUE_MAX_SIZE)
    port = port or free_port()
    app.launch(server_name=HOST, server_port=port, prevent_thread_lock=True, inbrowser=open_browser, quiet=quiet,
               share=False, show_error=False, ssr_mode=False, mcp_server=False, pwa=False,
               favicon_path=str(ICON) if ICON.is_file() else None, footer_links=["api", "settings"],
               theme=gr.themes.Soft(), css=CSS, app_kwargs={"middleware": [Middleware(LocalFilesOnly)]})
    return app, f"http://{HOST}:{port}/"
