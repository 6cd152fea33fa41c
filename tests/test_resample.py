"""The numpy polyphase resampler (engine/audio.py) against scipy.signal.resample_poly, which it replaces.

SciPy is not a dependency of the app; the test environment has it (scikit-image pulls it in) as the reference.
"""

from __future__ import annotations

import tracemalloc
from math import gcd

import numpy as np
import pytest
import soundfile as sf

from conftest import speak
from engine import audio

signal = pytest.importorskip("scipy.signal")

RATES = [44100, 48000, 22050, 8000, 32000]


def factors(rate: int, target: int = 16000) -> tuple[int, int]:
    common = gcd(rate, target)
    return target // common, rate // common


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> dict[int, np.ndarray]:
    """The same espeak-ng sentence recorded at each rate (sox resamples espeak's 22.05 kHz output)."""
    folder = tmp_path_factory.mktemp("resample")
    recordings = {}
    for rate in RATES:
        path = speak("Resampling must not change what was said.", folder / f"speech{rate}.wav", rate=rate)
        samples, read_rate = sf.read(str(path), dtype="float32")
        assert read_rate == rate
        recordings[rate] = samples
    return recordings


@pytest.mark.parametrize("up,down", [(2, 1), (1, 2), (160, 441), (1, 3), (2, 3), (3, 2), (5, 7), (7, 1)])
def test_filter_is_scipys_default_design(up, down):
    rate = max(up, down)
    expected = signal.firwin(20 * rate + 1, 1.0 / rate, window=("kaiser", 5.0)) * up
    np.testing.assert_allclose(audio._lowpass(up, down), expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("rate", RATES)
def test_speech_and_noise_match_scipy_at_every_common_rate(rate, speech):
    up, down = factors(rate)
    noise = np.random.default_rng(rate).uniform(-1.0, 1.0, 3 * rate).astype(np.float32)
    for samples in (speech[rate], noise):
        reference = signal.resample_poly(samples.astype(np.float64), up, down)
        # the app's path: float32 in, float32 out, float64 arithmetic inside
        ours = audio.to_mono_16k(samples, rate)
        assert ours.dtype == np.float32 and ours.shape == reference.shape
        assert np.abs(ours - reference).max() < 1e-6
        # in float64 the two are the same computation up to rounding
        assert np.abs(audio.resample_poly(samples.astype(np.float64), up, down) - reference).max() < 1e-12
        # and scipy's own float32 arithmetic is within its rounding of ours
        assert np.abs(ours - signal.resample_poly(samples, up, down)).max() < 1e-5


@pytest.mark.parametrize("up,down", [(160, 441), (1, 3), (2, 1), (5, 7), (7, 1), (1, 7)])
def test_short_signals_keep_scipys_length_and_edges(up, down):
    rng = np.random.default_rng(up * 100 + down)
    for n in [1, 2, 3, 5, 8, 13, 50, 441, 1000]:
        x = rng.standard_normal(n)
        reference = signal.resample_poly(x, up, down)
        ours = audio.resample_poly(x, up, down)
        assert ours.shape == reference.shape, n
        np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12)


def test_chunk_boundaries_leave_no_trace(monkeypatch):
    x = np.random.default_rng(3).standard_normal(50_000)
    whole = audio.resample_poly(x, 160, 441)
    monkeypatch.setattr(audio, "_CHUNK_INPUT", 1000)  # about 50 chunks, some windows straddling two
    np.testing.assert_allclose(audio.resample_poly(x, 160, 441), whole, rtol=0, atol=1e-12)
    np.testing.assert_allclose(whole, signal.resample_poly(x, 160, 441), rtol=0, atol=1e-12)


def test_memory_stays_bounded_on_a_long_recording():
    """Ten minutes at 44.1 kHz: beyond the float32 result, only a chunk's worth of memory is used (an upsampled
    signal would be 160 times the input; even a float64 copy of the input would be 212 MB)."""
    x = np.random.default_rng(4).uniform(-0.5, 0.5, 600 * 44100).astype(np.float32)
    tracemalloc.start()
    try:
        out = audio.resample(x, 44100, 16000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(out) == 600 * 16000
    assert peak - out.nbytes < 40e6, f"{(peak - out.nbytes) / 1e6:.0f} MB beyond the result"


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="1-D"):
        audio.resample_poly(np.zeros((10, 2)), 1, 2)
    with pytest.raises(ValueError, match=">= 1"):
        audio.resample_poly(np.zeros(10), 0, 2)


def test_transcription_of_a_44k_recording_is_unchanged(runtime, tmp_path, monkeypatch):
    from engine.speech import encoder_features, transcribe

    path = speak("Please send the quarterly report to the finance team by Friday.", tmp_path / "s44.wav", rate=44100)
    ours = transcribe(path, runtime=runtime)
    ours_states = encoder_features(path, runtime=runtime)
    monkeypatch.setattr(audio, "resample_poly", lambda x, up, down, dtype=np.float64:
                        signal.resample_poly(np.asarray(x, np.float64), up, down).astype(dtype))
    theirs = transcribe(path, runtime=runtime)
    assert ours.text == theirs.text
    assert [(s.start, s.end) for s in ours.segments] == [(s.start, s.end) for s in theirs.segments]
    assert "quarterly report" in ours.text.lower()
    np.testing.assert_allclose(ours_states, encoder_features(path, runtime=runtime), atol=1e-4)


@pytest.mark.parametrize("rate", [48000, 44100, 22050, 8000, 16000])
def test_a_stream_in_chunks_resamples_exactly_as_the_whole(rate, speech):
    """The microphone paths (Live tab, `listen`) resample a stream of chunks: the result must be the whole
    recording's, with no trace of where the chunks met."""
    some_rate = next(iter(speech))
    whole = speech[rate] if rate in speech else audio.resample(speech[some_rate], some_rate, rate)
    expected = audio.resample(whole, rate, 16000)
    stream = audio.StreamResampler(rate)
    rng = np.random.default_rng(rate)
    pieces, start = [], 0
    while start < len(whole):
        size = int(rng.integers(1, rate // 2))
        pieces.append(stream.push(whole[start: start + size]))
        start += size
    pieces.append(stream.flush())
    got = np.concatenate(pieces)
    assert len(got) == len(expected)
    np.testing.assert_allclose(got, expected, atol=1e-6)
