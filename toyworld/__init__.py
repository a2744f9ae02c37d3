"""ToyWorld: a procedural image world with known factors, a tiny SD-like text-to-image model and an encoder.

It measures whether SliderSpace's sliders mean anything (benchmarks F1–F4) and is the README demo.
Pure torch; never imports comfy. See ``world`` (WorldSpec, renderer, captions, analytic factor read-out),
``text`` (tokenizer + text encoder), ``unet`` (SD-structured denoising network), ``models``, ``train``
(reproduces ``weights/``), ``evaluate`` (generation metrics), ``host`` (the core TrainHost + sampler) and
``pipeline``.
"""
