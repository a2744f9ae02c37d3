"""ELROND Apply Directions and ELROND Random Directions: CONDITIONING → CONDITIONING edits of one word's rows.

Only the positive conditioning passed in changes (connect the negative straight to the sampler); its input
tensors are never modified; strength 0 gives tensors equal to the input. Several words compose by chaining.
"""

from __future__ import annotations

from comfy_api.latest import io

from ...sliderspace_core.elrond.directions import check_directions_for
from ...sliderspace_core.elrond.edits import (
    RandomSpec,
    add_to_rows,
    combine,
    describe_draws,
    parse_strengths,
    random_offsets,
)
from .. import sockets as S
from ..glue.conditioning import conditioning_space, token_rows
from ..glue.ui import node_errors


def edit_conditioning(conditioning: list, clip, prompt: str, word: str, directions, offset) -> list:
    """A new CONDITIONING: ``offset`` ((D,) or (B, D)) added to ``word``'s rows of every entry."""
    out = []
    for t, extras in conditioning:
        check_directions_for(directions, conditioning_space(clip, t.shape[-1]), int(t.shape[-1]))
        rows = token_rows(clip, prompt, word, n_rows=int(t.shape[1]))
        out.append([add_to_rows(t, rows, offset), dict(extras)])
    return out


def _common_inputs() -> list:
    return [
        io.Conditioning.Input("conditioning", tooltip="The POSITIVE conditioning of `prompt`."),
        io.Clip.Input("clip", tooltip="The CLIP that encoded it (its tokenizer finds the word)."),
        io.String.Input("prompt", multiline=True, default="a photo of a dog",
                        tooltip="The exact text that made the conditioning."),
        io.String.Input("word", default="dog", tooltip="The word whose token vectors move (all its pieces)."),
        S.Directions.Input("directions"),
    ]


class ApplyDirections(io.ComfyNode):
    NAME = "ELROND Apply Directions"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ELRONDApplyDirections", display_name=cls.NAME, category=S.ELROND_CATEGORY,
            description="Adds Σ strength·u (unit directions) to the word's conditioning vectors for the whole run. "
                        "Chain several of these for several words.",
            inputs=[*_common_inputs(),
                    io.String.Input("strengths", default="0:30",
                                    tooltip="'index:strength' pairs, e.g. '0:30, 2:-40' (SDXL: ~25-60)."),
                    io.Float.Input("multiplier", default=1.0, min=-100.0, max=100.0, step=0.05,
                                   tooltip="Multiplies every strength.")],
            outputs=[io.Conditioning.Output()],
        )

    @classmethod
    def execute(cls, conditioning, clip, prompt, word, directions, strengths, multiplier) -> io.NodeOutput:
        with node_errors(cls.NAME):
            chosen = {i: s * multiplier for i, s in parse_strengths(strengths, directions.n_components).items()}
            out = edit_conditioning(conditioning, clip, prompt, word, directions,
                                    combine(directions.components, chosen))
        return io.NodeOutput(out)


class RandomDirections(io.ComfyNode):
    NAME = "ELROND Random Directions"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ELRONDRandomDirections", display_name=cls.NAME, category=S.ELROND_CATEGORY,
            description="Diversity: batch item j adds strength·normalise(Σ of n random directions) to the word, drawn "
                        "from seed + j alone (item j = a batch-1 run with seed + j), strength uniform in "
                        "[min_strength, max_strength]. Outputs a conditioning with batch_size items.",
            inputs=[*_common_inputs(),
                    io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                                 tooltip="Batch item j draws its directions and strength from seed + j alone."),
                    io.Int.Input("n", default=3, min=1, max=4096, tooltip="Directions per generation (paper: 3)."),
                    io.Float.Input("min_strength", default=30.0, min=0.0, max=1000.0, step=0.5,
                                   tooltip="Lower end of each item's strength, drawn uniform in [min_strength, "
                                           "max_strength] (paper on SDXL: 30)."),
                    io.Float.Input("max_strength", default=40.0, min=0.0, max=1000.0, step=0.5,
                                   tooltip="Upper end of each item's strength (paper on SDXL: 40)."),
                    io.Boolean.Input("random_sign", default=True, tooltip="Random sign per chosen direction."),
                    io.Int.Input("batch_size", default=1, min=1, max=4096, tooltip="Match your latent batch.")],
            outputs=[io.Conditioning.Output(), io.String.Output(display_name="draws")],
        )

    @classmethod
    def execute(cls, conditioning, clip, prompt, word, directions, seed, n, min_strength, max_strength, random_sign,
                batch_size) -> io.NodeOutput:
        with node_errors(cls.NAME):
            spec = RandomSpec(n, min_strength, max_strength, random_sign)
            offsets, draws = random_offsets(directions.components, spec, seed, batch_size)
            out = edit_conditioning(conditioning, clip, prompt, word, directions, offsets)
        return io.NodeOutput(out, describe_draws(draws, seed))


__all__ = ["ApplyDirections", "RandomDirections", "edit_conditioning"]
