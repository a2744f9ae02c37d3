"""Steering in activation space (METHODS §3.4): add SAE decoder directions to a block's output.

Everything works on rows: a block's output as ``(batch, locations, d)`` with the locations on a
``height x width`` grid (row-major), and the batch labelled per chunk by ComfyUI's ``cond_or_uncond``
(0 cond, 1 uncond). The host turns its tensors into rows and back. ``d_f`` is feature f's unit decoder
direction and Z the block's residual update (output − input, what the SAE reads), per image.

Strength units (``scale``), one per paper:

* **feature mean (sdxl-unbox)**: every location gets ``Σ_f strength_f · mean_f · d_f`` (``mean_f`` =
  ``ConceptSAE.feature_mean``, the feature's typical code where it fires). Strengths ~1–10.
* **beta over the grid (Tinaz et al.)**: global — location ij gets ``Σ_f β_f · ‖Z_ij‖ / Σ_kl ‖Z_kl‖ · d_f``,
  so the whole edit sums to β_f per image (β ≈ 8–10); spatial — ``β_f · ‖Z_ij‖ · d_f`` inside the region,
  nothing outside (β ≈ 400 mid … 4000 early).
* **absolute**: ``Σ_f strength_f · d_f`` at every location (code units).

**spatial**: the mask (any size; resized to the block's grid by area averaging, values clipped to [0, 1])
weights the addition, and outside the mask each chosen feature's own contribution ``z_f(Z) · W_dec[f]`` is
removed ("suppress outside"). An all-zero mask selects no region: the steer is then off (vanilla, bit for bit).

Which halves: ``cond`` (the default: the uncond half is untouched, so CFG pushes towards the edit),
``both``, or ``cfg`` (sdxl-unbox: add on the cond half, subtract the ADDED vector on the uncond half; the
suppression outside the mask belongs to the steered cond half and is not flipped onto the uncond half).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..common.errors import InputError
from ..common.textspec import finite_number, parse_indexed
from ..decompose.topk_sae import TopKSAE
from .activations import COND
from .sae import ConceptSAE

MODES = ("global", "spatial")
APPLY_TO = ("cond", "both", "cfg")
FEATURE_MEAN, BETA_GRID, ABSOLUTE = "feature mean (sdxl-unbox)", "beta over the grid (Tinaz et al.)", "absolute"
SCALES = (FEATURE_MEAN, BETA_GRID, ABSOLUTE)
"""The strength units; the first is the default (today's behaviour)."""
LEGACY_SCALES = {"typical activation": FEATURE_MEAN}
"""Names earlier versions used (saved workflows keep them): the same units under their new name."""


def scale_name(scale: str) -> str:
    """``scale`` with a legacy name replaced by its current one (unknown names are returned unchanged)."""
    return LEGACY_SCALES.get(scale, scale)


def parse_features(text: str, n_features: int, input_name: str = "features") -> dict[int, float]:
    """``"12:8, 40:-4"`` → ``{12: 8.0, 40: -4.0}`` (feature id : strength); zero strengths are dropped."""
    fix = f"write feature:strength pairs with ids 0..{n_features - 1}, e.g. '12:8, 40:-4'."

    def value(raw: str, entry: str) -> float:
        return finite_number(raw, input_name, f"entry {entry!r}", fix)

    parsed = parse_indexed(text, n_features, input_name, value, fix, what="feature:strength", single_token=True,
                           noun="feature", owner="the SAE")
    return {i: s for i, s in parsed.items() if s != 0.0}


def resize_mask(mask: Tensor, height: int, width: int) -> Tensor:
    """A MASK ([H, W] or [B, H, W]; the first one of a batch) on the block's ``height x width`` grid,
    area-averaged and clipped to [0, 1], flattened row-major to ``(height*width,)``."""
    if mask.ndim == 3:
        mask = mask[0]
    if mask.ndim != 2 or mask.numel() == 0:
        raise InputError("mask", f"has shape {tuple(mask.shape)}.", "connect a MASK ([H, W] or [B, H, W]).")
    m = mask.detach().float().cpu()
    if not bool(torch.isfinite(m).all()):
        raise InputError("mask", "contains NaN or infinite values.", "use a mask with values in [0, 1].")
    if tuple(m.shape) != (height, width):
        m = F.interpolate(m[None, None], size=(height, width), mode="area")[0, 0]
    return m.clamp(0.0, 1.0).reshape(-1)


class Steerer:
    """The edit one SAE Steer node applies, precomputed; :meth:`apply` adds it to a block's output rows."""

    def __init__(self, csae: ConceptSAE, features: dict[int, float], mode: str = "global",
                 apply_to: str = "cond", scale: str = FEATURE_MEAN, mask: Tensor | None = None,
                 suppress_outside: bool = True) -> None:
        scale = scale_name(scale)
        for name, v, allowed in (("mode", mode, MODES), ("apply_to", apply_to, APPLY_TO), ("scale", scale, SCALES)):
            if v not in allowed:
                raise InputError(name, f"is {v!r}.", f"choose one of {', '.join(allowed)}.")
        if mode == "spatial" and mask is None:
            raise InputError("mask", "is required in spatial mode.", "connect a MASK or use mode 'global'.")
        self.mode, self.apply_to, self.scale, self.suppress = mode, apply_to, scale, bool(suppress_outside)
        self.mask = mask.detach().float().cpu() if (mask is not None and mode == "spatial") else None
        self.ids = sorted(features)
        sae = csae.sae
        dirs = sae.decoder_directions().cpu()  # built once, a (d,) vector; apply() moves it to the block's device
        value = csae.feature_mean.float().cpu() if scale == FEATURE_MEAN else torch.ones(sae.n_latents)
        strengths = torch.tensor([features[i] for i in self.ids], dtype=torch.float32)
        idx = torch.tensor(self.ids, dtype=torch.long)
        self.vector = (strengths * value[idx]) @ dirs[idx] if self.ids else torch.zeros(sae.d_in)
        self.sae = sae
        self._mask_cache: dict[tuple[int, int], Tensor] = {}
        self._sae_cache: dict[torch.device, TopKSAE] = {sae.W_enc.device: sae}

    def _sae_on(self, device: torch.device) -> TopKSAE:
        """The SAE on the block's device: a copy made once per device (the input SAE is never moved), so the
        suppression's encode runs where sampling runs instead of sending activations to the CPU each step."""
        if device not in self._sae_cache:
            self._sae_cache[device] = copy.deepcopy(self.sae).to(device)
        return self._sae_cache[device]

    @property
    def active(self) -> bool:
        """False when the edit cannot change anything (no features, zero vector, all-zero mask)."""
        if not self.ids:
            return False
        if self.mask is not None and float(self.mask.max()) <= 0.0:
            return False
        return bool(self.vector.abs().max() > 0) or (self.mode == "spatial" and self.suppress)

    @property
    def needs_input(self) -> bool:
        """Spatial suppression encodes Z and Tinaz's units read ‖Z‖, so the host must keep the block's input."""
        return (self.mode == "spatial" and self.suppress) or self.scale == BETA_GRID

    def _mask(self, height: int, width: int, like: Tensor) -> Tensor:
        key = (height, width)
        if key not in self._mask_cache:
            self._mask_cache[key] = resize_mask(self.mask, height, width)
        return self._mask_cache[key].to(like.device, like.dtype)[None, :, None]

    def _weights(self, z: Tensor | None, m: Tensor | None) -> Tensor | float:
        """Per location, how much of ``self.vector`` is added: (rows, locations, 1), or 1.0 everywhere."""
        if self.scale != BETA_GRID:
            return 1.0 if m is None else m
        norms = z.float().norm(dim=-1, keepdim=True)                                  # ‖Z_ij‖
        if m is not None:                                                              # β·‖Z_ij‖ inside, 0 outside
            return norms.to(m.dtype) * m
        total = norms.sum(dim=1, keepdim=True)
        return torch.where(total > 0, norms / total.clamp_min(torch.finfo(norms.dtype).tiny), 0.0)

    def row_signs(self, labels: Sequence[int], batch: int) -> Tensor:
        """(batch,) +1 / -1 / 0 per row from the chunk labels (chunks are equal, in order)."""
        labels = list(labels) or [COND]
        per = batch // len(labels)
        if per * len(labels) != batch:
            raise RuntimeError(f"batch {batch} does not split into {len(labels)} cond/uncond chunks")
        uncond = {"cond": 0.0, "both": 1.0, "cfg": -1.0}[self.apply_to]
        return torch.tensor([1.0 if lab == COND else uncond for lab in labels]).repeat_interleave(per)

    def apply(self, out: Tensor, labels: Sequence[int], height: int, width: int, block_in: Tensor | None = None
              ) -> Tensor:
        """``out`` (batch, height*width, d) plus the edit on the steered rows (a new tensor; ``out`` kept)."""
        b, n, d = out.shape
        if d != self.sae.d_in:
            raise InputError("sae", f"the SAE reads width {self.sae.d_in} but the block's output has width {d}.",
                             "use an SAE trained on this block of this model family.")
        signs = self.row_signs(labels, b)
        rows = torch.nonzero(signs).flatten()
        if rows.numel() == 0:
            return out
        vec = self.vector.to(out.device, out.dtype)
        sign = signs[rows].to(out.device, out.dtype)[:, None, None]
        z = None
        if self.needs_input:
            if block_in is None:
                raise RuntimeError("this steer needs the block input")
            z = out[rows] - block_in[rows]
        m = self._mask(height, width, out) if self.mode == "spatial" else None
        weights = self._weights(z, m)
        weights = weights.to(out.dtype) if isinstance(weights, Tensor) else weights
        edit = sign * (weights * vec).expand(len(rows), n, d)
        if m is not None and self.suppress:  # the steered rows only: on cfg's uncond half only the addition flips
            steered = (signs[rows] > 0).to(out.device, out.dtype)[:, None, None]
            sae = self._sae_on(out.device)
            with torch.no_grad():
                codes = sae.encode(z.float())[..., self.ids]                                       # (r, n, f)
                contrib = codes @ sae.W_dec.detach()[self.ids]                                       # (r, n, d)
            edit = edit - steered * (1.0 - m) * contrib.to(out.device, out.dtype)
        result = out.clone()
        result[rows] += edit
        return result
