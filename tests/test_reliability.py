"""Reliability under faults (issue 18, items 2 and 3), on real files (crops of scikit-image's photographs, text
notes, a copy and a corrupt JPEG): `fusiondesk index` and `fusiondesk batch` SIGKILLed at seeded random moments
leave an index that opens with integrity_check ok and a results file without a half or duplicate row, and the
next run finishes with what an uninterrupted run gives; a disk that fills up mid-run (a small tmpfs in a
private mount namespace) stops the run with the path and the free space named, leaves both valid, and the same
command finishes once space is freed; read-only places are refused at start with a message, never a traceback.

The long version (hundreds of files, 20+ kills) is bench/bench_reliability.py."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import faults
from conftest import ROOT
from desktop.cli import EXIT_FILE_FAILED, EXIT_OK, EXIT_STORAGE
from engine.folder import ResultsFile, columns_for, read_results
from faults import can_mount, compare_index, in_private_mount, index_bytes_lost, index_state, make_corpus

KILLS = 5
SEED = 18


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("corpus")
    return folder, make_corpus(folder, images=30, notes=28, seed=SEED)


@pytest.fixture(scope="module")
def reference_index(corpus, tmp_path_factory) -> dict:
    """An uninterrupted `fusiondesk index` of the corpus: the rows every interrupted run must end with."""
    folder, files = corpus
    reference = faults.reference_index(folder, tmp_path_factory.mktemp("reference-index"))
    assert reference["rc"] in (EXIT_OK, EXIT_FILE_FAILED), reference["stderr"]
    assert reference["integrity"] == "ok" and len(reference["rows"]) == len(files)
    return reference


@pytest.fixture(scope="module")
def reference_batch(corpus, tmp_path_factory) -> dict:
    folder, files = corpus
    reference = faults.reference_batch(folder, tmp_path_factory.mktemp("reference-batch"))
    assert reference["rc"] in (EXIT_OK, EXIT_FILE_FAILED), reference["stderr"]
    assert sorted(row["file"] for row in reference["rows"]) == files
    return reference


# ------------------------------------------------------------------------------------------- SIGKILL


def test_index_killed_at_random_moments_ends_as_an_uninterrupted_run(corpus, reference_index, tmp_path):
    folder, files = corpus
    trial = faults.index_under_kills(folder, len(files), tmp_path, KILLS, SEED, reference_index)
    assert not trial["problems"], trial["problems"]
    assert trial["kills"] == KILLS, f"only {trial['kills']} kills landed before the run finished: {trial}"
    assert max(trial["progress"]) > 0, f"no kill came after a stored batch: {trial}"
    # Every kill left an index that opens (integrity_check ok, and the app's own open) once the file existed.
    checked = KILLS - trial["before_the_file_existed"]
    assert trial["integrity_ok"] == trial["opened_by_app"] == trial["checked"] == checked
    assert trial["final_rc"] in (EXIT_OK, EXIT_FILE_FAILED) and trial["final_integrity"] == "ok"
    assert not trial["differing"], trial["differing"]  # same rows, same vectors as the uninterrupted run
    assert trial["rows"] == len(files) and trial["max_vector_diff"] <= faults.VECTOR_TOLERANCE
    assert trial["bytes_lost"] == 0


def test_batch_killed_at_random_moments_has_each_row_once_as_uninterrupted(corpus, reference_batch, tmp_path):
    folder, files = corpus
    trial = faults.batch_under_kills(folder, len(files), tmp_path, KILLS, SEED + 1, reference_batch)
    assert not trial["problems"], trial["problems"]
    assert trial["kills"] == KILLS, f"only {trial['kills']} kills landed before the run finished: {trial}"
    assert trial["final_rc"] in (EXIT_OK, EXIT_FILE_FAILED)
    assert trial["files"] == files  # every file exactly once
    assert not trial["differing"], trial["differing"]  # the rows of an uninterrupted run (timing fields aside)
    assert trial["bytes_lost"] == 0, f"{trial['bytes_lost']} bytes of rows written before a kill are gone"
    # The batch's own index (each batch is indexed before its rows are written) ends as the reference's.
    assert trial["index_integrity_ok"] == trial["index_checked"]
    assert not trial["index_differing"], trial["index_differing"]


# ------------------------------------------------------------------------------- torn and short writes


def test_a_torn_csv_row_ending_inside_a_quoted_newline_is_cut_on_resume(tmp_path):
    """A CSV cell may hold a newline (OCR text, a note): the torn row's last newline is inside its quotes, so
    cutting at the last newline alone would keep half a row, take its file as done, and swallow the next row."""
    out = tmp_path / "r.csv"
    columns = columns_for(("read",))

    def row(name: str) -> dict:
        return {"file": name, "modality": "image", "status": "ok", "size": 1, "mtime": 1.0,
                "read": {"text": "line one\nline two", "lines": [], "rejected_lines": []}}

    with ResultsFile(out, columns) as results:
        results.append(row("a.jpg"))
    whole = out.read_bytes()
    a_row = whole.split(b"\n", 1)[1]
    with open(out, "ab") as handle:  # b.jpg's row, killed just after the newline inside its text cell
        handle.write(a_row[:a_row.index(b"line one\n") + 9].replace(b"a.jpg", b"b.jpg"))

    with ResultsFile(out, columns) as results:
        assert set(results.done) == {"a.jpg"}, "the torn row's file must be done again"
        results.append(row("b.jpg"))
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [r["file"] for r in rows] == ["a.jpg", "b.jpg"]
    assert all(r["read.text"] == "line one\nline two" for r in rows)


SHORT_WRITE = textwrap.dedent("""
    import json, os, resource, signal, sys
    from engine.errors import StorageError
    from engine.folder import ResultsFile, columns_for

    out, fmt = sys.argv[1], sys.argv[2]
    row = lambda name, text: {"file": name, "modality": "text", "status": "ok", "size": 1, "mtime": 1.0,
                              "read": {"text": text, "lines": [], "rejected_lines": []}}
    results = ResultsFile(out, columns_for(("read",)))
    results.append(row("a.txt", "short"))
    size = os.path.getsize(out)
    # The file may grow by 100 more bytes (RLIMIT_FSIZE): the next row's write is cut short, then refused.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, resource.RLIM_INFINITY))
    try:
        results.append(row("b.txt", "long\\n" * 200))
    except StorageError as exc:
        print(json.dumps({"error": str(exc), "size": size}))
    """)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_short_write_leaves_no_half_row(tmp_path, fmt):
    """A write the file system cuts short (a full disk, a quota, a size limit) is taken back to the last whole
    row and reported with the file's name; no mount needed: RLIMIT_FSIZE cuts the write."""
    out = tmp_path / f"r.{fmt}"
    done = subprocess.run([sys.executable, "-c", SHORT_WRITE, str(out), fmt], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert str(out) in report["error"] and "too large" in report["error"], report
    assert out.stat().st_size == report["size"], "the half row must be cut off"
    assert [row["file"] for row in read_results(out)] == ["a.txt"]


# ---------------------------------------------------------------------------------- full and read-only disks

MOUNTABLE, WHY_NOT = can_mount()
needs_mount = pytest.mark.skipif(not MOUNTABLE, reason=f"no private tmpfs here ({WHY_NOT}): the disk-full and "
                                                       "read-only checks need root and `unshare -m`")


def _clear_error(step: dict, *names: str) -> None:
    assert step["rc"] == EXIT_STORAGE, step
    assert "Traceback" not in step["stderr"], step["stderr"]
    for name in names:
        assert name in step["stderr"], f"{name!r} not named in: {step['stderr']}"


@needs_mount
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_results_file_on_a_disk_that_fills_up(corpus, tmp_path, fmt):
    folder, files = corpus
    report = in_private_mount("results-full", "--work", str(tmp_path), "--folder", str(folder), "--format", fmt,
                              "--size", str(1 << 20), "--leave", str(24 << 10))
    out = tmp_path / "mnt" / f"results.{fmt}"
    _clear_error(report["full"], str(out), "free")
    assert report["free_after_full"] < 8192, "the disk was meant to fill up"
    text = (tmp_path / f"full.{fmt}").read_text(encoding="utf-8")
    assert text.endswith("\n"), "a half row was left at the end"
    if fmt == "csv":
        partial = list(csv.DictReader(io.StringIO(text)))
        assert all(None not in row and len(row) == len(partial[0]) for row in partial)
    else:
        partial = [json.loads(line) for line in text.splitlines()]
    assert 0 < len(partial) < len(files)

    assert report["resumed"]["rc"] in (EXIT_OK, EXIT_FILE_FAILED), report["resumed"]
    final = read_results(tmp_path / f"final.{fmt}")
    assert sorted(row["file"] for row in final) == files  # each file once: nothing lost, nothing twice
    assert [row["file"] for row in final[:len(partial)]] == [row["file"] for row in partial]


@needs_mount
def test_index_on_a_disk_that_fills_up(corpus, reference_index, tmp_path):
    folder, files = corpus
    report = in_private_mount("index-full", "--work", str(tmp_path), "--folder", str(folder),
                              "--size", str(2 << 20), "--leave", str(192 << 10))
    _clear_error(report["full"], str(tmp_path / "mnt" / "data" / "indexes"), "free")
    assert report["free_after_full"] < 8192, "the disk was meant to fill up"
    assert report["integrity_in_place_while_full"] == "ok"
    assert report["search_while_full"]["rc"] == EXIT_OK, report["search_while_full"]  # reading needs no space
    name = report["index_name"]
    full = index_state(tmp_path / "full" / name)
    assert full["integrity"] == "ok" and len(full["rows"]) < len(files)

    assert report["resumed"]["rc"] in (EXIT_OK, EXIT_FILE_FAILED), report["resumed"]
    final = index_state(tmp_path / "final" / name)
    assert final["integrity"] == "ok"
    compared = compare_index(final["rows"], reference_index["rows"])
    assert not compared["differing"], compared
    assert index_bytes_lost(full["rows"], final["rows"]) == 0


@needs_mount
def test_read_only_places_are_refused_at_start(corpus, tmp_path):
    folder, _ = corpus
    report = in_private_mount("read-only", "--work", str(tmp_path), "--folder", str(folder))
    ro_out = tmp_path / "ro-out"
    _clear_error(report["batch_new_out"], str(ro_out / "results" / "r.jsonl"), "read-only")
    _clear_error(report["batch_new_out_folder"], str(ro_out / "sub"), "read-only")
    _clear_error(report["batch_existing_out"], str(ro_out / "results" / "earlier.jsonl"), "read-only")
    for step in ("index_ro_data_empty", "batch_ro_data_empty"):
        _clear_error(report[step], str(tmp_path / "ro-data-empty" / "indexes"), "read-only", "FUSIONDESK_DATA_DIR")
    assert report["index_before_ro"]["rc"] == EXIT_OK, report["index_before_ro"]
    for step in ("index_ro_data_indexed", "batch_ro_data_indexed"):
        _clear_error(report[step], str(tmp_path / "ro-data-indexed" / "indexes"), "read-only")
    assert "--no-index" in report["batch_ro_data_empty"]["stderr"]
    for step in ("batch_new_out", "batch_new_out_folder", "batch_existing_out", "index_ro_data_empty",
                 "batch_ro_data_empty", "index_ro_data_indexed", "batch_ro_data_indexed"):
        assert "ok," not in report[step]["stderr"], f"{step}: refused only after processing files"
    # Results alone need no data folder: --no-index works on a read-only one.
    assert report["batch_ro_data_no_index"]["rc"] == EXIT_OK, report["batch_ro_data_no_index"]
    assert report["outputs_written"] == ["r3.jsonl"]
