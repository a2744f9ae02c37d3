"""A concept SAE: the shared TopK SAE plus what steering needs — its block and each feature's typical value.

Files are the shared SAE format (:func:`~sliderspace_core.decompose.topk_sae.save_sae`) with the block and
source in the header metadata and the per-feature statistics as float32 tensors (exact: steering after a
save / load round trip is bit for bit the same), so one loader reads both SAEs trained here and imported
sdxl-unbox ones. Files of earlier versions, with the statistics as 6-digit JSON text in the header, still load.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..common.errors import InputError
from ..decompose.topk_sae import TopKSAE, accumulator_dtype, read_sae, save_sae

META_BLOCK = "concepts.block"
META_SOURCE = "concepts.source"
META_MEAN = "concepts.feature_mean"
META_STD = "concepts.feature_std"


@dataclass
class ConceptSAE:
    """The object on the SLIDERSPACE_SAE socket."""

    sae: TopKSAE
    """The TopK SAE (encode / decode / decoder directions)."""
    block: str
    """ComfyUI path of the block whose residual update it reads, e.g. ``output_blocks.1.1``."""
    feature_mean: Tensor
    """(n_latents,) typical activation of each feature: the mean of its code over the rows where it fires
    (sdxl-unbox: its ``mean.pt``). Global steering scales strengths by it."""
    feature_std: Tensor
    """(n_latents,) spread of each feature's code where it fires (sdxl-unbox: ``std.pt``)."""
    source: str = "trained"
    """``trained`` (SAE Train) or ``sdxl-unbox:<hookpoint>`` (imported)."""

    @property
    def d(self) -> int:
        return self.sae.d_in

    @property
    def n_features(self) -> int:
        return self.sae.n_latents

    def describe(self) -> str:
        return (f"TopK SAE ({self.source}) on {self.block}: width {self.d}, {self.n_features} features, "
                f"k {self.sae.k}")


def feature_stats(sae: TopKSAE, chunks: Iterable[Tensor], chunk_rows: int = 65536) -> tuple[Tensor, Tensor]:
    """Per feature: mean and std of its code over the rows where it fires (0 where it never fires), computed and
    returned on the SAE's device."""
    n, dev = sae.n_latents, sae.W_enc.device
    acc = accumulator_dtype(dev)
    s1, s2, cnt = (torch.zeros(n, dtype=acc, device=dev) for _ in range(3))
    with torch.no_grad():  # summed on the SAE's device: chunks are streamed there, nothing comes back per chunk
        for chunk in chunks:
            for c in chunk.reshape(-1, sae.d_in).split(chunk_rows):
                vals, idx = sae.encode_topk(c.to(dev, torch.float32))
                i, v = idx.reshape(-1), vals.reshape(-1).to(acc)  # kept codes that did not fire are 0: add nothing
                s1.index_add_(0, i, v)
                s2.index_add_(0, i, v * v)
                cnt.index_add_(0, i, (v > 0).to(acc))
    safe = cnt.clamp_min(1.0)
    mean = s1 / safe
    std = (s2 / safe - mean * mean).clamp_min(0.0).sqrt()
    return mean.float(), std.float()


def save_concept_sae(c: ConceptSAE, path: str, overwrite: bool = False, input_name: str = "filename") -> None:
    """Write ``c`` as a shared-format SAE file: block and source in its header, statistics as tensors."""
    meta = {META_BLOCK: c.block, META_SOURCE: c.source}
    save_sae(c.sae, path, metadata=meta, overwrite=overwrite, input_name=input_name,
             per_feature={META_MEAN: c.feature_mean.float(), META_STD: c.feature_std.float()})


def _text_stats(meta: dict, key: str, input_name: str) -> Tensor:
    """Statistics an earlier version wrote as JSON text in the header."""
    try:
        return torch.tensor(json.loads(meta.pop(key)), dtype=torch.float32)
    except (KeyError, TypeError, ValueError, OverflowError, RecursionError, RuntimeError):
        raise InputError(input_name, f"the SAE file's {key} is missing or damaged.", "save the SAE again.") from None


def load_concept_sae(path: str, input_name: str = "sae_file") -> ConceptSAE:
    """Read a file written by :func:`save_concept_sae`; an SAE without a block (e.g. ELROND's) is refused."""
    sae, tensors = read_sae(path, input_name, per_feature=(META_MEAN, META_STD))
    meta = dict(sae.metadata)
    if META_BLOCK not in meta:
        raise InputError(input_name, "this SAE file names no denoiser block (it is not an SAE-concepts SAE).",
                         "choose a file saved by SAE Save or imported from sdxl-unbox.")
    stats = []
    for key in (META_MEAN, META_STD):
        t = tensors[key] if key in tensors else _text_stats(meta, key, input_name)
        meta.pop(key, None)
        if t.shape != (sae.n_latents,) or not bool(torch.isfinite(t).all()):
            raise InputError(input_name, f"the SAE file's {key} does not hold {sae.n_latents} finite values.",
                             "save the SAE again.")
        stats.append(t)
    block, source = meta.pop(META_BLOCK), meta.pop(META_SOURCE, "trained")
    sae.metadata = meta
    return ConceptSAE(sae, block, stats[0], stats[1], source)
