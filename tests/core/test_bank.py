"""Slider bank files (lossless, refusing damaged or foreign files), names, scales and LoRA export math."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from sliderspace_core.common.errors import InputError
from sliderspace_core.common.safefile import next_free_path, write_safetensors
from sliderspace_core.sliderspace.bank import (
    BankMeta,
    Slider,
    SliderBank,
    check_bank_fits,
    fingerprint_state,
    load_bank,
    parse_scales,
    sanitize_name,
    save_bank,
)
from sliderspace_core.sliderspace.export import (
    Target,
    bank_to_lora,
    key_formats,
    lora_metadata,
    merge_sliders,
    save_lora,
)

MODULES = {"input_blocks.1.1.transformer_blocks.0.attn2.to_k": (8, 6),
           "middle_block.1.transformer_blocks.0.attn2.to_v": (5, 6)}


def make_bank(ranks=(1, 2, 1), seed: int = 0, modules=MODULES, dim: int = 4) -> SliderBank:
    g = torch.Generator().manual_seed(seed)
    sliders = []
    for i, r in enumerate(ranks):
        down = {m: torch.randn(r, fin, generator=g) for m, (_, fin) in modules.items()}
        up = {m: torch.randn(fout, r, generator=g) for m, (fout, _) in modules.items()}
        sliders.append(Slider(down=down, up=up, alpha=0.5 + i, label=f"slider {i} – ünïcode",
                              direction=torch.randn(dim, generator=g) if i != 1 else None,
                              variance=0.1 / (i + 1), alignment=None if i == 2 else 0.25 * i + 1 / 3))
    meta = BankMeta(family="SD15", model_fingerprint="abc123", encoder_id="clip:test",
                    prompts=["a dog", "ä cat"],
                    config={"seed": 7, "lr": 2e-3, "targets": ["attn2.to_k"], "nested": {"x": 1.5}},
                    architecture={"num_res_blocks": [1], "channel_mult": [1]})
    return SliderBank(sliders, meta)


def assert_no_files(folder) -> None:
    assert os.listdir(folder) == [], os.listdir(folder)


def assert_names(err: pytest.ExceptionInfo, input_name: str, *words: str) -> None:
    assert err.value.input_name == input_name
    text = str(err.value)
    assert f"input '{input_name}'" in text and "Fix:" in text, text
    for w in words:
        assert w in text, text


# ------------------------------------------------------------------------------------------- round trip

def test_save_load_is_lossless_including_metadata(tmp_path):
    bank = make_bank()
    bank.sliders[0].down = {m: t.half() for m, t in bank.sliders[0].down.items()}  # dtypes are kept too
    path = tmp_path / "bank.safetensors"
    save_bank(bank, str(path))
    back = load_bank(str(path))
    assert back.meta == bank.meta and back.modules == bank.modules and len(back) == len(bank)
    for a, b in zip(bank.sliders, back.sliders, strict=True):
        assert (a.alpha, a.label, a.variance, a.alignment) == (b.alpha, b.label, b.variance, b.alignment)
        for m in bank.modules:
            assert a.down[m].dtype == b.down[m].dtype and torch.equal(a.down[m], b.down[m])
            assert torch.equal(a.up[m], b.up[m])
        assert (a.direction is None) == (b.direction is None)
        if a.direction is not None:
            assert torch.equal(a.direction, b.direction)
    with safe_open(str(path), "pt") as f:
        keys, meta = set(f.keys()), f.metadata()
    assert "slider.1.input_blocks.1.1.transformer_blocks.0.attn2.to_k.down" in keys
    assert "slider.0.direction" in keys and "slider.1.direction" not in keys
    assert meta["format_version"] == "1" and json.loads(meta["bank"])["family"] == "SD15"
    assert [f for f in os.listdir(tmp_path)] == ["bank.safetensors"]


# -------------------------------------------------------------------------------------- save rejections

M0 = next(iter(MODULES))


@pytest.mark.parametrize("damage,words", [
    (lambda b: b.sliders[1].up.__setitem__(M0, torch.full((8, 2), float("nan"))), ["NaN"]),
    (lambda b: b.sliders[0].down.__setitem__(M0, torch.randn(3, 6)), ["inconsistent shapes"]),
    (lambda b: b.sliders[2].down.pop(M0), ["other modules"]),
    (lambda b: b.meta.config.__setitem__("bad", object()), ["JSON"]),
    (lambda b: setattr(b.sliders[0], "variance", float("inf")), ["non-finite"]),
    (lambda b: b.sliders.clear(), ["no sliders"]),
])
def test_save_refuses_bad_banks_and_writes_nothing(tmp_path, damage, words):
    bank = make_bank()
    damage(bank)
    with pytest.raises(InputError) as err:
        save_bank(bank, str(tmp_path / "bank.safetensors"))
    assert_names(err, "bank", *words)
    assert_no_files(tmp_path)


def test_save_never_overwrites_and_needs_an_existing_folder(tmp_path):
    path = tmp_path / "bank.safetensors"
    save_bank(make_bank(seed=1), str(path))
    before = path.read_bytes()
    with pytest.raises(InputError) as err:
        save_bank(make_bank(seed=2), str(path))
    assert_names(err, "file", "already exists")
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["bank.safetensors"]
    with pytest.raises(InputError) as err:
        save_bank(make_bank(), str(tmp_path / "missing" / "bank.safetensors"))
    assert_names(err, "file", "does not exist")


def test_a_failing_write_leaves_no_temp_file(tmp_path):
    with pytest.raises(TypeError):  # safetensors refuses non-str metadata after the temp file exists
        write_safetensors({"x": torch.zeros(2)}, str(tmp_path / "x.safetensors"), {"bad": 1})
    assert_no_files(tmp_path)


# -------------------------------------------------------------------------------------- load rejections

def rewrite(src, dst, edit_tensors=None, edit_meta=None) -> None:
    """Copy a bank file through safetensors, editing its tensors or metadata on the way."""
    tensors = load_file(str(src))
    with safe_open(str(src), "pt") as f:
        meta = f.metadata()
    if edit_tensors:
        edit_tensors(tensors)
    if edit_meta:
        edit_meta(meta)
    save_file(tensors, str(dst), metadata=meta)


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.safetensors"
    save_bank(make_bank(), str(path))
    return path


K0 = "slider.0.input_blocks.1.1.transformer_blocks.0.attn2.to_k"


def test_load_refuses_pickles_without_unpickling(tmp_path):
    torch_file, raw = tmp_path / "bank.pt", tmp_path / "bank.pkl"
    torch.save({"x": torch.zeros(2)}, str(torch_file))
    raw.write_bytes(pickle.dumps({"x": 1}, protocol=4))
    for p in (torch_file, raw):
        with pytest.raises(InputError) as err:
            load_bank(str(p))
        assert_names(err, "file", "pickle", "never unpickles")


def test_load_refuses_files_that_are_not_safetensors(tmp_path):
    for name, data in (("t.safetensors", b"version https://git-lfs.github.com/spec/v1\noid sha256:00\n"),
                       ("short.safetensors", b"{}"), ("junk.safetensors", bytes(range(256)) * 4)):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError) as err:
            load_bank(str(tmp_path / name))
        assert err.value.input_name == "file"
        assert any(w in str(err.value) for w in ("not a safetensors", "truncated", "damaged")), str(err.value)
    with pytest.raises(InputError) as err:
        load_bank(str(tmp_path / "nope.safetensors"))
    assert_names(err, "file", "does not exist")


@pytest.mark.parametrize("keep", [4, 20, -7])
def test_load_refuses_truncated_files(tmp_path, good, keep):
    data = good.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:keep])
    with pytest.raises(InputError) as err:
        load_bank(str(cut))
    assert_names(err, "file", "truncated")


@pytest.mark.parametrize("edit,words", [
    (lambda m: m.pop("format_version"), ["not a SliderSpace slider bank"]),
    (lambda m: m.clear(), ["not a SliderSpace slider bank"]),
    (lambda m: m.__setitem__("format_version", "2"), ["format version 2", "update"]),
    (lambda m: m.__setitem__("format_version", "one"), ["invalid format version"]),
    (lambda m: m.__setitem__("bank", "{not json"), ["could not be read"]),
])
def test_load_refuses_wrong_or_missing_format(tmp_path, good, edit, words):
    bad = tmp_path / "bad.safetensors"
    rewrite(good, bad, edit_meta=edit)
    with pytest.raises(InputError) as err:
        load_bank(str(bad))
    assert_names(err, "file", *words)


def test_load_refuses_a_plain_lora_file(tmp_path):
    path = tmp_path / "lora.safetensors"
    save_file({"diffusion_model.x.lora_up.weight": torch.zeros(4, 1)}, str(path))
    with pytest.raises(InputError) as err:
        load_bank(str(path))
    assert_names(err, "file", "not a SliderSpace slider bank", "LoraLoader")


@pytest.mark.parametrize("edit,words", [
    (lambda t: t.__setitem__(f"{K0}.up", torch.full_like(t[f"{K0}.up"], float("inf"))), ["NaN/Inf"]),
    (lambda t: t.__setitem__(f"{K0}.down", torch.full_like(t[f"{K0}.down"], float("nan"))), ["NaN/Inf"]),
    (lambda t: t.pop(f"{K0}.up"), ["misses tensor", f"{K0}.up"]),
    (lambda t: t.pop("slider.2.direction"), ["misses tensor", "slider.2.direction"]),
    (lambda t: t.__setitem__("slider.9.extra.down", torch.zeros(1, 6)), ["does not describe"]),
    (lambda t: t.__setitem__(f"{K0}.up", torch.zeros(8, 3)), ["inconsistent shapes"]),
    (lambda t: t.__setitem__(f"slider.1.{M0}.down", torch.zeros(2, 7)), ["other sliders"]),
    (lambda t: t.__setitem__("slider.0.direction", torch.zeros(5)), ["different lengths"]),
])
def test_load_refuses_damaged_tensors(tmp_path, good, edit, words):
    bad = tmp_path / "bad.safetensors"
    rewrite(good, bad, edit_tensors=edit)
    with pytest.raises(InputError) as err:
        load_bank(str(bad))
    assert_names(err, "file", *words)


# ------------------------------------------------------------------------------------------------ fits

def test_check_bank_fits_family_and_shapes():
    bank = make_bank()
    check_bank_fits(bank, dict(MODULES, other=(3, 3)), "SD15")
    check_bank_fits(bank, MODULES, "SD15_instructpix2pix")  # same weights, same group
    with pytest.raises(InputError) as err:
        check_bank_fits(bank, MODULES, "SDXL")
    assert_names(err, "bank", "SD15", "SDXL")
    with pytest.raises(InputError) as err:
        check_bank_fits(bank, {k: v for k, v in MODULES.items() if k != M0}, "SD15")
    assert_names(err, "bank", "does not have", M0)
    with pytest.raises(InputError) as err:
        check_bank_fits(bank, dict(MODULES, **{M0: (8, 7)}), "SD15")
    assert_names(err, "bank", "8×6", "8×7")


# -------------------------------------------------------------------------------------- names, scales

@pytest.mark.parametrize("raw,want", [
    ("my bank", "my bank.safetensors"), ("dogs.safetensors", "dogs.safetensors"),
    ("../../etc/passwd", "etc_passwd.safetensors"), ("a\\b/c", "a_b_c.safetensors"),
    ("x..y", "x.y.safetensors"), ("héllo*?", "h_llo.safetensors"), ("CON", "_CON.safetensors"),
])
def test_sanitize_name(raw, want):
    got = sanitize_name(raw)
    assert got == want and "/" not in got and "\\" not in got and ".." not in got


@pytest.mark.parametrize("raw", ["", "   ", "..", "/", "***"])
def test_sanitize_name_refuses_empty_results(raw):
    with pytest.raises(InputError) as err:
        sanitize_name(raw, "filename_prefix")
    assert_names(err, "filename_prefix", "no usable file name")


def test_next_free_path_counts_up(tmp_path):
    first = next_free_path(str(tmp_path), "b.safetensors")
    assert first.endswith("b_00001.safetensors")
    (tmp_path / "b_00001.safetensors").write_bytes(b"")
    (tmp_path / "b_00007.safetensors").write_bytes(b"")
    assert next_free_path(str(tmp_path), "b.safetensors").endswith("b_00008.safetensors")


def test_parse_scales_accepts_the_documented_forms():
    assert parse_scales("0:1.5, 3:-2", 4) == {0: 1.5, 3: -2.0}
    assert parse_scales(" 1 = 0.5 ;2:1e-1\n 0 : -0.25,", 3) == {1: 0.5, 2: 0.1, 0: -0.25}
    assert parse_scales("", 3) == {} and parse_scales(" , ", 3) == {}


@pytest.mark.parametrize("text,words", [
    ("abc", ["'abc'", "index:scale"]), ("0:x", ["not a number"]), ("5:1", ["out of range", "3 slider"]),
    ("-1:1", ["out of range"]), ("0:1, 0:2", ["twice"]), ("0:nan", ["finite"]), ("1:inf", ["finite"]),
    ("0 1", ["index:scale"]),
])
def test_parse_scales_rejects_malformed_text(text, words):
    with pytest.raises(InputError) as err:
        parse_scales(text, 3)
    assert_names(err, "scales", *words)


def test_fingerprint_is_stable_and_sensitive():
    g = torch.Generator().manual_seed(0)
    w = {"a.weight": torch.randn(300, 200, generator=g), "b.weight": torch.randn(7, 5, generator=g)}
    fp = fingerprint_state(w)
    assert len(fp) == 16 and fp == fingerprint_state(list(reversed(list(w.items()))))
    assert fp == fingerprint_state({k: v.bfloat16() for k, v in w.items()})  # same model in another dtype
    assert fp != fingerprint_state({"a.weight": w["a.weight"], "c.weight": w["b.weight"]})
    moved = dict(w, **{"a.weight": w["a.weight"] * 1.5})
    assert fp != fingerprint_state(moved)


# ----------------------------------------------------------------------------------------- export math

def reference_delta(bank: SliderBank, scales: dict[int, float], module: str) -> torch.Tensor:
    return sum(s * bank.sliders[i].alpha / bank.sliders[i].rank
               * (bank.sliders[i].up[module].double() @ bank.sliders[i].down[module].double())
               for i, s in scales.items())


def lora_delta(sd: dict, up_key: str, down_key: str, alpha_key: str | None) -> torch.Tensor:
    up, down = sd[up_key].double(), sd[down_key].double()
    alpha = float(sd[alpha_key]) if alpha_key else down.shape[0]
    return alpha / down.shape[0] * (up @ down)


SCALES = {0: 1.5, 2: -2.0, 1: 0.0}


def test_merged_lora_delta_is_the_scaled_sum_of_slider_deltas():
    bank = make_bank(ranks=(1, 2, 3))
    merged = merge_sliders(bank, SCALES)
    for m in bank.modules:
        up, down = merged[m]
        assert down.shape[0] == 1 + 3  # slider 1 has scale 0 and is dropped
        torch.testing.assert_close((up.double() @ down.double()), reference_delta(bank, SCALES, m))
    sd = bank_to_lora(bank, SCALES, "comfy", "SD15")
    assert len(sd) == 3 * len(bank.modules)
    for m in bank.modules:
        stem = f"diffusion_model.{m}"
        assert float(sd[f"{stem}.alpha"]) == 4.0
        got = lora_delta(sd, f"{stem}.lora_up.weight", f"{stem}.lora_down.weight", f"{stem}.alpha")
        torch.testing.assert_close(got, reference_delta(bank, SCALES, m))


def test_kohya_names_follow_sd_scripts_per_family():
    bank = make_bank()
    names = {m: [Target(f"down_blocks.{j}.attentions.0.transformer_blocks.0.attn2.to_k")]
             for j, m in enumerate(MODULES)}
    sdxl = bank_to_lora(bank, {0: 1.0}, "kohya", "SDXL")
    assert "lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_k.lora_up.weight" in sdxl
    sd1 = bank_to_lora(bank, {0: 1.0}, "kohya", "SD15", names)
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.alpha" in sd1
    with pytest.raises(InputError) as err:
        bank_to_lora(bank, {0: 1.0}, "kohya", "SD15", None)
    assert_names(err, "model", "architecture")


def test_peft_splits_fused_weights_into_their_diffusers_projections():
    mods = {"double_blocks.0.img_attn.qkv": (9, 4), "double_blocks.0.img_attn.proj": (3, 3)}
    bank = make_bank(modules=mods)
    names = {"double_blocks.0.img_attn.qkv": [Target(f"transformer_blocks.0.attn.to_{c}", 3 * j, 3)
                                             for j, c in enumerate("qkv")],
             "double_blocks.0.img_attn.proj": [Target("transformer_blocks.0.attn.to_out.0")]}
    sd = bank_to_lora(bank, SCALES, "peft", "Flux", names)
    assert len(sd) == 2 * 4 and not any(k.endswith(".alpha") for k in sd)
    parts = [sd[f"transformer.transformer_blocks.0.attn.to_{c}.lora_B.weight"].double() for c in "qkv"]
    down = sd["transformer.transformer_blocks.0.attn.to_q.lora_A.weight"].double()
    want = reference_delta(bank, SCALES, "double_blocks.0.img_attn.qkv")
    torch.testing.assert_close(torch.cat(parts) @ down, want)
    gap = dict(names, **{"double_blocks.0.img_attn.qkv": names["double_blocks.0.img_attn.qkv"][:2]})
    with pytest.raises(InputError) as err:
        bank_to_lora(bank, SCALES, "peft", "Flux", gap)
    assert_names(err, "key_format", "not covered")


def test_peft_unet_keys_use_the_processor_spelling():
    bank = make_bank()
    names = {m: [Target(f"down_blocks.0.attentions.{j}.transformer_blocks.0.attn2.to_{'kv'[j]}")]
             for j, m in enumerate(MODULES)}
    sd = bank_to_lora(bank, {1: 2.0}, "peft", "SDXL", names)
    stem = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora"
    assert {f"{stem}.up.weight", f"{stem}.down.weight"} <= set(sd)
    torch.testing.assert_close(lora_delta(sd, f"{stem}.up.weight", f"{stem}.down.weight", None),
                               reference_delta(bank, {1: 2.0}, next(iter(MODULES))))


@pytest.mark.parametrize("scales,fmt,family,input_name", [
    ({0: 0.0}, "comfy", "SD15", "scales"), ({}, "comfy", "SD15", "scales"),
    ({3: 1.0}, "comfy", "SD15", "scales"),
    ({0: 1.0}, "kohya", "SD3", "key_format"), ({0: 1.0}, "peft", "", "key_format"),
])
def test_export_rejections_name_the_input(scales, fmt, family, input_name):
    with pytest.raises(InputError) as err:
        bank_to_lora(make_bank(), scales, fmt, family)
    assert err.value.input_name == input_name
    assert key_formats("SD3") == ("comfy",) and key_formats("FluxSchnell") == ("comfy", "kohya", "peft")


def test_save_lora_round_trip_and_refuses_nan(tmp_path):
    bank = make_bank()
    sd = bank_to_lora(bank, SCALES, "comfy", "SD15", dtype=torch.float16)
    path = tmp_path / "s.safetensors"
    save_lora(sd, str(path), lora_metadata(bank, SCALES, "comfy"))
    back = load_file(str(path))
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    with safe_open(str(path), "pt") as f:
        info = json.loads(f.metadata()["sliderspace_export"])
    assert info["family"] == "SD15" and [s["index"] for s in info["sliders"]] == [0, 1, 2]
    bad = dict(sd)
    bad[next(iter(sd))] = torch.full_like(sd[next(iter(sd))], float("nan"))
    with pytest.raises(InputError):
        save_lora(bad, str(tmp_path / "bad.safetensors"))
    assert os.listdir(tmp_path) == ["s.safetensors"]
