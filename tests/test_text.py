"""The text encoder on the real bundle: semantic ranking, batching, order, truncation, recorded parity.

The `runtime` fixture (tests/conftest.py) is a Runtime over the built bundle in assets/models.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from engine.text import MODEL_ID, cosine, embed_text, embed_texts

# (sentence, a paraphrase of it, an unrelated sentence)
TRIPLES = [
    ("A man is playing the guitar on stage.", "Someone performs a song on a guitar in front of an audience.",
     "The central bank raised interest rates again."),
    ("The cat is sleeping on the sofa.", "A kitten naps on the couch.", "Our quarterly revenue grew by ten percent."),
    ("How do I reset my password?", "I forgot my password, how can I change it?", "Tomatoes need plenty of sun."),
    ("The train to London is delayed by twenty minutes.", "The London train will arrive twenty minutes late.",
     "She painted the bedroom walls light blue."),
    ("Heavy rain is expected tomorrow afternoon.", "Tomorrow afternoon there will be a lot of rain.",
     "He scored the winning goal in the final."),
    ("The doctor prescribed antibiotics for the infection.", "The physician gave medicine to treat the infection.",
     "The rocket launched from the coast at dawn."),
]


def test_shape_dtype_and_unit_norm(runtime):
    vectors = embed_texts(["hello world", "a second sentence", ""], runtime=runtime)
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_paraphrases_rank_above_unrelated_sentences(runtime):
    flat = [s for triple in TRIPLES for s in triple]
    vectors = embed_texts(flat, runtime=runtime).reshape(len(TRIPLES), 3, -1)
    for (anchor, paraphrase, unrelated), (a, p, u) in zip(TRIPLES, vectors):
        close, far = float(a @ p), float(a @ u)
        assert close > far + 0.25, (anchor, close, far)
        assert close > 0.5, (anchor, paraphrase, close)
    # every sentence's nearest other sentence (among all anchors and paraphrases) is its own partner
    anchors, paraphrases = vectors[:, 0], vectors[:, 1]
    assert (np.argmax(anchors @ paraphrases.T, axis=1) == np.arange(len(TRIPLES))).all()


def test_batch_matches_single(runtime):
    texts = [t for triple in TRIPLES for t in triple[:2]]
    batched = embed_texts(texts, runtime=runtime, batch_size=32)
    for text, vector in zip(texts, batched):
        # int8 activations are scaled per batch, so a batch and a single run differ slightly
        assert float(cosine(embed_text(text, runtime=runtime), vector)[0, 0]) > 0.99


def test_order_is_preserved_despite_length_bucketing(runtime):
    texts = [t for triple in TRIPLES for t in triple] + ["short", "a much longer sentence " * 10, ""]
    shuffled = list(range(len(texts)))
    random.Random(3).shuffle(shuffled)
    original = embed_texts(texts, runtime=runtime, batch_size=4)
    permuted = embed_texts([texts[i] for i in shuffled], runtime=runtime, batch_size=4)
    similarity = (original[shuffled] * permuted).sum(axis=1)
    assert (similarity > 0.99).all(), similarity


def test_long_input_is_truncated(runtime):
    opening = "The museum opened a new exhibition about ancient Egyptian art and everyday life. "
    long_a = opening + "filler words go here " * 400
    long_b = opening + "filler words go here " * 900
    a, b = embed_texts([long_a, long_b], runtime=runtime, batch_size=1)
    assert float(a @ b) > 0.9999  # both are cut at the same 256 tokens


def test_empty_inputs(runtime):
    assert embed_texts([], runtime=runtime).shape == (0, 384)
    empty = embed_text("", runtime=runtime)
    assert empty.shape == (384,) and np.isfinite(empty).all()


def test_a_bare_string_is_refused(runtime):
    with pytest.raises(TypeError):
        embed_texts("not a list", runtime=runtime)
    with pytest.raises(TypeError):
        embed_texts(["fine", 3], runtime=runtime)


def test_manifest_records_parity_above_thresholds(runtime):
    entry = runtime.bundle.entry(MODEL_ID)
    assert entry.preprocess == {"max_length": 256, "pooling": "mean", "normalize": True}
    assert entry.extra["dim"] == 384
    for name in ("cosine_min", "cosine_mean"):
        check = entry.verification[name]
        assert check["measured"] >= check["threshold"], (name, check)
    assert entry.verification["cosine_min"]["threshold"] >= 0.98
    assert entry.verification["sentences"] >= 200


def test_repeated_short_texts_come_from_the_cache_with_the_same_vector(runtime):
    """Object names and labels repeat from photo to photo: encoded once, then the cache gives back exactly the
    vector the text has when encoded alone (a long text is not kept)."""
    from engine.text import CACHED_TEXT_CHARS, encoder

    text_encoder = encoder(runtime)
    names = ["a traffic light", "a wooden bench near the pond", "a traffic light"]
    first = embed_texts(names, runtime)
    calls = []
    run = text_encoder._run_batch
    text_encoder._run_batch = lambda batch: calls.append(len(batch)) or run(batch)
    try:
        again = embed_texts(names[::-1], runtime)
        long_text = "word " * (CACHED_TEXT_CHARS // 5 + 1)
        embed_texts([long_text, long_text], runtime)  # encoded once for both...
        embed_texts([long_text], runtime)  # ...and again in the next call: not kept
    finally:
        del text_encoder._run_batch
    assert np.array_equal(again, first[::-1])
    assert np.array_equal(first[0], text_encoder._embed_uncached([names[0]], 1)[0])
    assert calls == [1, 1]  # nothing for the cached names; the long text once in each call
