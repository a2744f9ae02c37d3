"""Seeded mutations of the files the pack reads: bytes, safetensors headers and metadata, tensor values,
JSON documents, torch (zip/pickle) checkpoints, and payloads that would run code if unpickled.

Every mutator takes the file's bytes and a ``random.Random`` and returns new bytes (or ``None`` when it
does not apply, e.g. a header edit of a file that has no parsable header); :func:`mutate` picks one at
random, falling back to byte-level mutators. Nothing here depends on the pack.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import random
import struct
import zipfile
from collections.abc import Callable

import numpy as np
import torch

DTYPES = ["F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "I64", "I32", "I16", "I8", "U8", "U16", "U32",
          "U64", "BOOL", "Q4", "", "f32"]
"""Dtype strings a header edit may write: every safetensors dtype, plus unknown ones."""
SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4, "I16": 2,
         "I8": 1, "U8": 1, "U16": 2, "U32": 4, "U64": 8, "BOOL": 1}


class Canary:
    """A pickle payload: unpickling it calls ``open(path, "w")``, which creates the canary file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


# ----------------------------------------------------------------------------------------- helpers

def split_safetensors(data: bytes) -> tuple[dict, bytes] | None:
    """``(header, tensor bytes)`` of a well-formed safetensors file, else None."""
    if len(data) < 8:
        return None
    n = struct.unpack("<Q", data[:8])[0]
    if n > len(data) - 8:
        return None
    try:
        header = json.loads(data[8:8 + n])
    except ValueError:
        return None
    return (header, data[8 + n:]) if isinstance(header, dict) else None


def join_safetensors(header: object, body: bytes, length_delta: int = 0) -> bytes:
    text = json.dumps(header, allow_nan=True).encode()
    return struct.pack("<Q", max(0, len(text) + length_delta)) + text + body


def _tensor_keys(header: dict) -> list[str]:
    return [k for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]


def weird_value(rng: random.Random, depth: int = 0) -> object:
    """A JSON value chosen to break a reader that trusts its input."""
    choices: list[object] = [None, True, -1, 0, 2**64, 10**400 if rng.random() < 0.5 else -(10**400), 1e308,
                             math.nan, math.inf, -math.inf, "", "x" * rng.randint(1, 64), "1e400", "nan", "-0",
                             [], {}, [1, 2, 3], {"a": 1}, "\x00", "../../etc/passwd", 0.5]
    if depth < 2 and rng.random() < 0.2:
        return [weird_value(rng, depth + 1) for _ in range(rng.randint(1, 3))]
    return rng.choice(choices)


def deep_nest(rng: random.Random) -> str:
    d = rng.choice([50, 1000, 100_000])
    return "[" * d + "]" * d


def edit_json(text: str, rng: random.Random) -> str | None:
    """A JSON document with one leaf (or container) replaced by a weird value, or made invalid."""
    r = rng.random()
    if r < 0.1:
        return deep_nest(rng)
    if r < 0.2:
        return text[: rng.randint(0, len(text))]  # cut short: invalid JSON
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    holders: list[tuple[object, object]] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                holders.append((node, k))
                walk(v)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                holders.append((node, i))
                walk(v)

    walk(doc)
    if not holders or rng.random() < 0.1:
        return json.dumps(weird_value(rng), allow_nan=True)
    parent, key = rng.choice(holders)
    if isinstance(parent, dict) and rng.random() < 0.25:
        del parent[key]
    else:
        parent[key] = weird_value(rng)  # type: ignore[index]
    return json.dumps(doc, allow_nan=True)


# ------------------------------------------------------------------------------------ byte mutators

def truncate(data: bytes, rng: random.Random) -> bytes:
    cut = rng.choice([rng.randint(0, min(16, len(data))), rng.randint(0, len(data)), len(data) - rng.randint(1, 8)])
    return data[: max(0, min(cut, len(data) - 1))]


def bit_flips(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    if not b:
        return bytes(b)
    head = min(len(b), 8 + (struct.unpack("<Q", data[:8])[0] if len(data) >= 8 else 0))
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(min(head, len(b))) if rng.random() < 0.5 and head > 0 else rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def splat(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    if not b:
        return b"\x00"
    i = rng.randrange(len(b))
    n = rng.randint(1, 64)
    b[i:i + n] = bytes(rng.randrange(256) for _ in range(n))
    return bytes(b)


def append_garbage(data: bytes, rng: random.Random) -> bytes:
    return data + bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))


def header_length(data: bytes, rng: random.Random) -> bytes | None:
    if len(data) < 8:
        return None
    n = struct.unpack("<Q", data[:8])[0]
    new = rng.choice([0, 1, n - 1, n + 1, n + 7, 2**63, 2**64 - 1, len(data), 100 * 2**20 + 1, rng.randrange(2**32)])
    return struct.pack("<Q", max(0, min(new, 2**64 - 1))) + data[8:]


# ------------------------------------------------------------------------- safetensors header mutators

def header_edit(data: bytes, rng: random.Random) -> bytes | None:
    """Offsets, shapes, dtypes, keys: wrong, overlapping, huge, reversed, missing, duplicated."""
    parsed = split_safetensors(data)
    if parsed is None:
        return None
    header, body = parsed
    keys = _tensor_keys(header)
    if not keys:
        return None
    k = rng.choice(keys)
    t = header[k]
    op = rng.randrange(12)
    if op == 0:  # offsets out of range / reversed / random
        a, b = t["data_offsets"]
        t["data_offsets"] = rng.choice([[b, a], [a, b + rng.randint(1, 99)], [a, 2**62], [-1, b], [a], "x",
                                        [a + 1, b + 1], [0, 0]])
    elif op == 1 and len(keys) > 1:  # overlap another tensor
        other = header[rng.choice([x for x in keys if x != k])]
        t["data_offsets"] = list(other["data_offsets"])
    elif op == 2:  # a dim changed
        shape = list(t["shape"]) or [1]
        i = rng.randrange(len(shape))
        shape[i] = rng.choice([0, -1, 1, shape[i] + 1, 2**40, 2**63, "3", None, 1.5])
        t["shape"] = shape
    elif op == 3:  # rank changed
        shape = list(t["shape"])
        t["shape"] = rng.choice([[], shape + [1], shape[:-1], [int(np.prod(shape) or 0)], list(reversed(shape))])
    elif op == 4:
        t["dtype"] = rng.choice(DTYPES + [1, None])
    elif op == 5:  # huge declared size, offsets consistent with it (the file is then "truncated")
        shape = [2**20, 2**20]
        t["shape"] = shape
        a = t["data_offsets"][0]
        t["data_offsets"] = [a, a + 4 * 2**40]
        t["dtype"] = "F32"
    elif op == 6:
        del header[k]
    elif op == 7:
        header[k + rng.choice(["_copy", ".x", "0"])] = dict(t)
    elif op == 8:
        header[rng.choice(["", "../x", "\x00", k.upper(), "__metadata__x"])] = header.pop(k)
    elif op == 9:
        header[k] = weird_value(rng)
    elif op == 10:
        t[rng.choice(["extra", "dtype", "shape", "data_offsets"])] = weird_value(rng)
    else:
        t.pop(rng.choice(["dtype", "shape", "data_offsets"]), None)
    return join_safetensors(header, body)


def metadata_edit(data: bytes, rng: random.Random) -> bytes | None:
    """Format names and versions, embedded JSON documents, missing keys, non-string values."""
    parsed = split_safetensors(data)
    if parsed is None:
        return None
    header, body = parsed
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or rng.random() < 0.08:
        header["__metadata__"] = weird_value(rng)
        return join_safetensors(header, body)
    if not meta:
        return None
    k = rng.choice(sorted(meta))
    op = rng.randrange(6)
    if op == 0:
        del meta[k]
    elif op == 1:
        meta[k] = weird_value(rng)  # not a string: the format says strings only
    elif op == 2:
        meta[k] = rng.choice(["0", "2", "99", "-1", "x", "1e400", "", "1.0", " 1", "NaN", str(2**70)])
    else:  # edit the JSON inside a value (bank doc, SAE config, statistics, provenance)
        edited = edit_json(str(meta[k]), rng)
        if edited is None:
            meta[k] = meta[k][: rng.randint(0, len(meta[k]))]
        else:
            meta[k] = edited
    return join_safetensors(header, body)


def tensor_values(data: bytes, rng: random.Random) -> bytes | None:
    """NaN / Inf / huge values written into a float tensor's bytes (the header stays valid)."""
    parsed = split_safetensors(data)
    if parsed is None:
        return None
    header, body = parsed
    floats = [k for k in _tensor_keys(header) if header[k].get("dtype") in ("F32", "F16", "BF16", "F64")]
    if not floats:
        return None
    t = header[rng.choice(floats)]
    a, b = t["data_offsets"]
    size = SIZES[t["dtype"]]
    if b - a < size:
        return None
    value = rng.choice([math.nan, math.inf, -math.inf, 3e38, 1e30])
    raw = {"F32": lambda v: struct.pack("<f", v), "F64": lambda v: struct.pack("<d", v),
           "F16": lambda v: np.float16(v).tobytes(), "BF16": lambda v: struct.pack("<f", v)[2:]}[t["dtype"]](value)
    out = bytearray(body)
    for _ in range(rng.randint(1, 3)):
        i = a + size * rng.randrange((b - a) // size)
        out[i:i + size] = raw
    return data[: len(data) - len(body)] + bytes(out)


def retype(data: bytes, rng: random.Random) -> bytes | None:
    """A still-valid safetensors file whose tensor has the wrong dtype or shape (same byte count)."""
    parsed = split_safetensors(data)
    if parsed is None:
        return None
    header, body = parsed
    keys = [k for k in _tensor_keys(header) if header[k].get("dtype") in SIZES]
    if not keys:
        return None
    t = header[rng.choice(keys)]
    a, b = t["data_offsets"]
    nbytes = b - a
    size = SIZES[t["dtype"]]
    same = [d for d, s in SIZES.items() if s == size and d != t["dtype"]]
    if rng.random() < 0.5 and same:
        t["dtype"] = rng.choice(same)
    else:
        n = nbytes // size
        t["shape"] = rng.choice([[n], [1, n], [n, 1], [1, 1, n]] + ([[2, n // 2]] if n % 2 == 0 else []))
    return join_safetensors(header, body)


# --------------------------------------------------------------------------------- code payloads

def pickle_payload(canary: str, rng: random.Random) -> bytes:
    """A plain pickle (any protocol) or a torch zip checkpoint whose unpickling creates ``canary``."""
    evil = Canary(canary)
    kind = rng.randrange(4)
    if kind == 0:
        return pickle.dumps(evil, protocol=rng.randint(0, pickle.HIGHEST_PROTOCOL))
    if kind == 1:
        return pickle.dumps({"state_dict": {"encoder.weight": evil}}, protocol=2)
    buf = io.BytesIO()
    obj = evil if kind == 2 else {"state_dict": {"encoder.weight": torch.zeros(2), "pre_bias": evil}}
    torch.save(obj, buf)
    return buf.getvalue()


def disguised_pickle(canary: str, rng: random.Random) -> bytes:
    """A pickle whose 9th byte is '{' (so a naive 'looks like safetensors' test is fooled)."""
    body = pickle.dumps(Canary(canary), protocol=2)
    return body[:2] + b"(X\x04\x00\x00\x00{abc1" + body[2:]  # MARK, a 4-char string, POP_MARK: still a valid pickle


def zip_with_pickle(data: bytes, canary: str, rng: random.Random) -> bytes | None:
    """A torch zip checkpoint with its ``data.pkl`` replaced by a code-running pickle."""
    try:
        src = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        return None
    out = io.BytesIO()
    with src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            payload = src.read(info)
            if info.filename.endswith("data.pkl"):
                payload = pickle.dumps({"state_dict": Canary(canary)}, protocol=2)
            dst.writestr(info, payload)
    return out.getvalue()


def torch_semantic(rng: random.Random, good: object) -> bytes:
    """A genuine torch checkpoint holding the wrong things: shapes, dtypes, NaN, strings, missing keys."""

    def bad_tensor(t: object) -> object:
        if not isinstance(t, torch.Tensor):
            return t
        op = rng.randrange(7)
        if op == 0:
            return t.reshape(-1)
        if op == 1:
            return t.to(rng.choice([torch.int64, torch.float16, torch.bool, torch.uint8, torch.complex64]))
        if op == 2:
            u = t.float().clone()
            u.reshape(-1)[rng.randrange(max(1, u.numel()))] = rng.choice([math.nan, math.inf])
            return u
        if op == 3:
            return torch.zeros(*(s + 1 for s in t.shape))
        if op == 4:
            return rng.choice(["tensor", 3, None, [1.0, 2.0], {"x": t}])
        if op == 5:
            return t[..., :0]
        return torch.zeros(())

    def walk(node: object) -> object:
        if isinstance(node, dict):
            items = dict(node)
            if items and rng.random() < 0.3:
                items.pop(rng.choice(sorted(items)))
            return {k: walk(v) if rng.random() < 0.5 else v for k, v in items.items()}
        return bad_tensor(node)

    obj = rng.choice([walk(good), walk(good), [good], "state_dict", 1.5, None, {"state_dict": [1, 2]}])
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ pickers

Mutator = Callable[[bytes, random.Random], "bytes | None"]
BYTES: list[Mutator] = [truncate, bit_flips, splat, append_garbage, header_length]
SAFETENSORS: list[Mutator] = [header_edit, header_edit, metadata_edit, metadata_edit, tensor_values, retype]


def mutate_safetensors(data: bytes, rng: random.Random, canary: str) -> tuple[str, bytes]:
    """One mutation of a safetensors file: ``(mutator name, new bytes)``."""
    r = rng.random()
    if r < 0.06:
        return "pickle_payload", pickle_payload(canary, rng)
    if r < 0.08:
        return "disguised_pickle", disguised_pickle(canary, rng)
    pool = SAFETENSORS if r < 0.65 else BYTES
    for _ in range(8):
        m = rng.choice(pool)
        out = m(data, rng)
        if out is not None and out != data:
            return m.__name__, out
    return "bit_flips", bit_flips(data, rng)


def mutate_torch(data: bytes, rng: random.Random, canary: str, good: object) -> tuple[str, bytes]:
    """One mutation of a torch (zip) checkpoint; ``good`` is what it held, for semantic edits."""
    r = rng.random()
    if r < 0.2:
        return "pickle_payload", pickle_payload(canary, rng)
    if r < 0.35:
        out = zip_with_pickle(data, canary, rng)
        if out is not None:
            return "zip_with_pickle", out
    if r < 0.6:
        return "torch_semantic", torch_semantic(rng, good)
    m = rng.choice(BYTES[:4])
    return m.__name__, m(data, rng)


def mutate_json(text: str, rng: random.Random) -> tuple[str, bytes]:
    if rng.random() < 0.15:
        return "bit_flips", bit_flips(text.encode(), rng)
    edited = edit_json(text, rng)
    return "edit_json", (edited if edited is not None else "").encode("utf-8", "surrogatepass")
