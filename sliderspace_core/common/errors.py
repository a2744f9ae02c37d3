"""One error type for bad user input: it names the node, the input and the fix."""

from __future__ import annotations


class InputError(ValueError):
    """A user-facing input problem.

    The core raises it without a node name (it does not know the graph); the node layer fills
    ``node`` in before ComfyUI shows it.
    """

    def __init__(self, input_name: str, problem: str, fix: str, node: str | None = None) -> None:
        self.input_name = input_name
        self.problem = problem
        self.fix = fix
        self.node = node
        super().__init__(self._text())

    def _text(self) -> str:
        where = f"[SliderSpace] {self.node}: " if self.node else "[SliderSpace] "
        return f"{where}input '{self.input_name}': {self.problem} Fix: {self.fix}"

    def for_node(self, node: str) -> InputError:
        """Return a copy of this error attributed to ``node``."""
        return InputError(self.input_name, self.problem, self.fix, node=node)
