"""The harness that runs nodes through ComfyUI's own executor (tests/comfy/executor.py) does what a server does."""

from __future__ import annotations

import pytest
import torch

from .executor import Graph, NodeFailed, PromptInvalid, run_node
from .host import pack_module


def _grads(n: int = 64, d: int = 32, seed: int = 0):
    g = pack_module("sliderspace_core.elrond.gradients")
    gen = torch.Generator().manual_seed(seed)
    return g.GradientSet(vectors=torch.randn(n, d, generator=gen), losses=torch.ones(n, dtype=torch.float64),
                         pairs=torch.zeros(n, 2, dtype=torch.long), sigma=14.6, space=f"conditioning:test:{d}",
                         word="dog", prompt="a dog", token_rows=[2])


def test_nodes_run_inside_inference_mode(comfy):
    dirs, spectrum = run_node("ELRONDDecompose", outputs=2, gradients=_grads(), method="PCA (top n)", n=3, c=2.5,
                              sae_k=4, sae_epochs=1, sae_lr=3e-5, seed=0)
    assert dirs.n_components == 3
    assert torch.is_inference(spectrum), "the executor runs every node under torch.inference_mode()"


def test_schema_validation_refuses_out_of_range_widgets(comfy):
    with pytest.raises(PromptInvalid):
        run_node("ELRONDDecompose", gradients=_grads(), method="PCA (top n)", n=0, c=2.5, sae_k=4, sae_epochs=1,
                 sae_lr=3e-5, seed=0)


def test_a_node_error_surfaces_with_its_node_type(comfy):
    g = Graph()
    out = g.node("ELRONDDecompose", gradients=_grads(n=1), method="PCA (top n)", n=1, c=2.5, sae_k=4, sae_epochs=1,
                 sae_lr=3e-5, seed=0)
    with pytest.raises(NodeFailed) as e:
        g.run(out[0])
    assert e.value.node_type == "ELRONDDecompose"
