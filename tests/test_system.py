"""Handing a file to the operating system (desktop.system): the command per platform, and plain errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop.system import FILE_MANAGER_SHOW_ITEMS, open_commands, reveal_file, reveal_commands
from engine.errors import FusionDeskError


def test_each_platform_gets_its_own_file_manager_command():
    path = Path("/home/me/My Photos/cat 1.jpg")
    assert reveal_commands(path, "darwin") == [["open", "-R", str(path)]]
    assert reveal_commands(path, "win32") == [["explorer", f"/select,{path}"]]
    linux = reveal_commands(path, "linux")
    assert linux[0] == FILE_MANAGER_SHOW_ITEMS + ["array:string:file:///home/me/My%20Photos/cat%201.jpg", "string:"]
    assert linux[1] == ["xdg-open", "/home/me/My Photos"]  # no FileManager1 service: the folder itself
    assert open_commands(path, "linux") == [["xdg-open", str(path)]]


def test_a_moved_file_and_a_missing_file_manager_are_said_plainly(tmp_path, monkeypatch):
    with pytest.raises(FusionDeskError, match="no longer there"):
        reveal_file(tmp_path / "gone.jpg")
    photo = tmp_path / "cat.jpg"
    photo.write_bytes(b"x")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(FusionDeskError, match="dbus-send is not installed; xdg-open is not installed"):
        reveal_file(photo)
