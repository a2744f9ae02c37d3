"""Train Sliders: one rank-r LoRA slider per PCA direction, trained on the user's model in the graph."""

from __future__ import annotations

import comfy.samplers
import torch
from comfy_api.latest import io

from ...sliderspace_core.common.drawing import loss_picture, loss_plot
from ...sliderspace_core.common.errors import InputError
from ...sliderspace_core.sliderspace.bank import BankMeta
from ...sliderspace_core.sliderspace.training import TrainConfig, train_bank
from .. import sockets as S
from ..glue.autograd import (
    FROM_TRAJECTORIES,
    checkpointed_blocks,
    cloned_norm_inputs,
    frozen,
    renoise_schedule,
    run_in_comfy,
    schedule_sigmas,
)
from ..glue.encoders import pick_encoder
from ..glue.family import AUTO, TARGET_PRESETS, latent_facts, model_facts, model_family, resolve_preset, target_modules
from ..glue.ui import Progress, node_errors

LIVE_UPDATES = 25
"""How often per run the node's preview shows the loss curve so far."""


class TrainSliders(io.ComfyNode):
    NAME = "SliderSpace Train Sliders"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpaceTrainSliders", display_name=cls.NAME, category=S.CATEGORY,
            description="Trains one low-rank slider per basis direction so that turning it on moves the CLIP "
                        "embedding of x̂0 along that direction (loss 1 − cos). Base weights never change. "
                        "While it runs, the node's preview shows the loss curve so far.",
            inputs=[
                io.Model.Input("model"),
                io.Vae.Input("vae", tooltip="Decodes x̂0 for the encoder (same VAE as CLIP Embed used)."),
                io.ClipVision.Input("clip_vision", optional=True),
                S.ImageEncoder.Input("encoder", optional=True, tooltip="open_clip encoder instead of clip_vision."),
                io.Conditioning.Input("positive", tooltip="The concept prompt (CLIP Text Encode)."),
                S.Basis.Input("basis"),
                S.Trajectories.Input("trajectories", tooltip="Their final x̂0 are the training latents."),
                io.Int.Input("n_sliders", default=16, min=1, max=1024, tooltip="Top directions to train."),
                io.Int.Input("iterations", default=1000, min=1, max=1_000_000,
                             tooltip="Optimizer steps (reference: 3000 for 16 sliders)."),
                io.Float.Input("learning_rate", default=2e-3, min=1e-6, max=1.0, step=1e-4, round=1e-6,
                               tooltip="AdamW learning rate (reference: 2e-3; the ToyWorld template: 0.02)."),
                io.Int.Input("rank", default=1, min=1, max=64,
                             tooltip="Rank of each slider's low-rank update (1 = the paper's rank-1 slider)."),
                io.Combo.Input("targets", options=list(TARGET_PRESETS), default=AUTO,
                               tooltip="Which linear layers carry the sliders. auto: the family's preset "
                                       "(SD1.5/SDXL cross-attention k/v as the reference; FLUX every attention "
                                       "projection of double and single blocks; SD3 joint-block attention)."),
                io.String.Input("target_pattern", default="", tooltip="Regex over module names, for 'pattern'."),
                io.Int.Input("sliders_per_step", default=3, min=1, max=64,
                             tooltip="Sliders trained per step, in one batched pass on one shared sample."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF,
                             tooltip="Every random choice of training: sliders drawn, samples, noise levels, noise, "
                                     "init. Same seed, same bank."),
                io.Boolean.Input("bidirectional", default=False, tooltip="Also train scale −1 towards −v."),
                io.Boolean.Input("gradient_checkpointing", default=False,
                                 tooltip="Recompute the denoiser's blocks and decode+embed in backward: less "
                                         "memory, about one more forward per step."),
                io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01, optional=True,
                               tooltip="Guidance of the x̂0 the sliders are trained on. 1: the positive alone "
                                       "(fastest). Set it to the sampler's cfg (and connect negative) to train "
                                       "sliders for guided sampling, e.g. a high-cfg, mode-collapsed setting."),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="Needed when cfg is not 1: the negative prompt you sample with "
                                              "(CLIP Text Encode; an empty prompt is the usual)."),
                io.Combo.Input("renoise_scheduler", options=[FROM_TRAJECTORIES, *comfy.samplers.KSampler.SCHEDULERS],
                               default=FROM_TRAJECTORIES, optional=True,
                               tooltip="Where training re-noises its samples to. 'from trajectories' (SliderSpace's "
                                       "rule): the steps the trajectories were sampled at, e.g. exactly the 4 of a "
                                       "4-step distilled model. Another scheduler overrides it."),
                io.Int.Input("renoise_steps", default=0, min=0, max=10000, optional=True,
                             tooltip="Steps of the re-noising schedule; 0: the trajectories' step count."),
            ],
            outputs=[S.Bank.Output(display_name="bank"), io.Image.Output(display_name="loss_curve")],
        )

    @classmethod
    def execute(cls, model, vae, positive, basis, trajectories, n_sliders, iterations, learning_rate, rank,
                targets, target_pattern, sliders_per_step, seed, bidirectional, gradient_checkpointing,
                cfg=1.0, clip_vision=None, encoder=None, negative=None, renoise_scheduler=FROM_TRAJECTORIES,
                renoise_steps=0) -> io.NodeOutput:
        with node_errors(cls.NAME):
            enc = cls._encoder(clip_vision, encoder, basis)
            facts = latent_facts(model)
            if trajectories.latent.channels != facts.channels:
                raise InputError("trajectories", f"hold {trajectories.latent.channels}-channel latents "
                                 f"({trajectories.latent.family}) but this model uses {facts.channels}.",
                                 "sample the trajectories with this same model.")
            if cfg != 1.0 and negative is None:
                raise InputError("negative", f"is not connected but cfg is {cfg:g}: guided training needs the "
                                 "negative conditioning.", "connect the negative CLIP Text Encode you sample with "
                                 "(an empty prompt is the usual), or set cfg to 1.")
            tcfg = TrainConfig(iterations=iterations, lr=learning_rate, rank=rank,
                               sliders_per_step=sliders_per_step, seed=seed % 2**63,
                               bidirectional=bidirectional, checkpointing=gradient_checkpointing)
            schedule = renoise_schedule(trajectories.config, trajectories.total_steps, renoise_scheduler,
                                        renoise_steps)
            bank, losses = cls._train(model, vae, enc, positive, basis, trajectories, n_sliders, tcfg,
                                      targets, target_pattern, (negative, float(cfg)), schedule)
        return io.NodeOutput(bank, loss_plot(losses))

    @staticmethod
    def _encoder(clip_vision, encoder, basis):
        enc = pick_encoder(clip_vision, encoder)
        if basis.encoder_id and enc.encoder_id != basis.encoder_id:
            raise InputError("clip_vision", f"is {enc.encoder_id!r} but the basis was computed with "
                             f"{basis.encoder_id!r}.", "connect the encoder that CLIP Embed used.")
        return enc

    @staticmethod
    def _train(model, vae, enc, positive, basis, traj, n_sliders, train_cfg, targets, pattern, guidance=(None, 1.0),
               schedule=None):
        """``schedule``: ``(scheduler, steps, sampler)`` training re-noises to (default: the trajectories' own)."""
        diffusion = model.model.diffusion_model
        family = model_family(model)
        modules = target_modules(diffusion, targets, pattern, family)
        progress = Progress(train_cfg.iterations, "slider training steps")
        every = max(1, train_cfg.iterations // LIVE_UPDATES)

        def live(done: int, losses: list[float]) -> None:
            """Progress every step; the loss curve as the node's preview every ~1/LIVE_UPDATES of the run."""
            show = done % every == 0 or done == train_cfg.iterations
            progress(done, None, ("JPEG", loss_picture(losses), 640) if show else None)

        meta = BankMeta(**model_facts(model, modules), encoder_id=enc.encoder_id, prompts=list(traj.prompts))
        out: dict = {}
        with torch.inference_mode(False), torch.enable_grad():
            latents_vae = traj.x0[:, -1].float().clone()  # final x̂0 of every trajectory
            scheduler, steps, sampler = schedule or renoise_schedule(traj.config, traj.total_steps)
            sigmas = schedule_sigmas(model, steps, scheduler, sampler)

            negative, scale = guidance
            recorded = {"targets": targets, "target_preset": resolve_preset(targets, family), "target_pattern": pattern,
                        "guidance": scale, "renoise_schedule": f"{scheduler} {steps}",
                        "renoise_sigmas": [round(float(s), 6) for s in sigmas]}
            if "positive" in traj.config:  # the trajectories came from a conditioning input, not the prompt text
                recorded["trajectories_positive"] = traj.config["positive"]

            def run(host, latents_model):
                with frozen(diffusion), cloned_norm_inputs(diffusion), \
                        checkpointed_blocks(diffusion, train_cfg.checkpointing):
                    out["bank"] = train_bank(host, modules, basis, n_sliders, latents_model.detach().clone(), sigmas,
                                             train_cfg, meta, live, recorded)

            run_in_comfy(model, positive, latents_vae, vae, enc, run, negative if scale != 1.0 else None, scale)
        bank, res = out["bank"]
        return bank, res.losses
