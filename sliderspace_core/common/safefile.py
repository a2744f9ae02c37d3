"""Safe files: safetensors written atomically, headers checked before loading, file names sanitised.

Nothing here unpickles: pickles and zip checkpoints are recognised by their first bytes and refused.
"""

from __future__ import annotations

import json
import os
import re
import struct
import tempfile
from collections.abc import Collection, Mapping

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


DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4,
               "I16": 2, "I8": 1, "U8": 1, "U16": 2, "U32": 4, "U64": 8, "BOOL": 1}
"""Bytes per element of the safetensors dtypes a header may name (others are refused)."""
FLOATS = ("F32", "F16", "BF16", "F64")
"""The float dtypes the pack's weight files hold (fp8 is refused: torch cannot even check it for NaN)."""


def _damaged(input_name: str, name: str, what: str) -> InputError:
    return InputError(input_name, f"{name!r} has a damaged safetensors header ({what}).",
                      "choose an undamaged .safetensors file (save it again).")


def _check_entries(header: object, data_len: int, input_name: str, name: str,
                   dtypes: Collection[str] | None) -> dict:
    """The header as ``{name: {"dtype", "shape", "data_offsets"}}`` + ``__metadata__`` (str → str), after
    checking what safetensors itself checks (known dtype, shape × size = byte span, spans contiguous from 0
    and covering the data exactly), so every reader gets one clear error instead of a library exception."""
    if not isinstance(header, dict):
        raise _damaged(input_name, name, "not a JSON object")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise _damaged(input_name, name, "its metadata is not a map of strings")
    spans = []
    for key, t in header.items():
        if key == "__metadata__":
            continue
        if not isinstance(t, dict) or set(t) != {"dtype", "shape", "data_offsets"}:
            raise _damaged(input_name, name, f"entry {key!r} is not dtype/shape/data_offsets")
        dtype, shape, offsets = t["dtype"], t["shape"], t["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
            raise _damaged(input_name, name, f"tensor {key!r} has unknown dtype {dtype!r}")
        ints = shape if isinstance(shape, list) else [None]
        ints = ints + (offsets if isinstance(offsets, list) and len(offsets) == 2 else [None])
        if not all(type(v) is int and v >= 0 for v in ints):
            raise _damaged(input_name, name, f"tensor {key!r} has an invalid shape or offsets")
        numel = 1
        for v in shape:
            numel *= v
        if offsets[1] - offsets[0] != numel * DTYPE_SIZES[dtype]:
            raise _damaged(input_name, name, f"tensor {key!r}: shape {shape} of {dtype} does not fill "
                           f"bytes {offsets[0]}..{offsets[1]}")
        if dtypes is not None and dtype not in dtypes:
            raise InputError(input_name, f"{name!r}: tensor {key!r} is {dtype}, expected {' or '.join(dtypes)}.",
                             "choose an undamaged file written by SliderSpace.")
        spans.append((offsets[0], offsets[1], key))
    end = 0
    for begin, stop, key in sorted(spans):
        if begin != end:
            raise _damaged(input_name, name, f"tensor {key!r} overlaps another or leaves a gap")
        end = stop
    if end != data_len:
        raise InputError(input_name, f"{name!r} is truncated or has trailing bytes (its tensors end at byte "
                         f"{end} of {data_len}).", CUT_SHORT)
    return header


def read_header(path: str, input_name: str = "file", dtypes: Collection[str] | None = None) -> dict:
    """The checked JSON header of a safetensors file, after refusing pickles, zips, foreign, damaged and
    truncated files; ``dtypes`` (e.g. :data:`FLOATS`) restricts the tensors' dtypes."""
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
        except (ValueError, RecursionError):
            raise _damaged(input_name, name, "not valid JSON") from None
    return _check_entries(header, size - 8 - n, input_name, name, dtypes)


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
