"""The Debian packages (build/deb.py), installed on this machine the way a person installs them:
`apt-get install ./fusiondesk_*.deb`, then the app started from its menu entry's Exec line, `fusiondesk selftest`
with no network, and the optional language pack added and removed again.

Installing system packages needs root and changes the machine: the test runs where it may (CI runs as root),
installs only what it built, and purges both packages at the end.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, speak
from test_frozen import _app_env, _closed_like_a_person, _window_record, display, frozen_app, offline  # noqa: F401  (fixtures shared with the frozen tests)

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or not shutil.which("dpkg-deb") or not shutil.which("apt-get") or os.geteuid() != 0,
    reason="installs .deb packages: needs Debian's dpkg/apt and root (as in CI)")

OPT = Path("/opt/fusiondesk")
DESKTOP_FILE = Path("/usr/share/applications/fusiondesk.desktop")
APT_ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive")


def _apt(*args: str) -> subprocess.CompletedProcess:
    # The suite runs with no network: every dependency must already be on the machine, which also shows that
    # Depends names only packages build/setup.sh installs. (apt-get's --no-download would say so more directly but
    # breaks installing a local .deb: "Pathname to install is not absolute".)
    return subprocess.run(["apt-get", "-y", "-q", *args], capture_output=True, text=True,
                          env=APT_ENV, timeout=600)


@pytest.fixture(scope="module")
def debs(frozen_app) -> dict[str, Path]:  # noqa: F811
    for old in (ROOT / "dist").glob("fusiondesk*.deb"):
        old.unlink()
    run = subprocess.run([sys.executable, str(ROOT / "build" / "deb.py")], cwd=ROOT, capture_output=True, text=True,
                         timeout=1800)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    print(run.stdout)
    app = next((ROOT / "dist").glob("fusiondesk_*.deb"))
    languages = next((ROOT / "dist").glob("fusiondesk-languages_*_all.deb"))
    return {"app": app, "languages": languages}


@pytest.fixture(scope="module")
def installed(debs):
    if subprocess.run(["dpkg-query", "-W", "fusiondesk"], capture_output=True).returncode == 0:
        pytest.skip("a fusiondesk package is already installed on this machine: not touching it")
    run = _apt("install", str(debs["app"]))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    try:
        yield debs
    finally:
        installed_now = [name for name in ("fusiondesk-languages", "fusiondesk")
                         if subprocess.run(["dpkg-query", "-W", name], capture_output=True).returncode == 0]
        purged = _apt("purge", *installed_now)
    assert purged.returncode == 0, purged.stdout[-2000:] + purged.stderr[-2000:]
    assert not OPT.exists(), "purging the packages left /opt/fusiondesk behind"


def test_package_metadata(debs):
    fields = subprocess.run(["dpkg-deb", "--field", str(debs["app"])], capture_output=True, text=True, check=True).stdout
    depends = dict(line.split(": ", 1) for line in fields.splitlines() if ": " in line)["Depends"]
    for needed in ("gir1.2-webkit2-4.1", "libportaudio2", "gstreamer1.0-plugins-bad", "gstreamer1.0-libav"):
        assert needed in depends, depends
    contents = subprocess.run(["dpkg-deb", "--contents", str(debs["languages"])], capture_output=True, text=True,
                              check=True).stdout
    assert "./opt/fusiondesk/packs/languages/" in contents
    sizes = {name: path.stat().st_size / 1e6 for name, path in debs.items()}
    print(f"download sizes: {sizes}")


def test_installed_app_and_menu_entry(installed, display, tmp_path):  # noqa: F811
    assert os.access(OPT / "FusionDesk", os.X_OK)
    assert Path("/usr/bin/fusiondesk").resolve() == (OPT / "FusionDesk").resolve()
    entry = dict(line.split("=", 1) for line in DESKTOP_FILE.read_text().splitlines() if "=" in line)
    assert entry["Type"] == "Application" and entry["Terminal"] == "false"
    assert Path(f"/usr/share/icons/hicolor/256x256/apps/{entry['Icon']}.png").is_file()
    if shutil.which("desktop-file-validate"):
        check = subprocess.run(["desktop-file-validate", str(DESKTOP_FILE)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    # A double-click in the app menu runs the Exec line: run exactly that, on a virtual screen.
    marker = tmp_path / "shown.jsonl"
    app = subprocess.Popen(shlex.split(entry["Exec"]), env=_app_env(DISPLAY=display, FUSIONDESK_STARTUP_PROBE=str(marker)),
                           stdout=subprocess.DEVNULL, stderr=open(tmp_path / "stderr.txt", "w"), start_new_session=True)
    with _closed_like_a_person(app, marker, tmp_path / "stderr.txt"):
        _window_record(app, marker, tmp_path / "stderr.txt")


def test_selftest_from_opt_offline(installed, offline):  # noqa: F811
    run = subprocess.run([*offline, "/usr/bin/fusiondesk", "selftest"], capture_output=True, text=True, timeout=600,
                         env=_app_env())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def test_language_pack_package_adds_and_removes_translation(installed, offline, tmp_path):  # noqa: F811
    speech = speak("The weather is lovely today and the market opens at nine.", tmp_path / "speech.wav")
    env = _app_env(FUSIONDESK_DATA_DIR=str(tmp_path / "data"))  # no user-installed packs: only what apt put there
    command = [*offline, "/usr/bin/fusiondesk", "transcribe", "--translate", str(speech)]

    before = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert before.returncode != 0
    assert "Languages pack" in before.stderr and "packs install" in before.stderr, before.stderr[-2000:]

    run = _apt("install", str(installed["languages"]))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with_pack = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert with_pack.returncode == 0, with_pack.stderr[-3000:]
    assert "market" in with_pack.stdout.lower() or "weather" in with_pack.stdout.lower(), with_pack.stdout

    run = _apt("remove", "fusiondesk-languages")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert not (OPT / "packs" / "languages").exists()
    after = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert after.returncode != 0 and "Languages pack" in after.stderr, after.stderr[-2000:]
