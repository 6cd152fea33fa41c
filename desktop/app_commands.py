"""The app's commands: `ui` (the window, or a browser), `devices` and `listen` (the system microphone).

Handlers import gradio, the window (pywebview) and sounddevice only when they run, so `fusiondesk --help` stays instant.
"""

from __future__ import annotations

import json
import sys

EXIT_OK, EXIT_NO_DEVICE = 0, 4


def add_commands(command) -> None:
    p = command("ui", cmd_ui, "open the app (a native window; --browser to use your web browser instead)")
    p.add_argument("--browser", action="store_true", help="serve on 127.0.0.1 and open it in your web browser")
    p.add_argument("--port", type=int, default=0, help="port to serve on (default: a free one)")
    p.add_argument("--no-open", action="store_true", help="with --browser: only print the address")

    p = command("devices", cmd_devices, "list the microphones the app can record from")
    p.add_argument("--json", action="store_true")

    p = command("listen", cmd_listen, "record from the microphone and transcribe (continuous until Ctrl-C, "
                                      "or --seconds N)")
    p.add_argument("--seconds", type=float, help="record this long, then transcribe (default: listen until Ctrl-C)")
    # dest "microphone": the global --device (auto|cpu|gpu, before the command) must keep its own value
    p.add_argument("--device", dest="microphone", metavar="D",
                   help="microphone index or (part of its) name, from `fusiondesk devices`")
    p.add_argument("--language", default="en", help="en (default, fast English model), auto, or a code such as de")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")


def cmd_ui(args) -> int:
    from desktop.window import run_app

    _apply_runtime_flags(args)
    return run_app(browser=args.browser, port=args.port, open_browser=not args.no_open)


def _apply_runtime_flags(args) -> None:
    """`--device`/`--threads` before the command override the saved settings for this run."""
    if args.device or args.threads:
        from desktop.cli import _runtime

        _runtime(args)


def cmd_devices(args) -> int:
    from desktop.capture import CaptureUnavailable, input_devices

    try:
        devices = input_devices()
    except CaptureUnavailable as exc:
        print(f"fusiondesk: {exc}", file=sys.stderr)
        return EXIT_NO_DEVICE
    if args.json:
        json.dump([d.__dict__ for d in devices], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK if devices else EXIT_NO_DEVICE
    if not devices:
        from desktop.capture import NO_DEVICE_HINT

        print(f"no microphone found: {NO_DEVICE_HINT}", file=sys.stderr)
        return EXIT_NO_DEVICE
    for d in devices:
        mark = "*" if d.is_default else " "
        print(f"{mark} {d.index:3}  {d.name}  ({d.channels} ch, {d.default_rate:.0f} Hz, {d.host_api})")
    return EXIT_OK


def cmd_listen(args) -> int:
    from desktop.capture import CaptureUnavailable

    _apply_runtime_flags(args)
    try:
        if args.seconds is not None:
            return _listen_fixed(args)
        return _listen_continuous(args)
    except CaptureUnavailable as exc:
        print(f"fusiondesk: {exc}", file=sys.stderr)
        return EXIT_NO_DEVICE


def _listen_fixed(args) -> int:
    from desktop.capture import record
    from engine.speech import transcribe
    from engine.tasks import speech_model_for

    samples, device = record(args.seconds, args.microphone)
    if not args.json:
        print(f"recorded {len(samples) / 16000:.1f} s from {device.name}", file=sys.stderr)
    model_id = speech_model_for(args.language)
    transcript = transcribe(samples, model_id=model_id, language=args.language, task="transcribe", beam_size=1)
    segments = [{"start": round(s.start, 2), "end": round(s.end, 2), "text": s.text.strip()} for s in transcript.segments]
    _report(args, device.name, len(samples) / 16000, transcript.text.strip(), transcript.language, segments, 0)
    return EXIT_OK


def _listen_continuous(args) -> int:
    from desktop.capture import MicrophoneStream, PhraseTranscriber

    transcriber = PhraseTranscriber(language=args.language)
    phrases = []
    with MicrophoneStream(args.microphone) as mic:
        if not args.json:
            print(f"listening on {mic.chosen.name} (Ctrl-C to stop)", file=sys.stderr)
        try:
            for chunk in mic.chunks():
                phrases += _show(args, transcriber.feed(chunk))
        except KeyboardInterrupt:
            pass  # the normal way to stop: fall through and finish the phrase in progress
        mic.close()
        phrases += _show(args, transcriber.flush())
        segments = [{"start": round(p.start, 2), "end": round(p.end, 2), "text": p.text} for p in phrases]
        _report(args, mic.chosen.name, transcriber.seconds, " ".join(p.text for p in phrases), args.language,
                segments, mic.dropped)
    return EXIT_OK


def _show(args, phrases) -> list:
    final = [p for p in phrases if p.final and p.text]
    if not args.json:
        for p in final:
            print(f"[{p.start:7.2f} → {p.end:7.2f}] {p.text}", flush=True)
    return final


def _report(args, device: str, seconds: float, text: str, language: str, segments: list, dropped: int) -> None:
    if args.json:
        json.dump({"device": device, "seconds": round(seconds, 2), "language": language, "text": text,
                   "segments": segments, "dropped_chunks": dropped}, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    elif args.seconds is not None:
        for s in segments:
            print(f"[{s['start']:7.2f} → {s['end']:7.2f}] {s['text']}")
        if not segments:
            print("(no speech)")
    if dropped:
        print(f"fusiondesk: warning: {dropped} audio chunks were dropped (transcription fell behind)", file=sys.stderr)


def cmd_open_app(args) -> int:
    """`fusiondesk` with no command: the native window (or, with no display, the address to open)."""
    from desktop.window import run_app

    _apply_runtime_flags(args)
    return run_app()
