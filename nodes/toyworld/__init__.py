"""ToyWorld nodes: the project-trained world loaded as a real MODEL, CLIP, VAE and image encoder."""
