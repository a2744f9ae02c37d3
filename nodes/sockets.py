"""Custom socket types of the pack (prefixed so they never clash with other packs)."""

import comfy.samplers
from comfy_api.latest import io

Trajectories = io.Custom("SLIDERSPACE_TRAJECTORIES")
Embeddings = io.Custom("SLIDERSPACE_EMBEDDINGS")
Basis = io.Custom("SLIDERSPACE_BASIS")
ImageEncoder = io.Custom("SLIDERSPACE_IMAGE_ENCODER")
Bank = io.Custom("SLIDERSPACE_BANK")

ROOT_CATEGORY = "SliderSpace"
"""Every node of the pack sits under this folder of the node library, one subfolder per system."""
CATEGORY = f"{ROOT_CATEGORY}/Sliders"


def sampling_inputs() -> list:
    """The KSampler-style inputs shared by every node that samples: steps, cfg, sampler, scheduler, size."""
    return [
        io.Int.Input("steps", default=20, min=1, max=10000,
                     tooltip="Sampling steps, as in KSampler (SD1.5/SDXL/FLUX-dev 20-30; Turbo, DMD2, Lightning and "
                             "FLUX-schnell 1-4)."),
        io.Float.Input("cfg", default=7.0, min=0.0, max=100.0, step=0.1, round=0.01,
                       tooltip="Classifier-free guidance, as in KSampler (SD1.5 7, SDXL 5-7; FLUX and distilled "
                               "models 1 — FLUX-dev's guidance comes from FluxGuidance on the conditioning)."),
        io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="euler",
                       tooltip="Sampler, as in KSampler."),
        io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="normal",
                       tooltip="Noise schedule, as in KSampler (FLUX: simple; distilled SDXL: sgm_uniform)."),
        io.Int.Input("width", default=512, min=16, max=16384, step=8,
                     tooltip="Image width in pixels (SD1.5 512, SDXL and FLUX 1024)."),
        io.Int.Input("height", default=512, min=16, max=16384, step=8,
                     tooltip="Image height in pixels (SD1.5 512, SDXL and FLUX 1024)."),
    ]

# SAE concepts
Activations = io.Custom("SLIDERSPACE_ACTIVATIONS")
"""sliderspace_core.concepts.activations.ActivationSet: Δ rows of one block, sharded on disk, with provenance."""
SAE = io.Custom("SLIDERSPACE_SAE")
"""sliderspace_core.concepts.sae.ConceptSAE: a TopK SAE with its block and per-feature statistics."""
CONCEPTS_CATEGORY = f"{ROOT_CATEGORY}/SAE concepts"

# ELROND
Gradients = io.Custom("SLIDERSPACE_ELROND_GRADIENTS")
"""sliderspace_core.elrond.gradients.GradientSet: one token-conditioning gradient per image pair."""
Directions = io.Custom("SLIDERSPACE_ELROND_DIRECTIONS")
"""sliderspace_core.decompose.directions.Directions in a conditioning space."""
ELROND_CATEGORY = f"{ROOT_CATEGORY}/ELROND"

# ToyWorld
TOYWORLD_CATEGORY = f"{ROOT_CATEGORY}/ToyWorld"
