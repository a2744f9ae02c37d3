"""How nodes talk to the user: core errors attributed to the node, and progress that honours interrupt.

Every node wraps its work in :func:`node_errors` — the one place a core :class:`InputError` gets the
node's name — and reports long work through :class:`Progress`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import comfy.model_management as mm
import comfy.utils

from ...sliderspace_core.common.errors import InputError

log = logging.getLogger(__name__)


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
    """A ComfyUI progress bar that honours the interrupt button at every update and logs the rate and the
    time left (ETA) about every 10 % of the work, so long runs say when they will end."""

    def __init__(self, total: int, what: str = "steps") -> None:
        self.total = max(1, int(total))
        self.bar = comfy.utils.ProgressBar(self.total)
        self.what, self.start, self.next_log = what, time.perf_counter(), max(1, self.total // 10)

    @staticmethod
    def check() -> None:
        """Raise ComfyUI's interrupt now if the user pressed it (cheap: call it every step)."""
        mm.throw_exception_if_processing_interrupted()

    def __call__(self, done: int, total: int | None = None, preview: object = None) -> None:
        mm.throw_exception_if_processing_interrupted()
        self.bar.update_absolute(done, total or self.total, preview)
        if done >= self.next_log or done == self.total:
            spent = time.perf_counter() - self.start
            each = spent / max(done, 1)
            log.info("[SliderSpace] %d/%d %s, %.3f s each, about %.0f s left", done, self.total, self.what, each,
                     each * max(self.total - done, 0))
            self.next_log = done + max(1, self.total // 10)
