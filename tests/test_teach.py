"""Teach: heads fitted on a user's examples, exported as ONNX, shared as one file, refused where they do not fit.

The mechanics (maths, ONNX parity, files, refusals) run on synthetic feature blocks over a stand-in bundle;
the three "it learns" checks run the real encoders on real inputs: crops of two photographs, two espeak-ng
voices saying different sentences, and rendered invoices versus letters.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from conftest import speak
from engine import teach
from engine.errors import InputFileError

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
ENCODERS = ["image-classifier", "concept-bridge", "ocr", "text-encoder", "whisper-tiny.en", "vad"]


# -- mechanics on synthetic features ------------------------------------------------------------------------------


def fake_runtime(folder: Path, version: str = "bundle-A", models=ENCODERS):
    """A Runtime over a manifest that lists the encoders but holds no files: enough to check versions and run heads."""
    from engine.manifest import ModelBundle
    from engine.runtime import Runtime

    folder.mkdir(parents=True, exist_ok=True)
    entries = [{"id": m, "task": "test", "modality": "test", "precision": "fp32", "files": {}} for m in models]
    (folder / "manifest.json").write_text(json.dumps({"schema_version": 1, "bundle_version": version, "models": entries}))
    return Runtime(ModelBundle(folder), device="cpu", threads=1)


def synthetic(per_class: int = 10, classes: int = 3, seed: int = 0):
    """Blocks with a low-rank class signal, nuisance variation and missing modalities, like real features."""
    rng = np.random.default_rng(seed)
    dims = {"image": 1280, "text": 384, "acoustic": 384}
    basis = {k: rng.normal(size=(16, d)) for k, d in dims.items()}
    centres = {k: rng.normal(size=(classes, 16)) * 1.5 for k in dims}
    items, labels = [], []
    for label in range(classes):
        for _ in range(per_class):
            item = {}
            for k, d in dims.items():
                if k == "image" or rng.random() < 0.6:
                    item[k] = ((centres[k][label] + rng.normal(size=16)) @ basis[k] + rng.normal(size=d) + 2).astype(np.float32)
            items.append(item)
            labels.append(label)
    return teach.stack_features(items), np.array(labels)


@pytest.fixture(scope="module")
def blocks():
    return synthetic()


def test_fusion_gradients_match_finite_differences(blocks):
    features, y = blocks
    model = teach.FusionAttention(hidden=6)
    norms = teach.fit_norms(features)
    normed = {k: v.astype(np.float64) for k, v in teach.apply_norms(features, norms).items()}
    masks = {k: v.astype(np.float64) for k, v in features.masks.items()}
    shapes = model._shapes({k: v.shape[1] for k, v in normed.items()}, 3)
    rng = np.random.default_rng(1)
    theta = model._init(shapes, normed, masks)
    theta = theta + rng.normal(size=theta.shape) * 0.1  # off the initial symmetric point (q = 0)
    _, grad = model.loss_and_grad(theta, shapes, normed, masks, y, 3)
    picks = np.concatenate([rng.choice(len(theta), 25, replace=False), np.arange(len(theta) - 20, len(theta))])
    numeric = []
    for i in picks:
        step = np.zeros_like(theta)
        step[i] = 1e-6
        numeric.append((model.loss_and_grad(theta + step, shapes, normed, masks, y, 3)[0]
                        - model.loss_and_grad(theta - step, shapes, normed, masks, y, 3)[0]) / 2e-6)
    numeric = np.array(numeric)
    assert np.abs(numeric - grad[picks]).max() <= 1e-5 * np.abs(numeric).max()


@pytest.mark.parametrize("kind", list(teach.CANDIDATES))
def test_exported_onnx_gives_the_training_time_scores(blocks, kind, tmp_path):
    import onnxruntime as ort

    features, y = blocks
    trained = teach.TrainedModel.fit(kind, features, y, 3)
    expected = trained.proba(features)
    assert (expected.argmax(axis=1) == y).mean() >= 0.9, "the model did not even fit its training set"
    model = teach.export_onnx(trained, {"format": 1, "name": "t", "classes": ["a", "b", "c"], "blocks": [],
                                        "encoders": [], "bundle_version": "x"})
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {}
    for name in features.blocks:
        feeds[name], feeds[f"{name}_mask"] = features.blocks[name], features.masks[name]
    (got,) = session.run(["probs"], feeds)
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_cross_validation_reports_every_candidate_and_a_baseline_beating_choice(blocks):
    features, y = blocks
    steps = []
    trained, figures = teach.fit_head(features, y, ["a", "b", "c"], folds=3, progress=lambda f, m: steps.append(f))
    kinds = [c["model"] for c in figures["candidates"]]
    assert kinds == list(teach.CANDIDATES)
    chosen = next(c for c in figures["candidates"] if c["model"] == figures["chosen"])
    assert chosen["accuracy"] == max(c["accuracy"] for c in figures["candidates"])
    assert chosen["accuracy"] >= 0.9
    matrix = np.array(figures["confusion"])
    assert matrix.shape == (3, 3) and matrix.sum() == len(y) and np.trace(matrix) / len(y) == chosen["accuracy"]
    assert steps == sorted(steps) and steps[-1] <= 1.0


def test_folds_are_stratified():
    y = np.array([0] * 7 + [1] * 3)
    folds = teach.stratified_folds(y, 3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(10))
    assert all(1 <= (y[f] == 1).sum() <= 1 for f in folds)
    assert all(2 <= (y[f] == 0).sum() <= 3 for f in folds)


def test_few_examples_are_warned_about():
    warnings = teach.few_examples_warnings({"cat": 12, "dog": 3})
    assert len(warnings) == 1 and "'dog'" in warnings[0] and "3 examples" in warnings[0]


def save_synthetic_head(blocks, runtime, name="pets", kind="logistic-regression"):
    features, y = blocks
    trained = teach.TrainedModel.fit(kind, features, y, 3)
    metadata = {"format": 1, "name": name, "classes": ["cat", "dog", "bird"], "model": kind,
                "blocks": [{"name": b, "dim": d} for b, d in features.dims.items()],
                "encoders": teach.needed_encoders(list(features.dims), "whisper-tiny.en"),
                "speech_model": "whisper-tiny.en", "bundle_version": runtime.bundle.bundle_version,
                "examples": {"cat": 10, "dog": 10, "bird": 10}, "cv": {"accuracy": 1.0}}
    teach.save_head(teach.export_onnx(trained, metadata), name)
    return trained


def test_saved_head_runs_through_the_runtime_and_round_trips_as_one_file(blocks, tmp_path):
    runtime = fake_runtime(tmp_path / "bundle")
    trained = save_synthetic_head(blocks, runtime)
    features, _ = blocks
    head = teach.load_head("pets", runtime)
    assert head.classes == ["cat", "dog", "bird"] and set(head.blocks) == {"image", "text", "acoustic"}
    assert "whisper-tiny.en" in head.encoders
    np.testing.assert_allclose(teach.run_head_file(head, features, runtime), trained.proba(features), atol=2e-5)

    (tmp_path / "share").mkdir()
    shared = teach.export_head("pets", tmp_path / "share")  # a folder: the head keeps its file name
    assert shared.name == "pets.onnx" and shared.read_bytes() == head.path.read_bytes()
    teach.remove_head("pets")
    assert teach.list_heads() == []
    imported = teach.import_head(shared, name="pets-copy", runtime=runtime)
    assert [h.name for h in teach.list_heads()] == ["pets-copy"]
    np.testing.assert_allclose(teach.run_head_file(imported, features, runtime), trained.proba(features), atol=2e-5)
    with pytest.raises(teach.HeadError, match="already exists"):
        teach.import_head(shared, name="pets-copy", runtime=runtime)


def test_head_from_another_bundle_version_or_missing_encoders_is_refused(blocks, tmp_path):
    made_here = fake_runtime(tmp_path / "a", version="bundle-A")
    save_synthetic_head(blocks, made_here)
    shared = teach.export_head("pets", tmp_path / "pets.onnx")
    other = fake_runtime(tmp_path / "b", version="bundle-B")
    with pytest.raises(teach.HeadError, match="bundle version bundle-A.*version bundle-B"):
        teach.load_head("pets", other)
    with pytest.raises(teach.HeadError, match="bundle version"):
        teach.import_head(shared, name="elsewhere", runtime=other)
    lacking = fake_runtime(tmp_path / "c", version="bundle-A", models=["image-classifier", "text-encoder"])
    with pytest.raises(teach.HeadError, match="needs model.*whisper-tiny.en"):
        teach.load_head("pets", lacking)


def test_bad_head_files_and_names_are_explained(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"not a model at all")
    with pytest.raises(InputFileError, match="not an ONNX model"):
        teach.read_head(tmp_path / "junk.onnx")
    from engine.fusion import build_bridge_graph

    (tmp_path / "plain.onnx").write_bytes(build_bridge_graph(np.eye(4, 3, dtype=np.float32)).SerializeToString())
    with pytest.raises(InputFileError, match="not a FusionDesk head"):
        teach.read_head(tmp_path / "plain.onnx")
    for bad in ("../evil", "", "a/b", "x" * 65):
        with pytest.raises(teach.HeadError, match="not a usable head name"):
            teach.check_name(bad)
    with pytest.raises(teach.HeadError, match="no head named 'nope'"):
        teach.load_head("nope", fake_runtime(tmp_path / "bundle"))


def test_data_folder_layout(tmp_path):
    with pytest.raises(teach.HeadError, match="at least two sub-folders"):
        (tmp_path / "only").mkdir()
        (tmp_path / "only" / "a.txt").write_text("x")
        teach.collect_examples(tmp_path)
    (tmp_path / "other" / "pair").mkdir(parents=True)
    (tmp_path / "other" / "pair" / "photo.jpg").write_bytes(b"")
    (tmp_path / "other" / "pair" / "note.txt").write_text("y")
    (tmp_path / "other" / ".DS_Store").write_text("")
    classes, examples = teach.collect_examples(tmp_path)
    assert classes == ["only", "other"]
    assert [(e.label, [p.name for p in e.files]) for e in examples] == [(0, ["a.txt"]), (1, ["note.txt", "photo.jpg"])]


# -- real encoders, real inputs -----------------------------------------------------------------------------------


def crops(image: Image.Image, count: int, seed: int) -> list[Image.Image]:
    """Random crops (40-80% of the side), flips and brightness changes: the "same thing, another shot" a user takes."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        side = int(min(image.size) * rng.uniform(0.4, 0.8))
        x = int(rng.integers(0, image.size[0] - side + 1))
        y = int(rng.integers(0, image.size[1] - side + 1))
        crop = image.crop((x, y, x + side, y + side)).resize((224, 224))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out.append(ImageEnhance.Brightness(crop).enhance(float(rng.uniform(0.7, 1.3))))
    return out


def held_out_labels(head_name: str, files: list[Path], runtime) -> list[str]:
    from engine.perceive import Perceiver

    head = teach.load_head(head_name, runtime)
    perceived = Perceiver(runtime, head.perception_options()).perceive_files(files)
    assert not [p for p in perceived if isinstance(p, InputFileError)]
    results = teach.classify_with_head(perceived, head, runtime)
    return [r[0]["label"] for r in results]


def test_head_taught_on_photo_crops_separates_held_out_crops(runtime, photos, tmp_path):
    data = tmp_path / "data"
    test_files, truth = [], []
    for index, name in enumerate(("chelsea", "coffee")):
        image = Image.open(photos[name]).convert("RGB")
        (data / name).mkdir(parents=True)
        shots = crops(image, 10, seed=index)
        for i, shot in enumerate(shots[:7]):
            shot.save(data / name / f"{i}.jpg", quality=90)
        for i, shot in enumerate(shots[7:]):
            test_files.append(tmp_path / f"test_{name}_{i}.jpg")
            shot.save(test_files[-1], quality=90)
            truth.append(name)
    report = teach.train_head(data, "photos", folds=3, runtime=runtime)
    assert report.classes == ["chelsea", "coffee"] and report.accuracy >= 0.9
    assert "image" in {b["name"] for b in teach.read_head(report.path).metadata["blocks"]}
    assert held_out_labels("photos", test_files, runtime) == truth


SENTENCES = [
    "The weather is lovely today.", "Please close the door behind you.", "I will call you back tomorrow.",
    "The train leaves at seven o'clock.", "Can you pass me the salt, please?", "We need more paper for the printer.",
    "My sister lives near the river.", "Turn left at the next corner.", "The meeting starts after lunch.",
]
VOICES = {"low": "en-us", "high": "en-us+f3"}


def test_head_taught_on_two_voices_separates_held_out_sentences(runtime, tmp_path):
    data = tmp_path / "data"
    test_files, truth = [], []
    for label, voice in VOICES.items():
        (data / label).mkdir(parents=True)
        # Both voices say the same training sentences, so only the voice tells the classes apart.
        for i, sentence in enumerate(SENTENCES[:6]):
            speak(sentence, data / label / f"{i}.wav", voice=voice)
        for i, sentence in enumerate(SENTENCES[6:]):
            test_files.append(speak(sentence, tmp_path / f"test_{label}_{i}.wav", voice=voice))
            truth.append(label)
    report = teach.train_head(data, "voices", folds=3, runtime=runtime)
    assert "acoustic" in {b["name"] for b in teach.read_head(report.path).metadata["blocks"]}
    assert report.accuracy >= 0.75  # 3 folds of 12 clips: one miss is 8%
    assert held_out_labels("voices", test_files, runtime) == truth


INVOICES = [["INVOICE No. {n}", "Amount due: {a}.00 EUR", "Payment within 30 days", "VAT 20%"],
            ["Invoice {n}", "Total: {a}.50 USD", "Please pay by bank transfer", "Due date: 12 March"]]
LETTERS = [["Dear {name},", "Thank you for your kind letter.", "I hope to see you soon.", "Best wishes"],
           ["Dear {name},", "It was lovely to hear from you.", "The garden is in bloom.", "Yours sincerely"]]
NAMES = ["Anna", "Tom", "Maria", "Peter", "Lucy", "John", "Emma"]


def render(path: Path, lines: list[str], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    page = Image.new("RGB", (820, 420), (250, 249, 244))
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(FONT, int(rng.integers(30, 38)))
    for row, line in enumerate(lines):
        draw.text((40 + int(rng.integers(0, 30)), 40 + 85 * row), line, fill=(20, 20, 20), font=font)
    page.rotate(float(rng.uniform(-1.5, 1.5)), expand=True, fillcolor=(250, 249, 244)).save(path)
    return path


def documents(kind: str, count: int, start: int) -> list[list[str]]:
    templates = INVOICES if kind == "invoice" else LETTERS
    return [[line.format(n=f"2026-{100 + i}", a=150 + 37 * i, name=NAMES[i % len(NAMES)])
             for line in templates[i % len(templates)]] for i in range(start, start + count)]


def test_head_taught_on_rendered_documents_separates_new_ones(runtime, tmp_path):
    data = tmp_path / "data"
    test_files, truth = [], []
    for kind in ("invoice", "letter"):
        (data / kind).mkdir(parents=True)
        for i, lines in enumerate(documents(kind, 4, 0)):
            render(data / kind / f"{i}.png", lines, seed=i)
        for i, lines in enumerate(documents(kind, 2, 4)):
            test_files.append(render(tmp_path / f"test_{kind}_{i}.png", lines, seed=100 + i))
            truth.append(kind)
    report = teach.train_head(data, "documents", folds=3, runtime=runtime)
    assert {"ocr", "image"} <= {b["name"] for b in teach.read_head(report.path).metadata["blocks"]}
    assert report.counts == {"invoice": 4, "letter": 4} and len([w for w in report.warnings if "only 4 examples" in w]) == 2
    assert held_out_labels("documents", test_files, runtime) == truth


def test_cli_train_never_replaces_a_saved_head_without_replace(blocks, tmp_path, capsys):
    from desktop.cli import main

    save_synthetic_head(blocks, fake_runtime(tmp_path / "bundle"))
    saved = teach.head_path("pets")
    before = saved.read_bytes()
    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "data" / "dog").mkdir()
    assert main(["train", str(tmp_path / "data"), "--name", "pets"]) != 0
    error = capsys.readouterr().err
    assert "already exists" in error and "--replace" in error
    assert saved.read_bytes() == before  # refused before any training: the user's head is untouched


def crafted(head_file: Path, target: Path, change) -> Path:
    """A copy of a real head file with one thing changed, as someone could share it."""
    import onnx

    model = onnx.load_from_string(head_file.read_bytes())
    change(model)
    target.write_bytes(model.SerializeToString())
    return target


def test_crafted_head_files_are_refused_with_a_reason(blocks, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    runtime = fake_runtime(tmp_path / "bundle")
    for kind in teach.CANDIDATES:  # every kind the app trains passes the check (so the limits fit real heads)
        save_synthetic_head(blocks, runtime, name=f"real-{kind}", kind=kind)
        teach.read_head(teach.head_path(f"real-{kind}"))
    real = teach.head_path(f"real-{list(teach.CANDIDATES)[-1]}")

    def external(model):
        weights = model.graph.initializer[0]
        weights.data_location = TensorProto.EXTERNAL
        weights.ClearField("raw_data")
        weights.ClearField("float_data")
        weights.external_data.add(key="location", value="../../../../etc/passwd")

    def declared(name: str, dims: list[int]) -> TensorProto:  # a tensor whose header says more than it holds
        tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, raw_data=b"\0" * 16)
        tensor.dims.extend(dims)
        return tensor

    def huge(model):
        model.graph.initializer.append(declared("giant", [100_000, 100_000]))

    def lying_size(model):
        model.graph.initializer.append(declared("liar", [1000]))

    def wrong_shape(model):
        model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 7

    def foreign_op(model):
        model.graph.node.append(helper.make_node("ConstantOfShape", ["image_mask"], ["grown"]))

    def custom_domain(model):
        model.graph.node.append(helper.make_node("Run", ["image_mask"], ["ran"], domain="com.example"))

    cases = {external: "refers to data outside the file", huge: "declare 10,000,0[0-9,]+ numbers, more than a head has",
             lying_size: "does not hold the 1,000 numbers it declares", wrong_shape: "input 'image' has shape",
             foreign_op: "operators a head does not use \\(ConstantOfShape\\)", custom_domain: "operators a head does not use"}
    before = sorted(p.name for p in teach.heads_dir().iterdir())
    for change, reason in cases.items():
        shared = crafted(real, tmp_path / f"{change.__name__}.onnx", change)
        with pytest.raises(InputFileError, match=f"is not a safe FusionDesk head: .*{reason}"):
            teach.import_head(shared, name=change.__name__.replace("_", "-"), runtime=runtime)
    assert sorted(p.name for p in teach.heads_dir().iterdir()) == before  # nothing was added to the heads folder
    assert onnx.load_from_string(real.read_bytes())  # the real head is untouched

    # What runs is what was checked: a head file replaced on disk after it was loaded does not slip in.
    head = teach.load_head(real.stem, runtime)
    expected = teach.run_head_file(head, blocks[0], runtime)
    real.write_bytes(crafted(real, tmp_path / "swap.onnx", foreign_op).read_bytes())
    runtime.close()
    np.testing.assert_array_equal(teach.run_head_file(head, blocks[0], runtime), expected)
    with pytest.raises(InputFileError, match="not a safe FusionDesk head"):
        teach.load_head(real.stem, runtime)
