"""Pure torch/numpy core of the SliderSpace node pack. Never imports ComfyUI."""

__version__ = "0.1.0"
