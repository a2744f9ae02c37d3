"""Hostile save names (issue 16): every node that writes a file refuses the name or sanitises it, and
nothing is ever written outside its folder."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from .host import pack_module

HOSTILE = ["../escape", "../../../../tmp/escape", "/tmp/absolute", "C:\\Windows\\evil", "\\\\server\\share\\x",
           "a\x00b", "\x00", "CON", "con.safetensors", "NUL", "nul.txt", "COM1", "com9.x", "LPT1", "AUX", "PRN",
           "x" * 5000, "..", ".", "", "   ", "a/../../b", "%2e%2e%2fescape", "..\\..\\escape", "name\n",
           "~/home", "$HOME/x", "ok name", "ünïcödé", "a:b", "a|b", "a*?<>\"b", ".hidden", "trailing. ",
           "-rf", "ok.safetensors.safetensors"]
WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def safe(name: str) -> bool:
    stem = name[: -len(".safetensors")]
    return (name.endswith(".safetensors") and 0 < len(name) <= 255 and not any(c in name for c in "/\\\x00:*?\"<>|")
            and ".." not in name and not name.startswith(".") and stem.split(".")[0].lower() not in WINDOWS_RESERVED
            and name == name.strip())


@given(st.text(max_size=300))
def test_sanitize_gives_a_safe_name_or_input_error(comfy, name):
    sf = pack_module("sliderspace_core.common.safefile")
    errors = pack_module("sliderspace_core.common.errors")
    try:
        out = sf.sanitize_name(name, "filename_prefix")
    except errors.InputError as e:
        assert e.input_name == "filename_prefix" and "Fix:" in str(e)
        return
    assert safe(out), (name, out)


def _tree(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files}


@pytest.fixture
def savers(comfy, bank, tmp_path, monkeypatch):
    """Every saving node, writing into temp model/output folders; ``tmp_path`` holds nothing else."""
    import folder_paths

    pack_module("nodes.sliderspace.banks")  # registers the pack's folders
    roots = {}
    for kind in ("sliderspace", "loras", "elrond", "sae"):
        path = tmp_path / "models" / kind
        path.mkdir(parents=True)
        exts = folder_paths.folder_names_and_paths[kind][1]
        monkeypatch.setitem(folder_paths.folder_names_and_paths, kind, ([str(path)], exts))
        roots[kind] = path
    out = tmp_path / "output"
    out.mkdir()
    monkeypatch.setattr(folder_paths, "get_output_directory", lambda: str(out))
    banks = pack_module("nodes.sliderspace.banks")
    files = pack_module("nodes.elrond.files")
    train = pack_module("nodes.concepts.train")
    collect = pack_module("nodes.concepts.collect")
    Directions = pack_module("sliderspace_core.decompose.directions").Directions
    sae_mod = pack_module("sliderspace_core.decompose.topk_sae")
    ConceptSAE = pack_module("sliderspace_core.concepts.sae").ConceptSAE
    d = Directions(torch.eye(2, 4), torch.ones(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64) / 4,
                   torch.zeros(4), 5, "conditioning:x:4", "exact", {})
    sae = sae_mod.TopKSAE.create(4, sae_mod.TopKSAEConfig(k=2, n_latents=8))
    csae = ConceptSAE(sae, "middle_block.1", torch.ones(8), torch.ones(8))
    calls = {
        "Save Slider Bank": (roots["sliderspace"], lambda n: banks.SaveSliderBank.execute(bank, n)),
        "Export Slider LoRA": (roots["loras"], lambda n: banks.ExportSliderLoRA.execute(bank, "0:1", "comfy", n)),
        "ELROND Save Directions": (roots["elrond"], lambda n: files.SaveDirections.execute(d, n)),
        "Save SAE": (roots["sae"], lambda n: train.SaveSAE.execute(csae, n)),
        "SAE Collect (set folder)": (out / collect.ACTIVATIONS_DIR, lambda n: _mkset(collect.new_set_folder(n))),
    }
    return tmp_path, calls


def _mkset(folder: str) -> None:
    os.makedirs(folder)
    with open(os.path.join(folder, "shard_00000.safetensors"), "wb") as f:
        f.write(b"x")


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_save_nodes_refuse_or_sanitise_hostile_names(savers, name):
    root, calls = savers
    errors = pack_module("sliderspace_core.common.errors")
    for node, (folder, call) in calls.items():
        before = _tree(root)
        try:
            call(name)
        except errors.InputError as e:
            assert e.node or "(" in node, (node, name, e)  # a node's error names the node (set folder: a function)
            assert "Fix:" in str(e)
            assert _tree(root) == before, (node, name)  # refused: nothing written anywhere
            continue
        new = _tree(root) - before
        assert new, (node, name)
        for f in new:
            full = os.path.realpath(os.path.join(root, f))
            assert full.startswith(os.path.realpath(folder) + os.sep), (node, name, f)
            first = os.path.relpath(full, os.path.realpath(folder)).split(os.sep)[0]
            assert safe(first if first.endswith(".safetensors") else first + ".safetensors"), (node, name, first)
