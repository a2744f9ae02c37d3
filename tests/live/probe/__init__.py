"""A test-only custom node the live test server loads beside the pack (never shipped, never in the pack).

``ReliabilityProbe`` takes a MODEL and reports, as UI text (JSON), what a leak would grow: the patcher's
wrappers, callbacks, weight wrappers, patches and object patches, the torch hooks and comfy weight
functions on the diffusion model's modules, the live ModelPatcher objects in the process, and a checksum
of the diffusion model's weights (an in-place edit left behind changes it). It always re-runs.
"""

from __future__ import annotations

import gc
import hashlib
import json


def _count(tree: object) -> int:
    """Callables held in nested dicts / lists (wrappers and callbacks are stored that way)."""
    if isinstance(tree, dict):
        return sum(_count(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return sum(_count(v) for v in tree)
    return 1 if callable(tree) else 0


def _hooks_and_functions(module) -> tuple[int, int]:
    hooks = functions = 0
    for m in module.modules():
        hooks += len(m._forward_hooks) + len(m._forward_pre_hooks) + len(getattr(m, "_backward_hooks", {}))
        functions += len(getattr(m, "weight_function", []) or []) + len(getattr(m, "bias_function", []) or [])
    return hooks, functions


def _checksum(module) -> str:
    h = hashlib.sha256()
    for name, p in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def measure(model) -> dict:
    import comfy.model_patcher

    gc.collect()
    patchers = sum(1 for o in gc.get_objects() if isinstance(o, comfy.model_patcher.ModelPatcher))
    dm = model.model.diffusion_model
    hooks, functions = _hooks_and_functions(dm)
    options = model.model_options
    return {
        "wrappers": _count(model.wrappers) + _count(options.get("transformer_options", {}).get("wrappers", {})),
        "callbacks": _count(model.callbacks) + _count(options.get("transformer_options", {}).get("callbacks", {})),
        "weight_wrappers": _count(model.weight_wrapper_patches),
        "patches": sum(len(v) for v in model.patches.values()),
        "object_patches": len(model.object_patches),
        "model_options_keys": len(json.dumps(options, default=lambda o: "<obj>")),
        "module_hooks": hooks,
        "weight_functions": functions,
        "live_model_patchers": patchers,
        "weights": _checksum(dm),
    }


class ReliabilityProbe:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",)}, "optional": {"tag": ("STRING", {"default": ""})}}

    RETURN_TYPES = ()
    FUNCTION = "probe"
    OUTPUT_NODE = True
    CATEGORY = "_testing"

    @classmethod
    def IS_CHANGED(cls, model, tag=""):
        return float("nan")  # always re-run

    def probe(self, model, tag=""):
        return {"ui": {"text": [json.dumps({"tag": tag, **measure(model)})]}}


NODE_CLASS_MAPPINGS = {"ReliabilityProbe": ReliabilityProbe}
