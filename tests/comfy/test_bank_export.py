"""Exported slider LoRAs load in real ComfyUI (SD1.5, SDXL, FLUX shapes) and in diffusers, losing no key.

Tiny random diffusion models are built from ComfyUI's own model configs (tests/comfy/families.py); the bank's
merged ΔW must come out of ComfyUI's LoRA patcher unchanged: patched W = W + Σ s_i ΔW_i.
"""

from __future__ import annotations

import logging
import os

import pytest
import torch

from .executor import NodeFailed, run_node
from .families import build_model as build
from .host import pack_module

UNET_TARGETS = ("attn2.to_k", "attn2.to_v", "attn1.to_out.0", "ff.net.2")
FLUX_TARGETS = ("img_attn.qkv", "img_attn.proj", "txt_attn.qkv", "txt_attn.proj", "linear1", "linear2")
SCALES = {0: 1.5, 2: -2.0, 3: 0.75}
FORMATS = {"SD15": ("comfy", "kohya", "peft"), "SDXL": ("comfy", "kohya", "peft"),
           "Flux": ("comfy", "kohya", "peft")}


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors on 2 shared cores


def random_bank(model, targets, seed: int, ranks=(1, 2, 1, 1)):
    bank_mod = pack_module("sliderspace_core.sliderspace.bank")
    glue = pack_module("nodes.glue.family")
    shapes = glue.module_shapes(model)
    modules = sorted(m for m in shapes if m.endswith(targets))
    g = torch.Generator().manual_seed(seed)
    sliders = []
    for i, r in enumerate(ranks):
        down = {m: torch.randn(r, shapes[m][1], generator=g) * 0.1 for m in modules}
        up = {m: torch.randn(shapes[m][0], r, generator=g) * 0.1 for m in modules}
        sliders.append(bank_mod.Slider(down=down, up=up, alpha=1.0 + i, label=f"s{i}",
                                       direction=torch.randn(8, generator=g), variance=1.0 / (i + 1)))
    meta = bank_mod.BankMeta(encoder_id="test", prompts=["a dog"], **glue.model_facts(model, modules))
    return bank_mod.SliderBank(sliders, meta)


@pytest.fixture(scope="module")
def models(comfy):
    out = {}
    for seed, (family, targets) in enumerate((("SD15", UNET_TARGETS), ("SDXL", UNET_TARGETS),
                                              ("Flux", FLUX_TARGETS))):
        mp = build(family, seed)
        out[family] = (mp, random_bank(mp, targets, seed + 10))
    return out


class LogLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def load_into_comfy(mp, lora_sd):
    """``comfy.sd.load_lora_for_models`` and the warnings it logged."""
    import comfy.sd

    log = LogLines()
    root = logging.getLogger()
    root.addHandler(log)
    try:
        patched, _ = comfy.sd.load_lora_for_models(mp, None, lora_sd, 1.0, 0)
    finally:
        root.removeHandler(log)
    return patched, log.lines


def expected_weights(mp, bank, scales):
    root = mp.model.diffusion_model
    return {m: root.get_submodule(m).weight.detach().double()
            + sum(s * bank.sliders[i].delta(m).double() for i, s in scales.items()) for m in bank.modules}


def assert_patched_equals(patched, bank, scales, want):
    """Patch the weights as ComfyUI does before sampling, compare, and restore them bit for bit."""
    root = patched.model.diffusion_model
    before = {m: root.get_submodule(m).weight.detach().clone() for m in bank.modules}
    patched.patch_model()
    try:
        for m in bank.modules:
            torch.testing.assert_close(root.get_submodule(m).weight.detach().double(), want[m],
                                       rtol=1e-5, atol=1e-5, msg=lambda s, m=m: f"{m}: {s}")
    finally:
        patched.unpatch_model()
    for m in bank.modules:
        assert torch.equal(root.get_submodule(m).weight, before[m])


@pytest.mark.parametrize("family,key_format", [(f, k) for f, ks in FORMATS.items() for k in ks])
def test_export_loads_in_comfy_with_every_key_and_exact_delta(models, family, key_format):
    export, glue = pack_module("sliderspace_core.sliderspace.export"), pack_module("nodes.glue.family")
    mp, bank = models[family]
    assert key_format in export.key_formats(family)
    names = glue.diffusers_names(family, glue.model_architecture(mp))
    lora_sd = export.bank_to_lora(bank, SCALES, key_format, family, names)
    patched, logs = load_into_comfy(mp, lora_sd)
    assert not [x for x in logs if "not loaded" in x.lower()], logs[:5]
    assert set(patched.patches) == {f"diffusion_model.{m}.weight" for m in bank.modules}
    assert len(patched.patches) == len(bank.modules) >= 4
    assert_patched_equals(patched, bank, SCALES, expected_weights(mp, bank, SCALES))


def test_the_log_capture_sees_unloaded_keys(models):
    mp, _ = models["SD15"]
    _, logs = load_into_comfy(mp, {"diffusion_model.nope.lora_up.weight": torch.zeros(4, 1),
                                   "diffusion_model.nope.lora_down.weight": torch.zeros(1, 4)})
    assert any("lora key not loaded" in x for x in logs)


def test_bank_fits_its_model_and_not_another(models):
    errors, glue = pack_module("sliderspace_core.common.errors"), pack_module("nodes.glue.family")
    mp, bank = models["SD15"]
    glue.check_bank_for_model(bank, mp)
    assert bank.meta.family == "SD15" and len(bank.meta.model_fingerprint) == 16
    for other in ("SDXL", "Flux"):
        with pytest.raises(errors.InputError) as err:
            glue.check_bank_for_model(bank, models[other][0])
        assert err.value.input_name == "bank" and "SD15" in str(err.value)


@pytest.fixture
def folders(comfy, tmp_path, monkeypatch):
    """Point the sliderspace and loras model folders at empty temp folders."""
    import folder_paths

    pack_module("nodes.sliderspace.banks")  # registers the sliderspace folder
    out = {}
    for kind in ("sliderspace", "loras"):
        path = tmp_path / kind
        path.mkdir()
        exts = folder_paths.folder_names_and_paths[kind][1]
        monkeypatch.setitem(folder_paths.folder_names_and_paths, kind, ([str(path)], exts))
        out[kind] = path
    return out


def _out(node_output):
    return node_output.args if hasattr(node_output, "args") else node_output


def test_save_and_load_nodes_round_trip_without_overwriting(models, folders):
    nodes = pack_module("nodes.sliderspace.banks")
    _, bank = models["Flux"]
    save = {"class_type": "SliderSpaceSaveSliderBank", "bank": bank, "filename_prefix": "../flux sliders"}
    first = run_node(**save)[0]  # through ComfyUI's executor, as a server runs it
    second = run_node(**save)[0]
    assert (first, second) == ("flux sliders_00001.safetensors", "flux sliders_00002.safetensors")
    assert sorted(os.listdir(folders["sliderspace"])) == [first, second]
    assert pack_module("nodes.glue.folders").bank_files() == [first, second]
    back = run_node("SliderSpaceLoadSliderBank", file=first)[0]  # the file list is read at validation
    assert back.meta == bank.meta and back.modules == bank.modules
    pairs = zip(bank.sliders, back.sliders, strict=True)
    assert all(torch.equal(a.up[m], b.up[m]) for a, b in pairs for m in bank.modules)
    assert nodes.LoadSliderBank.fingerprint_inputs(first) != nodes.LoadSliderBank.fingerprint_inputs(second)
    errors = pack_module("sliderspace_core.common.errors")
    with pytest.raises(errors.InputError) as err:
        nodes.LoadSliderBank.execute("missing.safetensors")  # a direct call
    assert err.value.node == nodes.LoadSliderBank.NAME and err.value.input_name == "file"
    with pytest.raises(NodeFailed) as failed:  # a V3 combo value outside the list reaches the node in 0.3.75
        run_node("SliderSpaceLoadSliderBank", file="missing.safetensors")
    assert nodes.LoadSliderBank.NAME in failed.value.message and "input 'file'" in failed.value.message


@pytest.mark.parametrize("key_format", ["kohya", "peft"])
def test_export_node_writes_a_lora_the_stock_loader_lists_and_loads(comfy, models, folders, key_format):
    import folder_paths

    pack_module("nodes.sliderspace.banks")  # registers the folders
    mp, bank = models["SD15"]
    name = run_node("SliderSpaceExportSliderLoRA", bank=bank, scales="0:1.5, 2:-2, 3:0.75", key_format=key_format,
                    filename="dog/../slider")[0]
    assert name == "dog_._slider_00001.safetensors" and os.listdir(folders["loras"]) == [name]
    assert name in folder_paths.get_filename_list("loras")
    log = LogLines()
    logging.getLogger().addHandler(log)
    try:
        patched = comfy["classes"]["LoraLoaderModelOnly"]().load_lora_model_only(mp, name, 1.0)[0]
    finally:
        logging.getLogger().removeHandler(log)
    assert not [x for x in log.lines if "not loaded" in x.lower()], log.lines[:5]
    assert len(patched.patches) == len(bank.modules)
    assert_patched_equals(patched, bank, SCALES, expected_weights(mp, bank, SCALES))


def test_export_node_errors_name_node_and_input(models, folders):
    nodes = pack_module("nodes.sliderspace.banks")
    mp, bank = models["SD15"]
    for (scales, fmt, filename), input_name in ((("0:1, 9:1", "comfy", "x"), "scales"),
                                                (("0:1", "comfy", "///"), "filename")):
        with pytest.raises(NodeFailed) as err:
            run_node("SliderSpaceExportSliderLoRA", bank=bank, scales=scales, key_format=fmt, filename=filename)
        assert nodes.ExportSliderLoRA.NAME in err.value.message and f"input '{input_name}'" in err.value.message
    with pytest.raises(NodeFailed) as err:
        run_node("SliderSpaceExportSliderLoRA", bank=bank, scales="0:1", key_format="comfy", filename="x",
                 model=models["Flux"][0])
    assert "input 'bank'" in err.value.message
    assert os.listdir(folders["loras"]) == []


# ------------------------------------------------------------------------------------- diffusers / PEFT

def diffusers_model(family: str):
    import diffusers

    torch.manual_seed(0)
    if family == "Flux":
        return diffusers.FluxTransformer2DModel(
            patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=32,
            num_attention_heads=2, joint_attention_dim=64, pooled_projection_dim=32, guidance_embeds=True,
            axes_dims_rope=(8, 12, 12))
    common = {"sample_size": 8, "layers_per_block": 1, "norm_num_groups": 32}
    if family == "SD15":
        return diffusers.UNet2DConditionModel(
            block_out_channels=(320,), down_block_types=("CrossAttnDownBlock2D",),
            up_block_types=("CrossAttnUpBlock2D",), cross_attention_dim=768, attention_head_dim=8, **common)
    return diffusers.UNet2DConditionModel(
        block_out_channels=(64, 128), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=2048,
        attention_head_dim=(1, 2), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816, **common)


@pytest.mark.parametrize("family", ["SD15", "SDXL", "Flux"])
def test_peft_export_loads_in_diffusers_with_every_key_and_exact_delta(models, family):
    pytest.importorskip("diffusers", reason="diffusers is in requirements-test.txt")
    pytest.importorskip("peft", reason="peft is in requirements-test.txt")
    import warnings

    export, glue = pack_module("sliderspace_core.sliderspace.export"), pack_module("nodes.glue.family")
    mp, bank = models[family]
    names = glue.diffusers_names(family, glue.model_architecture(mp))
    lora_sd = export.bank_to_lora(bank, SCALES, "peft", family, names)
    model = diffusers_model(family)
    prefix = "transformer" if family == "Flux" else "unet"
    log = LogLines()
    loggers = [logging.getLogger(n) for n in ("diffusers", "peft", "")]
    for lg in loggers:
        lg.addHandler(log)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.load_lora_adapter(lora_sd, prefix=prefix, adapter_name="sliders")
    finally:
        for lg in loggers:
            lg.removeHandler(log)
    noise = [x for x in log.lines + [str(w.message) for w in caught]
             if any(k in x.lower() for k in ("unexpected", "missing", "not found", "not loaded"))]
    assert not noise, noise[:3]
    wrapped = {n for n, m in model.named_modules() if hasattr(m, "lora_A") and "sliders" in m.lora_A}
    assert wrapped == {t.name for m in bank.modules for t in names[m]}
    for m in bank.modules:
        want = sum(s * bank.sliders[i].delta(m).double() for i, s in SCALES.items())
        parts = []
        for t in sorted(names[m], key=lambda t: t.start):
            layer = model.get_submodule(t.name)
            parts.append(layer.scaling["sliders"] * (layer.lora_B["sliders"].weight.double()
                                                     @ layer.lora_A["sliders"].weight.double()))
        torch.testing.assert_close(torch.cat(parts), want, rtol=1e-5, atol=1e-6)


def test_node_schemas_build_as_object_info_does(comfy, folders):
    nodes = pack_module("nodes.sliderspace.banks")
    (folders["sliderspace"] / "a.safetensors").write_bytes(b"")
    for cls in (nodes.SaveSliderBank, nodes.LoadSliderBank, nodes.ExportSliderLoRA):
        info = cls.GET_NODE_INFO_V1()
        assert info["category"] == "SliderSpace/Sliders" and info["output_node"] == (cls is not nodes.LoadSliderBank)
    kind, opts = nodes.LoadSliderBank.INPUT_TYPES()["required"]["file"]
    assert kind == "COMBO" and opts["options"] == ["a.safetensors"]  # listed afresh on each refresh
