"""The local server gives out only what the app made for the person: no path outside gradio's own upload and cache
folders (traversal, absolute paths, the index, other folders), and no fetching of URLs (the app is offline)."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def upload(server: str, path: Path) -> str:
    """A file uploaded the way the page uploads one; -> the server-side path gradio gives back."""
    boundary = "fusiondesk-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{path.name}\"\r\n"
            "Content-Type: text/plain\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(server + "gradio_api/upload", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=20) as response:
        import json

        return json.loads(response.read())[0]


@pytest.fixture
def secrets(tmp_path):
    """Files a person has that the server must never hand out: a key, a document, the app's own index."""
    from engine.index import FolderIndex

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
    (home / "Documents").mkdir()
    (home / "Documents" / "taxes.txt").write_text("my taxes")
    with FolderIndex(home / "Documents") as index:
        database = index.path
    return [home / ".ssh" / "id_ed25519", home / "Documents" / "taxes.txt", database]


def test_only_what_the_app_made_is_served(server, secrets, tmp_path):
    mine = tmp_path / "note.txt"
    mine.write_text("uploaded by the person")
    served = upload(server, mine)
    status, body = fetch(server + "gradio_api/file=" + urllib.parse.quote(served))
    assert (status, body) == (200, b"uploaded by the person")  # the route works: refusals below are real refusals

    uploads = Path(served).parent
    attempts = []
    for secret in secrets + [Path("/etc/passwd")]:
        attempts += [str(secret), str(uploads) + "/" + "../" * len(uploads.parts) + str(secret).lstrip("/")]
    attempts += ["../../../../../../etc/passwd", "~/.ssh/id_ed25519", str(Path.home() / ".bashrc")]
    for route in ("gradio_api/file=", "file="):
        for attempt in attempts:
            for spelled in (attempt, urllib.parse.quote(attempt, safe=""), attempt.replace("/", "%2F")):
                status, body = fetch(server + route + spelled)
                assert status in (403, 404), (route, spelled, status)
                assert b"PRIVATE KEY" not in body and b"my taxes" not in body and b"root:" not in body


@pytest.mark.parametrize("url", ["https://example.com/cat.jpg", "http://example.com/", "HTTPS://example.com/x",
                                 "//example.com/x", "ftp://example.com/x"])
def test_the_server_never_fetches_a_url(server, url):
    for route in ("gradio_api/file=", "file="):
        status, body = fetch(server + route + url)
        assert status == 403
        assert b"never fetches from the network" in body  # refused by the app, before gradio's URL fetcher
