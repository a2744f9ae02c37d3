"""Discovery nodes: Trajectory Sampler → CLIP Embed → PCA Decompose (SliderSpace §1 steps 1–3)."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ...sliderspace_core.common.drawing import scree_plot
from ...sliderspace_core.common.encoders import Embeddings, check_finite, embed_in_batches, load_open_clip
from ...sliderspace_core.common.errors import InputError
from ...sliderspace_core.decompose.pca import fit_pca
from ...sliderspace_core.sliderspace.trajectories import KEEP_MODES, select_steps, split_prompts, used_prompts
from .. import sockets as S
from ..glue.encoders import pick_encoder, vae_decoder
from ..glue.folders import OPEN_CLIP_FOLDER, full_path, listed
from ..glue.sampling import encode_text, sample_trajectories
from ..glue.ui import Progress, node_errors


class TrajectorySampler(io.ComfyNode):
    NAME = "SliderSpace Trajectory Sampler"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpaceTrajectorySampler", display_name=cls.NAME, category=S.CATEGORY,
            description="Samples trajectories for a concept and keeps the predicted clean latent x̂0 at the "
                        "chosen steps (SliderSpace keeps every step).",
            inputs=[
                io.Model.Input("model"),
                io.Clip.Input("clip", optional=True,
                              tooltip="Text encoder used for the prompts (not needed when both conditioning "
                                      "inputs are connected)."),
                io.String.Input("prompts", multiline=True, default="a photo of a dog",
                                tooltip="One prompt per line; trajectories go round-robin over the lines (lines "
                                        "past the number of trajectories are not used). With conditioning "
                                        "connected: one line, recorded as the trajectories' label."),
                io.String.Input("negative", multiline=True, default="", tooltip="Negative prompt for all."),
                io.Int.Input("trajectories", default=16, min=1, max=1_000_000,
                             tooltip="How many sampling runs (the paper uses 1000+)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Trajectory i uses seed + i, as a batch-1 KSampler would."),
                *S.sampling_inputs(),
                io.Int.Input("batch_size", default=4, min=1, max=4096, tooltip="Trajectories per sampler call."),
                io.Combo.Input("keep_steps", options=list(KEEP_MODES), default="every step",
                               tooltip="Which steps' x̂0 to keep: every step (paper), every k-th, or final."),
                io.Int.Input("keep_every", default=5, min=1, max=10000, tooltip="k for 'every k-th step'."),
                io.Combo.Input("store_dtype", options=["float16", "float32"], default="float16",
                               tooltip="Storage precision of the kept latents (CPU memory)."),
                io.Conditioning.Input("conditioning", optional=True,
                                      tooltip="Optional: a positive CONDITIONING used for every trajectory instead "
                                              "of encoding the prompts (e.g. an edited or combined conditioning)."),
                io.Conditioning.Input("negative_conditioning", optional=True,
                                      tooltip="Optional: a negative CONDITIONING used instead of encoding the "
                                              "negative text."),
            ],
            outputs=[S.Trajectories.Output(display_name="trajectories"),
                     io.Latent.Output(display_name="final_latent")],
        )

    @classmethod
    def execute(cls, model, prompts, negative, trajectories, seed, steps, cfg, sampler_name, scheduler,
                width, height, batch_size, keep_steps, keep_every, store_dtype, clip=None, conditioning=None,
                negative_conditioning=None) -> io.NodeOutput:
        with node_errors(cls.NAME):
            lines = split_prompts(prompts)
            if trajectories < 1:
                raise InputError("trajectories", f"must be at least 1, got {trajectories}.",
                                 "set trajectories to 1 or more.")
            if clip is None and (conditioning is None or negative_conditioning is None):
                raise InputError("clip", "is not connected, and text must be encoded (the prompts or the "
                                 "negative).", "connect the CLIP of your checkpoint, or connect both conditioning "
                                 "and negative_conditioning.")
            keep = select_steps(steps, keep_steps, keep_every)
            for name, cond in (("conditioning", conditioning), ("negative_conditioning", negative_conditioning)):
                if cond is not None and any(int(c[0].shape[0]) > 1 for c in cond):
                    raise InputError(name, "holds a batch of conditionings; the sampler would cut or repeat it "
                                     "to each batch of trajectories.", "connect one conditioning (batch 1), e.g. "
                                     "the CLIP Text Encode or edit of one prompt.")
            if conditioning is not None:
                if len(lines) > 1:
                    raise InputError("prompts", f"has {len(lines)} lines, but the conditioning input gives one "
                                     "prompt to every trajectory.", "leave one line (the label recorded with the "
                                     "trajectories), or disconnect conditioning to sample the lines.")
                positive = [conditioning]
            else:
                lines = used_prompts(lines, trajectories)  # only these are sampled, encoded and recorded
                encoded: dict[str, list] = {}
                for p in lines:  # each distinct line once
                    if p not in encoded:
                        encoded[p] = encode_text(clip, p)
                positive = [encoded[p] for p in lines]
            neg = encode_text(clip, negative) if negative_conditioning is None else negative_conditioning
            traj, finals = sample_trajectories(
                model, positive, neg, lines, trajectories, seed, steps, cfg, sampler_name, scheduler,
                width, height, batch_size, keep, getattr(torch, store_dtype))
            traj.config["negative"] = negative if negative_conditioning is None else "(negative_conditioning input)"
            if conditioning is not None:
                traj.config["positive"] = "conditioning input, labelled by the prompts line"
        return io.NodeOutput(traj, {"samples": finals})


class LoadOpenClipEncoder(io.ComfyNode):
    NAME = "SliderSpace Load open_clip Encoder"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpaceLoadOpenClipEncoder", display_name=cls.NAME, category=S.CATEGORY,
            description=f"Optional: an open_clip image encoder (e.g. TinyCLIP) from models/{OPEN_CLIP_FOLDER}; "
                        "needs open_clip_torch installed. Never downloads.",
            inputs=[
                io.String.Input("architecture", default="ViT-B-32", tooltip="open_clip model name."),
                io.Combo.Input("file", options=listed(OPEN_CLIP_FOLDER),
                               tooltip="Weights file (.safetensors preferred; .pt/.bin loaded weights-only)."),
            ],
            outputs=[S.ImageEncoder.Output(display_name="encoder")],
        )

    @classmethod
    def execute(cls, architecture, file) -> io.NodeOutput:
        with node_errors(cls.NAME):
            path = full_path(OPEN_CLIP_FOLDER, file, "put the weights file there and refresh.")
            return io.NodeOutput(load_open_clip(architecture.strip(), path))


class ClipEmbed(io.ComfyNode):
    NAME = "SliderSpace CLIP Embed"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpaceClipEmbed", display_name=cls.NAME, category=S.CATEGORY,
            description="Decodes every kept x̂0 (or takes an IMAGE batch) and embeds it with a CLIP image "
                        "encoder, streaming in batches. L2-normalised.",
            inputs=[
                S.Trajectories.Input("trajectories", optional=True),
                io.Vae.Input("vae", optional=True, tooltip="Decodes the trajectories' latents."),
                io.Image.Input("images", optional=True, tooltip="Embed these instead of trajectories."),
                io.ClipVision.Input("clip_vision", optional=True),
                S.ImageEncoder.Input("encoder", optional=True, tooltip="open_clip encoder instead of clip_vision."),
                io.Int.Input("batch_size", default=16, min=1, max=4096, tooltip="Images decoded+embedded at once."),
            ],
            outputs=[S.Embeddings.Output(display_name="embeddings")],
        )

    @classmethod
    def execute(cls, batch_size, trajectories=None, vae=None, images=None, clip_vision=None,
                encoder=None) -> io.NodeOutput:
        with node_errors(cls.NAME):
            enc = pick_encoder(clip_vision, encoder)
            if trajectories is not None:
                if vae is None:
                    raise InputError("vae", "is required to decode trajectories.",
                                     "connect the VAE of the checkpoint that sampled them.")
                items, prov = trajectories.flat()
                decode = vae_decoder(vae, trajectories.latent, int(items.shape[1]))
                progress = Progress(len(items), "x̂0 embedded")
                vectors = embed_in_batches(items, decode, enc, batch_size, on_batch=progress)
                check_finite(vectors, "trajectories", "the embeddings of the decoded x̂0")
                emb = Embeddings(vectors, prov["trajectory"], prov["step"], prov["sigma"], prov["prompt_index"],
                                 enc.encoder_id, True, tuple(trajectories.prompts))
            elif images is not None:
                check_finite(images, "images", "the images")
                progress = Progress(len(images), "images embedded")
                vectors = embed_in_batches(images, lambda x: x, enc, batch_size, on_batch=progress,
                                           input_name="images")
                emb = Embeddings.from_images(vectors, enc.encoder_id)
            else:
                raise InputError("trajectories", "nothing to embed: neither trajectories nor images is connected.",
                                 "connect the Trajectory Sampler's trajectories (with a VAE) or an IMAGE batch.")
        return io.NodeOutput(emb)


class PcaDecompose(io.ComfyNode):
    NAME = "SliderSpace PCA Decompose"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SliderSpacePCADecompose", display_name=cls.NAME, category=S.CATEGORY,
            description="Principal directions of the embeddings: the basis each slider will be trained on.",
            inputs=[
                S.Embeddings.Input("embeddings"),
                io.Int.Input("n_components", default=32, min=1, max=4096,
                             tooltip="Directions to keep (the paper computes 100; usefulness fades after ~40)."),
                io.Combo.Input("method", options=["auto", "exact", "randomized"], default="auto",
                               tooltip="auto: exact covariance for moderate dimensions, randomized otherwise."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, tooltip="For the randomized method."),
            ],
            outputs=[S.Basis.Output(display_name="basis"), io.Image.Output(display_name="scree_plot")],
        )

    @classmethod
    def execute(cls, embeddings, n_components, method, seed) -> io.NodeOutput:
        with node_errors(cls.NAME):
            basis = fit_pca(embeddings.vectors, n_components, method=method, seed=seed, normalize=True,
                            encoder_id=embeddings.encoder_id)
            basis.source.update({"n_embeddings": len(embeddings), "prompts": list(embeddings.prompts)})
            plot = scree_plot(basis.explained_variance_ratio.tolist(),
                              title=f"PCA of {len(embeddings)} embeddings ({embeddings.encoder_id})")
        return io.NodeOutput(basis, plot)


__all__ = ["TrajectorySampler", "LoadOpenClipEncoder", "ClipEmbed", "PcaDecompose"]
