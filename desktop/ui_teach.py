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
        raise FusionDeskError("pick (or add) a class first")
    folder = workspace(head_name) / class_name
    if not folder.is_dir():
        raise FusionDeskError(f"there is no class {class_name!r} yet: add it first")
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
        raise FusionDeskError("no snapshot yet: take one with the camera first")
    target = _unique(_class_dir(head_name, class_name), "snapshot", ".jpg")
    image.convert("RGB").save(target, quality=92)
    return target


def add_recording(head_name: str, class_name: str, audio_path: str | None) -> Path:
    if not audio_path:
        raise FusionDeskError("no recording yet: record one with the microphone first")
    source = Path(audio_path)
    target = _unique(_class_dir(head_name, class_name), "recording", source.suffix.lower() or ".wav")
    shutil.copyfile(source, target)
    return target


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
    lines = [f"### Head **{report.name}**: {report.chosen}, cross-validated accuracy {report.accuracy:.0%}",
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
        raise FusionDeskError("pick a head to try (train one, or import a head file)")
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
        raise FusionDeskError("give the head something to look at, listen to or read")
    (result,) = classify_with_head([item], head, runtime)
    if isinstance(result, InputFileError):
        raise FusionDeskError(result.problem)
    return {entry["label"]: entry["score"] for entry in result}


def teach_tab() -> None:
    """The Teach tab's components and events, inside the current gr.Blocks / gr.Tab context."""
    from desktop.ui import readable_errors

    gr.Markdown("Teach FusionDesk your own categories from a handful of examples per class: photos, webcam "
                "snapshots, recordings, texts, or a mix. Everything stays on this computer.")
    with gr.Row():
        name = gr.Textbox(value="my-head", label="Head name", scale=2)
        new_class = gr.Textbox(label="New class", placeholder="e.g. my cat", scale=2)
        add_class_button = gr.Button("Add class", scale=1)
    with gr.Row():
        with gr.Column(scale=2):
            # Classes already collected for the default head name (e.g. in an earlier session) are offered at once.
            known = _known_classes("my-head")
            current = gr.Dropdown(choices=known, value=known[0] if known else None, label="Add examples to class",
                                  allow_custom_value=False)
            with gr.Tab("Upload"):
                uploads = gr.File(file_count="multiple", label="Images, recordings or text files")
                add_files_button = gr.Button("Add files")
            with gr.Tab("Webcam"):
                snapshot = gr.Image(sources=["webcam"], type="pil", label="Snapshot")
                add_snapshot_button = gr.Button("Add snapshot")
            with gr.Tab("Microphone"):
                recording = gr.Audio(sources=["microphone"], type="filepath", label="Recording")
                add_recording_button = gr.Button("Add recording")
        with gr.Column(scale=1):
            counts = gr.Markdown(lambda: counts_markdown("my-head"))  # a callable: read again at each page load
            folds = gr.Slider(2, 10, value=5, step=1, label="Cross-validation folds")
            train_button = gr.Button("Train", variant="primary")
    report = gr.Markdown()
    confusion = gr.Dataframe(label="Confusion matrix (rows: true class, columns: predicted)", interactive=False)
    gr.Markdown("### Try it")
    with gr.Row():
        head_choice = gr.Dropdown(choices=head_names(), label="Head", scale=2)
        refresh = gr.Button("Refresh", scale=1)
    with gr.Row():
        try_image = gr.Image(sources=["webcam", "upload"], type="pil", label="Image")
        try_audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Recording")
        try_text = gr.Textbox(label="Text", lines=4)
    try_button = gr.Button("Classify")
    scores = gr.Label(label="Classes")
    gr.Markdown("### Share")
    with gr.Row():
        export_button = gr.Button("Export the head as one file")
        exported = gr.File(label="Head file", interactive=False)
        imported = gr.File(label="Import a head file", file_types=[".onnx"])
    share_status = gr.Markdown()

    def refresh_classes(head_name, selected=None):
        try:
            names = list(class_counts(head_name))
            listing = counts_markdown(head_name)
        except FusionDeskError as exc:  # a half-typed or unusable head name: say so, keep the page working
            return gr.update(choices=[], value=None), str(exc)
        value = selected if selected in names else (names[0] if names else None)
        return gr.update(choices=names, value=value), listing

    @readable_errors
    def on_add_class(head_name, class_name):
        added = add_class(head_name, class_name)
        return (*refresh_classes(head_name, added), "")

    @readable_errors
    def on_add_files(head_name, class_name, paths):
        if not paths:
            raise FusionDeskError("choose some files first")
        add_files(head_name, class_name, [p if isinstance(p, str) else p.name for p in paths])
        return counts_markdown(head_name), None

    @readable_errors
    def on_snapshot(head_name, class_name, image):
        add_snapshot(head_name, class_name, image)
        return counts_markdown(head_name)

    @readable_errors
    def on_recording(head_name, class_name, audio_path):
        add_recording(head_name, class_name, audio_path)
        return counts_markdown(head_name), None

    @readable_errors
    def on_train(head_name, fold_count, progress=gr.Progress()):
        from engine.teach import train_head

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
            raise FusionDeskError("pick a head to export")
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

    add_class_button.click(on_add_class, [name, new_class], [current, counts, new_class])
    name.change(refresh_classes, [name], [current, counts])
    add_files_button.click(on_add_files, [name, current, uploads], [counts, uploads])
    add_snapshot_button.click(on_snapshot, [name, current, snapshot], [counts])
    add_recording_button.click(on_recording, [name, current, recording], [counts, recording])
    train_button.click(on_train, [name, folds], [report, confusion, head_choice])
    refresh.click(lambda: gr.update(choices=head_names()), None, [head_choice])
    try_button.click(on_try, [head_choice, try_image, try_audio, try_text], [scores])
    export_button.click(on_export, [head_choice], [exported, share_status])
    imported.upload(on_import, [imported], [head_choice, share_status])
