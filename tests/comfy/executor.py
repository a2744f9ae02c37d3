"""Run nodes the way a ComfyUI server runs them: ``validate_prompt`` then ``PromptExecutor``.

A node test that calls ``execute`` by hand misses three things the server does: the whole run is inside
``torch.inference_mode()``, only the hidden inputs a V3 schema declares are filled, and every input is
validated against the schema first. Here the test's Python objects (a MODEL, a tensor, a bank) enter the
graph through a value node and leave it through a sink node, so the node under test runs in ComfyUI's own
executor exactly as in a real prompt.

    g = Graph()
    steer = g.node("SliderSpaceSAESteer", model=g.value(model), sae=g.value(sae), strength=4.0)
    model_out, = g.run(steer[0])          # raises NodeFailed with the node's message on an error
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

from .host import boot

_VALUES: dict[str, Any] = {}
_SINKS: dict[str, Any] = {}
_COUNT = itertools.count()


class _AnyType(str):
    """ComfyUI's any-type idiom: a type string equal to every other type string."""

    def __ne__(self, other: object) -> bool:
        return False


ANY = _AnyType("*")


class _TestValue:
    """Hands a Python object from the test into the graph (V1 node, output of any type)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"key": ("STRING", {"default": ""})}}

    RETURN_TYPES = (ANY,)
    FUNCTION = "get"
    CATEGORY = "_tests"

    def get(self, key: str):
        return (_VALUES[key],)


class _TestSink:
    """Takes one output of the node under test out of the graph (an output node, so it gets executed)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (ANY, {}), "key": ("STRING", {"default": ""})}}

    RETURN_TYPES = ()
    FUNCTION = "put"
    OUTPUT_NODE = True
    CATEGORY = "_tests"

    def put(self, value, key: str):
        _SINKS[key] = value
        return {}


class NodeFailed(Exception):
    """A node raised inside the executor; ``node_type``, ``exception_type`` and the message say which and why."""

    def __init__(self, node_type: str, exception_type: str, message: str):
        super().__init__(f"[{node_type}] {exception_type}: {message}")
        self.node_type, self.exception_type, self.message = node_type, exception_type, message


class PromptInvalid(Exception):
    """``validate_prompt`` refused the graph (HTTP 400 in a server); ``errors`` is ComfyUI's per-node report."""

    def __init__(self, error: dict, node_errors: dict):
        super().__init__(f"{error}\n{node_errors}")
        self.error, self.node_errors = error, node_errors


class _Server:
    """The little of PromptServer the executor touches when no client is attached."""

    client_id = None
    last_node_id = None
    sockets_metadata: dict = {}

    def send_sync(self, *args, **kwargs) -> None:
        pass

    def queue_updated(self) -> None:
        pass


def _register() -> None:
    mapping = boot()["nodes"].NODE_CLASS_MAPPINGS
    mapping.setdefault("_SliderSpaceTestValue", _TestValue)
    mapping.setdefault("_SliderSpaceTestSink", _TestSink)


class Graph:
    """An API-format prompt built in a test: ``node`` adds a node, ``value`` a Python object, ``run`` executes."""

    def __init__(self) -> None:
        self.prompt: dict[str, dict] = {}
        self._ids = itertools.count(1)

    def _add(self, class_type: str, inputs: dict, node_id: str | None = None) -> str:
        node_id = node_id or str(next(self._ids))
        assert node_id not in self.prompt, f"node id {node_id} used twice"
        self.prompt[node_id] = {"class_type": class_type, "inputs": inputs}
        return node_id

    def value(self, obj: Any) -> list:
        """A link to ``obj`` (any Python object) for use as a node input."""
        key = f"v{next(_COUNT)}"
        _VALUES[key] = obj
        return [self._add("_SliderSpaceTestValue", {"key": key}, f"value{key}"), 0]

    def node(self, class_type: str, node_id: str | None = None, **inputs: Any) -> list[list]:
        """Add ``class_type`` with widget values or links; returns its output links ``[[id, 0], [id, 1], ...]``.

        Non-JSON values (tensors, models, ...) are wrapped with ``value`` automatically. ``node_id`` fixes the id
        the executor hands the node as its hidden ``unique_id`` (default: the next free number).
        """
        wired = {}
        for name, v in inputs.items():
            is_link = isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], int)
            wired[name] = v if is_link or isinstance(v, (str, int, float, bool)) else self.value(v)
        node_id = self._add(class_type, wired, node_id)
        return [[node_id, i] for i in range(32)]

    def run(self, *outputs: list, executor: Any = None, extra_data: dict | None = None) -> tuple:
        """Validate and execute the graph; return the values of ``outputs`` (links), in order.

        Pass the same ``executor`` (from ``new_executor()``) to re-queue with ComfyUI's output cache.
        """
        _register()
        import execution

        prompt = dict(self.prompt)
        keys = []
        for link in outputs:
            key = f"s{next(_COUNT)}"
            keys.append(key)
            prompt[f"sink{key}"] = {"class_type": "_SliderSpaceTestSink", "inputs": {"value": link, "key": key}}
        prompt_id = str(uuid.uuid4())
        valid, error, good_outputs, node_errors = asyncio.run(execution.validate_prompt(prompt_id, prompt, None))
        if not valid or node_errors:  # a server still runs the outputs that validated and drops the rest
            raise PromptInvalid(error, node_errors)
        ex = executor or new_executor()
        ex.execute(prompt, prompt_id, extra_data or {}, good_outputs)
        if not ex.success:
            for event, data in ex.status_messages:
                if event == "execution_error":
                    raise NodeFailed(data["node_type"], data["exception_type"], data["exception_message"])
                if event == "execution_interrupted":
                    raise NodeFailed(data["node_type"], "InterruptProcessingException", "interrupted")
            raise NodeFailed("?", "?", str(ex.status_messages))
        return tuple(_SINKS.pop(k) for k in keys)


def new_executor():
    """A PromptExecutor with a stub server (keep one to test re-queueing and the output cache)."""
    _register()
    import execution

    return execution.PromptExecutor(_Server(), cache_args={"lru": 0, "ram": 0})


def run_node(class_type: str, outputs: int = 1, node_id: str | None = None, **inputs: Any) -> tuple:
    """Run one node as a server would (as node ``node_id``) and return its first ``outputs`` outputs."""
    g = Graph()
    links = g.node(class_type, node_id, **inputs)
    return g.run(*links[:outputs])
