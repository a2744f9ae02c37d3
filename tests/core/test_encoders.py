"""The one differentiable preprocessing, the batched embed loop and the open_clip loader."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from sliderspace_core.common.encoders import (
    CLIP_MEAN,
    CLIP_STD,
    embed_images,
    embed_in_batches,
    load_open_clip,
    preprocess,
)
from sliderspace_core.common.errors import InputError


def reference_preprocess(images_bhwc: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision's CLIP recipe on float tensors: Resize(shortest) → CenterCrop → clamp → Normalize."""
    x = images_bhwc.movedim(-1, 1)
    x = TF.resize(x, size, interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    x = TF.center_crop(x, [size, size]).clamp(0, 1)
    return TF.normalize(x, list(CLIP_MEAN), list(CLIP_STD))


@pytest.mark.parametrize("hw", [(512, 512), (96, 160), (300, 200), (224, 224), (64, 64)])
def test_preprocess_matches_torchvision_reference(hw):
    g = torch.Generator().manual_seed(0)
    images = torch.rand((3, *hw, 3), generator=g)
    ours = preprocess(images, 224)
    ref = reference_preprocess(images, 224)
    assert ours.shape == (3, 3, 224, 224)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


def test_preprocess_is_differentiable_and_layouts_agree():
    images = torch.rand(2, 80, 120, 3, requires_grad=True)
    out = preprocess(images, 32)
    out.square().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    torch.testing.assert_close(preprocess(images.detach().movedim(-1, 1), 32, channels_last=False), out.detach())


class LinearEncoder:
    encoder_id = "test:linear"
    image_size = 16
    mean, std = CLIP_MEAN, CLIP_STD

    def __init__(self) -> None:
        self.w = torch.randn(3 * 16 * 16, 8, generator=torch.Generator().manual_seed(1))

    def embed_pixels(self, pixels):
        return pixels.flatten(1) @ self.w


def test_embed_in_batches_equals_one_shot_and_reports_progress():
    enc = LinearEncoder()
    images = torch.rand(10, 20, 20, 3)
    seen = []
    out = embed_in_batches(images, lambda x: x, enc, batch_size=3, on_batch=lambda d, t: seen.append((d, t)))
    torch.testing.assert_close(out, embed_images(enc, images), rtol=1e-5, atol=1e-6)
    assert seen == [(3, 10), (6, 10), (9, 10), (10, 10)]
    with pytest.raises(InputError, match="'images'"):
        embed_in_batches(images[:0], lambda x: x, enc, 3, input_name="images")


def test_open_clip_loads_local_safetensors_and_embeds(tmp_path):
    open_clip = pytest.importorskip("open_clip")
    from safetensors.torch import save_file

    cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 1}}
    (tmp_path / "TestTiny-ViT.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "TestTiny-ViT.json")
    src = open_clip.create_model("TestTiny-ViT", pretrained=None)
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    enc = load_open_clip("TestTiny-ViT", str(path))
    images = torch.rand(2, 48, 48, 3)
    emb = embed_images(enc, images)
    with torch.no_grad():
        ref = torch.nn.functional.normalize(src.eval().encode_image(preprocess(images, 32)), dim=-1)
    torch.testing.assert_close(emb.detach(), ref, rtol=1e-5, atol=1e-5)
    assert enc.encoder_id == "open_clip:TestTiny-ViT"
    with pytest.raises(InputError, match="open_clip_model"):
        load_open_clip("NoSuchNet", str(path))
