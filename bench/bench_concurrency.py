"""Concurrency benchmark (not a test): four script clients (gradio_client) and one browser page use the app at
once for a fixed time; every answer is checked against the answer for that client's own file.

The app runs as people run it (`python -m desktop`, no display: served for a browser), on 127.0.0.1. Clients: a photo
classified with ImageNet classes, another with the user's labels, a recording transcribed, a scan read; the page
(headless Chromium) keeps analysing a photo in the Files tab. Reported: requests answered, refused as busy, wrong
(must be 0), latency, the Files tab's analyses, and the server's peak memory (VmHWM), then a burst of 60
transcriptions at once against the queue's limit.

    .venv/bin/python bench/bench_concurrency.py [--seconds 60] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def peak_memory_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def browser_page_load(url: str, photos: list[Path], stop: threading.Event, done: list[float]) -> None:
    from playwright.sync_api import sync_playwright

    from media import CHROMIUM

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page()
        page.set_default_timeout(120_000)
        while not stop.is_set():  # a fresh page each time: the same results twice would not change the page
            page.goto(url)
            page.get_by_role("tab", name="Files").click()
            page.locator("#files-input input[type=file]").set_input_files([str(p) for p in photos])
            page.locator("#files-input").get_by_text(photos[-1].stem).first.wait_for()
            started = time.monotonic()
            page.locator("#files-run").click()
            page.locator("#files-status").get_by_text("files analysed").wait_for()
            done.append(time.monotonic() - started)
        browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--burst", type=int, default=60)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from PIL import Image
    from skimage import data

    from conftest import speak
    from docs import INVOICE, render
    from engine.manifest import ModelBundle
    from engine.runtime import Runtime
    from load import burst, reference_jobs, run_clients

    work = Path(tempfile.mkdtemp(prefix="bench-concurrency-"))
    files = {"photo": work / "cat.jpg", "coffee": work / "coffee.jpg", "scan": work / "invoice_scan.png"}
    page_photos = [work / "rocket.jpg", work / "astronaut.jpg"]
    Image.fromarray(data.chelsea()).save(files["photo"], quality=92)
    Image.fromarray(data.coffee()).save(files["coffee"], quality=92)
    Image.fromarray(data.rocket()).save(page_photos[0], quality=92)
    Image.fromarray(data.astronaut()).save(page_photos[1], quality=92)
    render(INVOICE, seed=3).image.save(files["scan"])
    files["speech"] = speak("Please send the invoice to the accounting team before Friday.", work / "memo.wav")
    jobs = reference_jobs(files, Runtime(ModelBundle(ROOT / "assets" / "models"), device="cpu"))

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(FUSIONDESK_DATA_DIR=str(work / "data"), FUSIONDESK_CONFIG_DIR=str(work / "config"))
    server = subprocess.Popen([sys.executable, "-m", "desktop"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        url = next(line.split(" at ")[1].split()[0] for line in server.stdout if "is running at" in line)
        idle_mb = peak_memory_mb(server.pid)
        stop, page_runs = threading.Event(), []
        page = threading.Thread(target=browser_page_load, args=(url, page_photos, stop, page_runs), daemon=True)
        page.start()
        started = time.monotonic()
        tallies = run_clients(url, jobs, args.seconds)
        stop.set()
        page.join(180)
        elapsed = time.monotonic() - started
        busy = burst(url, jobs[2], args.burst)
        result = {
            "seconds": round(elapsed, 1),
            "clients": {name: {"answered": t.answered, "refused_busy": t.refused, "wrong": len(t.wrong),
                               "latency_median_s": round(float(np.median(t.latencies)), 3) if t.latencies else None,
                               "latency_p90_s": round(float(np.percentile(t.latencies, 90)), 3) if t.latencies else None}
                        for name, t in tallies.items()},
            "browser_files_analyses": len(page_runs),
            "browser_median_s": round(float(np.median(page_runs)), 2) if page_runs else None,
            "burst": {"sent": args.burst, "answered": busy.answered, "refused_busy": busy.refused,
                      "wrong": len(busy.wrong),
                      "slowest_answer_s": round(max(busy.latencies), 1) if busy.latencies else None,
                      "slowest_refusal_s": round(max(busy.refusal_latencies), 1) if busy.refusal_latencies else None},
            "server_memory_mb": {"after_start": round(idle_mb), "peak": round(peak_memory_mb(server.pid))},
            "wrong_examples": [w for t in list(tallies.values()) + [busy] for w in t.wrong][:5],
        }
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 1 if result["wrong_examples"] else 0


if __name__ == "__main__":
    sys.exit(main())
