"""Custom socket types of the pack (prefixed so they never clash with other packs)."""

from comfy_api.latest import io

Trajectories = io.Custom("SLIDERSPACE_TRAJECTORIES")
Embeddings = io.Custom("SLIDERSPACE_EMBEDDINGS")
Basis = io.Custom("SLIDERSPACE_BASIS")
ImageEncoder = io.Custom("SLIDERSPACE_IMAGE_ENCODER")
Bank = io.Custom("SLIDERSPACE_BANK")

CATEGORY = "SliderSpace"
NONE_FOUND = "(none found)"  # combo placeholder for an empty model folder; execute then names the fix
