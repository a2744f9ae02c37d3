"""Running ELROND nodes through ComfyUI's executor in tests: the shared prompt, error helpers, Decompose."""

from __future__ import annotations

import re

import pytest

from .executor import NodeFailed, run_node

PROMPT = "a photo of a dog on sliderspace grass"
SAE_LR = 3e-3  # ELROND Decompose's default


def failure(class_type: str, **inputs) -> NodeFailed:
    """Run ``class_type`` through ComfyUI's executor and return the error it must raise."""
    with pytest.raises(NodeFailed) as e:
        run_node(class_type, **inputs)
    assert e.value.node_type == class_type
    return e.value


def input_of(err: NodeFailed) -> str:
    """The input an error names (``... input 'word': ...``)."""
    m = re.search(r"input '([^']+)'", err.message)
    assert m, err.message
    return m.group(1)


def decompose(grads, method="PCA (top n)", n=3, **kw):
    """ELROND Decompose through the executor; the TopK SAE settings at the node's defaults unless given."""
    args = dict(gradients=grads, method=method, n=n, c=2.5, sae_k=32, sae_epochs=20, sae_lr=SAE_LR, seed=0)
    return run_node("ELRONDDecompose", outputs=2, **{**args, **kw})
