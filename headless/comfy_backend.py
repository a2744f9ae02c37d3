"""The ComfyUI backend: a user's checkpoint loaded by ComfyUI as a library (``COMFYUI_PATH``), driven through
the pack's own ``nodes/glue`` — the same sampling, decoding, encoder and training glue the nodes use.

The pack's root is imported as the package ``sliderspace_pack`` with its ``sliderspace_core`` aliased to
the one already imported, so there is a single copy of every core class (errors, banks, the basis).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

import sliderspace_core
from sliderspace_core.sliderspace.bank import BankMeta, SliderBank
from sliderspace_core.sliderspace.grid import cell_at
from sliderspace_core.sliderspace.trajectories import select_steps

from .config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
PACK = "sliderspace_pack"
EMBED_BATCH = 16


def boot_comfy(device: torch.device) -> None:
    """Import ComfyUI from ``COMFYUI_PATH`` (CPU flags when ``device`` is the CPU) and the pack as a package."""
    path = os.environ.get("COMFYUI_PATH", "")
    if not path or not (Path(path) / "comfy").is_dir():
        raise SystemExit("--checkpoint needs ComfyUI: set COMFYUI_PATH to a ComfyUI folder (the one holding "
                         "comfy/ and nodes.py), e.g. COMFYUI_PATH=$PWD/.hosts/comfyui.")
    if PACK in sys.modules:
        return
    sys.path.insert(0, path)
    mod = sys.modules.get("nodes")
    if mod is not None and not str(getattr(mod, "__file__", "")).startswith(path):
        del sys.modules["nodes"]  # the pack's nodes/ must not shadow ComfyUI's nodes.py
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    comfy.cli_args.args.disable_api_nodes = True
    if device.type == "cpu":
        comfy.cli_args.args.cpu = True
        comfy.cli_args.args.use_pytorch_cross_attention = True
    import comfy.model_management  # noqa: F401  (reads the args above)

    for info in pkgutil.walk_packages(sliderspace_core.__path__, "sliderspace_core."):
        importlib.import_module(info.name)
    for name in [n for n in sys.modules if n == "sliderspace_core" or n.startswith("sliderspace_core.")]:
        sys.modules[f"{PACK}.{name}"] = sys.modules[name]
    spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    assert spec is not None and spec.loader is not None
    pack = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = pack
    spec.loader.exec_module(pack)


def glue(name: str) -> ModuleType:
    """``nodes/glue/<name>.py`` of the pack."""
    return importlib.import_module(f"{PACK}.nodes.glue.{name}")


class ComfyBackend:
    """A checkpoint + CLIP vision file through ComfyUI, behind the runner's backend interface."""

    def __init__(self, cfg: RunConfig, device: torch.device, objects: tuple | None = None) -> None:
        """``objects``: ``(model, clip, vae, clip_vision)`` already loaded (tests); else from the files."""
        boot_comfy(device)
        self.cfg = cfg
        self.renoise_schedule = f"{cfg.scheduler} {cfg.steps}"
        if objects is None:
            objects = self._load(cfg)
        self.model, self.clip, self.vae, clip_vision = objects
        self.encoder = glue("encoders").pick_encoder(clip_vision, None)
        self.encoder_id = self.encoder.encoder_id
        self.keep = select_steps(cfg.steps, cfg.keep_steps, cfg.keep_every)
        sampling = glue("sampling")
        with torch.inference_mode():
            self.positive = [sampling.encode_text(self.clip, p) for p in cfg.prompts]
            self.negative = sampling.encode_text(self.clip, cfg.negative)
        self.family = glue("family").model_family(self.model)

    @staticmethod
    def _load(cfg: RunConfig) -> tuple:
        import comfy.clip_vision
        import comfy.sd

        if not cfg.clip_vision:
            raise SystemExit("--checkpoint needs --clip-vision (a CLIP vision file, as Load CLIP Vision takes).")
        for flag, p in (("--checkpoint", cfg.checkpoint), ("--clip-vision", cfg.clip_vision)):
            if not os.path.isfile(p):
                raise SystemExit(f"{flag}: no file at {p}.")
        model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(cfg.checkpoint, output_vae=True,
                                                                    output_clip=True)[:4]
        return model, clip, vae, comfy.clip_vision.load(cfg.clip_vision)

    def sample_chunk(self, ids: Sequence[int]) -> torch.Tensor:
        """Kept x̂0 (VAE space, float16) of trajectories ``ids``: seed ``seed + i``, prompt ``i % P``, as the
        Trajectory Sampler node samples them (the chunk is one node call with batch = chunk)."""
        p = len(self.cfg.prompts)
        s = ids[0] % p  # rotate the lines so that trajectory ids[0] + j gets line (ids[0] + j) % P
        prompts = list(self.cfg.prompts[s:] + self.cfg.prompts[:s])
        positive = self.positive[s:] + self.positive[:s]
        c = self.cfg
        with torch.inference_mode():
            traj, _ = glue("sampling").sample_trajectories(
                self.model, positive, self.negative, prompts, len(ids), c.seed + ids[0], c.steps, c.cfg, c.sampler,
                c.scheduler, c.width, c.height, len(ids), self.keep, torch.float16)
        return traj.x0

    def embed(self, items: torch.Tensor) -> torch.Tensor:
        from sliderspace_core.common.encoders import embed_in_batches

        facts = glue("family").latent_facts(self.model)
        decode = glue("encoders").vae_decoder(self.vae, facts, int(items.shape[1]))
        with torch.inference_mode():
            return embed_in_batches(items, decode, self.encoder, EMBED_BATCH).clone()

    def train(self, fn: Callable, finals: torch.Tensor):
        """``fn(host, modules, latents_model, sigmas)`` inside ComfyUI's sampling context, as Train Sliders."""
        autograd = glue("autograd")
        diffusion = self.model.model.diffusion_model
        modules = glue("family").target_modules(diffusion, self.cfg.targets, self.cfg.target_pattern)
        out: dict = {}
        with torch.inference_mode(False), torch.enable_grad():
            latents_vae = finals.float().clone()
            # as Train Sliders: re-noise to the trajectories' own schedule (the run's sampler, scheduler, steps)
            sigmas = autograd.schedule_sigmas(self.model, self.cfg.steps, self.cfg.scheduler, self.cfg.sampler)

            def run(host, latents_model):
                with autograd.frozen(diffusion):
                    out["r"] = fn(host, modules, latents_model.detach().clone(), sigmas)

            autograd.run_in_comfy(self.model, self.positive[0], latents_vae, self.vae, self.encoder, run)
        return out["r"]

    def meta(self, modules: dict[str, nn.Module]) -> BankMeta:
        return BankMeta(**glue("family").model_facts(self.model, modules), encoder_id=self.encoder_id,
                        prompts=list(self.cfg.prompts))

    def render(self, bank: SliderBank, slider: int, scales: Sequence[float]) -> list[torch.Tensor]:
        """One image per scale from the same noise (``apply_seed``), as the Slider Grid node renders cells."""
        c = self.cfg
        cells = [cell_at(slider, float(s)) for s in scales]
        with torch.inference_mode():
            out = glue("sampling").render_cells(self.model, self.vae, bank, cells, self.positive[0], self.negative,
                                                c.apply_seed, c.steps, c.cfg, c.sampler, c.scheduler, c.width,
                                                c.height, c.start_percent)
        return [out[cell] for cell in cells]
