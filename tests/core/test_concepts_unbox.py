"""sdxl-unbox import: a synthetic checkpoint in exactly their layout loads; code-running pickles are refused."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

from sliderspace_core.common.errors import InputError
from sliderspace_core.concepts.steering import Steerer
from sliderspace_core.concepts.unbox import comfy_block, load_unbox

RUN = "unet.up_blocks.0.attentions.1_k4_hidden64_auxk8_bs4096_lr0.0001"


def write_unbox(root, run=RUN, n=64, d=16, k=4, seed=0, state=None):
    """An sdxl-unbox-style folder: config.json, state_dict.pth ({'state_dict': ...}), mean.pt, std.pt."""
    g = torch.Generator().manual_seed(seed)
    final = os.path.join(root, run, "final")
    os.makedirs(final, exist_ok=True)
    with open(os.path.join(final, "config.json"), "w") as f:
        json.dump({"n_dirs_local": n, "d_model": d, "k": k, "auxk": 8, "dead_steps_threshold": 1000,
                   "extra": "ignored"}, f)
    dec = torch.randn(d, n, generator=g)
    dec /= dec.norm(dim=0, keepdim=True)
    sd = state if state is not None else {
        "encoder.weight": torch.randn(n, d, generator=g), "decoder.weight": dec,
        "pre_bias": torch.randn(d, generator=g), "latent_bias": torch.randn(n, generator=g) * 0.1,
        "stats_last_nonzero": torch.zeros(n, dtype=torch.long)}
    torch.save({"state_dict": sd}, os.path.join(final, "state_dict.pth"))
    torch.save(torch.rand(n, generator=g) + 0.5, os.path.join(final, "mean.pt"))
    torch.save(torch.rand(n, generator=g), os.path.join(final, "std.pt"))
    return final, sd


def test_hookpoints_map_to_comfy_paths():
    assert comfy_block("unet.down_blocks.2.attentions.1") == "input_blocks.8.1"
    assert comfy_block("unet.mid_block.attentions.0") == "middle_block.1"
    assert comfy_block("unet.up_blocks.0.attentions.0") == "output_blocks.0.1"
    assert comfy_block("up_blocks.0.attentions.1") == "output_blocks.1.1"
    assert comfy_block("unet.up_blocks.1.attentions.0") == "output_blocks.3.1"  # SD1.x
    with pytest.raises(InputError):
        comfy_block("unet.conv_in")


def test_synthetic_checkpoint_loads_encodes_and_steers(tmp_path):
    final, sd = write_unbox(str(tmp_path))
    for path in (final, os.path.dirname(final)):
        c = load_unbox(path)
        assert c.block == "output_blocks.1.1" and c.source == "sdxl-unbox:unet.up_blocks.0.attentions.1"
        assert (c.d, c.n_features, c.sae.k) == (16, 64, 4)
    # the reference encode: relu(topk(W_enc(x - pre_bias) + latent_bias)); decode: decoder.weight @ z + pre_bias
    x = torch.randn(5, 16)
    pre = (x - sd["pre_bias"]) @ sd["encoder.weight"].T + sd["latent_bias"]
    vals, idx = pre.topk(4, dim=1)
    z = torch.zeros(5, 64).scatter_(1, idx, vals.clamp_min(0))
    torch.testing.assert_close(c.sae.encode(x).detach(), z)
    torch.testing.assert_close(c.sae.decode(z).detach(), z @ sd["decoder.weight"].T + sd["pre_bias"])
    mean = torch.load(os.path.join(final, "mean.pt"), weights_only=True)
    out = Steerer(c, {7: 2.0}, "global").apply(torch.zeros(1, 4, 16), [0], 2, 2)
    torch.testing.assert_close(out[0, 0], 2.0 * mean[7] * sd["decoder.weight"][:, 7])


class _Canary:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))  # unpickling would create the canary file


def test_malicious_state_dict_is_refused_and_never_runs(tmp_path):
    final, _ = write_unbox(str(tmp_path))
    canary = str(tmp_path / "CANARY")
    live = str(tmp_path / "LIVE")
    pickle.loads(pickle.dumps(_Canary(live))).close()  # the payload is live: plain unpickling runs it
    assert os.path.exists(live)
    with open(os.path.join(final, "state_dict.pth"), "wb") as f:
        pickle.dump({"state_dict": {"encoder.weight": _Canary(canary)}}, f)
    with pytest.raises(InputError) as e:
        load_unbox(final)
    assert e.value.input_name == "folder" and "state_dict.pth" in str(e.value)
    assert not os.path.exists(canary)
    # the same through torch.save's zip format, and in mean.pt
    final2, _ = write_unbox(str(tmp_path / "b"))
    torch.save(_Canary(canary), os.path.join(final2, "mean.pt"))
    with pytest.raises(InputError, match="mean.pt"):
        load_unbox(final2)
    assert not os.path.exists(canary)


def test_bad_layouts_name_the_problem(tmp_path):
    with pytest.raises(InputError, match="not a folder"):
        load_unbox(str(tmp_path / "nope"))
    final, sd = write_unbox(str(tmp_path / "a"), state={"encoder.weight": torch.zeros(64, 8)})
    with pytest.raises(InputError, match="encoder.weight has shape"):
        load_unbox(final)
    final, _ = write_unbox(str(tmp_path / "b"), run="unet.mid_block.attentions.0_weird")
    with pytest.raises(InputError, match="folder name"):
        load_unbox(final)
    final, _ = write_unbox(str(tmp_path / "c"))
    with open(os.path.join(final, "config.json"), "w") as f:
        f.write("{}")
    with pytest.raises(InputError, match="config.json"):
        load_unbox(final)
