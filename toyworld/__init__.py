"""ToyWorld: a procedural image world with known factors, a tiny conditional denoiser and encoder.

It measures whether SliderSpace's sliders mean anything (benchmarks F1–F4) and is the README demo.
Pure torch; never imports comfy. See ``world`` (renderer + analytic factor read-out), ``models``,
``train`` (reproduces ``weights/``), ``host`` (the core TrainHost + sampler) and ``pipeline``.
"""
