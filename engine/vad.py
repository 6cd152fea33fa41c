"""Voice activity: where in a recording someone is speaking (silero VAD v6, ONNX).

The model reads 16 kHz audio in windows of 512 samples, each preceded by the last 64 samples of the
window before it (its "context"), and carries a recurrent state [2, 1, 128] from window to window. It
returns one speech probability per window (32 ms). Turning probabilities into segments follows the
package's own `get_speech_timestamps` rule for rule, so our segments match silero-vad's:

- speech starts at the first window whose probability reaches `threshold`;
- it ends when the probability stays below `threshold - 0.15` for `min_silence_ms`;
- segments shorter than `min_speech_ms` are dropped;
- each segment is padded by `pad_ms` on both sides (half the gap when two segments are closer than that).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from .runtime import Runtime, get_runtime

MODEL_ID = "vad"


@dataclass(frozen=True)
class VadSettings:
    """The model's framing, read from the manifest entry's preprocess settings."""

    sample_rate: int = 16000
    window_samples: int = 512
    context_samples: int = 64
    state_shape: tuple[int, ...] = (2, 1, 128)

    @staticmethod
    def from_preprocess(preprocess: dict) -> "VadSettings":
        defaults = VadSettings()
        return VadSettings(
            sample_rate=int(preprocess.get("sample_rate", defaults.sample_rate)),
            window_samples=int(preprocess.get("window_samples", defaults.window_samples)),
            context_samples=int(preprocess.get("context_samples", defaults.context_samples)),
            state_shape=tuple(preprocess.get("state_shape", defaults.state_shape)),
        )


class _SileroStepper:
    """Feeds one window at a time, keeping the context samples and the recurrent state in between."""

    def __init__(self, session, settings: VadSettings):
        self.session = session
        self.settings = settings
        self.reset()

    def reset(self) -> None:
        self.state = np.zeros(self.settings.state_shape, dtype=np.float32)
        self.context = np.zeros(self.settings.context_samples, dtype=np.float32)
        self._rate = np.array(self.settings.sample_rate, dtype=np.int64)

    def __call__(self, window: np.ndarray) -> float:
        framed = np.concatenate([self.context, window]).astype(np.float32, copy=False)[None, :]
        probability, self.state = self.session.run(None, {"input": framed, "state": self.state, "sr": self._rate})
        self.context = framed[0, -self.settings.context_samples:]
        return float(probability.reshape(-1)[0])


def speech_probabilities(audio: np.ndarray, session, settings: VadSettings = VadSettings()) -> np.ndarray:
    """One speech probability per window of the whole recording (the last window zero-padded)."""
    return speech_probabilities_of_blocks([np.asarray(audio, dtype=np.float32).reshape(-1)], session, settings)[0]


def speech_probabilities_of_blocks(blocks: Iterable[np.ndarray], session, settings: VadSettings = VadSettings()
                                   ) -> tuple[np.ndarray, int]:
    """speech_probabilities for a recording that arrives in blocks of any size (a file read a block at a time):
    the same probabilities, and the recording's length in samples. Holds one block, and 4 bytes per 32 ms window."""
    step = settings.window_samples
    stepper = _SileroStepper(session, settings)
    found: list[np.ndarray] = []
    pending = np.zeros(0, dtype=np.float32)
    total = 0
    for block in blocks:
        total += len(block)
        data = np.concatenate([pending, block]) if pending.size else np.asarray(block, dtype=np.float32)
        whole = len(data) // step * step
        found.append(np.array([stepper(data[start:start + step]) for start in range(0, whole, step)], dtype=np.float32))
        pending = data[whole:]
    if pending.size:
        found.append(np.array([stepper(np.pad(pending, (0, step - len(pending))))], dtype=np.float32))
    return (np.concatenate(found) if found else np.zeros(0, dtype=np.float32)), total


def segments_from_probabilities(
    probabilities: np.ndarray,
    n_samples: int,
    settings: VadSettings = VadSettings(),
    threshold: float = 0.5,
    min_speech_ms: int = 250,
    min_silence_ms: int = 100,
    pad_ms: int = 30,
) -> list[tuple[int, int]]:
    """Speech segments as (start, end) sample indices: silero-vad's rules (see the module docstring)."""
    rate, step = settings.sample_rate, settings.window_samples
    min_speech = rate * min_speech_ms / 1000
    min_silence = rate * min_silence_ms / 1000
    pad = rate * pad_ms / 1000
    end_threshold = max(threshold - 0.15, 0.01)

    found: list[list[int]] = []
    start: int | None = None
    silence_since = 0  # where the current stretch of low probability began (0: none)
    for index, probability in enumerate(probabilities):
        position = step * index
        if probability >= threshold:
            silence_since = 0
            if start is None:
                start = position
                continue
        if start is not None and probability < end_threshold:
            if not silence_since:
                silence_since = position
            if position - silence_since < min_silence:
                continue
            if silence_since - start > min_speech:
                found.append([start, silence_since])
            start, silence_since = None, 0
    if start is not None and n_samples - start > min_speech:
        found.append([start, n_samples])
    return _pad(found, n_samples, pad)


def _pad(found: list[list[int]], n_samples: int, pad: float) -> list[tuple[int, int]]:
    for i, segment in enumerate(found):
        if i == 0:
            segment[0] = int(max(0, segment[0] - pad))
        if i + 1 < len(found):
            gap = found[i + 1][0] - segment[1]
            if gap < 2 * pad:  # too close to pad both: split the gap between them
                segment[1] += int(gap // 2)
                found[i + 1][0] = int(max(0, found[i + 1][0] - gap // 2))
            else:
                segment[1] = int(min(n_samples, segment[1] + pad))
                found[i + 1][0] = int(max(0, found[i + 1][0] - pad))
        else:
            segment[1] = int(min(n_samples, segment[1] + pad))
    return [(int(a), int(b)) for a, b in found]


def speech_segments(
    audio: np.ndarray,
    sample_rate: int = 16000,
    threshold: float = 0.5,
    min_speech_ms: int = 250,
    min_silence_ms: int = 100,
    pad_ms: int = 30,
    runtime: Runtime | None = None,
) -> list[tuple[float, float]]:
    """Speech segments of a recording as (start, end) seconds. Audio at another rate than the model's is
    resampled first; the times are in the recording's own timeline either way."""
    from .audio import to_mono_16k

    runtime = runtime or get_runtime()
    settings = VadSettings.from_preprocess(runtime.bundle.entry(MODEL_ID).preprocess)
    audio = np.asarray(audio, dtype=np.float32)
    if sample_rate != settings.sample_rate or audio.ndim != 1:
        audio = to_mono_16k(audio, sample_rate, target_rate=settings.sample_rate)
    return speech_segments_of_blocks([audio], threshold, min_speech_ms, min_silence_ms, pad_ms, runtime)[0]


def speech_segments_of_blocks(
    blocks: Iterable[np.ndarray],
    threshold: float = 0.5,
    min_speech_ms: int = 250,
    min_silence_ms: int = 100,
    pad_ms: int = 30,
    runtime: Runtime | None = None,
) -> tuple[list[tuple[float, float]], int]:
    """speech_segments of mono audio at the model's rate (16 kHz) that arrives in blocks (engine.audio.AudioFile),
    and the recording's length in samples: a recording of any length is searched for speech holding one block."""
    runtime = runtime or get_runtime()
    settings = VadSettings.from_preprocess(runtime.bundle.entry(MODEL_ID).preprocess)
    session = runtime.session(MODEL_ID, "model")
    probabilities, total = speech_probabilities_of_blocks(
        (block for block in blocks if len(block)), session, settings)
    if total == 0:
        return [], 0
    samples = segments_from_probabilities(probabilities, total, settings, threshold, min_speech_ms,
                                          min_silence_ms, pad_ms)
    return [(a / settings.sample_rate, b / settings.sample_rate) for a, b in samples], total


@dataclass
class VoiceEvent:
    kind: str  # "start" | "end"
    time: float  # seconds since the stream began


@dataclass
class VoiceActivityStream:
    """Live voice activity for a microphone: feed chunks of 16 kHz audio of any length as they arrive,
    get "start"/"end" events back. Same rules as `speech_segments`, except that an end waits for a longer
    silence (300 ms: a speaker's breath should not cut a live utterance in two) and is reported once that
    silence has passed, timed where the silence began plus the padding."""

    threshold: float = 0.5
    min_silence_ms: int = 300
    pad_ms: int = 30
    runtime: Runtime | None = None
    in_speech: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        runtime = self.runtime or get_runtime()
        self.settings = VadSettings.from_preprocess(runtime.bundle.entry(MODEL_ID).preprocess)
        self._stepper = _SileroStepper(runtime.session(MODEL_ID, "model"), self.settings)
        self.reset()

    def reset(self) -> None:
        self._stepper.reset()
        self._pending = np.zeros(0, dtype=np.float32)
        self._samples_seen = 0  # samples already turned into probabilities
        self._silence_since: int | None = None
        self.in_speech = False

    def feed(self, chunk: np.ndarray) -> list[VoiceEvent]:
        rate, step = self.settings.sample_rate, self.settings.window_samples
        self._pending = np.concatenate([self._pending, np.asarray(chunk, dtype=np.float32).reshape(-1)])
        events: list[VoiceEvent] = []
        while len(self._pending) >= step:
            window, self._pending = self._pending[:step], self._pending[step:]
            probability = self._stepper(window)
            position = self._samples_seen
            self._samples_seen += step
            event = self._update(probability, position)
            if event is not None:
                events.append(VoiceEvent(event[0], max(0.0, event[1] / rate)))
        return events

    def _update(self, probability: float, position: int) -> tuple[str, int] | None:
        rate = self.settings.sample_rate
        pad = rate * self.pad_ms / 1000
        if probability >= self.threshold:
            self._silence_since = None
            if not self.in_speech:
                self.in_speech = True
                return "start", int(position - pad)
            return None
        if self.in_speech and probability < self.threshold - 0.15:
            if self._silence_since is None:
                self._silence_since = position
            if position - self._silence_since >= rate * self.min_silence_ms / 1000:
                self.in_speech = False
                ended, self._silence_since = self._silence_since, None
                return "end", int(ended + pad)
        return None
