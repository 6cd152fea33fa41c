"""Text encoder: sentences -> 384-d L2-normalised vectors (all-MiniLM-L6-v2 as ONNX).

This is the app's one semantic space: fusion, zero-shot labels and search all compare vectors made here.
Tokenisation uses the `tokenizers` package with the bundled tokenizer.json (no transformers at run time);
pooling and normalisation follow the manifest's `preprocess` settings.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer

from .runtime import Runtime, get_runtime

MODEL_ID = "text-encoder"
# The encoder is int8 with dynamic quantisation: each call scales its activations over the whole input tensor,
# every row and the padding included. A text batched with others came out up to 1e-2 (per coordinate) away from
# the same text alone, so a file's search vector depended on which files shared its batch: a folder index that
# was interrupted and resumed, or made with another batch size, held other vectors than an uninterrupted one
# (tests/test_reliability.py). One text per call gives every text one vector. Measured cost (2 cores): short
# object names 2.0 -> 4.4 ms a text, notes 7.6 -> 9.5 ms, long texts 44 -> 37 ms (less padding): a few ms per
# file against the tens of ms a file's perception takes.
ONE_AT_A_TIME = 1
CACHED_TEXTS = 4096  # short texts whose vectors are kept (384 floats each: about 6 MB when full)
CACHED_TEXT_CHARS = 100  # longer texts (a page of OCR, a transcript) rarely come twice


class TextEncoder:
    """One ONNX session plus its tokenizer and pooling settings."""

    def __init__(self, session, tokenizer: Tokenizer, max_length: int = 256, pooling: str = "mean",
                 normalize: bool = True):
        if pooling not in ("mean", "cls"):
            raise ValueError(f"unknown pooling {pooling!r} in the text encoder's settings")
        self.session = session
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.pooling = pooling
        self.normalize = bool(normalize)
        self.tokenizer.enable_truncation(self.max_length)
        # Padding is done per batch below, after sorting by length, so the tokenizer must not pad.
        self.tokenizer.no_padding()
        self.input_names = {item.name for item in session.get_inputs()}
        self.pad_id = self._pad_id(tokenizer)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()  # short text -> its vector, least recent first
        self._cache_lock = threading.Lock()

    @staticmethod
    def _pad_id(tokenizer: Tokenizer) -> int:
        for token in ("[PAD]", "<pad>"):
            found = tokenizer.token_to_id(token)
            if found is not None:
                return int(found)
        return 0

    @classmethod
    def from_files(cls, session, tokenizer_path, preprocess: dict) -> "TextEncoder":
        return cls(
            session,
            Tokenizer.from_file(str(tokenizer_path)),
            max_length=preprocess.get("max_length", 256),
            pooling=preprocess.get("pooling", "mean"),
            normalize=preprocess.get("normalize", True),
        )

    @property
    def dim(self) -> int:
        shape = self.session.get_outputs()[0].shape
        return int(shape[-1]) if isinstance(shape[-1], int) else 384

    def embed(self, texts: Sequence[str], batch_size: int = ONE_AT_A_TIME) -> np.ndarray:
        """batch_size: texts per encoder call; see ONE_AT_A_TIME for why the default is one. One at a time, short
        texts come from a cache when they were encoded before (the same vector: each is encoded alone)."""
        texts = _checked_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if batch_size == ONE_AT_A_TIME:
            return self._embed_cached(texts)
        return self._embed_uncached(texts, batch_size)

    def _embed_cached(self, texts: list[str]) -> np.ndarray:
        # Object names, labels and class names repeat from file to file: an index of photos encoded "person",
        # "car", ... for every photo, one encoder call each (see ONE_AT_A_TIME).
        with self._cache_lock:
            found = {text: self._cache[text] for text in set(texts) if text in self._cache}
            for text in found:
                self._cache.move_to_end(text)
        missing = list(dict.fromkeys(text for text in texts if text not in found))
        if missing:
            computed = self._embed_uncached(missing, ONE_AT_A_TIME)
            with self._cache_lock:
                for text, vector in zip(missing, computed):
                    found[text] = vector
                    if len(text) <= CACHED_TEXT_CHARS:
                        self._cache[text] = vector.copy()  # not a view holding the whole batch
                while len(self._cache) > CACHED_TEXTS:
                    self._cache.popitem(last=False)
        return np.stack([found[text] for text in texts]).astype(np.float32, copy=False)

    def _embed_uncached(self, texts: list[str], batch_size: int) -> np.ndarray:
        ids = [encoding.ids for encoding in self.tokenizer.encode_batch(list(texts))]
        # Length bucketing: batches of similar length pad little; results go back to input order.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: np.ndarray | None = None
        for start in range(0, len(order), max(1, batch_size)):
            chosen = order[start:start + batch_size]
            vectors = self._run_batch([ids[i] for i in chosen])
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[chosen] = vectors
        return out

    def _run_batch(self, batch_ids: list[list[int]]) -> np.ndarray:
        width = max(len(item) for item in batch_ids)
        input_ids = np.full((len(batch_ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch_ids), width), dtype=np.int64)
        for row, item in enumerate(batch_ids):
            input_ids[row, :len(item)] = item
            mask[row, :len(item)] = 1
        feed = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self.input_names})[0]
        return self._pool(hidden.astype(np.float32, copy=False), mask)

    def _pool(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.pooling == "cls":
            pooled = hidden[:, 0, :]
        else:
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        if self.normalize:
            pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.astype(np.float32, copy=False)


def _checked_texts(texts: Sequence[str]) -> list[str]:
    # A bare string is a sequence of characters: embedding each letter is never what the caller meant.
    if isinstance(texts, str):
        raise TypeError("embed_texts takes a list of strings; use embed_text for a single string")
    checked = []
    for item in texts:
        if not isinstance(item, str):
            raise TypeError(f"embed_texts takes strings, got {type(item).__name__}")
        checked.append(item)
    return checked


_encoders: "weakref.WeakKeyDictionary[Runtime, TextEncoder]" = weakref.WeakKeyDictionary()
_encoders_lock = threading.Lock()


def encoder(runtime: Runtime | None = None) -> TextEncoder:
    """The text encoder of a runtime's bundle, made once per runtime (the tokenizer load is not free)."""
    runtime = runtime or get_runtime()
    with _encoders_lock:
        found = _encoders.get(runtime)
        if found is None:
            entry = runtime.bundle.entry(MODEL_ID)
            found = TextEncoder.from_files(
                runtime.session(MODEL_ID, "model"), runtime.bundle.path(MODEL_ID, "tokenizer"), entry.preprocess
            )
            _encoders[runtime] = found
        return found


def embed_texts(texts: Sequence[str], runtime: Runtime | None = None, batch_size: int = ONE_AT_A_TIME) -> np.ndarray:
    """[N, 384] float32 L2-normalised embeddings, in input order. Long texts are truncated to max_length tokens.
    Each text's vector is its own, whatever else is in the list (ONE_AT_A_TIME)."""
    return encoder(runtime).embed(texts, batch_size=batch_size)


def embed_text(text: str, runtime: Runtime | None = None) -> np.ndarray:
    """[384] float32 L2-normalised embedding of one string."""
    if not isinstance(text, str):
        raise TypeError(f"embed_text takes a string, got {type(text).__name__}")
    return embed_texts([text], runtime=runtime)[0]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of row vectors (works for single vectors too)."""
    a = np.atleast_2d(a).astype(np.float32)
    b = np.atleast_2d(b).astype(np.float32)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T
