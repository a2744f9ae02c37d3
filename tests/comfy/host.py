"""Real ComfyUI imported in-process (CPU, SDPA attention) and the pack loaded by ComfyUI's own loader."""

from __future__ import annotations

import asyncio
import sys

from ..conftest import ROOT, comfyui_path

_LOADED: dict = {}


def boot() -> dict:
    """Import ComfyUI from COMFYUI_PATH once and load this pack through ``nodes.load_custom_node``.

    Returns ``{"nodes": comfy's nodes module, "pack": the pack module name, "classes": node classes}``.
    """
    if _LOADED:
        return _LOADED
    path = comfyui_path()
    assert path is not None
    sys.path.insert(0, str(path))
    mod = sys.modules.get("nodes")
    if mod is not None and not str(getattr(mod, "__file__", "")).startswith(str(path)):
        del sys.modules["nodes"]  # our pack's nodes/ package must not shadow ComfyUI's nodes.py
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    comfy.cli_args.args.use_pytorch_cross_attention = True
    comfy.cli_args.args.disable_api_nodes = True
    import comfy.model_management  # noqa: F401  (reads the args above)

    import nodes as comfy_nodes

    ok = asyncio.run(comfy_nodes.load_custom_node(str(ROOT)))
    assert ok, "ComfyUI failed to load the pack"
    # ComfyUI's primitive nodes (String (Multiline) feeds one prompt to several nodes in the templates)
    primitives = str(path / "comfy_extras" / "nodes_primitive.py")
    assert asyncio.run(comfy_nodes.load_custom_node(primitives, module_parent="comfy_extras")), primitives
    pack = str(ROOT).replace(".", "_x_")
    _LOADED.update(nodes=comfy_nodes, pack=pack, classes=comfy_nodes.NODE_CLASS_MAPPINGS)
    return _LOADED


def pack_module(name: str):
    """A submodule of the pack as ComfyUI loaded it, e.g. ``pack_module('sliderspace_core.decompose.pca')``."""
    import importlib

    return importlib.import_module(f"{boot()['pack']}.{name}")
