"""The system microphone, through a virtual one: an ALSA `file` PCM in a temporary $HOME/.asoundrc replays
espeak-ng speech as if spoken into a microphone (PLATFORM.md). No sound card is needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, speak

SENTENCE = "Please send the invoice to the accounting team."  # one tiny.en hears right, greedy, at any padding
DEVICE = "fusiondesk_virtual_mic"


def _words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() else " " for c in text).split()


def _fusiondesk(args: list[str], home: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(home))
    return subprocess.run([sys.executable, "-m", "desktop", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def speech_samples(tmp_path_factory) -> np.ndarray:
    import soundfile as sf

    wav = speak(SENTENCE, tmp_path_factory.mktemp("mic") / "sentence.wav")
    samples, rate = sf.read(wav, dtype="float32")
    assert rate == 16000
    silence = np.zeros(8000, dtype=np.float32)
    return np.concatenate([silence, samples, silence, silence])


@pytest.fixture(scope="module")
def virtual_mic_home(tmp_path_factory, speech_samples) -> Path:
    """$HOME whose .asoundrc defines a microphone that plays back the speech (float32: the dtype we record)."""
    home = tmp_path_factory.mktemp("home")
    raw = home / "speech.f32"
    speech_samples.astype("<f4").tofile(raw)
    (home / ".asoundrc").write_text(
        f'pcm.{DEVICE} {{\n  type file\n  slave.pcm "null"\n  file "/dev/null"\n  infile "{raw}"\n  format "raw"\n}}\n')
    return home


@pytest.fixture
def use_home(monkeypatch):
    """PortAudio reads .asoundrc once per initialisation: point HOME at it and re-initialise around the test."""

    def switch(home: Path) -> None:
        import sounddevice as sd

        monkeypatch.setenv("HOME", str(home))
        sd._terminate()
        sd._initialize()

    yield switch
    import sounddevice as sd

    monkeypatch.undo()
    sd._terminate()
    sd._initialize()


def test_devices_lists_the_virtual_microphone(virtual_mic_home):
    result = _fusiondesk(["devices", "--json"], virtual_mic_home, timeout=60)
    assert result.returncode == 0, result.stderr
    names = [d["name"] for d in json.loads(result.stdout)]
    assert DEVICE in names


def test_listen_transcribes_the_virtual_microphone(virtual_mic_home, speech_samples, bundle):
    seconds = len(speech_samples) / 16000
    result = _fusiondesk(["listen", "--seconds", f"{seconds:.2f}", "--device", DEVICE, "--json"], virtual_mic_home)
    assert result.returncode == 0, result.stderr
    heard = json.loads(result.stdout)
    assert heard["device"] == DEVICE
    assert abs(heard["seconds"] - seconds) < 0.05
    expected = _words(SENTENCE)
    got = _words(heard["text"])
    matched = sum(word in got for word in expected)
    assert matched >= len(expected) - 1, heard["text"]  # one word of slack for the synthetic voice
    assert heard["segments"] and heard["segments"][0]["start"] >= 0.1  # the half second of silence came first


def test_no_microphone_is_a_plain_message(tmp_path):
    for args in (["devices"], ["listen", "--seconds", "1"]):
        result = _fusiondesk(args, tmp_path, timeout=60)  # no .asoundrc, no sound card
        assert result.returncode == 4
        assert "no microphone found" in result.stderr
        assert "Traceback" not in result.stderr


def test_unknown_device_names_the_available_ones(virtual_mic_home):
    result = _fusiondesk(["listen", "--seconds", "1", "--device", "no-such-mic"], virtual_mic_home, timeout=60)
    assert result.returncode == 4
    assert "no input device matches 'no-such-mic'" in result.stderr and DEVICE in result.stderr
    assert "Traceback" not in result.stderr


def test_record_is_bit_exact(virtual_mic_home, speech_samples, use_home):
    from desktop.capture import record

    use_home(virtual_mic_home)
    samples, device = record(len(speech_samples) / 16000, DEVICE)
    assert device.name == DEVICE
    np.testing.assert_array_equal(samples, speech_samples[: len(samples)])


def test_stream_queue_stays_bounded_when_the_consumer_lags(virtual_mic_home, use_home):
    """The file-backed microphone delivers far faster than real time: a consumer that reads nothing must
    see chunks dropped and counted, never a queue that grows."""
    from desktop.capture import MicrophoneStream

    use_home(virtual_mic_home)
    with MicrophoneStream(DEVICE, max_chunks=5) as mic:
        deadline = time.monotonic() + 5
        while mic.dropped == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mic._queue.qsize() <= 5
        assert mic.dropped > 0
        assert mic.read(timeout=1.0) is not None


def test_phrase_transcriber_finds_the_phrase(speech_samples, runtime):
    """Live mode's segmentation: fed in 100 ms chunks as a microphone would, the phrase comes out once its
    end is heard, timed where the speech was."""
    from desktop.capture import PhraseTranscriber

    transcriber = PhraseTranscriber(language="en", runtime=runtime)
    phrases = []
    for start in range(0, len(speech_samples), 1600):
        phrases += [p for p in transcriber.feed(speech_samples[start: start + 1600]) if p.final]
    phrases += transcriber.flush()
    assert len(phrases) == 1, phrases
    assert sum(w in _words(phrases[0].text) for w in _words(SENTENCE)) >= len(_words(SENTENCE)) - 1
    assert 0.3 <= phrases[0].start <= 0.6
    assert transcriber._kept.size < 2 * 16000  # only the audio of the phrase in progress is kept
