"""SliderSpace on every family: the whole chain on tiny SD1.5-, SDXL-, FLUX- and SD3-shaped models.

Trajectory Sampler → CLIP Embed → PCA → Train Sliders (preset ``auto``) → Save/Load → Apply Slider Bank /
Random Sparse Sliders / Slider Grid → Export, each family with its own latent format, VAE channels and
conditioning (tests/comfy/families.py). One chain per family is built once (module scope) and every
assertion reads it; the family models are tiny, so the whole module stays well under a minute of CPU.
"""

from __future__ import annotations

import logging
import os

import pytest
import torch

from .families import FAMILIES, LATENT_CHANNELS, build_family, build_model
from .host import pack_module
from .test_bank_export import LogLines
from .test_discovery import _out

SIZE, STEPS, N_TRAJ = 32, 3, 3
EXPECTED_PRESET = {"SD15": "cross-attention k/v", "SDXL": "cross-attention k/v",
                   "Flux": "FLUX attention: double qkv/proj + single linear1/linear2",
                   "SD3": "SD3 joint-block attention: qkv/proj"}
EXPECTED_MODULES = {  # what the auto preset must select on the tiny models
    "SD15": 8, "SDXL": 8, "Flux": 6,  # FLUX: img/txt qkv + proj of 1 double block, linear1 + linear2 of 1 single
    "SD3": 7,  # 2 joint blocks × (x, context) × (qkv, proj), minus the last context block's proj (pre-only)
}


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors on 2 shared cores


@pytest.fixture(scope="module")
def clip_vision(comfy):
    from .tiny_models import build_clip_vision

    return build_clip_vision()


@pytest.fixture(scope="module")
def folders(comfy, tmp_path_factory):
    import folder_paths

    pack_module("nodes.sliderspace.banks")  # registers the sliderspace folder
    saved = {}
    out = {}
    for kind in ("sliderspace", "loras"):
        path = tmp_path_factory.mktemp(kind)
        saved[kind] = folder_paths.folder_names_and_paths[kind]
        folder_paths.folder_names_and_paths[kind] = ([str(path)], saved[kind][1])
        out[kind] = path
    yield out
    folder_paths.folder_names_and_paths.update(saved)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class Chain:
    """One family's run of the whole chain, kept for the assertions."""


@pytest.fixture(scope="module", params=FAMILIES)
def chain(request, comfy, clip_vision):
    C = comfy["classes"]
    fam = build_family(request.param, seed=len(request.param))
    c = Chain()
    c.fam, c.name, c.cv = fam, request.param, clip_vision
    dm = fam.model.model.diffusion_model
    with torch.inference_mode():  # as the executor runs nodes
        c.traj, c.finals = _out(C["SliderSpaceTrajectorySampler"].execute(
            fam.model, "a dog\na cat", "", N_TRAJ, 7, STEPS, 2.0, "euler", "normal", SIZE, SIZE, 1,
            "every step", 1, "float32", clip=fam.clip))
        c.emb = _out(C["SliderSpaceClipEmbed"].execute(8, trajectories=c.traj, vae=fam.vae, clip_vision=clip_vision))[0]
        c.basis, _ = _out(C["SliderSpacePCADecompose"].execute(c.emb, 2, "auto", 0))
        c.pos, c.neg = fam.encode("a dog"), fam.encode("")
        c.before = snapshot(dm)
        c.flags = [p.requires_grad for p in dm.parameters()]
        c.bank, _ = _out(C["SliderSpaceTrainSliders"].execute(
            fam.model, fam.vae, c.pos, c.basis, c.traj, 2, 3, 5e-2, 1, "auto", "", 2, 0, False, False,
            clip_vision=clip_vision))
    c.after = snapshot(dm)
    return c


def sample(c, model, steps=STEPS, cfg=2.0, seed=3, scheduler="normal", noise=None, pos=None):
    """Final latent and the x̂0 the sampler callback reports at every step."""
    import comfy.sample as cs

    xs: dict[int, torch.Tensor] = {}
    latent = cs.fix_empty_latent_channels(model, torch.zeros([1, 4, SIZE // 8, SIZE // 8]))
    if noise is None:
        noise = cs.prepare_noise(latent, seed)
    latent = torch.zeros_like(noise)
    with torch.inference_mode():
        out = cs.sample(model, noise, steps, cfg, "euler", scheduler, pos or c.pos, c.neg, latent,
                        callback=lambda i, x0, x, n: xs.__setitem__(i, x0.clone()), disable_pbar=True, seed=seed)
    return out, xs


def apply(comfy, model, bank, scales="0:1.5, 1:-1", start=0.0, end=1.0):
    with torch.inference_mode():
        return _out(comfy["classes"]["SliderSpaceApplySliderBank"].execute(model, bank, scales, 1.0, start, end))[0]


# ------------------------------------------------------------------------------------------ discovery

def test_kept_x0_count_and_callback_equality(chain):
    c = chain
    ch = LATENT_CHANNELS[c.name]
    assert len(c.traj) == N_TRAJ * STEPS and c.traj.x0.shape[:3] == (N_TRAJ, STEPS, ch)
    assert c.traj.latent.family == c.name and c.traj.latent.channels == ch
    assert c.emb.vectors.shape[0] == N_TRAJ * STEPS and torch.isfinite(c.emb.vectors).all()
    import comfy.sample as cs

    i = 1  # trajectory 1: prompt "a cat", seed 7 + 1, as a batch-1 KSampler
    latent = cs.fix_empty_latent_channels(c.fam.model, torch.zeros([1, 4, SIZE // 8, SIZE // 8]))
    seen = sample(c, c.fam.model, cfg=2.0, seed=8, noise=cs.prepare_noise(latent, 8), pos=c.fam.encode("a cat"))[1]
    assert sorted(seen) == list(range(STEPS))
    for j, step in enumerate(c.traj.steps.tolist()):
        want = c.fam.model.model.process_latent_out(seen[step])[0].float()
        assert torch.equal(c.traj.x0[i, j], want), (c.name, step)


# ------------------------------------------------------------------------------------------- training

def test_training_changes_only_the_adapters(chain):
    c = chain
    assert all(torch.equal(c.before[k], c.after[k]) for k in c.before), c.name
    dm = c.fam.model.model.diffusion_model
    assert c.flags == [p.requires_grad for p in dm.parameters()]
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in dm.modules())
    assert all("forward" not in vars(m) for m in dm.modules())  # no checkpoint wrapper left behind
    bank = c.bank
    assert bank.meta.family == c.name and bank.meta.config["target_preset"] == EXPECTED_PRESET[c.name]
    assert len(bank.modules) == EXPECTED_MODULES[c.name], bank.modules
    # every adapter got a gradient: up starts at exactly 0 and moved on every target module (FLUX too)
    for m in bank.modules:
        assert any(float(s.up[m].abs().sum()) > 0 for s in bank.sliders), (c.name, m)
    assert all(s.alignment is not None for s in bank.sliders)


def test_saved_bank_records_the_family_and_is_refused_by_another(comfy, chain, folders):
    c = chain
    nodes, errors = pack_module("nodes.sliderspace.banks"), pack_module("sliderspace_core.common.errors")
    name = _out(nodes.SaveSliderBank.execute(c.bank, f"fam_{c.name}"))[0]
    back = _out(nodes.LoadSliderBank.execute(name))[0]
    assert back.meta.family == c.name and back.modules == c.bank.modules
    assert all(torch.equal(a.up[m], b.up[m]) for a, b in zip(c.bank.sliders, back.sliders, strict=True)
               for m in back.modules)
    other = {"SD15": "SDXL", "SDXL": "Flux", "Flux": "SD3", "SD3": "SD15"}[c.name]
    with pytest.raises(errors.InputError) as err:
        apply(comfy, build_model(other, seed=1), back)
    assert err.value.input_name == "bank" and err.value.node == "SliderSpace Apply Slider Bank"
    assert c.name in str(err.value) and other in str(err.value)


# ------------------------------------------------------------------------------------------ inference

def test_apply_before_start_percent_is_bitwise_vanilla(comfy, chain):
    from comfy.samplers import KSampler

    c = chain
    steps, start = 4, 0.5
    m = apply(comfy, c.fam.model, c.bank, start=start)
    sigmas = KSampler(c.fam.model, steps, "cpu", "euler", "normal").sigmas
    sigma_start = c.fam.model.get_model_object("model_sampling").percent_to_sigma(start)
    _, van = sample(c, c.fam.model, steps=steps)
    _, ours = sample(c, m, steps=steps)
    before = [i for i in range(steps) if float(sigmas[i]) > sigma_start]
    after = [i for i in range(steps) if float(sigmas[i]) <= sigma_start]
    assert before and after, (c.name, sigmas, sigma_start)
    assert all(torch.equal(van[i], ours[i]) for i in before), c.name
    assert all(not torch.equal(van[i], ours[i]) for i in after), c.name


def test_random_sparse_items_equal_single_runs(comfy, chain):
    c = chain
    node = comfy["classes"]["SliderSpaceRandomSparseSliders"]
    n, ch = 3, LATENT_CHANNELS[c.name]
    noise = torch.cat([torch.randn(1, ch, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(50 + j))
                       for j in range(n)])
    with torch.inference_mode():
        model, text = _out(node.execute(c.fam.model, c.bank, 20, 1, "fixed", 1.5, 0.5, True, 0.0, 1.0, n))
    batched = sample(c, model, noise=noise)[0]
    vanilla = sample(c, c.fam.model, noise=noise)[0]
    for j in range(n):
        with torch.inference_mode():
            single_model, single_text = _out(node.execute(c.fam.model, c.bank, 20 + j, 1, "fixed", 1.5, 0.5, True,
                                                          0.0, 1.0, 1))
        assert single_text.split(": ", 1)[1] == text.splitlines()[j].split(": ", 1)[1]
        single = sample(c, single_model, noise=noise[j:j + 1])[0]
        torch.testing.assert_close(batched[j], single[0], rtol=1e-4, atol=1e-4)
        assert not torch.allclose(batched[j], vanilla[j])


def test_slider_grid_zero_column_is_stock_sampling(comfy, chain):
    import comfy.sample as cs

    c = chain
    node = comfy["classes"]["SliderSpaceSliderGrid"]
    with torch.inference_mode():
        grid, cells = _out(node.execute(c.fam.model, c.fam.vae, c.bank, c.pos, c.neg, "0,1", "-1, 0, 1", 5, STEPS,
                                        2.0, "euler", "normal", SIZE, SIZE, 0.0))
        latent = cs.fix_empty_latent_channels(c.fam.model, torch.zeros([1, 4, SIZE // 8, SIZE // 8]))
        stock = cs.sample(c.fam.model, cs.prepare_noise(latent, 5), STEPS, 2.0, "euler", "normal", c.pos, c.neg,
                          latent, disable_pbar=True, seed=5)
        stock_img = c.fam.vae.decode(stock)[0].float()
    assert cells.shape == (6, SIZE, SIZE, 3) and grid.ndim == 4
    assert torch.equal(cells[1], stock_img) and torch.equal(cells[4], stock_img)  # the shared scale-0 column
    assert not torch.equal(cells[0], cells[2])


def test_export_loads_with_no_key_lost_and_equals_apply(comfy, chain, folders):
    c = chain
    ex, banks = pack_module("sliderspace_core.sliderspace.export"), pack_module("nodes.sliderspace.banks")
    scales = "0:1.5, 1:-1"
    for fmt in ex.key_formats(c.name):
        name = _out(banks.ExportSliderLoRA.execute(c.bank, scales, fmt, f"{c.name}_{fmt}", model=c.fam.model))[0]
        assert os.path.exists(folders["loras"] / name)
        log = LogLines()
        logging.getLogger().addHandler(log)
        try:
            with torch.inference_mode():
                patched = comfy["classes"]["LoraLoaderModelOnly"]().load_lora_model_only(c.fam.model, name, 1.0)[0]
        finally:
            logging.getLogger().removeHandler(log)
        assert not [x for x in log.lines if "not loaded" in x.lower()], (c.name, fmt, log.lines[:3])
        assert set(patched.patches) == {f"diffusion_model.{m}.weight" for m in c.bank.modules}, (c.name, fmt)
        as_lora = sample(c, patched)[0]
        applied = sample(c, apply(comfy, c.fam.model, c.bank, scales, start=0.0))[0]
        torch.testing.assert_close(as_lora, applied, rtol=1e-4, atol=1e-4, msg=lambda s, f=fmt: f"{c.name} {f}: {s}")
        assert not torch.allclose(as_lora, sample(c, c.fam.model)[0])


# ------------------------------------------------------------------------- distilled few-step settings

FEW_STEPS = 4
ON_STEPS = {  # docs/families.md, "start_percent at 4 steps": steps (0 = noisiest) with sliders on
    # family group: scheduler → {start_percent: on steps}
    "eps": {"normal": {0.0: [0, 1, 2, 3], 0.25: [1, 2, 3], 0.5: [2, 3]},
            "simple": {0.0: [0, 1, 2, 3], 0.25: [1, 2, 3], 0.5: [2, 3]},
            "sgm_uniform": {0.0: [0, 1, 2, 3], 0.25: [1, 2, 3], 0.5: [2, 3]},
            "karras": {0.0: [0, 1, 2, 3], 0.25: [1, 2, 3], 0.5: [2, 3]},
            "beta": {0.0: [0, 1, 2, 3], 0.25: [2, 3], 0.5: [3]}},
    "Flux": {"normal": {0.0: [0, 1, 2, 3], 0.25: [1, 2, 3], 0.5: [2, 3]},
             "simple": {0.0: [0, 1, 2, 3], 0.25: [1, 2, 3], 0.5: [2, 3]},
             "sgm_uniform": {0.0: [0, 1, 2, 3], 0.25: [1, 2, 3], 0.5: [2, 3]},
             "karras": {0.0: [0, 1, 2, 3], 0.25: [1, 2, 3], 0.5: [1, 2, 3]},
             "beta": {0.0: [0, 1, 2, 3], 0.25: [2, 3], 0.5: [2, 3]}},
    "SD3": {"normal": {0.0: [0, 1, 2, 3], 0.25: [1, 2, 3], 0.5: [2, 3]},
            "simple": {0.0: [0, 1, 2, 3], 0.25: [1, 2, 3], 0.5: [2, 3]},
            "sgm_uniform": {0.0: [0, 1, 2, 3], 0.25: [1, 2, 3], 0.5: [3]},  # step 2 lands 0.13 % noisier than 0.5
            "karras": {0.0: [0, 1, 2, 3], 0.25: [1, 2, 3], 0.5: [1, 2, 3]},
            "beta": {0.0: [0, 1, 2, 3], 0.25: [2, 3], 0.5: [2, 3]}},
}
DISTILLED_SCHEDULER = {"SD15": "sgm_uniform", "SDXL": "sgm_uniform", "Flux": "simple", "SD3": "simple"}


def test_start_percent_at_4_steps_is_the_documented_table(chain):
    import comfy.samplers

    window = pack_module("sliderspace_core.common.schedule").SigmaWindow
    ms = chain.fam.model.get_model_object("model_sampling")
    table = ON_STEPS.get(chain.name, ON_STEPS["eps"])
    for scheduler, rows in table.items():
        sigmas = comfy.samplers.calculate_sigmas(ms, scheduler, FEW_STEPS)
        for start, want in rows.items():
            w = window.from_percents(ms.percent_to_sigma, start, 1.0)
            assert [i for i in range(FEW_STEPS) if w.contains(float(sigmas[i]))] == want, (chain.name, scheduler, start)


def test_distilled_cfg1_4_steps_discover_train_and_gate(comfy, chain):
    """cfg 1, 4 steps (SDXL-DMD2 / Lightning, FLUX-schnell/dev settings); FLUX's guidance embedding from the
    stock FluxGuidance idiom reaches the model. Apply at start_percent 0.25 / 0.5 is bitwise vanilla exactly
    at the steps the table says are off."""
    c, C = chain, comfy["classes"]
    sch = DISTILLED_SCHEDULER[c.name]
    with torch.inference_mode():
        traj, _ = _out(C["SliderSpaceTrajectorySampler"].execute(
            c.fam.model, "a dog", "", 2, 1, FEW_STEPS, 1.0, "euler", sch, SIZE, SIZE, 2, "every step", 1,
            "float32", clip=c.fam.clip))
    assert len(traj) == 2 * FEW_STEPS and torch.isfinite(traj.x0).all()
    pos = c.fam.encode("a dog", guidance=1.0) if c.name == "Flux" else c.pos
    if c.name == "Flux":  # the guidance embedding is read: another guidance gives another x̂0
        assert not torch.equal(sample(c, c.fam.model, FEW_STEPS, 1.0, scheduler=sch, pos=pos)[0],
                               sample(c, c.fam.model, FEW_STEPS, 1.0, scheduler=sch)[0])
    dm = c.fam.model.model.diffusion_model
    before = snapshot(dm)
    with torch.inference_mode():
        bank, _ = _out(C["SliderSpaceTrainSliders"].execute(
            c.fam.model, c.fam.vae, pos, c.basis, traj, 2, 2, 5e-2, 1, "auto", "", 2, 1, False, False,
            clip_vision=c.cv))
    assert all(torch.equal(before[k], v) for k, v in snapshot(dm).items())
    assert all(any(float(s.up[m].abs().sum()) > 0 for s in bank.sliders) for m in bank.modules)
    table = ON_STEPS.get(c.name, ON_STEPS["eps"])[sch]
    _, van = sample(c, c.fam.model, FEW_STEPS, 1.0, scheduler=sch, pos=pos)
    for start in (0.25, 0.5):
        _, ours = sample(c, apply(comfy, c.fam.model, bank, start=start), FEW_STEPS, 1.0, scheduler=sch, pos=pos)
        assert [i for i in range(FEW_STEPS) if not torch.equal(van[i], ours[i])] == table[start], (c.name, start)


# --------------------------------------------------------------------------------------------- memory

def _train(comfy, c, model, checkpointing: bool, iterations: int = 2):
    with torch.inference_mode():
        return _out(comfy["classes"]["SliderSpaceTrainSliders"].execute(
            model, c.fam.vae, c.pos, c.basis, c.traj, 2, iterations, 5e-2, 1, "auto", "", 2, 4, False, checkpointing,
            clip_vision=c.cv))[0]


def _adapter_grads(c, checkpointing: bool, counter: torch.nn.Module) -> tuple[dict[str, torch.Tensor], int]:
    """One training step's adapter gradients (the node's glue: frozen base, FLUX norm clones, block
    checkpointing) and how often ``counter`` ran."""
    glue, fam = pack_module("nodes.glue.autograd"), pack_module("nodes.glue.family")
    ad, tr = pack_module("sliderspace_core.sliderspace.adapters"), pack_module("sliderspace_core.sliderspace.training")
    enc = pack_module("nodes.glue.encoders").ClipVisionEncoder(c.cv)
    dm = c.fam.model.model.diffusion_model
    modules = fam.target_modules(dm, "auto", "", c.name)
    calls = {"n": 0}

    def count(*_) -> None:
        calls["n"] += 1

    with torch.inference_mode(False), torch.enable_grad():
        adapters = ad.SliderAdapters({n: (m.out_features, m.in_features) for n, m in modules.items()}, 2, seed=3)
        with torch.no_grad():
            for p in adapters.up.values():
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(9))

        def run(host, latents):
            trainer = tr.SliderTrainer(host, adapters, c.basis.components[:2].clone(), latents.clone(),
                                       glue.schedule_sigmas(c.fam.model),
                                       tr.TrainConfig(sliders_per_step=2, checkpointing=checkpointing, seed=1))
            with glue.frozen(dm), glue.cloned_norm_inputs(dm), glue.checkpointed_blocks(dm, checkpointing), \
                    adapters.attached(modules):
                sel, x0, sig, noise = trainer.draw()
                base = trainer.baseline(x0, sig, noise)
                h = counter.register_forward_hook(count)
                try:
                    trainer._items(base, sel)
                finally:
                    h.remove()

        glue.run_in_comfy(c.fam.model, c.pos, c.traj.x0[:, -1].clone(), c.fam.vae, enc, run)
    return {n: p.grad.clone() for n, p in adapters.named_parameters() if p.grad is not None}, calls["n"]


def test_gradient_checkpointing_recomputes_blocks_and_gives_the_same_gradients(chain):
    """Checkpointing the denoiser's blocks (and decode+embed) changes memory, not the gradients."""
    c = chain
    dm = c.fam.model.model.diffusion_model
    inner = dm.get_submodule(c.bank.modules[0])  # a target linear inside a checkpointed block
    plain, n_plain = _adapter_grads(c, False, inner)
    ckpt, n_ckpt = _adapter_grads(c, True, inner)
    assert n_ckpt == 2 * n_plain, (c.name, n_plain, n_ckpt)  # the block ran again in backward
    assert set(plain) == set(ckpt) and len(plain) == 2 * len(c.bank.modules)  # every up and down got one
    for k, g in plain.items():
        assert float(g.abs().max()) > 0, (c.name, k)
        torch.testing.assert_close(ckpt[k], g, rtol=1e-4, atol=1e-5 * float(g.abs().max()))  # float reassociation
    assert all("forward" not in vars(m) for m in dm.modules())


def test_training_on_fp8_base_weights_works_and_leaves_them_untouched(comfy, chain):
    """fp8-stored weights (ComfyUI casts them per layer in ``comfy.ops``): sliders train in fp32 activation
    space; the fp8 bytes are bitwise unchanged and stay fp8."""
    c = chain
    m8 = build_model(c.name, seed=len(c.name), dtype=torch.float8_e4m3fn)
    dm = m8.model.diffusion_model
    fp8 = {k: v.clone() for k, v in dm.state_dict().items() if v.dtype == torch.float8_e4m3fn}
    assert len(fp8) > 10
    bank = _train(comfy, c, m8, checkpointing=True)
    after = dm.state_dict()
    assert all(after[k].dtype == torch.float8_e4m3fn and torch.equal(v.view(torch.uint8), after[k].view(torch.uint8))
               for k, v in fp8.items())
    assert all(any(float(s.up[m].abs().sum()) > 0 for s in bank.sliders) for m in bank.modules)
    assert all(torch.isfinite(s.up[m]).all() for s in bank.sliders for m in bank.modules)


def test_gpu_benchmark_script_runs_its_dry_run(comfy):
    """benchmarks/gpu_families.py on tiny shapes, CPU: the same node chain the GPU run times (no GPU here)."""
    gpu_families = pack_module("benchmarks.gpu_families")  # as ComfyUI loaded the pack, whatever the folder's name

    report = gpu_families.run("flux", dry_run=True)
    assert report["dry_run"] and report["device"] == "cpu" and report["settings"]["weights"] == "fp8"
    assert set(report["phases"]) == {"trajectories", "embed", "pca", "train"}
