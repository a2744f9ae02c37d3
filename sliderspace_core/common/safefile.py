"""Safe files: safetensors written atomically, headers checked before loading, file names sanitised.

Nothing here unpickles: pickles and zip checkpoints are recognised by their first bytes and refused.
"""

from __future__ import annotations

import json
import os
import re
import struct
import tempfile
from collections.abc import Mapping

import torch

from .errors import InputError

SUFFIX = ".safetensors"
MAX_HEADER = 100 * 1024 * 1024
CUT_SHORT = "save the file again; it was cut short."


def write_safetensors(tensors: Mapping[str, torch.Tensor], path: str, metadata: Mapping[str, str],
                      overwrite: bool = False, input_name: str = "file") -> None:
    """Write a safetensors file atomically: a temp file in the same folder, then ``os.replace``.

    On any failure no file is left behind (neither the temp file nor a partial ``path``).
    """
    from safetensors.torch import save_file

    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    if not os.path.isdir(folder):
        raise InputError(input_name, f"folder {folder!r} does not exist.",
                         "create it or choose another path.")
    if not overwrite and os.path.exists(path):
        raise InputError(input_name, f"{base!r} already exists.", "choose another file name.")
    data = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=SUFFIX, dir=folder)
    os.close(fd)
    try:
        save_file(data, tmp, metadata=dict(metadata))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_header(path: str, input_name: str = "file") -> dict:
    """The JSON header of a safetensors file, after refusing pickles, zips, foreign and truncated files."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise InputError(input_name, f"{name!r} does not exist.", "choose an existing file and refresh.")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(9)
        # A safetensors header length can start with byte 0x80 too (a header of 128 + 256k bytes), so a
        # pickle is recognised only when the file does not continue like a safetensors header ('{' at 8).
        if (head[:2] == b"PK" or head[:1] == b"\x80") and head[8:9] != b"{":
            raise InputError(input_name, f"{name!r} is a pickle/PyTorch checkpoint; SliderSpace never "
                             "unpickles files (they can run code).", "use a .safetensors file.")
        if len(head) < 8:
            raise InputError(input_name, f"{name!r} is empty or truncated ({size} bytes).", CUT_SHORT)
        n = struct.unpack("<Q", head[:8])[0]
        if n > MAX_HEADER or head[8:9] not in (b"{", b""):
            raise InputError(input_name, f"{name!r} is not a safetensors file.",
                             "choose a .safetensors file.")
        if n > size - 8:
            raise InputError(input_name, f"{name!r} is truncated (header of {n} bytes, file of {size}).",
                             CUT_SHORT)
        f.seek(8)
        try:
            header = json.loads(f.read(n).decode("utf-8"))
            ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            raise InputError(input_name, f"{name!r} has a damaged safetensors header.",
                             "choose an undamaged .safetensors file.") from None
    if max(ends, default=0) > size - 8 - n:
        raise InputError(input_name, f"{name!r} is truncated (its tensors end past the end of the file).",
                         CUT_SHORT)
    return header


_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def sanitize_name(name: str, input_name: str = "filename") -> str:
    """A safe file name from user text: no folders, no ``..``, only ``[A-Za-z0-9._ -]``, ``.safetensors``."""
    stem = str(name).strip()
    if stem.lower().endswith(SUFFIX):
        stem = stem[: -len(SUFFIX)]
    stem = _UNSAFE.sub("_", stem.replace("/", "_").replace("\\", "_"))
    stem = re.sub(r"\.{2,}", ".", stem).strip(" ._-")[:120].rstrip(" .")
    if not stem:
        raise InputError(input_name, f"{name!r} leaves no usable file name.",
                         "use letters, digits, '_', '-', '.' or spaces, e.g. 'dog_sliders'.")
    if stem.split(".")[0].lower() in _RESERVED:
        stem = "_" + stem
    return stem + SUFFIX


def next_free_path(folder: str, name: str) -> str:
    """``folder/<stem>_00001.safetensors`` with the first counter not yet taken (never overwrites)."""
    stem = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
    pattern = re.compile(re.escape(stem) + r"_(\d{5,})" + re.escape(SUFFIX) + "$")
    names = os.listdir(folder) if os.path.isdir(folder) else []
    taken = [int(m[1]) for f in names if (m := pattern.match(f))]
    return os.path.join(folder, f"{stem}_{max(taken, default=0) + 1:05d}{SUFFIX}")
