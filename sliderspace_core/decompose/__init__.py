"""Decompositions shared by the three systems: the TopK sparse autoencoder (and, after the reshape, PCA)."""
