"""The headless runner: SliderSpace discovery, training and a slider grid from the command line.

``python -m headless discover|train|apply`` runs the pack's own core (``sliderspace_core``: trajectories,
PCA, the one training entry ``train_bank``, the bank file) on ToyWorld or, with ``--checkpoint``, on a
ComfyUI checkpoint loaded through ComfyUI as a library (``COMFYUI_PATH``) and the pack's ``nodes/glue``.
Under ``torchrun`` the work is split over the processes (torch.distributed). It is a top-level package, not
part of ``sliderspace_core`` (the core never imports ComfyUI or starts processes) nor of ``nodes`` (which
ComfyUI loads as a node pack); the name says what it is for: running the pipeline without a UI.
"""
