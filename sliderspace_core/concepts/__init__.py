"""SAE concepts (Tinaz et al. 2025; Surkov et al. 2024): sparse-autoencoder features of denoiser blocks."""
