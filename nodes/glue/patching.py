"""Step-gated slider weights on a cloned ModelPatcher (COMFYUI_HOST: verified mechanism).

One keyed APPLY_MODEL wrapper reads the sigma of each model evaluation and opens a gate; a weight
wrapper per target module adds the pre-merged ``Σ sᵢΔWᵢ`` only while the gate is open. All sliders of a
bank are merged ONCE when the node runs, so the per-forward cost is one add per module whatever the
number of sliders. The input MODEL is cloned, never mutated. Each application has a key (the node): the
same key applied again replaces its earlier sliders, never stacks; different keys add up, each gated by
its own window (one shared in-place merger holds every key's plain-float deltas).
"""

from __future__ import annotations

import comfy.patcher_extension
import torch

from ...sliderspace_core.common.lowrank import Factors, WeightMerge, dense, lora_hook, lora_scale
from ...sliderspace_core.common.schedule import SigmaWindow

PACK_KEY = "sliderspace"
"""The one prefix of every wrapper, callback and patch key the pack registers (weights here, hooks in hooks.py)."""


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


def _weight_fn(gate: _Gate, up: torch.Tensor, down: torch.Tensor):
    """Adds ``up @ down`` while the gate is open; the dense delta is built once per device/dtype, on use
    (only the low-rank factors are held until then)."""
    cache: dict[tuple, torch.Tensor] = {}

    def fn(weight: torch.Tensor) -> torch.Tensor:
        if not gate.open:
            return weight
        key = (weight.dtype, weight.device)
        d = cache.get(key)
        if d is None:
            d = cache[key] = dense((up, down), weight)
        return weight + d

    return fn


APPLY = comfy.patcher_extension.WrappersMP.APPLY_MODEL
OUTER = comfy.patcher_extension.WrappersMP.OUTER_SAMPLE


def _clone_for(model, start_percent: float, end_percent: float, tag: str):
    """A clone with this tag's earlier APPLY_MODEL wrapper removed, its sigma window, and its key."""
    m = model.clone()
    ms = m.get_model_object("model_sampling")
    window = SigmaWindow.from_percents(ms.percent_to_sigma, start_percent, end_percent)
    key = f"{PACK_KEY}:{tag}"
    m.remove_wrappers_with_key(APPLY, key)
    return m, window, key


MERGEABLE = (torch.float32, torch.float16, torch.bfloat16)
MERGE_KEY = f"{PACK_KEY}:merge"


class _InPlaceMerge:
    """Merge-once for every slider node on one model: at each evaluation the nodes whose window holds the
    sigma are the active set; when that set changes, the originals are copied back bit for bit and the
    active nodes' dense deltas added in place (in node order). When sampling ends for any reason the
    originals come back. Zero cost per forward. Used for plain float weights; quantized ones take the
    weight-wrapper path instead. ``entries``: node key → (window, module → (up, down)); never mutated."""

    def __init__(self, entries: dict[str, tuple[SigmaWindow, dict[str, Factors]]]) -> None:
        self.entries = entries
        self.merge = WeightMerge()
        self.active: tuple[str, ...] = ()
        self.model = None

    def _set(self, active: tuple[str, ...]) -> None:
        if active == self.active or self.model is None:
            return
        self.merge.restore()
        if active:
            dm = self.model.diffusion_model
            edits = [self.entries[k][1] for k in active]
            self.merge.merge({n: dm.get_submodule(n).weight for e in edits for n in e}, *edits)
        self.active = active

    def apply_wrapper(self, executor, x, t, *args, **kwargs):
        self.model = executor.class_obj
        sigma = float(t.max())
        self._set(tuple(k for k, (window, _) in self.entries.items() if window.contains(sigma)))
        return executor(x, t, *args, **kwargs)

    def outer_wrapper(self, executor, *args, **kwargs):
        try:
            return executor(*args, **kwargs)
        finally:
            self._set(())


def _merge_entries(model) -> dict:
    """The in-place entries already on ``model`` (from slider nodes upstream), as a new dict."""
    for w in model.get_wrappers(APPLY, MERGE_KEY):
        owner = getattr(w, "__self__", None)
        if isinstance(owner, _InPlaceMerge):
            return dict(owner.entries)
    return {}


def _mergeable(model, name: str) -> bool:
    w = model.get_model_object(f"diffusion_model.{name}").weight
    return type(w) in (torch.nn.Parameter, torch.Tensor) and w.dtype in MERGEABLE


def apply_deltas(model, deltas: dict[str, tuple[torch.Tensor, torch.Tensor]], start_percent: float,
                 end_percent: float, tag: str = "bank"):
    """A clone of ``model`` whose ``diffusion_model.<module>.weight`` gain ``up @ down`` inside the window.

    ``deltas``: module → ``(up [out, R], down [R, in])`` with every scale folded in (``merge_sliders``).
    ``tag`` names this application: applying again with the same tag replaces the earlier one; other tags
    (other nodes) keep theirs, and all add up, each inside its own window.
    """
    m, window, key = _clone_for(model, start_percent, end_percent, tag)
    for name in list(m.weight_wrapper_patches):  # drop our earlier weight wrappers for this tag
        kept = [f for f in m.weight_wrapper_patches[name] if getattr(f, "sliderspace_key", None) != key]
        m.weight_wrapper_patches[name] = kept
    entries = _merge_entries(m)
    entries.pop(key, None)
    if not window.empty and deltas:
        inplace = {n: f for n, f in deltas.items() if _mergeable(m, n)}
        wrapped = {n: f for n, f in deltas.items() if n not in inplace}
        if inplace:
            entries[key] = (window, inplace)
        if wrapped:
            gate = _Gate(window)
            m.add_wrapper_with_key(APPLY, key, gate.wrapper)
            for name, (up, down) in wrapped.items():
                fn = _weight_fn(gate, up, down)
                fn.sliderspace_key = key
                m.add_weight_wrapper(f"diffusion_model.{name}.weight", fn)
    m.remove_wrappers_with_key(APPLY, MERGE_KEY)
    m.remove_wrappers_with_key(OUTER, MERGE_KEY)
    if entries:  # no entries: nothing can switch on, vanilla bit for bit
        merge = _InPlaceMerge(entries)
        m.add_wrapper_with_key(APPLY, MERGE_KEY, merge.apply_wrapper)
        m.add_wrapper_with_key(OUTER, MERGE_KEY, merge.outer_wrapper)
    return m


class _PerItemSliders:
    """Batch item ``j`` gets the sliders ``subset(j)`` (activation-space hooks, attached per evaluation)."""

    def __init__(self, model, bank, window: SigmaWindow, subset) -> None:
        self.model, self.window, self.subset = model, window, subset
        self.names = bank.modules
        self.down = {n: torch.stack([s.down[n].float() for s in bank.sliders]) for n in self.names}
        self.up = {n: torch.stack([s.up[n].float() * lora_scale(s.alpha, s.down[n].shape[0])
                               for s in bank.sliders]) for n in self.names}
        self._items: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._cache: dict[tuple, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}

    def _item(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        if j not in self._items:
            sub = sorted(self.subset(j).items())
            self._items[j] = (torch.tensor([i for i, _ in sub]), torch.tensor([s for _, s in sub]))
        return self._items[j]

    def _factors(self, n_rows: int, batch: int, device) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per-row ``(down [rows, k·r, in], up [rows, out, k·r])`` on ``device``; the layout repeats every
        step, so it is built once per (rows, batch, device)."""
        key = (n_rows, batch, str(device))
        if key not in self._cache:
            rows = [self._item(r % batch) for r in range(n_rows)]
            idx = torch.stack([i for i, _ in rows])                     # [rows, k]
            scale = torch.stack([s for _, s in rows]).float()           # [rows, k]
            out = {}
            for name in self.names:
                d, u = self.down[name], self.up[name]
                k, r = idx.shape[1], d.shape[1]
                down = d[idx].reshape(n_rows, k * r, -1)
                up = (u[idx] * scale[:, :, None, None]).permute(0, 2, 1, 3).reshape(n_rows, u.shape[1], k * r)
                out[name] = (down.to(device), up.to(device))
            self._cache[key] = out
        return self._cache[key]

    def wrapper(self, executor, x, t, c_concat, c_crossattn, control, transformer_options, **kwargs):
        if not self.window.contains(float(t.max())):
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        chunks = max(1, len(transformer_options.get("cond_or_uncond", [0])))
        factors = self._factors(x.shape[0], x.shape[0] // chunks, x.device)
        dm = self.model.model.diffusion_model
        handles = [dm.get_submodule(name).register_forward_hook(lora_hook(lambda x, f=factors[name]: f))
                   for name in self.names]
        try:
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        finally:
            for h in handles:
                h.remove()


def apply_per_item(model, bank, subset, start_percent: float, end_percent: float, tag: str = "sparse"):
    """A clone of ``model`` where batch item ``j`` runs with sliders ``subset(j) -> {index: scale}``."""
    m, window, key = _clone_for(model, start_percent, end_percent, tag)
    if not window.empty:
        m.add_wrapper_with_key(APPLY, key, _PerItemSliders(m, bank, window, subset).wrapper)
    return m
