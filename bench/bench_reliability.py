"""Crash and disk-fault safety, the long version (not a test; issue 18, items 2 and 3). Prints a markdown table
for the README's reliability section and writes the figures as JSON.

    .venv/bin/python bench/bench_reliability.py                  # 300 files, 20 kills each for index and batch
    .venv/bin/python bench/bench_reliability.py --images 200 --notes 200 --kills 30 --json /tmp/reliability.json
    .venv/bin/python bench/bench_reliability.py --no-disk        # kills only (no tmpfs: not root, or no unshare)

What it does, with the helpers tests/test_reliability.py uses on 60 files (tests/faults.py):
- a folder of small real files: JPEG crops of scikit-image's photographs and text notes (plus a copy and a corrupt
  JPEG), indexed once without interruption: the reference;
- `fusiondesk index DIR` SIGKILLed --kills times at seeded random moments (a fifth during start-up, the rest a
  random number of files into the run plus 0-0.4 s), then run to the end. After every kill the index, copied as
  the crash left it, must pass `PRAGMA integrity_check` and open in the app; the finished index must hold the
  reference's rows and vectors; "bytes lost" counts the bytes of rows committed before a kill that the finished
  index no longer holds as they were;
- the same for `fusiondesk batch DIR --out R.jsonl` (rows compared with an uninterrupted run's, timing fields
  aside; "bytes lost": bytes of whole rows present after a kill that are not in the finished file);
- as root with `unshare -m`: results (JSONL and CSV) and the index on a tmpfs that fills up mid-run, then the
  same command once space is freed; a read-only output folder and read-only data folders.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import faults  # noqa: E402

EXIT_STORAGE = 5  # desktop.cli.EXIT_STORAGE
# The read-only scenario's steps that are meant to work: indexing before the remount, results without the index.
READ_ONLY_ALLOWED = ("index_before_ro", "batch_ro_data_no_index")


def kills(args, folder: Path, files: list[str], work: Path) -> dict:
    reference = faults.reference_index(folder, work / "reference-index" / "data")
    index = faults.index_under_kills(folder, len(files), work / "index-kills", args.kills, args.seed, reference)
    reference_batch = faults.reference_batch(folder, work / "reference-batch")
    batch = faults.batch_under_kills(folder, len(files), work / "batch-kills", args.kills, args.seed + 1,
                                     reference_batch)
    batch.pop("files")
    return {"index": index, "batch": batch,
            "reference_seconds": {"index": reference["wall"], "batch": reference_batch["wall"]}}


def _first_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith("fusiondesk:")]
    return lines[-1] if lines else text.strip().splitlines()[-1] if text.strip() else ""


def disk(folder: Path, files: list[str], work: Path, batch_bytes: int, index_bytes: int) -> dict:
    found: dict = {}
    for fmt in ("jsonl", "csv"):
        scratch = work / f"full-{fmt}"
        scratch.mkdir()
        leave = max(16 << 10, int(batch_bytes * 0.4)) // 4096 * 4096
        report = faults.in_private_mount("results-full", "--work", str(scratch), "--folder", str(folder),
                                         "--format", fmt, "--size", str(leave + (1 << 20)), "--leave", str(leave))
        text = (scratch / f"full.{fmt}").read_text(encoding="utf-8")
        if fmt == "csv":
            partial = list(csv.DictReader(io.StringIO(text)))
            parses = all(None not in row and len(row) == len(partial[0]) for row in partial) if partial else True
        else:
            try:
                partial, parses = [json.loads(line) for line in text.splitlines()], True
            except ValueError:
                partial, parses = [], False
        final = faults.results_state(scratch / f"final.{fmt}") if fmt == "jsonl" else None
        final_files = [row["file"] for row in final["rows"]] if final else \
            [row["file"] for row in csv.DictReader(io.StringIO((scratch / f"final.{fmt}").read_text(encoding="utf-8")))]
        found[f"results_{fmt}"] = {
            "tmpfs_bytes": report["size"], "left_free": leave, "rc": report["full"]["rc"],
            "traceback": "Traceback" in report["full"]["stderr"], "message": _first_line(report["full"]["stderr"]),
            "rows_before_full": len(partial), "ends_with_whole_row": text.endswith("\n"), "parses": parses,
            "resumed_rc": report["resumed"]["rc"], "final_rows": len(final_files),
            "final_each_file_once": sorted(final_files) == files}
    scratch = work / "full-index"
    scratch.mkdir()
    leave = max(128 << 10, int(index_bytes * 0.5)) // 4096 * 4096
    report = faults.in_private_mount("index-full", "--work", str(scratch), "--folder", str(folder),
                                     "--size", str(leave + (2 << 20)), "--leave", str(leave))
    reference = faults.index_state(work / "reference-index" / "data" / "indexes" / report["index_name"])["rows"]
    full = faults.index_state(scratch / "full" / report["index_name"])
    final = faults.index_state(scratch / "final" / report["index_name"])
    compared = faults.compare_index(final["rows"], reference)
    found["index"] = {
        "tmpfs_bytes": report["size"], "left_free": leave, "rc": report["full"]["rc"],
        "traceback": "Traceback" in report["full"]["stderr"], "message": _first_line(report["full"]["stderr"]),
        "rows_before_full": len(full["rows"]), "integrity_after_full": full["integrity"],
        "search_while_full_rc": report["search_while_full"]["rc"], "resumed_rc": report["resumed"]["rc"],
        "final_rows": len(final["rows"]), "final_integrity": final["integrity"],
        "differing_from_uninterrupted": len(compared["differing"]), "max_vector_diff": compared["max_vector_diff"],
        "bytes_lost": faults.index_bytes_lost(full["rows"], final["rows"])}
    scratch = work / "read-only"
    scratch.mkdir()
    report = faults.in_private_mount("read-only", "--work", str(scratch), "--folder", str(folder))
    found["read_only"] = {name: {"rc": step["rc"], "traceback": "Traceback" in step["stderr"],
                                 "seconds": step["seconds"], "message": _first_line(step["stderr"])}
                          for name, step in report.items() if isinstance(step, dict)}
    return found


def table(figures: dict) -> str:
    rows = ["| check | result |", "|---|---|"]
    for name in ("index", "batch"):
        trial = figures["kills"][name]
        startup = sum(moment.startswith("start-up") for moment in trial["moments"])
        rows.append(f"| `{name}`: SIGKILLs survived | {trial['kills']} ({startup} during start-up), {trial['runs']} "
                    f"runs, {trial['seconds']:.0f} s |")
        if name == "index":
            rows.append(f"| `index`: after each kill, integrity_check ok / opened by the app | {trial['integrity_ok']}"
                        f" / {trial['opened_by_app']} of {trial['checked']} (killed before the file existed: "
                        f"{trial['before_the_file_existed']}) |")
            rows.append(f"| `index`: finished = uninterrupted run | {trial['rows']} rows, "
                        f"{len(trial['differing'])} differing; vectors bit-equal {trial['vectors_exactly_equal']} of "
                        f"{trial['vectors']} (max difference {trial['max_vector_diff']:.1e}) |")
        else:
            rows.append(f"| `batch`: after each kill, half or duplicate rows | torn tails {trial['torn_tails']} "
                        f"({trial['torn_bytes_cut']} bytes, cut on resume); broken or duplicate rows: "
                        f"{'none' if not trial['problems'] else trial['problems']} |")
            rows.append(f"| `batch`: finished = uninterrupted run | {trial['rows']} rows, {len(trial['differing'])} "
                        f"differing (timing fields aside; {trial['exactly_equal']} identical to 12 digits); its index:"
                        f" {len(trial['index_differing'])} differing |")
        rows.append(f"| `{name}`: bytes lost | {trial['bytes_lost']} |")
    for fmt in ("jsonl", "csv"):
        case = figures.get("disk", {}).get(f"results_{fmt}")
        if case:
            rows.append(f"| `batch --out R.{fmt}` on a full tmpfs | exit {case['rc']}, {case['rows_before_full']} rows"
                        f" kept, whole last row {case['ends_with_whole_row']}, parses {case['parses']}; after freeing"
                        f" space exit {case['resumed_rc']}, {case['final_rows']} rows, each file once "
                        f"{case['final_each_file_once']} |")
    case = figures.get("disk", {}).get("index")
    if case:
        rows.append(f"| `index` with the data folder on a full tmpfs | exit {case['rc']}, {case['rows_before_full']} "
                    f"rows kept, integrity {case['integrity_after_full']}, search while full exit "
                    f"{case['search_while_full_rc']}; after freeing space exit {case['resumed_rc']}, "
                    f"{case['final_rows']} rows, {case['differing_from_uninterrupted']} differing from an "
                    f"uninterrupted run, bytes lost {case['bytes_lost']} |")
    refusals = figures.get("disk", {}).get("read_only")
    if refusals:
        meant = [step for name, step in refusals.items() if name not in READ_ONLY_ALLOWED]
        refused = [step for step in meant if step["rc"] == EXIT_STORAGE]
        rows.append(f"| read-only output or data folder | {len(refused)} of {len(meant)} refused at start with exit "
                    f"{EXIT_STORAGE} in at most {max(step['seconds'] for step in meant):.1f} s, tracebacks: "
                    f"{sum(step['traceback'] for step in refusals.values())}; `batch --no-index` with a read-only "
                    f"data folder: exit {refusals['batch_ro_data_no_index']['rc']} |")
    return "\n".join(rows)


def problems(figures: dict) -> list[str]:
    found = []
    for name in ("index", "batch"):
        trial = figures["kills"][name]
        found += [f"{name}: {problem}" for problem in trial["problems"]]
        if trial["bytes_lost"]:
            found.append(f"{name}: {trial['bytes_lost']} bytes lost")
        if trial["differing"]:
            found.append(f"{name}: {len(trial['differing'])} rows differ from the uninterrupted run")
    for name, case in figures.get("disk", {}).items():
        steps = case.items() if name == "read_only" else [(name, case)]
        for step_name, step in steps:
            if step.get("traceback"):
                found.append(f"{step_name}: a traceback")
            if name == "read_only" and (step["rc"] == EXIT_STORAGE) == (step_name in READ_ONLY_ALLOWED):
                found.append(f"{step_name}: exit {step['rc']}")
        if name != "read_only" and (case["rc"] != EXIT_STORAGE or case["resumed_rc"] not in (0, 1)):
            found.append(f"{name}: exit {case['rc']}, then {case['resumed_rc']}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=150)
    parser.add_argument("--notes", type=int, default=148)
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs per command (default 20)")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--no-disk", action="store_true", help="skip the full and read-only tmpfs scenarios")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "reliability.json",
                        help="where the figures go (default bench/out/reliability.json, not committed)")
    args = parser.parse_args()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fusiondesk-reliability-") as scratch:
        work = Path(scratch)
        folder = work / "corpus"
        files = faults.make_corpus(folder, args.images, args.notes, seed=args.seed)
        print(f"{len(files)} files, {args.kills} kills per command, seed {args.seed}", file=sys.stderr)
        figures: dict = {"files": len(files), "kills_asked": args.kills, "seed": args.seed,
                         "cpu_count": os.cpu_count(), "load_average": os.getloadavg()}
        figures["kills"] = kills(args, folder, files, work)
        mountable, why = faults.can_mount()
        if args.no_disk or not mountable:
            figures["disk_skipped"] = "--no-disk" if args.no_disk else why
        else:
            batch_bytes = len((work / "reference-batch" / "results.jsonl").read_bytes())
            index_bytes = sum(p.stat().st_size for p in (work / "reference-index" / "data" / "indexes").iterdir())
            figures["disk"] = disk(folder, files, work, batch_bytes, index_bytes)
        figures["seconds"] = round(time.monotonic() - start, 1)
    figures["problems"] = problems(figures)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(table(figures))
    print(f"\n{figures['files']} files; {figures['seconds']:.0f} s in all; figures in {args.json}")
    for problem in figures["problems"]:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if figures["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
