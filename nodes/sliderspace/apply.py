"""Apply Slider Bank: per-slider scales, a global multiplier, sliders on only inside a sigma window."""

from __future__ import annotations

from comfy_api.latest import io

from ...sliderspace_core.sliderspace.bank import fingerprint_state, parse_scales
from ...sliderspace_core.sliderspace.export import merge_sliders
from ...sliderspace_core.sliderspace.labels import parse_labels, with_labels
from ...sliderspace_core.sliderspace.random_sliders import SparseSpec, describe, draw_subset
from .. import sockets as S
from ..glue.family import check_bank_for_model
from ..glue.patching import apply_deltas, apply_per_item
from ..glue.ui import node_errors


def application_key(cls, kind: str, bank, settings: tuple) -> str:
    """Which node applies: ComfyUI's node id, so running a node again replaces its own sliders while other
    nodes in series add theirs. Called outside a prompt (no node id), the bank's content and the settings
    stand in for it: the same application again replaces, a different one adds up."""
    uid = getattr(cls.hidden, "unique_id", None) if cls.hidden is not None else None
    if uid is not None:
        return f"{kind}:node {uid}"
    named = {f"{i}.{m}.{side}": t for i, s in enumerate(bank.sliders)
             for side, factors in (("up", s.up), ("down", s.down)) for m, t in factors.items()}
    return f"{kind}:{fingerprint_state(named, samples=64)}:{settings!r}"


class ApplySliderBank(io.ComfyNode):
    NAME = "SliderSpace Apply Slider Bank"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpaceApplySliderBank", display_name=cls.NAME, category=S.CATEGORY,
            description="Turns sliders of a bank on at chosen scales, only between start_percent and end_percent "
                        "(starting after the first steps keeps the composition). Composes with LoRAs and with other "
                        "Apply / Random Sparse Sliders nodes in series (their sliders add up).",
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
                io.String.Input("labels", default="", optional=True,
                                tooltip="Slider names, as in Label Bank: '0: smiling, 3: older'. The slider widget's "
                                        "label boxes write them here; they go into the `bank` output (save it with "
                                        "Save Slider Bank). Empty: the bank's own labels."),
            ],
            outputs=[io.Model.Output(), S.Bank.Output(display_name="bank",
                                                      tooltip="The input bank with `labels` applied (a copy).")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, model, bank, scales, multiplier, start_percent, end_percent, labels="") -> io.NodeOutput:
        with node_errors(cls.NAME):
            check_bank_for_model(bank, model)
            # What the slider widget draws after a run, for banks it cannot read from a file (e.g. straight from
            # Train Sliders): the real count and the bank's own labels, before this node's `labels`.
            shown = {"sliderspace_bank": [{"n_sliders": len(bank), "labels": [s.label for s in bank.sliders]}]}
            named = with_labels(bank, parse_labels(labels, len(bank))) if (labels or "").strip() else bank
            chosen = {i: s * multiplier for i, s in parse_scales(scales, len(bank)).items()}
            chosen = {i: s for i, s in chosen.items() if s != 0.0}
            deltas = {}
            if chosen:
                deltas = merge_sliders(bank, chosen)
            key = application_key(cls, "apply", bank, (sorted(chosen.items()), start_percent, end_percent))
            out = apply_deltas(model, deltas, start_percent, end_percent, tag=key)
        return io.NodeOutput(out, named, ui=shown)


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
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Item j of the batch draws its sliders from seed + j; same seed, same sliders."),
                io.Int.Input("k", default=3, min=1, max=1024, tooltip="Sliders per generation (paper: 3)."),
                io.Combo.Input("distribution", options=["fixed", "uniform"], default="fixed",
                               tooltip="fixed: every slider at `scale` (paper: 1); uniform: in [min_scale, scale]."),
                io.Float.Input("scale", default=1.0, min=0.0, max=10.0, step=0.05,
                               tooltip="Each drawn slider's scale (fixed), or the top of the range (uniform). "
                                       "Paper: 1."),
                io.Float.Input("min_scale", default=0.5, min=0.0, max=10.0, step=0.05,
                               tooltip="Bottom of the range when distribution is uniform; unused when fixed."),
                io.Boolean.Input("random_sign", default=False, tooltip="Flip each slider's sign at random."),
                io.Float.Input("start_percent", default=0.2, min=0.0, max=1.0, step=0.01,
                               tooltip="Sliders switch on at this point of the schedule (by sigma). 0 = from the "
                                       "first step (changes the composition); 0.2 keeps it. At 1-4 steps see "
                                       "docs/families.md."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Sliders switch off after this point of the schedule (1 = until the end)."),
                io.Int.Input("batch_size", default=1, min=1, max=4096,
                             tooltip="How many items to list in the `sliders` text (match your latent batch)."),
            ],
            outputs=[io.Model.Output(), io.String.Output(display_name="sliders")],
            hidden=[io.Hidden.unique_id],
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

            key = application_key(cls, "sparse", bank, (seed, k, distribution, scale, min_scale, random_sign,
                                                          start_percent, end_percent))
            out = apply_per_item(model, bank, subset, start_percent, end_percent, tag=key)
            text = describe([subset(j) for j in range(batch_size)], seed)
        return io.NodeOutput(out, text)
