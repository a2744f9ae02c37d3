"""The pack's HTTP routes: what the slider-bank widget reads about bank files.

``GET /sliderspace/banks`` lists the bank files of the ``sliderspace`` model folder and
``GET /sliderspace/bank_info?name=<file>`` returns one file's slider count and labels. Names are looked
up only among the files ComfyUI lists for that folder that resolve inside it (so nothing outside it can be
named, not even through a symlink), and only the safetensors header is read: no tensor is loaded and nothing
is ever unpickled.
"""

from __future__ import annotations

import os

import folder_paths
from aiohttp import web

from ...sliderspace_core.common.errors import InputError
from ...sliderspace_core.sliderspace.bank import read_bank_info
from ..glue.folders import BANK_FOLDER, NONE_FOUND, bank_files

PREFIX = "/sliderspace"


def _inside(name: str) -> bool:
    """True when ``name`` resolves (symlinks followed) to a file inside a registered bank folder. The route is
    reachable by any HTTP client, so a link placed in the folder that points elsewhere is not served."""
    path = folder_paths.get_full_path(BANK_FOLDER, name)
    if not path:
        return False
    real = os.path.realpath(path)
    return any(real.startswith(os.path.realpath(root) + os.sep) for root in folder_paths.get_folder_paths(BANK_FOLDER))


def _listed() -> list[str]:
    return [f for f in bank_files() if f != NONE_FOUND and _inside(f)]


def bank_info(name: str) -> tuple[int, dict]:
    """``(HTTP status, JSON body)`` for ``bank_info?name=``: 400 bad name, 404 unknown, 422 not a bank."""
    if not name or "\x00" in name or "\\" in name or os.path.isabs(name) or ".." in name.split("/"):
        return 400, {"error": f"invalid bank name {name!r}: give a file name listed by {PREFIX}/banks."}
    if name not in _listed():
        return 404, {"error": f"{name!r} is not a bank in models/{BANK_FOLDER}."}
    path = folder_paths.get_full_path(BANK_FOLDER, name)
    if not path:
        return 404, {"error": f"{name!r} is not a bank in models/{BANK_FOLDER}."}
    try:
        return 200, {"name": name, **read_bank_info(path, "file")}
    except InputError as e:
        return 422, {"error": str(e)}


async def get_banks(request: web.Request) -> web.Response:
    return web.json_response({"banks": _listed()})


async def get_bank_info(request: web.Request) -> web.Response:
    status, body = bank_info(request.query.get("name", ""))
    return web.json_response(body, status=status)


def add_routes(routes: web.RouteTableDef) -> None:
    """Register the pack's routes on ``routes`` (ComfyUI's ``PromptServer.instance.routes``)."""
    routes.get(f"{PREFIX}/banks")(get_banks)
    routes.get(f"{PREFIX}/bank_info")(get_bank_info)


def register_with_server() -> bool:
    """Add the routes to the running ComfyUI server, if there is one (in-process tests have none)."""
    import sys

    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None:
        return False
    add_routes(instance.routes)
    return True
