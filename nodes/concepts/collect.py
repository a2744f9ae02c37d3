"""SAE Collect Activations and SAE List Blocks."""

from __future__ import annotations

import os

import folder_paths
import torch
from comfy_api.latest import io

from ...sliderspace_core.common.safefile import sanitize_name
from .. import sockets as S
from ..glue.capture import WHICH, collect_activations
from ..glue.hooks import describe_blocks
from ..glue.ui import node_errors

ACTIVATIONS_DIR = "sliderspace_activations"
"""Sets are written to <ComfyUI output>/sliderspace_activations/<name>_00001/ (never overwritten)."""


def new_set_folder(name: str) -> str:
    root = os.path.join(folder_paths.get_output_directory(), ACTIVATIONS_DIR)
    os.makedirs(root, exist_ok=True)
    stem = sanitize_name(name, "name")[: -len(".safetensors")]
    i = 1
    while os.path.exists(os.path.join(root, f"{stem}_{i:05d}")):
        i += 1
    return os.path.join(root, f"{stem}_{i:05d}")


class SAEListBlocks(io.ComfyNode):
    NAME = "SAE List Blocks"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpaceSAEListBlocks", display_name=cls.NAME, category=S.CONCEPTS_CATEGORY,
            description="Lists the MODEL's transformer blocks by ComfyUI path with their width; the blocks the "
                        "papers name are marked (SDXL composition: input_blocks.8.1, style: output_blocks.1.1).",
            inputs=[io.Model.Input("model")],
            outputs=[io.String.Output(display_name="blocks")],
        )

    @classmethod
    def execute(cls, model) -> io.NodeOutput:
        with node_errors(cls.NAME):
            return io.NodeOutput(describe_blocks(model))


class SAECollectActivations(io.ComfyNode):
    NAME = "SAE Collect Activations"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpaceSAECollectActivations", display_name=cls.NAME, category=S.CONCEPTS_CATEGORY,
            description="Samples and records a transformer block's residual update (block output - input) at "
                        "every spatial location, with provenance (sigma, cond/uncond, sample). Streams shards "
                        f"to output/{ACTIVATIONS_DIR}/. The sampling itself is unchanged.",
            inputs=[
                io.Model.Input("model"),
                io.Conditioning.Input("positive"),
                io.Conditioning.Input("negative"),
                io.String.Input("block", default="middle_block.1",
                                tooltip="ComfyUI path of the block (SAE List Blocks shows them). SDXL: "
                                        "input_blocks.8.1 composition, output_blocks.1.1 style."),
                io.Combo.Input("capture", options=list(WHICH), default="cond",
                               tooltip="Which CFG half to record."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Record model evaluations from this point of the schedule..."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01, tooltip="...to this one."),
                io.Int.Input("samples", default=8, min=1, max=100000, tooltip="Sampling runs (seed + i)."),
                io.Int.Input("seed", default=0, min=0, max=2**63 - 1, control_after_generate=True,
                             tooltip="Sample i uses seed + i."),
                *S.sampling_inputs(),
                io.Int.Input("spatial_subsample", default=64, min=0, max=1 << 20,
                             tooltip="Locations kept per map, drawn from the seed (0 = all)."),
                io.Combo.Input("store_dtype", options=["float16", "float32"], default="float16",
                               tooltip="Precision of the rows written to disk (float16 halves the size)."),
                io.String.Input("name", default="activations", tooltip="Folder name; _00001 etc. is appended."),
            ],
            outputs=[S.Activations.Output(display_name="activations"), io.String.Output(display_name="summary")],
        )

    @classmethod
    def execute(cls, model, positive, negative, block, capture, start_percent, end_percent, samples, seed, steps,
                cfg, sampler_name, scheduler, width, height, spatial_subsample, store_dtype, name) -> io.NodeOutput:
        with node_errors(cls.NAME):
            folder = new_set_folder(name)
            acts = collect_activations(model, positive, negative, block.strip(), folder, samples, seed, steps, cfg,
                                       sampler_name, scheduler, width, height, capture, start_percent, end_percent,
                                       spatial_subsample, getattr(torch, store_dtype))
        return io.NodeOutput(acts, acts.summary())
