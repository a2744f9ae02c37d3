"""ELROND Collect Gradients: images from one prompt (sampled here, seeded, or a LATENT batch), image pairs,
and one conditioning gradient per pair at the concept word's token rows (METHODS §2 steps 1-4).

``loss_space`` "latent" (default, the paper's loss) compares latents; "clip image" decodes x̂0 and B with the
VAE and compares their L2-normalised image embeddings (CLIP_VISION or the pack's image encoder)."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ...sliderspace_core.common.errors import InputError
from ...sliderspace_core.elrond.gradients import LOSS_SPACES, GradientConfig, check_pair_count
from .. import sockets as S
from ..glue.conditioning import (
    collect_in_comfy,
    conditioning_space,
    first_usable_sigma,
    prompt_conditioning,
    token_rows,
)
from ..glue.encoders import pick_encoder
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
                        "the conditioning vectors of the concept word (all its token pieces). x̂0 is the guided "
                        "prediction at cfg (negative fixed; at cfg 1 the cond branch alone); the gradient is taken "
                        "w.r.t. the cond rows only. "
                        "loss_space 'clip image' measures the loss between the L2-normalised image embeddings "
                        "of the decoded x̂0 and B instead (needs vae and clip_vision or encoder).",
            inputs=[
                io.Model.Input("model"),
                io.Clip.Input("clip", tooltip="The text encoder; its tokenizer finds the word's token rows."),
                io.String.Input("prompt", multiline=True, default="a photo of a dog",
                                tooltip="The prompt the images are sampled with; it must contain `word`. Give Apply "
                                        "Directions the same text."),
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
                io.Combo.Input("loss_space", options=list(LOSS_SPACES), default="latent", optional=True,
                               tooltip="latent: ||x̂0 - z_B||² (the paper). clip image: decode both with the VAE, "
                                       "embed with the image encoder, squared distance of the unit embeddings "
                                       "(= 2 - 2 cos; the authors' CLIP-space variant). Needs vae + clip_vision."),
                io.Latent.Input("latents", optional=True, tooltip="Use these images instead of sampling."),
                io.Vae.Input("vae", optional=True, tooltip="Decodes x̂0 and B for loss_space 'clip image'."),
                io.ClipVision.Input("clip_vision", optional=True, tooltip="Image encoder for loss_space 'clip image'."),
                S.ImageEncoder.Input("encoder", optional=True, tooltip="open_clip encoder instead of clip_vision."),
                io.Conditioning.Input("conditioning", optional=True,
                                      tooltip="Optional: the prompt's positive conditioning (e.g. an edited one) "
                                              "to sample and differentiate with; it must be what `clip` makes of "
                                              "`prompt`. Unconnected: the node encodes `prompt` itself."),
            ],
            outputs=[S.Gradients.Output(display_name="gradients"), io.Latent.Output(display_name="latents"),
                     io.String.Output(display_name="info")],
        )

    @classmethod
    def execute(cls, model, clip, prompt, word, negative, images, pairs, seed, steps, cfg, sampler_name, scheduler,
                width, height, step, normalize, remove_common, batch_size, gradient_checkpointing,
                loss_space="latent", latents=None, vae=None, clip_vision=None, encoder=None,
                conditioning=None) -> io.NodeOutput:
        with node_errors(cls.NAME):
            enc = None
            if loss_space == "clip image":
                if vae is None:
                    raise InputError("vae", "loss_space 'clip image' decodes x̂0 and B, but no VAE is connected.",
                                     "connect the checkpoint's VAE, or set loss_space to 'latent'.")
                if clip_vision is None and encoder is None:
                    raise InputError("clip_vision", "loss_space 'clip image' embeds the images, but no image encoder "
                                     "is connected.", "connect a CLIP_VISION (Load CLIP Vision) or an open_clip "
                                     "encoder, or set loss_space to 'latent'.")
                enc = pick_encoder(clip_vision, encoder)
            positive = prompt_conditioning(clip, prompt, conditioning)
            cond = positive[0][0]
            rows = token_rows(clip, prompt, word, n_rows=int(cond.shape[1]))
            n = int(latents["samples"].shape[0]) if latents is not None else images
            check_pair_count(pairs, n)
            index, sigma = first_usable_sigma(model, steps, scheduler, step)
            neg = encode_text(clip, negative)
            if latents is None:
                _, z = sample_trajectories(model, [positive], neg, [prompt], images, seed, steps, cfg, sampler_name,
                                           scheduler, width, height, batch_size, [steps - 1], torch.float16)
            else:
                z = latents["samples"]
                if z.ndim != 4:
                    raise InputError("latents", f"have shape {tuple(z.shape)}; expected image latents [B, C, h, w].",
                                     "connect image latents (e.g. from VAE Encode or a sampler).")
            if enc is not None and int(getattr(vae, "latent_channels", z.shape[1])) != int(z.shape[1]):
                raise InputError("vae", f"decodes {vae.latent_channels}-channel latents, but the images are "
                                 f"{int(z.shape[1])}-channel latents (another model family).",
                                 "connect the VAE of the checkpoint whose MODEL made the images.")
            config = GradientConfig(pairs=pairs, batch_size=batch_size, seed=seed % 2**63, normalize=normalize,
                                    remove_common=remove_common, loss_space=loss_space)
            grads = collect_in_comfy(model, positive, z.float(), rows, sigma, config, Progress(pairs, "gradients"),
                                     conditioning_space(clip, cond.shape[-1]), word.strip(), prompt,
                                     gradient_checkpointing, vae, enc, negative=neg, cfg=cfg)
            grads.config.update(step=index, steps=steps, scheduler=scheduler)
            info = (f"{len(grads)} gradients of width {grads.dim} for {word.strip()!r} (token rows {rows}) from {n} "
                    f"images, sigma {sigma:.4g} (step {index}), {grads.config['x0']} x̂0, {loss_space} loss, "
                    f"{grads.config['seconds']:.1f} s; "
                    f"{grads.space}")
        return io.NodeOutput(grads, {"samples": z}, info)


__all__ = ["CollectGradients"]
