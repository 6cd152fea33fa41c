"""Several people's scripts using the app at once (gradio_client against the real server and model bundle): every
request is answered with its own file's answer or refused at once as busy; none is lost or mixed with another's."""

from __future__ import annotations

import pytest

from conftest import speak
from load import burst, reference_jobs, run_clients


@pytest.fixture(scope="module")
def jobs(photos, runtime, tmp_path_factory):
    from docs import INVOICE, render

    folder = tmp_path_factory.mktemp("load")
    scan = folder / "invoice_scan.png"
    render(INVOICE, seed=3).image.save(scan)
    speech = speak("Please send the invoice to the accounting team before Friday.", folder / "memo.wav")
    return reference_jobs({"photo": photos["chelsea"], "coffee": photos["coffee"], "speech": speech, "scan": scan},
                          runtime)


def test_four_clients_at_once_each_get_their_own_answers(server, jobs):
    tallies = run_clients(server, jobs, seconds=15)
    for name, tally in tallies.items():
        assert not tally.wrong, (name, tally.wrong[:3])
        assert tally.answered >= 1, f"{name}: no answer in 15 s ({tally})"


def test_more_requests_than_the_queue_holds_are_refused_as_busy(runtime, jobs, monkeypatch):
    """With a queue of 2, twelve transcriptions at once: the ones that fit are answered right, the rest are
    refused at once with gradio's "Queue is full" (never a wrong answer, never a hang)."""
    from desktop import ui

    monkeypatch.setattr(ui, "QUEUE_MAX_SIZE", 2)
    app, url = ui.launch()
    try:
        tally = burst(url, next(job for job in jobs if job.endpoint == "/transcribe"), count=12)
    finally:
        app.close()
    assert not tally.wrong, tally.wrong[:3]
    assert tally.answered >= 2 and tally.refused >= 1, tally
    assert tally.answered + tally.refused == 12
