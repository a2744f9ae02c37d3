"""Apply Slider Bank: per-slider scales, a global multiplier, sliders on only inside a sigma window."""

from __future__ import annotations

from comfy_api.latest import io

from ...sliderspace_core.sliderspace.bank import parse_scales
from ...sliderspace_core.sliderspace.export import merge_sliders
from ...sliderspace_core.sliderspace.random_sliders import SparseSpec, describe, draw_subset
from .. import sockets as S
from ..glue.family import check_bank_for_model
from ..glue.patching import apply_deltas, apply_per_item
from ..glue.ui import node_errors


class ApplySliderBank(io.ComfyNode):
    NAME = "SliderSpace Apply Slider Bank"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpaceApplySliderBank", display_name=cls.NAME, category=S.CATEGORY,
            description="Turns sliders of a bank on at chosen scales, only between start_percent and end_percent "
                        "(starting after the first steps keeps the composition). Composes with LoRAs.",
            inputs=[
                io.Model.Input("model"),
                S.Bank.Input("bank"),
                io.String.Input("scales", multiline=True, default="0:1.0",
                                tooltip="index:scale pairs, e.g. '0:1.5, 3:-2' (the paper explores ±2)."),
                io.Float.Input("multiplier", default=1.0, min=-10.0, max=10.0, step=0.05,
                               tooltip="Multiplies every scale."),
                io.Float.Input("start_percent", default=0.2, min=0.0, max=1.0, step=0.01,
                               tooltip="Sliders switch on at this point of the schedule (0 = first step)."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="...and off after this point."),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, model, bank, scales, multiplier, start_percent, end_percent) -> io.NodeOutput:
        with node_errors(cls.NAME):
            check_bank_for_model(bank, model)
            chosen = {i: s * multiplier for i, s in parse_scales(scales, len(bank)).items()}
            chosen = {i: s for i, s in chosen.items() if s != 0.0}
            deltas = {}
            if chosen:
                deltas = merge_sliders(bank, chosen)
            out = apply_deltas(model, deltas, start_percent, end_percent, tag="apply")
        return io.NodeOutput(out)


class RandomSparseSliders(io.ComfyNode):
    NAME = "SliderSpace Random Sparse Sliders"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpaceRandomSparseSliders", display_name=cls.NAME, category=S.CATEGORY,
            description="Each generation gets k random sliders of the bank (SliderSpace's diversity mode). Item j "
                        "of a batch uses seed + j, exactly like a single run with that seed.",
            inputs=[
                io.Model.Input("model"),
                S.Bank.Input("bank"),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True),
                io.Int.Input("k", default=3, min=1, max=1024, tooltip="Sliders per generation (paper: 3)."),
                io.Combo.Input("distribution", options=["fixed", "uniform"], default="fixed",
                               tooltip="fixed: every slider at `scale` (paper: 1); uniform: in [min_scale, scale]."),
                io.Float.Input("scale", default=1.0, min=0.0, max=10.0, step=0.05),
                io.Float.Input("min_scale", default=0.5, min=0.0, max=10.0, step=0.05),
                io.Boolean.Input("random_sign", default=False, tooltip="Flip each slider's sign at random."),
                io.Float.Input("start_percent", default=0.2, min=0.0, max=1.0, step=0.01),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01),
                io.Int.Input("batch_size", default=1, min=1, max=4096,
                             tooltip="How many items to list in the `sliders` text (match your latent batch)."),
            ],
            outputs=[io.Model.Output(), io.String.Output(display_name="sliders")],
        )

    @classmethod
    def execute(cls, model, bank, seed, k, distribution, scale, min_scale, random_sign, start_percent,
                end_percent, batch_size) -> io.NodeOutput:
        with node_errors(cls.NAME):
            check_bank_for_model(bank, model)
            spec = SparseSpec(k, distribution, scale, min_scale, random_sign)
            spec.check(len(bank))

            def subset(j: int) -> dict[int, float]:
                return draw_subset(spec, len(bank), seed + j)

            out = apply_per_item(model, bank, subset, start_percent, end_percent)
            text = describe([subset(j) for j in range(batch_size)], seed)
        return io.NodeOutput(out, text)
