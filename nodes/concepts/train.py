"""SAE Train, Save SAE, Load SAE and Import sdxl-unbox SAE."""

from __future__ import annotations

import os

import folder_paths
import torch
from comfy_api.latest import io

from ...sliderspace_core.common.drawing import loss_plot
from ...sliderspace_core.common.errors import InputError
from ...sliderspace_core.common.safefile import SUFFIX
from ...sliderspace_core.concepts.sae import ConceptSAE, feature_stats, load_concept_sae, save_concept_sae
from ...sliderspace_core.concepts.unbox import load_unbox
from ...sliderspace_core.decompose.topk_sae import TopKSAEConfig
from ...sliderspace_core.decompose.topk_train import train_sae
from .. import sockets as S
from ..glue.device import compute_device, result_device
from ..glue.folders import NONE_FOUND, SAE_FOLDER, file_fingerprint, full_path, listed, save_new
from ..glue.ui import Progress, node_errors

UNBOX_CONFIG = "/final/config.json"


def training_plot(losses: list[float], dead: list[float], ev: float, dead_now: float) -> torch.Tensor:
    """IMAGE: the loss (normalised MSE = 1 - explained variance) and the dead-latent share over training."""
    top = loss_plot(losses, f"SAE loss (1 - explained variance)   final EV {ev:.3f}")
    bottom = loss_plot(dead, f"dead latents (share not fired this epoch)   final {dead_now:.3f}")
    return torch.cat([top, bottom], dim=1)


class SAETrain(io.ComfyNode):
    NAME = "SAE Train"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpaceSAETrain", display_name=cls.NAME, category=S.CONCEPTS_CATEGORY,
            description="Trains a TopK sparse autoencoder (z = TopK(ReLU(W_enc(x - b) + b_lat)), unit-norm decoder, "
                        "AuxK against dead latents) on collected activations, streaming the shards.",
            inputs=[
                S.Activations.Input("activations"),
                io.Int.Input("width", default=0, min=0, max=1 << 20,
                             tooltip="Number of features; 0 = 4 x the block width (the paper's 5120 for 1280)."),
                io.Int.Input("k", default=10, min=1, max=4096, tooltip="Features active per location (10-20)."),
                io.Int.Input("auxk", default=256, min=0, max=1 << 16, tooltip="AuxK dead latents (0 = off)."),
                io.Float.Input("lr", default=1e-4, min=1e-7, max=1.0, step=1e-5, round=1e-7,
                               tooltip="Adam learning rate (papers: 1e-4)."),
                io.Int.Input("batch_size", default=4096, min=1, max=1 << 20,
                             tooltip="Rows per optimiser step (papers: 4096)."),
                io.Int.Input("epochs", default=1, min=1, max=10000,
                             tooltip="Passes over the collected rows. Optimiser steps = rows / batch_size x epochs: "
                                     "with few rows, use more epochs."),
                io.Int.Input("seed", default=0, min=0, max=2**63 - 1,
                             tooltip="Initialisation and the shuffling of rows; same seed, same SAE."),
            ],
            outputs=[S.SAE.Output(display_name="sae"), io.Image.Output(display_name="plot"),
                     io.String.Output(display_name="summary")],
        )

    @classmethod
    def execute(cls, activations, width, k, auxk, lr, batch_size, epochs, seed) -> io.NodeOutput:
        with node_errors(cls.NAME):
            cfg = TopKSAEConfig(k=k, expansion=4.0, n_latents=width or None, auxk=auxk or None, lr=lr,
                                batch_size=batch_size, epochs=epochs, seed=seed)
            cfg.validate(activations.d)
            steps = max(1, -(-activations.rows // batch_size)) * epochs
            progress = Progress(steps, "SAE training steps")
            dead: list[float] = []

            def report(step: int, total: int | None, snap: dict) -> None:
                dead.append(float(snap["dead_fraction"]))
                progress(step, total or steps)

            device = compute_device(cfg.training_bytes(activations.d))
            with torch.inference_mode(False):
                sae, stats = train_sae(activations, cfg, progress=report, total_rows=activations.rows,
                                       device=device, check=progress.check)
                mean, std = feature_stats(sae, activations)
            home = result_device()  # the trained SAE leaves the GPU to the models; steering copies it back there
            sae.metadata = {"family": activations.meta.get("family", "")}
            csae = ConceptSAE(sae.eval().to(home), activations.block, mean.to(home), std.to(home))
            plot = training_plot(stats.loss, dead, stats.explained_variance, stats.dead_fraction)
            text = (f"{csae.describe()}\nexplained variance {stats.explained_variance:.4f}, dead latents "
                    f"{100 * stats.dead_fraction:.1f} %, {stats.steps} steps, {stats.rows} rows, "
                    f"{stats.rows_per_second:.0f} rows/s")
        return io.NodeOutput(csae, plot, text)


class SaveSAE(io.ComfyNode):
    NAME = "SAE Save"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpaceSaveSAE", display_name=cls.NAME, category=S.CONCEPTS_CATEGORY,
            description=f"Saves an SAE (weights, config, block, feature statistics) as .safetensors in "
                        f"models/{SAE_FOLDER}. Never overwrites: a counter is added.",
            is_output_node=True,
            inputs=[S.SAE.Input("sae"), io.String.Input("filename_prefix", default="sae",
                                                        tooltip="File name in models/sae; _00001 etc. is appended, "
                                                                "never overwriting.")],
            outputs=[io.String.Output(display_name="filename")],
        )

    @classmethod
    def execute(cls, sae, filename_prefix) -> io.NodeOutput:
        with node_errors(cls.NAME):
            return io.NodeOutput(save_new(SAE_FOLDER, filename_prefix, lambda path: save_concept_sae(sae, path)))


class LoadSAE(io.ComfyNode):
    NAME = "SAE Load"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpaceLoadSAE", display_name=cls.NAME, category=S.CONCEPTS_CATEGORY,
            description=f"Loads an SAE saved by SAE Save from models/{SAE_FOLDER} (safetensors only).",
            inputs=[io.Combo.Input("file", options=listed(SAE_FOLDER, SUFFIX),
                                   tooltip="An SAE in models/sae (press R after saving a new one).")],
            outputs=[S.SAE.Output(display_name="sae"), io.String.Output(display_name="summary")],
        )

    @classmethod
    def execute(cls, file) -> io.NodeOutput:
        with node_errors(cls.NAME):
            path = full_path(SAE_FOLDER, file, "save an SAE with SAE Save (or copy one there) and refresh.")
            csae = load_concept_sae(path, "file")
        return io.NodeOutput(csae, csae.describe())

    @classmethod
    def fingerprint_inputs(cls, file):
        return file_fingerprint(SAE_FOLDER, file)


def unbox_choices() -> list[str]:
    found = [f[: -len("/config.json")] for f in folder_paths.get_filename_list(SAE_FOLDER)
             if f.replace("\\", "/").endswith(UNBOX_CONFIG)]
    return found or [NONE_FOUND]


class ImportUnboxSAE(io.ComfyNode):
    NAME = "SAE Import sdxl-unbox"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpaceImportUnboxSAE", display_name=cls.NAME, category=S.CONCEPTS_CATEGORY,
            description=f"Imports a published sdxl-unbox SAE: put its '<hookpoint>_k.._hidden..' folder (with "
                        f"final/config.json, state_dict.pth, mean.pt, std.pt) in models/{SAE_FOLDER}. The .pth/.pt "
                        "files are read with torch.load(weights_only=True): pickled code is refused.",
            inputs=[io.Combo.Input("checkpoint", options=unbox_choices(),
                                   tooltip="A '<run>/final' folder found in models/sae."),
                    io.String.Input("folder", default="", optional=True,
                                    tooltip="Or an absolute path to the run folder (overrides checkpoint).")],
            outputs=[S.SAE.Output(display_name="sae"), io.String.Output(display_name="summary")],
        )

    @classmethod
    def execute(cls, checkpoint, folder="") -> io.NodeOutput:
        with node_errors(cls.NAME):
            if folder and folder.strip():
                path, name = folder, "folder"
            else:
                cfg = folder_paths.get_full_path(SAE_FOLDER, checkpoint + "/config.json") \
                    if checkpoint and checkpoint != NONE_FOUND else None
                if not cfg:
                    raise InputError("checkpoint", f"{checkpoint!r} is not in models/{SAE_FOLDER}.",
                                     "copy the sdxl-unbox run folder there and refresh, or type its path.")
                path, name = os.path.dirname(cfg), "checkpoint"
            csae = load_unbox(path, name)
            csae.sae.metadata["family"] = "SDXL"
        return io.NodeOutput(csae, csae.describe())
