"""Every file format the pack reads: how to make a small valid one, how to mutate it, how the pack reads it.

A format is a :class:`Format`: ``build(folder)`` writes a valid file (or folder) and returns the path the
reader takes plus the files a mutation may hit; ``read(path)`` is exactly what the pack does with such a
file (the loader, plus what a consumer does right after: iterating a set, checking a chunk).
"""

from __future__ import annotations

import io
import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from sliderspace_core.common.safefile import read_header, write_safetensors
from sliderspace_core.concepts.activations import ActivationWriter, load_activation_set
from sliderspace_core.concepts.sae import ConceptSAE, load_concept_sae, save_concept_sae
from sliderspace_core.concepts.unbox import load_unbox
from sliderspace_core.decompose.directions import Directions
from sliderspace_core.decompose.pca import iter_npy_chunks
from sliderspace_core.decompose.topk_sae import TopKSAE, TopKSAEConfig, load_sae, save_sae
from sliderspace_core.decompose.topk_train import _checked
from sliderspace_core.elrond.directions import load_directions, save_directions
from sliderspace_core.sliderspace.bank import BankMeta, Slider, SliderBank, load_bank, read_bank_info, save_bank

from . import mutate as M


@dataclass
class Format:
    name: str
    build: Callable[[str], tuple[str, list[str]]]
    """``folder -> (path the reader takes, files a mutation may replace)``."""
    read: Callable[[str], object]
    kind: str = "safetensors"
    """How the mutable files are mutated: ``safetensors``, ``torch`` (zip/pickle) or ``json``; a folder
    format mixes them by file suffix."""


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------ builders

def build_bank(folder: str) -> tuple[str, list[str]]:
    g = _g(1)
    mods = {"input_blocks.1.1.transformer_blocks.0.attn2.to_k": (8, 6), "middle_block.1.proj_in": (4, 4)}
    sliders = [Slider(down={m: torch.randn(1, i, generator=g) for m, (o, i) in mods.items()},
                      up={m: torch.randn(o, 1, generator=g) for m, (o, i) in mods.items()}, alpha=1.0,
                      label=f"s{j}", direction=torch.randn(5, generator=g), variance=0.5 - j / 10, alignment=0.7)
               for j in range(2)]
    meta = BankMeta(family="SD15", model_fingerprint="abc", encoder_id="toy", prompts=["a dog"],
                    config={"seed": 0, "iterations": 3}, architecture={"context_dim": 768})
    path = os.path.join(folder, "bank.safetensors")
    save_bank(SliderBank(sliders, meta), path)
    return path, [path]


def read_bank(path: str) -> object:
    info = read_bank_info(path)  # what the widget route reads
    bank = load_bank(path)       # what Load Slider Bank reads
    assert info["n_sliders"] == len(bank)
    return bank


def _directions() -> Directions:
    g = _g(2)
    comps = torch.linalg.qr(torch.randn(8, 3, generator=g))[0].T.contiguous()
    var = torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)
    return Directions(comps, var, var / 10, torch.randn(8, generator=g), 12, "conditioning:SD1ClipModel:8", "exact",
                      {"word": "dog", "rule": "lid"})


def build_directions(folder: str) -> tuple[str, list[str]]:
    path = os.path.join(folder, "dirs.safetensors")
    save_directions(_directions(), path)
    return path, [path]


def _sae(seed: int = 3) -> TopKSAE:
    sae = TopKSAE.create(8, TopKSAEConfig(k=3, n_latents=16, seed=seed))
    with torch.no_grad():
        sae.firing_density.copy_(torch.rand(16, generator=_g(seed)))
    return sae


def build_sae(folder: str) -> tuple[str, list[str]]:
    path = os.path.join(folder, "sae.safetensors")
    save_sae(_sae(), path, metadata={"family": "SD15"})
    return path, [path]


def build_concept_sae(folder: str) -> tuple[str, list[str]]:
    path = os.path.join(folder, "csae.safetensors")
    mean = torch.rand(16, generator=_g(4)) + 0.5
    save_concept_sae(ConceptSAE(_sae(4), "middle_block.1", mean, mean / 3), path)
    return path, [path]


def build_activations(folder: str) -> tuple[str, list[str]]:
    root = os.path.join(folder, "acts")
    w = ActivationWriter(root, "middle_block.1", 8, 2, 3, shard_rows=12, dtype=torch.float16, meta={"family": "SD15"})
    g = _g(5)
    for s in range(4):
        w.add(torch.randn(6, 8, generator=g), sigma=1.0 + s, cond=s % 2, sample=s, positions=torch.arange(6))
    aset = w.close()
    return root, [os.path.join(root, n) for n in aset.shards]


def read_activations(path: str) -> object:
    aset = load_activation_set(path)
    rows = [_checked(c, aset.d) for c in aset]  # what SAE Train does with each chunk
    prov = aset.provenance()
    assert sum(r.shape[0] for r in rows) == aset.rows == prov["sigma"].shape[0]
    return aset


UNBOX_RUN = "unet.up_blocks.0.attentions.1_k3_hidden16_auxk4_bs64_lr0.0001"


def unbox_state() -> dict:
    g = _g(6)
    return {"state_dict": {"encoder.weight": torch.randn(16, 8, generator=g),
                           "decoder.weight": torch.randn(8, 16, generator=g), "pre_bias": torch.randn(8, generator=g),
                           "latent_bias": torch.randn(16, generator=g),
                           "stats_last_nonzero": torch.zeros(16, dtype=torch.long)}}


def build_unbox(folder: str) -> tuple[str, list[str]]:
    final = os.path.join(folder, UNBOX_RUN, "final")
    os.makedirs(final)
    with open(os.path.join(final, "config.json"), "w") as f:
        json.dump({"n_dirs_local": 16, "d_model": 8, "k": 3, "auxk": 4, "dead_steps_threshold": 1000}, f)
    torch.save(unbox_state(), os.path.join(final, "state_dict.pth"))
    torch.save(torch.rand(16, generator=_g(7)), os.path.join(final, "mean.pt"))
    torch.save(torch.rand(16, generator=_g(8)), os.path.join(final, "std.pt"))
    return os.path.dirname(final), [os.path.join(final, n) for n in ("config.json", "state_dict.pth", "mean.pt",
                                                                      "std.pt")]


def build_npy(folder: str) -> tuple[str, list[str]]:
    path = os.path.join(folder, "emb.npy")
    np.save(path, np.random.default_rng(9).standard_normal((20, 6)).astype(np.float32))
    return path, [path]


def read_npy(path: str) -> object:
    return [c.clone() for c in iter_npy_chunks(path, chunk_rows=7)]


def build_safetensors(folder: str) -> tuple[str, list[str]]:
    path = os.path.join(folder, "plain.safetensors")
    write_safetensors({"a": torch.ones(3, 2), "b": torch.arange(4, dtype=torch.int32)}, path, {"k": "v"})
    return path, [path]


FORMATS = [
    Format("slider_bank", build_bank, read_bank),
    Format("elrond_directions", build_directions, load_directions),
    Format("topk_sae", build_sae, load_sae),
    Format("concept_sae", build_concept_sae, load_concept_sae),
    Format("activation_shards", build_activations, read_activations),
    Format("sdxl_unbox", build_unbox, load_unbox, kind="folder"),
    Format("embeddings_npy", build_npy, read_npy, kind="npy"),
    Format("safefile_header", build_safetensors, read_header),
]
"""Every format the pack reads. ELROND gradients have no file format (they stay in memory), and exported
LoRAs are read by ComfyUI's LoraLoader, never by the pack."""


# ------------------------------------------------------------------------------------------ mutation

def canonical(files: list[str]) -> None:
    """Rewrite each safetensors header with sorted keys: safetensors writes its metadata map in a random
    order per process, so without this the same seed would flip different header bytes from run to run."""
    for path in files:
        if path.endswith(".safetensors"):
            with open(path, "rb") as f:
                header, body = M.split_safetensors(f.read())
            text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
            text += b" " * (-len(text) % 8)
            with open(path, "wb") as f:
                f.write(len(text).to_bytes(8, "little") + text + body)


def mutate_file(fmt: Format, files: list[str], rng: random.Random, canary: str) -> str:
    """Mutate one (or, for a folder, one or two) of ``files`` in place; returns a description."""
    done = []
    targets = [rng.choice(files)] if fmt.kind != "folder" or rng.random() < 0.8 else rng.sample(files, 2)
    for path in targets:
        with open(path, "rb") as f:
            data = f.read()
        if path.endswith(".safetensors"):
            how, new = M.mutate_safetensors(data, rng, canary)
            if rng.random() < 0.05 and len(files) > 1:  # a shard removed or another added
                how, new = ("removed", None) if rng.random() < 0.5 else ("foreign_shard", new)
        elif path.endswith((".pth", ".pt")):
            good = unbox_state() if path.endswith(".pth") else torch.rand(16, generator=_g(rng.randrange(2**31)))
            how, new = M.mutate_torch(data, rng, canary, good)
        elif path.endswith(".json"):
            how, new = M.mutate_json(data.decode(), rng)
        else:  # .npy
            how, new = _mutate_npy(data, rng, canary)
        if how == "foreign_shard":
            path = os.path.join(os.path.dirname(path), "shard_00099.safetensors")
        if new is None:
            os.remove(path)
        else:
            with open(path, "wb") as f:
                f.write(new)
        done.append(f"{os.path.basename(path)}:{how}")
    return ", ".join(done)


def _mutate_npy(data: bytes, rng: random.Random, canary: str) -> tuple[str, bytes]:
    r = rng.random()
    if r < 0.1:
        buf = io.BytesIO()
        np.save(buf, np.array([M.Canary(canary)], dtype=object), allow_pickle=True)
        return "object_array_pickle", buf.getvalue()
    if r < 0.2:
        return "pickle_payload", M.pickle_payload(canary, rng)
    if r < 0.45:  # edit the header dict text
        end = data.find(b"\n") + 1
        text = data[10:end].decode("latin1")
        repl = rng.choice(["'<f4'", "'<i4'", "'>f4'", "'<f2'", "'|O'", "'<c8'", "(20,)", "(6, 20)", "(-1, 6)",
                           "(10**30, 6)", "True", "'x'", "(20, 6, 1)", "()", "{"])
        i = rng.randrange(len(text))
        new = (text[:i] + repl + text[i + rng.randint(0, 8):])[: len(text) - 1].ljust(len(text) - 1) + "\n"
        return "npy_header", data[:10] + new.encode("latin1") + data[end:]
    m = rng.choice(M.BYTES[:4])
    return m.__name__, m(data, rng)
