"""The image->text-space bridge and the zero-shot fusion head (DESIGN.md, "One semantic space").

- concept-bridge: the 1000 ImageNet class names embedded once with the *shipped* text encoder, as an ONNX
  graph probs[N,1000] -> normalise(probs @ E) [N,384], so images and text meet in one space.
- fusion-head: label-conditioned attention over modality tokens (engine/fusion.py documents the maths).
Both are graphs built with onnx.helper; they run through the same session code as every other model.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from common import BuildContext, check, entry

from engine.fusion import ATTENTION_TEMPERATURE, SCORE_TEMPERATURE, build_bridge_graph, build_head_graph
from engine.manifest import ModelBundle
from engine.runtime import Runtime
from engine.text import embed_texts

# Sanity probes: a one-hot ImageNet class must land nearest to the plain word a person would use.
BRIDGE_PROBES = {"tiger cat": "cat", "espresso": "coffee", "sports car": "car", "airliner": "airplane",
                 "golden retriever": "dog", "acoustic guitar": "guitar"}


def build(ctx: BuildContext, existing: dict[str, dict]) -> list[dict]:
    runtime = Runtime(ModelBundle(ctx.out), device="cpu")
    class_file = ctx.out / existing["image-classifier"]["files"]["labels"]["path"]
    class_names = [line.strip() for line in class_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    ctx.log(f"embedding {len(class_names)} class names with the shipped text encoder")
    class_embeddings = embed_texts(class_names, runtime=runtime)

    folder = ctx.model_dir("concept-bridge")
    bridge_path = folder / "bridge.onnx"
    onnx.save(build_bridge_graph(class_embeddings), bridge_path)
    # The same matrix as plain data: scoring transcripts and text against ImageNet names when no labels are given.
    embeddings_path = folder / "class_embeddings.npy"
    np.save(embeddings_path, class_embeddings.astype(np.float32))
    bridge = ort.InferenceSession(str(bridge_path), providers=["CPUExecutionProvider"])

    words = sorted(set(BRIDGE_PROBES.values()))
    word_vectors = embed_texts(words, runtime=runtime)
    hits = 0
    index_of = {name.lower(): i for i, name in enumerate(class_names)}
    for class_name, word in BRIDGE_PROBES.items():
        one_hot = np.zeros((1, len(class_names)), dtype=np.float32)
        one_hot[0, index_of[class_name]] = 1.0
        (concept,) = bridge.run(["concept"], {"probs": one_hot})
        nearest = words[int(np.argmax(word_vectors @ concept[0]))]
        hits += nearest == word
        ctx.log(f"bridge probe {class_name!r} -> {nearest!r}")
    bridge_check = check("bridge_probe_accuracy", hits / len(BRIDGE_PROBES), 5 / 6)

    head_folder = ctx.model_dir("fusion-head")
    head_path = head_folder / "head.onnx"
    dim = int(class_embeddings.shape[1])
    onnx.save(build_head_graph(dim=dim), head_path)
    head = ort.InferenceSession(str(head_path), providers=["CPUExecutionProvider"])
    # A label supported by one confident token must win even when another token says something else.
    tokens = embed_texts(["a tabby cat sleeping on a sofa", "invoice number 4521, total due 300 euros"], runtime=runtime)
    labels = embed_texts(["cat", "invoice", "bicycle"], runtime=runtime)
    _, scores, _ = head.run(None, {"tokens": tokens[None], "confidence": np.array([[0.9, 0.9]], np.float32),
                                   "mask": np.ones((1, 2), np.float32), "labels": labels})
    top_two = set(np.argsort(-scores[0])[:2].tolist())
    head_check = check("head_top2_covers_both_tokens", float(top_two == {0, 1}), 1.0)

    common_source = {"packages": [], "derived_from": ["text-encoder", "image-classifier"]}
    return [
        entry(ctx, id="concept-bridge", task="concept-bridge", modality="image", precision="fp32",
              files={"model": bridge_path, "class_embeddings": embeddings_path}, source=common_source,
              license="same as the text encoder and the ImageNet class names",
              preprocess={"input": "imagenet_probabilities"}, verification={"probes": bridge_check}, dim=dim,
              classes=len(class_names)),
        entry(ctx, id="fusion-head", task="fusion", modality="multimodal", precision="fp32",
              files={"model": head_path}, source={"packages": [], "built_by": "engine/fusion.py"}, license="MIT",
              preprocess={"attention_temperature": ATTENTION_TEMPERATURE, "score_temperature": SCORE_TEMPERATURE},
              verification={"two_token_item": head_check}, dim=dim),
    ]
