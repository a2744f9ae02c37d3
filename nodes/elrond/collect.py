"""ELROND Collect Gradients: images from one prompt (sampled here, seeded, or a LATENT batch), image pairs,
and one conditioning gradient per pair at the concept word's token rows (METHODS §2 steps 1-4)."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ...sliderspace_core.common.errors import InputError
from ...sliderspace_core.elrond.gradients import GradientConfig, check_pair_count
from .. import sockets as S
from ..glue.conditioning import collect_in_comfy, conditioning_space, first_usable_sigma, token_rows
from ..glue.sampling import encode_text, sample_trajectories
from ..glue.ui import Progress, node_errors


class CollectGradients(io.ComfyNode):
    NAME = "ELROND Collect Gradients"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ELRONDCollectGradients", display_name=cls.NAME, category=S.ELROND_CATEGORY,
            description="Samples images of one prompt (or takes a LATENT batch), forms random image pairs (A, B) and "
                        "collects, per pair, the gradient of ||x̂0(A noised to the first usable step) - B||² w.r.t. "
                        "the conditioning vectors of the concept word (all its token pieces). Cond branch only.",
            inputs=[
                io.Model.Input("model"),
                io.Clip.Input("clip", tooltip="The text encoder; its tokenizer finds the word's token rows."),
                io.String.Input("prompt", multiline=True, default="a photo of a dog"),
                io.String.Input("word", default="dog", tooltip="The concept word of the prompt."),
                io.String.Input("negative", multiline=True, default="", tooltip="Negative prompt for sampling."),
                io.Int.Input("images", default=64, min=2, max=1_000_000,
                             tooltip="Images to sample (the paper: 10 000). Ignored when latents are connected."),
                io.Int.Input("pairs", default=2000, min=1, max=10_000_000,
                             tooltip="Gradients to collect, one per pair i < j (paper cap 30 000; 4-8 k suffice)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Image i uses seed + i (as a batch-1 KSampler); also seeds pairs and noise."),
                *S.sampling_inputs(),
                io.Int.Input("step", default=0, min=0, max=10000,
                             tooltip="Schedule step whose sigma A is noised to (0: the noisiest; moved on while "
                                     "x_t would be pure noise, as FLUX's first step)."),
                io.Boolean.Input("normalize", default=True, tooltip="Scale each gradient to unit length."),
                io.Boolean.Input("remove_common", default=False,
                                 tooltip="Subtract the gradient's mean over all token positions first."),
                io.Int.Input("batch_size", default=4, min=1, max=4096, tooltip="Images per sampler call and "
                             "pairs per forward/backward pass."),
                io.Boolean.Input("gradient_checkpointing", default=True,
                                 tooltip="Recompute block activations in backward: far less memory, ~1 more forward."),
                io.Latent.Input("latents", optional=True, tooltip="Use these images instead of sampling."),
            ],
            outputs=[S.Gradients.Output(display_name="gradients"), io.Latent.Output(display_name="latents"),
                     io.String.Output(display_name="info")],
        )

    @classmethod
    def execute(cls, model, clip, prompt, word, negative, images, pairs, seed, steps, cfg, sampler_name, scheduler,
                width, height, step, normalize, remove_common, batch_size, gradient_checkpointing,
                latents=None) -> io.NodeOutput:
        with node_errors(cls.NAME):
            positive = encode_text(clip, prompt)
            cond = positive[0][0]
            rows = token_rows(clip, prompt, word, n_rows=int(cond.shape[1]))
            n = int(latents["samples"].shape[0]) if latents is not None else images
            check_pair_count(pairs, n)
            index, sigma = first_usable_sigma(model, steps, scheduler, step)
            if latents is None:
                neg = encode_text(clip, negative)
                _, z = sample_trajectories(model, [positive], neg, [prompt], images, seed, steps, cfg, sampler_name,
                                           scheduler, width, height, batch_size, [steps - 1], torch.float16)
            else:
                z = latents["samples"]
                if z.ndim != 4:
                    raise InputError("latents", f"have shape {tuple(z.shape)}; expected image latents [B, C, h, w].",
                                     "connect image latents (e.g. from VAE Encode or a sampler).")
            config = GradientConfig(pairs=pairs, batch_size=batch_size, seed=seed % 2**63, normalize=normalize,
                                    remove_common=remove_common)
            grads = collect_in_comfy(model, positive, z.float(), rows, sigma, config, Progress(pairs, "gradients"),
                                     conditioning_space(clip, cond.shape[-1]), word.strip(), prompt,
                                     gradient_checkpointing)
            grads.config.update(step=index, steps=steps, scheduler=scheduler)
            info = (f"{len(grads)} gradients of width {grads.dim} for {word.strip()!r} (token rows {rows}) from {n} "
                    f"images, sigma {sigma:.4g} (step {index}), {grads.config['seconds']:.1f} s; {grads.space}")
        return io.NodeOutput(grads, {"samples": z}, info)


__all__ = ["CollectGradients"]
