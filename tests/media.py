"""Fake media for headless Chromium: a Y4M "camera" that shows real photographs, and the command-line flags
that make Chromium's fake capture devices play our files (PLATFORM.md). Shared by tests/test_ui.py and
bench/bench_live.py."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np

CHROMIUM = "/usr/bin/chromium"
# Playwright adds --headless and its own fresh --user-data-dir; the rest are PLATFORM.md's flags for root, no GPU
# and no network chatter.
HEADLESS_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_flags(video: Path | None = None, audio: Path | None = None, loop_audio: bool = False) -> list[str]:
    """Headless flags plus fake camera/microphone (files when given) with every permission prompt auto-granted
    (fine for a test browser, never for the app's window)."""
    flags = HEADLESS_FLAGS + ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                              "--autoplay-policy=no-user-gesture-required"]
    if video is not None:
        flags.append(f"--use-file-for-fake-video-capture={video}")
    if audio is not None:
        flags.append(f"--use-file-for-fake-audio-capture={audio}{'' if loop_audio else '%noloop'}")
    return flags


def rgb_to_i420(rgb: np.ndarray) -> bytes:
    """Full-range BT.601 (JFIF) Y'CbCr 4:2:0 planes of an RGB frame with even sides."""
    rgb = rgb.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    h, w = y.shape

    def half(plane: np.ndarray) -> np.ndarray:
        return plane.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    planes = [y, half(cb), half(cr)]
    return b"".join(np.clip(np.rint(p), 0, 255).astype(np.uint8).tobytes() for p in planes)


def write_y4m(path: Path, photos: list[np.ndarray], seconds_each: float = 1.0, fps: int = 10,
              size: tuple[int, int] = (320, 240)) -> Path:
    """A looping camera feed that shows each photo for `seconds_each`, in turn."""
    from PIL import Image, ImageOps

    width, height = size
    frames = [rgb_to_i420(np.asarray(ImageOps.fit(Image.fromarray(photo).convert("RGB"), size))) for photo in photos]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            for _ in range(max(1, round(seconds_each * fps))):
                out.write(b"FRAME\n")
                out.write(frame)
    return path


def start_xvfb(numbers: range = range(90, 260)) -> tuple[subprocess.Popen, str]:
    """An Xvfb virtual screen on the first free display number in `numbers`, once its socket exists.
    Tests and benchmarks pass different ranges so that runs side by side do not race for one number."""
    number = next((n for n in numbers if not Path(f"/tmp/.X11-unix/X{n}").exists()
                   and not Path(f"/tmp/.X{n}-lock").exists()), None)
    if number is None:
        raise RuntimeError(f"no free X display number in {numbers}")
    xvfb = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1280x900x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        if xvfb.poll() is not None or time.monotonic() > deadline:
            xvfb.kill()
            raise RuntimeError("Xvfb did not start")
        time.sleep(0.1)
    return xvfb, f":{number}"
