"""The Teach tab: collect examples per class (upload, webcam snapshot, microphone), train a head, see its
cross-validated accuracy and confusion matrix, try it live, and share it as one file.

Examples are kept as plain files in data_dir()/teach/<head name>/<class>/, the same layout
`fusiondesk train DATA_DIR` reads, so a set started in the app can be retrained from the command line.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import gradio as gr

from engine.errors import FusionDeskError

CLASS_PATTERN = re.compile(r"^[^/\\:*?\"<>|.][^/\\:*?\"<>|]{0,63}$")


def teach_root() -> Path:
    from engine.settings import data_dir

    return data_dir() / "teach"


def workspace(head_name: str) -> Path:
    from engine.teach import check_name

    return teach_root() / check_name((head_name or "").strip())


def class_counts(head_name: str) -> dict[str, int]:
    folder = workspace(head_name)
    if not folder.is_dir():
        return {}
    return {d.name: sum(1 for f in d.iterdir() if not f.name.startswith("."))
            for d in sorted(folder.iterdir()) if d.is_dir()}


def add_class(head_name: str, class_name: str) -> str:
    class_name = (class_name or "").strip()
    if not CLASS_PATTERN.match(class_name):
        raise FusionDeskError(f"{class_name!r} cannot be a class name: use a short name without / \\ : * ? \" < > |")
    (workspace(head_name) / class_name).mkdir(parents=True, exist_ok=True)
    return class_name


def _class_dir(head_name: str, class_name: str | None) -> Path:
    if not class_name:
        raise FusionDeskError("Pick (or add) a class first.")
    folder = workspace(head_name) / class_name
    if not folder.is_dir():
        raise FusionDeskError(f"There is no class {class_name!r} yet: add it first.")
    return folder


def _unique(folder: Path, stem: str, suffix: str) -> Path:
    return folder / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 1_000_000:06d}{suffix}"


def add_files(head_name: str, class_name: str, paths: list[str]) -> int:
    folder = _class_dir(head_name, class_name)
    for path in paths or []:
        source = Path(path)
        shutil.copyfile(source, _unique(folder, source.stem[:40], source.suffix.lower()))
    return len(paths or [])


def add_snapshot(head_name: str, class_name: str, image) -> Path:
    if image is None:
        raise FusionDeskError("No snapshot yet: take one with the camera first.")
    target = _unique(_class_dir(head_name, class_name), "snapshot", ".jpg")
    image.convert("RGB").save(target, quality=92)
    return target


def add_recording(head_name: str, class_name: str, audio_path: str | None) -> Path:
    if not audio_path:
        raise FusionDeskError("No recording yet: record one with the microphone first.")
    source = Path(audio_path)
    target = _unique(_class_dir(head_name, class_name), "recording", source.suffix.lower() or ".wav")
    shutil.copyfile(source, target)
    return target


LAST_WORKSPACE_FILE = ".last"  # in teach_root(): the model being taught when the app was last used
DEFAULT_WORKSPACE = "my-model"


def _is_picture(example: Path) -> bool:
    """An example shown as a thumbnail on its class card (recordings, texts and folders are listed by name)."""
    from engine.filetypes import IMAGE_EXTENSIONS

    return example.is_file() and example.suffix.lower() in IMAGE_EXTENSIONS


def last_workspace() -> str:
    """The model the person was teaching last (kept across reloads and restarts), or the default name."""
    try:
        name = (teach_root() / LAST_WORKSPACE_FILE).read_text(encoding="utf-8").strip()
        workspace(name)  # still a valid name
        return name
    except (OSError, FusionDeskError):
        return DEFAULT_WORKSPACE


def remember_workspace(head_name: str) -> None:
    from engine.fileio import atomic_write_text

    workspace(head_name).mkdir(parents=True, exist_ok=True)
    atomic_write_text(teach_root() / LAST_WORKSPACE_FILE, head_name.strip() + "\n")


def examples_of(head_name: str, class_name: str | None) -> list[Path]:
    """The examples collected for one class, oldest first."""
    if not class_name:
        return []
    folder = workspace(head_name) / class_name
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: (p.stat().st_mtime, p.name))


def delete_example(head_name: str, class_name: str, example_name: str) -> None:
    """Remove one example (a file, or a folder that is one example) from a class."""
    folder = _class_dir(head_name, class_name)
    target = folder / Path(example_name or "").name
    if not example_name or target.parent != folder or not target.exists():
        raise FusionDeskError("pick an example of this class to delete")
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()


def delete_class(head_name: str, class_name: str) -> int:
    """Remove a class and its examples; returns how many examples went with it."""
    folder = _class_dir(head_name, class_name)
    count = len(examples_of(head_name, class_name))
    shutil.rmtree(folder)
    return count


def _known_classes(head_name: str) -> list[str]:
    try:
        return list(class_counts(head_name))
    except FusionDeskError:
        return []


def counts_markdown(head_name: str) -> str:
    from engine.teach import MIN_EXAMPLES_WARNING

    counts = class_counts(head_name)
    if not counts:
        return "No classes yet: name one and press **Add class**."
    rows = [f"| {name} | {count} | {'add more' if count < MIN_EXAMPLES_WARNING else 'ok'} |" for name, count in counts.items()]
    return f"| class | examples | {MIN_EXAMPLES_WARNING}+ |\n|---|---|---|\n" + "\n".join(rows)


def report_markdown(report) -> str:
    lines = [f"### Model **{report.name}**: {report.chosen}, cross-validated accuracy {report.accuracy:.0%}",
             f"{report.folds}-fold cross-validation on {sum(report.counts.values())} examples "
             f"({report.seconds['total']:.1f} s):", "", "| model | accuracy | log-loss | seconds |", "|---|---|---|---|"]
    for c in report.candidates:
        mark = " **(chosen)**" if c["model"] == report.chosen else ""
        lines.append(f"| {c['model']}{mark} | {c['accuracy']:.1%} | {c['log_loss']:.3f} | {c['seconds']:.1f} |")
    for warning in report.warnings:
        lines.append(f"\n⚠ {warning}")
    for item in report.skipped:
        lines.append(f"\nskipped {Path(item['file']).name}: {item['error']}")
    return "\n".join(lines)


def confusion_rows(report) -> list[list]:
    return [[name, *row] for name, row in zip(report.classes, report.confusion)]


def head_names() -> list[str]:
    from engine.teach import list_heads

    return [head.name for head in list_heads()]


def try_head(head_name: str, image, audio_path: str | None, text: str | None) -> dict[str, float]:
    """One item from whatever was given (a frame, a recording, a text, or several together) -> class scores."""
    from engine.errors import InputFileError
    from engine.perceive import Perceiver
    from engine.runtime import get_runtime
    from engine.teach import classify_with_head, load_head

    if not head_name:
        raise FusionDeskError("Pick a model to try (train one, or import a model file).")
    runtime = get_runtime()
    head = load_head(head_name, runtime)
    perceiver = Perceiver(runtime, head.perception_options())
    item = []
    if image is not None:
        item += perceiver.perceive_images([image.convert("RGB")], ["camera"])
    if audio_path:
        item += perceiver.perceive_files([audio_path])
    if text and text.strip():
        item.append(perceiver.perceive_text(text, "text"))
    errors = [p for p in item if isinstance(p, InputFileError)]
    if errors:
        raise FusionDeskError(errors[0].problem)
    if not item:
        raise FusionDeskError("Give the model something to look at, listen to or read.")
    (result,) = classify_with_head([item], head, runtime)
    if isinstance(result, InputFileError):
        raise FusionDeskError(result.problem)
    return {entry["label"]: entry["score"] for entry in result}


def class_view(head_name: str, class_name: str | None):
    """What the chosen class's card shows: thumbnails of its pictures, the names of its other examples, and the
    examples to pick from for deleting one."""
    try:
        found = examples_of(head_name, class_name)
    except FusionDeskError:
        found = []
    pictures = [(str(p), p.name) for p in found if _is_picture(p)]
    others = [p.name for p in found if not _is_picture(p)]
    listing = ("Other examples: " + ", ".join(others)) if others else ""
    if class_name and not found:
        listing = f"No examples in **{class_name}** yet: add some below."
    names = [p.name for p in found]
    return pictures, listing, gr.update(choices=names, value=names[-1] if names else None)


def teach_tab(app: gr.Blocks | None = None) -> None:
    """The Teach tab's components and events, inside the current gr.Blocks / gr.Tab context."""
    from desktop.ui import readable_errors

    gr.Markdown("Teach FusionDesk your own categories from a handful of examples per class: photos, webcam "
                "snapshots, recordings, texts, or a mix. Everything stays on this computer, and your work is kept "
                "between sessions.")
    start = last_workspace()
    with gr.Row():
        name = gr.Textbox(value=start, label="Model name", scale=2, elem_id="teach-name")
        new_class = gr.Textbox(label="New class", placeholder="e.g. my cat", scale=2, elem_id="teach-new-class")
        add_class_button = gr.Button("Add class", scale=1)
    with gr.Row():
        with gr.Column(scale=2):
            known = _known_classes(start)
            current = gr.Dropdown(choices=known, value=known[0] if known else None, label="Class",
                                  allow_custom_value=False, elem_id="teach-class")
            pictures = gr.Gallery(label="Examples of this class", columns=6, height=200, object_fit="cover",
                                  preview=False, elem_id="teach-examples", elem_classes=["fd-thumbs"])
            others = gr.Markdown(elem_id="teach-other-examples")
            with gr.Row():
                example_choice = gr.Dropdown(choices=[], label="Example", scale=2, elem_id="teach-example")
                delete_example_button = gr.Button("Delete this example", scale=1)
                delete_class_button = gr.Button("Delete this class", variant="stop", scale=1)
            with gr.Tab("Upload"):
                uploads = gr.File(file_count="multiple", label="Images, recordings or text files",
                                  elem_id="teach-uploads")
                add_files_button = gr.Button("Add files to this class")
            with gr.Tab("Webcam"):
                snapshot = gr.Image(sources=["webcam"], type="pil", label="Snapshot", elem_id="teach-snapshot")
                add_snapshot_button = gr.Button("Add snapshot to this class")
            with gr.Tab("Microphone"):
                recording = gr.Audio(sources=["microphone"], type="filepath", label="Recording")
                add_recording_button = gr.Button("Add recording to this class")
            added = gr.Markdown(elem_id="teach-added")
        with gr.Column(scale=1):
            counts = gr.Markdown(counts_markdown(start) if _known_classes(start) else "No classes yet: name one and "
                                 "press **Add class**.", elem_id="teach-counts")
            folds = gr.Slider(2, 10, value=5, step=1, label="Cross-validation folds")
            train_button = gr.Button("Train", variant="primary")
    report = gr.Markdown(elem_id="teach-report")
    confusion = gr.Dataframe(label="Confusion matrix (rows: true class, columns: predicted)", interactive=False)
    gr.Markdown("### Try it")
    with gr.Row():
        head_choice = gr.Dropdown(choices=head_names(), label="Model", scale=2)
        refresh = gr.Button("Refresh", scale=1)
    with gr.Row():
        try_image = gr.Image(sources=["webcam", "upload"], type="pil", label="Image")
        try_audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Recording")
        try_text = gr.Textbox(label="Text", lines=4)
    try_button = gr.Button("Classify")
    scores = gr.Label(label="Classes")
    gr.Markdown("### Share")
    with gr.Row():
        export_button = gr.Button("Export the model as one file")
        exported = gr.File(label="Model file", interactive=False)
        imported = gr.File(label="Import a model file", file_types=[".onnx"])
    share_status = gr.Markdown()
    card = [pictures, others, example_choice]

    def refresh_classes(head_name, selected=None):
        try:
            names = list(class_counts(head_name))
            listing = counts_markdown(head_name)
        except FusionDeskError as exc:  # a half-typed or unusable model name: say so, keep the page working
            return gr.update(choices=[], value=None), str(exc), [], "", gr.update(choices=[], value=None)
        value = selected if selected in names else (names[0] if names else None)
        return gr.update(choices=names, value=value), listing, *class_view(head_name, value)

    def on_load():
        """A reload or a restart: back to the model being taught, its classes and examples."""
        head_name = last_workspace()
        return gr.update(value=head_name), *refresh_classes(head_name)

    def added_message(head_name, class_name, what):
        count = class_counts(head_name).get(class_name, 0)
        return f"Added {what} to **{class_name}** ({count} example{'s' if count != 1 else ''})."

    @readable_errors
    def on_add_class(head_name, class_name):
        added_name = add_class(head_name, class_name)
        remember_workspace(head_name)
        return (*refresh_classes(head_name, added_name), "", f"Added the class **{added_name}**: now add examples to it.")

    @readable_errors
    def on_add_files(head_name, class_name, paths):
        if not paths:
            raise FusionDeskError("Choose some files first.")
        count = add_files(head_name, class_name, [p if isinstance(p, str) else p.name for p in paths])
        remember_workspace(head_name)
        return (counts_markdown(head_name), None, added_message(head_name, class_name, f"{count} file(s)"),
                *class_view(head_name, class_name))

    @readable_errors
    def on_snapshot(head_name, class_name, image):
        add_snapshot(head_name, class_name, image)
        remember_workspace(head_name)
        return counts_markdown(head_name), added_message(head_name, class_name, "a snapshot"), *class_view(head_name, class_name)

    @readable_errors
    def on_recording(head_name, class_name, audio_path):
        add_recording(head_name, class_name, audio_path)
        remember_workspace(head_name)
        return (counts_markdown(head_name), None, added_message(head_name, class_name, "a recording"),
                *class_view(head_name, class_name))

    @readable_errors
    def on_delete_example(head_name, class_name, example_name):
        delete_example(head_name, class_name, example_name)
        return counts_markdown(head_name), f"Deleted {example_name} from **{class_name}**.", *class_view(head_name, class_name)

    @readable_errors
    def on_delete_class(head_name, class_name):
        if not class_name:
            raise FusionDeskError("Pick the class to delete first.")
        count = delete_class(head_name, class_name)
        return *refresh_classes(head_name), f"Deleted the class **{class_name}** and its {count} example(s)."

    def on_pick_picture(head_name, class_name, event: gr.SelectData):
        shown = [p.name for p in examples_of(head_name, class_name) if _is_picture(p)]
        return gr.update(value=shown[event.index]) if 0 <= event.index < len(shown) else gr.update()

    @readable_errors
    def on_train(head_name, fold_count, progress=gr.Progress()):
        from engine.teach import train_head

        try:
            ready = [c for c, n in class_counts(head_name).items() if n > 0]
        except FusionDeskError:
            ready = []
        if len(ready) < 2:
            raise FusionDeskError("To train, add at least two classes with a few examples each "
                                  f"(ready now: {len(ready)}{': ' + ready[0] if ready else ''}).")
        remember_workspace(head_name)
        result = train_head(workspace(head_name), head_name.strip(), folds=int(fold_count),
                            progress=lambda fraction, message: progress(fraction, desc=message))
        table = gr.update(value=confusion_rows(result), headers=["true \\ predicted", *result.classes])
        return report_markdown(result), table, gr.update(choices=head_names(), value=result.name)

    @readable_errors
    def on_try(head_name, image, audio_path, text):
        return try_head(head_name, image, audio_path, text)

    @readable_errors
    def on_export(head_name):
        from engine.teach import export_head

        if not head_name:
            raise FusionDeskError("Pick a model to export.")
        from desktop.ui import results_dir

        folder = results_dir(prefix="head-")
        return str(export_head(head_name, folder)), f"Exported **{head_name}**: download the file above."

    @readable_errors
    def on_import(upload):
        from engine.teach import import_head

        if upload is None:
            return gr.update(), ""
        head = import_head(upload if isinstance(upload, str) else upload.name, replace=False)
        return gr.update(choices=head_names(), value=head.name), f"Imported **{head.name}** ({', '.join(head.classes)})."

    # A refused step (no snapshot yet, an empty class name) is said once, in the message under the card; the
    # other outputs stay as they were instead of each showing its own "Error" badge.
    at = {"show_progress_on": [added]}
    add_class_button.click(on_add_class, [name, new_class], [current, counts, *card, new_class, added], **at)
    new_class.submit(on_add_class, [name, new_class], [current, counts, *card, new_class, added], **at)
    name.change(refresh_classes, [name], [current, counts, *card])
    current.change(class_view, [name, current], card)
    pictures.select(on_pick_picture, [name, current], [example_choice])
    add_files_button.click(on_add_files, [name, current, uploads], [counts, uploads, added, *card], **at)
    add_snapshot_button.click(on_snapshot, [name, current, snapshot], [counts, added, *card], **at)
    add_recording_button.click(on_recording, [name, current, recording], [counts, recording, added, *card], **at)
    delete_example_button.click(on_delete_example, [name, current, example_choice], [counts, added, *card], **at)
    delete_class_button.click(on_delete_class, [name, current], [current, counts, *card, added], **at)
    train_button.click(on_train, [name, folds], [report, confusion, head_choice])
    refresh.click(lambda: gr.update(choices=head_names()), None, [head_choice])
    try_button.click(on_try, [head_choice, try_image, try_audio, try_text], [scores])
    export_button.click(on_export, [head_choice], [exported, share_status])
    imported.upload(on_import, [imported], [head_choice, share_status])
    if app is not None:
        app.load(on_load, None, [name, current, counts, *card])
