"""Custom socket types of the pack (prefixed so they never clash with other packs)."""

import comfy.samplers
from comfy_api.latest import io

Trajectories = io.Custom("SLIDERSPACE_TRAJECTORIES")
Embeddings = io.Custom("SLIDERSPACE_EMBEDDINGS")
Basis = io.Custom("SLIDERSPACE_BASIS")
ImageEncoder = io.Custom("SLIDERSPACE_IMAGE_ENCODER")
Bank = io.Custom("SLIDERSPACE_BANK")

CATEGORY = "SliderSpace"


def sampling_inputs() -> list:
    """The KSampler-style inputs shared by every node that samples: steps, cfg, sampler, scheduler, size."""
    return [
        io.Int.Input("steps", default=20, min=1, max=10000),
        io.Float.Input("cfg", default=7.0, min=0.0, max=100.0, step=0.1, round=0.01),
        io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="euler"),
        io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="normal"),
        io.Int.Input("width", default=512, min=16, max=16384, step=8),
        io.Int.Input("height", default=512, min=16, max=16384, step=8),
    ]

# SAE concepts (issue 15)
Activations = io.Custom("SLIDERSPACE_ACTIVATIONS")
"""sliderspace_core.concepts.activations.ActivationSet: Δ rows of one block, sharded on disk, with provenance."""
SAE = io.Custom("SLIDERSPACE_SAE")
"""sliderspace_core.concepts.sae.ConceptSAE: a TopK SAE with its block and per-feature statistics."""
CONCEPTS_CATEGORY = "SliderSpace/SAE concepts"

# ELROND (issue 14)
Gradients = io.Custom("SLIDERSPACE_ELROND_GRADIENTS")
"""sliderspace_core.elrond.gradients.GradientSet: one token-conditioning gradient per image pair."""
Directions = io.Custom("SLIDERSPACE_ELROND_DIRECTIONS")
"""sliderspace_core.decompose.directions.Directions in a conditioning space."""
ELROND_CATEGORY = "SliderSpace/ELROND"

# ToyWorld (issue 12)
TOYWORLD_CATEGORY = "SliderSpace/ToyWorld"
