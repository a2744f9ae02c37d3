"""Activation sets: rows of a block's residual update Δ with provenance, streamed to safetensors shards.

A set is a folder of shards ``shard_00000.safetensors``, ... Each shard holds

    rows      (n, d)   Δ = block output − block input at one spatial location (float16 or float32)
    sigma     (n,)     the model evaluation's sigma                          (float32)
    cond      (n,)     0 = cond half, 1 = uncond half (ComfyUI's cond_or_uncond label)   (int8)
    sample    (n,)     which sampling run (seed + sample)                    (int32)
    position  (n,)     the location on the block's grid, row-major y * width + x          (int32)

and, in its header, the block path, the width ``d`` and the block's grid ``height`` x ``width``. A set is
re-iterable as float32 row chunks, which is what :func:`~sliderspace_core.decompose.topk_train.train_sae`
streams from; nothing is held in memory beyond one shard.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..common.errors import InputError
from ..common.safefile import read_header, write_safetensors

FORMAT = "sliderspace.activations"
FORMAT_VERSION = "1"
COND, UNCOND = 0, 1
_SHARD = re.compile(r"^shard_(\d{5})\.safetensors$")
_COLUMNS = {"sigma": torch.float32, "cond": torch.int8, "sample": torch.int32, "position": torch.int32}


def subsample_positions(n_positions: int, keep: int, seed: int, *salt: int) -> Tensor:
    """``keep`` distinct locations out of ``n_positions`` (sorted), drawn from ``seed`` and ``salt``.

    ``keep <= 0`` or ``keep >= n_positions`` keeps every location. The salt (sample, step, chunk)
    makes each map draw its own locations while the same seed always draws the same ones.
    """
    if keep <= 0 or keep >= n_positions:
        return torch.arange(n_positions)
    mixed = int(seed) % (2**61)
    for s in salt:
        mixed = (mixed * 1_000_003 + int(s) + 1) % (2**61)
    g = torch.Generator().manual_seed(mixed)
    return torch.randperm(n_positions, generator=g)[:keep].sort().values


@dataclass
class ActivationSet:
    """A folder of activation shards of ONE block (see the module doc). Iterating yields float32 chunks."""

    folder: str
    """Where the shards are."""
    block: str
    """ComfyUI path of the block inside the diffusion model, e.g. ``middle_block.1``."""
    d: int
    """Row width (the block's channel / hidden size)."""
    height: int
    """The block's grid height in locations (tokens) for this set's latents."""
    width: int
    """The block's grid width."""
    shards: list[str] = field(default_factory=list)
    """Shard file names in write order."""
    rows: int = 0
    """Total rows over all shards."""
    meta: dict[str, str] = field(default_factory=dict)
    """Free-form provenance: model family, sampler settings, prompts."""

    def __len__(self) -> int:
        return self.rows

    def __iter__(self) -> Iterator[Tensor]:
        for name in self.shards:
            yield self._read(name, ("rows",))["rows"].float()

    def _read(self, name: str, keys: tuple[str, ...]) -> dict[str, Tensor]:
        from safetensors import safe_open

        path = os.path.join(self.folder, name)
        if not os.path.isfile(path):
            raise InputError("activations", f"shard {name!r} is missing from {self.folder!r}.",
                             "collect the activations again.")
        try:
            with safe_open(path, "pt") as f:
                return {k: f.get_tensor(k) for k in keys}
        except Exception as e:  # noqa: BLE001 - a shard changed or damaged since the set was opened
            raise InputError("activations", f"shard {name!r} cannot be read ({type(e).__name__}: {e}).",
                             "collect the activations again.") from None

    def provenance(self) -> dict[str, Tensor]:
        """Every row's ``sigma``, ``cond``, ``sample`` and ``position`` (concatenated over the shards)."""
        parts = [self._read(n, tuple(_COLUMNS)) for n in self.shards]
        return {k: torch.cat([p[k] for p in parts]) if parts else torch.zeros(0, dtype=t) for k, t in _COLUMNS.items()}

    def summary(self) -> str:
        return (f"{self.rows} rows of width {self.d} from {self.block} ({self.height}x{self.width} grid) in "
                f"{len(self.shards)} shard(s)")


class ActivationWriter:
    """Buffers rows and writes a shard every ``shard_rows`` rows; :meth:`close` returns the set."""

    def __init__(self, folder: str, block: str, d: int, height: int, width: int, shard_rows: int = 262_144,
                 dtype: torch.dtype = torch.float16, meta: dict[str, str] | None = None) -> None:
        if dtype not in (torch.float16, torch.float32, torch.bfloat16):
            raise InputError("store_dtype", f"is {dtype}.", "use float16 or float32.")
        self._created = not os.path.isdir(folder)
        os.makedirs(folder, exist_ok=True)
        if any(_SHARD.match(f) for f in os.listdir(folder)):
            raise InputError("folder", f"{folder!r} already holds activation shards.",
                             "choose an empty folder (sets are never overwritten).")
        self.set = ActivationSet(folder, block, int(d), int(height), int(width), meta=dict(meta or {}))
        self.shard_rows, self.dtype = max(1, int(shard_rows)), dtype
        self._parts: list[dict[str, Tensor]] = []
        self._held = 0

    def add(self, rows: Tensor, sigma: float, cond: int, sample: int, positions: Tensor) -> None:
        """Rows ``(n, d)`` of one map (one sample, one evaluation, one half) at grid ``positions`` (n,)."""
        rows = rows.detach().reshape(-1, rows.shape[-1])
        if rows.shape[1] != self.set.d:
            raise InputError("activations", f"rows have width {rows.shape[1]}, the set {self.set.d}.",
                             "collect one block per set.")
        n = rows.shape[0]
        self._parts.append({
            "rows": rows.to("cpu", self.dtype), "sigma": torch.full((n,), float(sigma), dtype=torch.float32),
            "cond": torch.full((n,), int(cond), dtype=torch.int8),
            "sample": torch.full((n,), int(sample), dtype=torch.int32),
            "position": positions.to("cpu", torch.int32).reshape(n)})
        self._held += n
        if self._held >= self.shard_rows:
            self.flush()

    def flush(self) -> None:
        if not self._held:
            return
        tensors = {k: torch.cat([p[k] for p in self._parts]) for k in self._parts[0]}
        name = f"shard_{len(self.set.shards):05d}.safetensors"
        s = self.set
        meta = {**s.meta, "format": FORMAT, "format_version": FORMAT_VERSION, "block": s.block, "d": str(s.d),
                "height": str(s.height), "width": str(s.width)}
        write_safetensors(tensors, os.path.join(s.folder, name), meta, input_name="folder")
        s.shards.append(name)
        s.rows += self._held
        self._parts, self._held = [], 0

    def abort(self) -> None:
        """Remove what this writer wrote (its shards, and its folder if it made it): an interrupted or failed
        collection leaves no partial set behind."""
        for name in self.set.shards:
            path = os.path.join(self.set.folder, name)
            if os.path.isfile(path):
                os.remove(path)
        self.set.shards, self.set.rows, self._parts, self._held = [], 0, [], 0
        if self._created and os.path.isdir(self.set.folder) and not os.listdir(self.set.folder):
            os.rmdir(self.set.folder)

    def close(self) -> ActivationSet:
        self.flush()
        if not self.set.rows:
            raise InputError("activations", "no rows were captured (the time window or the cond/uncond choice "
                             "matched no model evaluation).", "widen start/end percent or capture 'both'.")
        return self.set


_DTYPES = {"rows": ("F16", "F32", "BF16"), "sigma": ("F32",), "cond": ("I8",), "sample": ("I32",),
           "position": ("I32",)}
"""The dtypes each tensor of a shard is written with (what :func:`load_activation_set` accepts)."""
_PROVENANCE = ("block", "d", "height", "width")


def _shard_rows(header: dict, name: str, d: int) -> int:
    """Rows of one shard whose checked header holds exactly the set's tensors with consistent shapes."""
    fix = "collect the activations again (the shard is damaged or was edited)."
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if set(tensors) != set(_DTYPES):
        raise InputError("folder", f"{name!r} holds tensors {sorted(tensors)}, not {sorted(_DTYPES)}.", fix)
    n = tensors["rows"]["shape"][0] if len(tensors["rows"]["shape"]) == 2 else -1
    for k, t in tensors.items():
        want = [n, d] if k == "rows" else [n]
        if t["shape"] != want or t["dtype"] not in _DTYPES[k]:
            raise InputError("folder", f"{name!r}: tensor {k!r} is {t['dtype']} {t['shape']}, expected "
                             f"{'/'.join(_DTYPES[k])} {want} (width {d}).", fix)
    return n


def load_activation_set(folder: str) -> ActivationSet:
    """Re-open a folder written by :class:`ActivationWriter` (headers checked, nothing unpickled)."""
    if not os.path.isdir(folder):
        raise InputError("folder", f"{folder!r} does not exist.", "choose a folder written by SAE Collect.")
    names = sorted(f for f in os.listdir(folder) if _SHARD.match(f))
    if not names:
        raise InputError("folder", f"{folder!r} holds no activation shards.", "choose a folder written by SAE Collect.")
    first: dict[str, str] | None = None
    rows = 0
    for name in names:
        header = read_header(os.path.join(folder, name), "folder")
        meta = header.get("__metadata__") or {}
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise InputError("folder", f"{name!r} is not a SliderSpace activation shard (version {FORMAT_VERSION}).",
                             "collect the activations again.")
        key = {k: meta.get(k) for k in _PROVENANCE}
        if first is None:
            first = key
            sizes = [int(v) if isinstance(v, str) and v.isascii() and v.isdigit() and len(v) < 10 else 0 for v in
                     (key["d"], key["height"], key["width"])]
            if not key["block"] or min(sizes) < 1:
                raise InputError("folder", f"{name!r} has damaged provenance {key}.", "collect the activations again.")
            d, height, width = sizes
            meta0 = {k: v for k, v in meta.items() if k not in ("format", "format_version", *_PROVENANCE)}
        elif key != first:
            raise InputError("folder", f"{name!r} comes from another block or grid ({key} vs {first}).",
                             "keep one block's shards per folder.")
        rows += _shard_rows(header, name, d)
    if names != [f"shard_{i:05d}.safetensors" for i in range(len(names))]:
        raise InputError("folder", f"{folder!r} holds shards {names[0]}..{names[-1]} with gaps in their numbers.",
                         "collect the activations again (a shard is missing or foreign).")
    assert first is not None
    return ActivationSet(folder, str(first["block"]), d, height, width, names, rows, meta0)
