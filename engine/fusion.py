"""Fusion: modality tokens of one item -> one fused vector and scores against label embeddings.

Every perception lands in the text encoder's 384-d space (DESIGN.md, "One semantic space") as a *token*:
concepts seen (ImageNet probabilities bridged into the space), text read (OCR), words heard (transcript),
text given. The fusion head is an ONNX graph run through the same session code as every other model:

    attention[t, l] = softmax over present tokens t of ( sim(token_t, label_l) / tau_att + log conf_t )
    evidence[l]     = sum_t attention[t, l] * sim(token_t, label_l)      (each label attends to the tokens
                                                                           that speak about it)
    scores          = softmax over labels of evidence / tau_score
    fused           = normalise( sum_t softmax_t(log conf_t) * token_t )  (the item's one vector, for search)

Label-conditioned attention is what lets a label that only the OCR text or only the transcript supports win:
a plain average of the tokens would dilute the one token that matters with the ones that do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .runtime import Runtime, get_runtime

HEAD_ID = "fusion-head"
BRIDGE_ID = "concept-bridge"
# Temperatures chosen on the text encoder's similarity scale (related pairs ~0.5-0.8, unrelated ~0.0-0.2).
ATTENTION_TEMPERATURE = 0.1
SCORE_TEMPERATURE = 0.05
MASK_PENALTY = 1e4  # added (negated) to absent tokens' logits: exp(-1e4) is 0 in float32, without inf arithmetic
MIN_CONFIDENCE = 1e-4


@dataclass
class Token:
    """One piece of evidence about an item, already in the shared text space."""

    kind: str  # concepts | ocr | transcript | text | objects
    vector: np.ndarray  # [dim] L2-normalised
    confidence: float  # 0..1, how much the perception trusts itself
    text: str = ""  # what the token says, for people (class names, OCR text, transcript)
    source: str = ""  # the file it came from, when an item has several


@dataclass
class FusionResult:
    fused: np.ndarray  # [dim]
    labels: list[tuple[str, float]] = field(default_factory=list)  # sorted, best first
    attention: dict[str, list[float]] = field(default_factory=dict)  # label -> weight per token


def pack_tokens(items: list[list[Token]], dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tokens of several items as padded arrays: tokens [B,T,D], confidence [B,T], mask [B,T]."""
    width = max(1, max((len(tokens) for tokens in items), default=1))
    vectors = np.zeros((len(items), width, dim), dtype=np.float32)
    confidence = np.full((len(items), width), MIN_CONFIDENCE, dtype=np.float32)
    mask = np.zeros((len(items), width), dtype=np.float32)
    for row, tokens in enumerate(items):
        for col, token in enumerate(tokens):
            vectors[row, col] = token.vector
            confidence[row, col] = max(MIN_CONFIDENCE, min(1.0, float(token.confidence)))
            mask[row, col] = 1.0
    return vectors, confidence, mask


def run_head(
    items: list[list[Token]],
    label_vectors: np.ndarray,
    runtime: Runtime | None = None,
    head_id: str = HEAD_ID,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the fusion head: returns fused [B,D], scores [B,L] and attention [B,T,L]."""
    runtime = runtime or get_runtime()
    session = runtime.session(head_id)
    dim = session.get_inputs()[0].shape[-1]
    dim = dim if isinstance(dim, int) else label_vectors.shape[-1]
    tokens, confidence, mask = pack_tokens(items, dim)
    labels = np.ascontiguousarray(label_vectors, dtype=np.float32).reshape(-1, dim)
    if labels.shape[0] == 0:
        labels = np.zeros((1, dim), dtype=np.float32)  # a graph needs at least one label; callers drop it
    fused, scores, attention = session.run(
        ["fused", "scores", "attention"],
        {"tokens": tokens, "confidence": confidence, "mask": mask, "labels": labels},
    )
    return fused, scores, attention


def fuse(
    tokens: list[Token],
    labels: list[str] | None = None,
    label_vectors: np.ndarray | None = None,
    runtime: Runtime | None = None,
) -> FusionResult:
    """Fuse one item's tokens; score them against labels when given (names + their embeddings)."""
    runtime = runtime or get_runtime()
    if label_vectors is None:
        label_vectors = np.zeros((0, tokens[0].vector.shape[-1] if tokens else 384), dtype=np.float32)
    fused, scores, attention = run_head([tokens], label_vectors, runtime)
    result = FusionResult(fused=fused[0])
    if labels:
        ranked = sorted(zip(labels, scores[0][: len(labels)].tolist()), key=lambda pair: -pair[1])
        result.labels = [(name, float(score)) for name, score in ranked]
        result.attention = {name: attention[0, : len(tokens), i].tolist() for i, name in enumerate(labels)}
    return result


# ---------------------------------------------------------------------------------------------------------------
# Graph builders. The build step ships their output in the bundle; tests build them small to check mechanics.


def build_head_graph(
    dim: int = 384,
    attention_temperature: float = ATTENTION_TEMPERATURE,
    score_temperature: float = SCORE_TEMPERATURE,
):
    """The zero-shot fusion head as an ONNX ModelProto (needs the `onnx` package)."""
    import onnx
    from onnx import TensorProto, helper

    def const(name: str, value) -> onnx.NodeProto:
        array = np.asarray(value, dtype=np.float32)
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name + "_t", TensorProto.FLOAT, array.shape,
                                                                                   array.flatten().tolist()))

    axes = lambda name, values: helper.make_node(  # noqa: E731
        "Constant", [], [name], value=helper.make_tensor(name + "_t", TensorProto.INT64, [len(values)], values))

    nodes = [
        const("inv_tau_att", 1.0 / attention_temperature),
        const("inv_tau_score", 1.0 / score_temperature),
        const("penalty", MASK_PENALTY),
        const("one", 1.0),
        const("eps", 1e-12),
        axes("ax_last", [-1]),
        axes("ax_tokens", [1]),
        # sim[b,t,l] = tokens[b,t,:] . labels[l,:]
        helper.make_node("Transpose", ["labels"], ["labels_t"], perm=[1, 0]),
        helper.make_node("MatMul", ["tokens", "labels_t"], ["sim"]),
        # token bias[b,t] = log(conf) + (mask - 1) * penalty  -> [b,t,1] to broadcast over labels
        helper.make_node("Log", ["confidence"], ["log_conf"]),
        helper.make_node("Sub", ["mask", "one"], ["mask_m1"]),
        helper.make_node("Mul", ["mask_m1", "penalty"], ["mask_bias"]),
        helper.make_node("Add", ["log_conf", "mask_bias"], ["token_bias"]),
        helper.make_node("Unsqueeze", ["token_bias", "ax_last"], ["token_bias_3d"]),
        # label-conditioned attention over tokens (axis 1)
        helper.make_node("Mul", ["sim", "inv_tau_att"], ["sim_scaled"]),
        helper.make_node("Add", ["sim_scaled", "token_bias_3d"], ["att_logits"]),
        helper.make_node("Softmax", ["att_logits"], ["attention"], axis=1),
        helper.make_node("Mul", ["attention", "sim"], ["weighted_sim"]),
        helper.make_node("ReduceSum", ["weighted_sim", "ax_tokens"], ["evidence"], keepdims=0),
        helper.make_node("Mul", ["evidence", "inv_tau_score"], ["score_logits"]),
        helper.make_node("Softmax", ["score_logits"], ["scores"], axis=-1),
        # fused vector: confidence-weighted mean of present tokens, L2-normalised
        helper.make_node("Softmax", ["token_bias"], ["token_weights"], axis=1),
        helper.make_node("Unsqueeze", ["token_weights", "ax_last"], ["token_weights_3d"]),
        helper.make_node("Mul", ["tokens", "token_weights_3d"], ["weighted_tokens"]),
        helper.make_node("ReduceSum", ["weighted_tokens", "ax_tokens"], ["fused_raw"], keepdims=0),
        helper.make_node("Mul", ["fused_raw", "fused_raw"], ["fused_sq"]),
        helper.make_node("ReduceSum", ["fused_sq", "ax_last"], ["fused_norm_sq"], keepdims=1),
        helper.make_node("Add", ["fused_norm_sq", "eps"], ["fused_norm_sq_eps"]),
        helper.make_node("Sqrt", ["fused_norm_sq_eps"], ["fused_norm"]),
        helper.make_node("Div", ["fused_raw", "fused_norm"], ["fused"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fusiondesk_zero_shot_head",
        inputs=[
            helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["batch", "tokens", dim]),
            helper.make_tensor_value_info("confidence", TensorProto.FLOAT, ["batch", "tokens"]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", "tokens"]),
            helper.make_tensor_value_info("labels", TensorProto.FLOAT, ["labels", dim]),
        ],
        outputs=[
            helper.make_tensor_value_info("fused", TensorProto.FLOAT, ["batch", dim]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", "labels"]),
            helper.make_tensor_value_info("attention", TensorProto.FLOAT, ["batch", "tokens", "labels"]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="fusiondesk")
    model.ir_version = 8  # readable by every onnxruntime from 1.10 on
    onnx.checker.check_model(model)
    return model


def build_bridge_graph(class_embeddings: np.ndarray):
    """ImageNet probabilities [N,C] -> concept token [N,D]: normalise(probs @ class_embeddings)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    classes, dim = class_embeddings.shape
    nodes = [
        helper.make_node("MatMul", ["probs", "class_embeddings"], ["concept_raw"]),
        helper.make_node("LpNormalization", ["concept_raw"], ["concept"], axis=-1, p=2),
    ]
    graph = helper.make_graph(
        nodes,
        "fusiondesk_concept_bridge",
        inputs=[helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", classes])],
        outputs=[helper.make_tensor_value_info("concept", TensorProto.FLOAT, ["batch", dim])],
        initializer=[numpy_helper.from_array(class_embeddings.astype(np.float32), "class_embeddings")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="fusiondesk")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def bridge_concepts(probs: np.ndarray, runtime: Runtime | None = None) -> np.ndarray:
    """Concept tokens for images from their ImageNet probabilities [N,1000] -> [N,384]."""
    runtime = runtime or get_runtime()
    (concept,) = runtime.session(BRIDGE_ID).run(["concept"], {"probs": np.asarray(probs, dtype=np.float32)})
    return concept
