"""Speech to text with Whisper on ONNX Runtime: numpy features, an encoder session, and a decoding loop
over the merged decoder with its key/value cache. No torch.

How a recording becomes a transcript, top to bottom:

1. A file is read as 16 kHz mono samples a block at a time (engine/audio.py, AudioFile): never whole, so a
   two-hour recording takes the memory of a two-minute one.
2. Voice activity (engine/vad.py) finds where someone speaks (one pass over the file); nearby speech is grouped
   into windows of at most 30 s, Whisper's input size, read again one by one for the steps below. Silence never
   reaches Whisper, so it cannot invent text for it.
3. Each window becomes a log-mel spectrogram (80 mel bands x 3000 frames, zero-padded to 30 s) and goes
   through the encoder once.
4. The decoder starts from the prompt `<|startoftranscript|>[<|lang|><|task|>]<|notimestamps|>` (the
   English-only model takes no language or task token) and adds one token at a time, greedily or by
   beam search, reusing its key/value cache so each step costs one token, not the whole sequence.
5. A window whose first step says "no speech" and whose text the model itself doubts is dropped.
6. Each kept window is one Segment, timed by the voice-activity window it came from.

The model's facts (special token ids, languages, suppressed tokens, layer counts) come from the
manifest entry's "whisper" key; the spectrogram settings from its "preprocess"; the session input and
output names from the sessions themselves.
"""

from __future__ import annotations

import threading
import weakref
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .audio import SAMPLE_RATE, AudioFile, to_mono_16k
from .errors import FusionDeskError, ModelBundleError
from .runtime import Runtime, get_runtime

DEFAULT_MODEL = "whisper-tiny.en"
VAD_MODEL = "vad"

# When to believe a window holds no speech (OpenAI Whisper's own rule): the "no speech" token is likely
# at the first step AND the text decoded has a low average log-probability.
NO_SPEECH_THRESHOLD = 0.6
LOGPROB_THRESHOLD = -1.0
# A no-speech probability this high is believed on its own: on silence Whisper is sure there is no
# speech and still writes a confident "you".
NO_SPEECH_CERTAIN = 0.85
# Text the model is this unsure of is dropped whatever the no-speech probability says.
LOGPROB_FLOOR = -1.5
# Text that compresses this well is a repetition loop ("the the the ..."), not speech.
COMPRESSION_RATIO_THRESHOLD = 2.4
# Greedy decoding that fails the checks above is retried once with this beam, in place of Whisper's
# random temperature fallback: results stay reproducible.
FALLBACK_BEAM_SIZE = 5

MAX_WINDOW_SECONDS = 30.0
MAX_PAUSE_SECONDS = 2.0  # a longer pause starts a new segment, so subtitles follow the speech
# Whisper loses a word whose onset is cut off: windows reach this far beyond the detected speech
# (faster-whisper pads its voice-activity chunks by the same amount).
SPEECH_PAD_MS = 400


# ----------------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------------

@dataclass
class Segment:
    start: float  # seconds from the start of the recording
    end: float
    text: str


@dataclass
class Transcript:
    text: str
    language: str
    language_probability: float
    segments: list[Segment] = field(default_factory=list)
    duration: float = 0.0  # seconds of audio heard

    def to_txt(self) -> str:
        return "".join(f"{segment.text}\n" for segment in self.segments)

    def to_srt(self) -> str:
        blocks = []
        for number, segment in enumerate(self.segments, start=1):
            times = f"{_clock(segment.start, ',')} --> {_clock(segment.end, ',')}"
            blocks.append(f"{number}\n{times}\n{segment.text}\n")
        return "\n".join(blocks)

    def to_vtt(self) -> str:
        blocks = ["WEBVTT\n"]
        for segment in self.segments:
            blocks.append(f"{_clock(segment.start, '.')} --> {_clock(segment.end, '.')}\n{segment.text}\n")
        return "\n".join(blocks)


def _clock(seconds: float, decimal_mark: str) -> str:
    millis = int(round(max(0.0, seconds) * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_mark}{millis:03d}"


# ----------------------------------------------------------------------------------------------------
# Log-mel spectrogram (Whisper's, in numpy)
# ----------------------------------------------------------------------------------------------------

def log_mel(audio: np.ndarray, filters: np.ndarray, n_fft: int = 400, hop_length: int = 160,
            n_samples: int = 480_000) -> np.ndarray:
    """[n_mels, n_samples // hop_length] log-mel features of `audio`, zero-padded or cut to `n_samples`.

    Whisper's recipe: centred STFT (reflect padding) with a periodic Hann window, power spectrum, mel
    filter bank, log10 with a 1e-10 floor, values clipped to 8 (log10 units) below the loudest, then
    scaled by (x + 4) / 4. The last STFT frame is dropped so 30 s gives exactly 3000 frames.
    """
    audio = np.asarray(audio, dtype=np.float32)[:n_samples]
    audio = np.pad(audio, (0, n_samples - len(audio)))
    padded = np.pad(audio, (n_fft // 2, n_fft // 2), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length]
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann, as torch.hann_window
    spectrum = np.fft.rfft(frames * window, axis=-1)[:-1]
    power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
    mel = filters.astype(np.float32) @ power.T
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# The model: settings from the manifest, sessions from the runtime
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WhisperSpec:
    """What the decoding loop needs to know about one Whisper model, read from its manifest entry."""

    model_id: str
    sample_rate: int
    n_fft: int
    hop_length: int
    n_mels: int
    chunk_seconds: int
    multilingual: bool
    max_target_positions: int
    tokens: dict[str, int]
    languages: dict[str, int]
    suppress_tokens: tuple[int, ...]
    begin_suppress_tokens: tuple[int, ...]

    @staticmethod
    def from_entry(entry) -> "WhisperSpec":
        info = entry.extra.get("whisper")
        if not isinstance(info, dict):
            raise ModelBundleError(f"model {entry.id!r} has no 'whisper' settings in the manifest; "
                                   "rebuild the model bundle")
        pre = entry.preprocess
        try:
            return WhisperSpec(
                model_id=entry.id,
                sample_rate=int(pre.get("sample_rate", SAMPLE_RATE)),
                n_fft=int(pre.get("n_fft", 400)),
                hop_length=int(pre.get("hop_length", 160)),
                n_mels=int(pre.get("n_mels", 80)),
                chunk_seconds=int(pre.get("chunk_seconds", 30)),
                multilingual=bool(info["multilingual"]),
                max_target_positions=int(info["max_target_positions"]),
                tokens={name: int(value) for name, value in info["tokens"].items()},
                languages={code: int(value) for code, value in info.get("languages", {}).items()},
                suppress_tokens=tuple(int(t) for t in info.get("suppress_tokens", [])),
                begin_suppress_tokens=tuple(int(t) for t in info.get("begin_suppress_tokens", [])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelBundleError(f"model {entry.id!r} has malformed 'whisper' settings ({exc}); "
                                   "rebuild the model bundle") from exc

    @property
    def window_samples(self) -> int:
        return self.chunk_seconds * self.sample_rate

    def prompt(self, language: str | None, task: str) -> list[int]:
        """The decoder's start: the English-only model takes no language or task token."""
        tokens = [self.tokens["sot"]]
        if self.multilingual:
            tokens += [self.languages[language], self.tokens[task]]
        return tokens + [self.tokens["no_timestamps"]]


@dataclass
class KVCache:
    """The decoder's past: self-attention keys/values (grow by one token a step, one row per beam) and
    cross-attention keys/values (computed from the audio at the first step, the same for every beam)."""

    self_attention: dict[str, np.ndarray]
    cross_attention: dict[str, np.ndarray]

    @property
    def batch(self) -> int:
        return next(iter(self.self_attention.values())).shape[0]

    def select(self, rows: np.ndarray) -> "KVCache":
        """Keep, reorder or duplicate beams. The cross-attention part is shared by all beams, so it is only
        resized, never gathered (it is by far the larger part)."""
        rows = np.asarray(rows, dtype=np.int64)
        cross = self.cross_attention
        if len(rows) != self.batch:
            cross = {name: np.repeat(value[:1], len(rows), axis=0) for name, value in cross.items()}
        return KVCache({name: value[rows] for name, value in self.self_attention.items()}, cross)


class WhisperDecoder:
    """The merged decoder session: `start()` runs a whole prompt without a cache, `step()` runs one new
    token per row on top of the cache. Input names are read from the session, not assumed."""

    def __init__(self, session):
        self.session = session
        inputs = {i.name: i for i in session.get_inputs()}
        if "use_cache_branch" not in inputs:
            raise ModelBundleError("the Whisper decoder is not a merged decoder (no use_cache_branch input); "
                                   "rebuild the model bundle")
        past = [name for name in inputs if name.startswith("past_key_values.")]
        self.self_names = [name for name in past if ".decoder." in name]
        self.cross_names = [name for name in past if ".encoder." in name]
        self.output_names = [o.name for o in session.get_outputs()]
        # [batch, heads, sequence, head size]: heads and head size are fixed numbers in the exported graph.
        heads, head_size = inputs[self.self_names[0]].shape[1], inputs[self.self_names[0]].shape[3]
        self._empty_past_shape = (heads, 0, head_size)

    def start(self, input_ids: np.ndarray, encoder_states: np.ndarray) -> tuple[np.ndarray, KVCache]:
        """Logits for every prompt position [batch, length, vocab], and the cache after the prompt."""
        batch = input_ids.shape[0]
        empty = np.zeros((batch, *self._empty_past_shape), dtype=np.float32)
        feeds = {"input_ids": input_ids.astype(np.int64), "encoder_hidden_states": encoder_states,
                 "use_cache_branch": np.array([False])}
        feeds.update({name: empty for name in self.self_names + self.cross_names})
        outputs = dict(zip(self.output_names, self.session.run(self.output_names, feeds)))
        cache = KVCache(
            {name: outputs[_present(name)] for name in self.self_names},
            {name: outputs[_present(name)] for name in self.cross_names},
        )
        return outputs["logits"], cache

    def step(self, last_tokens: np.ndarray, cache: KVCache, encoder_states: np.ndarray) -> tuple[np.ndarray, KVCache]:
        """Logits for one new token per row [batch, vocab], and the cache grown by that token."""
        feeds = {"input_ids": last_tokens.reshape(-1, 1).astype(np.int64), "use_cache_branch": np.array([True]),
                 "encoder_hidden_states": _rows(encoder_states, len(last_tokens))}
        feeds.update(cache.self_attention)
        feeds.update(cache.cross_attention)
        wanted = ["logits"] + [_present(name) for name in self.self_names]
        outputs = dict(zip(wanted, self.session.run(wanted, feeds)))
        # In the cache branch the graph passes no cross-attention values out: the ones we have stay valid.
        grown = KVCache({name: outputs[_present(name)] for name in self.self_names}, cache.cross_attention)
        return outputs["logits"][:, -1, :], grown


def _present(past_name: str) -> str:
    return "present." + past_name[len("past_key_values."):]


def _rows(array: np.ndarray, batch: int) -> np.ndarray:
    return array if array.shape[0] == batch else np.repeat(array[:1], batch, axis=0)


@dataclass
class Decoded:
    tokens: list[int]  # the text tokens, without the prompt or the end token
    sum_logprob: float
    avg_logprob: float
    no_speech_prob: float
    text: str = ""

    @property
    def compression_ratio(self) -> float:
        raw = self.text.encode("utf-8")
        return len(raw) / max(1, len(zlib.compress(raw))) if raw else 0.0


class WhisperModel:
    """One Whisper model of the bundle: encoder, decoder, tokenizer, mel filters and settings."""

    def __init__(self, runtime: Runtime, model_id: str):
        from tokenizers import Tokenizer

        entry = runtime.bundle.entry(model_id)
        self.spec = WhisperSpec.from_entry(entry)
        self.encoder = runtime.session(model_id, "encoder")
        self.decoder = WhisperDecoder(runtime.session(model_id, "decoder"))
        self.tokenizer = Tokenizer.from_file(str(runtime.bundle.path(model_id, "tokenizer")))
        self.mel_filters = np.load(runtime.bundle.path(model_id, "mel_filters")).astype(np.float32)
        if self.mel_filters.shape != (self.spec.n_mels, self.spec.n_fft // 2 + 1):
            raise ModelBundleError(f"model {model_id!r}: mel_filters has shape {self.mel_filters.shape}, expected "
                                   f"({self.spec.n_mels}, {self.spec.n_fft // 2 + 1}); rebuild the model bundle")
        self._encoder_input = self.encoder.get_inputs()[0].name
        self._suppress_masks: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    # -- audio side ---------------------------------------------------------------------------------

    def features(self, audio: np.ndarray) -> np.ndarray:
        spec = self.spec
        mel = log_mel(audio, self.mel_filters, spec.n_fft, spec.hop_length, spec.window_samples)
        return mel[None]

    def encode(self, audio: np.ndarray) -> np.ndarray:
        """Encoder states [1, 1500, d_model] for up to 30 s of audio."""
        return self.encoder.run(None, {self._encoder_input: self.features(audio)})[0]

    # -- language ------------------------------------------------------------------------------------

    def detect_language(self, encoder_states: np.ndarray) -> tuple[str, float]:
        """The most likely spoken language and its probability, from the token after <|startoftranscript|>."""
        if not self.spec.multilingual:
            return "en", 1.0
        logits, _ = self.decoder.start(np.array([[self.spec.tokens["sot"]]]), encoder_states)
        codes = list(self.spec.languages)
        scores = logits[0, -1, [self.spec.languages[code] for code in codes]].astype(np.float64)
        probabilities = np.exp(scores - scores.max())
        probabilities /= probabilities.sum()
        best = int(np.argmax(probabilities))
        return codes[best], float(probabilities[best])

    # -- decoding ------------------------------------------------------------------------------------

    def decode(self, encoder_states: np.ndarray, prompt: list[int], beam_size: int = 1,
               greedy: bool | None = None) -> Decoded:
        """Text tokens for one window: greedy when beam_size is 1, beam search otherwise (`greedy=False`
        runs the beam search even with one beam, which must then give the greedy result)."""
        logits, cache = self.decoder.start(np.array([prompt]), encoder_states)
        no_speech_prob = self._no_speech_probability(logits[0, prompt.index(self.spec.tokens["sot"])])
        first = _log_softmax(self._suppress(logits[:, -1, :], first_step=True))[0]
        max_tokens = self.spec.max_target_positions // 2  # Whisper's own sample length
        use_greedy = beam_size <= 1 if greedy is None else greedy
        if use_greedy:
            tokens, total = self._greedy(first, cache, encoder_states, max_tokens)
        else:
            tokens, total = self._beam_search(first, cache, encoder_states, max_tokens, max(1, beam_size))
        result = Decoded(tokens, total, total / (len(tokens) + 1), no_speech_prob)
        result.text = self.text(tokens)
        return result

    def text(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True).strip()

    def _greedy(self, logprobs: np.ndarray, cache: KVCache, encoder_states: np.ndarray,
                max_tokens: int) -> tuple[list[int], float]:
        eot = self.spec.tokens["eot"]
        tokens: list[int] = []
        total = 0.0
        while True:
            token = int(np.argmax(logprobs))
            total += float(logprobs[token])
            if token == eot:
                return tokens, total
            tokens.append(token)
            if len(tokens) >= max_tokens:
                return tokens, total
            logits, cache = self.decoder.step(np.array([token]), cache, encoder_states)
            logprobs = _log_softmax(self._suppress(logits, first_step=False))[0]

    def _beam_search(self, logprobs: np.ndarray, cache: KVCache, encoder_states: np.ndarray,
                     max_tokens: int, beam_size: int) -> tuple[list[int], float]:
        """Whisper's beam search: each beam proposes its beam_size + 1 best next tokens; the best
        beam_size unfinished candidates go on, candidates ending in <|endoftext|> are set aside, and the
        search stops once beam_size have ended. The winner has the best log-probability per token."""
        eot = self.spec.tokens["eot"]
        finished: dict[tuple[int, ...], float] = {}

        # The first step has one row (every beam shares the prompt): its best tokens seed the beams.
        beams: list[tuple[tuple[int, ...], float]] = []
        for token in _top(logprobs, beam_size + 1):
            if int(token) == eot:
                finished[()] = float(logprobs[token])
                continue
            beams.append(((int(token),), float(logprobs[token])))
            if len(beams) == beam_size:
                break
        cache = cache.select(np.zeros(len(beams), dtype=np.int64))
        encoder_states = np.repeat(encoder_states[:1], len(beams), axis=0)  # once, not at every step

        for _ in range(max_tokens - 1):
            if len(finished) >= beam_size or not beams:
                break
            last = np.array([sequence[-1] for sequence, _ in beams])
            logits, cache = self.decoder.step(last, cache, encoder_states)
            logprobs = _log_softmax(self._suppress(logits, first_step=False))

            candidates: dict[tuple[int, ...], tuple[float, int]] = {}
            for row, (sequence, score) in enumerate(beams):
                for token in _top(logprobs[row], beam_size + 1):
                    candidates[sequence + (int(token),)] = (score + float(logprobs[row, token]), row)
            kept, rows = [], []
            for sequence, (score, row) in sorted(candidates.items(), key=lambda item: -item[1][0]):
                if sequence[-1] == eot:
                    if len(finished) < beam_size:
                        finished[sequence[:-1]] = score
                else:
                    kept.append((sequence, score))
                    rows.append(row)
                    if len(kept) == beam_size:
                        break
            beams = kept
            if beams:
                cache = cache.select(np.array(rows))

        # Too few ended within the length limit: the unfinished beams compete too.
        for sequence, score in beams:
            if len(finished) >= beam_size:
                break
            finished.setdefault(sequence, score)
        best = max(finished, key=lambda sequence: finished[sequence] / max(1, len(sequence)))
        return list(best), finished[best]

    def _suppress(self, logits: np.ndarray, first_step: bool) -> np.ndarray:
        """Mask tokens the transcript must not contain: all special tokens (we decode without timestamps),
        the model's non-speech symbols, and at the first position a blank or an immediate end."""
        vocab = logits.shape[-1]
        if vocab not in self._suppress_masks:
            always = np.zeros(vocab, dtype=bool)
            always[self.spec.tokens["eot"] + 1:] = True
            always[[t for t in self.spec.suppress_tokens if t < vocab]] = True
            begin = always.copy()
            begin[[t for t in self.spec.begin_suppress_tokens if t < vocab]] = True
            self._suppress_masks[vocab] = (always, begin)
        mask = self._suppress_masks[vocab][1 if first_step else 0]
        return np.where(mask, -np.inf, logits).astype(np.float32)

    def _no_speech_probability(self, sot_logits: np.ndarray) -> float:
        probabilities = np.exp(sot_logits.astype(np.float64) - sot_logits.max())
        return float(probabilities[self.spec.tokens["no_speech"]] / probabilities.sum())


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, largest first (without sorting the whole vocabulary)."""
    k = min(k, len(values))
    best = np.argpartition(-values, k - 1)[:k]
    return best[np.argsort(-values[best], kind="stable")]


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.atleast_2d(logits).astype(np.float32)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


# One WhisperModel per (runtime, model id): a model takes a second to set up, and a runtime that is
# replaced (a settings change, a test's own bundle) takes its models with it.
_models: "weakref.WeakKeyDictionary[Runtime, dict[str, WhisperModel]]" = weakref.WeakKeyDictionary()
_models_lock = threading.Lock()


def load_model(model_id: str = DEFAULT_MODEL, runtime: Runtime | None = None) -> WhisperModel:
    runtime = runtime or get_runtime()
    with _models_lock:
        per_runtime = _models.setdefault(runtime, {})
        if model_id not in per_runtime:
            per_runtime[model_id] = WhisperModel(runtime, model_id)
        return per_runtime[model_id]


# ----------------------------------------------------------------------------------------------------
# Long recordings: voice activity -> windows of at most 30 s, read from a tape
# ----------------------------------------------------------------------------------------------------

class _Samples:
    """Samples already in memory, offered as a recording source like engine.audio.AudioFile."""

    def __init__(self, samples: np.ndarray):
        self.samples = samples
        self.seconds = len(samples) / SAMPLE_RATE

    def blocks(self):
        yield self.samples


class _Tape:
    """A forward-only view of a recording that arrives in blocks: read(start, end) gives those samples and lets go
    of everything before `start`. Reading in time order, it holds at most one window and one block, so a two-hour
    file costs what a two-minute one does."""

    def __init__(self, blocks: Iterable[np.ndarray]):
        self._blocks = iter(blocks)
        self._buffer = np.zeros(0, dtype=np.float32)
        self._offset = 0  # sample index of _buffer[0]
        self.ended = False

    @property
    def reached(self) -> int:
        """Samples read from the source so far (the recording's length, once `ended`)."""
        return self._offset + len(self._buffer)

    def read(self, start: int, end: int, keep: int | None = None) -> np.ndarray:
        """Samples [start, end) (fewer at the recording's end). `keep`: an earlier sample still to be read later."""
        keep = start if keep is None else min(keep, start)
        if keep < self._offset:
            raise ValueError(f"the tape only moves forward: sample {keep} was let go (now at {self._offset})")
        self._drop_before(keep)
        while self.reached < end and not self.ended:
            block = next(self._blocks, None)
            if block is None:
                self.ended = True
            elif self.reached + len(block) <= keep:  # wholly before what is wanted: skip it
                self._offset += len(self._buffer) + len(block)
                self._buffer = self._buffer[:0]
            else:
                self._buffer = np.concatenate([self._buffer, block]) if len(self._buffer) else block
                self._drop_before(keep)
        return self._buffer[start - self._offset:max(start, end) - self._offset]

    def _drop_before(self, start: int) -> None:
        drop = min(start - self._offset, len(self._buffer))
        if drop > 0:
            self._buffer = self._buffer[drop:]
            self._offset += drop


def speech_windows(audio: np.ndarray, runtime: Runtime | None = None, max_seconds: float = MAX_WINDOW_SECONDS,
                   max_pause: float = MAX_PAUSE_SECONDS) -> list[tuple[float, float]]:
    """Stretches of speech (start, end seconds) to decode: voice-activity segments joined while the pause
    between them is short and the whole stays within `max_seconds`; a longer segment is cut at a quiet point."""
    from .vad import speech_segments

    segments = speech_segments(audio, SAMPLE_RATE, pad_ms=SPEECH_PAD_MS, runtime=runtime)
    tape = _Tape([np.asarray(audio, dtype=np.float32)])
    return [piece for start, end in _joined(segments, max_seconds, max_pause)
            for piece in _split_long(tape, start, end, max_seconds)]


def _joined(segments: list[tuple[float, float]], max_seconds: float, max_pause: float) -> list[tuple[float, float]]:
    windows: list[list[float]] = []
    for start, end in segments:
        if windows and start - windows[-1][1] <= max_pause and end - windows[-1][0] <= max_seconds:
            windows[-1][1] = end
        else:
            windows.append([start, end])
    return [(start, end) for start, end in windows]


def _split_long(tape: _Tape, start: float, end: float, max_seconds: float) -> Iterator[tuple[float, float]]:
    """Cut a stretch longer than max_seconds at the quietest 100 ms in the second half of each window. Each piece
    is given before the next cut is looked for, so the tape need only hold one window of a stretch of any length."""
    frame = SAMPLE_RATE // 10
    while end - start > max_seconds:
        lo = int((start + max_seconds / 2) * SAMPLE_RATE)
        hi = int((start + max_seconds) * SAMPLE_RATE)
        region = tape.read(lo, hi, keep=int(start * SAMPLE_RATE))
        energy = np.square(region[: len(region) // frame * frame].reshape(-1, frame)).mean(axis=1)
        cut = (lo + (int(np.argmin(energy)) + 0.5) * frame) / SAMPLE_RATE
        yield start, cut
        start = cut
    yield start, end


def fixed_windows(duration: float, max_seconds: float = MAX_WINDOW_SECONDS) -> list[tuple[float, float]]:
    """Consecutive windows over the whole recording, for audio that is already known to be speech."""
    starts = np.arange(0.0, duration, max_seconds)
    return [(float(s), float(min(duration, s + max_seconds))) for s in starts]


def _fixed_pieces(tape: _Tape, window: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start sample, samples) of consecutive windows over a whole recording, however long."""
    start = 0
    while True:
        piece = tape.read(start, start + window)
        if not len(piece):
            return
        yield start, piece
        start += window


# ----------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------

# progress(stage, seconds done, seconds in all or None): stage is "finding speech" (the voice-activity pass over
# the whole recording) or "transcribing" (Whisper on the speech found); both go from 0 to the recording's length.
ProgressCallback = Callable[[str, float, "float | None"], None]


def transcribe(
    audio_or_path: "np.ndarray | str | Path | AudioFile",
    model_id: str = DEFAULT_MODEL,
    language: str | None = "en",
    task: str = "transcribe",
    beam_size: int = 1,
    runtime: Runtime | None = None,
    sample_rate: int = SAMPLE_RATE,
    vad: bool = True,
    progress: ProgressCallback | None = None,
) -> Transcript:
    """Transcribe (or, with task="translate" on a multilingual model, translate to English) a recording.

    `language` is a code such as "en" or "de", or "auto" (or None) to detect it from the first stretch of
    speech. `vad=False` decodes the whole recording in 30 s windows, for audio already cut to speech.

    A file (a path, or an engine.audio.AudioFile) is streamed, never held whole: a first pass finds the speech,
    a second reads each stretch of it again to decode, so memory is the same for two minutes as for two hours.
    """
    runtime = runtime or get_runtime()
    source = _source(audio_or_path, sample_rate)
    model = load_model(model_id, runtime)
    language = _check_request(model.spec, language, task)
    report = progress or (lambda stage, done, total: None)

    tape = _Tape(source.blocks())
    if vad:
        windows, total = _find_speech(source, runtime, report)
        pieces = ((start, end, tape.read(int(start * SAMPLE_RATE), int(end * SAMPLE_RATE)))
                  for joined in windows for start, end in _split_long(tape, *joined, MAX_WINDOW_SECONDS))
    else:
        total = None
        window = int(MAX_WINDOW_SECONDS * SAMPLE_RATE)
        pieces = ((start / SAMPLE_RATE, (start + len(piece)) / SAMPLE_RATE, piece)
                  for start, piece in _fixed_pieces(tape, window))
    expected = total / SAMPLE_RATE if total is not None else source.seconds
    report("transcribing", 0.0, expected)
    segments: list[Segment] = []
    detected_probability = 1.0 if language else 0.0
    for start, end, piece in pieces:
        states = model.encode(piece)
        if language is None:
            language, detected_probability = model.detect_language(states)
        decoded = _decode_checked(model, states, model.spec.prompt(language, task), beam_size)
        if decoded is not None and decoded.text:
            segments.append(Segment(round(start, 3), round(end, 3), decoded.text))
        report("transcribing", end, expected)
    if total is None:  # no voice-activity pass counted the samples: read to the end (the tape holds one block)
        while not tape.ended:
            tape.read(tape.reached, tape.reached + SAMPLE_RATE * 60)
        total = tape.reached
    duration = total / SAMPLE_RATE
    report("transcribing", duration, duration)
    return Transcript(
        text=" ".join(segment.text for segment in segments),
        language=language or "",
        language_probability=round(detected_probability, 4),
        segments=segments,
        duration=round(duration, 3),
    )


def _find_speech(source, runtime: Runtime, report: ProgressCallback) -> tuple[list[tuple[float, float]], int]:
    """The first pass: voice activity over the whole recording, a block at a time -> (joined windows, samples)."""
    from .vad import speech_segments_of_blocks

    def counted():
        done = 0
        report("finding speech", 0.0, source.seconds)
        for block in source.blocks():
            yield block
            done += len(block)
            report("finding speech", done / SAMPLE_RATE, source.seconds)

    segments, total = speech_segments_of_blocks(counted(), pad_ms=SPEECH_PAD_MS, runtime=runtime)
    return _joined(segments, MAX_WINDOW_SECONDS, MAX_PAUSE_SECONDS), total


def encoder_features(audio: "np.ndarray | str | Path | AudioFile", model_id: str = DEFAULT_MODEL,
                     runtime: Runtime | None = None, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """An acoustic feature vector [d_model]: the encoder states averaged over the frames that hold real
    audio (not the zero padding up to 30 s), over all 30 s windows of the recording, weighted by length."""
    runtime = runtime or get_runtime()
    source = _source(audio, sample_rate)
    model = load_model(model_id, runtime)
    samples_per_state = model.spec.hop_length * 2  # the encoder halves the mel frame rate
    total, weight = None, 0
    for _, piece in _fixed_pieces(_Tape(source.blocks()), model.spec.window_samples):
        states = model.encode(piece)[0]
        used = min(len(states), max(1, -(-len(piece) // samples_per_state)))
        pooled = states[:used].astype(np.float64).sum(axis=0)
        total = pooled if total is None else total + pooled
        weight += used
    if total is None:
        raise ValueError("no audio samples to encode")
    return (total / weight).astype(np.float32)


def _source(audio_or_path, sample_rate: int):
    """What to read samples from: a file streamed (AudioFile), or samples already in memory."""
    if isinstance(audio_or_path, (str, Path)):
        return AudioFile(audio_or_path)
    if isinstance(audio_or_path, AudioFile):
        return audio_or_path
    samples = np.asarray(audio_or_path)
    if sample_rate != SAMPLE_RATE or samples.ndim != 1 or samples.dtype != np.float32:
        samples = to_mono_16k(samples, sample_rate)
    return _Samples(samples)


def _check_request(spec: WhisperSpec, language: str | None, task: str) -> str | None:
    """The language to decode in (None: detect it), after checking the model can do what is asked."""
    if task not in ("transcribe", "translate"):
        raise FusionDeskError(f"unknown task {task!r}: choose transcribe or translate")
    if not spec.multilingual:
        if task == "translate":
            raise FusionDeskError(f"{spec.model_id} only transcribes English; translation needs a multilingual "
                                  "model (whisper-base, in the Languages pack)")
        if language not in (None, "auto", "en"):
            raise FusionDeskError(f"{spec.model_id} only knows English, not {language!r}; choose the multilingual "
                                  "model (whisper-base, in the Languages pack) for other languages")
        return "en"
    if language in (None, "auto"):
        return None
    if language not in spec.languages:
        raise FusionDeskError(f"{spec.model_id} does not know the language {language!r} "
                              f"(it knows: {', '.join(sorted(spec.languages))})")
    return language


def _decode_checked(model: WhisperModel, states: np.ndarray, prompt: list[int], beam_size: int) -> Decoded | None:
    """Decode one window; None when it holds no speech or only text the model does not believe."""
    decoded = model.decode(states, prompt, beam_size)
    if beam_size < FALLBACK_BEAM_SIZE and _doubtful(decoded):
        retry = model.decode(states, prompt, FALLBACK_BEAM_SIZE)
        if retry.avg_logprob > decoded.avg_logprob:
            decoded = retry
    if decoded.no_speech_prob > NO_SPEECH_THRESHOLD and decoded.avg_logprob < LOGPROB_THRESHOLD:
        return None
    if decoded.no_speech_prob > NO_SPEECH_CERTAIN:
        return None
    if decoded.avg_logprob < LOGPROB_FLOOR or decoded.compression_ratio > COMPRESSION_RATIO_THRESHOLD:
        return None
    return decoded


def _doubtful(decoded: Decoded) -> bool:
    return decoded.avg_logprob < LOGPROB_THRESHOLD or decoded.compression_ratio > COMPRESSION_RATIO_THRESHOLD
