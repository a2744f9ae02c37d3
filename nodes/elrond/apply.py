"""ELROND Apply Directions and ELROND Random Directions: CONDITIONING → CONDITIONING edits of one word's rows.

Only the positive conditioning passed in changes (connect the negative straight to the sampler); its input
tensors are never modified; strength 0 gives tensors equal to the input. Several words compose by chaining.
The prompt is typed once: with no conditioning connected the node encodes ``prompt`` with ``clip`` itself; a
connected conditioning must be what ``clip`` makes of ``prompt`` (an edited or combined one of that prompt
passes), so the word's rows are never looked up in another text.
"""

from __future__ import annotations

import logging

from comfy_api.latest import io

from ...sliderspace_core.elrond.directions import check_directions_for
from ...sliderspace_core.elrond.edits import (
    RandomSpec,
    add_to_rows,
    combine,
    describe_draws,
    parse_strengths,
    random_offsets,
    transfer_note,
)
from .. import sockets as S
from ..glue.conditioning import conditioning_space, prompt_conditioning, token_rows
from ..glue.ui import node_errors

log = logging.getLogger("sliderspace.elrond")


def edit_conditioning(conditioning: list, clip, prompt: str, word: str, directions, offset) -> list:
    """A new CONDITIONING: ``offset`` ((D,) or (B, D)) added to ``word``'s rows of every entry."""
    out = []
    for t, extras in conditioning:
        check_directions_for(directions, conditioning_space(clip, t.shape[-1]), int(t.shape[-1]))
        rows = token_rows(clip, prompt, word, n_rows=int(t.shape[1]))
        out.append([add_to_rows(t, rows, offset), dict(extras)])
    return out


def edit_info(node: str, conditioning: list, clip, prompt: str, word: str, directions) -> str:
    """What the edit touched, and (logged once) a note when the word is not the directions' own."""
    rows = token_rows(clip, prompt, word, n_rows=int(conditioning[0][0].shape[1]))
    entries = f"{len(conditioning)} conditioning entr{'y' if len(conditioning) == 1 else 'ies'}"
    lines = [f"{word.strip()!r}: token rows {rows} of {entries}; {directions.n_components} directions"]
    note = transfer_note(str(directions.source.get("word", "")), word)
    if note:
        log.warning("[SliderSpace] %s: %s", node, note)
        lines.append(note)
    return "\n".join(lines)


def _common_inputs() -> list:
    return [
        io.Conditioning.Input("conditioning", optional=True,
                              tooltip="Optional: the POSITIVE conditioning of `prompt` (e.g. an edited or combined "
                                      "one); it must be what `clip` makes of `prompt`. Unconnected: this node "
                                      "encodes `prompt` with `clip` itself."),
        io.Clip.Input("clip", tooltip="The CLIP that encodes the prompt (its tokenizer finds the word)."),
        io.String.Input("prompt", multiline=True, default="a photo of a dog",
                        tooltip="The positive prompt (connect one String node to every prompt input to type it "
                                "once)."),
        io.String.Input("word", default="dog", tooltip="The whole word whose token vectors move (all its pieces)."),
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
            outputs=[io.Conditioning.Output(), io.String.Output(display_name="info")],
        )

    @classmethod
    def execute(cls, clip, prompt, word, directions, strengths, multiplier, conditioning=None) -> io.NodeOutput:
        with node_errors(cls.NAME):
            chosen = {i: s * multiplier for i, s in parse_strengths(strengths, directions.n_components).items()}
            conditioning = prompt_conditioning(clip, prompt, conditioning)
            out = edit_conditioning(conditioning, clip, prompt, word, directions,
                                    combine(directions.components, chosen))
            info = edit_info(cls.NAME, conditioning, clip, prompt, word, directions)
        return io.NodeOutput(out, f"{info}\nstrengths: {chosen}")


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
    def execute(cls, clip, prompt, word, directions, seed, n, min_strength, max_strength, random_sign,
                batch_size, conditioning=None) -> io.NodeOutput:
        with node_errors(cls.NAME):
            spec = RandomSpec(n, min_strength, max_strength, random_sign)
            offsets, draws = random_offsets(directions.components, spec, seed, batch_size)
            conditioning = prompt_conditioning(clip, prompt, conditioning)
            out = edit_conditioning(conditioning, clip, prompt, word, directions, offsets)
            info = edit_info(cls.NAME, conditioning, clip, prompt, word, directions)
        return io.NodeOutput(out, f"{describe_draws(draws, seed)}\n{info}")


__all__ = ["ApplyDirections", "RandomDirections", "edit_conditioning"]
