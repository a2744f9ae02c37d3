"""SliderSpace nodes: discovery, training, bank files, applying, exploring."""
