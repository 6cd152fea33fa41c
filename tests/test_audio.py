"""Audio decoding (engine/audio.py) and voice activity (engine/vad.py) on real espeak-ng speech."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import speak
from engine.audio import load_audio, to_mono_16k
from engine.errors import InputFileError

SENTENCE = "The quick brown fox jumped over the lazy dog."


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """The reference: espeak-ng speech at 16 kHz mono, and its samples."""
    path = speak(SENTENCE, tmp_path_factory.mktemp("audio") / "speech16k.wav")
    samples, rate = sf.read(str(path), dtype="float32")
    assert rate == 16000
    return path, samples


@pytest.fixture(scope="module")
def encoded(speech) -> dict[str, Path]:
    """The same speech in every container and rate a user is likely to bring (sox writes all but MP3;
    sox has no MP3 encoder here, soundfile's libsndfile has)."""
    source, samples = speech
    folder = source.parent
    files = {}
    for name, rate, channels in [("wav", 8000, 1), ("wav", 44100, 2), ("flac", 44100, 2), ("flac", 48000, 2),
                                 ("ogg", 48000, 2), ("ogg", 8000, 1)]:
        path = folder / f"speech_{rate}_{channels}ch.{name}"
        subprocess.run(["sox", str(source), "-r", str(rate), "-c", str(channels), str(path)], check=True)
        files[path.name] = path
    for rate, channels in [(44100, 2), (48000, 2), (16000, 1)]:
        stereo_or_mono = to_rate(samples, rate)
        data = np.stack([stereo_or_mono] * channels, axis=1) if channels > 1 else stereo_or_mono
        path = folder / f"speech_{rate}_{channels}ch.mp3"
        sf.write(str(path), data, rate, format="MP3")
        files[path.name] = path
    return files


def to_rate(samples: np.ndarray, rate: int) -> np.ndarray:
    from scipy.signal import resample_poly
    from math import gcd

    g = gcd(16000, rate)
    return resample_poly(samples, rate // g, 16000 // g).astype(np.float32)


def aligned_correlation(a: np.ndarray, b: np.ndarray, max_shift: int = 1200) -> float:
    """Best normalised correlation over small shifts: MP3 and Vorbis add a decoder delay."""
    n = min(len(a), len(b)) - max_shift
    best = 0.0
    for shift in range(0, max_shift, 8):
        for x, y in ((a[shift:shift + n], b[:n]), (a[:n], b[shift:shift + n])):
            best = max(best, float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-12)))
    return best


def test_every_format_and_rate_decodes_to_the_same_16k_mono_speech(speech, encoded):
    _, reference = speech
    for name, path in encoded.items():
        audio = load_audio(path)
        assert audio.dtype == np.float32 and audio.ndim == 1, name
        # Same duration to within the codecs' padding (MP3 frames are 1152 samples at the source rate).
        assert abs(len(audio) - len(reference)) < 0.1 * 16000, (name, len(audio), len(reference))
        # Same waveform: 8 kHz files lose everything above 4 kHz, lossy codecs some detail, hence < 1.
        floor = 0.8 if "8000" in name else 0.9
        assert aligned_correlation(audio, reference) > floor, name


def test_to_mono_16k_mixes_channels_converts_integers_and_resamples():
    rate = 48000
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * 440 * t)
    stereo_int16 = (np.stack([tone, tone], axis=1) * 16000).astype(np.int16)
    mono = to_mono_16k(stereo_int16, rate)
    assert mono.dtype == np.float32 and mono.shape == (16000,)
    assert abs(float(np.abs(mono[100:-100]).max()) - 16000 / 32767) < 0.01
    # Still a 440 Hz tone after resampling.
    spectrum = np.abs(np.fft.rfft(mono))
    assert abs(int(np.argmax(spectrum)) - 440) <= 1


def bad_file(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def test_broken_files_raise_input_file_errors_that_name_the_file(speech, encoded, tmp_path):
    wav44 = encoded["speech_44100_2ch.wav"].read_bytes()
    flac = encoded["speech_48000_2ch.flac"].read_bytes()
    ogg = encoded["speech_48000_2ch.ogg"].read_bytes()
    rng = np.random.default_rng(0)
    damaged_flac = bytearray(flac)
    damaged_flac[2000::97] = rng.integers(0, 256, len(damaged_flac[2000::97]), dtype=np.uint8).tobytes()

    cases = {
        "empty.wav": (b"", "empty"),
        "random.wav": (rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not a readable audio file"),
        "random.mp3": (rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), ""),
        "text.ogg": (b"this is a text file, not audio\n" * 20, "not a readable audio file"),
        "truncated.wav": (wav44[: len(wav44) // 3], "truncated"),
        "header_only.wav": (wav44[:44], ""),
        "truncated.flac": (flac[: len(flac) // 3], ""),
        "truncated.ogg": (ogg[: len(ogg) // 4], ""),
        "damaged.flac": (bytes(damaged_flac), ""),
    }
    for name, (data, words) in cases.items():
        path = bad_file(tmp_path, name, data)
        with pytest.raises(InputFileError) as caught:
            load_audio(path)
        assert str(path) in str(caught.value), name
        assert words in caught.value.problem, (name, caught.value.problem)

    with pytest.raises(InputFileError, match="does not exist"):
        load_audio(tmp_path / "missing.wav")
    with pytest.raises(InputFileError, match="not a file"):
        load_audio(tmp_path)


def test_zero_frame_and_too_long_files_are_refused(tmp_path, monkeypatch):
    empty = tmp_path / "zero_frames.wav"
    sf.write(str(empty), np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(InputFileError, match="no audio samples"):
        load_audio(empty)

    import engine.audio

    long = tmp_path / "long.flac"
    sf.write(str(long), np.zeros(16000 * 3, dtype=np.float32), 16000)
    monkeypatch.setattr(engine.audio, "MAX_SECONDS", 2)  # a 4-hour file would take too long to make
    with pytest.raises(InputFileError, match="limit"):
        load_audio(long)


# ---------------------------------------------------------------------------------- voice activity

def test_vad_finds_the_speech_between_silences(runtime, speech):
    from engine.vad import speech_segments

    _, sentence = speech
    rate = 16000
    silence = lambda seconds: np.zeros(int(seconds * rate), dtype=np.float32)  # noqa: E731
    audio = np.concatenate([silence(1.5), sentence, silence(2.0), sentence, silence(1.0)])
    first = (1.5, 1.5 + len(sentence) / rate)
    second = (first[1] + 2.0, first[1] + 2.0 + len(sentence) / rate)

    segments = speech_segments(audio, runtime=runtime)
    assert len(segments) == 2, segments
    for (start, end), (true_start, true_end) in zip(segments, [first, second]):
        # espeak leaves a little silence inside its own file, so the voice sits inside the file's span.
        assert true_start - 0.1 <= start < true_start + 0.4, (start, true_start)
        assert true_end - 0.6 < end <= true_end + 0.1, (end, true_end)

    # Any input rate: the same speech at 48 kHz gives the same times.
    again = speech_segments(to_rate(audio, 48000), sample_rate=48000, runtime=runtime)
    assert len(again) == 2 and all(abs(a - b) < 0.07 for s, t in zip(segments, again) for a, b in zip(s, t))


def test_vad_hears_nothing_in_silence_or_white_noise(runtime, tmp_path):
    from engine.vad import speech_segments

    noise = tmp_path / "noise.wav"
    subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", str(noise), "synth", "5", "whitenoise", "vol", "0.3"],
                   check=True)
    assert speech_segments(np.zeros(16000 * 5, dtype=np.float32), runtime=runtime) == []
    assert speech_segments(load_audio(noise), runtime=runtime) == []


def test_vad_stream_reports_start_and_end_as_chunks_arrive(runtime, speech):
    from engine.vad import VoiceActivityStream

    _, sentence = speech
    rate = 16000
    audio = np.concatenate([np.zeros(rate, dtype=np.float32), sentence, np.zeros(rate, dtype=np.float32)])
    stream = VoiceActivityStream(runtime=runtime)
    events = []
    for start in range(0, len(audio), 1600):  # 100 ms microphone buffers
        events += stream.feed(audio[start:start + 1600])
    kinds = [event.kind for event in events]
    assert kinds[0] == "start" and kinds[-1] == "end", kinds
    assert 0.9 < events[0].time < 1.5
    assert 1.0 + len(sentence) / rate - 0.8 < events[-1].time < 1.0 + len(sentence) / rate + 0.4
    assert not stream.in_speech
