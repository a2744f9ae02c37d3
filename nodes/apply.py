"""Apply Slider Bank: per-slider scales, a global multiplier, sliders on only inside a sigma window."""

from __future__ import annotations

from comfy_api.latest import io

from ..sliderspace_core.bank import parse_scales
from ..sliderspace_core.export import merge_sliders
from ..sliderspace_core.schedule import check_window
from . import types as T
from .apply_glue import apply_deltas
from .bank_glue import check_bank_for_model
from .comfy_glue import node_errors


class ApplySliderBank(io.ComfyNode):
    NAME = "SliderSpace Apply Slider Bank"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpaceApplySliderBank", display_name=cls.NAME, category=T.CATEGORY,
            description="Turns sliders of a bank on at chosen scales, only between start_percent and end_percent "
                        "(starting after the first steps keeps the composition). Composes with LoRAs.",
            inputs=[
                io.Model.Input("model"),
                T.Bank.Input("bank"),
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
            check_window(start_percent, end_percent)
            check_bank_for_model(bank, model)
            chosen = {i: s * multiplier for i, s in parse_scales(scales, len(bank)).items()}
            chosen = {i: s for i, s in chosen.items() if s != 0.0}
            deltas = {}
            if chosen:
                deltas = {name: up @ down for name, (up, down) in merge_sliders(bank, chosen).items()}
            out = apply_deltas(model, deltas, start_percent, end_percent, tag="apply")
        return io.NodeOutput(out)
