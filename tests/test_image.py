"""The image classifier and image decoding on the real bundle and real photos (scikit-image).

Fixtures `runtime` and `photos` (scikit-image photos saved as JPEG files) come from tests/conftest.py.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.errors import InputFileError
from engine.image import MODEL_ID, class_names, classify_files, classify_images, preprocess_image
from engine.imaging import image_from_array, load_image

CAT_CLASSES = {"tabby cat", "tiger cat", "Persian cat", "Siamese cat", "Egyptian Mau", "lynx"}
EXPECTED = {
    "chelsea": CAT_CLASSES,
    "coffee": {"espresso", "cup", "coffee mug", "eggnog"},
    "rocket": {"missile", "projectile", "space shuttle"},
}


def top_names(result, k: int = 1) -> set[str]:
    return {name for name, _ in result.labels[:k]}


def test_class_names_are_the_imagenet_list(runtime):
    names = class_names(runtime)
    assert len(names) == 1000 and len(set(names)) == 1000
    assert names[0] == "tench" and names[282] == "tiger cat" and names[967] == "espresso"


def test_photos_get_the_right_imagenet_family(runtime, photos):
    results = classify_files([photos[n] for n in EXPECTED], top_k=5, runtime=runtime)
    for (name, wanted), result in zip(EXPECTED.items(), results):
        assert top_names(result) & wanted, (name, result.labels)
        assert result.labels[0][1] > 0.2, (name, result.labels)
    astronaut = classify_files([photos["astronaut"]], top_k=5, runtime=runtime)[0]
    # no "astronaut" class in ImageNet: the helmet she holds, the suit or the flag are what it can see
    assert top_names(astronaut, 5) & {"football helmet", "crash helmet", "military uniform", "suit", "flagpole",
                                       "space shuttle", "bulletproof vest", "jersey"}, astronaut.labels


def test_result_shapes_and_probabilities(runtime, photos):
    result = classify_files([photos["coffee"]], top_k=3, runtime=runtime)[0]
    assert result.probs.shape == (1000,) and result.feature.shape == (1280,)
    assert result.probs.dtype == np.float32 and result.feature.dtype == np.float32
    assert abs(float(result.probs.sum()) - 1.0) < 1e-4
    assert len(result.labels) == 3
    assert [p for _, p in result.labels] == sorted((p for _, p in result.labels), reverse=True)
    assert class_names(runtime)[int(result.probs.argmax())] == result.labels[0][0]


def test_batch_matches_single_and_keeps_order(runtime, photos):
    images = [load_image(photos[n], min_side=256) for n in ("chelsea", "coffee", "rocket", "astronaut")]
    batched = classify_images(images, runtime=runtime, batch_size=8)
    for image, result in zip(images, batched):
        single = classify_images([image], runtime=runtime)[0]
        assert single.labels[0][0] == result.labels[0][0]
        np.testing.assert_allclose(single.probs, result.probs, atol=2e-3)


def test_exif_rotated_jpeg_is_seen_upright(runtime, tmp_path):
    from skimage import data

    source = Image.fromarray(data.chelsea())
    upright, rotated = tmp_path / "upright.jpg", tmp_path / "sideways.jpg"
    source.save(upright, quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the pixels are stored turned left
    source.rotate(90, expand=True).save(rotated, quality=95, exif=exif)
    loaded = load_image(rotated)
    assert loaded.size == source.size
    difference = np.abs(np.asarray(loaded, dtype=np.int16) - np.asarray(source, dtype=np.int16)).mean()
    assert difference < 6
    a, b = classify_files([upright, rotated], runtime=runtime)
    # JPEG re-encodes a rotated image slightly differently and the cat classes are near ties for this photo:
    # same family, nearly the same distribution; a sideways cat would not be
    assert a.labels[0][0] in CAT_CLASSES and b.labels[0][0] in CAT_CLASSES
    assert float(a.probs @ b.probs) / float(np.linalg.norm(a.probs) * np.linalg.norm(b.probs)) > 0.95
    sideways = classify_images([source.rotate(90, expand=True)], runtime=runtime)[0]
    assert float(a.probs @ sideways.probs) / float(np.linalg.norm(a.probs) * np.linalg.norm(sideways.probs)) < float(
        a.probs @ b.probs) / float(np.linalg.norm(a.probs) * np.linalg.norm(b.probs))


def test_jpeg_draft_decodes_smaller_but_enough(tmp_path):
    big = tmp_path / "big.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (2000, 3000, 3), dtype=np.uint8)).save(big)
    image = load_image(big, min_side=256)
    assert min(image.size) >= 256 and image.size[0] < 3000
    assert max(load_image(big, max_side=400).size) <= 400


def test_array_frames(runtime):
    from skimage import data

    cat = data.chelsea()
    assert image_from_array(cat).size == (cat.shape[1], cat.shape[0])
    assert image_from_array(cat.astype(np.float32) / 255).mode == "RGB"
    assert image_from_array(cat[..., 0]).mode == "RGB"
    with pytest.raises(InputFileError):
        image_from_array(np.zeros((4,), dtype=np.uint8))
    preprocessed = preprocess_image(image_from_array(cat), runtime.bundle.entry(MODEL_ID).preprocess)
    assert preprocessed.shape == (3, 224, 224) and preprocessed.dtype == np.float32


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def huge_png(path: Path, width: int, height: int) -> Path:
    """A valid PNG header claiming a gigantic size, with almost no data: a decompression bomb's shape."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
                     + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))
    return path


def bad_files(folder: Path, photos: dict[str, Path]) -> dict[str, Path]:
    jpeg = photos["chelsea"].read_bytes()
    files = {
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "notes.png": b"These are my meeting notes, not a picture.\n" * 20,
        "noise.jpg": np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "empty.jpg": b"",
    }
    out = {}
    for name, payload in files.items():
        (folder / name).write_bytes(payload)
        out[name] = folder / name
    out["bomb.png"] = huge_png(folder / "bomb.png", 100_000, 100_000)
    out["large.png"] = huge_png(folder / "large.png", 11_000, 9_000)  # between PIL's warning and error limits
    out["missing.jpg"] = folder / "missing.jpg"
    return out


@pytest.mark.parametrize("name", ["truncated.jpg", "notes.png", "noise.jpg", "empty.jpg", "bomb.png", "large.png",
                                  "missing.jpg"])
def test_bad_files_raise_input_file_error_naming_the_file(name, photos, tmp_path):
    path = bad_files(tmp_path, photos)[name]
    with pytest.raises(InputFileError) as caught:
        load_image(path, min_side=256)
    assert caught.value.path == str(path)
    assert name in str(caught.value)


def test_manifest_records_parity_and_decision(runtime):
    entry = runtime.bundle.entry(MODEL_ID)
    assert entry.preprocess == {"resize": 256, "crop": 224, "mean": 0.498, "std": 0.502, "layout": "NCHW",
                                "resample": "bicubic"}
    check = entry.verification["top1_agreement"]
    assert check["measured"] >= check["threshold"] >= 0.99
    assert entry.verification["validation_images"] >= 200
    decision = entry.extra["quantization"]
    assert decision["chosen"] in {"fp32", *decision["recipes"]}
    cascade = entry.extra.get("cascade")
    if cascade:  # fp32 plus an int8 copy that answers the clear-cut images
        assert cascade["recipe"] in decision["recipes"] and cascade["margin"] > 0
        assert cascade["validation"]["top1_agreement"] >= 0.99
        assert cascade["validation"]["img_per_s_per_core"] > cascade["validation"]["fp32_img_per_s_per_core"]
        assert runtime.bundle.path(MODEL_ID, cascade["fast_file"]).is_file()


# -- the int8/fp32 cascade ----------------------------------------------------------------------------------------


def _linear_classifier(weights: np.ndarray):
    """A stand-in classifier graph with the bundle's contract: image -> (logits, features)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["image", "w"], ["logits"]), helper.make_node("Identity", ["image"], ["features"])],
        "linear", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", weights.shape[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", weights.shape[1]]),
         helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", weights.shape[0]])],
        [numpy_helper.from_array(weights.astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_cascade_reruns_exactly_the_close_calls_in_fp32():
    from engine.image import run_cascade, top2_gap

    full = _linear_classifier(np.eye(3))
    fast = _linear_classifier(np.eye(3) * 1.01 + 0.02)  # slightly off, like int8 rounding
    batch = np.array([[5.0, 0.0, 0.0], [1.0, 1.05, 0.0], [0.0, 0.2, 3.0], [2.0, 2.01, 2.0]], dtype=np.float32)
    fast_logits = fast.run(["logits"], {"image": batch})[0]
    logits, features = run_cascade(fast, full, batch.copy(), margin=0.5)
    close = top2_gap(fast_logits) < 0.5
    assert close.tolist() == [False, True, False, True]
    np.testing.assert_allclose(logits[close], batch[close])  # fp32's answer where it was a close call
    np.testing.assert_allclose(logits[~close], fast_logits[~close])  # int8's where it was clear
    np.testing.assert_allclose(features, batch)


def test_cascade_pools_close_calls_of_consecutive_batches_into_full_reruns():
    from engine.image import run_cascade, run_cascade_batches

    class Counting:  # records the batch sizes the fp32 model is run on
        def __init__(self, session):
            self.session, self.sizes = session, []

        def run(self, names, feeds):
            self.sizes.append(len(feeds["image"]))
            return self.session.run(names, feeds)

        def get_inputs(self):
            return self.session.get_inputs()

    full = Counting(_linear_classifier(np.eye(3)))
    fast = _linear_classifier(np.eye(3) * 1.01 + 0.02)
    clear, close = [5.0, 0.0, 0.0], [1.0, 1.05, 0.0]
    batches = [np.array(rows, dtype=np.float32) for rows in
               ([clear, close], [close, clear], [clear, clear], [close, clear], [clear, close])]
    logits, features = run_cascade_batches(fast, full, batches, margin=0.5)
    assert full.sizes == [2, 2]  # four close calls, re-run two at a time (the input batch size), none left over
    one_by_one = [run_cascade(fast, _linear_classifier(np.eye(3)), b, margin=0.5) for b in batches]
    np.testing.assert_allclose(logits, np.concatenate([o[0] for o in one_by_one]))
    np.testing.assert_allclose(features, np.concatenate(batches))
    full.sizes.clear()
    run_cascade_batches(fast, full, batches[:1], margin=0.5)
    assert full.sizes == [1]  # a close call still waiting at the end is not dropped


def test_cascade_gives_fp32s_top_class_on_photo_crops(runtime):
    """On crops of scikit-image's photographs (textures and objects, many near-ties), the app's classifier picks
    the same class as the fp32 model alone."""
    from skimage import data

    from engine.image import preprocess_batch, run_classifier, run_model, settings

    if not runtime.bundle.entry(MODEL_ID).extra.get("cascade"):
        pytest.skip("this bundle ships no cascade (fp32 or int8 alone)")
    rng = np.random.default_rng(5)
    crops = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "brick", "grass", "coins", "camera", "horse", "moon"):
        photo = Image.fromarray(getattr(data, name)()).convert("RGB")
        for _ in range(8):
            side = int(min(photo.size) * rng.uniform(0.4, 1.0))
            left = int(rng.integers(0, photo.width - side + 1))
            top = int(rng.integers(0, photo.height - side + 1))
            crops.append(photo.crop((left, top, left + side, top + side)))
    batch = preprocess_batch(crops, settings(runtime))
    fp32 = np.concatenate([run_model(runtime.session(MODEL_ID, "model"), batch[i:i + 8])[0]
                           for i in range(0, len(batch), 8)])
    ours = np.concatenate([run_classifier(runtime, batch[i:i + 8])[0] for i in range(0, len(batch), 8)])
    agreement = float((fp32.argmax(1) == ours.argmax(1)).mean())
    assert agreement >= 0.99, agreement
    reran = np.isclose(ours, fp32, atol=1e-5).all(axis=1)
    assert 0 < reran.sum() < len(batch)  # both paths taken: clear calls stay int8, close ones go to fp32


def test_split_batches_give_the_whole_batch_answer(runtime, photos):
    """The classifier runs a batch as one share per core (the manifest's split_batches): the answer must not depend
    on it - same logits, to float rounding, as the batch run whole on both threads."""
    from engine.image import preprocess_batch, run_classifier, settings
    from engine.runtime import Runtime, SplitBatchSession

    if not runtime.bundle.entry(MODEL_ID).extra.get("session", {}).get("split_batches"):
        pytest.skip("this bundle does not split the classifier's batches")
    split = Runtime(runtime.bundle, device="cpu", threads=2)
    whole = Runtime(runtime.bundle, device="cpu", threads=2, split_batches=False)
    assert isinstance(split.session(MODEL_ID), SplitBatchSession)
    images = [load_image(path) for path in sorted(photos.values())]
    images.append(images[0].transpose(Image.Transpose.FLIP_LEFT_RIGHT))  # five: shares of unequal size
    batch = preprocess_batch(images, settings(runtime))
    split_logits, split_features = run_classifier(split, batch)
    whole_logits, whole_features = run_classifier(whole, batch)
    np.testing.assert_allclose(split_logits, whole_logits, atol=1e-4)
    np.testing.assert_allclose(split_features, whole_features, atol=1e-4)
    split.close()
    whole.close()
