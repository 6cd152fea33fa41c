"""Writes that never leave a half-written file behind: write to a temp file beside it, fsync, rename. And what
to tell a person when the app's own output cannot be written (a full disk, a read-only place): `storage_error`."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from .errors import StorageError


def _read_umask() -> int:
    umask = os.umask(0)  # the only portable way to read it is to set it; done once, at import (one thread)
    os.umask(umask)
    return umask


_UMASK = _read_umask()


def _mode_for(path: Path) -> int:
    """The replaced file's permissions, or what a plain open() would give a new file (0666 less the umask):
    mkstemp's private 0600 would silently change who can read the user's results."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_UMASK


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_for(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # POSIX; on Windows the temp file already has the usual permissions
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: Path | str, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def link_or_copy(source: Path | str, target: Path | str) -> None:
    """A hard link where the file system allows (a copy of hundreds of MB of model files for nothing otherwise),
    a copy with its times where it does not (another file system, or one without hard links)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


# ------------------------------------------------------------------------------------- writes that fail

FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
DENIED_ERRNOS = {errno.EACCES, errno.EPERM}
FULL_ADVICE = "free some space, then run it again: what was finished is kept"


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        count /= 1024
        if count < 1024 or unit == "TiB":
            return f"{count:.1f} {unit}" if count < 10 else f"{count:.0f} {unit}"
    raise AssertionError("unreachable")


def _existing(path: Path) -> Path:
    """The path itself or its nearest folder that exists (what disk_usage and statvfs can look at)."""
    path = Path(path).absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def free_space(path: Path | str) -> str:
    """'12 KiB free of 1.0 MiB': the free space of the file system that holds (or would hold) `path`."""
    try:
        usage = shutil.disk_usage(_existing(Path(path)))
    except OSError:
        return "free space unknown"
    return f"{_size(usage.free)} free of {_size(usage.total)}"


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(_existing(path)).f_flag & getattr(os, "ST_RDONLY", 1))
    except (OSError, AttributeError):  # no statvfs (Windows)
        return False


def storage_error(exc: BaseException, path: Path | str, elsewhere: str) -> BaseException:
    """`exc` (an OSError, or an sqlite3 error) as a StorageError naming `path` and the problem in words, when it
    is a problem of the place being written (full, read-only, not writable, a size limit); else `exc` itself.

    elsewhere: what to do when the place cannot be written at all ("choose another --out")."""
    path = Path(path)
    kind = _kind(exc, path)
    if kind is None:
        return exc
    if kind == "full":
        return StorageError(path, f"no space left on the disk ({free_space(path)})", FULL_ADVICE)
    if kind == "too large":
        return StorageError(path, f"the file is too large for its file system or a size limit ({free_space(path)})",
                            elsewhere)
    if kind == "read-only" or _read_only(path):
        return StorageError(path, "cannot write there: it is on a read-only file system", elsewhere)
    return StorageError(path, "cannot write there: permission denied", elsewhere)


def _kind(exc: BaseException, path: Path) -> str | None:
    if isinstance(exc, OSError):
        if exc.errno in FULL_ERRNOS:
            return "full"
        if exc.errno == errno.EFBIG:
            return "too large"
        if exc.errno == errno.EROFS:
            return "read-only"
        if exc.errno in DENIED_ERRNOS:
            return "denied"
        return None
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name.startswith("SQLITE_FULL"):
            return "full"
        if name.startswith("SQLITE_READONLY"):
            return "read-only" if _read_only(path) else "denied"
        if name.startswith("SQLITE_CANTOPEN") or name.startswith("SQLITE_IOERR"):
            # SQLite says "unable to open" or "disk I/O error" for a folder it may not write and for a full disk
            if _read_only(path):
                return "read-only"
            try:
                if shutil.disk_usage(_existing(path)).free < 64 * 1024:
                    return "full"
            except OSError:
                pass
            folder = _existing(path.parent)
            if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
                return "denied"
        return None
    return None
