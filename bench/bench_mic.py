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
    .venv/bin/python bench/bench_mic.py --browser     # the whole path: Chromium's fake microphone -> Live tab
"""

from __future__ import annotations

import argparse
import re
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


def heard_through_the_browser(said: list[str], folder: Path) -> tuple[str, str, dict]:
    """The sentences, each after silence, played by headless Chromium's fake microphone into the Live tab (the
    whole path: getUserMedia, Gradio's streaming, the app's handler); returns (what the Live tab shows, what
    `fusiondesk transcribe` gives for the same file, facts about the chunks that arrived)."""
    import os
    import time

    import soundfile as sf
    from playwright.sync_api import sync_playwright

    from media import CHROMIUM, chromium_flags

    os.environ["FUSIONDESK_DATA_DIR"] = str(folder / "data")  # never the person's own
    os.environ["FUSIONDESK_CONFIG_DIR"] = str(folder / "config")
    # The fake microphone starts when the page lists devices, before Record is pressed: 5 s of silence first.
    parts = [np.zeros(16000 * 5, np.float32)]
    for text in said:
        parts += [speech(text, folder), np.zeros(16000 * 2, np.float32)]
    audio = np.concatenate(parts)
    wav = folder / "talk.wav"
    sf.write(wav, (audio * 32767).astype(np.int16), 16000)

    import desktop.ui as ui

    chunks = []
    handler = ui.hear_chunk

    def counting(chunk, language, state):  # the app's own handler, counting what arrives
        if chunk is not None:
            chunks.append((int(chunk[0]), np.asarray(chunk[1]).shape[0]))
        return handler(chunk, language, state)

    ui.hear_chunk = counting
    app, url = ui.launch()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=chromium_flags(audio=wav))
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.goto(url)
            page.get_by_text("FusionDesk", exact=True).first.wait_for()
            page.locator("button.record-button").first.click()
            time.sleep(len(audio) / 16000 + 4)
            shown = page.locator("#live-heard").inner_text()
            browser.close()
    finally:
        app.close()
        ui.hear_chunk = handler
    from engine.tasks import transcribe_files

    (record,), _ = transcribe_files([wav])
    lines = [line.split(" ", 1)[1] for line in shown.splitlines() if re.match(r"^\d\d:\d\d\.\d\d ", line)]
    rates = sorted({rate for rate, _ in chunks})
    facts = {"chunks": len(chunks), "rates": rates,
             "seconds_received": round(sum(n for _, n in chunks) / rates[0], 1) if rates else 0.0,
             "seconds_played": round(len(audio) / 16000, 1)}
    return " ".join(lines), record.get("text", ""), facts


def main() -> int:
    import soundfile as sf

    from engine.audio import resample
    from engine.tasks import transcribe_files

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=48000, help="the microphone's sample rate (default 48000)")
    parser.add_argument("--chunk", type=float, default=0.25, help="seconds per microphone chunk (default 0.25)")
    parser.add_argument("--browser", action="store_true",
                        help="instead: play the sentences through headless Chromium's fake microphone into the Live tab")
    args = parser.parse_args()
    if args.browser:
        said = SENTENCES + MORE_SENTENCES
        with tempfile.TemporaryDirectory() as folder:
            live, from_file, facts = heard_through_the_browser(said, Path(folder))
        print(f"{len(said)} espeak-ng sentences, 2 s apart, through Chromium's fake microphone into the Live tab "
              f"({facts['chunks']} chunks at {facts['rates']} Hz, {facts['seconds_received']} s received of "
              f"{facts['seconds_played']} s played), against the same recording transcribed from its file\n")
        print("| path | word error rate (all sentences as one text) |")
        print("|---|---:|")
        print(f"| Live tab, browser microphone | {word_error_rate([' '.join(said)], [live]):.3f} |")
        print(f"| the same recording from its file | {word_error_rate([' '.join(said)], [from_file]):.3f} |")
        print(f"\nLive: {live}\nFile: {from_file}")
        return 0

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
