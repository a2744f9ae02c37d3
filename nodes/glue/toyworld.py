"""ToyWorld in ComfyUI: the project-trained world as a real MODEL, CLIP, VAE and image encoder.

Stock loaders cannot detect a custom architecture, so this module builds ComfyUI's own objects around the
shipped weights (``toyworld/weights``):
- MODEL: ``comfy.model_base.BaseModel`` with EDM model sampling (σ_data 0.5, σ in [0.02, 80]) over
  ToyWorld's UNet rebuilt from ``comfy.ops`` layers (so weight wrappers, LoRAs and the pack's patches
  apply), in a ``ModelPatcher``. ComfyUI's EDM path applies exactly ToyWorld's preconditioning.
- CLIP: a ``comfy.sd.CLIP`` over ToyWorld's word tokenizer (CLIP's layout, stock ``(word:1.2)`` weights)
  and text transformer, kept in float32; stock ``CLIP Text Encode`` works with it. Negatives must be
  ``CLIP Text Encode("")`` (the trained unconditional), not ``ConditioningZeroOut``.
- VAE: ComfyUI's pixel-space VAE (images are the latents: 3 channels in [−1, 1], no downscale).
- The CNN encoder that plays CLIP, as the pack's image-encoder socket type.
"""

from __future__ import annotations

import json
from pathlib import Path

import comfy.latent_formats
import comfy.model_base
import comfy.model_management as mm
import comfy.model_patcher
import comfy.ops
import comfy.patcher_extension
import comfy.sd
import comfy.supported_models_base
import torch
from comfy.sd1_clip import ClipTokenWeightEncoder, escape_important, token_weights, unescape_important
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from ...sliderspace_core.common.errors import InputError
from ...toyworld.models import SIGMA_MAX, SIGMA_MIN, Encoder, EncoderConfig, known_fields
from ...toyworld.text import CONTEXT_LEN, END, PAD, START, VOCAB, TextConfig, TextEncoder, check_length, word_ids
from ...toyworld.unet import UNet, UNetConfig

WEIGHTS = Path(__file__).resolve().parents[2] / "toyworld" / "weights"
DENOISER_FILE, ENCODER_FILE = "denoiser.safetensors", "encoder.safetensors"
ROW_KEY = "l"
"""The tokenizer's output key (CLIP-L's, so token positions read as on SD1.x)."""


class ToyWorldLatent(comfy.latent_formats.LatentFormat):
    """Pixel space: 3 channels in [−1, 1], full resolution; the preview shows the image itself."""

    latent_channels = 3
    spacial_downscale_ratio = 1
    scale_factor = 1.0
    latent_rgb_factors = [[0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.5]]
    latent_rgb_factors_bias = [0.5, 0.5, 0.5]


class ComfyToyUNet(UNet):
    """ToyWorld's UNet as ComfyUI's ``BaseModel`` builds a diffusion model: config keywords + ``operations``."""

    def __init__(self, device=None, operations=None, dtype=None, **config) -> None:
        cfg = UNetConfig(**known_fields(UNetConfig, config))
        super().__init__(cfg, ops=operations or comfy.ops.disable_weight_init)
        self.to(device=device)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                transformer_options: dict | None = None, **kwargs) -> torch.Tensor:
        """As ComfyUI's own UNet: the call runs through the MODEL's ``DIFFUSION_MODEL`` wrappers (block capture
        and SAE steering hook in there); without this they never fire on ToyWorld."""
        opts = transformer_options if transformer_options is not None else {}
        wrappers = comfy.patcher_extension.get_all_wrappers(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, opts)
        return comfy.patcher_extension.WrapperExecutor.new_class_executor(self._forward, self, wrappers).execute(
            x, timesteps, context, opts, **kwargs)

    def _forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor, transformer_options: dict,
                 **kwargs) -> torch.Tensor:
        return UNet.forward(self, x, timesteps, context, **kwargs)


class ToyWorld(comfy.supported_models_base.BASE):
    """The model config: EDM sampling over ToyWorld's σ range, pixel latents, float32 only."""

    unet_config: dict = {}
    unet_extra_config: dict = {}
    sampling_settings = {"sigma_data": 0.5, "sigma_min": SIGMA_MIN, "sigma_max": SIGMA_MAX}
    latent_format = ToyWorldLatent
    memory_usage_factor = 0.05
    supported_inference_dtypes = [torch.float32]

    def get_model(self, state_dict, prefix="", device=None):
        return comfy.model_base.BaseModel(self, model_type=comfy.model_base.ModelType.EDM, device=device,
                                          unet_model=ComfyToyUNet)


class ToyWorldTokenizer:
    """Word-level tokenizer in CLIP's layout; understands ComfyUI's ``(word:1.2)`` weight syntax."""

    def __init__(self, embedding_directory=None, tokenizer_data=None) -> None:
        self.context_len = CONTEXT_LEN

    def tokenize_with_weights(self, text: str, return_word_ids: bool = False, **kwargs) -> dict:
        pairs: list[tuple] = [(START, 1.0, 0)]
        for i, (segment, weight) in enumerate(token_weights(escape_important(text), 1.0)):
            pairs += [(t, weight, i + 1) for t in word_ids(unescape_important(segment), text)]
        check_length(len(pairs) - 1, text, self.context_len)
        pairs.append((END, 1.0, 0))
        pairs += [(PAD, 1.0, 0)] * (self.context_len - len(pairs))
        return {ROW_KEY: [[p if return_word_ids else p[:2] for p in pairs]]}

    def untokenize(self, token_weight_pair: list) -> list:
        return [(p, VOCAB[p[0]]) for p in token_weight_pair]

    def state_dict(self) -> dict:
        return {}


class ToyWorldTextModel(nn.Module, ClipTokenWeightEncoder):
    """ToyWorld's text transformer as ComfyUI's text-encoder model (per-token context + pooled ``<end>`` row)."""

    conditioning_row_key = ROW_KEY

    def __init__(self, device="cpu", dtype=None, model_options=None, text_config: dict | None = None) -> None:
        super().__init__()
        self.transformer = TextEncoder(TextConfig(**(text_config or {})))
        self.dtypes = {torch.float32}  # tiny: fp16 would only change results
        self.special_tokens = {"start": START, "end": END, "pad": PAD}
        self.to(device=device, dtype=torch.float32)

    def encode(self, tokens: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.tensor(tokens, dtype=torch.long, device=self.transformer.final_layer_norm.weight.device)
        out = self.transformer(ids)
        return out, TextEncoder.pooled(out, ids)

    def encode_token_weights(self, token_weight_pairs: dict):
        return ClipTokenWeightEncoder.encode_token_weights(self, token_weight_pairs[ROW_KEY])

    def reset_clip_options(self) -> None:
        pass

    def set_clip_options(self, options: dict) -> None:
        pass

    def load_sd(self, sd: dict):
        return self.transformer.load_state_dict(sd, strict=True)


def _read(path: Path, kind: str) -> tuple[dict[str, torch.Tensor], dict]:
    if not path.is_file():
        raise InputError("weights", f"the ToyWorld {kind} file {path} is missing.",
                         "reinstall the pack (toyworld/weights ships with it) or run python -m toyworld.train.")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("kind") != kind:
        raise InputError("weights", f"{path.name} holds {meta.get('kind')!r}, not a ToyWorld {kind}.",
                         "point the loader at ToyWorld's own weights folder.")
    return load_file(str(path)), json.loads(meta.get("config", "{}"))


def _sub(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def load_model(sd: dict[str, torch.Tensor], config: dict) -> comfy.model_patcher.ModelPatcher:
    """The denoiser as a ComfyUI MODEL (``BaseModel`` + EDM sampling) in a ``ModelPatcher``."""
    unet_cfg = known_fields(UNetConfig, config.get("unet", {}))
    model = ToyWorld(unet_cfg).get_model({}, device=mm.unet_offload_device())
    missing, unexpected = model.diffusion_model.load_state_dict(_sub(sd, "diffusion_model."), strict=False)
    if missing or unexpected:
        raise InputError("weights", f"the denoiser file does not fit ToyWorld's UNet (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}).", "use weights written by python -m toyworld.train.")
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def load_clip(sd: dict[str, torch.Tensor], config: dict) -> comfy.sd.CLIP:
    """The text encoder as a ComfyUI CLIP usable by stock CLIP Text Encode."""
    target = comfy.supported_models_base.ClipTarget(ToyWorldTokenizer, ToyWorldTextModel)
    target.params = {"text_config": known_fields(TextConfig, config.get("text", {}))}
    clip = comfy.sd.CLIP(target, model_options={"dtype": torch.float32})
    clip.load_sd(_sub(sd, "text_encoder."))
    return clip


def pixel_vae() -> comfy.sd.VAE:
    """ComfyUI's pixel-space VAE: IMAGE = clamp((latent + 1) / 2, 0, 1)."""
    return comfy.sd.VAE(sd={"pixel_space_vae": torch.tensor(1.0)})


def load_encoder(path: Path) -> Encoder:
    """The CNN image encoder (the core ``ImageEncoder`` interface)."""
    sd, config = _read(path, "Encoder")
    enc = Encoder(EncoderConfig(**known_fields(EncoderConfig, config)))
    enc.load_state_dict(sd, strict=True)
    return enc.eval()


def load_toyworld(folder: Path = WEIGHTS) -> tuple:
    """``(MODEL, CLIP, VAE, encoder)`` from a ToyWorld weights folder."""
    sd, config = _read(folder / DENOISER_FILE, "Denoiser")
    with safe_open(str(folder / DENOISER_FILE), "pt") as f:
        vocab = json.loads((f.metadata() or {}).get("vocab", "[]"))
    if vocab != list(VOCAB):
        raise InputError("weights", "the denoiser was trained with another ToyWorld vocabulary.",
                         "use weights written by this version's python -m toyworld.train.")
    return load_model(sd, config), load_clip(sd, config), pixel_vae(), load_encoder(folder / ENCODER_FILE)
