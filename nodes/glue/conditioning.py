"""ELROND inside ComfyUI: token rows from the model's own tokenizer, and conditioning gradients in the guider.

Token rows: the prompt is tokenized as CLIPTextEncode does; the word is tokenized alone, its start/end/pad
tokens (those of the empty prompt) dropped, and that id run is searched in the prompt's flattened chunks
(row = chunk · chunk length + index). Every occurrence counts, and a word split into several pieces uses
all of them. The rows are those of the encoder whose output is the CONDITIONING tensor: ``l`` for SD1.x
(``h``/``g`` for other single-CLIP models), ``l`` for SDXL (CLIP-G shares its rows), ``t5xxl`` for FLUX.

Gradients run inside the guider's ``sample`` with a custom ``Sampler`` (ComfyUI's ``nodes_train.py``
idiom), so ComfyUI loads the model and builds every extra input (SDXL's ``y``, FLUX's guidance). The
sampler swaps a batched leaf into the positive's ``c_crossattn`` for each pass and calls the guider: at cfg 1
x̂0 of the cond branch (``Guider_Basic``), else the guided x̂0 of ``CFGGuider`` (negative fixed, the gradient
flows into the cond rows only), as the authors backpropagate through the guided prediction. FLUX's
in-place adds break backward through its LayerNorms; while collecting, every LayerNorm of a FLUX model gets
a cloned input (a forward pre-hook, removed in ``finally``).
For ``loss_space="clip image"`` the host also has ``embed_image``: the latent is decoded by the VAE with its
graph kept (``vae_decode_differentiable``) and embedded through the core's one preprocessing
(``embed_images``) by a CLIP_VISION or the pack's image encoder; the VAE and encoder weights are frozen.

Storage: gradients are kept in memory as one float32 (P, D) CPU tensor — 30 000 FLUX gradients (the
paper's cap) are 0.5 GB, SD1.5's 92 MB — far below the model itself, so no shards are written.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import comfy.model_management as mm
import comfy.samplers
import torch
from comfy.sd1_clip import SD1ClipModel
from comfy.sdxl_clip import SDXLClipModel
from comfy.text_encoders.flux import FluxClipModel
from comfy_extras.nodes_custom_sampler import Guider_Basic

from ...sliderspace_core.common.encoders import embed_images
from ...sliderspace_core.common.errors import InputError
from ...sliderspace_core.elrond.gradients import GradientConfig, GradientSet, collect_gradients
from .autograd import (
    checkpointed_blocks,
    clone_conditioning,
    cloned_norm_inputs,
    encoder_modules,
    frozen,
    trainable_weights,
    vae_decode_differentiable,
)

log = logging.getLogger("sliderspace.elrond")


def _row_key(clip) -> str:
    m = clip.cond_stage_model
    if isinstance(getattr(m, "conditioning_row_key", None), str):  # e.g. ToyWorld's text model
        return m.conditioning_row_key
    if isinstance(m, FluxClipModel):
        return "t5xxl"
    if isinstance(m, SDXLClipModel):
        return "l"
    if isinstance(m, SD1ClipModel):
        return m.clip_name
    raise InputError("clip", f"its text encoder ({type(m).__name__}) is not supported by ELROND yet.",
                     "use an SD1.x, SD2, SDXL or FLUX checkpoint's CLIP.")


def conditioning_space(clip, width: int) -> str:
    """The id of a conditioning space: text-encoder class and width, e.g. ``conditioning:SDXLClipModel:2048``."""
    return f"conditioning:{type(clip.cond_stage_model).__name__.rstrip('_')}:{int(width)}"


def _flat_ids(clip, key: str, text: str) -> list:
    tokens = clip.tokenize(text)
    if key not in tokens:
        raise InputError("clip", f"its tokenizer gives no {key!r} tokens.", "use the CLIP of the same checkpoint.")
    return [t[0] for chunk in tokens[key] for t in chunk]


def _token_strings(clip, key: str) -> dict | None:
    """id → token text of the ``key`` encoder's tokenizer (None for a tokenizer without a vocabulary)."""
    tok = clip.tokenizer
    sub = getattr(tok, f"clip_{key}", None) or getattr(tok, key, None) or tok
    inv = getattr(sub, "inv_vocab", None)
    return inv if isinstance(inv, dict) else None


def _whole_word(ids: list, r: int, n: int, text: dict | None, special: set) -> bool:
    """Whether pieces ``ids[r:r+n]`` are a whole word: it starts where a word starts and ends where one ends.
    CLIP marks a word's LAST piece with ``</w>`` (so the piece before must end a word); SentencePiece (T5)
    marks a word's FIRST piece with ``▁`` (so the piece after must start a word, or be punctuation)."""
    if text is None:  # a word-level tokenizer: every token is a word
        return True

    def s(i: int) -> str:
        v = ids[i]
        return text.get(v, "") if isinstance(v, int) and v not in special else ""

    def is_edge(i: int) -> bool:  # outside the text: start/end/pad token, or an embedding
        return i < 0 or i >= len(ids) or not isinstance(ids[i], int) or ids[i] in special

    starts = is_edge(r - 1) or s(r - 1).endswith("</w>") or s(r).startswith("▁")
    nxt = s(r + n)
    ends = (s(r + n - 1).endswith("</w>") or is_edge(r + n) or nxt.startswith("▁")
            or not nxt[:1].isalnum())
    return starts and ends


def token_rows(clip, prompt: str, word: str, n_rows: int | None = None, input_name: str = "word") -> list[int]:
    """Rows of ``prompt``'s conditioning that hold ``word``'s token pieces (all whole-word occurrences: 'horse'
    is not the second piece of 'seahorse')."""
    key = _row_key(clip)
    ids = _flat_ids(clip, key, prompt)
    if n_rows is not None and n_rows != len(ids):
        raise InputError("prompt", f"tokenizes to {len(ids)} rows but the conditioning has {n_rows}.",
                         "give the exact prompt that made this conditioning, with the same CLIP.")
    special = {i for i in _flat_ids(clip, key, "") if isinstance(i, int)}
    piece = [i for i in _flat_ids(clip, key, word.strip()) if isinstance(i, int) and i not in special]
    if not word.strip() or not piece:
        raise InputError(input_name, f"{word!r} gives no token.", "type the concept word, e.g. 'dog'.")
    n, text = len(piece), _token_strings(clip, key)
    starts = [r for r in range(len(ids) - n + 1) if ids[r:r + n] == piece]
    rows = [r + k for r in starts if _whole_word(ids, r, n, text, special) for k in range(n)]
    if not rows:
        inside = " (only inside another word, which is not a whole word)" if starts else ""
        raise InputError(input_name, f"{word!r} (token ids {piece}) does not occur in the prompt {prompt!r} as a "
                         f"whole word{inside}.",
                         "use a whole word of the prompt, spelled as in the prompt (or add it to the prompt).")
    return rows


MATCH_COS = 0.999
"""A given conditioning matches the prompt when each chunk's last row has at least this cosine with clip's own."""


def prompt_conditioning(clip, prompt: str, conditioning: list | None = None,
                        input_name: str = "conditioning") -> list:
    """The CONDITIONING whose word rows a node edits or reads: ``clip``'s encoding of ``prompt`` when none is
    given, else ``conditioning`` after checking that it is what ``clip`` makes of ``prompt``.

    The check compares the LAST row of every token chunk (an end/pad row, never a word's row): the text
    encoder carries any change of the text into it (CLIP is causal, T5 bidirectional), while an edit of the
    conditioning (ELROND, another Apply) changes only the edited word's rows. So an edited conditioning, or
    a combination of conditionings of this prompt, passes; another prompt's is refused — its rows would be
    edited at the wrong positions."""
    from .sampling import encode_text

    own = encode_text(clip, prompt)
    if conditioning is None:
        return own
    ref = own[0][0]
    chunk = len(clip.tokenize(prompt)[_row_key(clip)][0])
    rows = ref.shape[1]
    last = [min(rows, c + chunk) - 1 for c in range(0, rows, chunk)]
    fix = ("connect the conditioning of exactly this prompt (CLIP Text Encode with the same text and clip), or "
           "leave conditioning unconnected so this node encodes prompt with clip (type the prompt once, e.g. a "
           "String node feeding every prompt input).")
    for i, (t, _) in enumerate(conditioning):
        which = f"entry {i + 1} of {len(conditioning)}" if len(conditioning) > 1 else "it"
        if t.ndim != 3 or tuple(t.shape[1:]) != tuple(ref.shape[1:]):
            raise InputError(input_name, f"{which} has shape {tuple(t.shape)}, but clip makes "
                             f"{tuple(ref.shape[1:])} rows x width of prompt {prompt!r}.", fix)
        a, b = t[:, last].float(), ref[:, last].to(t.device).float().expand(t.shape[0], -1, -1)
        cos = float(torch.nn.functional.cosine_similarity(a, b, dim=-1).min())
        ratio = float((a.norm(dim=-1) / b.norm(dim=-1).clamp_min(1e-12) - 1).abs().max())
        if cos < MATCH_COS or ratio > 1 - MATCH_COS:
            raise InputError(input_name, f"{which} is not what clip makes of prompt {prompt!r} (its end-of-text "
                             f"row differs: cos {cos:.4f}), so the word's rows would be edited at the wrong "
                             "positions.", fix)
    return conditioning


def first_usable_sigma(model, steps: int, scheduler: str, step: int = 0) -> tuple[int, float]:
    """(index, sigma) of schedule step ``step``, moved on while x_t would not depend on the image at all
    (flow models at sigma 1, e.g. FLUX's first step)."""
    ms = model.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(ms, scheduler, steps).float().cpu()
    if not 0 <= step < steps:
        raise InputError("step", f"is {step} but the schedule has {steps} steps.", f"use 0..{steps - 1} (0: noisiest).")
    i = step
    while i < steps - 1 and float(ms.noise_scaling(sigmas[i:i + 1], torch.zeros(1, 1), torch.ones(1, 1)).abs()) < 1e-6:
        i += 1
    return i, float(sigmas[i])


class GuiderHost:
    """The core's ``GradientHost`` over the guider a sampler receives: x̂0 on the cond branch (and, with a VAE
    and an image encoder, the core's ``ImageEmbeddingHost``)."""

    def __init__(self, model_wrap, extra_args: dict, vae=None, encoder=None) -> None:
        self.model_wrap, self.extra_args = model_wrap, extra_args
        self.vae, self.encoder = vae, encoder
        self.inner = model_wrap.inner_model
        self.entries = model_wrap.conds["positive"]
        self.device = next(iter(self.entries))["model_conds"]["c_crossattn"].cond.device
        self.x_device = self.inner.device if hasattr(self.inner, "device") else self.device

    def base_cond(self) -> torch.Tensor:
        return self.entries[0]["model_conds"]["c_crossattn"].cond.detach().clone()

    def noised(self, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        d = self.x_device
        return self.inner.model_sampling.noise_scaling(sigma.to(d), noise.to(d, x0.dtype), x0.to(d), False)

    def embed_image(self, latent: torch.Tensor) -> torch.Tensor:
        """Model-space latents → image embeddings (decode keeps the graph; the core's preprocessing)."""
        if self.vae is None or self.encoder is None:
            raise InputError("vae", "the clip image loss needs a VAE and an image encoder.",
                             "connect vae and clip_vision (or encoder), or use loss_space 'latent'.")
        images = vae_decode_differentiable(self.vae, self.inner.process_latent_out(latent))
        return embed_images(self.encoder, images, channels_last=False, normalize=False)

    def predict_x0(self, x_t: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        saved = [e["model_conds"]["c_crossattn"] for e in self.entries]
        try:
            for e, orig in zip(self.entries, saved, strict=True):
                e["model_conds"]["c_crossattn"] = orig._copy_with(cond.to(orig.cond.device))
            return self.model_wrap(x_t.to(self.x_device), sigma.to(self.x_device), **self.extra_args)
        finally:
            for e, orig in zip(self.entries, saved, strict=True):
                e["model_conds"]["c_crossattn"] = orig


class _GradientSampler(comfy.samplers.Sampler):
    """A 'sampler' whose sampling is gradient collection; returns the latents unchanged."""

    def __init__(self, run: Callable[[GuiderHost], None], checkpointing: bool = False, vae=None,
                 encoder=None) -> None:
        self.run, self.checkpointing, self.vae, self.encoder = run, checkpointing, vae, encoder

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        net = model_wrap.inner_model.diffusion_model
        extra = [] if self.vae is None else [self.vae.first_stage_model, *encoder_modules(self.encoder)]
        with contextlib.ExitStack() as stack:
            stack.enter_context(trainable_weights(net, *extra))  # after ComfyUI loaded (and maybe moved) them
            for m in (net, *extra):
                stack.enter_context(frozen(m))
            stack.enter_context(cloned_norm_inputs(net))
            stack.enter_context(checkpointed_blocks(net, self.checkpointing))
            self.run(GuiderHost(model_wrap, extra_args, self.vae, self.encoder))
        return latent_image


def collect_in_comfy(model, positive: list, latents_vae: torch.Tensor, rows: list[int], sigma: float,
                     config: GradientConfig, progress: Callable[[int, int], None] | None = None,
                     space: str = "", word: str = "", prompt: str = "", checkpointing: bool = False,
                     vae=None, encoder=None, negative: list | None = None, cfg: float = 1.0) -> GradientSet:
    """Per-pair gradients w.r.t. ``positive``'s conditioning rows ``rows``, for ``latents_vae`` (VAE space,
    as a LATENT holds them) through ComfyUI's guider for ``model``. The input conditioning is not changed.
    With ``negative`` and ``cfg`` != 1, x̂0 is the GUIDED prediction x̂0_u + cfg·(x̂0_c − x̂0_u) of ComfyUI's
    ``CFGGuider`` (the authors backpropagate through it); the gradient is still w.r.t. the cond rows only.
    ``checkpointing`` recomputes block activations in backward (less memory, one more forward).
    ``vae`` and ``encoder`` (a core ``ImageEncoder``) are needed for ``config.loss_space == "clip image"``."""
    if len(positive) != 1:
        raise InputError("conditioning", f"has {len(positive)} entries.", "use the conditioning of ONE prompt.")
    out: dict[str, GradientSet] = {}
    with torch.inference_mode(False), torch.enable_grad():
        latents = latents_vae.clone() if latents_vae.is_floating_point() else latents_vae.float()
        head = latents[: max(1, min(config.batch_size, len(latents)))]
        if config.loss_space == "latent":
            vae = encoder = None
        extra = [] if vae is None else [vae.patcher] + ([encoder.cv.patcher] if hasattr(encoder, "cv") else [])
        mm.load_models_gpu([model, *extra], force_full_load=True)
        guided = negative is not None and cfg != 1.0
        if guided:
            guider = comfy.samplers.CFGGuider(model)
            guider.set_conds(clone_conditioning(positive), clone_conditioning(negative))
            guider.set_cfg(cfg)
        else:
            guider = Guider_Basic(model)
            guider.set_conds(clone_conditioning(positive))

        def run(host: GuiderHost) -> None:
            z = host.inner.process_latent_in(latents)
            out["g"] = collect_gradients(host, z, host.base_cond(), rows, sigma, config, progress, space, word, prompt)

        sigmas = torch.tensor([max(float(sigma), 1e-3), 0.0])  # the guider wants a schedule; we use our sigma
        sampler = _GradientSampler(run, checkpointing, vae, encoder)
        guider.sample(torch.zeros_like(head), head, sampler, sigmas, seed=0, disable_pbar=True)
    out["g"].config.update(cfg=float(cfg) if guided else 1.0,
                           x0=f"guided (CFGGuider, cfg {cfg:g})" if guided else "cond only (Guider_Basic)")
    return out["g"]
