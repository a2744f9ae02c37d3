"""The widget's server routes: listing, bank info from the header only, and nothing outside the folder."""

from __future__ import annotations

import asyncio
import pickle

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from .host import pack_module


@pytest.fixture(scope="module")
def bank_dir(comfy, bank, tmp_path_factory):
    """A registered ``sliderspace`` folder with a labelled bank, a foreign file and a pickle; a secret outside."""
    import folder_paths

    root = tmp_path_factory.mktemp("routes")
    folder, outside = root / "sliderspace", root / "outside"
    folder.mkdir()
    outside.mkdir()
    bk, labels = pack_module("sliderspace_core.sliderspace.bank"), pack_module("sliderspace_core.sliderspace.labels")
    bk.save_bank(labels.with_labels(bank, {0: "smile", 2: "older"}), str(folder / "labelled.safetensors"))
    bk.save_bank(bank, str(outside / "secret.safetensors"))
    import torch
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(folder / "not_a_bank.safetensors"))
    (folder / "evil.safetensors").write_bytes(pickle.dumps({"a": 1}))
    _tamper(folder / "labelled.safetensors", folder / "claims_64.safetensors", 64)
    _tamper(folder / "labelled.safetensors", folder / "claims_2.safetensors", 2)
    folder_paths.add_model_folder_path("sliderspace", str(folder))
    yield folder
    folder_paths.folder_names_and_paths["sliderspace"][0].remove(str(folder))


def _tamper(src, dst, n_sliders: int) -> None:
    """A copy of bank ``src`` whose metadata claims ``n_sliders`` sliders (its tensors unchanged)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    doc = json.loads(meta["bank"])
    doc["sliders"] = [doc["sliders"][i % len(doc["sliders"])] for i in range(n_sliders)]
    meta["bank"] = json.dumps(doc)
    save_file(tensors, str(dst), meta)


def _get(path: str) -> tuple[int, dict]:
    routes = web.RouteTableDef()
    pack_module("nodes.sliderspace.routes").add_routes(routes)
    app = web.Application()
    app.add_routes(routes)

    async def go():
        async with TestClient(TestServer(app)) as client:
            r = await client.get(path)
            return r.status, await r.json()

    return asyncio.run(go())


def test_lists_the_banks_of_the_folder(bank_dir):
    status, body = _get("/sliderspace/banks")
    assert status == 200
    assert {"labelled.safetensors", "not_a_bank.safetensors", "evil.safetensors"} <= set(body["banks"])
    assert "secret.safetensors" not in body["banks"]


def test_bank_info_reads_count_and_labels(bank_dir, bank):
    status, body = _get("/sliderspace/bank_info?name=labelled.safetensors")
    assert status == 200, body
    assert body["n_sliders"] == len(bank) == 3
    assert body["labels"] == ["smile", "", "older"]
    assert body["family"] == bank.meta.family


@pytest.mark.parametrize("name", ["../outside/secret.safetensors", "..%2Foutside%2Fsecret.safetensors",
                                  "%2Fetc%2Fpasswd", "..\\outside\\secret.safetensors", ""])
def test_traversal_and_absolute_names_are_rejected(bank_dir, name):
    status, body = _get(f"/sliderspace/bank_info?name={name}")
    assert status == 400, body
    assert "invalid bank name" in body["error"]


def test_unknown_names_and_non_banks(bank_dir):
    assert _get("/sliderspace/bank_info?name=missing.safetensors")[0] == 404
    assert _get("/sliderspace/bank_info?name=secret.safetensors")[0] == 404  # exists, but not in the folder
    status, body = _get("/sliderspace/bank_info?name=not_a_bank.safetensors")
    assert status == 422 and "not a SliderSpace slider bank" in body["error"]
    status, body = _get("/sliderspace/bank_info?name=evil.safetensors")
    assert status == 422 and "never" in body["error"] and "unpickles" in body["error"]


@pytest.mark.parametrize("name,claimed", [("claims_64.safetensors", 64), ("claims_2.safetensors", 2)])
def test_metadata_that_disagrees_with_the_tensors_is_refused(bank_dir, name, claimed):
    status, body = _get(f"/sliderspace/bank_info?name={name}")
    assert status == 422, body
    assert f"lists {claimed} slider(s)" in body["error"] and "save the bank again" in body["error"]


def test_no_server_means_no_registration(comfy):
    import sys

    if "server" not in sys.modules:
        assert pack_module("nodes.sliderspace.routes").register_with_server() is False
