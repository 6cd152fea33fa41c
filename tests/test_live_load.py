"""Live under load: webcam frames are dropped, never queued, and the stream never waits behind a Files analysis.

The app is served as launch() serves it, with the real model bundle, and driven the way its page drives it
(Gradio's queue protocol over HTTP: join, then POST /stream/{event_id} for every newer frame, the messages read
from the session's event stream). Real photos are the frames. The handlers are the app's own, each wrapped to
record which frame it got and, where a test needs the server busy, to hold until the test lets it go: no timing
is asserted, only which frames were labelled and which were not.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import threading
import time

import numpy as np
import pytest

WAIT_S = 60  # only a bound on how long a broken app can hang a test; the checks never depend on speed


def data_url(photo: np.ndarray) -> dict:
    """A frame as the page's webcam sends it: a JPEG data URL."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG", quality=90)
    return {"url": "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()}


@pytest.fixture(scope="module")
def frames() -> dict[str, np.ndarray]:
    """scikit-image photographs; each has its own size, which tells the frames apart in the handler."""
    from skimage import data

    photos = {"chelsea": data.chelsea(), "astronaut": data.astronaut(), "rocket": data.rocket(),
              "coffee": data.coffee()}
    assert len({p.shape[:2] for p in photos.values()}) == len(photos)
    return photos


class Gate:
    """Records a handler's calls; while closed, a call waits inside the handler (the server is busy)."""

    def __init__(self):
        self.calls: list = []
        self.started = threading.Semaphore(0)
        self.open = threading.Event()
        self.open.set()
        self.lock = threading.Lock()

    def wrap(self, handler, describe):
        @functools.wraps(handler)  # Gradio reads the handler's signature (inputs, the Progress argument)
        def gated(*args, **kwargs):
            with self.lock:
                self.calls.append(describe(*args))
            self.started.release()
            if not self.open.wait(WAIT_S):
                raise TimeoutError("the test never opened the gate")
            return handler(*args, **kwargs)

        return gated

    def wait_started(self) -> None:
        assert self.started.acquire(timeout=WAIT_S), "the handler was never called"


@pytest.fixture(scope="module")
def live(runtime, frames):
    import desktop.ui as ui

    shapes = {photo.shape[:2]: name for name, photo in frames.items()}
    camera, files = Gate(), Gate()
    real_classify, real_analyse = ui.classify_frame, ui.analyse_files
    ui.classify_frame = camera.wrap(real_classify, lambda frame, *rest: shapes.get(np.asarray(frame).shape[:2]))
    ui.analyse_files = files.wrap(real_analyse, lambda paths, *rest: len(paths or []))
    try:
        app, url = ui.launch()  # the page is built with the wrapped handlers
    finally:
        ui.classify_frame, ui.analyse_files = real_classify, real_analyse
    index = {fn.fn.__wrapped__: i for i, fn in app.fns.items() if hasattr(fn.fn, "__wrapped__")}
    yield {"url": url, "camera": camera, "files": files, "classify": index[real_classify],
           "analyse": index[real_analyse]}
    camera.open.set()
    files.open.set()
    app.close()


class PageSession:
    """One browser page's session: queue joins, stream posts, and the messages its event stream delivers."""

    def __init__(self, url: str, session_hash: str):
        import httpx

        self.url, self.session_hash = url + "gradio_api/", session_hash
        self.http = httpx.Client(timeout=WAIT_S)
        self.messages: list[dict] = []
        self.changed = threading.Condition()
        self.reader: threading.Thread | None = None

    def _read(self) -> None:
        with self.http.stream("GET", self.url + "queue/data", params={"session_hash": self.session_hash}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    with self.changed:
                        self.messages.append(json.loads(line[5:]))
                        self.changed.notify_all()

    def join(self, fn_index: int, data: list) -> str:
        reply = self.http.post(self.url + "queue/join", json={
            "data": data, "event_data": None, "fn_index": fn_index, "trigger_id": None,
            "session_hash": self.session_hash})
        reply.raise_for_status()
        if self.reader is None or not self.reader.is_alive():
            self.reader = threading.Thread(target=self._read, daemon=True)
            self.reader.start()
        return reply.json()["event_id"]

    def send_frame(self, event_id: str, fn_index: int, data: list) -> None:
        """What the page does for every newer webcam frame (it does not wait for the labels)."""
        reply = self.http.post(self.url + f"stream/{event_id}", json={
            "data": data, "event_data": None, "fn_index": fn_index, "session_hash": self.session_hash})
        reply.raise_for_status()

    def close_stream(self, event_id: str) -> None:
        self.http.post(self.url + f"stream/{event_id}/close")

    def outputs(self, event_id: str, kinds=("process_streaming", "process_completed")) -> list[dict]:
        with self.changed:
            return [m for m in self.messages if m.get("event_id") == event_id and m.get("msg") in kinds]

    def wait_for(self, condition, what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        with self.changed:
            while not condition():
                left = deadline - time.monotonic()
                assert left > 0, f"timed out waiting for {what}; messages: {[m.get('msg') for m in self.messages]}"
                self.changed.wait(min(left, 0.5))

    def upload(self, path) -> dict:
        with open(path, "rb") as handle:
            reply = self.http.post(self.url + "upload", files=[("files", (path.name, handle, "image/jpeg"))])
        reply.raise_for_status()
        return {"path": reply.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def camera_inputs(frame: np.ndarray) -> list:
    # camera, labels, labels shown, state (kept by the server), boxes, background, taught head: as the page sends
    return [data_url(frame), "", 5, None, False, "keep", ""]


def labels_shown(message: dict) -> str:
    """The labels a streamed message puts in "What the camera sees", as one lower-case string."""
    label = message["output"]["data"][0]
    return " | ".join(item["label"] for item in label.get("confidences", [])).lower() if isinstance(label, dict) else ""


CAT, COFFEE = ("cat", "tabby"), ("espresso", "cup")  # what the classifier says of chelsea and of coffee


def shows(message: dict, words) -> bool:
    return any(word in labels_shown(message) for word in words)


def test_frames_that_arrive_while_a_frame_is_labelled_are_dropped_and_the_newest_is_labelled(live, frames):
    camera = live["camera"]
    camera.calls.clear()
    camera.open.clear()  # the first frame's labelling takes as long as the test wants: the server is busy
    page = PageSession(live["url"], "live-drop")
    event = page.join(live["classify"], camera_inputs(frames["chelsea"]))
    camera.wait_started()
    for name in ("astronaut", "rocket", "coffee"):  # the camera goes on sending while the server is busy
        page.send_frame(event, live["classify"], camera_inputs(frames[name]))
    camera.open.set()
    page.wait_for(lambda: len(page.outputs(event)) >= 2, "labels for two frames")
    page.close_stream(event)

    # Only the frame being labelled and then the newest one were labelled: the two frames in between were
    # dropped, never queued (a queue would have labelled astronaut and rocket next, the labels lagging behind).
    assert camera.calls[:2] == ["chelsea", "coffee"], camera.calls
    assert "astronaut" not in camera.calls and "rocket" not in camera.calls, camera.calls
    first, second = page.outputs(event)[:2]
    assert shows(first, CAT), labels_shown(first)
    assert shows(second, COFFEE) and not shows(second, CAT), labels_shown(second)  # the newest frame's labels


def test_the_camera_is_labelled_while_files_analyses_fill_every_slot(live, frames, photos):
    camera, files = live["camera"], live["files"]
    camera.calls.clear()
    files.calls.clear()
    files.open.clear()  # every Files analysis stays busy until the test is done with the camera
    page = PageSession(live["url"], "live-with-files")
    analysis = [page.upload(photos["coffee"])], "", "en", False, [], "none"
    analyses = [page.join(live["analyse"], list(analysis)) for _ in range(3)]  # two run (the limit), one waits
    files.wait_started()
    files.wait_started()
    try:
        stream = page.join(live["classify"], camera_inputs(frames["chelsea"]))
        page.wait_for(lambda: len(page.outputs(stream)) >= 1, "the first frame's labels")
        page.send_frame(stream, live["classify"], camera_inputs(frames["coffee"]))
        page.wait_for(lambda: len(page.outputs(stream)) >= 2, "the second frame's labels")
        # Both frames were labelled while the Files analyses held all of their slots: the camera stream has
        # its own, and did not wait behind them.
        assert len(files.calls) == 2 and not any(page.outputs(a, ("process_completed",)) for a in analyses)
        assert camera.calls[:2] == ["chelsea", "coffee"], camera.calls
        assert shows(page.outputs(stream)[0], CAT) and shows(page.outputs(stream)[1], COFFEE)
        page.close_stream(stream)
    finally:
        files.open.set()
    page.wait_for(lambda: all(page.outputs(a, ("process_completed",)) for a in analyses), "the Files analyses")
    for event in analyses:
        (done,) = page.outputs(event, ("process_completed",))
        assert done["success"], done
        assert "1 of 1 files analysed" in done["output"]["data"][3]
