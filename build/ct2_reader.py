"""Read CTranslate2's `model.bin` (binary format version 6) into numpy arrays.

The layout mirrors `ctranslate2/specs/model_spec.py` (`ModelSpec._serialize`), all little-endian:

    uint32 binary_version, string spec_name, uint32 spec_revision,
    uint32 n_variables, then per variable:
        string name, uint8 rank, uint32 dims[rank], uint8 dtype_id, uint32 n_bytes, bytes
    uint32 n_aliases, then per alias: string alias, string target

where `string` is `uint16 length (incl. the NUL), utf-8 bytes, NUL`. Reading it ourselves keeps the
conversion independent of ctranslate2's native library; ctranslate2 itself only serves as the reference.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

SUPPORTED_VERSIONS = (6,)
# Order of CTranslate2's DataType enum (include/ctranslate2/types.h); bfloat16 is read as raw uint16 bits.
DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


@dataclass
class CT2Model:
    spec_name: str
    spec_revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        """A variable by name, following aliases (CTranslate2 stores duplicated weights once)."""
        seen = set()
        while name in self.aliases and name not in self.variables:
            if name in seen:
                raise ValueError(f"alias cycle at {name!r}")
            seen.add(name)
            name = self.aliases[name]
        return self.variables[name]

    def names(self) -> list[str]:
        return sorted(set(self.variables) | set(self.aliases))

    def __contains__(self, name: str) -> bool:
        return name in self.variables or name in self.aliases


def _read_exact(handle: BinaryIO, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise ValueError(f"model.bin is truncated: wanted {size} bytes, got {len(data)}")
    return data


def _read(handle: BinaryIO, fmt: str):
    return struct.unpack("<" + fmt, _read_exact(handle, struct.calcsize("<" + fmt)))[0]


def _read_string(handle: BinaryIO) -> str:
    length = _read(handle, "H")
    raw = _read_exact(handle, length)
    return raw[:-1].decode("utf-8")  # drop the trailing NUL


def _to_float32(array: np.ndarray, dtype_name: str) -> np.ndarray:
    if dtype_name == "float16":
        return array.astype(np.float32)
    if dtype_name == "bfloat16":
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array


def read_model(path: Path | str, float32: bool = True) -> CT2Model:
    """Parse a model.bin; with `float32` set, float16/bfloat16 weights are widened to float32."""
    with open(path, "rb") as handle:
        version = _read(handle, "I")
        if version not in SUPPORTED_VERSIONS:
            raise ValueError(f"{path}: CTranslate2 binary version {version}, this reader knows {SUPPORTED_VERSIONS}")
        spec_name = _read_string(handle)
        revision = _read(handle, "I")
        variables: dict[str, np.ndarray] = {}
        for _ in range(_read(handle, "I")):
            name = _read_string(handle)
            rank = _read(handle, "B")
            shape = tuple(_read(handle, "I") for _ in range(rank))
            dtype_name = DTYPES[_read(handle, "B")]
            n_bytes = _read(handle, "I")
            storage = np.uint16 if dtype_name == "bfloat16" else np.dtype(dtype_name)
            array = np.frombuffer(_read_exact(handle, n_bytes), dtype=storage).reshape(shape)
            variables[name] = _to_float32(array, dtype_name) if float32 else array.copy()
        aliases = {}
        for _ in range(_read(handle, "I")):
            alias = _read_string(handle)
            aliases[alias] = _read_string(handle)
        if handle.read(1):
            raise ValueError(f"{path}: unexpected bytes after the alias table")
    return CT2Model(spec_name=spec_name, spec_revision=revision, variables=variables, aliases=aliases)
