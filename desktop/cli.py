"""`fusiondesk` command line: every task of the engine, the self-test, and (with no arguments) the app.

The heaviest imports (gradio, the window's web view, model sessions) happen inside the commands that need them, so
`fusiondesk --help` answers quickly; building the parser imports numpy and onnxruntime (for the folder
mode's task names), about 0.1 s.
"""

from __future__ import annotations

import argparse
import codecs
import importlib
import json
import os
import sys
import warnings
from pathlib import Path

# Nothing phones home: set before anything could import gradio or huggingface_hub.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

EXIT_OK, EXIT_FILE_FAILED, EXIT_USAGE, EXIT_BROKEN = 0, 1, 2, 3
# The app's own output cannot be written (a full disk, a read-only place, no permission): free some space or
# choose another place, then the same command finishes the work (4 is desktop.app_commands' EXIT_NO_DEVICE).
EXIT_STORAGE = 5

# Modules that add their own commands (kept light: they import heavy libraries only inside handlers).
COMMAND_MODULES: list[str] = ["desktop.app_commands", "desktop.folder_commands", "desktop.scene_commands",
                              "desktop.translate_commands", "desktop.teach_commands", "desktop.pack_commands"]


def _print_json(data) -> None:
    json.dump(as_text(data), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def as_text(data):
    """JSON-ready data whose strings any UTF-8 reader takes: a file name that is not valid UTF-8 has its bad bytes
    written as \\xNN (engine.filetypes.text_name), as batch results and the index write them. Without this the
    JSON printed for such a file would hold bytes that are not UTF-8 (or, on most systems, not be printed at all)."""
    from engine.filetypes import text_name

    if isinstance(data, str):
        return text_name(data)
    if isinstance(data, dict):
        return {as_text(key): as_text(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [as_text(value) for value in data]
    return data


def shown(name: str) -> str:
    """A file name on one line of a terminal: bad bytes as \\xNN, a newline or other control character as its
    escape (a name with a newline must not split the line that reports it)."""
    from engine.filetypes import text_name

    name = text_name(str(name))
    return name if name.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def _unencodable_as_escapes(error: UnicodeEncodeError) -> tuple[str, int]:
    """Codec error handler for the CLI's own output: a file name's undecodable bytes (Python keeps them as
    surrogates U+DC80-U+DCFF) come out as \\xNN, any other character the terminal cannot show as \\uXXXX, instead
    of a UnicodeEncodeError traceback (Python's strict default on most UTF-8 systems)."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    chars = error.object[error.start:error.end]
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else
                   (f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}") for c in chars), error.end


codecs.register_error("fusiondesk.escape", _unencodable_as_escapes)


def _escape_unencodable_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="fusiondesk.escape")
        except (AttributeError, ValueError, OSError):  # not a text stream we can change (an embedding host's)
            pass


def _runtime(args):
    from engine.runtime import Runtime, get_runtime, set_runtime

    if args.device or args.threads:
        base = get_runtime()
        set_runtime(Runtime(device=args.device or base.device, threads=args.threads or base.threads))
    return get_runtime()


def _failed(records) -> int:
    return EXIT_FILE_FAILED if any("error" in r for r in records) else EXIT_OK


def report(records, args, describe) -> int:
    """Per-file records out: the JSON array with --json, else describe(record) for each usable file and one
    error line per file that could not be used. The exit code says whether any file failed."""
    if args.json:
        _print_json(records)
    else:
        for record in records:
            if "error" in record:
                _print_error_line(record)
            else:
                describe(record)
    return _failed(records)


def _labels_from(args) -> list[str]:
    from engine.tasks import parse_labels

    if getattr(args, "labels_file", None):
        try:
            return parse_labels(Path(args.labels_file).read_text(encoding="utf-8"))
        except OSError as exc:
            raise SystemExit(f"fusiondesk: cannot read labels file {args.labels_file}: {exc.strerror or exc}")
    return parse_labels(getattr(args, "labels", None))


def _print_error_line(record) -> None:
    print(f"{shown(record['file'])}: error: {record['error']}", file=sys.stderr)


# -- commands ---------------------------------------------------------------------------------------------------


def cmd_models(args) -> int:
    runtime = _runtime(args)
    bundle = runtime.bundle
    rows = []
    failed = False
    verify = {}
    if args.verify:
        for model_id, path, error in bundle.verify_all():
            verify.setdefault(model_id, []).append((path, error))
            failed |= error is not None
    for entry in bundle.models.values():
        provider = ""
        if args.providers and entry.task != "selftest-samples":
            key = next(k for k in entry.files if k not in ("tokenizer", "labels", "mel_filters", "keys", "class_embeddings"))
            try:
                provider = ",".join(runtime.providers_for(entry.id, key))
            except Exception as exc:
                provider, failed = f"failed: {exc}", True
        row = {"id": entry.id, "task": entry.task, "modality": entry.modality, "precision": entry.precision,
               "bytes": entry.total_bytes, "provider": provider or _planned_provider(runtime), "license": entry.license}
        if args.verify:
            problems = [error for _, error in verify.get(entry.id, []) if error]
            row["verified"] = not problems
            if problems:
                row["problems"] = problems
        if entry.id in bundle.model_packs:
            row["pack"] = bundle.model_packs[entry.id]
        rows.append(row)
    missing = _missing_pack_models(bundle)
    if args.json:
        _print_json({"bundle": str(bundle.root), "bundle_version": bundle.bundle_version, "models": rows,
                     "not_installed": missing})
    else:
        print(f"model bundle {bundle.root} (version {bundle.bundle_version})")
        print(f"{'id':18} {'task':22} {'size':>9} {'precision':9} {'provider':24}" + (" verified" if args.verify else ""))
        for row in rows:
            line = (f"{row['id']:18} {row['task']:22} {row['bytes'] / 1e6:7.1f}MB {row['precision']:9} "
                    f"{row['provider']:24}")
            if args.verify:
                line += " ok" if row["verified"] else " FAILED"
            print(line)
            for problem in row.get("problems", []):
                print(f"    {problem}", file=sys.stderr)
        total = sum(r["bytes"] for r in rows)
        print(f"{len(rows)} entries, {total / 1e6:.1f} MB")
        for item in missing:
            print(f"{item['id']:18} in the {item['pack_title']} pack, not installed "
                  f"(fusiondesk packs install {item['pack_file']})")
    return EXIT_BROKEN if failed else EXIT_OK


def _missing_pack_models(bundle) -> list[dict]:
    """The models of optional packs that this bundle lacks (engine.packs): listed so people know they exist."""
    from engine.packs import PACKS

    return [{"id": model_id, "pack": spec.name, "pack_title": spec.title, "pack_file": spec.file_name,
             "feature": feature}
            for spec in PACKS.values() for model_id, feature in spec.features.items() if model_id not in bundle]


def _print_packs(bundle) -> None:
    from engine.packs import pack_rows

    for row in pack_rows(bundle):
        where = f" at {row['where']}" if row["where"] else f" (fusiondesk packs install {row['file']})"
        print(f"  pack {row['name']}: {row['state']}{where}")


def _planned_provider(runtime) -> str:
    from engine.runtime import choose_providers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return choose_providers(runtime.device)[0]


def cmd_selftest(args) -> int:
    from engine.selftest import run_selftest

    runtime = _runtime(args)
    print(f"self-test of the model bundle at {runtime.bundle.root} (device {runtime.device}, {runtime.threads} threads)")
    _print_packs(runtime.bundle)

    def show(result) -> None:
        status = "ok  " if result.ok else "FAIL"
        providers = ",".join(p.replace("ExecutionProvider", "") for p in result.providers) or "-"
        print(f"  {status} {result.model_id:18} {result.seconds:6.2f}s  [{providers}]  {result.detail}", flush=True)

    results = run_selftest(runtime, show)
    failed = [r for r in results if not r.ok]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return EXIT_BROKEN if failed or not results else EXIT_OK


def _perception_options(args, labels):
    from engine.perceive import PerceptionOptions
    from engine.tasks import speech_model_for

    language = getattr(args, "language", "en") or "en"
    return PerceptionOptions(ocr=not getattr(args, "no_ocr", False), top_k=max(5, getattr(args, "top", 5)),
                             speech_model=speech_model_for(language), language=language)


# How the labels of a record were chosen, in words (engine.tasks.label_set_for).
LABEL_SETS = {"imagenet": "ImageNet classes", "document kinds": "kind of document",
              "recording topics": "kind of recording", "yours": "your labels"}


def cmd_classify(args) -> int:
    from engine.tasks import classify_files

    labels = _labels_from(args)
    runtime = _runtime(args)
    records = classify_files(args.files, labels=labels, top_k=args.top, options=_perception_options(args, labels),
                             runtime=runtime, head=args.head)

    def describe(record) -> None:
        kind = record["evidence"].get("kind")
        what = LABEL_SETS.get(record.get("label_set", ""), "")
        print(f"{shown(record['file'])} ({kind if kind and kind != 'text' else record['modality']}{', ' + what if what else ''})")
        for item in record["labels"]:
            bar = "█" * round(item["score"] * 20)
            print(f"  {item['score']:6.1%} {bar:20} {item['label']}")
        if not record["labels"]:
            print("  (nothing recognisable: no speech, text or image content)")
        evidence = record["evidence"]
        for key in ("ocr_text", "transcript"):
            if evidence.get(key):
                print(f"  {key.replace('_', ' ')}: {' '.join(evidence[key].split())[:200]}")

    return report(records, args, describe)


def cmd_transcribe(args) -> int:
    from desktop.folder_commands import TranscribeProgress
    from engine.tasks import transcribe_files

    runtime = _runtime(args)
    task = "translate" if getattr(args, "translate", False) else "transcribe"
    progress = TranscribeProgress()
    try:
        records, transcripts = transcribe_files(args.files, language=args.language, task=task, beam_size=args.beam,
                                                runtime=runtime, progress=progress)
    finally:
        progress.finish()
    exports = [(fmt, getattr(args, fmt)) for fmt in ("srt", "vtt", "txt") if getattr(args, fmt)]
    for fmt, target in exports:
        _export_transcripts(transcripts, fmt, Path(target))

    def describe(record) -> None:
        print(f"{shown(record['file'])} [{record['language']}, {record['duration']:.1f}s]")
        for segment in record["segments"]:
            print(f"  [{segment['start']:7.2f} → {segment['end']:7.2f}] {segment['text'].strip()}")
        if not record["segments"]:
            print("  (no speech)")

    return report(records, args, describe)


def _export_transcripts(transcripts: dict, fmt: str, target: Path) -> None:
    """One file: write it there. Several: a folder with one file per recording. Never overwrite an input."""
    from engine.fileio import atomic_write_text

    render = {"srt": lambda t: t.to_srt(), "vtt": lambda t: t.to_vtt(), "txt": lambda t: t.to_txt()}[fmt]
    if len(transcripts) == 1 and target.suffix:
        (source, transcript), = transcripts.items()
        if target.resolve() == Path(source).resolve():
            raise SystemExit(f"fusiondesk: refusing to overwrite the input {source} with the {fmt.upper()} export")
        atomic_write_text(target, render(transcript))
        print(f"wrote {target}", file=sys.stderr)
        return
    target.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    stems = [Path(source).stem for source in transcripts]
    for source, transcript in transcripts.items():
        # rec.srt, or rec.wav.srt when rec.wav and rec.mp3 both came, then rec-2.srt...: one file per recording
        name = Path(source).stem if stems.count(Path(source).stem) == 1 else Path(source).name
        candidate, number = f"{name}.{fmt}", 1
        while candidate in taken:
            number += 1
            candidate = f"{name}-{number}.{fmt}"
        taken.add(candidate)
        out = target / candidate
        atomic_write_text(out, render(transcript))
        print(f"wrote {out}", file=sys.stderr)


def cmd_read(args) -> int:
    from engine.tasks import read_files

    records = read_files(args.files, runtime=_runtime(args))

    def describe(record) -> None:
        print(f"{shown(record['file'])} ({len(record['lines'])} lines)")
        for line in record["lines"]:
            print(f"  {line['score']:.2f}  {line['text']}")

    return report(records, args, describe)


def cmd_describe(args) -> int:
    from engine.tasks import describe_files

    labels = _labels_from(args)
    answer = describe_files(args.files, text=args.text, labels=labels or None, top_k=args.top,
                            options=_perception_options(args, labels), runtime=_runtime(args))
    if args.json:
        _print_json(answer)
    else:
        for record in answer["errors"]:
            _print_error_line(record)
        print(answer["answer"])
        for item in answer["labels"]:
            print(f"  {item['score']:6.1%} {item['label']}")
    return EXIT_FILE_FAILED if answer["errors"] else EXIT_OK


def cmd_embed(args) -> int:
    from engine.tasks import embed_files

    records = embed_files(args.files, options=_perception_options(args, []), runtime=_runtime(args))

    def describe(record) -> None:
        head = ", ".join(f"{v:+.3f}" for v in record["vector"][:4])
        print(f"{shown(record['file'])} ({record['modality']}): {record['dim']}-d [{head}, …]")

    return report(records, args, describe)


# -- parser -----------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fusiondesk",
        description="Offline multimodal AI: classify, transcribe, read and fuse your own files. "
        "With no command, opens the app.",
    )
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], help="where models run (default: your setting, auto)")
    parser.add_argument("--threads", type=int, help="CPU threads per model (default: one per physical core)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = command("models", cmd_models, "list the models in the bundle")
    p.add_argument("--verify", action="store_true", help="re-check every file's sha256")
    p.add_argument("--providers", action="store_true", help="load each model and show the provider it runs on")
    p.add_argument("--json", action="store_true")

    command("selftest", cmd_selftest, "load every model and run one real inference on the built-in samples")

    p = command("classify", cmd_classify, "label images, recordings and texts (ImageNet classes, or your own labels)")
    p.add_argument("files", nargs="+", metavar="FILE")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--labels", help='your own zero-shot labels, comma-separated: "invoice, receipt, letter"')
    group.add_argument("--labels-file", help="a file with one label per line")
    group.add_argument("--head", metavar="NAME", help="a head you taught with `fusiondesk train` (see `fusiondesk heads`)")
    p.add_argument("--top", type=int, default=5, help="how many labels to show (default 5)")
    p.add_argument("--no-ocr", action="store_true", help="do not read text inside images")
    p.add_argument("--language", default="en", help="speech language: en (default), auto, or a code such as de")
    p.add_argument("--json", action="store_true", help="print a JSON array, one object per file")

    p = command("transcribe", cmd_transcribe, "turn speech in recordings into text with timestamps")
    p.add_argument("files", nargs="+", metavar="AUDIO")
    p.add_argument("--language", default="en", help="en (default, fast English model), auto (detect), or a code")
    p.add_argument("--beam", type=int, default=1, help="beam size (1 = greedy, default; 5 = slower, sometimes better)")
    p.add_argument("--translate", action="store_true", help="English text from speech in any language Whisper knows")
    p.add_argument("--srt", metavar="OUT", help="write subtitles (a file, or a folder for several inputs)")
    p.add_argument("--vtt", metavar="OUT", help="write WebVTT subtitles")
    p.add_argument("--txt", metavar="OUT", help="write plain text")
    p.add_argument("--json", action="store_true")

    p = command("read", cmd_read, "read the text in images (OCR)")
    p.add_argument("files", nargs="+", metavar="IMAGE")
    p.add_argument("--json", action="store_true")

    p = command("describe", cmd_describe, "one fused answer for several inputs together (photo + voice note + text)")
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--text", help="a caption or question to fuse with the files")
    p.add_argument("--labels", help="score the fused item against these labels instead of ImageNet classes")
    p.add_argument("--labels-file", help=argparse.SUPPRESS)
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--language", default="en")
    p.add_argument("--json", action="store_true")

    p = command("embed", cmd_embed, "print each file's vector in the shared 384-d space (for scripts)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true")

    # Command groups that live in their own modules (the app, folder mode, teach...): each module has
    # add_commands(command), where command(name, handler, help) returns the new subparser.
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        from desktop.app_commands import cmd_open_app

        args.handler = cmd_open_app  # no command: the app itself, in its window
    if args.command == "describe" and not args.files and not args.text:
        parser.error("describe needs at least one FILE or --text")
    from engine.errors import FusionDeskError, StorageError

    _escape_unencodable_output()
    warnings.simplefilter("default")
    # Third-party noise, not ours to fix, repeated on every table the UI draws: gradio 6 sets a pandas option that
    # pandas 3 deprecates, and copies frames with the copy= keyword.
    for noise in (r"'future\.no_silent_downcasting' is deprecated", r"The copy keyword is deprecated"):
        warnings.filterwarnings("ignore", message=noise)
    # gradio.utils.safe_get_lock / safe_get_stop_event make a new event loop for each lock whenever Blocks, the
    # queue or the server app are built outside a running loop (as every app that calls launch() does), and never
    # close them: about ten at start-up, never run, reported when collected. Measured: none come from our code.
    warnings.filterwarnings("ignore", message=r"unclosed event loop", category=ResourceWarning)
    warnings.formatwarning = lambda message, category, *rest: f"fusiondesk: warning: {message}\n"
    try:
        return args.handler(args)
    except StorageError as exc:  # a full disk, a read-only place: the message names the path (and the free space)
        print(f"fusiondesk: error: {exc}", file=sys.stderr)
        return EXIT_STORAGE
    except FusionDeskError as exc:
        print(f"fusiondesk: error: {exc}", file=sys.stderr)
        return EXIT_BROKEN
    except KeyboardInterrupt:
        print("fusiondesk: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
