"""Teach: fit a head on a user's labelled examples (one folder per class), offline, with numpy only.

Each example (a file, or a sub-folder of files that belong together) is perceived by the frozen encoders and
turned into fixed-size *feature blocks*, one per kind of evidence, each with a presence mask:

    image       EfficientNet-Lite0 penultimate feature (1280)      concepts    bridged ImageNet concepts (384)
    ocr         text read in the image, embedded (384)             acoustic    pooled Whisper encoder states
    transcript  words heard, embedded (384)                        text        text given, embedded (384)

Three candidate heads are fitted on the same normalised blocks and compared by stratified k-fold
cross-validation; the best one (accuracy first, log-loss to break ties) is refitted on every example:

    nearest-class-mean   cosine to each class's mean of the concatenated blocks (the baseline)
    logistic-regression  softmax regression on the concatenated blocks (L2-regularised, L-BFGS)
    fusion-attention     the fusion head's shape with trainable parts: a projection per block into a shared
                         token space, attention over the blocks present, a linear classifier on the fused token

The chosen head is exported as one ONNX graph (normalisation included) whose inputs are the blocks and masks
and whose output is the class probabilities; its metadata_props say which classes, blocks, encoders and
bundle version it was made with. It runs through `Runtime.session_for_file`, like every model of the app.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import FusionDeskError, InputFileError
from .fileio import atomic_write_bytes
from .optimize import minimize_lbfgs
from .runtime import Runtime, get_runtime

FORMAT_VERSION = 1
METADATA_KEY = "fusiondesk.head"
HEAD_SUFFIX = ".onnx"
MIN_EXAMPLES_WARNING = 5
DEFAULT_FOLDS = 5
MASK_PENALTY = 1e4  # absent blocks' attention logits are pushed down by this; exp(-1e4) is 0 in float32
NORM_EPS = 1e-12

# Block -> the bundle's models that must run to produce it ("speech" stands for the head's speech model).
BLOCKS: dict[str, tuple[str, ...]] = {
    "image": ("image-classifier",),
    "concepts": ("image-classifier", "concept-bridge"),
    "ocr": ("ocr", "text-encoder"),
    "acoustic": ("speech",),
    "transcript": ("speech", "vad", "text-encoder"),
    "text": ("text-encoder",),
}
TOKEN_BLOCKS = {"concepts": "concepts", "ocr": "ocr", "transcript": "transcript", "text": "text"}

Progress = Callable[[float, str], None]


class HeadError(FusionDeskError):
    """A head that cannot be trained, found, imported or used here; the message says what to do."""


def _no_progress(fraction: float, message: str) -> None:
    pass


class single_threaded_blas:
    """Run numpy's OpenBLAS on one thread inside the block.

    Training multiplies small matrices (tens to hundreds of rows) thousands of times; OpenBLAS's worker threads
    spin-wait between calls, and on a busy machine (ONNX Runtime's threads, another app) that made one
    60x1280 @ 1280x64 product take 45 ms instead of 0.3 ms. Where the library cannot be found, nothing changes.
    """

    # numpy's wheels bundle OpenBLAS as built by the scipy-openblas project, hence the prefixed names first.
    SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
               "openblas_set_num_threads64_", "openblas_set_num_threads")
    GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
               "openblas_get_num_threads64_", "openblas_get_num_threads")

    def __enter__(self):
        self.saved = []
        for lib in _openblas_libraries():
            setter = next((getattr(lib, n) for n in self.SETTERS if hasattr(lib, n)), None)
            getter = next((getattr(lib, n) for n in self.GETTERS if hasattr(lib, n)), None)
            if setter is not None and getter is not None:
                self.saved.append((setter, int(getter())))
                setter(1)
        return self

    def __exit__(self, *exc):
        for setter, threads in self.saved:
            setter(threads)


_BLAS_LIBS: list | None = None


def _openblas_libraries() -> list:
    """numpy's bundled OpenBLAS (already loaded by numpy's import; CDLL returns the same handle). The fits
    (engine.optimize) do all their linear algebra through numpy, so it is the only BLAS that matters."""
    global _BLAS_LIBS
    if _BLAS_LIBS is None:
        import ctypes

        _BLAS_LIBS = []
        root = Path(np.__file__).parent
        for folder in (root.parent / "numpy.libs", root / ".dylibs"):
            for path in sorted(folder.glob("*openblas*")) if folder.is_dir() else []:
                try:
                    _BLAS_LIBS.append(ctypes.CDLL(str(path)))
                except OSError:
                    continue
    return _BLAS_LIBS


# ---------------------------------------------------------------------------------------------------------------
# Feature blocks


@dataclass
class Features:
    """Examples as fixed-size blocks: blocks[name] is [N, dim] (zeros where absent), masks[name] is [N]."""

    blocks: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.masks.values()))) if self.masks else 0

    @property
    def dims(self) -> dict[str, int]:
        return {name: int(block.shape[1]) for name, block in self.blocks.items()}

    def subset(self, rows: np.ndarray) -> "Features":
        return Features({n: b[rows] for n, b in self.blocks.items()}, {n: m[rows] for n, m in self.masks.items()})

    def present(self) -> np.ndarray:
        """[N] bool: the example has at least one block."""
        return np.any(np.stack(list(self.masks.values()), axis=1) > 0, axis=1)


def block_vectors(perceptions: list) -> dict[str, np.ndarray]:
    """The blocks one example provides (several files of one example: each block averaged over them)."""
    found: dict[str, list[np.ndarray]] = {}
    for perception in perceptions:
        if perception.image_feature is not None:
            found.setdefault("image", []).append(np.asarray(perception.image_feature, dtype=np.float32).ravel())
        if perception.acoustic_feature is not None:
            found.setdefault("acoustic", []).append(np.asarray(perception.acoustic_feature, dtype=np.float32).ravel())
        for token in perception.tokens:
            name = TOKEN_BLOCKS.get(token.kind)
            if name:
                found.setdefault(name, []).append(np.asarray(token.vector, dtype=np.float32).ravel())
    return {name: np.mean(vectors, axis=0) for name, vectors in found.items()}


def stack_features(items: list[dict[str, np.ndarray]], dims: dict[str, int] | None = None) -> Features:
    """Per-example block dicts -> Features over the given blocks (default: every block seen, in BLOCKS order)."""
    if dims is None:
        dims = {}
        for item in items:
            for name, vector in item.items():
                dims.setdefault(name, vector.shape[0])
        dims = {name: dims[name] for name in BLOCKS if name in dims}
    blocks = {name: np.zeros((len(items), dim), dtype=np.float32) for name, dim in dims.items()}
    masks = {name: np.zeros(len(items), dtype=np.float32) for name in dims}
    for row, item in enumerate(items):
        for name, vector in item.items():
            if name not in dims:
                continue
            if vector.shape[0] != dims[name]:
                raise HeadError(f"the {name} feature has {vector.shape[0]} values, the head expects {dims[name]} "
                                "(it was made with a different model)")
            blocks[name][row] = vector
            masks[name][row] = 1.0
    return Features(blocks, masks)


# ---------------------------------------------------------------------------------------------------------------
# Normalisation (fitted on training rows only, exported into the graph)


@dataclass
class BlockNorm:
    """x -> (x / |x| - mean) * scale: scale-free, centred, each block of about unit norm."""

    mean: np.ndarray
    scale: np.ndarray


def fit_norms(features: Features) -> dict[str, BlockNorm]:
    norms = {}
    for name, block in features.blocks.items():
        rows = features.masks[name] > 0
        unit = _l2(block[rows]) if rows.any() else np.zeros((1, block.shape[1]), dtype=np.float32)
        mean = unit.mean(axis=0)
        variance = ((unit - mean) ** 2).mean(axis=0) if len(unit) > 1 else np.ones(block.shape[1])
        # Per-dimension standardisation, shrunk a little towards the block's average variance (a dimension that
        # barely varied in tens of examples must not be blown up). Whisper's pooled states have a few huge
        # dimensions that carry what was said; standardising lets the ones that carry the voice count
        # (two espeak-ng voices, 3-fold: logistic regression 83% with equal scaling -> 94% standardised).
        shrunk = 0.9 * variance + 0.1 * variance.mean() + 1e-8
        scale = 1.0 / np.sqrt(shrunk * block.shape[1])
        norms[name] = BlockNorm(mean.astype(np.float32), scale.astype(np.float32))
    return norms


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt((x * x).sum(axis=-1, keepdims=True) + NORM_EPS)


def apply_norms(features: Features, norms: dict[str, BlockNorm]) -> dict[str, np.ndarray]:
    return {name: ((_l2(features.blocks[name]) - norm.mean) * norm.scale * features.masks[name][:, None]).astype(np.float32)
            for name, norm in norms.items()}


def _concat(normed: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([normed[name] for name in normed], axis=1)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------------------------------------
# Candidate models: fit(normed blocks, masks, labels) and proba(...), plus their ONNX nodes


class NearestClassMean:
    kind = "nearest-class-mean"
    TEMPERATURES = np.geomspace(1.0, 200.0, 24)

    def fit(self, normed: dict[str, np.ndarray], masks: dict[str, np.ndarray], y: np.ndarray, classes: int) -> None:
        x = _l2(_concat(normed).astype(np.float64))
        counts = np.bincount(y, minlength=classes).astype(np.float64)
        sums = np.zeros((classes, x.shape[1]))
        np.add.at(sums, y, x)
        self.centroids = _l2(sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
        self.temperature = self._loo_temperature(x, y, sums, counts)

    def _loo_temperature(self, x, y, sums, counts) -> float:
        """The scale of the cosine logits, chosen by leave-one-out likelihood (each row left out of its mean)."""
        sims = x @ _l2(sums / np.maximum(counts, 1)[:, None]).T
        own = sums[y] - x
        own_count = counts[y] - 1
        own_sim = np.where(own_count > 0, (x * _l2(own)).sum(axis=1), 0.0)
        sims[np.arange(len(y)), y] = own_sim
        best, best_nll = 10.0, np.inf
        for t in self.TEMPERATURES:
            p = _softmax(sims * t)
            nll = -np.log(p[np.arange(len(y)), y] + 1e-12).mean()
            if nll < best_nll:
                best, best_nll = float(t), nll
        return best

    def proba(self, normed, masks) -> np.ndarray:
        x = _l2(_concat(normed))
        return _softmax((x @ self.centroids.T) * self.temperature)

    def onnx(self, g: "_Graph", normed: list[str], masks: list[str]) -> str:
        x = g.node("Concat", normed, axis=1)
        unit = g.l2(x)
        sims = g.node("MatMul", [unit, g.const("centroids_t", self.centroids.T)])
        logits = g.node("Mul", [sims, g.const("temperature", np.float32(self.temperature))])
        return g.node("Softmax", [logits], axis=-1)


class LogisticRegression:
    kind = "logistic-regression"

    def __init__(self, l2: float = 1e-2, max_iter: int = 300):
        self.l2, self.max_iter = l2, max_iter

    def fit(self, normed, masks, y: np.ndarray, classes: int) -> None:
        x = _concat(normed).astype(np.float64)
        n, d = x.shape
        onehot = np.eye(classes)[y]

        def loss(theta):
            w, b = theta[: d * classes].reshape(d, classes), theta[d * classes:]
            p = _softmax(x @ w + b)
            value = -np.log(p[np.arange(n), y] + 1e-300).mean() + 0.5 * self.l2 * (w * w).sum()
            g = (p - onehot) / n
            return value, np.concatenate([(x.T @ g + self.l2 * w).ravel(), g.sum(axis=0)])

        result = minimize_lbfgs(loss, np.zeros(d * classes + classes), max_iter=self.max_iter)
        self.weights = result.x[: d * classes].reshape(d, classes).astype(np.float32)
        self.bias = result.x[d * classes:].astype(np.float32)

    def proba(self, normed, masks) -> np.ndarray:
        return _softmax(_concat(normed) @ self.weights + self.bias)

    def onnx(self, g: "_Graph", normed: list[str], masks: list[str]) -> str:
        x = g.node("Concat", normed, axis=1)
        logits = g.node("Add", [g.node("MatMul", [x, g.const("weights", self.weights)]), g.const("bias", self.bias)])
        return g.node("Softmax", [logits], axis=-1)


class FusionAttention:
    """token_m = x_m W_m + b_m; a = softmax over present m of tanh(token_m) . q; fused = sum a_m token_m;
    probs = softmax(fused W_c + b_c). Gradients by hand, optimised with L-BFGS (full batch: tens to hundreds
    of examples fit in one matrix)."""

    kind = "fusion-attention"

    def __init__(self, hidden: int = 32, l2: float = 1e-2, max_iter: int = 60, seed: int = 0, init_scale: float = 0.1):
        self.hidden, self.l2, self.max_iter, self.seed, self.init_scale = hidden, l2, max_iter, seed, init_scale

    # parameters live in one flat vector for the optimiser; _unpack gives named views into it
    def _shapes(self, dims: dict[str, int], classes: int) -> list[tuple[str, tuple[int, ...]]]:
        shapes: list[tuple[str, tuple[int, ...]]] = []
        for name, dim in dims.items():
            shapes += [(f"W_{name}", (dim, self.hidden)), (f"b_{name}", (self.hidden,))]
        return shapes + [("q", (self.hidden,)), ("W_c", (self.hidden, classes)), ("b_c", (classes,))]

    @staticmethod
    def _unpack(theta: np.ndarray, shapes) -> dict[str, np.ndarray]:
        params, offset = {}, 0
        for name, shape in shapes:
            size = int(np.prod(shape))
            params[name] = theta[offset: offset + size].reshape(shape)
            offset += size
        return params

    def _init(self, shapes, normed: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> np.ndarray:
        """Projections start as each block's principal directions (scaled to unit token variance): with tens of
        examples in 384-1280 dimensions, random projections let the optimiser fit noise, while the directions
        the examples actually vary along hold the differences between classes."""
        rng = np.random.default_rng(self.seed)
        parts = []
        for name, shape in shapes:
            if name.startswith("W_") and name != "W_c":
                block = name[2:]
                rows = normed[block][masks[block] > 0]
                parts.append(self._principal(rows, shape, rng).ravel())
            elif name == "W_c":
                parts.append(rng.normal(0.0, 1.0 / np.sqrt(self.hidden), shape).ravel())
            else:
                parts.append(np.zeros(int(np.prod(shape))))  # biases, and q: attention starts uniform
        return np.concatenate(parts)

    def _principal(self, rows: np.ndarray, shape: tuple[int, ...], rng) -> np.ndarray:
        dim, hidden = shape
        weights = rng.normal(0.0, self.init_scale / np.sqrt(dim), shape)
        if len(rows) >= 2:
            _, singular, vt = np.linalg.svd(rows - rows.mean(axis=0), full_matrices=False)
            keep = min(hidden, int((singular > 1e-6 * singular[0]).sum()))
            spread = singular[:keep] / np.sqrt(len(rows))
            weights[:, :keep] = vt[:keep].T / spread
        return weights

    def forward(self, params, normed, masks):
        names = list(normed)
        tokens = np.stack([normed[n] @ params[f"W_{n}"] + params[f"b_{n}"] for n in names], axis=1)  # [B,M,H]
        keys = np.tanh(tokens)
        presence = np.stack([masks[n] for n in names], axis=1)  # [B,M]
        attention = _softmax(keys @ params["q"] + (presence - 1.0) * MASK_PENALTY)
        fused = (attention[:, :, None] * tokens).sum(axis=1)
        probs = _softmax(fused @ params["W_c"] + params["b_c"])
        return tokens, keys, attention, fused, probs

    def loss_and_grad(self, theta, shapes, normed, masks, y, classes):
        params = self._unpack(theta, shapes)
        names = list(normed)
        tokens, keys, attention, fused, probs = self.forward(params, normed, masks)
        n = len(y)
        weights = [params[f"W_{m}"] for m in names] + [params["W_c"]]
        loss = -np.log(probs[np.arange(n), y] + 1e-300).mean() + 0.5 * self.l2 * sum((w * w).sum() for w in weights)
        g_logits = probs.copy()
        g_logits[np.arange(n), y] -= 1.0
        g_logits /= n
        grads = {"W_c": fused.T @ g_logits + self.l2 * params["W_c"], "b_c": g_logits.sum(axis=0)}
        g_fused = g_logits @ params["W_c"].T  # [B,H]
        g_att = np.einsum("bh,bmh->bm", g_fused, tokens)
        g_scores = attention * (g_att - (attention * g_att).sum(axis=1, keepdims=True))
        grads["q"] = np.einsum("bm,bmh->h", g_scores, keys)
        g_tokens = attention[:, :, None] * g_fused[:, None, :] + g_scores[:, :, None] * params["q"] * (1.0 - keys ** 2)
        for index, name in enumerate(names):
            grads[f"W_{name}"] = normed[name].T @ g_tokens[:, index, :] + self.l2 * params[f"W_{name}"]
            grads[f"b_{name}"] = g_tokens[:, index, :].sum(axis=0)
        return loss, np.concatenate([grads[name].ravel() for name, _ in shapes])

    def fit(self, normed, masks, y: np.ndarray, classes: int) -> None:
        normed64 = {n: v.astype(np.float64) for n, v in normed.items()}
        masks64 = {n: m.astype(np.float64) for n, m in masks.items()}
        shapes = self._shapes({n: v.shape[1] for n, v in normed.items()}, classes)
        result = minimize_lbfgs(self.loss_and_grad, self._init(shapes, normed64, masks64),
                                args=(shapes, normed64, masks64, y, classes), max_iter=self.max_iter)
        self.params = {k: v.astype(np.float32) for k, v in self._unpack(result.x, shapes).items()}

    def proba(self, normed, masks) -> np.ndarray:
        return self.forward(self.params, normed, masks)[4]

    def onnx(self, g: "_Graph", normed: list[str], masks: list[str]) -> str:
        tokens, scores = [], []
        q = g.const("q", self.params["q"].reshape(-1, 1))
        for x, mask in zip(normed, masks):
            name = x.removesuffix("_normed")
            pre = g.node("Add", [g.node("MatMul", [x, g.const(f"W_{name}", self.params[f"W_{name}"])]),
                                 g.const(f"b_{name}", self.params[f"b_{name}"])])
            token, key = pre, g.node("Tanh", [pre])
            absent = g.node("Mul", [g.node("Sub", [mask, g.const("one", np.float32(1.0))]),
                                    g.const("penalty", np.float32(MASK_PENALTY))])
            scores.append(g.node("Add", [g.node("MatMul", [key, q]), absent]))  # [B,1]
            tokens.append(g.node("Unsqueeze", [token, g.const("axis1", np.array([1], dtype=np.int64))]))  # [B,1,H]
        attention = g.node("Softmax", [g.node("Concat", scores, axis=1)], axis=1)  # [B,M]
        stacked = g.node("Concat", tokens, axis=1)  # [B,M,H]
        weighted = g.node("Mul", [stacked, g.node("Unsqueeze", [attention, g.const("axis_last", np.array([-1], dtype=np.int64))])])
        fused = g.node("ReduceSum", [weighted, g.const("axis1", np.array([1], dtype=np.int64))], keepdims=0)
        logits = g.node("Add", [g.node("MatMul", [fused, g.const("W_c", self.params["W_c"])]), g.const("b_c", self.params["b_c"])])
        return g.node("Softmax", [logits], axis=-1)


CANDIDATES: dict[str, Callable[[], Any]] = {
    NearestClassMean.kind: NearestClassMean,
    LogisticRegression.kind: LogisticRegression,
    FusionAttention.kind: FusionAttention,
}


@dataclass
class TrainedModel:
    """Normalisation + a fitted candidate: what the ONNX head computes, in numpy."""

    norms: dict[str, BlockNorm]
    model: Any

    @staticmethod
    def fit(kind: str, features: Features, y: np.ndarray, classes: int) -> "TrainedModel":
        with single_threaded_blas():
            norms = fit_norms(features)
            model = CANDIDATES[kind]()
            model.fit(apply_norms(features, norms), features.masks, y, classes)
        return TrainedModel(norms, model)

    def proba(self, features: Features) -> np.ndarray:
        return self.model.proba(apply_norms(features, self.norms), {n: features.masks[n] for n in self.norms})


# ---------------------------------------------------------------------------------------------------------------
# Cross-validation and the choice of model


def stratified_folds(y: np.ndarray, folds: int, seed: int = 0) -> list[np.ndarray]:
    """Test rows of each fold; every class spread as evenly as its count allows."""
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(y), dtype=np.int64)
    offset = 0
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        assignment[rows] = (np.arange(len(rows)) + offset) % folds
        offset += len(rows)  # rotate so that small classes do not all land in fold 0
    return [np.flatnonzero(assignment == k) for k in range(folds)]


@dataclass
class CandidateScore:
    kind: str
    accuracy: float
    log_loss: float
    seconds: float
    predictions: np.ndarray = field(repr=False)


def cross_validate(features: Features, y: np.ndarray, classes: int, folds: int, kinds: list[str] | None = None,
                   progress: Progress = _no_progress) -> list[CandidateScore]:
    kinds = kinds or list(CANDIDATES)
    splits = stratified_folds(y, folds)
    scores = []
    steps, done = len(kinds) * len(splits), 0
    for kind in kinds:
        started = time.perf_counter()
        probs = np.zeros((len(y), classes))
        for test in splits:
            train = np.setdiff1d(np.arange(len(y)), test)
            trained = TrainedModel.fit(kind, features.subset(train), y[train], classes)
            probs[test] = trained.proba(features.subset(test))
            done += 1
            progress(done / steps, f"cross-validating {kind} ({done}/{steps})")
        predictions = probs.argmax(axis=1)
        scores.append(CandidateScore(
            kind=kind,
            accuracy=float((predictions == y).mean()),
            log_loss=float(np.log(1.0 / np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)).mean()),
            seconds=time.perf_counter() - started,
            predictions=predictions,
        ))
    return scores


def choose(scores: list[CandidateScore]) -> CandidateScore:
    """Highest cross-validated accuracy; equal accuracies are decided by the lower log-loss (better calibrated)."""
    return min(scores, key=lambda s: (-round(s.accuracy, 9), s.log_loss))


def confusion_matrix(y: np.ndarray, predictions: np.ndarray, classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (y, predictions), 1)
    return matrix


# ---------------------------------------------------------------------------------------------------------------
# ONNX export


class _Graph:
    """A small helper over onnx.helper: unique names, constants as initializers."""

    def __init__(self):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.initializers, self.names = [], {}, set()

    def fresh(self, op: str) -> str:
        index = len(self.names)
        name = f"{op.lower()}_{index}"
        self.names.add(name)
        return name

    def const(self, name: str, value) -> str:
        if name not in self.initializers:
            array = np.asarray(value)
            array = array.astype(np.float32) if array.dtype.kind == "f" else array
            self.initializers[name] = self.numpy_helper.from_array(array, name)
        return name

    def node(self, op: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        output = output or self.fresh(op)
        self.nodes.append(self.helper.make_node(op, inputs, [output], **attrs))
        return output

    def l2(self, x: str) -> str:
        squared = self.node("ReduceSum", [self.node("Mul", [x, x]), self.const("axis_last", np.array([-1], dtype=np.int64))],
                            keepdims=1)
        norm = self.node("Sqrt", [self.node("Add", [squared, self.const("eps", np.float32(NORM_EPS))])])
        return self.node("Div", [x, norm])


def export_onnx(trained: TrainedModel, metadata: dict[str, Any]):
    """The head as an ONNX ModelProto: inputs `<block>` [batch, dim] and `<block>_mask` [batch]; output `probs`."""
    import onnx
    from onnx import TensorProto, helper

    g = _Graph()
    inputs, normed, masks = [], [], []
    for name, norm in trained.norms.items():
        dim = int(norm.mean.shape[0])
        inputs += [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", dim]),
                   helper.make_tensor_value_info(f"{name}_mask", TensorProto.FLOAT, ["batch"])]
        mask = g.node("Unsqueeze", [f"{name}_mask", g.const("axis_last", np.array([-1], dtype=np.int64))], f"{name}_mask_2d")
        centred = g.node("Sub", [g.l2(name), g.const(f"mean_{name}", norm.mean)])
        scaled = g.node("Mul", [centred, g.const(f"scale_{name}", norm.scale)])
        normed.append(g.node("Mul", [scaled, mask], f"{name}_normed"))
        masks.append(mask)
    probs = trained.model.onnx(g, normed, masks)
    g.nodes.append(helper.make_node("Identity", [probs], ["probs"]))
    classes = len(metadata["classes"])
    graph = helper.make_graph(g.nodes, "fusiondesk_trained_head", inputs,
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", classes])],
                              initializer=list(g.initializers.values()))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="fusiondesk-teach")
    model.ir_version = 8
    model.doc_string = f"FusionDesk head {metadata.get('name', '')}: {', '.join(metadata['classes'])}"
    helper.set_model_props(model, {METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    onnx.checker.check_model(model)
    return model


# ---------------------------------------------------------------------------------------------------------------
# Heads on disk


NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def heads_dir() -> Path:
    from .settings import data_dir

    return data_dir() / "heads"


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name or "") or name.endswith(HEAD_SUFFIX):
        raise HeadError(f"{name!r} is not a usable head name: use letters, digits, '-', '_' or '.', "
                        "starting with a letter or digit, at most 64 characters")
    return name


def head_path(name: str) -> Path:
    return heads_dir() / f"{check_name(name)}{HEAD_SUFFIX}"


@dataclass
class Head:
    """A trained head file and what its metadata says it needs."""

    name: str
    path: Path
    metadata: dict[str, Any]
    sha256: str
    content: bytes = field(default=b"", repr=False)  # the bytes read_head checked: the ones that run

    @property
    def classes(self) -> list[str]:
        return list(self.metadata["classes"])

    @property
    def blocks(self) -> dict[str, int]:
        return {b["name"]: int(b["dim"]) for b in self.metadata["blocks"]}

    @property
    def encoders(self) -> list[str]:
        return list(self.metadata["encoders"])

    @property
    def speech_model(self) -> str | None:
        return self.metadata.get("speech_model")

    def summary(self) -> dict[str, Any]:
        meta = self.metadata
        return {"name": self.name, "classes": self.classes, "model": meta.get("model"), "blocks": list(self.blocks),
                "cv_accuracy": meta.get("cv", {}).get("accuracy"), "examples": sum(meta.get("examples", {}).values()),
                "bundle_version": meta.get("bundle_version"), "created": meta.get("created"), "path": str(self.path)}

    def check_usable(self, runtime: Runtime) -> None:
        """Refuse a head this bundle cannot feed: another bundle version, or an encoder it lacks."""
        bundle = runtime.bundle
        made_for = self.metadata.get("bundle_version")
        if made_for != bundle.bundle_version:
            raise HeadError(f"head {self.name!r} was trained with model bundle version {made_for}, but this app has "
                            f"version {bundle.bundle_version}: its features would not mean the same thing. "
                            f"Train it again here with `fusiondesk train DATA_DIR --name {self.name}`")
        missing = [model_id for model_id in self.encoders if model_id not in bundle]
        if missing:
            raise HeadError(f"head {self.name!r} needs model(s) {', '.join(missing)}, which this app's model bundle "
                            "does not have; rebuild the bundle with them or train the head again here")

    def perception_options(self, base=None):
        """Perception settings that produce exactly the blocks this head reads."""
        from .perceive import PerceptionOptions

        options = base or PerceptionOptions()
        options.ocr = "ocr" in self.blocks
        options.acoustic_features = "acoustic" in self.blocks
        if self.speech_model:
            options.speech_model = self.speech_model
        return options


# What a head file may contain: the operators export_onnx writes (a shared file could hold any graph, and the app
# runs it), tensors inside the file only (an external-data path could point anywhere on the disk), and weights of a
# size a head has (the largest kind, fusion attention over image, text and sound blocks, holds about 70,000 numbers;
# the cap leaves room for many classes and wider blocks while refusing a header that declares gigabytes).
HEAD_OPERATORS = frozenset({"Add", "Concat", "Div", "Identity", "MatMul", "Mul", "ReduceSum", "Softmax", "Sqrt",
                            "Sub", "Tanh", "Unsqueeze"})
HEAD_MAX_WEIGHTS = 16_000_000  # numbers in all the file's tensors together (64 MB of float32)


def check_head_graph(model, metadata: dict[str, Any]) -> None:
    """Raise ValueError (with the reason) unless the graph is one a FusionDesk head can be: inputs and output as
    export_onnx names and shapes them, only its operators, every tensor stored in the file and of honest size."""
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    if any(opset.domain not in ("", "ai.onnx") for opset in model.opset_import) or model.functions:
        raise ValueError("it uses operators from outside the ONNX standard")
    foreign = sorted({node.op_type for node in graph.node if node.op_type not in HEAD_OPERATORS or node.domain})
    if foreign:
        raise ValueError(f"it contains operators a head does not use ({', '.join(foreign[:5])})")
    if any(attr.type in (attr.GRAPH, attr.GRAPHS, attr.TENSOR, attr.SPARSE_TENSOR) for node in graph.node
           for attr in node.attribute):
        raise ValueError("its operators carry subgraphs or tensors, which a head does not have")
    total = 0
    for tensor in graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL or tensor.external_data:
            raise ValueError(f"tensor {tensor.name!r} refers to data outside the file")
        declared = int(np.prod(tensor.dims, dtype=np.float64)) if tensor.dims else 1
        total += declared
        if total > HEAD_MAX_WEIGHTS:
            raise ValueError(f"its tensors declare {total:,} numbers, more than a head has ({HEAD_MAX_WEIGHTS:,})")
        try:
            stored = numpy_helper.to_array(tensor).size
        except Exception:  # onnx cannot shape the data it holds to the dimensions it declares
            stored = None
        if stored != declared:
            raise ValueError(f"tensor {tensor.name!r} does not hold the {declared:,} numbers it declares")
    if graph.sparse_initializer:
        raise ValueError("it has sparse tensors, which a head does not have")

    def shape(value) -> list:
        return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value.type.tensor_type.shape.dim]

    expected = {}
    for block in metadata["blocks"]:
        expected[block["name"]] = int(block["dim"])
        expected[f"{block['name']}_mask"] = None
    given = {value.name: value for value in graph.input if value.name not in {t.name for t in graph.initializer}}
    if set(given) != set(expected):
        raise ValueError(f"its inputs are {sorted(given)}, but its metadata names {sorted(expected)}")
    for name, dim in expected.items():
        value = given[name]
        dims = shape(value)
        if value.type.tensor_type.elem_type != TensorProto.FLOAT or len(dims) != (1 if dim is None else 2) or (
                dim is not None and dims[1] != dim):
            raise ValueError(f"input {name!r} has shape {dims}, a head's is {['batch'] + ([dim] if dim else [])}")
    outputs = {value.name: shape(value) for value in graph.output}
    if list(outputs) != ["probs"] or len(outputs["probs"]) != 2 or outputs["probs"][1] != len(metadata["classes"]):
        raise ValueError(f"its output is {outputs}, a head's is probs [batch, {len(metadata['classes'])}]")


def read_head(path: Path | str, name: str | None = None) -> Head:
    """A head file's metadata, checked for shape; InputFileError when it is not a FusionDesk head."""
    import onnx

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(path, f"cannot read the head file ({exc.strerror or exc})") from exc
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # protobuf raises its own DecodeError types
        raise InputFileError(path, f"is not an ONNX model ({type(exc).__name__})") from exc
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise InputFileError(path, "is an ONNX model but not a FusionDesk head (no head metadata)")
    try:
        metadata = json.loads(props[METADATA_KEY])
        if metadata.get("format") != FORMAT_VERSION:
            raise ValueError(f"format {metadata.get('format')!r}, this app reads {FORMAT_VERSION}")
        for key in ("classes", "blocks", "encoders", "bundle_version"):
            if key not in metadata:
                raise ValueError(f"no {key!r}")
        if not all(isinstance(b, dict) and {"name", "dim"} <= set(b) for b in metadata["blocks"]):
            raise ValueError("blocks without a name and a dimension")
    except (ValueError, TypeError) as exc:
        raise InputFileError(path, f"has unreadable head metadata ({exc})") from exc
    try:
        check_head_graph(model, metadata)
    except ValueError as exc:
        raise InputFileError(path, f"is not a safe FusionDesk head: {exc}") from exc
    return Head(name=name or metadata.get("name") or path.stem, path=path, metadata=metadata,
                sha256=hashlib.sha256(data).hexdigest(), content=data)


def save_head(model, name: str) -> Path:
    return atomic_write_bytes(head_path(name), model.SerializeToString())


def list_heads() -> list[Head]:
    found = []
    folder = heads_dir()
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob(f"*{HEAD_SUFFIX}")):
        try:
            found.append(read_head(path, name=path.stem))
        except InputFileError:
            continue  # a stray or broken file in the folder is not a head; `heads` lists the good ones
    return found


def load_head(name_or_path: str | Path, runtime: Runtime | None = None) -> Head:
    """A saved head by name (or a head file by path), refused unless this bundle can feed it."""
    runtime = runtime or get_runtime()
    candidate = Path(name_or_path)
    if candidate.suffix == HEAD_SUFFIX and candidate.is_file():
        head = read_head(candidate)
    else:
        path = head_path(str(name_or_path))
        if not path.is_file():
            known = ", ".join(h.name for h in list_heads()) or "none yet"
            raise HeadError(f"no head named {name_or_path!r} (saved heads: {known}); "
                            "make one with `fusiondesk train DATA_DIR --name NAME`")
        head = read_head(path, name=path.stem)
    head.check_usable(runtime)
    return head


def import_head(source: Path | str, name: str | None = None, runtime: Runtime | None = None,
                replace: bool = False) -> Head:
    """Copy a shared head file into the heads folder, after checking that this app can use it."""
    runtime = runtime or get_runtime()
    head = read_head(source)
    if name:
        head.name = name
    check_name(head.name)
    head.check_usable(runtime)
    target = head_path(head.name)
    if target.exists() and not replace:
        raise HeadError(f"a head named {head.name!r} already exists: choose another name or replace it")
    atomic_write_bytes(target, head.content)  # the bytes that were checked, not a second read of the source
    return read_head(target, name=head.name)


def export_head(name: str, target: Path | str) -> Path:
    """Write a saved head as one file, ready to share."""
    source = head_path(name)
    if not source.is_file():
        raise HeadError(f"no head named {name!r} to export")
    target = Path(target)
    if target.is_dir():
        target = target / source.name
    return atomic_write_bytes(target, source.read_bytes())


def remove_head(name: str) -> None:
    path = head_path(name)
    if not path.is_file():
        raise HeadError(f"no head named {name!r}")
    path.unlink()


# ---------------------------------------------------------------------------------------------------------------
# Using a head


def head_features(head: Head, perceptions: list) -> Features:
    return stack_features([block_vectors(p if isinstance(p, list) else [p]) for p in perceptions], head.blocks)


def run_head_file(head: Head, features: Features, runtime: Runtime | None = None) -> np.ndarray:
    """Class probabilities [N, classes] from the head's ONNX graph, through the runtime's session code."""
    runtime = runtime or get_runtime()
    # Keyed by content, so that a head retrained under the same name is not served from a stale session.
    session = runtime.session_for_file(head.path, key=(f"head:{head.sha256}", "model"), content=head.content or None)
    feeds = {}
    for name in head.blocks:
        feeds[name] = np.ascontiguousarray(features.blocks[name], dtype=np.float32)
        feeds[f"{name}_mask"] = np.ascontiguousarray(features.masks[name], dtype=np.float32)
    (probs,) = session.run(["probs"], feeds)
    return probs


def classify_with_head(perceptions: list, head: Head, runtime: Runtime | None = None,
                       top_k: int | None = None) -> list[list[dict[str, Any]] | InputFileError]:
    """Labels for each perception (or list of perceptions forming one item): [{"label", "score"}], best first.
    An item that has none of the evidence the head was taught on gets an InputFileError instead."""
    runtime = runtime or get_runtime()
    features = head_features(head, perceptions)
    results: list[list[dict[str, Any]] | InputFileError] = [[] for _ in perceptions]
    usable = np.flatnonzero(features.present())
    if len(usable):
        probs = run_head_file(head, features.subset(usable), runtime)
        for row, p in zip(usable, probs):
            ranked = sorted(zip(head.classes, p.tolist()), key=lambda pair: -pair[1])[: top_k or len(head.classes)]
            results[row] = [{"label": name, "score": round(float(score), 4)} for name, score in ranked]
    taught = ", ".join(head.blocks)
    for row in np.setdiff1d(np.arange(len(perceptions)), usable):
        item = perceptions[row]
        first = item[0] if isinstance(item, list) and item else item
        results[row] = InputFileError(getattr(first, "file", "item"),
                                      f"has none of what head {head.name!r} was taught on ({taught})")
    return results


# ---------------------------------------------------------------------------------------------------------------
# Training from a folder


@dataclass
class Example:
    label: int
    files: list[Path]


@dataclass
class TrainReport:
    name: str
    path: Path | None
    classes: list[str]
    counts: dict[str, int]
    chosen: str
    folds: int
    candidates: list[dict[str, Any]]
    confusion: list[list[int]]
    warnings: list[str]
    skipped: list[dict[str, str]]
    seconds: dict[str, float]

    @property
    def accuracy(self) -> float:
        return next(c["accuracy"] for c in self.candidates if c["model"] == self.chosen)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path) if self.path else None, "classes": self.classes,
                "examples": self.counts, "model": self.chosen, "cv_accuracy": round(self.accuracy, 4),
                "folds": self.folds, "candidates": self.candidates, "confusion": self.confusion,
                "warnings": self.warnings, "skipped": self.skipped, "seconds": self.seconds}


def collect_examples(data_dir: Path | str) -> tuple[list[str], list[Example]]:
    """Class names (sub-folders, sorted) and examples: each file is one; a sub-folder of a class is one
    example made of all its files (a photo with its voice note, say)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise HeadError(f"{data_dir} is not a folder: give a folder with one sub-folder per class")
    class_dirs = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes, examples = [], []
    for folder in class_dirs:
        label = len(classes)
        found = []
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                files = sorted(f for f in entry.rglob("*") if f.is_file() and not f.name.startswith("."))
                if files:
                    found.append(Example(label, files))
            elif entry.is_file():
                found.append(Example(label, [entry]))
        if found:
            classes.append(folder.name)
            examples += found
    if len(classes) < 2:
        raise HeadError(f"{data_dir} needs at least two sub-folders with examples (one per class); found "
                        f"{len(classes)}{': ' + classes[0] if classes else ''}")
    return classes, examples


def speech_model_setting(runtime: Runtime) -> str:
    from .settings import SPEECH_MODELS, load_settings

    return SPEECH_MODELS.get(load_settings().speech_model, "whisper-tiny.en")


def perceive_examples(examples: list[Example], runtime: Runtime, speech_model: str,
                      progress: Progress = _no_progress, batch: int = 16):
    """Blocks per example; examples whose files all failed are dropped and reported."""
    from .perceive import Perceiver, PerceptionOptions

    perceiver = Perceiver(runtime, PerceptionOptions(ocr=True, acoustic_features=True, speech_model=speech_model))
    files = [(row, path) for row, example in enumerate(examples) for path in example.files]
    per_example: dict[int, list] = {}
    skipped: list[dict[str, str]] = []
    for start in range(0, len(files), batch):
        chunk = files[start: start + batch]
        for (row, path), result in zip(chunk, perceiver.perceive_files([p for _, p in chunk])):
            if isinstance(result, InputFileError):
                skipped.append({"file": str(path), "error": result.problem})
            else:
                per_example.setdefault(row, []).append(result)
        progress(min(len(files), start + batch) / len(files), f"perceived {min(len(files), start + batch)}/{len(files)} files")
    kept, items = [], []
    for row in range(len(examples)):
        vectors = block_vectors(per_example.get(row, []))
        if vectors:
            kept.append(row)
            items.append(vectors)
        elif row in per_example:
            skipped.append({"file": str(examples[row].files[0]), "error": "nothing could be perceived in it"})
    return kept, items, skipped


def few_examples_warnings(counts: dict[str, int]) -> list[str]:
    return [f"class {c!r} has only {n} example{'s' if n != 1 else ''}: {MIN_EXAMPLES_WARNING} or more make the head "
            "(and its accuracy figure) more trustworthy" for c, n in counts.items() if n < MIN_EXAMPLES_WARNING]


def needed_encoders(blocks: list[str], speech_model: str) -> list[str]:
    needed: dict[str, None] = {}
    for block in blocks:
        for model_id in BLOCKS[block]:
            needed[speech_model if model_id == "speech" else model_id] = None
    return list(needed)


def fit_head(features: Features, y: np.ndarray, classes: list[str], folds: int = DEFAULT_FOLDS,
             kinds: list[str] | None = None, progress: Progress = _no_progress) -> tuple[TrainedModel, dict[str, Any]]:
    """Cross-validate the candidates, refit the best on everything; returns the model and the figures."""
    counts = np.bincount(y, minlength=len(classes))
    if (counts == 0).any():
        empty = [classes[i] for i in np.flatnonzero(counts == 0)]
        raise HeadError(f"no usable examples for class(es) {', '.join(empty)}")
    folds = int(max(2, min(folds, counts.max(), len(y))))
    started = time.perf_counter()
    scores = cross_validate(features, y, len(classes), folds, kinds, lambda f, m: progress(0.9 * f, m))
    cv_seconds = time.perf_counter() - started
    best = choose(scores)
    progress(0.92, f"fitting {best.kind} on all {len(y)} examples")
    started = time.perf_counter()
    trained = TrainedModel.fit(best.kind, features, y, len(classes))
    fit_seconds = time.perf_counter() - started
    figures = {
        "folds": folds,
        "chosen": best.kind,
        "candidates": [{"model": s.kind, "accuracy": round(s.accuracy, 4), "log_loss": round(s.log_loss, 4),
                        "seconds": round(s.seconds, 3)} for s in scores],
        "confusion": confusion_matrix(y, best.predictions, len(classes)).tolist(),
        "seconds": {"cross_validation": round(cv_seconds, 3), "final_fit": round(fit_seconds, 3)},
    }
    return trained, figures


def train_head(data_dir: Path | str, name: str, folds: int = DEFAULT_FOLDS, runtime: Runtime | None = None,
               progress: Progress = _no_progress, kinds: list[str] | None = None, save: bool = True) -> TrainReport:
    """Perceive every example under DATA_DIR, choose and fit a head, save it as data_dir()/heads/NAME.onnx."""
    check_name(name)
    runtime = runtime or get_runtime()
    started = time.perf_counter()
    classes, examples = collect_examples(data_dir)
    speech_model = speech_model_setting(runtime)
    kept, items, skipped = perceive_examples(examples, runtime, speech_model, lambda f, m: progress(0.6 * f, m))
    perceive_seconds = time.perf_counter() - started
    if not kept:
        raise HeadError(f"none of the examples under {data_dir} could be perceived")
    features = stack_features(items)
    y = np.array([examples[row].label for row in kept], dtype=np.int64)
    present = np.bincount(y, minlength=len(classes))
    usable = [c for c, n in zip(classes, present) if n > 0]
    if len(usable) < 2:
        raise HeadError(f"only class {usable[0] if usable else '(none)'} has usable examples; a head needs two")
    if len(usable) < len(classes):  # a class whose files all failed: train on the others and say so
        remap = {old: new for new, old in enumerate(i for i, n in enumerate(present) if n > 0)}
        skipped_classes = [c for c, n in zip(classes, present) if n == 0]
        y = np.array([remap[v] for v in y], dtype=np.int64)
        classes = usable
    else:
        skipped_classes = []
    counts = {c: int(n) for c, n in zip(classes, np.bincount(y, minlength=len(classes)))}
    warnings = few_examples_warnings(counts)
    warnings += [f"class {c!r} was left out: none of its files could be perceived" for c in skipped_classes]
    trained, figures = fit_head(features, y, classes, folds, kinds, lambda f, m: progress(0.6 + 0.38 * f, m))
    blocks = list(trained.norms)
    metadata = {
        "format": FORMAT_VERSION,
        "name": name,
        "classes": classes,
        "model": figures["chosen"],
        "blocks": [{"name": b, "dim": int(trained.norms[b].mean.shape[0])} for b in blocks],
        "encoders": needed_encoders(blocks, speech_model),
        "speech_model": speech_model if {"acoustic", "transcript"} & set(blocks) else None,
        "bundle_version": runtime.bundle.bundle_version,
        "examples": counts,
        "cv": {"folds": figures["folds"], "accuracy": next(c["accuracy"] for c in figures["candidates"]
                                                             if c["model"] == figures["chosen"]),
               "candidates": figures["candidates"]},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    model = export_onnx(trained, metadata)
    path = save_head(model, name) if save else None
    progress(1.0, f"saved head {name!r}" if save else "trained")
    seconds = {"perceive": round(perceive_seconds, 3), **figures["seconds"],
               "total": round(time.perf_counter() - started, 3)}
    return TrainReport(name=name, path=path, classes=classes, counts=counts, chosen=figures["chosen"],
                       folds=figures["folds"], candidates=figures["candidates"], confusion=figures["confusion"],
                       warnings=warnings, skipped=skipped, seconds=seconds)
