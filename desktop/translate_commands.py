"""`translate`: English <-> Portuguese text translation (typed text or text files).

Registered by desktop.cli through COMMAND_MODULES; the engine work is engine.translate. Speech from other
languages into English is `fusiondesk transcribe AUDIO --language auto --translate` (Whisper's own task).
"""

from __future__ import annotations

import sys
from pathlib import Path

MAX_FILE_BYTES = 5_000_000  # a text file this large is almost certainly not meant to be translated whole


def add_commands(command) -> None:
    p = command("translate", cmd_translate,
                "translate text between English and Portuguese (offline, Marian tiny models)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("text", nargs="?", metavar="TEXT", help="the text to translate")
    source.add_argument("--file", nargs="+", metavar="FILE", help="translate these UTF-8 text files instead")
    p.add_argument("--to", required=True, choices=["en", "pt"], help="target language")
    p.add_argument("--from", dest="source", default="auto", choices=["auto", "en", "pt"],
                   help="source language (default: detect it)")
    p.add_argument("--json", action="store_true",
                   help='print a JSON array: {"file"?, "text", "translation", "source", "target"}')


def _read(path: str) -> str:
    from engine.errors import InputFileError

    file = Path(path)
    if not file.is_file():
        raise InputFileError(path, "no such file" if not file.exists() else "is not a file")
    if file.stat().st_size > MAX_FILE_BYTES:
        raise InputFileError(path, f"is larger than {MAX_FILE_BYTES // 1_000_000} MB; split it first")
    try:
        return file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputFileError(path, "is not UTF-8 text") from None
    except OSError as exc:
        raise InputFileError(path, f"cannot be read ({exc.strerror or exc})") from None


def cmd_translate(args) -> int:
    from desktop.cli import _runtime, report
    from engine.errors import InputFileError
    from engine.translate import translate

    runtime = _runtime(args)
    items: list[tuple[str | None, str]] = []
    records: list[dict] = []
    if args.file:
        for path in args.file:
            try:
                items.append((path, _read(path)))
            except InputFileError as exc:
                records.append({"file": exc.path, "error": exc.problem})
    else:
        items.append((None, args.text))
    results = translate([text for _, text in items], target=args.to, source=args.source, runtime=runtime)
    for (path, text), result in zip(items, results):
        record = {"text": text, "translation": result.text, "source": result.source, "target": result.target}
        records.append({"file": path, **record} if path else record)

    def describe(record) -> None:
        if "file" in record:
            print(f"{record['file']} [{record['source']} -> {record['target']}]")
            print("  " + record["translation"].replace("\n", "\n  "))
        else:
            print(record["translation"])
            print(f"[{record['source']} -> {record['target']}]", file=sys.stderr)

    return report(records, args, describe)
