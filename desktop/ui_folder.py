"""The Folder and Search tabs. desktop.ui calls `folder_tab()` and `search_tab()` inside its `gr.Tab`s.

Both call the same engine code as `fusiondesk batch`, `index` and `search` (engine.folder, engine.index):
the page only starts the work on a thread and shows how it goes.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import warnings
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import gradio as gr
import numpy as np

from desktop.ui import display_name, esc, readable_errors
from engine.errors import FusionDeskError
from engine.filetypes import text_name

POLL_SECONDS = 0.5  # how often the page is refreshed while a run goes on
TABLE_ROWS = 200  # the newest rows shown; the whole run is in the results file
THUMBNAIL_SIDE = 256
TABLE_HEADERS = ["file", "modality", "status", "result"]


# -- Folder tab ---------------------------------------------------------------------------------------------------


def default_results_path(folder: Path, suffix: str = ".jsonl") -> Path:
    """Results go to the app's data folder unless the person picks a file: never into their folder unasked."""
    from engine.settings import data_dir

    digest = hashlib.sha256(str(folder.resolve()).encode("utf-8")).hexdigest()[:8]
    return data_dir() / "batch" / f"{folder.resolve().name or 'folder'}-{digest}{suffix}"


def default_masks_dir(results: Path) -> Path:
    """Segmentation pictures go beside the results file (results.jsonl -> results.masks/), never into the folder."""
    return results.with_name(results.stem + ".masks")


def earlier_rows(results: Path) -> list[list[str]]:
    """The table rows of an earlier run's results (newest first), so that a rerun shows what is already done
    beside what it adds. Only FusionDesk's own JSONL results are read back; anything unreadable shows nothing."""
    from engine.folder import read_results

    if results.suffix.lower() != ".jsonl" or not results.is_file():
        return []
    try:
        found = read_results(results)[-TABLE_ROWS:]
    except (OSError, ValueError):
        return []
    return [[row.get("file", ""), row.get("modality") or "", row.get("status", ""), row_summary(row)]
            for row in reversed(found) if isinstance(row, dict)]


def row_summary(row: dict[str, Any]) -> str:
    """One cell saying what was found: the top label, the text read or heard, objects, people, the translation,
    or the error."""
    if row.get("status") == "error":
        return row.get("error", "")
    parts = []
    labels = (row.get("classify") or {}).get("labels") or []
    if labels:
        parts.append(f"{labels[0]['label']} ({labels[0]['score']:.0%})")
    for task in ("transcribe", "read"):
        text = " ".join(((row.get(task) or {}).get("text") or "").split())
        if text:
            parts.append(f"“{text[:100]}”")
    if (row.get("embed") or {}).get("dim"):
        parts.append(f"{row['embed']['dim']}-d vector")
    objects = (row.get("detect") or {}).get("objects")
    if objects is not None:
        names = list(dict.fromkeys(item["label"] for item in objects))
        parts.append("objects: " + (", ".join(names) if names else "none"))
    if row.get("segment"):
        parts.append(f"person: {row['segment']['person_fraction']:.0%} of the picture")
    translated = row.get("translate") or {}
    if translated.get("text") and translated.get("source") != translated.get("target"):
        parts.append(f"{translated['source']}→{translated['target']}: “{' '.join(translated['text'].split())[:100]}”")
    return " · ".join(parts)


def progress_html(progress, finished: bool = False) -> str:
    total = max(progress.total, 1)
    pct = 100.0 * progress.done / total
    eta = "" if progress.eta is None or finished else f" · about {progress.eta:.0f} s left"
    return (f'<div class="fd-bar"><span>{progress.done} / {progress.total} files</span>'
            f'<div class="fd-track"><div class="fd-fill" style="width:{pct:.1f}%"></div></div>'
            f'<span>{pct:.0f}%</span></div>'
            f'<p class="fd-muted">{progress.ok} ok · {progress.failed} failed · {progress.skipped} skipped · '
            f'{progress.resumed} already done · {progress.rate:.1f} files/s{eta}</p>')


def run_folder(folder: str, out: str, tasks: list[str], labels: str, recursive: bool, resume: bool,
               include: str, exclude: str, target: str = "en", segment_mode: str = "mask"
               ) -> Iterator[tuple[str, str, list[list[str]], str | None]]:
    """Generator for the Run button: yields (status, progress, table rows, results file) while the batch runs.

    Segmentation pictures go to default_masks_dir(results file)."""
    from engine.folder import BatchOptions, BatchRun, Progress
    from engine.tasks import parse_labels

    if not folder or not Path(folder).expanduser().is_dir():
        raise gr.Error("Choose a folder that exists (type or paste its path).", print_exception=False)
    if not tasks:
        raise gr.Error("Choose at least one task.", print_exception=False)
    source = Path(folder).expanduser()
    results = Path(out).expanduser() if out and out.strip() else default_results_path(source)
    masks = default_masks_dir(results) if "segment" in tasks else None
    options = BatchOptions(tasks=tuple(tasks), labels=parse_labels(labels), recursive=recursive, resume=resume,
                           include=include.split() if include else [], exclude=exclude.split() if exclude else [],
                           target=target or "en", masks_dir=masks, segment_mode=segment_mode or "mask")
    latest: dict[str, Any] = {"progress": Progress()}
    rows: deque[list[str]] = deque(earlier_rows(results) if resume else (), maxlen=TABLE_ROWS)
    lock = threading.Lock()

    def on_progress(progress) -> None:
        with lock:
            latest["progress"] = progress
            if progress.last_row is not None and progress.last_row is not latest.get("row"):
                row = latest["row"] = progress.last_row
                rows.appendleft([row["file"], row.get("modality") or "", row["status"], row_summary(row)])

    stop = threading.Event()
    try:
        run = BatchRun(source, results, options, progress=on_progress, stop=stop)
    except FusionDeskError as exc:
        raise gr.Error(str(exc), print_exception=False) from None
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["summary"] = run.run()
        except Exception as exc:  # shown in the page below; the thread must not die silently
            outcome["error"] = exc

    thread = threading.Thread(target=work, name="fusiondesk-batch", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(POLL_SECONDS)
            with lock:
                yield f"Processing {esc(source)} …", progress_html(latest["progress"]), list(rows), None
    finally:
        stop.set()  # the page was closed or Stop was pressed: finish the file in hand and stop
    if "error" in outcome:
        error = outcome["error"]
        message = str(error) if isinstance(error, FusionDeskError) else f"{type(error).__name__}: {error}"
        raise gr.Error(message, print_exception=False)
    summary = outcome["summary"]
    data = summary.to_dict()
    reasons = ", ".join(f"{esc(r)}: {n}" for r, n in sorted(data["skip_reasons"].items()))
    status = (f"**Done** in {data['seconds']:.1f} s: {data['ok']} ok, {data['failed']} failed, {data['skipped']} "
              f"skipped{f' ({reasons})' if reasons else ''}, {data['resumed']} already done. "
              f"Results: `{esc(results)}`" + (f"; pictures: `{esc(masks)}`" if masks is not None else "")
              + ". The folder is searchable now: see the Search tab.")
    with lock:
        yield status, progress_html(latest["progress"], finished=True), list(rows), str(results)


def folder_tab(app: gr.Blocks | None = None) -> None:
    from engine.folder import DEFAULT_TASKS, TASKS
    from engine.scene import SEGMENT_MODES
    from engine.translate import LANGUAGES

    gr.Markdown("Process every photo, scan, recording and note of a folder. Results are written as each file "
                "finishes, so a stopped run continues where it left off. Your files are only read, never changed.")
    with gr.Row():
        folder = gr.Textbox(label="Folder", placeholder="/home/me/Archive", scale=3, elem_id="folder-dir")
        choose = chooser_button("folder-choose")
        out = gr.Textbox(label="Results file (.jsonl or .csv; empty: FusionDesk's own data folder)", scale=2)
    with gr.Row():
        tasks = gr.CheckboxGroup(list(TASKS), value=list(DEFAULT_TASKS), label="Tasks (each where it fits the file)")
        labels = gr.Textbox(label="Your labels for classify (optional)", placeholder="invoice, receipt, letter, photo")
    with gr.Row():
        target = gr.Radio([(name, code) for code, name in LANGUAGES.items()], value="en",
                          label="translate: into (the text read, heard or written)",
                          visible="translate" in DEFAULT_TASKS, elem_id="folder-target")
        segment_mode = gr.Radio(list(SEGMENT_MODES), value="mask",
                                label="segment: picture per photo (written beside the results file, in <name>.masks)",
                                visible="segment" in DEFAULT_TASKS, elem_id="folder-segment-mode")
    # A task's options only while the task is chosen.
    tasks.change(lambda chosen: (gr.update(visible="translate" in chosen), gr.update(visible="segment" in chosen)),
                 tasks, [target, segment_mode], queue=False)
    with gr.Row():
        recursive = gr.Checkbox(value=True, label="Include subfolders")
        resume = gr.Checkbox(value=True, label="Skip files already in the results file")
        include = gr.Textbox(label="Only files matching (globs, space-separated)", placeholder="*.jpg *.wav")
        exclude = gr.Textbox(label="Leave out (globs)", placeholder="drafts/* *.tmp")
    with gr.Row():
        run_button = gr.Button("Run", variant="primary", elem_id="folder-run")
        stop_button = gr.Button("Stop")
    status = gr.Markdown(elem_id="folder-status")
    progress = gr.HTML()
    table = gr.Dataframe(headers=TABLE_HEADERS, value=[], interactive=False, wrap=True, label="Newest results first")
    download = gr.File(label="Results file", interactive=False)
    event = run_button.click(run_folder, [folder, out, tasks, labels, recursive, resume, include, exclude, target,
                                          segment_mode], [status, progress, table, download])
    stop_button.click(lambda: "Stopped: run again to continue where it left off.", None, status, cancels=[event])
    wire_chooser(app, choose, folder)


def chooser_button(elem_id: str) -> gr.Button:
    # Shown only in the app's own window, where the system's folder dialog can open (desktop.window).
    return gr.Button("Choose…", visible=False, scale=0, min_width=110, elem_id=elem_id)


def wire_chooser(app: gr.Blocks | None, button: gr.Button, box) -> None:
    from desktop.window import can_choose_folders, choose_folder

    def chosen(current: str | None):
        picked = choose_folder(current or "")
        return gr.update(value=picked) if picked else gr.update()  # cancelled: the box keeps what it had

    button.click(chosen, box, box, api_visibility="private")
    if app is not None:
        app.load(lambda: gr.update(visible=can_choose_folders()), None, button, api_visibility="private")


# -- Search tab ---------------------------------------------------------------------------------------------------

_open: dict[str, Any] = {}  # folder -> FolderIndex, kept open so its vector matrix stays loaded between searches
_open_lock = threading.Lock()


def _index_for(folder: Path):
    from engine.index import FolderIndex

    key = str(folder.resolve())
    with _open_lock:
        if key not in _open:
            _open[key] = FolderIndex(folder)
        return _open[key]


def _indexes_for(folder: str) -> list:
    from engine.index import index_path_for, known_indexes

    if folder and folder.strip():
        path = Path(folder).expanduser()
        if not index_path_for(path).is_file():
            raise gr.Error(f"{path} is not indexed yet: process it in the Folder tab, or press “Index this folder”.",
                           print_exception=False)
        return [_index_for(path)]
    folders = known_indexes()
    if not folders:
        raise gr.Error("Nothing is indexed yet: process a folder in the Folder tab, or type one and press "
                       "“Index this folder”.", print_exception=False)
    return [_index_for(f) for f in folders]


def indexed_folders() -> list[str]:
    """The folders that have a search index (processed in the Folder tab or indexed), for the Search tab to offer."""
    from engine.index import known_indexes

    return [str(folder) for folder in known_indexes()]


def refresh_folders(current: str | None):
    return gr.Dropdown(choices=indexed_folders(), value=current or None)


def index_folder(folder: str) -> Iterator[str]:
    """Generator for the Index button: the index is updated on a thread, progress shown as it goes."""
    if not folder or not Path(folder).expanduser().is_dir():
        raise gr.Error("Choose a folder that exists (type or paste its path).", print_exception=False)
    from engine.folder import Progress

    index = _index_for(Path(folder).expanduser())
    latest = {"progress": Progress()}
    outcome: dict[str, Any] = {}
    stop = threading.Event()

    def work() -> None:
        try:
            outcome["summary"] = index.update(progress=lambda p: latest.update(progress=p), stop=stop)
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=work, name="fusiondesk-index", daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        while thread.is_alive():
            thread.join(POLL_SECONDS)
            yield f"Indexing … ({time.monotonic() - started:.0f} s)" + progress_html(latest["progress"])
    finally:
        stop.set()
    if "error" in outcome:
        raise gr.Error(str(outcome["error"]), print_exception=False)
    s = outcome["summary"]
    yield (f"Indexed {len(index)} files in {s.seconds:.1f} s: {s.added} new, {s.changed} changed, {s.renamed} "
           f"renamed, {s.copied} copies, {s.deleted} removed, {s.unchanged} unchanged, {s.failed} failed.")


SEARCH_BY_WORDS = "what I type"
SEARCH_BY_FILE = "files like the one below"


@readable_errors
def search_folder(query: str, folder: str, modality: str, top: float, like: str | None,
                  search_by: str = SEARCH_BY_WORDS, good_only: bool = True):
    """-> (gallery of (thumbnail, caption) for image hits, HTML list of every hit with its snippet, the shown
    results for opening one: {"query": …, "hits": [Hit as dict]}).

    search_by says which of the two inputs is meant (a file left attached never hijacks a typed query);
    good_only: a typed query shows its good matches only (engine.index.good_matches), or says there is none."""
    from engine.index import OutdatedIndexWarning, good_matches, group_copies, search

    query = (query or "").strip()
    by_file = search_by == SEARCH_BY_FILE
    if by_file and not like:
        raise gr.Error("Add a file to find files like it, or choose to search by what you type.", print_exception=False)
    if not by_file and not query:
        raise gr.Error("Type what you are looking for (or choose to find files like one you add).",
                       print_exception=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OutdatedIndexWarning)
        # twice as many, so that the list is still full once the copies of a file are folded into it
        hits = group_copies(search(query=None if by_file else query, like=like if by_file else None,
                                   top=2 * int(top), modality=None if modality == "all" else modality,
                                   indexes=_indexes_for(folder)))[:int(top)]
    outdated = "".join(f'<p class="fd-muted">{esc(text_name(str(w.message)))}</p>' for w in caught
                       if issubclass(w.category, OutdatedIndexWarning))
    note = ""
    if good_only and not by_file:
        good = good_matches(hits)
        if not good and hits:
            note = (f'<p class="fd-muted">No good match for “{esc(query)}”. The closest was '
                    f"{esc(display_name(hits[0].path))} ({hits[0].score:.2f}); untick “good matches only” to see "
                    "everything ranked.</p>")
        hits = good
    pictures, picture_ranks = [], []  # the gallery's n-th picture is the result of rank picture_ranks[n]
    for rank, hit in enumerate(hits):
        thumb = _thumbnail(hit.path) if hit.modality == "image" else None
        if thumb is not None:
            pictures.append((thumb, f"{hit.score:.2f} · {display_name(hit.path)}"))
            picture_ranks.append(rank)
    shown = {"query": "" if by_file else query, "hits": [asdict(h) for h in hits], "pictures": picture_ranks}
    return pictures, outdated + (note or hits_html(hits, "" if by_file else query)), shown


def _thumbnail(path: str, side: int = THUMBNAIL_SIDE):
    from engine.errors import InputFileError
    from engine.imaging import load_image

    try:
        return load_image(path, max_side=side)
    except InputFileError:
        return None  # moved or deleted since it was indexed: the list below still names it


SNIPPET_CHARS = 300  # of a result's text shown in its card


def snippet_html(text: str, query: str = "") -> str:
    """A result's text for its card: around the first of the query's words it holds (where the keyword part of the
    ranking found them), those words in bold; else its beginning."""
    from engine.index import keyword_terms

    text = " ".join(text.split())
    patterns = []
    for term in keyword_terms(query):
        parts = term.split()
        if len(parts) == 1:  # "cakes" finds "cake" and "caked", roughly as the index's stemming does
            parts[0] = next((parts[0][:-len(end)] for end in ("es", "s", "e")
                             if parts[0].endswith(end) and len(parts[0]) - len(end) >= 3), parts[0])
        patterns.append(r"\b" + r"\W+".join(map(re.escape, parts)) + (r"\w*" if len(parts) == 1 else r"\b"))
    words = re.compile("|".join(patterns), re.IGNORECASE) if patterns else None
    first = words.search(text) if words else None
    start = max(0, first.start() - SNIPPET_CHARS // 3) if first else 0
    shown = text[start:start + SNIPPET_CHARS]
    if words is None:
        return ("…" if start else "") + esc(shown)
    pieces, at = [], 0
    for match in words.finditer(shown):
        pieces += [esc(shown[at:match.start()]), f"<b>{esc(match.group())}</b>"]
        at = match.end()
    return ("…" if start else "") + "".join(pieces) + esc(shown[at:])


def hits_html(hits, query: str = "") -> str:
    if not hits:
        return '<p class="fd-muted">No results.</p>'
    cards = []
    for rank, hit in enumerate(hits, 1):
        snippet = hit.transcript or hit.ocr_text
        heard = "heard" if hit.transcript else ("text" if hit.modality == "text" else "reads")
        cards.append(f'<div class="fd-card fd-result" data-rank="{rank - 1}" title="Open">'
                     f'<h4>{rank}. {esc(display_name(hit.path))} '
                     f'<span class="fd-muted">{esc(hit.modality)} · {hit.score:.3f}</span></h4>'
                     f'<div class="fd-muted">{esc(text_name(hit.path))}</div>'
                     + (f'<div class="fd-muted">also at: {esc("; ".join(text_name(c) for c in hit.copies))}</div>'
                        if hit.copies else "")
                     + (f'<div>{heard}: “{snippet_html(snippet, query)}”</div>' if snippet.strip() else "") + "</div>")
    return '<p class="fd-muted">Click a result to open it.</p>' + "".join(cards)


# A click anywhere on a result card opens that result below the list (the card's rank goes to the server).
OPEN_RESULT_ON_CLICK = ("element.addEventListener('click', (event) => {"
                        " const card = event.target.closest('[data-rank]');"
                        " if (card) trigger('click', {rank: Number(card.dataset.rank)}); });")
PREVIEW_SIDE = 1280  # pixels: a preview fits the window, not the camera's full resolution
PREVIEW_AUDIO_SECONDS = 300.0  # a result plays from its matching part, up to five minutes of it
EXCERPT_LINES = 3  # lines of text shown either side of the matching line


def open_result(shown: dict | None, rank: int):
    """A result opened below the list: (heading and excerpt, picture, recording from its matching part, the
    file's path for the Open / Show-in-folder buttons, the buttons' visibility)."""
    from desktop.folder_commands import clock_text
    from engine.audio import read_excerpt
    from engine.errors import InputFileError
    from engine.index import best_passage

    hits = (shown or {}).get("hits") or []
    if not 0 <= rank < len(hits):
        raise gr.Error("That result is no longer shown: search again.", print_exception=False)
    hit, query = hits[rank], (shown or {}).get("query", "")
    path = Path(hit["path"])
    lines = [f"#### {esc(display_name(path))}", f'<span class="fd-muted">{esc(text_name(str(path)))}</span>']
    picture, recording = None, None
    if not path.is_file():
        lines.append("This file is no longer there (moved or deleted since it was indexed).")
    elif hit["modality"] == "image":
        picture = _thumbnail(str(path), PREVIEW_SIDE)
    elif hit["modality"] == "audio":
        segments = hit.get("segments") or []
        start = 0.0
        if segments:
            where = best_passage(query, [text for _, _, text in segments])
            start = float(segments[where][0])
            said = segments[where][2].strip()
            lines.append(f"Plays from {clock_text(start)}, where it says “{esc(said)}”." if query else
                         f"Plays from the start: “{esc(said)}”.")
        try:
            rate, samples = read_excerpt(path, max(0.0, start - 0.5), PREVIEW_AUDIO_SECONDS)
            # 16-bit, as the player is sent it anyway (gradio would convert float samples itself, with a warning)
            recording = (rate, (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16))
        except InputFileError as exc:
            lines.append(esc(text_name(str(exc))))
    text = hit.get("ocr_text") or ""
    if text.strip():
        passages = [line for line in text.splitlines() if line.strip()] or [text]
        where = best_passage(query, passages)
        first, last = max(0, where - EXCERPT_LINES), min(len(passages), where + EXCERPT_LINES + 1)
        excerpt = [f"**{esc(line)}**" if i == where and query else esc(line)
                   for i, line in enumerate(passages[first:last], first)]
        lines.append(("Reads:" if hit["modality"] == "image" else "Text:") + "\n\n> " + "  \n> ".join(excerpt))
    return ("\n\n".join(lines), gr.update(value=picture, visible=picture is not None),
            gr.update(value=recording, visible=recording is not None), str(path), gr.update(visible=True))


@readable_errors
def open_clicked(shown: dict | None, event: gr.EventData):
    return open_result(shown, int(event.rank))


@readable_errors
def open_picture(shown: dict | None, event: gr.SelectData):
    pictures = (shown or {}).get("pictures") or []
    return open_result(shown, pictures[event.index] if 0 <= event.index < len(pictures) else -1)


@readable_errors
def hand_to_system(path: str, how: str) -> str:
    from desktop.system import open_file, reveal_file

    if not path:
        raise gr.Error("Open a result first.", print_exception=False)
    program = (open_file if how == "open" else reveal_file)(path)
    return (f"Opened {esc(display_name(path))} ({program})." if how == "open"
            else f"Showed {esc(display_name(path))} in its folder ({program}).")


def search_tab(app: gr.Blocks | None = None) -> None:
    gr.Markdown("Search indexed folders by meaning and by their words: a query finds photos by what they show, "
                "scans by the text in them and recordings by what is said, and an exact word or number (an invoice "
                "number, a name) by where it is written or said. Indexing reads each file once; later only new or "
                "changed files are read again.")
    with gr.Row():
        folder = gr.Dropdown(label="Folder (empty: search every indexed folder; or type another to index it)",
                             choices=indexed_folders(), value=None, allow_custom_value=True, scale=3)
        choose = chooser_button("search-choose")
        index_button = gr.Button("Index this folder", scale=1)
    index_status = gr.HTML()
    search_by = gr.Radio([SEARCH_BY_WORDS, SEARCH_BY_FILE], value=SEARCH_BY_WORDS, label="Search by",
                         elem_id="search-by")
    with gr.Row():
        query = gr.Textbox(label="Search", placeholder="receipt from the hardware store", scale=3)
        modality = gr.Radio(["all", "image", "audio", "text"], value="all", label="Kind", scale=2)
        top = gr.Slider(1, 50, value=12, step=1, label="Results", scale=1)
        good_only = gr.Checkbox(value=True, label="Good matches only", scale=1)
    like = gr.File(label="…or find files like this one", type="filepath", elem_id="search-like")
    search_button = gr.Button("Search", variant="primary", elem_id="search-button")
    # Thumbnails of one size in a grid, whatever the number of results (one result is not a full-page picture).
    gallery = gr.Gallery(label="Pictures", columns=6, height=240, object_fit="cover", preview=False,
                         allow_preview=False, elem_classes=["fd-thumbs"])
    results = gr.HTML(elem_id="search-results", js_on_load=OPEN_RESULT_ON_CLICK)
    shown = gr.State({})
    opened_path = gr.State("")
    with gr.Group(elem_id="search-preview"):
        preview_text = gr.Markdown(elem_id="search-preview-text")
        preview_picture = gr.Image(label="Picture", type="pil", interactive=False, visible=False,
                                   elem_id="search-preview-picture")
        preview_audio = gr.Audio(label="Recording", type="numpy", interactive=False, visible=False,
                                 elem_id="search-preview-audio")
        with gr.Row(visible=False) as file_actions:
            open_button = gr.Button("Open", size="sm", elem_id="search-open")
            reveal_button = gr.Button("Show in folder", size="sm", elem_id="search-reveal")
        action_status = gr.Markdown(elem_id="search-action")
    preview = [preview_text, preview_picture, preview_audio, opened_path, file_actions]
    index_button.click(index_folder, folder, index_status).then(refresh_folders, folder, folder)
    # Whatever the person touched last says what a search is by; the radio shows it and can be changed. Set in
    # the page itself (no round trip), so a Search pressed right after typing searches what was typed.
    query.change(None, None, search_by, js=f"() => {json.dumps(SEARCH_BY_WORDS)}", queue=False)
    like.upload(None, None, search_by, js=f"() => {json.dumps(SEARCH_BY_FILE)}", queue=False)
    like.clear(None, None, search_by, js=f"() => {json.dumps(SEARCH_BY_WORDS)}", queue=False)
    inputs = [query, folder, modality, top, like, search_by, good_only]
    closed = (lambda: ("", gr.update(value=None, visible=False), gr.update(value=None, visible=False), "",
                       gr.update(visible=False), ""))
    for start in (search_button.click, query.submit):
        start(search_folder, inputs, [gallery, results, shown]).then(closed, None, preview + [action_status])
    results.click(open_clicked, [shown], preview)
    gallery.select(open_picture, [shown], preview)
    open_button.click(lambda path: hand_to_system(path, "open"), opened_path, action_status)
    reveal_button.click(lambda path: hand_to_system(path, "reveal"), opened_path, action_status)
    folder.focus(refresh_folders, folder, folder)
    wire_chooser(app, choose, folder)  # folders processed in the Folder tab since the page opened
