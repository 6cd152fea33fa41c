"""Folder commands: `batch` (every file of a folder to a JSONL/CSV results file), `index` and `search`.

Registered by desktop.cli through COMMAND_MODULES; the engine work is engine.folder and engine.index.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

EXIT_OK, EXIT_FILE_FAILED, EXIT_USAGE = 0, 1, 2


def add_commands(command) -> None:
    from engine.folder import TASKS
    from engine.scene import SEGMENT_MODES

    p = command("batch", cmd_batch, "process every file of a folder into a JSONL or CSV results file (resumable)")
    p.add_argument("in_dir", metavar="IN_DIR", help="the folder to process (never modified)")
    p.add_argument("--out", required=True, metavar="RESULTS", help="results file: .jsonl (one JSON object a line) or .csv")
    p.add_argument("--tasks", help=f"comma-separated, from {','.join(TASKS)} (default: classify,read,transcribe, "
                                   "each where it fits the file's type; detect and segment fit images, translate "
                                   "the text read, heard or written)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--labels", help='your own labels for classify, comma-separated: "invoice, receipt, letter"')
    group.add_argument("--labels-file", help="a file with one label per line")
    group.add_argument("--head", metavar="NAME", help="classify with a head you taught with `fusiondesk train` "
                                                      "(its class names become the labels)")
    p.add_argument("--to", dest="target", default="en", choices=["en", "pt"],
                   help="translate: the language to translate into (default en)")
    p.add_argument("--threshold", type=float, metavar="SCORE",
                   help="detect: keep objects scored at least this (0-1; default: the detector's own, 0.35)")
    p.add_argument("--masks-dir", metavar="DIR", help="segment: write each photo's person mask (or cutout, or blur) "
                                                      "here, mirroring subfolders; without it rows only say how much "
                                                      "of each photo is person")
    p.add_argument("--segment-mode", choices=list(SEGMENT_MODES), default="mask",
                   help="segment: mask (default), cutout (transparent background) or blur (background blurred)")
    p.add_argument("--recursive", action=argparse.BooleanOptionalAction, default=True, help="go into subfolders (default: yes)")
    p.add_argument("--include", nargs="+", action="extend", default=[], metavar="GLOB",
                   help="only files matching one of these globs (path or name, case-insensitive): '*.jpg' 'scans/*'")
    p.add_argument("--exclude", nargs="+", action="extend", default=[], metavar="GLOB",
                   help="leave out files and folders matching these globs")
    p.add_argument("--workers", type=int, default=4, help="decoding threads (default 4)")
    p.add_argument("--batch-size", type=int, default=16, help="files per encoder batch (default 16)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip files already in RESULTS with the same size and mtime (default: yes); "
                        "--no-resume starts RESULTS over")
    p.add_argument("--index", action=argparse.BooleanOptionalAction, default=True,
                   help="also add each file to the folder's search index as it is processed, so that "
                        "`fusiondesk search ... --dir IN_DIR` works at once (default: yes); --no-index: results only")
    p.add_argument("--watch", action="store_true", help="keep running and process new or changed files (Ctrl+C stops)")
    p.add_argument("--transcripts-dir", metavar="DIR", help="write a TXT and an SRT per recording here, mirroring subfolders")
    p.add_argument("--language", default="en", help="speech language: en (default) or a code such as de")
    p.add_argument("--top", type=int, default=5, help="labels per file (default 5)")
    p.add_argument("--hidden", action="store_true", help="also process hidden files and folders")
    add_cluster_options(p)

    p = command("index", cmd_index, "index a folder for search (only new or changed files are encoded)")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--workers", type=int, default=4, help="decoding threads (default 4)")
    p.add_argument("--language", default="en", help="speech language: en (default) or a code")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_cluster_options(p)

    p = command("search", cmd_search, "search indexed folders by meaning: photos, scans, recordings and notes alike")
    p.add_argument("query", nargs="?", metavar="QUERY", help="what you are looking for, in words")
    p.add_argument("--dir", action="append", metavar="DIR", help="search this indexed folder (repeatable; default: all)")
    p.add_argument("--top", type=int, default=10, help="how many results (default 10)")
    p.add_argument("--modality", choices=["image", "audio", "text"], help="only this kind of file")
    p.add_argument("--like", metavar="FILE", help="find files similar to this one instead of a text query")
    p.add_argument("--good-only", action="store_true",
                   help="only good matches for a text query (score >= 0.25 and within 0.1 of the best); "
                        "none: says so")
    p.add_argument("--json", action="store_true", help='print {"query", "results": [{"path", "score", "modality"}]}')


def add_cluster_options(p) -> None:
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="do the work on a Dask cluster: its scheduler's address (tcp://HOST:8786), or `local` to "
                        "start one on this machine; every worker must read the files and the model bundle at the "
                        "same paths (needs the cluster extra: pip install -e \".[cluster]\")")
    p.add_argument("--cluster-workers", type=int, default=2, metavar="N",
                   help="with --cluster local: how many worker processes (default 2)")


def _cluster(args, bar):
    """The cluster --cluster names, as a context that closes it (None without --cluster); says where the work
    runs."""
    if not args.cluster:
        return contextlib.nullcontext()
    from engine.cluster import Cluster

    bar.message(f"connecting to {'a new local cluster' if args.cluster == 'local' else args.cluster} ...")
    cluster = Cluster.connect(args.cluster, workers=max(1, args.cluster_workers))
    bar.message(cluster.describe())
    return cluster


# -- progress on a terminal -------------------------------------------------------------------------------------


class ProgressBar:
    """`  120/3000 [#####.....] 14.2 files/s  ETA 3:22  name` on a terminal, redrawn at most 10 times a second.

    Off a terminal (a pipe, a log file) nothing is drawn: the summary at the end says it all."""

    def __init__(self, stream: TextIO | None = None, width: int = 28):
        self.stream = stream or sys.stderr  # looked up now: sys.stderr may have been replaced since import
        self.width = width
        self.enabled = self.stream.isatty()
        self._last = 0.0
        self._lock = threading.Lock()
        self._shown = False

    def __call__(self, progress) -> None:
        from desktop.cli import shown

        row = progress.last_row
        if row is not None and row.get("status") == "error" and row is not getattr(self, "_reported", None):
            self._reported = row
            self.message(f"{shown(row['file'])}: error: {row['error']}")
        if not self._due(final=progress.done >= progress.total):
            return
        total = max(progress.total, 1)
        filled = int(self.width * progress.done / total)
        eta = "--:--" if progress.eta is None else clock_text(progress.eta)
        workers = "  workers " + " ".join(f"{name}:{count}" for name, count in sorted(progress.workers.items())) \
            if progress.workers else ""
        self._draw(f"  {progress.done}/{progress.total} [{'#' * filled}{'.' * (self.width - filled)}] "
                   f"{progress.rate:5.1f} files/s  ETA {eta}{workers}  {shown(progress.current)[-40:]}")

    def _due(self, final: bool = False) -> bool:
        """Whether to redraw now: on a terminal, at most 10 times a second (the last state always)."""
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.1 and not final):
            return False
        self._last = now
        return True

    def _draw(self, line: str) -> None:
        with self._lock:
            self.stream.write("\r" + line[:160].ljust(100))
            self.stream.flush()
            self._shown = True

    def _blank(self) -> None:
        """Wipe the status line off the screen, if one is there (the caller holds the lock)."""
        if self._shown:
            self.stream.write("\r" + " " * 100 + "\r")

    def message(self, text: str) -> None:
        with self._lock:
            self._blank()
            self.stream.write(text + "\n")
            self.stream.flush()

    def finish(self) -> None:
        with self._lock:
            if self._shown:
                self.stream.write("\n")
                self._shown = False


class TranscribeProgress(ProgressBar):
    """`  transcribing 0:41:10 / 2:00:00 (34%)  talk.wav` on a terminal's stderr through both passes over each
    recording (finding the speech, then transcribing it), as engine.tasks.transcribe_files reports them; the line
    is blanked when done (the transcripts follow)."""

    def __call__(self, path: str, stage: str, done: float, total: float | None) -> None:
        from desktop.cli import shown

        if not self._due():
            return
        of = f" / {clock_text(total)} ({min(1.0, done / total):.0%})" if total else ""
        self._draw(f"  {stage} {clock_text(done)}{of}  {shown(path)[-40:]}")

    def finish(self) -> None:
        with self._lock:
            self._blank()
            self.stream.flush()
            self._shown = False


def clock_text(seconds: float) -> str:
    """'4:05' or '1:04:05': a duration as people read it (progress lines, the Search tab's play position)."""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


# -- commands ---------------------------------------------------------------------------------------------------


def cmd_batch(args) -> int:
    from desktop.cli import _labels_from, _runtime
    from engine.folder import BatchOptions, BatchRun

    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip()) if args.tasks else None
    options = BatchOptions(
        tasks=tasks, labels=_labels_from(args), recursive=args.recursive, include=args.include, exclude=args.exclude,
        workers=max(1, args.workers), resume=args.resume,
        transcripts_dir=Path(args.transcripts_dir) if args.transcripts_dir else None,
        batch_size=max(1, args.batch_size), top_k=args.top, language=args.language, include_hidden=args.hidden,
        head=args.head, target=args.target, threshold=args.threshold, masks_dir=Path(args.masks_dir) if args.masks_dir else None,
        segment_mode=args.segment_mode, index=args.index)
    bar = ProgressBar()
    stop = threading.Event()
    run = BatchRun(args.in_dir, args.out, options, _runtime(args), progress=bar, stop=stop)
    with _cluster(args, bar) as cluster:
        if cluster is not None:
            run.use_cluster(cluster)
        return _run_batch(run, args, bar, stop)


def _run_batch(run, args, bar, stop) -> int:
    from engine.errors import StorageError

    try:
        summary = run.run()
        bar.finish()
        _print_summary(summary, bar)
        if args.watch:
            bar.message(f"watching {args.in_dir} for new or changed files (Ctrl+C to stop)")
            summary = run.watch()
    except KeyboardInterrupt:
        stop.set()
        bar.finish()
        print("fusiondesk: interrupted; run the same command again to finish (finished files are kept)", file=sys.stderr)
        _print_summary(run.summary, bar)
        return 130
    except StorageError:  # a full disk, a read-only place: how far it got, then desktop.cli.main says why
        bar.finish()
        _print_summary(run.summary, bar)
        raise
    bar.finish()
    if args.watch:
        _print_summary(summary, bar)
    return EXIT_OK if summary.exit_ok else EXIT_FILE_FAILED


def _print_summary(summary, bar: ProgressBar) -> None:
    data = summary.to_dict()
    reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(data["skip_reasons"].items()))
    text = (f"{data['ok']} ok, {data['failed']} failed, {data['skipped']} skipped"
            + (f" ({reasons})" if reasons else "")
            + (f", {data['resumed']} already done" if data["resumed"] else "")
            + f" in {clock_text(data['seconds'])} -> {data['results']}")
    bar.message(text)


def _failures(index) -> dict:
    """rel -> ((size, mtime), reason) of every file the index holds as unusable."""
    return {item["path"]: ((item["size"], item["mtime"]), item["error"]) for item in index.items() if item["error"]}


def cmd_index(args) -> int:
    from desktop.cli import _print_error_line, _runtime, as_text
    from engine.index import FolderIndex

    folder = Path(args.dir)
    if not folder.is_dir():
        print(f"fusiondesk: {folder} is not a folder", file=sys.stderr)
        return EXIT_USAGE
    bar = ProgressBar()
    with FolderIndex(folder) as index, _cluster(args, bar) as cluster:
        before = _failures(index)
        try:
            summary = index.update(_runtime(args), workers=max(1, args.workers), language=args.language, progress=bar,
                                   cluster=cluster)
        finally:
            bar.finish()  # the progress line ends before any error is said
        # This run's failures, each with its reason (files that failed before and are unchanged are not retried)
        errors = [{"file": rel, "error": error} for rel, (key, error) in _failures(index).items()
                  if before.get(rel, (None,))[0] != key]
        data = summary.to_dict() | {"folder": str(index.root), "index": str(index.path), "items": len(index),
                                    "errors": errors}
    if args.json:
        json.dump(as_text(data), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        for error in errors:
            _print_error_line(error)
        print(f"indexed {data['folder']}: {data['items']} files ({data['added']} added, {data['changed']} changed, "
              f"{data['renamed']} renamed, {data['copied']} copies, {data['deleted']} removed, "
              f"{data['unchanged']} unchanged, {data['failed']} failed, {data['skipped']} skipped) "
              f"in {clock_text(data['seconds'])}")
    return EXIT_OK if summary.failed == 0 else EXIT_FILE_FAILED


def cmd_search(args) -> int:
    from desktop.cli import _runtime, as_text, shown
    from engine.index import search

    if (args.query is None) == (args.like is None):
        print("fusiondesk: search needs a QUERY or --like FILE (one of them)", file=sys.stderr)
        return EXIT_USAGE
    hits = search(query=args.query, like=args.like, folders=[Path(d) for d in args.dir or []] or None,
                  top=max(1, args.top), modality=args.modality, runtime=_runtime(args))
    if args.good_only and args.query is not None:
        from engine.index import good_matches

        closest = hits[0] if hits else None
        hits = good_matches(hits)
        if not hits and closest is not None and not args.json:
            print(f"no good match (the closest: {shown(closest.path)}, {closest.score:.3f})")
            return EXIT_OK
    if args.json:
        answer = {"query": args.query} | ({"like": args.like} if args.like else {})
        json.dump(as_text(answer | {"results": [hit.to_dict() for hit in hits]}), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return EXIT_OK
    if not hits:
        print("no results")
    for rank, hit in enumerate(hits, 1):
        print(f"{rank:3}. {hit.score:.3f}  {hit.modality:5}  {shown(hit.path)}")
        snippet = " ".join((hit.transcript or hit.ocr_text).split())
        if snippet:
            print(f"              {snippet[:110]}")
    return EXIT_OK
