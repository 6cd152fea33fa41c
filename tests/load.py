"""Several script clients (gradio_client) using the app's API at once, each checking that every answer it gets is
the answer for its own file. Shared by tests/test_concurrency.py and bench/bench_concurrency.py."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUSY = "Queue is full"  # what gradio_client raises when the app's queue refuses a request
_counting = threading.Lock()  # a burst's threads share one tally


@dataclass
class Job:
    """One kind of request a client repeats: the endpoint, its arguments, and the answer it must get."""

    name: str
    endpoint: str
    file: Path
    args: tuple
    expected: Any


@dataclass
class Tally:
    answered: int = 0
    refused: int = 0  # the queue was full: a clear "busy", not an error
    wrong: list[str] = field(default_factory=list)  # answers for another request, or errors
    latencies: list[float] = field(default_factory=list)
    refusal_latencies: list[float] = field(default_factory=list)


def by_name(records: list[dict]) -> list[dict]:
    """The API gives the uploaded copy's path; compare by file name."""
    return [dict(record, file=str(record["file"]).rsplit("/", 1)[-1]) for record in records]


def reference_jobs(files: dict[str, Path], runtime) -> list[Job]:
    """The answers the engine gives each file directly, computed once before the clients start."""
    from engine.tasks import classify_files, read_files, transcribe_files

    labels = ["a cat", "a cup of coffee", "a rocket"]
    return [
        Job("classify photo", "/classify", files["photo"], ("", 5), by_name(classify_files([files["photo"]], top_k=5,
                                                                                          runtime=runtime))),
        Job("classify with labels", "/classify", files["coffee"], (", ".join(labels), 3),
            by_name(classify_files([files["coffee"]], labels=labels, top_k=3, runtime=runtime))),
        Job("transcribe", "/transcribe", files["speech"], ("en",), by_name(transcribe_files([files["speech"]],
                                                                                          runtime=runtime)[0])),
        Job("read scan", "/read", files["scan"], (), by_name(read_files([files["scan"]], runtime=runtime))),
    ]


def call(client, job: Job, tally: Tally) -> None:
    from gradio_client import handle_file

    started = time.monotonic()
    try:
        got = client.predict([handle_file(str(job.file))], *job.args, api_name=job.endpoint)
    except Exception as exc:
        with _counting:
            if BUSY in str(exc):
                tally.refused += 1
                tally.refusal_latencies.append(time.monotonic() - started)
            else:
                tally.wrong.append(f"{job.name}: {type(exc).__name__}: {exc}")
        return
    with _counting:
        if by_name(got) != job.expected:
            tally.wrong.append(f"{job.name}: got an answer for another request: {str(got)[:300]}")
        else:
            tally.answered += 1
            tally.latencies.append(time.monotonic() - started)


def run_clients(url: str, jobs: list[Job], seconds: float) -> dict[str, Tally]:
    """One client per job, each repeating its request for `seconds`; -> each client's tally."""
    from gradio_client import Client

    tallies = {job.name: Tally() for job in jobs}
    deadline = time.monotonic() + seconds

    def client_loop(job: Job) -> None:
        client = Client(url, analytics_enabled=False, verbose=False)
        while time.monotonic() < deadline:
            call(client, job, tallies[job.name])

    threads = [threading.Thread(target=client_loop, args=(job,), daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 120)
    return tallies


def burst(url: str, job: Job, count: int) -> Tally:
    """`count` requests sent at once (more than the queue holds): each answered right or refused as busy."""
    from gradio_client import Client

    tally = Tally()
    threads = []
    for _ in range(count):  # clients connect first (each fetches the app's config), then all send at once
        # gradio_client gives up on an upload after 20 s; with dozens of uploads arriving at once on a busy 2-core
        # machine the server can take longer to take them in: the clients wait, and the tally shows how long.
        client = Client(url, analytics_enabled=False, verbose=False, httpx_kwargs={"timeout": 120})
        threads.append(threading.Thread(target=call, args=(client, job, tally), daemon=True))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    return tally
