"""Where the pack's own compute runs (SAE training, ELROND's SAE): ComfyUI's torch device, after ComfyUI's
memory management has made room there, and where results are kept afterwards (ComfyUI's intermediate
device, as its own nodes keep latents and images). The core never picks a device: it takes one."""

from __future__ import annotations

import comfy.model_management as mm
import torch


def compute_device(memory_required: int) -> torch.device:
    """ComfyUI's torch device (the CPU under ``--cpu``), with ``memory_required`` bytes plus ComfyUI's inference
    reserve freed there first: loaded models the graph is not using now are offloaded, as before sampling."""
    device = mm.get_torch_device()
    mm.free_memory(int(memory_required) + mm.minimum_inference_memory(), device)
    return device


def result_device() -> torch.device:
    """Where node outputs that are not models live between nodes (ComfyUI's intermediate device)."""
    return torch.device(mm.intermediate_device())
