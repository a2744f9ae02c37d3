"""Training of :class:`~.topk_sae.TopKSAE`: streamed, shuffled batches; analytic sparse gradients; Adam.

Loss = NMSE(x, x_hat) + auxk_coef * NMSE(e, e_hat), where NMSE(a, b) = sum||a - b||^2 / sum||a - mean(a)||^2
over the batch, e = x - x_hat (held fixed) and e_hat = W_dec^T z_aux with z_aux = ReLU(TopK_auxk of the
pre-activations of the DEAD latents only) (Gao et al. 2024).

The gradient is assembled by hand, not by autograd over the whole graph: only k (and auxk) latents per
row carry gradient, so when k is a small share of the latents every product except the encoder's
forward pass touches (rows x k x d) numbers, not (rows x n_latents x d) (``embedding_bag`` and its
backward do the gathers); otherwise dense products are used (:data:`DENSE_BELOW`). After each step the
decoder gradient loses its component along each atom and the atoms are renormalised to unit length.
``tests/core/test_topk_sae.py`` checks both routes against autograd on the same loss.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..common.errors import InputError
from .topk_sae import TopKSAE, TopKSAEConfig, accumulator_dtype

ProgressFn = Callable[[int, "int | None", dict], None]
"""``progress(step, total_steps or None, stats)``; it may raise (e.g. to interrupt) and training stops."""
DENSE_BELOW = 16
"""Gradients go through dense products when k * DENSE_BELOW > n_latents (sparse gathers lose there)."""


@dataclass
class TrainStats:
    """What one training run measured."""

    loss: list[float] = field(default_factory=list)
    """Main normalised MSE per step (1 - it is the batch's explained variance)."""
    aux_loss: list[float] = field(default_factory=list)
    """AuxK normalised MSE per step (empty when AuxK is off)."""
    explained_variance: float = float("nan")
    """1 - sum||x - x_hat||^2 / sum||x - batch mean||^2 over all rows of the last epoch."""
    dead_fraction: float = float("nan")
    """Share of latents that never fired during the last epoch."""
    firing_density: Tensor | None = None
    """(n_latents,) share of last-epoch rows on which each latent fired (also stored in the SAE)."""
    steps: int = 0
    """Optimiser steps taken."""
    rows: int = 0
    """Rows (tokens) trained on, all epochs."""
    seconds: float = 0.0
    """Wall time of the run."""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")


class _Source:
    """Fresh chunk iterators per epoch; a one-shot iterator (one epoch only) keeps what was peeked at."""

    def __init__(self, data: Tensor | Iterable[Tensor] | Callable[[], Iterable[Tensor]], epochs: int) -> None:
        self.data, self.head = data, []
        self.one_shot = not isinstance(data, Tensor) and not callable(data) and iter(data) is data
        if self.one_shot and epochs > 1:
            raise InputError("activations", f"is a one-shot iterator but {epochs} epochs were asked for.",
                             "pass a list of chunks, a tensor, or a function returning a fresh iterator.")

    def __call__(self) -> Iterator[Tensor]:
        if isinstance(self.data, Tensor):
            return iter((self.data,))
        if self.one_shot:
            head, self.head = self.head, []
            return itertools.chain(head, self.data)
        return iter(self.data() if callable(self.data) else self.data)

    def peek(self) -> Iterator[Tensor]:
        """Chunks from the start; for a one-shot iterator they are kept for the first epoch."""
        if not self.one_shot:
            yield from self()
            return
        yield from self.head
        for c in self.data:
            self.head.append(c)
            yield c


def _checked(chunk: Tensor, d_in: int, finite: bool = True) -> Tensor:
    """``chunk`` as (rows, d_in) floats; a wrong width or a NaN/Inf raises InputError."""
    if not isinstance(chunk, Tensor):
        chunk = torch.as_tensor(chunk)
    if chunk.ndim < 1 or chunk.shape[-1] != d_in:
        raise InputError("activations", f"a chunk has shape {tuple(chunk.shape)}; rows of width {d_in} "
                         "were expected.", "feed activations from one block / conditioning only.")
    chunk = chunk.reshape(-1, d_in)
    if not chunk.is_floating_point():
        chunk = chunk.float()
    if finite and not all(bool(torch.isfinite(c).all()) for c in chunk.split(1 << 16)):  # bounded temporaries
        raise InputError("activations", "contain NaN or infinite values.",
                         "recollect them (a NaN in sampling propagates into the capture).")
    return chunk


def _batches(chunks: Iterator[Tensor], d_in: int, batch: int, buffer_rows: int, gen: torch.Generator,
             device: torch.device) -> Iterator[Tensor]:
    """Shuffled float32 batches on ``device``; leftovers carry over, so only the last batch is short."""
    pending: list[Tensor] = []
    held = 0

    def emit(final: bool) -> Iterator[Tensor]:
        nonlocal pending, held
        block = pending[0] if len(pending) == 1 else torch.cat(pending)
        perm = torch.randperm(block.shape[0], generator=gen).to(block.device)
        full = block.shape[0] if final else (block.shape[0] // batch) * batch
        for s in range(0, full, batch):
            yield block[perm[s:min(s + batch, full)]].to(device, torch.float32, non_blocking=True)
        rest = block[perm[full:]]
        pending, held = ([rest], rest.shape[0]) if rest.shape[0] else ([], 0)

    for chunk in chunks:
        chunk = _checked(chunk, d_in)
        pending.append(chunk)
        held += chunk.shape[0]
        if held >= buffer_rows:
            yield from emit(final=False)
    if held:
        yield from emit(final=True)


def _sparse_decode(W: Tensor, vals: Tensor, idx: Tensor) -> Tensor:
    return torch.nn.functional.embedding_bag(idx, W, per_sample_weights=vals, mode="sum")


def _backward(W_dec: Tensor, xc: Tensor, vals: Tensor, idx: Tensor, g: Tensor, gW_dec: Tensor, gW_enc: Tensor,
              gb_lat: Tensor) -> None:
    """Accumulate the gradients of a decode ``vals @ W_dec[idx]`` whose output gradient is ``g``.

    Decoder rows: += vals * g; codes: g . W_dec[idx], through the ReLU, then into the encoder rows
    (+= dcode * xc) and latent biases (+= dcode). Sparse (the backward of ``embedding_bag``: only the k
    selected rows per input row) when k is a small share of the latents, dense products otherwise.
    """
    if idx.shape[1] * DENSE_BELOW > W_dec.shape[0]:
        z = torch.zeros(idx.shape[0], W_dec.shape[0], dtype=g.dtype, device=g.device)
        gW_dec.addmm_(z.scatter_(1, idx, vals).T, g)
        dcode = (g @ W_dec.T).gather(1, idx) * (vals > 0)
        dz = z.zero_().scatter_(1, idx, dcode)
        gW_enc.addmm_(dz.T, xc)
        gb_lat += dz.sum(0)
        return
    with torch.enable_grad():  # autograd of single embedding_bag ops: fused gathers, no (rows, k, d) copy
        wd, v = W_dec.detach().requires_grad_(True), vals.detach().requires_grad_(True)
        out = torch.nn.functional.embedding_bag(idx, wd, per_sample_weights=v, mode="sum")
        g_wd, g_v = torch.autograd.grad(out, (wd, v), g)
        dcode = g_v * (vals > 0)
        we = torch.zeros_like(gW_enc).requires_grad_(True)
        out = torch.nn.functional.embedding_bag(idx, we, per_sample_weights=dcode, mode="sum")
        (g_we,) = torch.autograd.grad(out, (we,), xc)
    gW_dec += g_wd
    gW_enc += g_we
    gb_lat.index_add_(0, idx.reshape(-1), dcode.reshape(-1))


def sae_loss_and_grads(sae: TopKSAE, x: Tensor, dead: Tensor | None
                       ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One batch: sets ``.grad`` of the four parameters; returns (nmse, aux_nmse, vals, idx, den),
    ``den`` = sum||x - batch mean||^2.

    ``dead`` is a bool mask of dead latents (AuxK), or None for no AuxK.
    """
    cfg = sae.config
    W_enc, b_lat, W_dec, b_pre = sae.W_enc.detach(), sae.b_lat.detach(), sae.W_dec.detach(), sae.b_pre.detach()
    xc = x - b_pre
    pre = torch.addmm(b_lat, xc, W_enc.T)
    vals, idx = pre.topk(sae.k, dim=1, sorted=False)
    vals = vals.clamp_min_(0.0)
    x_hat = _sparse_decode(W_dec, vals, idx) + b_pre
    resid = x_hat - x
    den = (x - x.mean(0)).square().sum().clamp_min(1e-30)
    nmse = resid.square().sum() / den
    g = resid * (2.0 / den)
    gW_dec, gW_enc, gb_lat = torch.zeros_like(W_dec), torch.zeros_like(W_enc), torch.zeros_like(b_lat)
    _backward(W_dec, xc, vals, idx, g, gW_dec, gW_enc, gb_lat)
    gb_pre = g.sum(0)
    aux = torch.zeros((), device=x.device)
    if dead is not None:
        n_aux = min(int(cfg.auxk), sae.n_latents)
        avals, aidx = pre.masked_fill_(~dead, -math.inf).topk(n_aux, dim=1, sorted=False)
        avals = avals.clamp_min_(0.0)  # -inf (live latents when few are dead) -> 0, no gradient
        e = -resid
        e_den = (e - e.mean(0)).square().sum().clamp_min(1e-30)
        ar = _sparse_decode(W_dec, avals, aidx) - e
        aux = ar.square().sum() / e_den
        _backward(W_dec, xc, avals, aidx, ar * (2.0 * cfg.auxk_coef / e_den), gW_dec, gW_enc, gb_lat)
    gb_pre -= gb_lat @ W_enc  # d pre / d b_pre = -W_enc^T
    for p, grad in ((sae.W_enc, gW_enc), (sae.b_lat, gb_lat), (sae.W_dec, gW_dec), (sae.b_pre, gb_pre)):
        p.grad = grad
    return nmse, aux, vals, idx, den


def _steps_per_epoch(total_rows: int | None, batch: int) -> int | None:
    return None if total_rows is None else max(1, math.ceil(total_rows / batch))


def _count_rows(data: object) -> int | None:
    if isinstance(data, Tensor):
        return int(data.reshape(-1, data.shape[-1]).shape[0])
    if isinstance(data, (list, tuple)) and all(isinstance(c, Tensor) for c in data):
        return sum(int(c.reshape(-1, c.shape[-1]).shape[0]) for c in data)
    return None


def train_sae(data: Tensor | Iterable[Tensor] | Callable[[], Iterable[Tensor]], config: TopKSAEConfig | None = None,
              *, d_in: int | None = None, sae: TopKSAE | None = None, progress: ProgressFn | None = None,
              progress_every: int | None = None, total_rows: int | None = None,
              device: str | torch.device | None = None,
              check: Callable[[], None] | None = None) -> tuple[TopKSAE, TrainStats]:
    """Train a TopK SAE on rows of ``data`` and return it with its :class:`TrainStats`.

    ``data``: an (N, d) tensor, a re-iterable of (n_i, d) chunks (a list, or an object whose ``__iter__``
    re-reads shards from disk), or a function returning a fresh iterator per epoch. ``sae``: continue from
    this one (its config is used; ``config`` must then be None); else a new one from ``config``
    (``d_in`` from the first chunk when not given). ``total_rows`` (known for tensors / lists) gives the
    callback a total; ``progress`` is called every ``progress_every`` steps (default: ~200 calls a run)
    and at the end, and may raise to stop training. ``check()`` is called before every step and may raise
    too (a host's interrupt test: cheap, so an interrupt lands within one step, not one progress interval).
    ``device``: where to train (default: the data's).
    """
    if (sae is None) == (config is None):
        raise InputError("config", "pass exactly one of config (new SAE) or sae (continue training).",
                         "drop one of them.")
    cfg = sae.config if sae is not None else config
    src = _Source(data, cfg.epochs)
    if sae is None:
        first = next(src.peek(), None)
        if first is None:
            raise InputError("activations", "are empty.", "collect activations first.")
        d_in = int(first.shape[-1]) if d_in is None else d_in
        cfg.validate(d_in)
        dev = torch.device(device) if device is not None else torch.as_tensor(first).device
        sae = TopKSAE.create(d_in, cfg).to(dev)
        _init_pre_bias(sae, src.peek())
    dev = torch.device(device) if device is not None else sae.W_enc.device
    sae = sae.to(dev)
    total_rows = total_rows if total_rows is not None else _count_rows(data)
    per_epoch = _steps_per_epoch(total_rows, cfg.batch_size)
    total = None if per_epoch is None else per_epoch * cfg.epochs
    every = progress_every or (max(1, total // 200) if total else 20)
    params = [sae.W_enc, sae.b_lat, sae.W_dec, sae.b_pre]
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    use_aux = bool(cfg.auxk)
    stats, t0, step = TrainStats(), time.perf_counter(), 0
    losses: list[Tensor] = []
    aux_losses: list[Tensor] = []
    n, acc = sae.n_latents, accumulator_dtype(dev)
    for epoch in range(cfg.epochs):
        fires = torch.zeros(n, dtype=torch.long, device=dev)
        ep_num = torch.zeros((), dtype=acc, device=dev)
        ep_den = torch.zeros((), dtype=acc, device=dev)
        ep_rows = 0
        for x in _batches(src(), sae.d_in, cfg.batch_size, cfg.shuffle_buffer, gen, dev):
            if check is not None:
                check()
            dead = sae.stats_last_nonzero > cfg.dead_steps_threshold if use_aux else None
            nmse, aux, vals, idx, den = sae_loss_and_grads(sae, x, dead)
            lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
            for group in opt.param_groups:
                group["lr"] = lr
            with torch.no_grad():
                W = sae.W_dec
                W.grad -= (W.grad * W).sum(1, keepdim=True) * W  # no change of atom length
                opt.step()
                W /= W.norm(dim=1, keepdim=True).clamp_min(1e-12)
                fired_rows = idx[vals > 0]
                batch_fires = torch.bincount(fired_rows, minlength=n)
                fires += batch_fires
                sae.stats_last_nonzero += x.shape[0]
                sae.stats_last_nonzero.masked_fill_(batch_fires > 0, 0)
                ep_num += nmse.to(acc) * den
                ep_den += den
            losses.append(nmse.detach())
            if use_aux:
                aux_losses.append(aux.detach())
            ep_rows += x.shape[0]
            stats.rows += x.shape[0]
            step += 1
            last = per_epoch is not None and step == total
            if progress is not None and (step % every == 0 or last):
                progress(step, total, _snapshot(epoch, step, stats.rows, lr, losses, fires, ep_rows, sae))
        if ep_rows == 0:
            raise InputError("activations", "are empty.", "collect activations first.")
        density = fires.to(acc) / ep_rows
        sae.firing_density.copy_(density.float())
        stats.explained_variance = float(1.0 - ep_num / ep_den.clamp_min(1e-30))
    stats.loss = torch.stack(losses).tolist()
    stats.aux_loss = torch.stack(aux_losses).tolist() if aux_losses else []
    stats.firing_density = sae.firing_density.detach().cpu().clone()
    stats.dead_fraction = float((stats.firing_density == 0).double().mean())
    stats.steps, stats.seconds = step, time.perf_counter() - t0
    for p in params:
        p.grad = None
    if progress is not None and (per_epoch is None or step != total):
        progress(step, step, _snapshot(cfg.epochs - 1, step, stats.rows, lr, losses, fires, ep_rows, sae))
    return sae, stats


def _snapshot(epoch: int, step: int, rows: int, lr: float, losses: list[Tensor], fires: Tensor, ep_rows: int,
              sae: TopKSAE) -> dict:
    loss = float(losses[-1])
    return {"epoch": epoch, "step": step, "rows": rows, "lr": lr, "loss": loss, "explained_variance": 1.0 - loss,
            "dead_fraction": float((fires == 0).float().mean()) if ep_rows else float("nan")}


def _init_pre_bias(sae: TopKSAE, chunks: Iterator[Tensor], rows: int = 65536) -> None:
    """b_pre = the mean of (up to) the first ``rows`` rows (the reference uses a geometric median)."""
    total, count = None, 0
    for c in chunks:
        c = _checked(c, sae.d_in, finite=False)[: rows - count].double()
        total = c.sum(0) if total is None else total + c.sum(0)
        count += c.shape[0]
        if count >= rows:
            break
    if count:
        with torch.no_grad():
            sae.b_pre.copy_((total / count).float())
