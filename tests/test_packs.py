"""The core bundle and the Languages pack (engine.packs): the real bundle cut in two, the real CLI run on the core
alone, with the pack installed from its file, and after removing it; damaged and foreign pack files refused with
the file and the problem named, leaving an installed pack as it was."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import BUNDLE, ROOT, speak

PACK_MODELS = {"whisper-base", "translate-en-pt", "translate-pt-en"}
PACK_HINT = "needs the Languages pack (FusionDesk-languages.pack), which is not installed"
INSTALL_HINT = "fusiondesk packs install FusionDesk-languages.pack"
CLI_TIMEOUT = 300


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> dict[str, Path]:
    """The real bundle cut once for the module: a core folder (hard links) and the pack file."""
    from engine.packs import split_bundle

    root = tmp_path_factory.mktemp("split")
    manifest_path, pack_file = split_bundle(BUNDLE, root / "core", root / "FusionDesk-languages.pack")
    return {"core": manifest_path.parent, "pack": pack_file, "root": root}


@pytest.fixture(scope="module")
def english_recording(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("packs-speech")
    return speak("The museum is closed on Mondays, but the garden is open every day.", folder / "museum.wav")


def cli(*args: str, models: Path, data: Path, timeout: int = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    env = {**os.environ, "FUSIONDESK_MODELS": str(models), "FUSIONDESK_DATA_DIR": str(data)}
    return subprocess.run([sys.executable, "-m", "desktop.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under a folder with its size and change time: equal trees were not touched."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_split_gives_the_core_manifest_and_a_verified_pack_file(split):
    full = json.loads((BUNDLE / "manifest.json").read_text(encoding="utf-8"))
    core = json.loads((split["core"] / "manifest.json").read_text(encoding="utf-8"))
    assert core["bundle_version"] == full["bundle_version"]
    assert {m["id"] for m in core["models"]} == {m["id"] for m in full["models"]} - PACK_MODELS
    assert not any((split["core"] / model_id).exists() for model_id in PACK_MODELS)
    with zipfile.ZipFile(split["pack"]) as archive:
        meta = json.loads(archive.read("pack.json"))
        assert meta["name"] == "languages" and meta["format"] == 1
        assert meta["bundle_version"] == full["bundle_version"]
        assert {m["id"] for m in meta["models"]} == PACK_MODELS
        expected = {item["path"] for m in meta["models"] for item in m["files"].values()}
        assert set(archive.namelist()) == expected | {"pack.json"}
        assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in archive.infolist())
    core_bytes = sum(item["bytes"] for m in core["models"] for item in m["files"].values())
    print(f"core models {core_bytes / 1e6:.1f} MB, pack file {split['pack'].stat().st_size / 1e6:.1f} MB")


def test_core_only_says_which_pack_is_missing_then_install_use_remove(split, english_recording, tmp_path):
    data = tmp_path / "data"
    core = split["core"]
    run = cli("transcribe", "--translate", str(english_recording), models=core, data=data)
    assert run.returncode != 0
    assert PACK_HINT in run.stderr and INSTALL_HINT in run.stderr and "Models & settings" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr

    run = cli("translate", "O gato dorme.", "--to", "en", models=core, data=data)
    assert run.returncode != 0 and "translation is not installed" in run.stderr and PACK_HINT in run.stderr

    run = cli("models", models=core, data=data)
    assert run.returncode == 0, run.stderr
    assert re.search(r"whisper-base +in the Languages pack, not installed", run.stdout), run.stdout

    run = cli("packs", "list", models=core, data=data)
    assert run.returncode == 0 and "not installed" in run.stdout and INSTALL_HINT in run.stdout

    run = cli("packs", "install", str(split["pack"]), models=core, data=data)
    assert run.returncode == 0, run.stderr
    installed = data / "packs" / "languages"
    assert "installed the Languages pack" in run.stdout and str(installed) in run.stdout
    assert sorted(p.name for p in (data / "packs").iterdir()) == ["languages"]  # no staging folder left behind

    run = cli("packs", "list", "--json", models=core, data=data)
    (row,) = [r for r in json.loads(run.stdout) if r["name"] == "languages"]
    assert row["state"] == "ok" and row["where"] == str(installed) and row["bytes"] > 100e6

    with_pack = cli("transcribe", "--translate", "--json", str(english_recording), models=core, data=data)
    assert with_pack.returncode == 0, with_pack.stderr
    full = cli("transcribe", "--translate", "--json", str(english_recording), models=BUNDLE, data=tmp_path / "other")
    assert full.returncode == 0, full.stderr
    (heard,), (reference,) = json.loads(with_pack.stdout), json.loads(full.stdout)
    assert heard["model"] == "whisper-base" and heard["text"] == reference["text"]
    assert "museum" in heard["text"].lower()

    run = cli("packs", "remove", "languages", models=core, data=data)
    assert run.returncode == 0 and not installed.exists(), run.stderr
    run = cli("transcribe", "--translate", str(english_recording), models=core, data=data)
    assert run.returncode != 0 and PACK_HINT in run.stderr
    run = cli("packs", "remove", "languages", models=core, data=data)
    assert run.returncode != 0 and "not installed" in run.stderr


def _rewrite_pack(source: Path, target: Path, change_meta=None, change_member=None, extra=()) -> Path:
    """A copy of a pack file with its pack.json or one member changed (real data, a valid zip; members stored, which
    a pack may be, so that the copy takes a second rather than a deflate of 200 MB)."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "pack.json" and change_meta:
                data = json.dumps(change_meta(json.loads(data))).encode()
            elif change_member and change_member[0] == info.filename:
                data = change_member[1](data)
            out.writestr(zipfile.ZipInfo(info.filename, info.date_time), data)
        for name, data in extra:
            out.writestr(name, data)
    return target


def _flip_byte_in_place(pack: Path, member: str) -> None:
    """One byte flipped in the middle of a member's (deflated) data, as a bad disk or download would."""
    with zipfile.ZipFile(pack) as archive:
        info = archive.getinfo(member)
    with open(pack, "r+b") as handle:
        handle.seek(info.header_offset + 26)
        name_length, extra_length = (int.from_bytes(handle.read(2), "little") for _ in range(2))
        at = info.header_offset + 30 + name_length + extra_length + info.compress_size // 2
        handle.seek(at)
        byte = handle.read(1)
        handle.seek(at)
        handle.write(bytes([byte[0] ^ 0x40]))


def test_bad_pack_files_are_refused_and_the_installed_pack_stays(split, tmp_path):
    data = tmp_path / "data"
    core = split["core"]
    run = cli("packs", "install", str(split["pack"]), models=core, data=data)
    assert run.returncode == 0, run.stderr
    installed = data / "packs" / "languages"
    before = tree(installed)
    with zipfile.ZipFile(split["pack"]) as archive:
        big_member = max(archive.infolist(), key=lambda info: info.file_size).filename
        small_member = next(i.filename for i in archive.infolist() if i.filename.endswith("tokenizer.json"))

    truncated = tmp_path / "truncated.pack"
    with open(split["pack"], "rb") as src:
        truncated.write_bytes(src.read(split["pack"].stat().st_size // 2))
    flipped = tmp_path / "flipped.pack"
    shutil.copyfile(split["pack"], flipped)
    _flip_byte_in_place(flipped, big_member)
    resigned = _rewrite_pack(split["pack"], tmp_path / "resigned.pack",
                             change_member=(small_member, lambda b: b.replace(b"<", b">", 1)))
    other_version = _rewrite_pack(split["pack"], tmp_path / "other-version.pack",
                                  change_meta=lambda m: {**m, "bundle_version": "0123456789ab"})
    not_a_pack = tmp_path / "photos.zip"
    with zipfile.ZipFile(not_a_pack, "w") as archive:
        archive.writestr("cat.txt", "not a pack")
    not_a_zip = tmp_path / "notes.pack"
    not_a_zip.write_text("hello")
    escaping = _rewrite_pack(split["pack"], tmp_path / "escaping.pack", extra=[("../../evil.txt", b"x")])

    def escape_in_manifest(meta):
        meta["models"][0]["files"]["tokenizer"]["path"] = "../../evil.json"
        return meta

    escaping_manifest = _rewrite_pack(split["pack"], tmp_path / "escaping-manifest.pack", change_meta=escape_in_manifest)

    version = json.loads((core / "manifest.json").read_text())["bundle_version"]
    cases = {
        truncated: "is truncated or damaged",
        flipped: f"is corrupt or truncated: {big_member}",
        resigned: f"is corrupt: {small_member}",
        other_version: f"for model bundle version 0123456789ab; this app's bundle is version {version}",
        not_a_pack: "is not a FusionDesk pack (a zip archive without pack.json)",
        not_a_zip: "is not a FusionDesk pack (not a zip archive)",
        escaping: "holds the member '../../evil.txt', whose path would write outside the pack folder",
        escaping_manifest: "pack.json lists the file '../../evil.json' (model whisper-base), whose path would write "
                           "outside the pack folder",
    }
    for bad, problem in cases.items():
        run = cli("packs", "install", str(bad), models=core, data=data)
        assert run.returncode != 0, bad
        assert f"fusiondesk: error: {bad}: " in run.stderr and problem in run.stderr, (bad, run.stderr)
        assert "Traceback" not in run.stderr
        assert tree(installed) == before, f"{bad.name} changed the installed pack"
        assert sorted(p.name for p in (data / "packs").iterdir()) == ["languages"], bad
    assert not [p for p in tmp_path.rglob("evil.*")], "a pack wrote outside its folder"

    # Installing the good file again replaces the copy (a new folder), and the pack still works.
    run = cli("packs", "install", str(split["pack"]), models=core, data=data)
    assert run.returncode == 0, run.stderr
    assert set(tree(installed)) == set(before) and tree(installed) != before
    assert sorted(p.name for p in (data / "packs").iterdir()) == ["languages"]


def test_packs_found_in_both_places_and_for_another_version(split, tmp_path):
    from engine.errors import PackError, PackNotInstalled
    from engine.manifest import ModelBundle
    from engine.packs import install_pack, pack_rows, remove_pack

    core = split["core"]
    version = ModelBundle(core, packs=False).bundle_version
    beside_app, user = tmp_path / "app" / "packs", tmp_path / "user" / "packs"
    install_pack(split["pack"], version, beside_app)  # as the system package would put it beside the app
    dirs = [("user", user), ("app", beside_app)]

    bundle = ModelBundle(core, search_dirs=dirs)
    assert PACK_MODELS <= set(bundle.models)
    assert bundle.root_of("whisper-base") == beside_app / "languages"
    assert bundle.path("translate-en-pt", "tokenizer").is_file()  # sha256-checked from the pack folder
    with pytest.raises(PackError, match="came with the app and is read-only"):
        remove_pack("languages", packs_dir=user, search_dirs=dirs)

    # A pack for another bundle version is left out, and the message says why.
    (beside_app / "languages" / "pack.json").write_text(json.dumps(
        {**json.loads((beside_app / "languages" / "pack.json").read_text()), "bundle_version": "0123456789ab"}))
    bundle = ModelBundle(core, search_dirs=dirs)
    assert not PACK_MODELS & set(bundle.models)
    with pytest.raises(PackNotInstalled) as caught:
        bundle.entry("whisper-base")
    assert PACK_HINT in str(caught.value) and "0123456789ab" in str(caught.value) and version in str(caught.value)
    (row,) = [r for r in pack_rows(bundle) if r["where"] == str(beside_app / "languages")]
    assert row["state"].startswith("for another version") and row["place"] == "app"

    # The full bundle keeps its own copies: an installed pack adds nothing.
    install_pack(split["pack"], version, user)
    full = ModelBundle(BUNDLE, search_dirs=dirs)
    assert full.root_of("whisper-base") == BUNDLE and not full.model_packs


def test_selftest_passes_on_the_core_alone_and_reports_the_pack(split, tmp_path):
    run = cli("selftest", models=split["core"], data=tmp_path / "data")
    assert run.returncode == 0, run.stdout + run.stderr
    assert " 0 failed" in run.stdout
    assert "pack languages: not installed (fusiondesk packs install FusionDesk-languages.pack)" in run.stdout
    assert "whisper-base" not in run.stdout and "translate-" not in run.stdout


def test_models_tab_installs_lists_and_removes_the_pack(split, tmp_path, monkeypatch):
    import gradio as gr

    from desktop.ui import (build_app, install_pack_file, models_table, packs_table, refresh_translation_choice,
                            remove_pack_named)
    from engine.manifest import ModelBundle
    from engine.runtime import Runtime, get_runtime, set_runtime

    monkeypatch.setenv("FUSIONDESK_DATA_DIR", str(tmp_path / "data"))
    before = get_runtime()
    set_runtime(Runtime(ModelBundle(split["core"]), device="cpu"))
    try:
        build_app()  # the page builds on the core alone (translation choices off, the Packs section there)
        assert ["whisper-base", "", "", "", "", "in the Languages pack, not installed", ""] in models_table()
        assert packs_table()[0][:4] == ["languages", "Languages", "-", "not installed"]
        assert refresh_translation_choice().interactive is False
        not_a_zip = tmp_path / "notes.pack"
        not_a_zip.write_text("hello")
        with pytest.raises(gr.Error, match=f"{re.escape(str(not_a_zip))}: is not a FusionDesk pack"):
            install_pack_file(str(not_a_zip))

        status, table, removable, models = install_pack_file(str(split["pack"]))
        assert "Installed the **Languages** pack" in status
        assert table[0][3] == "ok" and removable.value == "languages"
        assert "whisper-base" in get_runtime().bundle and not any("not installed" in row[5] for row in models)
        offered = refresh_translation_choice()  # what the Live and Files tabs show at the next page load
        assert offered.interactive is True and [value for _, value in offered.choices] == ["none", "en", "pt"]

        status, table, removable, models = remove_pack_named("languages")
        assert "Removed the languages pack" in status and table[0][3] == "not installed" and removable.value is None
        assert "whisper-base" not in get_runtime().bundle
    finally:
        set_runtime(before)
