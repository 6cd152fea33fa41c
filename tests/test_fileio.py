"""Atomic writes: the whole new content or the old file, and the permissions a plain write would give."""

from __future__ import annotations

import os
import stat

import pytest

from engine.fileio import atomic_write_bytes, atomic_write_text


def test_new_file_gets_the_umask_permissions_not_mkstemps_private_ones(tmp_path):
    old = os.umask(0o022)
    try:
        import importlib

        import engine.fileio

        importlib.reload(engine.fileio)  # the module reads the umask once, at import
        path = engine.fileio.atomic_write_text(tmp_path / "results.json", "[]\n")
    finally:
        os.umask(old)
        importlib.reload(engine.fileio)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_text() == "[]\n"


def test_replacing_keeps_the_existing_files_permissions(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("old")
    path.chmod(0o600)
    atomic_write_text(path, "new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "new"


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"keep me")
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]
