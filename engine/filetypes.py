"""Which modality a file is: by extension first, by its first bytes when the extension says nothing."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from .errors import InputFileError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
AUDIO_EXTENSIONS = {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3"}
TEXT_EXTENSIONS = {".txt", ".text", ".md", ".markdown", ".csv", ".tsv", ".json", ".log", ".rst", ".html", ".htm"}
MAX_TEXT_BYTES = 5 * 1024 * 1024  # a longer "note" is a data dump, not something to embed in one go

# Magic numbers of the formats we decode, for files with a missing or unknown extension.
_SIGNATURES = [
    (b"\xff\xd8\xff", "image"),
    (b"\x89PNG\r\n\x1a\n", "image"),
    (b"GIF87a", "image"),
    (b"GIF89a", "image"),
    (b"BM", "image"),
    (b"II*\x00", "image"),
    (b"MM\x00*", "image"),
    (b"fLaC", "audio"),
    (b"OggS", "audio"),
    (b"ID3", "audio"),
    (b"\xff\xfb", "audio"),
    (b"\xff\xf3", "audio"),
]


def modality_of(path: Path | str) -> str:
    """'image', 'audio' or 'text'; InputFileError for a file we cannot interpret."""
    path = path if isinstance(path, Path) else Path(path)  # Path(a Path) parses it again: 1 s per 100,000 files
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in AUDIO_EXTENSIONS:
        return "audio"
    if suffix in TEXT_EXTENSIONS:
        return "text"
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise InputFileError(path, f"cannot open the file ({exc.strerror or exc})") from exc
    if not head:
        raise InputFileError(path, "the file is empty")
    for signature, modality in _SIGNATURES:
        if head.startswith(signature):
            return modality
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if _looks_like_text(path):
        return "text"
    raise InputFileError(path, f"unsupported file type{f' ({suffix})' if suffix else ''}: "
                               "expected an image, a recording or a text file")


def _looks_like_text(path: Path) -> bool:
    with open(path, "rb") as handle:
        sample = handle.read(4096)
    if b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(sample) - 4  # a multi-byte character cut by the sample's end is still text
    return True


def read_text_file(path: Path | str) -> str:
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            raise InputFileError(path, "the file is empty")
        if size > MAX_TEXT_BYTES:
            raise InputFileError(path, f"text file too large ({size / 1e6:.1f} MB; the limit is "
                                       f"{MAX_TEXT_BYTES / 1e6:.0f} MB)")
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(path, f"cannot read the file ({exc.strerror or exc})") from exc
    if b"\x00" in data[:4096]:
        raise InputFileError(path, "not a text file (binary content)")
    for encoding in ("utf-8-sig", "utf-16"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        text = data.decode("latin-1")  # every byte sequence decodes: old 8-bit notes still read
    if not text.strip():
        raise InputFileError(path, "the text file has no text in it")
    return text


def require_nonempty_file(path: Path, not_a_file: str = "this is not a file") -> None:
    """The checks every decoder makes first, so that a missing, folder or empty input gets a plain message
    rather than a decoder's own error."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputFileError(path, "the file does not exist") from None
    except OSError as exc:  # a symbolic link loop, a name too long, a folder we may not enter
        raise InputFileError(path, f"cannot open the file ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputFileError(path, not_a_file)
    if info.st_size == 0:
        raise InputFileError(path, "the file is empty (0 bytes)")


def text_name(name: str) -> str:
    """A file name as text that every UTF-8 writer takes (JSON, CSV, SQLite, a terminal). A name whose bytes are
    not valid UTF-8 comes from the system with each bad byte kept as a lone surrogate (Python's surrogateescape:
    b'\\xff' -> '\\udcff'), which those writers refuse; each such byte is written as the four characters \\xNN
    instead (Python's backslashreplace: b'bad\\xff.txt' -> 'bad\\\\xff.txt'). Valid names come back unchanged."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte (not from the file system): \udXXX
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


_ESCAPED_BYTE = re.compile(r"\\x([89a-f][0-9a-f])")  # what text_name writes for a byte that is not UTF-8 (0x80-0xff)


def disk_path(folder: Path, name: str) -> Path:
    """The file that `name`, as `text_name` wrote it, stands for under `folder`: the name itself where such a file
    exists, else the name with each \\xNN turned back into its byte. (A name that really holds the four characters
    \\xNN is valid UTF-8 and was stored as it is; the file on disk decides which one is meant.)"""
    direct = folder / name
    if "\\x" not in name or os.path.lexists(direct):
        return direct
    return folder / _ESCAPED_BYTE.sub(lambda match: chr(0xDC00 + int(match.group(1), 16)), name)
