"""SliderSpace (Gandikota et al. 2025): trajectories → embeddings → basis → one rank-r slider per direction."""
