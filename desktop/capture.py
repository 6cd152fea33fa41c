"""The system microphone (sounddevice / PortAudio): list input devices, record a fixed time, or capture
continuously into a bounded queue; and `PhraseTranscriber`, which turns a live 16 kHz stream into phrases
(voice activity -> one transcript per phrase) for `fusiondesk listen` and the app's Live tab alike.

The camera is not here: the webcam reaches the app through the window's getUserMedia (Gradio's webcam input).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from engine.errors import FusionDeskError

CAPTURE_RATE = 16000  # asked of the device first: then nothing needs resampling
CHUNK_SECONDS = 0.1
QUEUE_CHUNKS = 100  # 10 s of audio waiting at most; a consumer that far behind loses the oldest-first overflow


class CaptureUnavailable(FusionDeskError):
    """No microphone can be used: PortAudio missing, no input device, or the device refused to open."""


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    channels: int
    default_rate: float
    host_api: str
    is_default: bool


def _sounddevice():
    """Import sounddevice, turning a missing PortAudio into a message a person can act on."""
    try:
        import sounddevice
    except OSError as exc:  # the Linux wheel does not bundle PortAudio
        raise CaptureUnavailable(
            "the PortAudio library is missing, so the system microphone cannot be used "
            "(on Debian/Ubuntu: sudo apt-get install libportaudio2). Files and the in-app microphone still work."
        ) from exc
    except ImportError as exc:
        raise CaptureUnavailable("the sounddevice package is not installed, so the system microphone cannot be used") from exc
    return sounddevice


def input_devices() -> list[InputDevice]:
    sd = _sounddevice()
    try:
        devices = sd.query_devices()
        apis = sd.query_hostapis()
        default_input = sd.default.device[0]
    except sd.PortAudioError as exc:
        raise CaptureUnavailable(f"the sound system could not be queried ({exc})") from exc
    found = []
    for index, info in enumerate(devices):
        if info["max_input_channels"] <= 0:
            continue
        found.append(InputDevice(index=index, name=info["name"], channels=int(info["max_input_channels"]),
                                 default_rate=float(info["default_samplerate"]),
                                 host_api=apis[info["hostapi"]]["name"], is_default=index == default_input))
    return found


NO_DEVICE_HINT = "plug in a microphone, or transcribe a recording instead (fusiondesk transcribe FILE)"


def resolve_device(device: str | int | None) -> InputDevice:
    """A device by index, by (part of its) name, or the default input; CaptureUnavailable when none fits."""
    devices = input_devices()
    if not devices:
        raise CaptureUnavailable(f"no microphone found: {NO_DEVICE_HINT}")
    if device is None or device == "":
        chosen = [d for d in devices if d.is_default] or devices[:1]
        return chosen[0]
    text = str(device).strip()
    if text.isdigit():
        matches = [d for d in devices if d.index == int(text)]
    else:
        matches = [d for d in devices if d.name == text] or [d for d in devices if text.lower() in d.name.lower()]
    if not matches:
        names = ", ".join(f"{d.index}: {d.name}" for d in devices)
        raise CaptureUnavailable(f"no input device matches {text!r} (available: {names})")
    return matches[0]


def _open_rate(sd, device: InputDevice) -> int:
    """16 kHz when the device takes it (no resampling), else the device's own rate."""
    try:
        sd.check_input_settings(device=device.index, channels=1, samplerate=CAPTURE_RATE, dtype="float32")
        return CAPTURE_RATE
    except Exception:  # PortAudio says "invalid sample rate" in several exception types across versions
        return int(device.default_rate)


def record(seconds: float, device: str | int | None = None) -> tuple[np.ndarray, InputDevice]:
    """Record `seconds` from the microphone: float32 mono 16 kHz samples, and the device used."""
    from engine.audio import to_mono_16k

    if seconds <= 0:
        raise CaptureUnavailable("the recording length must be more than 0 seconds")
    sd = _sounddevice()
    chosen = resolve_device(device)
    rate = _open_rate(sd, chosen)
    try:
        frames = sd.rec(int(round(seconds * rate)), samplerate=rate, channels=1, dtype="float32", device=chosen.index)
        sd.wait()
    except sd.PortAudioError as exc:
        raise CaptureUnavailable(f"the microphone {chosen.name!r} could not record ({exc})") from exc
    return to_mono_16k(frames[:, 0], rate), chosen


@dataclass
class MicrophoneStream:
    """Continuous capture: PortAudio's callback puts chunks into a bounded queue and never blocks; when the
    consumer falls behind, new chunks are dropped and counted (memory stays bounded, the audio thread stays
    real-time). Use as a context manager; `chunks()` yields float32 mono 16 kHz arrays."""

    device: str | int | None = None
    max_chunks: int = QUEUE_CHUNKS
    dropped: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._queue: queue.Queue[np.ndarray] = queue.Queue(maxsize=self.max_chunks)
        self._stream = None
        self._closed = threading.Event()
        self.chosen: InputDevice | None = None
        self.rate = CAPTURE_RATE
        self._resampler = None  # engine.audio.StreamResampler when the device runs at another rate

    def _callback(self, indata, frames, time_info, status) -> None:
        try:
            self._queue.put_nowait(indata[:, 0].copy())
        except queue.Full:
            self.dropped += 1

    def __enter__(self) -> "MicrophoneStream":
        sd = _sounddevice()
        self.chosen = resolve_device(self.device)
        self.rate = _open_rate(sd, self.chosen)
        if self.rate != CAPTURE_RATE:
            from engine.audio import StreamResampler

            self._resampler = StreamResampler(self.rate, CAPTURE_RATE)
        try:
            self._stream = sd.InputStream(device=self.chosen.index, channels=1, samplerate=self.rate, dtype="float32",
                                          blocksize=int(self.rate * CHUNK_SECONDS), callback=self._callback)
            self._stream.start()
        except sd.PortAudioError as exc:
            raise CaptureUnavailable(f"the microphone {self.chosen.name!r} could not be opened ({exc})") from exc
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None

    @property
    def active(self) -> bool:
        return self._stream is not None and bool(self._stream.active)

    def read(self, timeout: float = 0.5) -> np.ndarray | None:
        """The next chunk (16 kHz mono), or None when nothing came within `timeout`. Chunks from a device at
        another rate are resampled as one stream (engine.audio.StreamResampler), never one by one."""
        try:
            chunk = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        return chunk if self._resampler is None else self._resampler.push(chunk)

    def chunks(self):
        """Chunks until closed, or until the device stops delivering (a finite source, an unplugged mic)."""
        while not self._closed.is_set():
            chunk = self.read()
            if chunk is not None:
                yield chunk
            elif not self.active:
                return


# -- phrases ---------------------------------------------------------------------------------------------------


@dataclass
class Phrase:
    start: float  # seconds since the stream began
    end: float
    text: str
    final: bool = True  # False: a preview of a phrase still being spoken
    ready_at: float = 0.0  # time.monotonic() when its text was ready (for latency figures)


MAX_PHRASE_SECONDS = 25.0  # Whisper reads 30 s windows: cut a monologue before it outgrows one


class PhraseTranscriber:
    """Live 16 kHz audio -> phrases: voice activity marks where speech starts and ends; each phrase is
    transcribed as soon as it ends (and, when `preview_every` is set, previewed while it is still spoken).
    Only the audio of the phrase in progress is kept, so memory does not grow with the session."""

    def __init__(self, model_id: str | None = None, language: str = "en", preview_every: float = 0.0,
                 min_silence_ms: int = 300, runtime=None):
        from engine.runtime import get_runtime
        from engine.tasks import speech_model_for
        from engine.vad import VoiceActivityStream

        self.runtime = runtime or get_runtime()
        self.language = language
        self.model_id = model_id or speech_model_for(language)
        self.preview_every = preview_every
        self.vad = VoiceActivityStream(min_silence_ms=min_silence_ms, runtime=self.runtime)
        self._kept = np.zeros(0, dtype=np.float32)  # audio from `_kept_from` (samples since start) onwards
        self._kept_from = 0
        self._speech_from: int | None = None
        self._last_preview = 0
        self.phrases: list[Phrase] = []

    @property
    def seconds(self) -> float:
        return (self._kept_from + len(self._kept)) / CAPTURE_RATE

    def feed(self, chunk: np.ndarray, preview: bool = True) -> list[Phrase]:
        """Add audio; returns the phrases finished (and previews made, unless `preview` is False) by it."""
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        self._kept = np.concatenate([self._kept, chunk])
        out: list[Phrase] = []
        for event in self.vad.feed(chunk):
            at = int(event.time * CAPTURE_RATE)
            if event.kind == "start":
                self._speech_from = max(self._kept_from, at)
                self._last_preview = self._speech_from
            elif self._speech_from is not None:
                out.append(self._finish(at))
        if self._speech_from is None:
            self._forget_before(self._kept_from + len(self._kept) - CAPTURE_RATE)  # keep 1 s for the start padding
        else:
            now = self._kept_from + len(self._kept)
            if now - self._speech_from >= MAX_PHRASE_SECONDS * CAPTURE_RATE:
                out.append(self._finish(now))
                self._speech_from = now
                self._last_preview = now
            elif preview and self.preview_every and now - self._last_preview >= self.preview_every * CAPTURE_RATE:
                self._last_preview = now
                preview = self._transcribe(self._speech_from, now, final=False)
                if preview.text:
                    out.append(preview)
        return out

    def flush(self) -> list[Phrase]:
        """End of the stream: the phrase still being spoken, if any."""
        if self._speech_from is None:
            return []
        return [self._finish(self._kept_from + len(self._kept))]

    def _finish(self, end: int) -> Phrase:
        phrase = self._transcribe(self._speech_from, end, final=True)
        self._speech_from = None
        self._forget_before(end)
        if phrase.text:
            self.phrases.append(phrase)
        return phrase

    def _transcribe(self, start: int, end: int, final: bool) -> Phrase:
        from engine.speech import transcribe

        audio = self._kept[max(0, start - self._kept_from): max(0, end - self._kept_from)]
        text = ""
        if len(audio) >= CAPTURE_RATE // 10:
            result = transcribe(audio, model_id=self.model_id, language=self.language, task="transcribe",
                                beam_size=1, runtime=self.runtime)
            text = result.text.strip()
        return Phrase(start / CAPTURE_RATE, end / CAPTURE_RATE, text, final=final, ready_at=time.monotonic())

    def _forget_before(self, sample: int) -> None:
        drop = sample - self._kept_from
        if drop > 0:
            self._kept = self._kept[drop:]
            self._kept_from += drop

    @property
    def text(self) -> str:
        return " ".join(p.text for p in self.phrases)


class BackgroundTranscriber:
    """A PhraseTranscriber on its own thread, fed through a bounded queue. The app's microphone handler only
    queues audio and reads the text so far, so it returns at once: a browser stream whose handler is busy
    transcribing loses the chunks sent meanwhile, and words go missing. Chunks that arrive while the worker
    is behind are transcribed together (one preview, not one per chunk)."""

    def __init__(self, transcriber: PhraseTranscriber, max_chunks: int = 600):
        self.transcriber = transcriber
        self.dropped = 0
        self.phrases: list[Phrase] = []
        self.preview = ""
        self.error: str | None = None
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=max_chunks)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="fusiondesk-transcriber", daemon=True)
        self._thread.start()

    def push(self, chunk: np.ndarray) -> None:
        try:
            self._queue.put_nowait(chunk)
        except queue.Full:
            self.dropped += 1

    def finish(self, timeout: float = 30.0) -> list[Phrase]:
        """No more audio: transcribe what is left (the phrase in progress) and stop the thread."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:  # the worker is gone or stuck: do not hang the caller
            self.error = self.error or "transcription stopped responding"
        self._thread.join(timeout)
        return self.snapshot()[0]

    def snapshot(self) -> tuple[list[Phrase], str]:
        with self._lock:
            return list(self.phrases), self.preview

    def _run(self) -> None:
        from engine.errors import FusionDeskError

        while True:
            chunks = [self._queue.get()]
            while not self._queue.empty() and chunks[-1] is not None:
                chunks.append(self._queue.get_nowait())
            ending = chunks[-1] is None
            audio = [c for c in chunks if c is not None]
            try:
                # A preview only when nothing is waiting: behind, the worker catches up first.
                found = self.transcriber.feed(np.concatenate(audio), preview=self._queue.empty()) if audio else []
                if ending:
                    found += self.transcriber.flush()
            except FusionDeskError as exc:
                self.error = str(exc)
                found = []
            except Exception as exc:  # a model or numpy failure must be shown, not kill the worker silently
                self.error = f"transcription failed ({type(exc).__name__}: {exc})"
                found = []
            with self._lock:
                for phrase in found:
                    if phrase.final:
                        self.preview = ""
                        if phrase.text:
                            self.phrases.append(phrase)
                    else:
                        self.preview = phrase.text
            if ending:
                return
