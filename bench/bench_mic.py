"""Live microphone against the same speech from a file (not a test): word error rate of what the Live tab hears.

A browser or a USB microphone delivers 44.1/48 kHz audio in chunks of a fraction of a second; Whisper wants
16 kHz. This script plays espeak-ng sentences (each padded with silence, as a person speaks) through the
microphone path in chunks and compares, on the same sentences:
  - file: the recording written at the microphone's rate and transcribed from disk (`fusiondesk transcribe`);
  - microphone, chunks resampled one by one (the Live tab before engine.audio.StreamResampler);
  - microphone, one resampler for the stream (the Live tab and `fusiondesk listen` now).
The microphone paths run desktop.capture.PhraseTranscriber, which the Live tab and `listen` use (voice activity
cuts phrases, each is transcribed when it ends).

    .venv/bin/python bench/bench_mic.py [--rate 48000] [--chunk 0.25]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from bench_live import SENTENCES, speech  # noqa: E402
from test_speech import word_error_rate  # noqa: E402

MORE_SENTENCES = [
    "Remember to buy milk, eggs and bread on the way home.",
    "The train to Lisbon leaves from platform three at noon.",
    "Turn left at the second traffic light and park behind the library.",
    "Our flight was delayed by two hours because of the storm.",
    "Call the plumber about the leaking pipe in the bathroom.",
    "The children planted tomatoes and beans in the garden.",
]


def heard_through_microphone(audio: np.ndarray, rate: int, chunk_seconds: float, streaming: bool) -> str:
    from desktop.capture import PhraseTranscriber
    from engine.audio import StreamResampler, to_mono_16k

    transcriber = PhraseTranscriber(language="en")
    resampler = StreamResampler(rate)
    chunk = int(rate * chunk_seconds)
    phrases = []
    for offset in range(0, len(audio), chunk):
        piece = audio[offset: offset + chunk]
        heard = resampler.push(piece) if streaming else to_mono_16k(piece, rate)
        phrases += transcriber.feed(heard, preview=False)
    if streaming:
        phrases += transcriber.feed(resampler.flush(), preview=False)
    phrases += transcriber.flush()
    return " ".join(p.text for p in phrases if p.final and p.text)


def main() -> int:
    import soundfile as sf

    from engine.audio import resample
    from engine.tasks import transcribe_files

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=48000, help="the microphone's sample rate (default 48000)")
    parser.add_argument("--chunk", type=float, default=0.25, help="seconds per microphone chunk (default 0.25)")
    args = parser.parse_args()

    said = SENTENCES + MORE_SENTENCES
    heard: dict[str, list[str]] = {"file": [], "microphone, chunks resampled one by one": [],
                                   "microphone, one resampler for the stream": []}
    with tempfile.TemporaryDirectory() as folder:
        for i, text in enumerate(said):
            voice = speech(text, Path(folder))  # 16 kHz
            padded = np.concatenate([np.zeros(8000, np.float32), voice, np.zeros(24000, np.float32)])
            audio = resample(padded, 16000, args.rate)  # what the microphone delivers
            path = Path(folder) / f"sentence-{i}.wav"
            sf.write(path, audio, args.rate)
            (record,), _ = transcribe_files([path])
            heard["file"].append(record.get("text", ""))
            heard["microphone, chunks resampled one by one"].append(
                heard_through_microphone(audio, args.rate, args.chunk, streaming=False))
            heard["microphone, one resampler for the stream"].append(
                heard_through_microphone(audio, args.rate, args.chunk, streaming=True))
    print(f"{len(said)} espeak-ng sentences (en-us, 135 wpm), microphone at {args.rate} Hz in {args.chunk} s chunks, "
          "Whisper tiny.en\n")
    print("| path | word error rate |")
    print("|---|---:|")
    for name, texts in heard.items():
        print(f"| {name} | {word_error_rate(said, texts):.3f} |")
    print()
    for i, text in enumerate(said):
        print(f"- said: {text}")
        for name, texts in heard.items():
            print(f"  - {name}: {texts[i]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
