"""Exploration nodes: Slider Grid (one seed, sliders × scales), Label Bank, Diversity Score."""

from __future__ import annotations

import torch
from comfy_api.latest import io, ui

from ...sliderspace_core.common.drawing import compose_grid
from ...sliderspace_core.common.encoders import check_finite, embed_in_batches
from ...sliderspace_core.common.metrics import diversity
from ...sliderspace_core.sliderspace.grid import grid_cells, grid_positions, parse_scale_list, parse_slider_list
from ...sliderspace_core.sliderspace.labels import parse_labels, with_labels
from .. import sockets as S
from ..glue.encoders import pick_encoder
from ..glue.family import check_bank_for_model
from ..glue.sampling import render_cells
from ..glue.ui import Progress, node_errors


def _row_label(bank, i: int) -> str:
    label = bank.sliders[i].label
    return f"{i}: {label}" if label else f"slider {i}"


class SliderGrid(io.ComfyNode):
    NAME = "SliderSpace Slider Grid"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpaceSliderGrid", display_name=cls.NAME, category=S.CATEGORY,
            description="One image per slider and scale from the same seed: rows are sliders, columns scales. "
                        "The scale-0 column (no slider) is sampled once and shared by every row.",
            inputs=[
                io.Model.Input("model"),
                io.Vae.Input("vae"),
                S.Bank.Input("bank"),
                io.Conditioning.Input("positive"),
                io.Conditioning.Input("negative"),
                io.String.Input("sliders", default="0,1,2,3",
                                tooltip="Slider indices for the rows, e.g. '0,1,2', '0-7' or 'all'."),
                io.String.Input("scales", default="-2, -1, 0, 1, 2",
                                tooltip="Scales for the columns (the paper explores ±2; 0 = no slider)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Every cell uses this seed, so cells differ only by the slider."),
                *S.sampling_inputs(),
                io.Float.Input("start_percent", default=0.2, min=0.0, max=1.0, step=0.01,
                               tooltip="Sliders switch on at this point of the schedule (keeps the composition)."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01, optional=True,
                               tooltip="Sliders switch off at this point of the schedule (1: on to the end), as in "
                                       "Apply Slider Bank; a late end keeps the fine detail of the plain image."),
            ],
            outputs=[io.Image.Output(display_name="grid"),
                     io.Image.Output(display_name="cells", tooltip="Every grid position as a batch, row-major.")],
        )

    @classmethod
    def execute(cls, model, vae, bank, positive, negative, sliders, scales, seed, steps, cfg, sampler_name,
                scheduler, width, height, start_percent, end_percent=1.0) -> io.NodeOutput:
        with node_errors(cls.NAME):
            check_bank_for_model(bank, model)
            rows = parse_slider_list(sliders, len(bank))
            cols = parse_scale_list(scales)
            rendered = render_cells(model, vae, bank, grid_cells(rows, cols), positive, negative, seed, steps,
                                    cfg, sampler_name, scheduler, width, height, start_percent, end_percent)
            positions = grid_positions(rows, cols)
            images = {pos: rendered[cell] for pos, cell in positions.items()}
            grid = compose_grid(images, [_row_label(bank, i) for i in rows],
                                ["0" if s == 0 else f"{s:+g}" for s in cols])
            cells = torch.stack([images[pos] for pos in sorted(positions)])
        return io.NodeOutput(grid, cells)


class LabelBank(io.ComfyNode):
    NAME = "SliderSpace Label Bank"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpaceLabelBank", display_name=cls.NAME, category=S.CATEGORY,
            description="Names sliders (the names appear in the grid and in saved banks and LoRAs). Returns a "
                        "new bank; the input bank is unchanged.",
            inputs=[
                S.Bank.Input("bank"),
                io.String.Input("labels", multiline=True, default="",
                                tooltip="'0: smiling, 3: older', or one label per line in slider order (an "
                                        "empty line keeps that slider's label)."),
            ],
            outputs=[S.Bank.Output(display_name="bank")],
        )

    @classmethod
    def execute(cls, bank, labels) -> io.NodeOutput:
        with node_errors(cls.NAME):
            return io.NodeOutput(with_labels(bank, parse_labels(labels, len(bank))))


class DiversityScore(io.ComfyNode):
    NAME = "SliderSpace Diversity Score"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpaceDiversityScore", display_name=cls.NAME, category=S.CATEGORY,
            description="Mean pairwise distance (1 − cos) between the images' CLIP embeddings: higher = more "
                        "diverse (the papers' diversity, with a CLIP image encoder instead of DreamSim).",
            is_output_node=True,
            inputs=[
                io.Image.Input("images", tooltip="A batch of at least 2 images."),
                io.ClipVision.Input("clip_vision", optional=True),
                S.ImageEncoder.Input("encoder", optional=True, tooltip="open_clip encoder instead of clip_vision."),
                io.Int.Input("batch_size", default=16, min=1, max=4096, tooltip="Images embedded at once."),
            ],
            outputs=[io.Float.Output(display_name="diversity"), io.String.Output(display_name="summary")],
        )

    @classmethod
    def execute(cls, images, batch_size, clip_vision=None, encoder=None) -> io.NodeOutput:
        with node_errors(cls.NAME):
            enc = pick_encoder(clip_vision, encoder)
            n = int(images.shape[0])
            check_finite(images, "images", "the images")
            vectors = embed_in_batches(images, lambda x: x, enc, batch_size, on_batch=Progress(n),
                                       input_name="images")
            score = diversity(vectors)
            text = f"diversity {score:.4f} over {n} images (encoder {enc.encoder_id})"
        return io.NodeOutput(score, text, ui=ui.PreviewText(text))


__all__ = ["SliderGrid", "LabelBank", "DiversityScore"]
