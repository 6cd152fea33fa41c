"""The perception plan (engine.plan) on real inputs: what each surface runs, and that what it shows is true.

One plan drives classify, describe, embed, batch, index, the Files tab and Live: the same file must give the same
labels, text and vectors through each of them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import speak

NOTE = "Buy flour, eggs and butter for the birthday cake on Sunday."
SPEECH = "please remember to buy milk eggs and bread on the way home"


def _invoice(path: Path) -> Path:
    from docs import render

    lines = ["INVOICE No. 2026-0417", "Date: 3 November 2026", "Bill to: Harbor Supplies Ltd",
             "2 x Steel brackets   1,200.00 EUR", "Delivery   240.00 EUR", "Total due: 1,440.00 EUR"]
    render(lines, size=30, angle=0.7, seed=7).image.save(path)
    return path


def _sign_photo(source: Path, path: Path) -> Path:
    """A real photograph with a rendered shop sign pasted into it, as a phone photo of a street would have."""
    from docs import render

    photo = Image.open(source).convert("RGB")
    sign = render(["BAKERY", "Fresh bread daily"], font="DejaVuSans-Bold.ttf", size=40, angle=2.0, seed=9).image
    scale = photo.width * 0.45 / sign.width
    sign = sign.resize((round(sign.width * scale), round(sign.height * scale)), Image.Resampling.LANCZOS)
    photo.paste(sign, (photo.width // 10, photo.height // 8))
    photo.save(path, quality=92)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, photos) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("plan")
    files = {
        "cat": folder / "chelsea.jpg",
        "astronaut": folder / "astronaut.jpg",
        "invoice": _invoice(folder / "invoice.png"),
        "sign": _sign_photo(photos["coffee"], folder / "bakery.jpg"),
        "recording": speak(SPEECH, folder / "memo.wav"),
        "note": folder / "note.txt",
    }
    files["cat"].write_bytes(photos["chelsea"].read_bytes())
    files["astronaut"].write_bytes(photos["astronaut"].read_bytes())
    files["note"].write_text(NOTE, encoding="utf-8")
    return files


def _by_name(records: list[dict]) -> dict[str, dict]:
    return {Path(r["file"]).name: r for r in records}


def test_labels_that_name_detector_things_turn_the_detector_on(runtime):
    from engine.plan import names_detector_things, options_for

    assert names_detector_things(["a cup", "cats"], runtime)
    assert names_detector_things(["my mug"], runtime)
    assert not names_detector_things(["invoice", "meeting notes", "sunset"], runtime)
    assert not options_for(["invoice", "holiday"], runtime=runtime).objects
    assert options_for(["invoice", "a dog"], runtime=runtime).objects
    assert options_for([], search=True, runtime=runtime).objects
    assert not options_for([], runtime=runtime).objects


def test_the_cat_is_not_a_person_and_has_no_text(inputs, runtime):
    from engine.tasks import classify_files

    (record,) = classify_files([inputs["cat"]], labels=["a person", "a cat"], runtime=runtime)
    evidence = record["evidence"]
    assert record["labels"][0]["label"] == "a cat"
    assert evidence["kind"] == "photo"
    assert not evidence.get("ocr_text"), evidence.get("ocr_text")
    assert "person" not in [o["label"] for o in evidence.get("objects", [])]


def test_people_only_where_the_detector_finds_a_person(inputs, runtime, tmp_path):
    from engine.scene import segment_files

    cat, astronaut = segment_files([inputs["cat"], inputs["astronaut"]], tmp_path, runtime=runtime)
    assert cat["person_fraction"] == 0.0 and cat["output"] is None  # the selfie model alone says 91%
    assert not list(tmp_path.glob("chelsea*"))
    assert astronaut["person_fraction"] > 0.3 and Path(astronaut["output"]).is_file()


def test_documents_get_their_kind_never_imagenet_classes(inputs, runtime):
    from engine.image import class_names
    from engine.tasks import classify_files

    (record,) = classify_files([inputs["invoice"]], runtime=runtime)
    assert record["evidence"]["kind"] == "document"
    assert record["label_set"] == "document kinds"
    assert record["labels"][0]["label"] == "invoice"
    assert "concepts" not in record["evidence"]
    imagenet = set(class_names(runtime))
    assert not [item["label"] for item in record["labels"] if item["label"] in imagenet]
    # The text read keeps its spaces.
    assert "Total due: 1,440.00 EUR" in record["evidence"]["ocr_text"]


def test_recordings_and_notes_get_topics_not_imagenet_classes(inputs, runtime):
    from engine.tasks import classify_files

    records = _by_name(classify_files([inputs["recording"], inputs["note"]], runtime=runtime))
    assert records["memo.wav"]["label_set"] == "recording topics"
    assert records["memo.wav"]["labels"][0]["label"] in ("shopping list", "reminder")
    assert records["note.txt"]["label_set"] == "document kinds"
    assert records["note.txt"]["labels"][0]["label"] in ("shopping list", "recipe", "to-do list")


def test_a_sign_in_a_photo_is_still_read(inputs, runtime):
    from engine.tasks import classify_files

    (record,) = classify_files([inputs["sign"]], labels=["a bakery", "a garage"], runtime=runtime)
    text = record["evidence"].get("ocr_text", "").lower()
    assert "bakery" in text and "fresh bread" in text
    assert record["evidence"]["kind"] == "photo"  # a sign does not make a photo a document
    assert record["labels"][0]["label"] == "a bakery"


def test_files_tab_scores_recordings_against_the_users_labels(inputs, runtime):
    from desktop.ui import analyse_paths

    records, transcripts, _ = analyse_paths([str(inputs["recording"])], ["groceries to buy", "a job interview"], "en",
                                            read_text=True)
    (record,) = records
    assert record["labels"][0]["label"] == "groceries to buy"
    assert "milk" in record["text"].lower() and record["segments"]
    assert str(inputs["recording"]) in transcripts


def test_one_plan_same_answers_in_every_surface(inputs, runtime, tmp_path):
    """classify --json, the Files tab, batch rows and the index agree on labels, text and vectors."""
    from desktop.ui import analyse_paths
    from engine.folder import BatchOptions, read_results, run_batch
    from engine.index import FolderIndex
    from engine.tasks import classify_files, embed_files

    folder = tmp_path / "archive"
    folder.mkdir()
    for path in inputs.values():
        (folder / path.name).write_bytes(path.read_bytes())
    names = sorted(p.name for p in folder.iterdir())
    files = [str(folder / name) for name in names]
    labels = ["an invoice", "a cat", "a shopping list", "a bakery"]

    cli = _by_name(classify_files(files, labels=labels, runtime=runtime))
    files_tab = _by_name(analyse_paths(files, labels, "en", read_text=True)[0])
    run_batch(folder, tmp_path / "rows.jsonl", BatchOptions(labels=labels, tasks=("classify", "read", "transcribe")),
              runtime=runtime)
    rows = {row["file"]: row for row in read_results(tmp_path / "rows.jsonl")}
    for name in names:
        assert files_tab[name]["labels"] == cli[name]["labels"], name
        assert rows[name]["classify"]["labels"] == cli[name]["labels"], name
        assert rows[name]["classify"]["evidence"].get("ocr_text") == cli[name]["evidence"].get("ocr_text"), name
        if name.endswith((".jpg", ".png")):
            assert rows[name]["read"]["text"] == cli[name]["evidence"].get("ocr_text", ""), name

    with FolderIndex(folder) as index:
        index.update(runtime=runtime)
        items = {item["path"]: item for item in index.items()}
        vectors, rels, _ = index.matrix()
    embedded = _by_name(embed_files(files, runtime=runtime))
    for name in names:
        if name.endswith((".jpg", ".png")):
            assert (items[name]["ocr_text"] or "") == cli[name]["evidence"].get("ocr_text", ""), name
        stored = vectors[rels.index(name)]
        assert np.allclose(stored, np.asarray(embedded[name]["vector"], np.float32), atol=1e-5), name


def test_classify_json_from_the_command_line(inputs, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    done = subprocess.run([sys.executable, "-m", "desktop", "classify", str(inputs["cat"]), str(inputs["invoice"]),
                           "--json"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    records = _by_name(json.loads(done.stdout))
    assert records["chelsea.jpg"]["label_set"] == "imagenet"
    assert "cat" in records["chelsea.jpg"]["labels"][0]["label"]
    assert records["invoice.png"]["labels"][0]["label"] == "invoice"
