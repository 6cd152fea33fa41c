"""Audio in: any common file (WAV, FLAC, OGG/Vorbis, MP3, AIFF, ...) or a microphone buffer, out as
float32 mono samples at 16 kHz, the rate every speech model in the bundle expects.

Decoding is libsndfile's (through soundfile; its wheels read MP3 too), resampling is scipy's polyphase
filter. Anything wrong with a file is reported as an InputFileError that names the file, before a model
ever sees it.
"""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np

from .errors import InputFileError

SAMPLE_RATE = 16000
MAX_SECONDS = 4 * 3600  # longer recordings would need gigabytes of memory; split them first
_BLOCK_FRAMES = 1 << 18  # decode in blocks so that a multi-channel file is never held whole


def load_audio(path: Path | str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode an audio file to float32 mono at `sample_rate` (16 kHz by default)."""
    import soundfile as sf

    path = Path(path)
    _check_file(path)
    try:
        handle = sf.SoundFile(str(path))
    except sf.LibsndfileError as exc:
        raise InputFileError(path, f"not a readable audio file ({_plain(exc)})") from None
    except (RuntimeError, ValueError, OSError) as exc:
        raise InputFileError(path, f"cannot open the file as audio ({exc})") from None
    with handle:
        native_rate, declared = handle.samplerate, handle.frames
        _check_header(path, native_rate, handle.channels, declared)
        try:
            mono = _read_mono(path, handle)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:  # decoders raise these on damaged streams
            raise InputFileError(path, f"the audio data is damaged ({_plain(exc)})") from None

    if mono.size == 0:
        raise InputFileError(path, "the file contains no audio samples")
    # libsndfile stops quietly at the end of the real data; a header that promised more means a cut-off file.
    if declared > 0 and mono.size < 0.9 * declared:
        raise InputFileError(path, f"the file is truncated (has {mono.size} of {declared} samples)")
    _check_wav_length(path)
    _check_ogg_end(path)
    return to_mono_16k(mono, native_rate, target_rate=sample_rate)


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
    if from_rate == to_rate or samples.size == 0:
        return np.ascontiguousarray(samples, dtype=np.float32)
    from scipy.signal import resample_poly

    common = gcd(int(from_rate), int(to_rate))
    out = resample_poly(samples, int(to_rate) // common, int(from_rate) // common)
    return np.ascontiguousarray(out, dtype=np.float32)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputFileError(path, "the file does not exist")
    if not path.is_file():
        raise InputFileError(path, "this is not a file")
    if path.stat().st_size == 0:
        raise InputFileError(path, "the file is empty (0 bytes)")


def _check_header(path: Path, rate: int, channels: int, frames: int) -> None:
    if rate <= 0 or rate > 768_000:
        raise InputFileError(path, f"the file declares an impossible sample rate ({rate} Hz)")
    if channels <= 0 or channels > 64:
        raise InputFileError(path, f"the file declares an impossible channel count ({channels})")
    if frames == 0:
        raise InputFileError(path, "the file contains no audio samples")
    if frames > 0 and frames / rate > MAX_SECONDS:
        hours = frames / rate / 3600
        raise InputFileError(path, f"the recording is {hours:.1f} hours long; the limit is {MAX_SECONDS // 3600} hours "
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


def _read_mono(path: Path, handle) -> np.ndarray:
    """Read block by block, mixing channels as we go, so memory is one mono copy of the file."""
    limit = int(MAX_SECONDS * handle.samplerate)
    parts: list[np.ndarray] = []
    total = 0
    for block in handle.blocks(blocksize=_BLOCK_FRAMES, dtype="float32", always_2d=True):
        parts.append(block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0].copy())
        total += len(parts[-1])
        if total > limit:  # a header can understate the length (streams, MP3 without a frame count)
            raise InputFileError(path, f"the recording is longer than the {MAX_SECONDS // 3600} hour limit "
                                       "(split it into parts)")
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def _plain(exc: Exception) -> str:
    """libsndfile's message without the path it repeats. For a file it cannot parse it sometimes says the
    file does not exist; we checked it does, so say what it means."""
    text = str(exc)
    text = text.split(": ", 1)[-1] if text.startswith("Error opening") else text
    return "unknown or damaged format" if "does not exist" in text else text
