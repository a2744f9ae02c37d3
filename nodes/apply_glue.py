"""Step-gated slider weights on a cloned ModelPatcher (COMFYUI_HOST: verified mechanism).

One keyed APPLY_MODEL wrapper reads the sigma of each model evaluation and opens a gate; a weight
wrapper per target module adds the pre-merged ``Σ sᵢΔWᵢ`` only while the gate is open. All sliders of a
bank are merged ONCE when the node runs, so the per-forward cost is one add per module whatever the
number of sliders. The input MODEL is cloned, never mutated; re-applying replaces, never stacks.
"""

from __future__ import annotations

import comfy.patcher_extension
import torch

from ..sliderspace_core.schedule import SigmaWindow

PACK_KEY = "sliderspace"


class _Gate:
    """Open while the current model evaluation's sigma lies in the window."""

    def __init__(self, window: SigmaWindow) -> None:
        self.window = window
        self.open = False

    def wrapper(self, executor, x, t, *args, **kwargs):
        self.open = self.window.contains(float(t.max()))
        try:
            return executor(x, t, *args, **kwargs)
        finally:
            self.open = False


def _weight_fn(gate: _Gate, delta: torch.Tensor):
    cache: dict[tuple, torch.Tensor] = {}

    def fn(weight: torch.Tensor) -> torch.Tensor:
        if not gate.open:
            return weight
        key = (weight.dtype, weight.device)
        d = cache.get(key)
        if d is None:
            d = cache[key] = delta.to(weight.device, weight.dtype)
        return weight + d

    return fn


def apply_deltas(model, deltas: dict[str, torch.Tensor], start_percent: float, end_percent: float,
                 tag: str = "bank"):
    """A clone of ``model`` whose ``diffusion_model.<module>.weight`` gain ``deltas`` inside the window.

    ``tag`` names this application: applying again with the same tag replaces the earlier one.
    """
    m = model.clone()
    ms = m.get_model_object("model_sampling")
    window = SigmaWindow.from_percents(ms.percent_to_sigma, start_percent, end_percent)
    key = f"{PACK_KEY}:{tag}"
    apply_type = comfy.patcher_extension.WrappersMP.APPLY_MODEL
    m.remove_wrappers_with_key(apply_type, key)
    for name in list(m.weight_wrapper_patches):  # drop our earlier weight wrappers for this tag
        kept = [f for f in m.weight_wrapper_patches[name] if getattr(f, "sliderspace_key", None) != key]
        m.weight_wrapper_patches[name] = kept
    if window.empty or not deltas:
        return m  # nothing can switch on: vanilla, bit for bit
    gate = _Gate(window)
    m.add_wrapper_with_key(apply_type, key, gate.wrapper)
    for name, delta in deltas.items():
        fn = _weight_fn(gate, delta)
        fn.sliderspace_key = key
        m.add_weight_wrapper(f"diffusion_model.{name}.weight", fn)
    return m
