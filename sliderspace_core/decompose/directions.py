"""The directions type every decomposition returns (PCA today; the TopK SAE shares it)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class Directions:
    """K unit directions in one vector space and how much of the data each explains.

    The one result type of every decomposition: PCA of image embeddings (SliderSpace's basis), PCA or a
    TopK SAE of conditioning gradients (ELROND), SAE features of block activations (SAE concepts).
    """

    components: Tensor
    """(K, D) float32, unit rows, in decreasing order of variance (PCA: signs fixed by ``fix_signs``)."""
    explained_variance: Tensor
    """(K,) float64, sample variance (denominator n - 1, as sklearn) along each component."""
    explained_variance_ratio: Tensor
    """(K,) float64, each variance as a share of the TOTAL variance over all D directions."""
    mean: Tensor
    """(D,) float32, the mean that was subtracted (of the normalised rows when ``normalize``)."""
    n_samples: int
    """Number of embeddings the basis was fitted on."""
    space: str = ""
    """The space the directions live in: for SliderSpace the image encoder's id (sliders trained on a
    basis must use the same encoder); for ELROND the conditioning space."""
    method: str = ""
    """How they were found: ``"exact"`` or ``"randomized"`` PCA, or a decomposition's own name."""
    source: dict = field(default_factory=dict)
    """Free-form, JSON-able provenance (e.g. ``normalize``, ``streamed``, ``seed``)."""

    @property
    def encoder_id(self) -> str:
        """SliderSpace's name for :attr:`space`: the image encoder that made the embeddings."""
        return self.space

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    def to_state(self, prefix: str = "basis.") -> tuple[dict[str, Tensor], dict[str, str]]:
        """Split into safetensors parts: contiguous CPU tensors and string metadata."""
        tensors = {f"{prefix}{k}": getattr(self, k).detach().cpu().contiguous() for k in _TENSOR_FIELDS}
        meta = {f"{prefix}n_samples": str(self.n_samples), f"{prefix}encoder_id": self.space,
                f"{prefix}method": self.method, f"{prefix}source": json.dumps(self.source, sort_keys=True)}
        return tensors, meta

    @classmethod
    def from_state(cls, tensors: dict[str, Tensor], metadata: dict[str, str],
                   prefix: str = "basis.") -> Directions:
        """Inverse of :meth:`to_state`."""
        return cls(**{k: tensors[f"{prefix}{k}"] for k in _TENSOR_FIELDS},
                   n_samples=int(metadata[f"{prefix}n_samples"]),
                   space=metadata.get(f"{prefix}encoder_id", ""),
                   method=metadata.get(f"{prefix}method", ""),
                   source=json.loads(metadata.get(f"{prefix}source", "{}")))


_TENSOR_FIELDS = ("components", "explained_variance", "explained_variance_ratio", "mean")
