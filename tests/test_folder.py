"""Batch folder mode on a generated archive: real photos, a rendered scan, espeak-ng speech, text notes and bad
files -> the right rows and error rows; a SIGKILLed run resumed gives each file exactly once; --watch picks up
a file copied in afterwards; inputs are never modified."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import ROOT, speak
from engine.folder import (BatchOptions, BatchRun, FileEntry, ResultsFile, Skipped, columns_for, flatten,
                           read_results, run_batch, walk)

SPEECH = "the quarterly budget meeting moved to thursday afternoon"
NOTE = "Buy flour, eggs and butter for the birthday cake on Sunday."


def _scan(path: Path) -> Path:
    from docs import INVOICE, render

    render(INVOICE, seed=3).image.save(path)
    return path


def _tree_state(folder: Path) -> dict[str, tuple[str, int]]:
    """Content hash and mtime of every file (links not followed): what "never modified" is checked against."""
    state = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            state[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    return state


@pytest.fixture(scope="module")
def archive(tmp_path_factory, photos) -> Path:
    root = tmp_path_factory.mktemp("archive")
    (root / "photos" / "2023").mkdir(parents=True)
    (root / "scans").mkdir()
    (root / "audio").mkdir()
    (root / "notes").mkdir()
    Image.open(photos["chelsea"]).save(root / "photos" / "chelsea.jpg", quality=90)
    Image.open(photos["rocket"]).crop((50, 0, 450, 400)).save(root / "photos" / "2023" / "rocket.jpg", quality=90)
    _scan(root / "scans" / "invoice.png")
    speak(SPEECH, root / "audio" / "meeting.wav")
    (root / "notes" / "shopping.txt").write_text(NOTE, encoding="utf-8")
    # The bad and the odd:
    (root / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 3)
    (root / "audio" / "empty.wav").write_bytes(b"")
    (root / "notes" / ".draft.txt").write_text("hidden draft", encoding="utf-8")
    (root / "notes" / "data.bin").write_bytes(bytes(range(256)) * 4)
    (root / "outside.txt").symlink_to("/etc/hostname")
    return root


@pytest.fixture(scope="module")
def batch_result(archive, runtime, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("results")
    before = _tree_state(archive)
    summary = run_batch(archive, out_dir / "results.jsonl",
                        BatchOptions(transcripts_dir=out_dir / "transcripts", workers=2, batch_size=4), runtime)
    return summary, read_results(out_dir / "results.jsonl"), out_dir, before


def test_walk_explains_every_odd_entry(archive):
    found = list(walk(archive))
    skipped = {s.rel: s.reason for s in found if isinstance(s, Skipped)}
    files = {e.rel: e for e in found if isinstance(e, FileEntry)}
    assert skipped["notes/.draft.txt"] == "hidden file"
    assert skipped["outside.txt"] == "symbolic link to outside the folder"
    assert "unsupported file type" in skipped["notes/data.bin"]
    assert files["audio/empty.wav"].problem == "the file is empty"
    assert files["photos/2023/rocket.jpg"].modality == "image"
    assert list(files) == sorted(files)  # deterministic order
    # Globs match the path or the bare name, case-insensitively; excluded folders are not entered.
    only_jpg = [e.rel for e in walk(archive, include=["*.JPG"]) if isinstance(e, FileEntry)]
    assert only_jpg == ["photos/2023/rocket.jpg", "photos/broken.jpg", "photos/chelsea.jpg"]
    no_2023 = list(walk(archive, include=["*.jpg"], exclude=["photos/2023"]))
    assert Skipped("photos/2023", "folder excluded by --exclude") in no_2023
    flat = [e.rel for e in walk(archive / "photos", recursive=False) if isinstance(e, FileEntry)]
    assert flat == ["broken.jpg", "chelsea.jpg"]


def test_batch_rows_and_error_rows(batch_result):
    summary, rows, out_dir, _ = batch_result
    by_file = {row["file"]: row for row in rows}
    assert len(rows) == len(by_file) == 7
    cat = by_file["photos/chelsea.jpg"]
    assert cat["status"] == "ok" and cat["modality"] == "image"
    assert any("cat" in item["label"].lower() for item in cat["classify"]["labels"][:3])
    assert {"labels", "evidence"} <= set(cat["classify"]) and {"text", "lines"} <= set(cat["read"])
    assert "transcribe" not in cat and "embed" not in cat  # only what fits, and vectors only when asked
    scan = by_file["scans/invoice.png"]
    assert "INVOICE" in scan["read"]["text"].upper() and "Total" in scan["read"]["text"]
    meeting = by_file["audio/meeting.wav"]
    assert meeting["modality"] == "audio" and "budget" in meeting["transcribe"]["text"].lower()
    assert {"text", "language", "segments", "duration", "model", "task"} <= set(meeting["transcribe"])
    note = by_file["notes/shopping.txt"]
    assert note["modality"] == "text" and note["classify"]["evidence"]["text"] == NOTE
    assert by_file["photos/broken.jpg"]["status"] == "error" and by_file["photos/broken.jpg"]["error"]
    assert by_file["audio/empty.wav"] == {**by_file["audio/empty.wav"], "status": "error", "error": "the file is empty"}
    assert summary.ok == 5 and summary.failed == 2 and not summary.exit_ok
    # Every field a row has is a CSV column: the CSV form loses nothing.
    columns = set(columns_for(("classify", "read", "transcribe")))
    assert all(set(flatten(row)) <= columns for row in rows)
    reasons = {s.rel: s.reason for s in summary.skip_reasons}
    assert set(reasons) == {"notes/.draft.txt", "notes/data.bin", "outside.txt"}
    # Transcripts mirror the input's subfolders.
    assert "budget" in (out_dir / "transcripts" / "audio" / "meeting.txt").read_text().lower()
    assert "-->" in (out_dir / "transcripts" / "audio" / "meeting.srt").read_text()


def test_inputs_are_never_modified(archive, batch_result):
    assert _tree_state(archive) == batch_result[3]


def test_rerun_resumes_and_csv_is_flat(archive, batch_result, runtime, tmp_path):
    _, rows, out_dir, _ = batch_result
    again = run_batch(archive, out_dir / "results.jsonl", BatchOptions(transcripts_dir=out_dir / "transcripts"), runtime)
    assert again.resumed == 7 and again.ok == again.failed == 0
    assert len(read_results(out_dir / "results.jsonl")) == len(rows)

    csv_out = tmp_path / "notes.csv"
    summary = run_batch(archive, csv_out, BatchOptions(tasks=("classify", "embed"), include=["*.txt"]), runtime)
    assert summary.ok == 1 and summary.exit_ok
    (row,) = read_results(csv_out)
    assert list(row) == columns_for(("classify", "embed"))
    assert row["file"] == "notes/shopping.txt" and row["classify.evidence.text"] == NOTE
    assert len(json.loads(row["embed.vector"])) == int(row["embed.dim"]) == 384
    with pytest.raises(Exception, match="other columns"):
        ResultsFile(csv_out, columns_for(("read",)))


def test_task_that_fits_nothing_skips_the_file(archive, runtime, tmp_path):
    summary = run_batch(archive, tmp_path / "r.jsonl", BatchOptions(tasks=("transcribe",), include=["*.txt"]), runtime)
    assert summary.ok == 0 and summary.skipped >= 1
    assert any(s.reason == "no requested task applies to text files" for s in summary.skip_reasons)


KILLER = textwrap.dedent("""
    import os, signal, sys
    from engine.folder import BatchOptions, run_batch

    def die_after_three(progress):
        if progress.done == 3:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush at exit: what a crash or `kill -9` does

    run_batch(sys.argv[1], sys.argv[2], BatchOptions(tasks=("classify",), batch_size=2, workers=2),
              progress=die_after_three)
    """)


def test_sigkill_then_resume_gives_each_file_once(photos, runtime, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i, (name, path) in enumerate(sorted(photos.items())):
        image = Image.open(path)
        image.save(folder / f"{name}.jpg", quality=85)
        image.resize((image.width // 2, image.height // 2)).save(folder / f"{name}_small.jpg", quality=85)
        (folder / f"note{i}.txt").write_text(f"note number {i} about {name}", encoding="utf-8")
    expected = sorted(p.name for p in folder.iterdir())
    out = tmp_path / "results.jsonl"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    killed = subprocess.run([sys.executable, "-c", KILLER, str(folder), str(out)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    partial = read_results(out)
    assert 3 <= len(partial) < len(expected)
    with open(out, "ab") as handle:
        handle.write(b'{"file": "torn by a crash mid-wri')  # a half-written row must be cut, not parsed

    summary = run_batch(folder, out, BatchOptions(tasks=("classify",), batch_size=2, workers=2), runtime)
    rows = read_results(out)
    assert sorted(row["file"] for row in rows) == expected  # every file, exactly once
    assert summary.resumed == len(partial) and summary.ok + summary.failed == len(expected) - len(partial)
    assert all(row["status"] == "ok" for row in rows)


def test_watch_picks_up_a_file_copied_in(runtime, tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "first.txt").write_text("the first note in the inbox", encoding="utf-8")
    out = tmp_path / "watch.jsonl"
    stop = threading.Event()
    run = BatchRun(folder, out, BatchOptions(tasks=("classify",)), runtime, stop=stop)
    assert run.run().ok == 1
    watcher = threading.Thread(target=run.watch, kwargs={"settle_seconds": 0.3}, daemon=True)
    watcher.start()
    try:
        time.sleep(0.5)  # the observer is up
        (folder / "later").mkdir()
        (folder / "later" / "second.txt").write_text("a note copied in while watching", encoding="utf-8")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(row["file"] == "later/second.txt" for row in read_results(out)):
                break
            time.sleep(0.2)
    finally:
        stop.set()
        watcher.join(timeout=10)
    rows = read_results(out)
    assert [row["file"] for row in rows] == ["first.txt", "later/second.txt"]
    assert not watcher.is_alive()


def test_cli_batch_exit_code_and_summary(archive, runtime, tmp_path, capsys):
    from desktop.cli import main

    code = main(["batch", str(archive), "--out", str(tmp_path / "r.jsonl"), "--tasks", "classify",
                 "--include", "*.txt", "*.wav", "--exclude", "audio/*"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "1 ok, 0 failed" in err
    assert [row["file"] for row in read_results(tmp_path / "r.jsonl")] == ["notes/shopping.txt"]
    code = main(["batch", str(archive), "--out", str(tmp_path / "bad.jsonl"), "--tasks", "transcribe",
                 "--include", "*.wav"])
    assert code == 1  # the empty recording failed
    assert "audio/empty.wav: error: the file is empty" in capsys.readouterr().err


def test_folder_tab_runs_the_same_engine(runtime, tmp_path):
    """The UI's Run handler: live progress updates, then the summary, the newest rows and the results file."""
    from desktop.ui_folder import run_folder

    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "cake.txt").write_text(NOTE, encoding="utf-8")
    (folder / "empty.txt").write_bytes(b"")
    updates = list(run_folder(str(folder), str(tmp_path / "ui.csv"), ["classify"], "cooking, sailing", True, True, "", ""))
    status, progress, table, results = updates[-1]
    assert status.startswith("**Done**") and "1 ok, 1 failed" in status
    assert "2 / 2 files" in progress
    assert {row[0]: row[2] for row in table} == {"cake.txt": "ok", "empty.txt": "error"}
    assert next(row for row in table if row[0] == "cake.txt")[3].startswith("cooking")
    assert results == str(tmp_path / "ui.csv") and len(read_results(results)) == 2


def test_folder_tab_rerun_shows_the_earlier_results_with_the_new(runtime, tmp_path):
    from desktop.ui_folder import run_folder

    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "cake.txt").write_text(NOTE, encoding="utf-8")
    out = str(tmp_path / "ui.jsonl")
    list(run_folder(str(folder), out, ["classify"], "cooking, sailing", True, True, "", ""))
    (folder / "boat.txt").write_text("We sailed the boat across the bay in a strong wind.", encoding="utf-8")
    status, _, table, _ = list(run_folder(str(folder), out, ["classify"], "cooking, sailing", True, True, "", ""))[-1]
    assert "1 ok" in status and "1 already done" in status
    assert [row[0] for row in table] == ["boat.txt", "cake.txt"]  # the new first, the earlier still shown
    assert table[0][3].startswith("sailing") and table[1][3].startswith("cooking")


# -- detect, segment, translate and trained heads in folder mode ---------------------------------------------------

PORTUGUESE_NOTE = "O gato está dormindo no sofá. Nosso voo para Lisboa atrasou duas horas."
ENGLISH_NOTE = "The museum is closed on Mondays."
SIGN = ["Proibido fumar neste local"]


def _iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def scene_folder(tmp_path_factory, photos) -> Path:
    """Photos in a subfolder; the astronaut at twice its size, so folder mode decodes it reduced (512 px)."""
    root = tmp_path_factory.mktemp("scene")
    (root / "trip" / "day1").mkdir(parents=True)
    astronaut = Image.open(photos["astronaut"])
    astronaut.resize((astronaut.width * 2, astronaut.height * 2)).save(root / "trip" / "day1" / "astronaut.jpg", quality=92)
    Image.open(photos["coffee"]).save(root / "trip" / "day1" / "coffee.jpg", quality=92)
    return root


def test_detect_and_segment_rows_in_original_pixels_and_masks_mirrored(scene_folder, runtime, tmp_path):
    from engine import scene
    from engine.imaging import load_image

    before = _tree_state(scene_folder)
    masks = tmp_path / "masks"
    # The cup on the coffee photo scores 0.28 (test_scene): below the detector's default, so --threshold 0.25.
    summary = run_batch(scene_folder, tmp_path / "scene.jsonl",
                        BatchOptions(tasks=("detect", "segment"), masks_dir=masks, threshold=0.25), runtime)
    assert summary.ok == 2 and summary.exit_ok
    rows = {row["file"]: row for row in read_results(tmp_path / "scene.jsonl")}
    for name, label in (("astronaut", "person"), ("coffee", "cup")):
        rel = f"trip/day1/{name}.jpg"
        full = load_image(scene_folder / rel)  # the whole file, no reduced decoding
        expected = scene.detect([full], score_threshold=0.25, runtime=runtime)[0]
        found = rows[rel]["detect"]["objects"]
        # The decoded picture is not the file's (reduced, or re-encoded by the decoder), so detections near the
        # threshold may come and go; the object itself must be where the full-size detection puts it.
        best = next(o for o in found if o["label"] == label)
        reference = next(d for d in expected if d.label == label)
        assert _iou(best["box"], reference.box) >= 0.95 and abs(best["score"] - reference.score) < 0.03
        assert max(best["box"][2], best["box"][3]) > 0.6 * max(full.size)  # file pixels, not the decoded 512
    # Segmentation pictures mirror the subfolders, at the photo's own size; a photo with nobody on it (the coffee
    # cup) has no people and no picture.
    mask_rel = rows["trip/day1/astronaut.jpg"]["segment"]["mask"]
    assert mask_rel == "trip/day1/astronaut.mask.png"
    assert Image.open(masks / mask_rel).size == load_image(scene_folder / "trip/day1/astronaut.jpg").size
    assert rows["trip/day1/astronaut.jpg"]["segment"]["person_fraction"] > 0.3
    assert rows["trip/day1/coffee.jpg"]["segment"] == {"person_fraction": 0.0, "mask": None}
    assert not (masks / "trip/day1/coffee.mask.png").exists()
    assert _tree_state(scene_folder) == before  # nothing written into the input folder
    columns = set(columns_for(("detect", "segment")))
    assert all(set(flatten(row)) <= columns for row in rows.values())


def test_translate_rows_for_notes_and_signs(runtime, tmp_path):
    from docs import render

    folder = tmp_path / "pt"
    (folder / "notes").mkdir(parents=True)
    (folder / "signs").mkdir()
    (folder / "notes" / "nota.txt").write_text(PORTUGUESE_NOTE, encoding="utf-8")
    (folder / "notes" / "museum.txt").write_text(ENGLISH_NOTE, encoding="utf-8")
    render(SIGN, font="DejaVuSans-Bold.ttf", size=44, seed=3).image.save(folder / "signs" / "placa.png")
    out = tmp_path / "translated.csv"
    summary = run_batch(folder, out, BatchOptions(tasks=("translate",)), runtime)
    assert summary.ok == 3 and summary.exit_ok
    rows = {row["file"]: row for row in read_results(out)}
    assert list(next(iter(rows.values()))) == columns_for(("translate",))
    note = rows["notes/nota.txt"]
    assert note["translate.source"] == "pt" and note["translate.from"] == "text" and note["translate.target"] == "en"
    assert {"cat", "sleeping", "flight", "lisbon"} <= set(note["translate.text"].lower().replace(".", " ").split())
    sign = rows["signs/placa.png"]
    assert sign["translate.from"] == "ocr" and sign["translate.source"] == "pt" and "smoking" in sign["translate.text"].lower()
    museum = rows["notes/museum.txt"]
    assert museum["translate.text"] == ENGLISH_NOTE and museum["translate.note"] == "already in English"


def test_translate_without_the_pack_stops_at_once(tmp_path):
    from engine.manifest import ModelBundle
    from engine.runtime import Runtime
    from engine.translate import TranslationNotInstalled

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({"schema_version": 1, "bundle_version": "x", "models": []}))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text(PORTUGUESE_NOTE, encoding="utf-8")
    with pytest.raises(TranslationNotInstalled, match="translation is not installed"):
        BatchRun(tmp_path / "in", tmp_path / "r.jsonl", BatchOptions(tasks=("translate",)),
                 Runtime(ModelBundle(bundle), device="cpu"))
    assert not (tmp_path / "r.jsonl").exists()  # no row per file: nothing was started


def test_batch_with_a_trained_head_reports_its_classes(runtime, tmp_path):
    from desktop.cli import main
    from engine import teach

    notes = {
        "kitchen": ["Whisk the eggs with sugar and bake the cake for forty minutes.",
                    "Chop the onions and fry them in olive oil until golden.",
                    "Boil the pasta in salted water and drain it.",
                    "Knead the bread dough and let it rise for an hour."],
        "sailing": ["Hoist the mainsail and trim the jib for a close reach.",
                    "The harbour master warned of strong winds near the reef.",
                    "We dropped anchor in the bay and furled the sails.",
                    "Check the tide tables before leaving the marina."],
    }
    data = tmp_path / "data"
    for label, texts in notes.items():
        (data / label).mkdir(parents=True)
        for i, text in enumerate(texts):
            (data / label / f"{i}.txt").write_text(text, encoding="utf-8")
    teach.train_head(data, "hobbies", folds=2, runtime=runtime)
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "recipe.txt").write_text("Stir the soup and add salt and pepper before serving.", encoding="utf-8")
    (folder / "log.txt").write_text("Raised the sails at dawn and sailed out of the harbour.", encoding="utf-8")
    out = tmp_path / "head.csv"
    code = main(["batch", str(folder), "--out", str(out), "--tasks", "classify", "--head", "hobbies"])
    assert code == 0
    rows = {row["file"]: row for row in read_results(out)}
    assert list(rows["log.txt"]) == columns_for(("classify",), head=True)
    assert {row["classify.head"] for row in rows.values()} == {"hobbies"}
    top = {name: json.loads(row["classify.labels"])[0]["label"] for name, row in rows.items()}
    assert top == {"recipe.txt": "kitchen", "log.txt": "sailing"}
    assert {item["label"] for item in json.loads(rows["log.txt"]["classify.labels"])} == {"kitchen", "sailing"}


def test_folder_tab_translates_into_the_chosen_language(runtime, tmp_path):
    """The tab passes the chosen language to the run (not the results path) and the rows carry the translation."""
    from desktop.ui_folder import run_folder

    folder = tmp_path / "notas"
    folder.mkdir()
    (folder / "nota.txt").write_text(PORTUGUESE_NOTE, encoding="utf-8")
    results = tmp_path / "ui.jsonl"
    status, _, table, written = list(run_folder(str(folder), str(results), ["translate"], "", True, True, "", "",
                                                target="en"))[-1]
    assert status.startswith("**Done**") and "1 ok" in status, status
    (row,) = read_results(written)
    assert row["translate"]["target"] == "en" and "cat" in row["translate"]["text"].lower(), row


def test_results_path_that_is_not_ours_is_never_changed(runtime, tmp_path):
    """--out pointing at someone else's file: refused with or without --resume, and the file stays as it was."""
    from engine.errors import FusionDeskError
    from engine.folder import ResultsFile

    for name, content in (("notes.csv", "name,phone\nAda,123\npartial line"), ("diary.jsonl", '{"day": 1}\nhalf')):
        other = tmp_path / name
        other.write_text(content, encoding="utf-8")
        for resume in (True, False):
            with pytest.raises(FusionDeskError):
                ResultsFile(other, ["file", "modality", "status", "error", "size", "mtime"], resume=resume)
            assert other.read_text(encoding="utf-8") == content


def test_read_boxes_of_a_large_scan_are_in_the_files_pixels(runtime, tmp_path):
    """A scan larger than OCR's working size is decoded reduced in folder mode; its line boxes must still be in
    the file's own pixels, as `fusiondesk read` gives them."""
    from PIL import ImageDraw, ImageFont

    from engine.tasks import read_files

    folder = tmp_path / "scans"
    folder.mkdir()
    page = Image.new("RGB", (3200, 1200), (248, 246, 240))
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 90)
    draw.text((200, 200), "Invoice 2026 for the garden", fill=(20, 20, 20), font=font)
    draw.text((1400, 800), "Total due 300 EUR", fill=(20, 20, 20), font=font)
    page.save(folder / "big.png")
    out = tmp_path / "r.jsonl"
    summary = BatchRun(folder, out, BatchOptions(tasks=("read",)), runtime).run()
    assert summary.ok == 1
    (row,) = read_results(out)
    (direct,) = read_files([folder / "big.png"], runtime=runtime)
    batch_boxes = sorted(tuple(map(round, line["box"][0])) for line in row["read"]["lines"])
    direct_boxes = sorted(tuple(map(round, line["box"][0])) for line in direct["lines"])
    assert len(batch_boxes) == len(direct_boxes) == 2, (row["read"], direct)
    for (bx, by), (dx, dy) in zip(batch_boxes, direct_boxes):
        assert abs(bx - dx) < 40 and abs(by - dy) < 40, (batch_boxes, direct_boxes)
    assert max(x for x, _ in batch_boxes) > 1300  # the second line's box is where it is in the 3200 px file
