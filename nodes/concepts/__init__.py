"""SAE-concepts nodes (METHODS §3): collect block activations, train / save / load / import TopK SAEs,
concept maps, and steering in activation space."""
