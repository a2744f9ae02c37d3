"""ELROND gradients (METHODS §2 steps 2-4): image pairs, the x̂0 loss, and per-pair conditioning gradients.

For a pair (A, B) of images sampled from one prompt, A's clean latent is noised to one (the first, noisiest
usable) sigma, the denoiser predicts x̂0 under the prompt's conditioning c, and the loss is the mean squared
error between x̂0 and B's clean latent (``loss_space="latent"``, the paper's loss). The authors' CLIP-image-space
variant (``loss_space="clip image"``) decodes x̂0 and B's latent to images, embeds both with an image encoder
(the host's ``embed_image``) and takes the squared distance of the L2-normalised embeddings,
‖ê(x̂0) − ê(z_B)‖² = 2 − 2·cos: a loss on what the images show rather than on every latent value. The
normalisation makes it independent of the encoder's embedding scale and matches how SliderSpace compares
CLIP embeddings; B's embedding is a fixed target, computed once per image without a graph.

The gradient of the loss w.r.t. c, read at the concept token's rows, is one row of the gradient set. A word
split into several token pieces uses all of them: the row is the SUM of the pieces' gradients — exactly the
gradient w.r.t. one offset added to every piece's vector, which is how Apply Directions edits them.
"Remove common" first subtracts the gradient's mean over all token positions; "normalize" then scales each
row to unit L2 norm (gradient norms vary ~50x across pairs).

Pairs in one batch share a single backward pass: the conditioning leaf has one copy per pair, and each
pair's loss depends only on its own copy, so the leaf's gradient holds every pair's gradient at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from ..common.errors import InputError

RANDPERM_MAX = 4_000_000
"""Up to this many possible pairs, pairs come from one seeded permutation of all of them."""
NOISE_SEED_MIX = 0x9E3779B97F4A7C15
"""Mixes the run's seed into the per-pair noise seed (pair p draws its noise from its own generator)."""
LOSS_SPACES = ("latent", "clip image")
"""Where the pair loss is measured (see :class:`GradientConfig` ``loss_space``)."""


@dataclass(frozen=True)
class GradientConfig:
    """How many gradients to collect and how to post-process them."""

    pairs: int = 4000
    """Number of (A, B) image pairs, each giving one gradient (the paper caps at 30 000; 4-8 k suffice)."""
    batch_size: int = 4
    """Pairs per forward/backward pass."""
    seed: int = 0
    """Seeds the pair shuffle and every pair's noise."""
    normalize: bool = True
    """Scale each gradient row to unit L2 norm."""
    remove_common: bool = False
    """Subtract the gradient's mean over all token positions before reading the token's rows."""
    loss_space: Literal["latent", "clip image"] = "latent"
    """``"latent"``: mean squared error between x̂0 and B's clean latent (the paper). ``"clip image"``: both
    decoded and embedded by the host's ``embed_image``; loss = squared distance of the L2-normalised
    embeddings (2 − 2·cos; the authors' CLIP-space variant)."""

    def check(self, n_images: int) -> None:
        if self.loss_space not in LOSS_SPACES:
            raise InputError("loss_space", f"is {self.loss_space!r}.", f"use one of {', '.join(LOSS_SPACES)}.")
        check_pair_count(self.pairs, n_images)
        if self.batch_size < 1:
            raise InputError("batch_size", f"is {self.batch_size}.", "use 1 or more pairs per pass.")


class GradientHost(Protocol):
    """What collection needs from a diffusion host (ComfyUI's guider, or a pure-torch model in tests)."""

    def predict_x0(self, x_t: Tensor, sigma: Tensor, cond: Tensor) -> Tensor:
        """x̂0 ``[B, ...]`` of ``x_t`` at ``sigma`` ``[B]`` with ``cond`` ``[B, L, D]`` as the prompt's
        conditioning (the cond branch only), differentiable w.r.t. ``cond``."""
        ...

    def noised(self, x0: Tensor, sigma: Tensor, noise: Tensor) -> Tensor:
        """The host's forward process: ``x0`` noised to ``sigma`` with ``noise``."""
        ...


class ImageEmbeddingHost(GradientHost, Protocol):
    """A host that can also measure the ``"clip image"`` loss."""

    def embed_image(self, latent: Tensor) -> Tensor:
        """``[B, ...]`` latents (the host's latent space, as x̂0) → ``[B, E]`` image embeddings: decode, then the
        image encoder; differentiable w.r.t. ``latent``. Need not be normalised (the loss normalises)."""
        ...


@dataclass
class GradientSet:
    """One gradient per image pair, in the conditioning space of one text encoder."""

    vectors: Tensor
    """(P, D) float32 on the CPU, one row per pair (post-processed as ``normalize``/``remove_common`` say)."""
    losses: Tensor
    """(P,) float64, each pair's loss."""
    pairs: Tensor
    """(P, 2) int64, the image indices (A, B) of each row, A < B before the shuffle decided the order."""
    sigma: float
    """The sigma A was noised to."""
    space: str = ""
    """The conditioning space, e.g. ``conditioning:SD1ClipModel:768`` (directions must match it)."""
    word: str = ""
    """The concept word whose token rows were read."""
    prompt: str = ""
    """The prompt the images and the conditioning came from."""
    token_rows: list[int] = field(default_factory=list)
    """Rows of the conditioning that hold the word's token pieces."""
    config: dict = field(default_factory=dict)
    """JSON-able: the :class:`GradientConfig` and collection facts (seconds, image count)."""

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def max_pairs(n_images: int) -> int:
    """All unordered pairs i < j of ``n_images`` images."""
    return n_images * (n_images - 1) // 2


def check_pair_count(count: int, n_images: int) -> None:
    limit = max_pairs(n_images)
    if n_images < 2:
        raise InputError("images", f"has {n_images} image(s); a pair needs two.", "sample or connect 2 images or more.")
    if not 1 <= count <= limit:
        need = math.ceil((1 + math.sqrt(1 + 8 * max(count, 1))) / 2)
        raise InputError("pairs", f"is {count}, but {n_images} images give only {limit} pairs (all i < j).",
                         f"lower pairs to at most {limit}, or use at least {need} images.")


def _unrank(k: Tensor, n: int) -> Tensor:
    """Ordinal ``k`` of pair (i, j), i < j, in row-major order over i → (i, j)."""
    starts = torch.arange(n, dtype=torch.int64)
    starts = starts * (2 * n - starts - 1) // 2  # first ordinal of row i
    i = torch.searchsorted(starts, k, right=True) - 1
    j = k - starts[i] + i + 1
    return torch.stack([i, j], 1)


def make_pairs(n_images: int, count: int, seed: int = 0) -> Tensor:
    """``count`` distinct pairs (i < j) of ``n_images`` images, in a seeded random order: (count, 2) int64.

    Every pair is equally likely; the same seed gives the same pairs. Memory stays O(count) even when all
    pairs would not fit (10 000 images have 50 M pairs).
    """
    check_pair_count(count, n_images)
    total = max_pairs(n_images)
    g = torch.Generator().manual_seed(int(seed) % 2**63)
    if total <= RANDPERM_MAX:
        ordinals = torch.randperm(total, generator=g)[:count]
    else:  # rejection: draw ordinals until `count` distinct ones (count << total here in practice)
        seen: dict[int, None] = {}
        while len(seen) < count:
            for v in torch.randint(0, total, (2 * (count - len(seen)) + 16,), generator=g).tolist():
                seen.setdefault(v)
                if len(seen) == count:
                    break
        ordinals = torch.tensor(list(seen), dtype=torch.int64)
    return _unrank(ordinals, n_images)


def pair_losses(x0_hat: Tensor, target: Tensor) -> Tensor:
    """(B,) mean squared error per pair between predicted ``x0_hat`` and the clean latents ``target``."""
    return (x0_hat - target.to(x0_hat.device, x0_hat.dtype)).square().flatten(1).mean(1)


def embedding_losses(embedding: Tensor, target: Tensor) -> Tensor:
    """(B,) squared distance ‖ê − t̂‖² = 2 − 2·cos of the L2-normalised ``embedding`` and ``target`` rows."""
    e = F.normalize(embedding.flatten(1), dim=1)
    t = F.normalize(target.to(e.device, e.dtype).flatten(1), dim=1)
    return (e - t).square().sum(1)


def embed_targets(embed: Callable[[Tensor], Tensor], latents: Tensor, batch_size: int,
                  after_chunk: Callable[[], None] | None = None) -> Tensor:
    """(N, E) embeddings of every image's clean latent, chunk by chunk, without a graph (the fixed targets B).
    ``after_chunk()`` runs after each chunk (it may raise to stop)."""
    chunks = []
    with torch.no_grad():
        for i in range(0, int(latents.shape[0]), batch_size):
            chunks.append(embed(latents[i:i + batch_size]).detach().flatten(1))
            if after_chunk is not None:
                after_chunk()
    return torch.cat(chunks)


def _embedder(host: GradientHost, config: GradientConfig) -> Callable[[Tensor], Tensor] | None:
    if config.loss_space == "latent":
        return None
    embed = getattr(host, "embed_image", None)
    if not callable(embed):
        raise InputError("loss_space", f"is {config.loss_space!r}, but no image encoder is available.",
                         "connect a VAE and an image encoder (clip_vision or encoder), or use loss_space 'latent'.")
    return embed


def token_gradients(grad: Tensor, rows: Sequence[int], remove_common: bool = False,
                    normalize: bool = False) -> Tensor:
    """(B, D): the gradient ``grad`` (B, L, D) read at ``rows`` (summed over a word's pieces)."""
    if remove_common:
        grad = grad - grad.mean(dim=1, keepdim=True)
    g = grad[:, list(rows)].sum(dim=1)
    if normalize:
        g = g / g.norm(dim=1, keepdim=True).clamp_min(torch.finfo(g.dtype).tiny)
    return g


def check_rows(rows: Sequence[int], n_rows: int, input_name: str = "word") -> list[int]:
    rows = [int(r) for r in rows]
    if not rows:
        raise InputError(input_name, "matches no token of the prompt.", "use a word that appears in the prompt.")
    if min(rows) < 0 or max(rows) >= n_rows:
        raise InputError(input_name, f"token rows {rows} lie outside the conditioning's {n_rows} rows.",
                         "give the prompt that made this conditioning.")
    return rows


def pair_noise(shape: Sequence[int], seed: int, pair_index: int) -> Tensor:
    """Pair ``pair_index``'s noise: its own generator, so batching never changes it."""
    g = torch.Generator().manual_seed((int(seed) * NOISE_SEED_MIX + int(pair_index)) % 2**63)
    return torch.randn(tuple(shape), generator=g)


def _nonfinite(what: str) -> InputError:
    fixes = {"latents": ("images", "the latents contain NaN or infinite values.",
                         "connect finite latents (check the VAE encode) or let the node sample the images."),
             "cond": ("clip", "the conditioning contains NaN or infinite values.",
                      "check the text encoder (run it in float32)."),
             "grad": ("model", "the denoiser gave NaN or infinite gradients or predictions.",
                      "run the model in float32 (e.g. --force-fp32) or choose a later step, then collect again.")}
    return InputError(*fixes[what])


def collect_gradients(host: GradientHost, latents: Tensor, cond: Tensor, rows: Sequence[int], sigma: float,
                      config: GradientConfig, on_batch: Callable[[int, int], None] | None = None,
                      space: str = "", word: str = "", prompt: str = "") -> GradientSet:
    """One gradient per pair of ``latents`` (N, C, ...) (the host's latent space), at ``cond``'s ``rows``.

    The loss is ``config.loss_space``'s; ``"clip image"`` needs an :class:`ImageEmbeddingHost`.
    ``cond`` (1, L, D) is the prompt's conditioning; ``sigma`` the noise level A is noised to.
    ``on_batch(done, total)`` is called after every pass (it may raise to stop), and with ``done`` 0 after
    every chunk of target embeddings.
    """
    n = int(latents.shape[0])
    config.check(n)
    if cond.ndim != 3 or cond.shape[0] != 1:
        raise InputError("conditioning", f"has shape {tuple(cond.shape)}; expected [1, tokens, width].",
                         "connect the conditioning of ONE prompt.")
    rows = check_rows(rows, int(cond.shape[1]))
    if not bool(torch.isfinite(latents).all()):
        raise _nonfinite("latents")
    if not bool(torch.isfinite(cond).all()):
        raise _nonfinite("cond")
    embed = _embedder(host, config)
    pairs = make_pairs(n, config.pairs, config.seed)
    vectors = torch.empty(config.pairs, int(cond.shape[2]), dtype=torch.float32)
    losses = torch.empty(config.pairs, dtype=torch.float64)
    start = time.perf_counter()
    base = cond.detach()
    targets = None
    if embed is not None:  # progress stays at 0 while the targets are embedded; interrupt still works
        targets = embed_targets(embed, latents, config.batch_size,
                                None if on_batch is None else lambda: on_batch(0, config.pairs))
    for lo in range(0, config.pairs, config.batch_size):
        idx = pairs[lo:lo + config.batch_size]
        b = int(idx.shape[0])
        a_lat, b_lat = latents[idx[:, 0]], latents[idx[:, 1]]
        noise = torch.stack([pair_noise(latents.shape[1:], config.seed, lo + k) for k in range(b)])
        s = torch.full((b,), float(sigma), dtype=torch.float32, device=latents.device)
        with torch.no_grad():
            x_t = host.noised(a_lat, s, noise.to(latents.device, latents.dtype))
        leaf = base.expand(b, -1, -1).clone().requires_grad_(True)
        x0_hat = host.predict_x0(x_t, s, leaf)
        if embed is None:
            loss = pair_losses(x0_hat, b_lat)
        else:
            assert targets is not None
            loss = embedding_losses(embed(x0_hat), targets[idx[:, 1].to(targets.device)])
        (grad,) = torch.autograd.grad(loss.sum(), leaf)
        g = token_gradients(grad.detach(), rows, config.remove_common)
        if not (bool(torch.isfinite(g).all()) and bool(torch.isfinite(loss).all())):
            raise _nonfinite("grad")
        if config.normalize:
            g = g / g.norm(dim=1, keepdim=True).clamp_min(torch.finfo(g.dtype).tiny)
        vectors[lo:lo + b] = g.float().cpu()
        losses[lo:lo + b] = loss.detach().double().cpu()
        if on_batch is not None:
            on_batch(lo + b, config.pairs)
    cfg = {"pairs": config.pairs, "batch_size": config.batch_size, "seed": config.seed,
           "normalize": config.normalize, "remove_common": config.remove_common, "loss_space": config.loss_space,
           "n_images": n,
           "seconds": round(time.perf_counter() - start, 3)}
    return GradientSet(vectors, losses, pairs, float(sigma), space, word, prompt, rows, cfg)
