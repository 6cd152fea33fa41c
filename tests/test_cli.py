"""The CLI as a user runs it: real bundle, real files, bad files, and no network at all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from conftest import ROOT, speak

FUSIONDESK = [sys.executable, "-m", "desktop"]
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def run(*args: str, offline: bool = False, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [*FUSIONDESK, *args]
    if offline:
        command = ["unshare", "-n", *command]
    full_env = {**os.environ, **(env or {})}
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=full_env, timeout=600)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def render_scan(path: Path, lines: list[str]) -> Path:
    page = Image.new("RGB", (900, 120 + 70 * len(lines)), (247, 245, 238))
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(FONT, 38)
    for row, line in enumerate(lines):
        draw.text((50, 50 + 70 * row), line, fill=(25, 25, 25), font=font)
    page = page.rotate(0.8, expand=True, fillcolor=(247, 245, 238))
    page.save(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory, photos):
    folder = tmp_path_factory.mktemp("cli")
    good_jpeg = photos["chelsea"].read_bytes()
    (folder / "truncated.jpg").write_bytes(good_jpeg[: len(good_jpeg) // 3])
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.png").write_text("this is a text file pretending to be a picture\n")
    (folder / "noise.bin").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    Image.new("1", (20000, 20000)).save(folder / "bomb.png")  # 400 Mpx in a few kB: a decompression bomb
    render_scan(folder / "scan.png", ["INVOICE No. 2026-0117", "Amount due: 1,250.00 EUR", "Payment within 30 days"])
    speak("Preheat the oven, then bake the cake for forty minutes.", folder / "recipe.wav")
    (folder / "note.txt").write_text("Remember to water the tomato plants in the garden.\n")
    return folder


def test_classify_reports_bad_files_and_keeps_going(files, photos):
    bad = ["truncated.jpg", "empty.wav", "notes.png", "noise.bin", "bomb.png", "missing.jpg"]
    result = run("classify", str(photos["chelsea"]), *[str(files / name) for name in bad], "--json")
    assert result.returncode == 1, result.stderr
    records = json.loads(result.stdout)
    assert [Path(r["file"]).name for r in records] == ["chelsea.jpg", *bad]
    cat = records[0]
    assert cat["modality"] == "image" and "cat" in cat["labels"][0]["label"]
    assert cat["labels"] == sorted(cat["labels"], key=lambda item: -item["score"])
    problems = {Path(r["file"]).name: r["error"].lower() for r in records[1:]}
    assert set(problems) == set(bad), records
    assert "truncated" in problems["truncated.jpg"] or "corrupt" in problems["truncated.jpg"]
    assert "empty" in problems["empty.wav"]
    assert "image" in problems["notes.png"]
    assert "unsupported" in problems["noise.bin"]
    assert "too large" in problems["bomb.png"] or "bomb" in problems["bomb.png"]
    assert "no such file" in problems["missing.jpg"]


def test_zero_shot_labels_decided_by_ocr_or_transcript_alone(files, photos):
    labels = "an invoice, a cooking recipe, a cat, a garden"
    result = run("classify", str(files / "scan.png"), str(files / "recipe.wav"), str(photos["chelsea"]),
                 str(files / "note.txt"), "--labels", labels, "--json")
    assert result.returncode == 0, result.stderr
    by_name = {Path(r["file"]).name: r for r in json.loads(result.stdout)}
    assert by_name["scan.png"]["labels"][0]["label"] == "an invoice", by_name["scan.png"]
    assert "invoice" in by_name["scan.png"]["evidence"]["ocr_text"].lower()
    assert by_name["recipe.wav"]["labels"][0]["label"] == "a cooking recipe", by_name["recipe.wav"]
    assert "cake" in by_name["recipe.wav"]["evidence"]["transcript"].lower()
    assert by_name["chelsea.jpg"]["labels"][0]["label"] == "a cat"
    assert by_name["note.txt"]["labels"][0]["label"] == "a garden"
    assert by_name["note.txt"]["modality"] == "text"


def test_describe_fuses_files_and_text_into_one_answer(files, photos):
    result = run("describe", str(photos["chelsea"]), str(files / "recipe.wav"), "--text", "our kitchen today", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["modalities"] == ["audio", "image", "text"]
    assert {token["kind"] for token in answer["tokens"]} >= {"concepts", "transcript", "text"}
    assert answer["labels"] and answer["answer"].startswith("Most likely ")
    assert "cake" in answer["answer"].lower()


def test_embed_read_and_transcribe_exports(files, tmp_path):
    result = run("embed", str(files / "note.txt"), str(files / "scan.png"), "--json")
    assert result.returncode == 0, result.stderr
    vectors = [np.array(r["vector"]) for r in json.loads(result.stdout)]
    assert all(v.shape == (384,) and abs(np.linalg.norm(v) - 1) < 1e-3 for v in vectors)

    result = run("read", str(files / "scan.png"), "--json")
    (record,) = json.loads(result.stdout)
    assert "2026" in record["text"] and len(record["lines"]) == 3
    assert all(len(line["box"]) == 4 for line in record["lines"])

    srt = tmp_path / "recipe.srt"
    result = run("transcribe", str(files / "recipe.wav"), "--srt", str(srt), "--json")
    (record,) = json.loads(result.stdout)
    assert record["language"] == "en" and "oven" in record["text"].lower()
    assert record["segments"] and record["segments"][0]["start"] < record["segments"][-1]["end"]
    assert srt.read_text().startswith("1\n00:00:")


def test_selftest_and_models_work_with_no_network():
    result = run("selftest", offline=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 failed" in result.stdout
    result = run("models", "--verify", "--json", offline=True)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert all(model["verified"] for model in listing["models"])
    assert {"text-encoder", "image-classifier", "whisper-tiny.en", "whisper-base", "vad", "ocr",
            "concept-bridge", "fusion-head"} <= {m["id"] for m in listing["models"]}


def test_corrupt_bundle_is_reported_with_the_rebuild_command(tmp_path, bundle):
    copy = tmp_path / "models"
    shutil.copytree(bundle.root, copy)
    head = copy / bundle.entry("fusion-head").files["model"].path
    head.write_bytes(head.read_bytes()[:-1] + b"\x00")
    result = run("models", "--verify", env={"FUSIONDESK_MODELS": str(copy)})
    assert result.returncode == 3
    assert "corrupt" in result.stderr and "build/setup.sh models" in result.stderr
    result = run("classify", str(ROOT / "README.md"), "--labels", "a, b", env={"FUSIONDESK_MODELS": str(tmp_path / "none")})
    assert result.returncode == 3 and "no model bundle" in result.stderr
