"""Audio in: any common file (WAV, FLAC, OGG/Vorbis, MP3, AIFF, ...) or a microphone buffer, out as
float32 mono samples at 16 kHz, the rate every speech model in the bundle expects.

Decoding is libsndfile's (through soundfile; its wheels read MP3 too), resampling is a numpy polyphase
filter of scipy.signal.resample_poly's design (so that the app need not ship SciPy for one function).
Anything wrong with a file is reported as an InputFileError that names the file, before a model ever sees it.
"""

from __future__ import annotations

import os
from math import gcd
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import InputFileError
from .filetypes import require_nonempty_file

SAMPLE_RATE = 16000
MAX_SECONDS = 4 * 3600  # load_audio holds a whole recording: 4 h is 920 MB (transcribe streams, see AudioFile)
_BLOCK_FRAMES = 1 << 18  # decode in blocks so that a multi-channel file is never held whole


def load_audio(path: Path | str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode an audio file to float32 mono at `sample_rate` (16 kHz by default), all of it in memory (4 bytes a
    sample: 460 MB for two hours). Transcribing a long recording streams it instead (AudioFile)."""
    return AudioFile(path, sample_rate=sample_rate, max_seconds=MAX_SECONDS).read()


class AudioFile:
    """An audio file read as float32 mono at 16 kHz a block at a time: the samples load_audio returns, without
    ever holding them all, so a recording of any length is transcribed in the same memory (engine.speech).

    Opening checks what can be checked before decoding (a missing, empty, unreadable or cut-off file, an impossible
    header, a recording over `max_seconds`); blocks() checks the rest as it reads (damaged data, fewer samples than
    the header promised) and may be called again for another pass over the file. Every problem is an
    InputFileError that names the file."""

    def __init__(self, path: Path | str, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None):
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds
        require_nonempty_file(self.path)
        with self._open() as handle:
            self.native_rate, self.channels, self.declared = handle.samplerate, handle.channels, handle.frames
        _check_header(self.path, self.native_rate, self.channels, self.declared, max_seconds)
        _check_wav_length(self.path)
        _check_ogg_end(self.path)

    @property
    def seconds(self) -> float | None:
        """The length the header declares (None: it does not say); blocks() give the exact count."""
        return self.declared / self.native_rate if self.declared > 0 else None

    def read(self) -> np.ndarray:
        """All of it at once (what load_audio returns): for a recording known to be short."""
        return np.concatenate(list(self.blocks()))

    def blocks(self, frames: int | None = None) -> Iterator[np.ndarray]:
        """float32 mono blocks at sample_rate, in order; together exactly what resampling the whole file gives.
        frames: how many of the file's frames to decode at a time (default _BLOCK_FRAMES, 16 s at 16 kHz)."""
        import soundfile as sf

        frames = frames or _BLOCK_FRAMES
        limit = None if self.max_seconds is None else int(self.max_seconds * self.native_rate)
        resampler = StreamResampler(self.native_rate, self.sample_rate) if self.native_rate != self.sample_rate else None
        total = 0
        with self._open() as handle:
            reader = handle.blocks(blocksize=frames, dtype="float32", always_2d=True)
            while True:
                try:
                    block = next(reader, None)
                except (sf.LibsndfileError, RuntimeError, ValueError) as exc:  # decoders raise these on damage
                    raise InputFileError(self.path, f"the audio data is damaged ({_plain(exc)})") from None
                if block is None:
                    break
                mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0].copy()
                total += len(mono)
                if limit is not None and total > limit:  # a header can understate the length (MP3 without a count)
                    raise InputFileError(self.path, f"the recording is longer than the {self.max_seconds / 3600:g} "
                                                    "hour limit (split it into parts)")
                mono = np.nan_to_num(mono, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
                out = resampler.push(mono) if resampler is not None else mono
                if out.size:
                    yield out
        if resampler is not None:
            tail = resampler.flush()
            if tail.size:
                yield tail
        if total == 0:
            raise InputFileError(self.path, "the file contains no audio samples")
        # libsndfile stops quietly at the end of the real data; a header that promised more means a cut-off file.
        if self.declared > 0 and total < 0.9 * self.declared:
            raise InputFileError(self.path, f"the file is truncated (has {total} of {self.declared} samples)")

    def _open(self):
        import soundfile as sf

        try:
            return sf.SoundFile(_soundfile_name(self.path))
        except sf.LibsndfileError as exc:
            raise InputFileError(self.path, f"not a readable audio file ({_plain(exc)})") from None
        except (RuntimeError, ValueError, OSError) as exc:
            raise InputFileError(self.path, f"cannot open the file as audio ({exc})") from None


def _soundfile_name(path: Path) -> str | bytes:
    """The name to give libsndfile: soundfile encodes a str name strictly, so a name whose bytes are not UTF-8
    (kept by Python as surrogates) is passed as its bytes."""
    name = str(path)
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return os.fsencode(name)


def read_excerpt(path: Path | str, start: float, seconds: float) -> tuple[int, np.ndarray]:
    """(native sample rate, float32 mono) of `seconds` of the file from `start`: reads only that part (a search
    result plays from its matching segment without decoding a two-hour recording)."""
    import soundfile as sf

    path = Path(path)
    try:
        with sf.SoundFile(_soundfile_name(path)) as handle:
            rate = handle.samplerate
            handle.seek(min(max(0, int(start * rate)), max(0, handle.frames - 1)))
            samples = handle.read(int(seconds * rate), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
        raise InputFileError(path, f"cannot read the audio ({_plain(exc)})") from None
    return rate, samples.mean(axis=1)


def to_mono_16k(samples: np.ndarray, sample_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mix a [frames] or [frames, channels] buffer (float or integer PCM) to float32 mono at 16 kHz."""
    samples = np.asarray(samples)
    if sample_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    if np.issubdtype(samples.dtype, np.integer):
        # Integer PCM is full-scale at the type's range: int16 32767 -> 1.0.
        samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max)
    samples = samples.astype(np.float32, copy=False)
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float32)
    elif samples.ndim != 1:
        raise ValueError(f"audio must be [frames] or [frames, channels], got shape {samples.shape}")
    samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
    return resample(samples, sample_rate, target_rate)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """float32 samples at `from_rate` -> float32 at `to_rate` (see resample_poly)."""
    if from_rate == to_rate or samples.size == 0:
        return np.ascontiguousarray(samples, dtype=np.float32)
    common = gcd(int(from_rate), int(to_rate))
    return resample_poly(samples, int(to_rate) // common, int(from_rate) // common, dtype=np.float32)


class StreamResampler:
    """resample() for audio that arrives in pieces (a microphone's chunks), with the same result as resampling
    the whole recording at once: each piece is filtered with the samples around it, not padded with zeros.
    Resampling each chunk on its own (what this replaces) bends the signal at every chunk boundary, 2-10 times a
    second. (Whisper tiny.en turned out to hear the two alike on espeak-ng speech at 48 kHz, bench/bench_mic.py;
    the microphone stream is now sample for sample what the same recording from a file gives.)

    Output lags the input by the filter's reach (about 1 ms at 48 kHz, 10 ms at 44.1 kHz); flush() returns the
    rest at the end of a stream."""

    def __init__(self, from_rate: int, to_rate: int = SAMPLE_RATE):
        common = gcd(int(from_rate), int(to_rate))
        self.from_rate, self.to_rate = int(from_rate), int(to_rate)
        self.up, self.down = int(to_rate) // common, int(from_rate) // common
        reach = -(-10 * max(self.up, self.down) // self.up) + 1  # input samples the filter reaches each side
        self.pad = -(-reach // self.down) * self.down  # a whole number of output samples
        self._kept = np.zeros(self.pad, dtype=np.float32)  # history before the next block (zeros: signal start)
        self._pending = np.zeros(0, dtype=np.float32)  # input not yet turned into output

    def push(self, samples: np.ndarray) -> np.ndarray:
        """float32 mono at from_rate -> the float32 output samples now final."""
        samples = np.asarray(samples, dtype=np.float32)
        if self.up == self.down:
            return samples.copy()
        self._pending = np.concatenate([self._pending, samples])
        # Finish whole groups of `down` input samples that have `pad` samples after them.
        ready = max(0, (len(self._pending) - self.pad) // self.down * self.down)
        if ready == 0:
            return np.zeros(0, dtype=np.float32)
        return self._emit(ready, np.concatenate([self._kept, self._pending[: ready + self.pad]]))

    def flush(self) -> np.ndarray:
        """The output for what is left, as if the stream ended here (zeros after it, as resample() assumes)."""
        if self.up == self.down or not len(self._pending):
            return np.zeros(0, dtype=np.float32)
        count = len(self._pending)
        window = np.concatenate([self._kept, self._pending, np.zeros(self.pad, dtype=np.float32)])
        out = resample_poly(window, self.up, self.down, dtype=np.float32)
        start = self.pad * self.up // self.down
        self._kept = np.zeros(self.pad, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        return out[start: start - (-count * self.up // self.down)]

    def _emit(self, ready: int, window: np.ndarray) -> np.ndarray:
        out = resample_poly(window, self.up, self.down, dtype=np.float32)
        start = self.pad * self.up // self.down
        result = out[start: start + ready * self.up // self.down]
        self._kept = window[ready: ready + self.pad].copy()
        self._pending = self._pending[ready:]
        return result


_CHUNK_INPUT = 1 << 20  # input samples filtered per step: memory stays a few tens of MB for any length


def resample_poly(samples: np.ndarray, up: int, down: int, dtype=np.float64) -> np.ndarray:
    """Resample a 1-D signal by up/down, as scipy.signal.resample_poly(x, up, down) does with its defaults
    (Kaiser window, beta 5, zero padding): same filter, same output length ceil(n * up / down), and output
    sample k sits at input time k * down / up, so the first output is aligned with the first input.

    The result has the given dtype; the arithmetic is float64 either way, a chunk of input at a time (an
    hour at 44.1 kHz never becomes a float64 copy). Output k = sum_n x[n] h[k*down - n*up + half], and the
    outputs k = c, c + up, c + 2*up, ... all use the same taps h[r::up]: each phase is one matrix-vector
    product over a strided view of the input, and the upsampled signal is never formed.
    """
    x = np.asarray(samples)
    if x.ndim != 1:
        raise ValueError(f"resample_poly takes a 1-D signal, got shape {x.shape}")
    up, down = int(up), int(down)
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be >= 1, got {up} and {down}")
    common = gcd(up, down)
    up, down = up // common, down // common
    if up == down == 1:
        return x.astype(dtype)
    n_in = len(x)
    n_out = -(-n_in * up // down)
    h = _lowpass(up, down)
    half = (len(h) - 1) // 2

    # Per output phase c: taps (reversed, so that the input window runs forwards) and the input index of the
    # window's first sample for row i = 0; row i starts `down` samples later.
    phases = []
    for c in range(up):
        a, r = divmod(c * down + half, up)
        taps = h[r::up][::-1].copy()
        phases.append((taps, a - len(taps) + 1))
    reach_back = -min(start for _, start in phases)  # how far before row 0 the earliest window starts
    width = max(start + len(taps) for taps, start in phases) + reach_back  # span of one row's windows

    rows_total = -(-n_out // up)
    rows_per_chunk = max(1, _CHUNK_INPUT // down)
    out = np.empty(rows_total * up, dtype=dtype)
    for row0 in range(0, rows_total, rows_per_chunk):
        rows = min(rows_per_chunk, rows_total - row0)
        # The input this chunk reads, zero outside the signal (scipy pads with zeros too).
        first = row0 * down - reach_back
        span = (rows - 1) * down + width
        segment = np.zeros(span, dtype=np.float64)
        lo, hi = max(first, 0), min(first + span, n_in)
        if hi > lo:
            segment[lo - first: hi - first] = x[lo:hi]  # converts this part only to float64
        block = out[row0 * up: (row0 + rows) * up].reshape(rows, up)
        step = segment.itemsize
        for c, (taps, start) in enumerate(phases):
            windows = np.lib.stride_tricks.as_strided(segment[start + reach_back:], shape=(rows, len(taps)),
                                                      strides=(down * step, step), writeable=False)
            block[:, c] = windows @ taps
    return out[:n_out]


def _lowpass(up: int, down: int) -> np.ndarray:
    """resample_poly's default filter: scipy.signal.firwin(2 * half + 1, 1 / max(up, down),
    window=("kaiser", 5.0)) scaled by `up`, half = 10 * max(up, down) (ten zero crossings of the sinc each side)."""
    rate = max(up, down)
    half = 10 * rate
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    h = np.sinc(offsets / rate) / rate * np.kaiser(2 * half + 1, 5.0)
    return h / h.sum() * up  # unit gain at 0 Hz before upsampling, as firwin scales it


def _check_header(path: Path, rate: int, channels: int, frames: int, max_seconds: float | None) -> None:
    if rate <= 0 or rate > 768_000:
        raise InputFileError(path, f"the file declares an impossible sample rate ({rate} Hz)")
    if channels <= 0 or channels > 64:
        raise InputFileError(path, f"the file declares an impossible channel count ({channels})")
    if frames == 0:
        raise InputFileError(path, "the file contains no audio samples")
    if max_seconds is not None and frames > 0 and frames / rate > max_seconds:
        hours = frames / rate / 3600
        raise InputFileError(path, f"the recording is {hours:.1f} hours long; the limit is {max_seconds / 3600:g} hours "
                                   "(split it into parts)")


def _check_wav_length(path: Path) -> None:
    """libsndfile shrinks a WAV's frame count to the bytes present, so a cut-off WAV looks whole to it.
    The RIFF header still says how long the data should be: compare."""
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        size = path.stat().st_size
        while True:
            chunk = handle.read(8)
            if len(chunk) < 8:
                return
            chunk_id, chunk_size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if chunk_id == b"data":
                # 0 and 0xFFFFFFFF are what streaming writers leave when they never learned the length.
                if chunk_size in (0, 0xFFFFFFFF):
                    return
                present = size - handle.tell()
                if present < chunk_size * 0.99:
                    raise InputFileError(path, f"the file is truncated (has {present} of {chunk_size} bytes of audio)")
                return
            handle.seek(chunk_size + (chunk_size & 1), 1)


def _check_ogg_end(path: Path) -> None:
    """libsndfile takes a cut-off Ogg stream's last surviving page as its end. A whole stream's last page
    is complete and carries the end-of-stream flag."""
    with open(path, "rb") as handle:
        if handle.read(4) != b"OggS":
            return
        size = path.stat().st_size
        handle.seek(max(0, size - 65536))
        tail = handle.read()
    last = tail.rfind(b"OggS")
    if last < 0 or len(tail) - last < 27:
        raise InputFileError(path, "the file is truncated (its last Ogg page is cut off)")
    flags, n_segments = tail[last + 5], tail[last + 26]
    lacing = tail[last + 27:last + 27 + n_segments]
    complete = len(lacing) == n_segments and last + 27 + n_segments + sum(lacing) <= len(tail)
    if not complete or not flags & 0x04:
        raise InputFileError(path, "the file is truncated (the Ogg stream has no end)")


def _plain(exc: Exception) -> str:
    """libsndfile's message without the path it repeats. For a file it cannot parse it sometimes says the
    file does not exist; we checked it does, so say what it means."""
    text = str(exc)
    text = text.split(": ", 1)[-1] if text.startswith("Error opening") else text
    return "unknown or damaged format" if "does not exist" in text else text
