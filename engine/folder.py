"""Batch folder mode: walk a folder -> decode -> encode -> append one result row per file.

    summary = run_batch("photos/", "results.jsonl", BatchOptions(tasks=("classify", "read")))

The pipeline reads top to bottom:
- `walk` lists the folder (sorted, optionally recursive, include/exclude globs) and decides up front what
  happens to odd entries: hidden files, links leaving the folder, pipes and devices, unknown types are
  *skipped with a reason*; empty and unreadable files become *error rows*. Nothing is silently dropped.
- `perceive_stream` (engine.pipeline) decodes files on a thread pool, a few batches ahead of the models, and
  perceives each batch at once, following the perception plan (engine.plan) as every other surface does.
  Decoded data lives only while its batch is in flight, so memory stays flat however many files there are.
- `ResultsFile` appends each finished row and flushes it, so a killed run loses at most the files in
  flight; on resume, rows already there (same relative path, size and mtime) are not done again.

Beyond the perceptions, a batch can `detect` objects and `segment` people (engine.scene; pictures written
under --masks-dir, mirroring subfolders), `translate` the text read, heard or given (engine.translate), and
classify with a head the person taught (engine.teach) instead of label names.

Input files are only ever opened for reading. The index (engine.index) reuses `walk` and the same stream.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import queue
import stat
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .errors import FusionDeskError, InputFileError, StorageError
from .fileio import storage_error
from .filetypes import modality_of, text_name
from .perceive import Perceiver, Perception, PerceptionOptions, guard_file
from .pipeline import Decoded, Done, FileEntry, fused_vectors, perceive_stream
from .runtime import Runtime, get_runtime
from .scene import DETECTOR_ID, FOLDER_TASK_COLUMNS, FOLDER_TASK_FITS, SEGMENT_MODES, SEGMENTER_ID

TASKS = ("classify", "read", "transcribe", "embed", "detect", "segment", "translate")
# Which modalities a task applies to: `--tasks read` on a folder of recordings has nothing to do.
TASK_FITS = {
    "classify": {"image", "audio", "text"},
    "read": {"image"},
    "transcribe": {"audio"},
    "embed": {"image", "audio", "text"},
    **FOLDER_TASK_FITS,
    "translate": {"image", "audio", "text"},  # what was read, heard or written
}
# Without --tasks every file gets what fits its type; vectors are left out (384 numbers a row are for the index).
DEFAULT_TASKS = ("classify", "read", "transcribe")
BASE_COLUMNS = ["file", "modality", "status", "error", "size", "mtime"]
# CSV has fixed columns (rows are appended one at a time), so each task's fields are listed here.
TASK_COLUMNS = {
    "classify": ["classify.label_set", "classify.labels", "classify.evidence.kind", "classify.evidence.concepts",
                 "classify.evidence.objects", "classify.evidence.person_fraction", "classify.evidence.ocr_text",
                 "classify.evidence.ocr_rejected", "classify.evidence.transcript", "classify.evidence.text"],
    "read": ["read.text", "read.lines", "read.rejected_lines"],
    "transcribe": ["transcribe.text", "transcribe.language", "transcribe.duration", "transcribe.model",
                   "transcribe.task", "transcribe.segments"],
    "embed": ["embed.dim", "embed.vector", "embed.note"],
    **FOLDER_TASK_COLUMNS,
    "translate": ["translate.text", "translate.source", "translate.target", "translate.from", "translate.note"],
}
HEAD_COLUMN = "classify.head"  # only in runs with --head, so other runs' CSV columns stay as they were
# Where each modality's translatable text comes from, named as in the row's translate.from.
TRANSLATE_FROM = {"image": "ocr", "audio": "transcript", "text": "text"}


# ---------------------------------------------------------------------------------------------------- walk


@dataclass(frozen=True)
class Skipped:
    rel: str
    reason: str


def _matches(rel: str, patterns: Iterable[str]) -> bool:
    """Globs match the relative path or the bare name, case-insensitively (*.jpg finds IMG_1.JPG in subfolders)."""
    rel_l = rel.lower()
    name_l = rel_l.rsplit("/", 1)[-1]
    return any(fnmatchcase(rel_l, p.lower()) or fnmatchcase(name_l, p.lower()) for p in patterns)


def _is_hidden(entry: os.DirEntry) -> bool:
    if entry.name.startswith("."):
        return True
    attributes = getattr(entry.stat(follow_symlinks=False), "st_file_attributes", 0)  # Windows only
    return bool(attributes & getattr(stat, "FILE_ATTRIBUTE_HIDDEN", 0))


def _readable(path: Path) -> bool:
    """Whether we may read the file: asked of its metadata, not by reading it (a resumed run over 100,000 files
    that are no longer in the page cache spent 8 of its 18 s reading one byte of each)."""
    return os.access(path, os.R_OK)


def walk(
    root: Path | str,
    recursive: bool = True,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    ignore: Iterable[Path] = (),
    include_hidden: bool = False,
) -> Iterator[FileEntry | Skipped]:
    """Every entry under `root`, in sorted order, as a FileEntry to process or a Skipped with its reason.

    `ignore`: paths never listed (the run's own results file and transcripts folder, when inside root).
    Folders matching an exclude glob are not entered. Symbolic links are processed only when they point
    to a file inside root; links to folders are not followed (loops, and the same file twice).
    """
    root = Path(root)
    real_root = root.resolve()
    include, exclude = list(include), list(exclude)
    ignored = {Path(p).resolve() for p in ignore}
    # Only entries with one of these names are resolved (resolving every path was 2/3 of listing 100,000 files).
    ignored_names = {Path(p).name for p in ignore} | {p.name for p in ignored}
    if not root.is_dir():
        raise InputFileError(root, "is not a folder")

    def visit(folder: Path, prefix: str) -> Iterator[FileEntry | Skipped | tuple[Path, str]]:
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            yield Skipped(prefix.rstrip("/") or ".", f"cannot list the folder ({exc.strerror or exc})")
            return
        for entry in entries:
            rel = prefix + text_name(entry.name)  # results, the index and messages carry the name as text
            path = Path(entry.path)
            if entry.name in ignored_names and not entry.is_symlink() and path.resolve() in ignored:
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            if include and not is_dir and not _matches(rel, include):
                continue  # not asked for: silence, or every photo would be "skipped" by --include '*.wav'
            if _is_hidden(entry) and not include_hidden:
                yield Skipped(rel, "hidden folder (not searched)" if is_dir else "hidden file")
                continue
            if entry.is_symlink():
                found = _follow_link(path, real_root)
                if isinstance(found, str):
                    yield Skipped(rel, found)
                    continue
            if is_dir:
                if _matches(rel, exclude) or _matches(rel + "/", exclude):
                    yield Skipped(rel, "folder excluded by --exclude")
                elif recursive:
                    yield path, rel + "/"  # entered by the loop below, after this folder's earlier entries
                else:
                    yield Skipped(rel, "subfolder (not recursive)")
                continue
            if exclude and _matches(rel, exclude):
                yield Skipped(rel, "excluded by --exclude")
                continue
            yield _file_entry(path, rel, entry)

    # Depth first, in sorted order, with a stack of listings rather than nested generators: a folder nested 1500
    # deep (what PATH_MAX allows) would exceed Python's recursion limit.
    stack = [visit(root, "")]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
        elif isinstance(item, tuple):
            stack.append(visit(*item))
        else:
            yield item


def _follow_link(path: Path, real_root: Path) -> str | None:
    """None when a symbolic link may be processed as a file, else the reason it is skipped."""
    try:
        target = path.resolve(strict=True)
    except RuntimeError:  # Python 3.11-3.12 say a loop this way, later ones with ELOOP
        return "symbolic link loop"
    except OSError as exc:
        return "symbolic link loop" if exc.errno == errno.ELOOP else "broken symbolic link"
    if not target.is_relative_to(real_root):
        return "symbolic link to outside the folder"
    if target.is_dir():
        return "symbolic link to a folder (not followed)"
    return None


def _file_entry(path: Path, rel: str, listed: os.DirEntry | None = None) -> FileEntry | Skipped:
    try:
        info = listed.stat() if listed is not None else path.stat()  # the listing's own stat, when there is one
    except OSError as exc:
        return FileEntry(path, rel, 0, 0.0, None, f"cannot read the file ({exc.strerror or exc})")
    if not stat.S_ISREG(info.st_mode):
        return Skipped(rel, "not a regular file (a pipe, socket or device)")
    entry = dict(path=path, rel=rel, size=info.st_size, mtime=info.st_mtime)
    if info.st_size == 0:
        return FileEntry(**entry, modality=None, problem="the file is empty")
    try:
        modality = modality_of(path)
    except InputFileError as exc:
        if _readable(path):
            return Skipped(rel, exc.problem)  # a type we do not handle is not a failure of the run
        return FileEntry(**entry, modality=None, problem=exc.problem)
    if not _readable(path):
        return FileEntry(**entry, modality=modality, problem="cannot read the file (permission denied?)")
    return FileEntry(**entry, modality=modality)


# ---------------------------------------------------------------------------------------------------- rows


@dataclass
class BatchOptions:
    tasks: tuple[str, ...] | None = None  # None: DEFAULT_TASKS, each where it fits
    labels: list[str] = field(default_factory=list)
    recursive: bool = True
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    workers: int = 4
    resume: bool = True
    transcripts_dir: Path | None = None
    batch_size: int = 16
    top_k: int = 5
    language: str = "en"
    include_hidden: bool = False
    head: str | None = None  # a trained head's name (or .onnx path): its classes replace labels in classify
    target: str = "en"  # translate's target language
    threshold: float | None = None  # detect's minimum score; None: the detector's own default
    masks_dir: Path | None = None  # segment's pictures, mirroring subfolders; None: rows only
    segment_mode: str = "mask"  # mask | cutout | blur
    index: bool = True  # also add each file to the folder's search index as it is processed (engine.index)

    def task_list(self) -> tuple[str, ...]:
        tasks = tuple(self.tasks or DEFAULT_TASKS)
        unknown = [t for t in tasks if t not in TASKS]
        if unknown:
            raise FusionDeskError(f"unknown task {', '.join(unknown)}: choose from {', '.join(TASKS)}")
        return tasks

    def speech_model(self) -> str:
        from .tasks import speech_model_for

        return speech_model_for(self.language)

    def perception_options(self, head=None, runtime: Runtime | None = None) -> PerceptionOptions:
        """What to perceive, from the perception plan (engine.plan) for what this run's tasks use; `head`
        (engine.teach.Head): also everything that head reads."""
        from .plan import options_for

        tasks = self.task_list()
        base = PerceptionOptions(top_k=max(5, self.top_k), speech_model=self.speech_model(), language=self.language,
                                 ocr=bool({"classify", "read", "embed", "translate"} & set(tasks)))
        # Segmentation looks for people inside the detector's person boxes (its pictures are made at full size
        # by the segment task itself); `embed` vectors are for search, which uses what is in a photo.
        options = options_for(self.labels if "classify" in tasks else (), base=base, runtime=runtime,
                              read="read" in tasks or "translate" in tasks,
                              boxes="detect" in tasks or "segment" in tasks, search="embed" in tasks or self.index)
        if head is not None and "classify" in tasks:
            wants_text = options.ocr
            options = head.perception_options(options)
            if options.ocr == "never":
                options.ocr = wants_text
        return options


def build_row(entry: FileEntry, perceived: Perception | InputFileError, vector: np.ndarray | None,
              tasks: tuple[str, ...], options: BatchOptions, runtime: Runtime,
              batch_results: dict[str, Any] | None = None, speech_model: str | None = None) -> dict[str, Any]:
    """One result row: the task results under each task's name, with the keys of the single-file commands.

    batch_results: {task: result} worked out for the whole batch at once (a head's classes, translations,
    segmentation); an InputFileError among them makes this file's row an error row."""
    row: dict[str, Any] = {"file": entry.rel, "modality": entry.modality, "status": "ok", "size": entry.size,
                           "mtime": entry.mtime}
    batch_results = batch_results or {}
    failed = next((r for r in batch_results.values() if isinstance(r, InputFileError)), None)
    if isinstance(perceived, InputFileError) or failed is not None:
        row["status"], row["error"] = "error", (failed or perceived).problem
        return row
    for task in tasks:
        if entry.modality in TASK_FITS[task]:
            row[task] = batch_results[task] if task in batch_results else \
                _task_result(task, perceived, vector, options, runtime, speech_model)
    return row


def _task_result(task: str, p: Perception, vector: np.ndarray | None, options: BatchOptions, runtime: Runtime,
                 speech_model: str | None = None):
    if task == "detect":  # the perceiver's own detections, at the default threshold, in the file's pixels
        return {"objects": [d.to_json() for d in p.objects or []]}
    if task == "classify":
        from .tasks import classify_record

        record = classify_record(p.file, p, options.labels, runtime, options.top_k)
        return {key: record[key] for key in ("label_set", "labels", "evidence")}
    if task == "read":
        from .tasks import read_record

        return read_record(p.ocr)
    if task == "transcribe":
        from .tasks import transcript_record

        return transcript_record(p.transcript, speech_model or options.speech_model())
    if vector is None:
        return {"dim": 0, "vector": None, "note": "nothing to embed (no speech, text or recognisable content found)"}
    return {"dim": int(vector.shape[0]), "vector": [round(float(v), 6) for v in vector]}


def flatten(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"read": {"text": ..}} -> {"read.text": ..}; lists become JSON text (one spreadsheet cell)."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        name = prefix + key
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, list):
            flat[name] = json.dumps(value, ensure_ascii=False)
        else:
            flat[name] = value
    return flat


OUT_ELSEWHERE = "choose another --out file"  # what to do when the results file's place cannot be written


def _json_rows(text: str) -> Iterator[dict[str, Any]]:
    # Rows end at "\n" only: splitlines() would also cut at U+2028 or U+0085, which JSON leaves raw in a name.
    return (json.loads(line) for line in text.split("\n") if line.strip())


class ResultsFile:
    """JSONL or CSV results, appended one row at a time with one write() and flushed.

    A row is a single write on an O_APPEND descriptor, so a killed process leaves whole rows; a write the file
    system cuts short (a full disk) is taken back to the last whole row and reported as a StorageError naming
    the file and the free space; a torn last row all the same (a power cut) is cut off on resume rather than
    parsed, in CSV at the last newline outside quotes (a cell may hold newlines).
    """

    def __init__(self, path: Path | str, columns: list[str], resume: bool = True):
        self.path = Path(path)
        self.format = "csv" if self.path.suffix.lower() == ".csv" else "jsonl"
        self.columns = columns
        self.done: dict[str, tuple[int, float]] = {}  # rel -> (size, mtime) of its latest row
        self._fd = -1
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if resume and self.path.is_file() and self.path.stat().st_size > 0:
                self._load_existing()
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            else:
                if self.path.is_file() and self.path.stat().st_size > 0 and not self._looks_like_results():
                    raise FusionDeskError(f"{self.path} exists and is not a FusionDesk results file: refusing to "
                                          "overwrite it; choose another --out file")
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                if self.format == "csv":
                    self._write(self._csv_line(dict(zip(columns, columns))))
        except OSError as exc:
            self.close_quietly()
            raise storage_error(exc, exc.filename or self.path, OUT_ELSEWHERE) from None
        except BaseException:
            self.close_quietly()
            raise

    def is_done(self, entry: FileEntry) -> bool:
        return self.done.get(entry.rel) == (entry.size, entry.mtime)

    def append(self, row: dict[str, Any]) -> None:
        if self.format == "csv":
            line = self._csv_line(flatten(row))
        else:
            line = json.dumps(row, ensure_ascii=False) + "\n"
        self._write(line)
        self.done[row["file"]] = (row["size"], row["mtime"])

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                os.fsync(fd)
            except OSError as exc:
                raise storage_error(exc, self.path, OUT_ELSEWHERE) from None
            finally:
                os.close(fd)

    def close_quietly(self) -> None:
        """Close without a word: another error is already on its way to the person."""
        try:
            self.close()
        except FusionDeskError:
            pass

    def __enter__(self) -> "ResultsFile":
        return self

    def __exit__(self, kind, *exc) -> None:
        if kind is None:
            self.close()
        else:
            self.close_quietly()

    def _write(self, text: str) -> None:
        data = text.encode("utf-8")
        start = os.fstat(self._fd).st_size  # where this row begins: the descriptor appends
        try:
            written = 0
            while written < len(data):  # more than one write only when the file system cuts one short
                count = os.write(self._fd, data[written:])
                if count == 0:
                    raise OSError(errno.EIO, "the file system took no bytes")
                written += count
        except OSError as exc:
            try:
                os.ftruncate(self._fd, start)  # no half row: the file ends with the last whole one
            except OSError:
                pass  # then a resume cuts it
            raise storage_error(exc, self.path, OUT_ELSEWHERE) from None

    def _csv_line(self, flat: dict[str, Any]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(["" if flat.get(c) is None else flat.get(c) for c in self.columns])
        return buffer.getvalue()

    def _looks_like_results(self) -> bool:
        """Whether an existing file was written by a batch run (its first line), before --no-resume empties it."""
        with open(self.path, "rb") as handle:
            first = handle.readline().decode("utf-8", errors="replace").strip()
        if self.format == "csv":
            return first.split(",")[:1] == ["file"]
        try:
            row = json.loads(first)
        except ValueError:
            return False
        return isinstance(row, dict) and "file" in row and "status" in row

    def _load_existing(self) -> None:
        data = self.path.read_bytes()
        end = self._whole_rows_end(data)
        text = data[:end].decode("utf-8", errors="replace")
        if self.format == "csv":
            reader = csv.DictReader(io.StringIO(text))
            if reader.fieldnames is not None and list(reader.fieldnames) != self.columns:
                raise FusionDeskError(
                    f"{self.path} was written with other columns (other --tasks, or an older FusionDesk); choose "
                    "another --out file or start over with --no-resume")
            rows: Iterable[dict[str, Any]] = reader
        else:
            rows = _json_rows(text)
        try:
            for row in rows:
                self.done[str(row["file"])] = (int(row["size"]), float(row["mtime"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise FusionDeskError(f"{self.path} is not a FusionDesk results file ({exc}); choose another --out "
                                  "file or start over with --no-resume") from None
        # Only now that the file is known to be ours: cut the torn tail of a killed write (that file is done again).
        if end < len(data):
            os.truncate(self.path, end)

    def _whole_rows_end(self, data: bytes) -> int:
        """Where the last whole row ends. JSON escapes newlines, so that is after the last newline; a CSV cell
        may hold newlines inside quotes, so there it is after the last newline outside quotes (a quote inside
        a cell is doubled, so counting quotes tells inside from outside)."""
        if self.format != "csv":
            return data.rfind(b"\n") + 1
        end = position = 0
        inside = False
        for piece in data.split(b"\n")[:-1]:
            position += len(piece) + 1
            inside ^= piece.count(b'"') % 2 == 1
            if not inside:
                end = position
        return end


# ---------------------------------------------------------------------------------------------------- run


@dataclass
class Progress:
    """Where a run stands, for a progress bar or the UI. `rate` in files/s, `eta` in seconds (None: unknown)."""

    done: int = 0
    total: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    resumed: int = 0
    elapsed: float = 0.0
    current: str = ""
    last_row: dict[str, Any] | None = None
    workers: dict[str, int] = field(default_factory=dict)  # on a cluster: files each worker has done

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate > 0 and self.total >= self.done else None


@dataclass
class BatchSummary:
    ok: int = 0
    failed: int = 0
    skipped: int = 0  # by the walk (hidden, unknown type, ...) or because no requested task fits
    resumed: int = 0  # already in the results file from an earlier run
    seconds: float = 0.0
    skip_reasons: list[Skipped] = field(default_factory=list)
    results: str = ""

    @property
    def exit_ok(self) -> bool:
        return self.failed == 0

    def to_dict(self) -> dict[str, Any]:
        reasons = Counter(s.reason for s in self.skip_reasons)
        return {"ok": self.ok, "failed": self.failed, "skipped": self.skipped, "resumed": self.resumed,
                "seconds": round(self.seconds, 2), "skip_reasons": dict(reasons), "results": self.results}


def columns_for(tasks: tuple[str, ...], head: bool = False) -> list[str]:
    columns = [c for task in TASKS if task in tasks for c in TASK_COLUMNS[task]]
    if head and "classify" in tasks:
        columns.insert(columns.index("classify.labels"), HEAD_COLUMN)
    return BASE_COLUMNS + columns


class BatchWork:
    """A batch run's per-file work: decode -> perception plan -> models -> one result row per file, a batch at a
    time. BatchRun runs it in its own process; on a cluster (engine.cluster) every worker process holds one made
    from the same options and bundle, so a file gets the same row on either path. What it writes itself is only
    segment's pictures (under --masks-dir); the results, transcripts and index are the run's (one writer)."""

    def __init__(self, options: BatchOptions, runtime: Runtime, head=None):
        self.options = options
        self.runtime = runtime
        self.tasks = options.task_list()
        self.head = head
        perception = options.perception_options(head, runtime)
        self.speech_model = perception.speech_model
        self.perceiver = Perceiver(runtime, perception, decode_workers=options.workers)
        # (subfolder, stem) of the images whose name another image of the folder shares: b.jpg.mask.png
        self.clashing: set[tuple[str, str]] = set()
        self._image_results: dict[str, dict[str, Any]] = {}  # rel -> {task: result} from _with_images

    def spec(self):
        """What a cluster worker needs to make the same BatchWork (engine.cluster.WorkSpec)."""
        from .cluster import WorkSpec

        head = str(self.head.path) if self.head is not None and self.head.path else None
        return WorkSpec.of("batch", self.runtime, self.options, head=head, clashing=frozenset(self.clashing))

    def process(self, entries: Iterable[FileEntry], stop: threading.Event | None = None) -> Iterator[list[Done]]:
        """Batches of finished files, in the entries' order."""
        wants_vectors = "embed" in self.tasks or self.options.index
        for batch in perceive_stream(entries, self.perceiver, self.options.workers, self.options.batch_size,
                                     stop=stop, with_images=self._with_images):
            perceptions = [p for _, p in batch]
            vectors = fused_vectors(perceptions, self.runtime) if wants_vectors else [None] * len(batch)
            yield [Done(entry, perceived, vector,
                        build_row(entry, perceived, vector, self.tasks, self.options, self.runtime, extra,
                                  self.speech_model))
                   for (entry, perceived), vector, extra in zip(batch, vectors, self._batch_results(batch))]

    # -- results worked out a batch at a time -----------------------------------------------------------------

    def _batch_results(self, batch: list[tuple[FileEntry, Perception | InputFileError]]) -> list[dict[str, Any]]:
        """Per file, {task: result} for the tasks that run on the whole batch at once."""
        extra: list[dict[str, Any]] = [{} for _ in batch]

        def fitting(task: str) -> list[int]:
            return [i for i, (entry, p) in enumerate(batch)
                    if isinstance(p, Perception) and task in self.tasks and entry.modality in TASK_FITS[task]]

        if self.head is not None:
            self._head_results(batch, fitting("classify"), extra)
        if fitting("translate"):
            self._translations(batch, fitting("translate"), extra)
        for i, (entry, _) in enumerate(batch):
            extra[i].update(self._image_results.pop(entry.rel, {}))
        return extra

    def _with_images(self, decoded: list[Decoded], perceived: list[Perception | InputFileError]) -> None:
        """Detection at the asked threshold and segmentation, which need the pictures, kept until the rows."""
        todo = [(d, p) for d, p in zip(decoded, perceived) if isinstance(p, Perception) and d.entry.modality == "image"]
        if not todo:
            return
        if "detect" in self.tasks and self.options.threshold is not None:
            from .scene import detect, in_file_pixels

            found = detect([d.payload.image for d, _ in todo], score_threshold=self.options.threshold,
                           runtime=self.runtime)
            for (d, _), detections in zip(todo, found):  # boxes from the decoded (maybe reduced) picture
                self._image_results.setdefault(d.entry.rel, {})["detect"] = {
                    "objects": [item.to_json() for item in in_file_pixels(detections, d.payload.scale)]}
        if "segment" in self.tasks:
            for d, p in todo:
                self._image_results.setdefault(d.entry.rel, {})["segment"] = guard_file(
                    d.entry.path, lambda d=d, p=p: self._segment(d, p))

    def _head_results(self, batch, indices: list[int], extra: list[dict[str, Any]]) -> None:
        from .teach import classify_with_head

        perceptions = [batch[i][1] for i in indices]
        scored = classify_with_head(perceptions, self.head, self.runtime, self.options.top_k) if indices else []
        for i, perceived, labels in zip(indices, perceptions, scored):
            extra[i]["classify"] = labels if isinstance(labels, InputFileError) else \
                {"head": self.head.name, "labels": labels, "evidence": perceived.evidence()}

    def _translations(self, batch, indices: list[int], extra: list[dict[str, Any]]) -> None:
        """The text each file yields (read, heard or written), translated in one call for the whole batch."""
        from .translate import LANGUAGES, detect_language, translate

        target = self.options.target
        texts = {i: _translatable_text(batch[i][1]) for i in indices}
        worded = [i for i in indices if texts[i].strip()]
        done = dict(zip(worded, translate([texts[i] for i in worded], target, runtime=self.runtime)))
        for i in indices:
            result: dict[str, Any] = {"text": "", "source": None, "target": target,
                                      "from": TRANSLATE_FROM[batch[i][0].modality]}
            if i not in done:
                result["note"] = "no text to translate"
            else:
                result.update(text=done[i].text, source=done[i].source)
                if done[i].source == target:
                    result["note"] = f"already in {LANGUAGES[target]}"
                elif detect_language(texts[i])[0] is None:  # too few words to tell: translate() took a guess
                    result["note"] = f"language not recognised; translated as {LANGUAGES[done[i].source]}"
            extra[i]["translate"] = result

    def _segment(self, decoded: Decoded, perceived: Perception) -> dict[str, Any]:
        """The person mask of one photo, its picture written under --masks-dir.

        A photo decoded reduced is decoded again at full size, one at a time: the mask, cutout or blurred
        picture a person gets back is the size of their photo, while the batches in flight hold reduced images.
        People are looked for inside the person boxes the perception already found (in the file's pixels)."""
        from .imaging import load_image
        from .scene import folder_results

        entry, picture = decoded.entry, decoded.payload
        image = picture.image if picture.scale == (1.0, 1.0) else load_image(entry.path)
        rel = entry.rel
        if (str(Path(rel).parent), Path(rel).stem) in self.clashing:
            rel += ".png"  # b.jpg and b.png side by side: b.jpg.mask.png and b.png.mask.png
        try:
            found = folder_results([image], [rel], ("segment",), self.options.masks_dir, self.runtime,
                                   self.options.segment_mode, detections=[perceived.objects or []])
        except OSError as exc:  # writing the picture: a full disk stops the run (not every file's error)
            raise storage_error(exc, exc.filename or self.options.masks_dir, "choose another --masks-dir") from None
        return found[0]["segment"]


class BatchRun:
    """One batch run over a folder; `run()` once, then `watch()` to keep going as files arrive."""

    def __init__(self, in_dir: Path | str, out: Path | str, options: BatchOptions | None = None,
                 runtime: Runtime | None = None, progress: Callable[[Progress], None] | None = None,
                 stop: threading.Event | None = None):
        self.in_dir = Path(in_dir)
        self.out = Path(out)
        self.options = options or BatchOptions()
        self.runtime = runtime or get_runtime()
        self.progress_callback = progress
        self.stop = stop or threading.Event()
        self.tasks = self.options.task_list()
        if not self.in_dir.is_dir():
            raise FusionDeskError(f"{self.in_dir} is not a folder")
        for option, folder in (("--transcripts-dir", self.options.transcripts_dir),
                               ("--masks-dir", self.options.masks_dir)):
            if folder is not None and Path(folder).resolve() == self.in_dir.resolve():
                raise FusionDeskError(f"{option} must not be the input folder itself (inputs are never "
                                      "overwritten): choose another folder, or a subfolder")
        if self.out.suffix.lower() not in (".jsonl", ".csv"):
            raise FusionDeskError(f"--out {self.out}: give a .jsonl or .csv file name")
        if self.out.exists() and not self.out.is_file():
            raise FusionDeskError(f"--out {self.out} is a folder: give a .jsonl or .csv file name")
        # Everything that would fail on every file is refused here, once, before any row is written.
        self.head = self._load_head()
        self._check_scene_and_translation()
        self.columns = columns_for(self.tasks, head=self.head is not None)
        self.work = BatchWork(self.options, self.runtime, self.head)
        self.summary = BatchSummary(results=str(self.out))
        self._check_out_writable()
        if self.options.index:
            from .index import FolderIndex

            # Opened here so that a data folder that cannot be written is refused before any work.
            try:
                FolderIndex(self.in_dir).close()
            except StorageError as exc:
                raise exc.with_advice("(or leave the search index out: --no-index)") from None
        self._names: dict[str, Counter] = {"audio": Counter(), "image": Counter()}  # (subfolder, stem) -> files
        self.cluster = None  # engine.cluster.Cluster: the per-file work runs on its workers (use_cluster)

    def use_cluster(self, cluster) -> None:
        """Run the per-file work on a cluster's workers (engine.cluster); this process stays the one writer of
        the results file, the transcripts and the index."""
        self.cluster = cluster

    def _check_out_writable(self) -> None:
        """A results file that cannot be written (a read-only or not writable folder) is refused now, not after
        the first batch. Nothing is left behind: a file made to find out is removed again."""
        existed = self.out.exists()
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
        except OSError as exc:
            raise storage_error(exc, exc.filename or self.out, OUT_ELSEWHERE) from None
        if not existed:
            self.out.unlink(missing_ok=True)

    def _load_head(self):
        if not self.options.head:
            return None
        if "classify" not in self.tasks:
            raise FusionDeskError("--head gives classify its classes: add classify to --tasks")
        from .teach import load_head

        head = load_head(self.options.head, self.runtime)
        wanted = self.options.speech_model()
        if head.speech_model and head.speech_model != wanted and head.speech_model.endswith(".en") \
                and self.options.language != "en":
            raise FusionDeskError(f"head {head.name!r} hears recordings through {head.speech_model} (English only), "
                                  f"so --language {self.options.language} cannot be used with it")
        return head

    def _check_scene_and_translation(self) -> None:
        bundle = self.runtime.bundle
        for task, model_id in (("detect", DETECTOR_ID), ("segment", SEGMENTER_ID)):
            if task in self.tasks and model_id not in bundle:
                raise FusionDeskError(f"--tasks {task} needs the {model_id} model, which this model bundle does not have")
        if "segment" in self.tasks and self.options.segment_mode not in SEGMENT_MODES:
            raise FusionDeskError(f"--segment-mode {self.options.segment_mode}: choose one of {', '.join(SEGMENT_MODES)}")
        if "translate" in self.tasks:
            from .translate import LANGUAGES, TranslationNotInstalled, installed

            target = self.options.target
            if target not in LANGUAGES:
                raise FusionDeskError(f"--to {target}: choose one of {', '.join(LANGUAGES)}")
            source = next(code for code in LANGUAGES if code != target)
            if not installed(source, target, self.runtime):
                raise TranslationNotInstalled(source, target, self.runtime)
        speech = self.options.speech_model()
        if speech not in bundle:
            from .packs import pack_for_model

            if pack_for_model(speech) is not None:
                # --language other than en (or the multilingual setting) needs a pack that is not installed: say so
                # once, now, rather than as an error row for every recording
                bundle.entry(speech)

    # -- the folder, once -------------------------------------------------------------------------------------

    def run(self) -> BatchSummary:
        start = time.monotonic()
        try:
            with ResultsFile(self.out, self.columns, resume=self.options.resume) as results:
                todo = self._plan(self._walk(), results, count=True)
                self._process(todo, results, start)
        finally:  # a run stopped by Ctrl+C or a full disk says how long it ran, too
            self.summary.seconds = time.monotonic() - start
        return self.summary

    def _walk(self) -> Iterator[FileEntry | Skipped]:
        ignore = [self.out] + self._own_folders()
        return walk(self.in_dir, self.options.recursive, self.options.include, self.options.exclude, ignore,
                    self.options.include_hidden)

    def _plan(self, found: Iterable[FileEntry | Skipped], results: ResultsFile, count: bool) -> list[FileEntry]:
        """The files still to do. `count`: add skips and resumed files to the summary (a watch rescan does not:
        it sees the same skipped files again)."""
        todo = []
        self._resumed: list[FileEntry] = []
        self._names = {"audio": Counter(), "image": Counter()}
        for item in found:
            if isinstance(item, FileEntry) and item.modality in self._names:
                # Every file of the folder counts, done or not: a new b.png must not take b.jpg's mask name.
                self._names[item.modality][(str(Path(item.rel).parent), Path(item.rel).stem)] += 1
            if isinstance(item, FileEntry) and item.modality is not None \
                    and not any(item.modality in TASK_FITS[t] for t in self.tasks):
                item = Skipped(item.rel, f"no requested task applies to {item.modality} files")
            if isinstance(item, Skipped):
                if count:
                    self.summary.skipped += 1
                    self.summary.skip_reasons.append(item)
            elif results.is_done(item):
                self.summary.resumed += count
                self._resumed.append(item)
            else:
                todo.append(item)
        self.work.clashing = {key for key, count in self._names["image"].items() if count > 1}
        return todo

    def _process(self, todo: list[FileEntry], results: ResultsFile, start: float) -> None:
        with contextlib.ExitStack() as stack:
            index = None
            if self.options.index:
                from .index import FolderIndex

                index = stack.enter_context(FolderIndex(self.in_dir))
                self._catch_up(index)
            self._process_into(todo, results, start, index)

    def _catch_up(self, index) -> None:
        """Index the files an earlier run put in the results but not in the index (a run with --no-index, or
        from before runs indexed as they went): a processed folder is a searchable one."""
        from .index import IndexWork

        space = self.runtime.bundle.bundle_version
        behind = index.missing(self._resumed, space)
        if not behind:
            return
        work = IndexWork(self.runtime, self.options.language, self.options.workers, self.options.batch_size)
        for done in work.process(behind, self.stop):
            index.store([(item.entry, item.perceived) for item in done], [item.vector for item in done], space)

    def _process_into(self, todo: list[FileEntry], results: ResultsFile, start: float, index) -> None:
        progress = Progress(total=len(todo), skipped=self.summary.skipped, resumed=self.summary.resumed)
        self._report(progress, start)
        space = self.runtime.bundle.bundle_version
        if self.cluster is not None:
            batches = self.cluster.run(self.work.spec(), todo, self.options.batch_size, self.stop, progress)
        else:
            batches = self.work.process(todo, self.stop)
        for batch in batches:
            if index is not None:
                # Before the rows: a row in the results means its file is searchable (a resumed run skips it).
                index.store([(done.entry, done.perceived) for done in batch], [done.vector for done in batch], space)
            for done in batch:
                entry, perceived, row = done.entry, done.perceived, done.row
                if row["status"] == "ok":
                    self._export_transcript(entry, perceived, self._names["audio"])
                results.append(row)
                if row["status"] == "ok":
                    self.summary.ok += 1
                    progress.ok += 1
                else:
                    self.summary.failed += 1
                    progress.failed += 1
                progress.done += 1
                progress.current, progress.last_row = entry.rel, row
                self._report(progress, start)
            if self.stop.is_set():
                break

    def _report(self, progress: Progress, start: float) -> None:
        progress.elapsed = time.monotonic() - start
        if self.progress_callback is not None:
            self.progress_callback(progress)

    def _own_folders(self) -> list[Path]:
        return [Path(folder) for folder in (self.options.transcripts_dir, self.options.masks_dir) if folder is not None]

    # -- transcripts ------------------------------------------------------------------------------------------

    def _export_transcript(self, entry: FileEntry, perceived: Perception, names: Counter) -> None:
        """TXT and SRT beside where the recording sits in the input tree (rec.wav and rec.mp3: rec.wav.txt)."""
        if self.options.transcripts_dir is None or perceived.transcript is None:
            return
        from .fileio import atomic_write_text

        rel = Path(entry.rel)
        clash = names[(str(rel.parent), rel.stem)] > 1
        base = Path(self.options.transcripts_dir) / rel.parent / (rel.name if clash else rel.stem)
        for suffix, text in ((".txt", perceived.transcript.to_txt()), (".srt", perceived.transcript.to_srt())):
            target = base.with_name(base.name + suffix)
            try:
                atomic_write_text(target, text)
            except OSError as exc:
                raise storage_error(exc, exc.filename or target, "choose another --transcripts-dir") from None

    # -- watching ---------------------------------------------------------------------------------------------

    def watch(self, settle_seconds: float = 1.0, on_idle: Callable[[], None] | None = None) -> BatchSummary:
        """Keep processing new or changed files until `stop` is set (Ctrl+C in the CLI).

        A file being copied in fires many events; it is processed once its size and mtime have stayed the
        same for `settle_seconds`, then the folder is walked again so globs and skip rules apply as in run().
        """
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        events: queue.Queue[str] = queue.Queue()
        # The run's own writes (results, transcripts) must not wake it up again.
        own = [self.out.resolve()] + [folder.resolve() for folder in self._own_folders()]

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                if event.event_type not in ("created", "modified", "moved", "closed"):
                    return
                path = Path(os.fsdecode(getattr(event, "dest_path", "") or event.src_path)).resolve()
                if not any(path == p or path.is_relative_to(p) for p in own):
                    events.put(str(path))

        observer = Observer()
        observer.schedule(Handler(), str(self.in_dir), recursive=self.options.recursive)
        observer.start()
        start = time.monotonic()
        try:
            # Files that changed between run() and the observer's start are caught by the first rescan.
            dirty = True
            last_event = time.monotonic()
            while not self.stop.is_set():
                try:
                    events.get(timeout=0.2)
                    dirty, last_event = True, time.monotonic()
                    continue
                except queue.Empty:
                    pass
                if dirty and time.monotonic() - last_event >= settle_seconds:
                    dirty = False
                    self._rescan(start)
                    if on_idle is not None:
                        on_idle()
        finally:
            observer.stop()
            observer.join(timeout=5)
        self.summary.seconds = time.monotonic() - start
        return self.summary

    def _rescan(self, start: float) -> None:
        with ResultsFile(self.out, self.columns, resume=True) as results:
            todo = self._plan(self._walk(), results, count=False)
            if todo:
                self._process(todo, results, start)


def _translatable_text(p: Perception) -> str:
    if p.modality == "image":
        return p.ocr.text if p.ocr is not None else ""
    if p.modality == "audio":
        return p.transcript.text if p.transcript is not None else ""
    return p.text or ""


def run_batch(in_dir: Path | str, out: Path | str, options: BatchOptions | None = None,
              runtime: Runtime | None = None, progress: Callable[[Progress], None] | None = None,
              stop: threading.Event | None = None) -> BatchSummary:
    """Process every file under `in_dir` once (resuming an earlier run) and return the summary."""
    return BatchRun(in_dir, out, options, runtime, progress, stop).run()


def read_results(path: Path | str) -> list[dict[str, Any]]:
    """The rows of a results file (JSONL as dicts; CSV as flat dicts of strings)."""
    path = Path(path)
    with open(path, encoding="utf-8", newline="") as handle:  # a "\r" inside a quoted CSV name stays one
        text = handle.read()
    if path.suffix.lower() == ".csv":
        return list(csv.DictReader(io.StringIO(text, newline="")))
    return list(_json_rows(text))
