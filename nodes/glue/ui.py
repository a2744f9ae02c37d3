"""How nodes talk to the user: core errors attributed to the node, and progress that honours interrupt.

Every node wraps its work in :func:`node_errors` — the one place a core :class:`InputError` gets the
node's name — and reports long work through :class:`Progress`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import comfy.model_management as mm
import comfy.utils

from ...sliderspace_core.common.errors import InputError


@contextlib.contextmanager
def node_errors(node: str) -> Iterator[None]:
    """Attribute core :class:`InputError` s to ``node`` so the message names it."""
    try:
        yield
    except InputError as e:
        if e.node is None:
            raise e.for_node(node) from None
        raise


class Progress:
    """A ComfyUI progress bar that also honours the interrupt button at every update."""

    def __init__(self, total: int) -> None:
        self.total = max(1, int(total))
        self.bar = comfy.utils.ProgressBar(self.total)

    def __call__(self, done: int, total: int | None = None, preview: object = None) -> None:
        mm.throw_exception_if_processing_interrupted()
        self.bar.update_absolute(done, total or self.total, preview)
