"""SAE Concept Map and SAE Steer."""

from __future__ import annotations

import logging

from comfy_api.latest import io

from ...sliderspace_core.common.errors import InputError
from ...sliderspace_core.common.schedule import SigmaWindow
from ...sliderspace_core.common.textspec import parse_index_list
from ...sliderspace_core.concepts.maps import concept_maps, heatmap_grid
from ...sliderspace_core.concepts.steering import (
    APPLY_TO,
    FEATURE_MEAN,
    LEGACY_SCALES,
    MODES,
    SCALES,
    Steerer,
    parse_features,
    scale_name,
)
from ...sliderspace_core.sliderspace.bank import family_group, fingerprint_state
from .. import sockets as S
from ..glue.capture import capture_map
from ..glue.family import model_family
from ..glue.hooks import check_block, steer_key, with_block_hook, without_key
from ..glue.ui import node_errors

log = logging.getLogger(__name__)

SCALE_TOOLTIP = (
    "Units of the strengths. 'feature mean (sdxl-unbox)': strength x the feature's mean activation x its unit "
    "decoder direction at every location; strengths about 1-10 (1 = the feature at its typical firing value "
    "everywhere; negative removes). 'beta over the grid (Tinaz et "
    "al.)': global: beta spread over the grid by each location's share of the residual norm, the whole edit sums to "
    "beta per image (beta about 8-10 mid-schedule); spatial: beta x the location's residual norm inside the mask "
    "(beta about 400 middle, 4000 early window). 'absolute': strength x the unit direction (code units).")


def check_sae_for_model(csae, model, input_name: str = "sae") -> None:
    """The MODEL has the SAE's block at the SAE's width (whatever the model's class: e.g. an sdxl-unbox SAE on any
    SDXL-group model); a family the SAE was not made for is logged, not refused."""
    width = check_block(model, csae.block, input_name)
    if width != csae.d:
        raise InputError(input_name, f"the SAE reads width {csae.d} but {csae.block} has width {width}.",
                         "use an SAE trained on this block of this model family.")
    family, here = csae.sae.metadata.get("family", ""), model_family(model)
    if family and family_group(family) != family_group(here):
        log.warning("[SliderSpace] the SAE was made for a %s model; this is %s. Its block %s has the SAE's width %d, "
                    "so it is used, but its features may mean something else here.", family, here, csae.block, width)


def steer_application(cls, sae, settings: tuple, mask=None) -> str:
    """Which SAE Steer applies: ComfyUI's node id, so running a node again replaces its own steer while other
    Steer nodes in series (at the same block or others) compose with it. Called outside a prompt (no node
    id), the SAE's content, the settings and the mask stand in for it: the same steer again replaces, a
    different one composes."""
    uid = getattr(cls.hidden, "unique_id", None) if cls.hidden is not None else None
    if uid is not None:
        return f"node {uid}"
    named = {"W_dec": sae.sae.W_dec, "mean": sae.feature_mean}
    if mask is not None:
        named["mask"] = mask
    return f"{sae.block}:{fingerprint_state(named, samples=64)}:{settings!r}"


class SAEConceptMap(io.ComfyNode):
    NAME = "SAE Concept Map"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpaceSAEConceptMap", display_name=cls.NAME, category=S.CONCEPTS_CATEGORY,
            description="Samples once and shows where the SAE's strongest features fire on the block's grid at the "
                        "chosen step (step 0 already predicts the final layout), as heatmaps (and overlays on "
                        "the final image when a VAE is connected), with their ids and activation mass.",
            inputs=[
                io.Model.Input("model"), S.SAE.Input("sae"),
                io.Conditioning.Input("positive"), io.Conditioning.Input("negative"),
                io.Int.Input("seed", default=0, min=0, max=2**63 - 1, control_after_generate=True,
                             tooltip="Seed of the one sample the maps are drawn from."),
                *S.sampling_inputs(),
                io.Int.Input("step", default=0, min=0, max=10000, tooltip="Which step's activations (0 = first)."),
                io.Int.Input("top", default=8, min=1, max=64, tooltip="How many features to show."),
                io.String.Input("features", default="", optional=True,
                                tooltip="Show these feature ids instead of the top ones, e.g. '12, 40'."),
                io.Vae.Input("vae", optional=True, tooltip="Decodes the final image for the overlay row."),
            ],
            outputs=[io.Image.Output(display_name="maps"), io.String.Output(display_name="features")],
        )

    @classmethod
    def execute(cls, model, sae, positive, negative, seed, steps, cfg, sampler_name, scheduler, width, height,
                step, top, features="", vae=None) -> io.NodeOutput:
        with node_errors(cls.NAME):
            check_sae_for_model(sae, model)
            chosen = None
            if features and features.strip():
                chosen = parse_index_list(features, sae.n_features, "features", noun="feature", owner="the SAE")
            rows, grid, latent = capture_map(model, positive, negative, sae.block, step, seed, steps, cfg,
                                             sampler_name, scheduler, width, height)
            cm = concept_maps(sae.sae, rows, grid[0], grid[1], top, chosen)
            image = None
            if vae is not None:
                image = vae.decode(latent)
                image = image.reshape(-1, *image.shape[-3:])[0, ..., :3].float().cpu()
            grid_img = heatmap_grid(cm, image)
        return io.NodeOutput(grid_img, cm.text())


class SAESteer(io.ComfyNode):
    NAME = "SAE Steer"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpaceSAESteer", display_name=cls.NAME, category=S.CONCEPTS_CATEGORY,
            description="Adds SAE decoder directions to the SAE's block output inside a time window. Early "
                        "(0-0.4) steers composition, middle style, late only texture. Spatial mode adds inside "
                        "the MASK (resized to the block's grid by area averaging) and removes the features "
                        "outside it; an all-zero mask turns the steer off. 'scale' picks the strength units "
                        "(sdxl-unbox's feature mean or Tinaz et al.'s beta over the grid). Steer nodes in series "
                        "compose, also at the same block and with identical settings (in chain order).",
            inputs=[
                io.Model.Input("model"), S.SAE.Input("sae"),
                io.String.Input("features", multiline=True, default="0:8",
                                tooltip="feature:strength pairs, e.g. '12:4, 40:-2'; the units are set by 'scale' "
                                        "(feature mean: about 1-10; beta over the grid: 8-10 global, 400-4000 "
                                        "spatial)."),
                io.Combo.Input("mode", options=list(MODES), default="global",
                               tooltip="global: add the features at every location; spatial: only inside the MASK "
                                       "(and remove them outside with suppress_outside)."),
                io.Combo.Input("apply_to", options=list(APPLY_TO), default="cond",
                               tooltip="cond: only the cond half (uncond untouched); both; cfg: add on cond, "
                                       "subtract the added vector on uncond (sdxl-unbox)."),
                io.Combo.Input("scale", options=list(SCALES), default=FEATURE_MEAN, tooltip=SCALE_TOOLTIP),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Steering starts here in the schedule (by sigma): 0-0.4 steers composition, "
                                       "0.4-0.8 style."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Steering stops here in the schedule (1 = until the end)."),
                io.Boolean.Input("suppress_outside", default=True,
                                 tooltip="Spatial mode: remove the features' own contribution outside the mask."),
                io.Mask.Input("mask", optional=True),
            ],
            outputs=[io.Model.Output()],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, scale) -> bool | str:
        """``scale`` is one of the units, or the name an earlier version gave one (saved workflows keep it)."""
        if scale in SCALES or scale in LEGACY_SCALES:
            return True
        return str(InputError("scale", f"is {scale!r}.", f"choose one of: {'; '.join(SCALES)}.", node=cls.NAME))

    @classmethod
    def execute(cls, model, sae, features, mode, apply_to, scale, start_percent, end_percent, suppress_outside,
                mask=None) -> io.NodeOutput:
        with node_errors(cls.NAME):
            check_sae_for_model(sae, model)
            chosen = parse_features(features, sae.n_features)
            scale = scale_name(scale)
            steerer = Steerer(sae, chosen, mode, apply_to, scale, mask, suppress_outside)
            ms = model.get_model_object("model_sampling")
            window = SigmaWindow.from_percents(ms.percent_to_sigma, start_percent, end_percent)
            settings = (sorted(chosen.items()), mode, apply_to, scale, start_percent, end_percent, suppress_outside)
            key = steer_key(steer_application(cls, sae, settings, mask if mode == "spatial" else None))
            if window.empty or not steerer.active:
                return io.NodeOutput(without_key(model, key))

            def on_block(out_rows, in_rows, labels, sigma, grid):
                return steerer.apply(out_rows, labels, grid[0], grid[1], in_rows)

            out = with_block_hook(model, key, sae.block, on_block, window, needs_input=steerer.needs_input)
        return io.NodeOutput(out)
