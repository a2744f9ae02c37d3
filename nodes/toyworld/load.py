"""Load ToyWorld: the pack's tiny SD-shaped world (no download) as MODEL, CLIP, VAE and image encoder."""

from __future__ import annotations

from comfy_api.latest import io

from ...toyworld.text import CAPTION_WORDS
from .. import sockets as S
from ..glue.toyworld import load_toyworld
from ..glue.ui import node_errors


class LoadToyWorld(io.ComfyNode):
    NAME = "Load ToyWorld"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpaceLoadToyWorld", display_name=cls.NAME, category=S.TOYWORLD_CATEGORY,
            description="ToyWorld: a 32×32 pixel-space text-to-image model trained by this project (0.8 M "
                        "parameters, shipped with the pack) whose images have known factors — shape, hue, size, "
                        "x, y, background. Every pack node runs on it without a download. Words it knows: "
                        + ", ".join(CAPTION_WORDS) + ". Sample at 32×32 pixels: Empty Latent Image "
                        "256×256 (ComfyUI divides by 8; cut to 3 pixel channels), euler/karras, ~16 steps, "
                        "cfg ~2; use CLIP Text Encode with an empty prompt as the negative.",
            inputs=[],
            outputs=[io.Model.Output(display_name="MODEL"), io.Clip.Output(display_name="CLIP"),
                     io.Vae.Output(display_name="VAE"), S.ImageEncoder.Output(display_name="encoder")],
        )

    @classmethod
    def execute(cls) -> io.NodeOutput:
        with node_errors(cls.NAME):
            return io.NodeOutput(*load_toyworld())
