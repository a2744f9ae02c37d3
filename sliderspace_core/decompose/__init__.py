"""Decompositions shared by the systems: PCA (and the TopK SAE), and the one directions type they return."""
