"""Huge and hostile inputs at full size (not a test: tests/test_hostile_inputs.py is the bounded version, in CI).

1. A two-hour recording and a ten-minute one, made the same way (an espeak-ng sentence a minute over quiet room
   noise, 16 kHz 16-bit WAV: 230 MB for two hours): `fusiondesk transcribe FILE --json`, each in its own process.
   Reported: peak memory (ru_maxrss of that process), seconds, sentences found. Memory must not grow with length.
2. A folder of 100,000 tiny text notes (100 subfolders of 1,000, 20-40 bytes each): the listing (engine.folder.walk),
   the first `fusiondesk batch DIR --out R.jsonl` (models and the search index included), the same command again
   (a resume with nothing left to do) and `fusiondesk index DIR` after it (everything unchanged).
3. A 1 GB text file written in full (not sparse) beside a note: `fusiondesk classify`, `batch` and `index` refuse
   it by its size without decoding it (`index` hashes every new file first, to recognise renames).

    .venv/bin/python bench/bench_hostile.py [--hours 2] [--files 100000] [--json figures.json] [--work DIR]

Prints a markdown table and, with --json, writes the figures. Everything is made under --work (default: a temporary
folder, removed afterwards); the recordings are cached there between runs when --work is given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

FUSIONDESK = [sys.executable, "-m", "desktop"]
SENTENCES = ["Please send the quarterly report to the finance team by Friday.",
             "The meeting about the new office has moved to Thursday afternoon.",
             "Remember to water the plants in the kitchen before you leave.",
             "The train to Lisbon leaves from platform four at nine fifteen."]
# A child's peak memory: ru_maxrss of its own children, measured by a small parent of its own.
def measured(out: Path, args: list[str], env: dict, summary_on: str = "stderr") -> dict:
    """Run `fusiondesk ARGS` (stdout to `out`): exit code, seconds, peak RSS in MB, the last line it printed on
    `summary_on` (batch says how it went on stderr, index on stdout)."""
    from faults import run_measured

    started = time.monotonic()
    result, megabytes, code = run_measured(out, [*FUSIONDESK, *args], env)
    seconds = time.monotonic() - started
    if "Traceback" in result.stderr:
        raise SystemExit(f"fusiondesk {' '.join(args)} printed a traceback:\n{result.stderr}")
    printed = result.stderr if summary_on == "stderr" else out.read_text(errors="replace")
    lines = [line for line in printed.splitlines() if line.strip()]
    return {"exit": code, "seconds": round(seconds, 1), "peak_mb": round(megabytes, 1),
            "last_line": lines[-1].strip() if lines else ""}


def recordings(work: Path, hours: float) -> dict[str, Path]:
    import soundfile as sf

    from conftest import speak
    from test_hostile_inputs import make_recording

    clips = [sf.read(str(speak(text, work / f"sentence{i}.wav")), dtype="int16")[0] for i, text in enumerate(SENTENCES)]
    made = {}
    for name, minutes in (("10 min", 10.0), (f"{hours:g} h", hours * 60)):
        path = work / f"recording_{int(minutes)}min.wav"
        if not path.is_file() or path.stat().st_size != int(minutes * 60 * 16000) * 2 + 44:
            make_recording(path, minutes, 60, clips)
        made[name] = path
    return made


def bench_recordings(work: Path, hours: float, env: dict) -> dict:
    figures = {}
    for name, path in recordings(work, hours).items():
        out = work / f"{path.stem}.json"
        row = measured(out, ["transcribe", str(path), "--json"], env)
        (record,) = json.loads(out.read_text())
        row |= {"file_mb": round(path.stat().st_size / 1e6, 1), "duration_s": record["duration"],
                "sentences_found": len(record["segments"]), "sentences_spoken": int(record["duration"] // 60) +
                (record["duration"] % 60 > 5), "x_realtime": round(record["duration"] / row["seconds"], 1)}
        print(f"transcribe {name}: {row}", file=sys.stderr)
        figures[name] = row
    return figures


def bench_tiny_files(work: Path, count: int, env: dict) -> dict:
    from engine.folder import walk

    folder = work / "tiny"
    if folder.exists():
        shutil.rmtree(folder)
    started = time.monotonic()
    for sub in range(-(-count // 1000)):
        (folder / f"s{sub:03d}").mkdir(parents=True)
        for i in range(min(1000, count - sub * 1000)):
            (folder / f"s{sub:03d}" / f"note{i:04d}.txt").write_text(f"note {sub}-{i}: call the plumber about the sink\n")
    made = time.monotonic() - started
    started = time.monotonic()
    listed = sum(1 for _ in walk(folder))
    listing = time.monotonic() - started
    results = work / "tiny.jsonl"
    results.unlink(missing_ok=True)
    first = measured(work / "batch1.out", ["batch", str(folder), "--out", str(results)], env)
    print(f"batch, first run: {first}", file=sys.stderr)
    resume = measured(work / "batch2.out", ["batch", str(folder), "--out", str(results)], env)
    print(f"batch, resumed: {resume}", file=sys.stderr)
    index = measured(work / "index.out", ["index", str(folder)], env, summary_on="stdout")
    print(f"index, unchanged: {index}", file=sys.stderr)
    rows = sum(1 for line in results.read_bytes().split(b"\n") if line)
    return {"files": listed, "make_s": round(made, 1), "listing_s": round(listing, 2), "rows": rows,
            "first_batch": first, "resumed_batch": resume, "index_unchanged": index}


def bench_gigabyte(work: Path, env: dict) -> dict:
    folder = work / "gigabyte"
    folder.mkdir(exist_ok=True)
    huge = folder / "huge.txt"
    line = b"the quick brown fox jumps over the lazy dog and writes another line of a very long log file\n"
    chunk = line * ((1 << 20) // len(line) + 1)
    with open(huge, "wb") as handle:  # written in full: every byte is on disk
        while handle.tell() < 1 << 30:
            handle.write(chunk)
    (folder / "note.txt").write_text("Remember to renew the passport before the summer holidays.\n")
    classify = measured(work / "classify.out", ["classify", str(huge), str(folder / "note.txt")], env)
    batch = measured(work / "gigabyte.out", ["batch", str(folder), "--out", str(work / "gigabyte.jsonl")], env)
    index = measured(work / "gigabyte-index.out", ["index", str(folder)], {**env, "FUSIONDESK_DATA_DIR": str(work / "data-gb")},
                     summary_on="stdout")  # a fresh index: every file new, so each is hashed (the 1 GB one too)
    rows = [json.loads(line) for line in (work / "gigabyte.jsonl").read_text().split("\n") if line]
    huge.unlink()
    return {"file_bytes": 1 << 30, "classify": classify, "batch": batch, "index": index,
            "batch_rows": {row["file"]: row.get("error", row["status"]) for row in rows}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0, help="length of the long recording (default 2)")
    parser.add_argument("--files", type=int, default=100_000, help="tiny files in the big folder (default 100000)")
    parser.add_argument("--work", help="folder for the inputs (default: a temporary one, removed afterwards)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--skip", nargs="*", default=[], choices=["recordings", "files", "gigabyte"])
    args = parser.parse_args()

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FUSIONDESK_CONFIG_DIR": str(work / "config"), "FUSIONDESK_DATA_DIR": str(work / "data"),
           "PYTHONIOENCODING": "utf-8:strict", "PYTHONUTF8": "0"}
    figures: dict = {"cpu_cores": os.cpu_count()}
    try:
        if "recordings" not in args.skip:
            figures["transcribe"] = bench_recordings(work, args.hours, env)
        if "files" not in args.skip:
            figures["tiny_files"] = bench_tiny_files(work, args.files, env)
        if "gigabyte" not in args.skip:
            figures["gigabyte_text"] = bench_gigabyte(work, env)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    print(report(figures))


def report(figures: dict) -> str:
    lines = ["| input | command | seconds | peak memory | result |", "|---|---|---:|---:|---|"]
    for name, row in figures.get("transcribe", {}).items():
        lines.append(f"| {name} recording ({row['file_mb']} MB WAV) | `transcribe --json` | {row['seconds']} | "
                     f"{row['peak_mb']} MB | {row['sentences_found']} of {row['sentences_spoken']} sentences, "
                     f"{row['x_realtime']}x real time |")
    tiny = figures.get("tiny_files")
    if tiny:
        lines.append(f"| {tiny['files']:,} tiny notes | listing (walk) | {tiny['listing_s']} | | |")
        for key, command in (("first_batch", "`batch --out R.jsonl`, first run"),
                             ("resumed_batch", "`batch --out R.jsonl`, again (resume)"),
                             ("index_unchanged", "`index` after it")):
            row = tiny[key]
            lines.append(f"| {tiny['files']:,} tiny notes | {command} | {row['seconds']} | {row['peak_mb']} MB | "
                         f"exit {row['exit']}: {row['last_line'][:90]} |")
    giant = figures.get("gigabyte_text")
    if giant:
        for key, command in (("classify", "`classify huge.txt note.txt`"), ("batch", "`batch` of its folder"),
                             ("index", "`index` of its folder (new)")):
            row = giant[key]
            lines.append(f"| 1 GB text file (written in full) | {command} | {row['seconds']} | {row['peak_mb']} MB | "
                         f"exit {row['exit']}: {row['last_line'][:90]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
