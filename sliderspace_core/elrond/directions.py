"""ELROND directions (METHODS §2 step 5): PCA of the gradients (the C/min(N, D) rule or top-n) or the
decoder atoms of a TopK SAE, as the shared :class:`Directions` type, and their safetensors file.

A directions file is ONE safetensors file: tensors ``directions.components``, ``.explained_variance``,
``.explained_variance_ratio``, ``.mean`` and, in its metadata, ``format``, ``format_version`` and the
:class:`Directions` fields (``space`` names the conditioning space, e.g. ``conditioning:SD1ClipModel:768``).
Loading never unpickles and refuses foreign or damaged files with an :class:`InputError`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor

from ..common.errors import InputError
from ..common.safefile import FLOATS, read_header, write_safetensors
from ..decompose.directions import Directions
from ..decompose.pca import fit_pca
from ..decompose.topk_sae import ELROND_PRESET, TopKSAE, TopKSAEConfig, density_directions
from ..decompose.topk_train import train_sae
from .complexity import LID_C, as_gradients, concept_complexity
from .gradients import GradientSet

FORMAT_NAME = "sliderspace.elrond_directions"
FORMAT_VERSION = 1
PREFIX = "directions."
PcaRule = Literal["lid", "top_n"]

ELROND_SAE = ELROND_PRESET
"""ELROND's TopK SAE settings (the one preset, :data:`~..decompose.topk_sae.ELROND_PRESET`)."""


@dataclass(frozen=True)
class SAESchedule:
    """How the TopK SAE's schedule follows the number of gradients, and when a run counts as untrained."""

    batches_per_epoch: int = 32
    """The batch is the data split into about this many parts, between ``min_batch`` and the config's
    ``batch_size`` (the paper's 512), so a small set still gets many optimiser steps per epoch."""
    min_batch: int = 32
    """Smallest batch (fewer rows per step make the atoms follow single gradients)."""
    min_steps: int = 1500
    """Fewest optimiser steps in a run: epochs are raised above the config's until the run has this many
    (2 000 gradients at batch 512 and 20 epochs would be 80 steps)."""
    warmup_fraction: float = 0.05
    """Linear learning-rate warm-up over this share of the run's steps (the paper: a fixed 1 000 steps)."""
    untrained_cos: float = 0.99
    """A run whose exported atoms have a median cosine with their own initial values above this did not
    train (a random init fires too, so its atoms would pass the density rule)."""
    min_explained_variance: float = 0.5
    """A dictionary that explains less of the gradients' variance than this does not describe them."""


SAE_SCHEDULE = SAESchedule()


def scaled_sae_config(n_rows: int, config: TopKSAEConfig = ELROND_SAE,
                      schedule: SAESchedule = SAE_SCHEDULE) -> TopKSAEConfig:
    """``config`` with its batch, epochs and warm-up scaled to ``n_rows`` gradients (see :class:`SAESchedule`)."""
    batch = min(config.batch_size, max(schedule.min_batch, n_rows // schedule.batches_per_epoch), max(1, n_rows))
    per_epoch = math.ceil(n_rows / batch)
    epochs = max(config.epochs, math.ceil(schedule.min_steps / per_epoch))
    warmup = round(schedule.warmup_fraction * per_epoch * epochs)
    return replace(config, batch_size=batch, epochs=epochs, warmup_steps=warmup)


def _rows(grads: GradientSet | Tensor) -> tuple[Tensor, dict]:
    if isinstance(grads, GradientSet):
        return grads.vectors, {"word": grads.word, "prompt": grads.prompt, "sigma": grads.sigma,
                               "token_rows": list(grads.token_rows), **grads.config}
    return torch.as_tensor(grads), {}


def pca_directions(grads: GradientSet | Tensor, rule: PcaRule = "lid", n: int = 8, c: float = LID_C,
                   space: str = "") -> Directions:
    """PCA of the gradient rows. ``rule="lid"`` keeps the components whose explained-variance ratio exceeds
    ``c / min(N, D)`` (the concept's LID); ``"top_n"`` keeps the first ``n``. Rows are used as collected
    (collection already normalised them when asked)."""
    x, source = _rows(grads)
    x = as_gradients(x)
    space = space or getattr(grads, "space", "")
    if not float((x - x.mean(0)).abs().max()) > 0:
        raise InputError("gradients", "have zero variance: all rows are identical.",
                         "collect them again (different image pairs must give different gradients).")
    if rule == "lid":
        rep = concept_complexity(x, c=c)
        if rep.lid < 1:
            raise InputError("method", f"no component explains more than C/min(N, D) = {rep.threshold:.3g} of the "
                             "variance: the gradients look isotropic.", "use method 'PCA (top n)', lower c, or "
                             "collect more gradients (a prompt with a concrete concept word).")
        k = rep.lid
        source.update(lid=rep.lid, c=float(c))
    elif rule == "top_n":
        k = int(n)
        top = min(x.shape)
        if not 1 <= k <= top:
            raise InputError("n", f"is {k}, but {x.shape[0]} gradients of width {x.shape[1]} have at most {top} "
                             "principal components.", f"set n to at most {top}, or collect more gradients.")
    else:
        raise InputError("method", f"is {rule!r}.", "use 'PCA (LID rule)' or 'PCA (top n)'.")
    d = fit_pca(x, k, method="exact", normalize=False, encoder_id=space)
    d.source.update(source, rule=rule)
    return d


def sae_directions(grads: GradientSet | Tensor, config: TopKSAEConfig = ELROND_SAE, lo: float = -6.0,
                   hi: float = 0.0, progress=None, check=None, schedule: SAESchedule | None = SAE_SCHEDULE,
                   device: torch.device | str | None = None) -> Directions:
    """Decoder atoms of a TopK SAE trained on the gradients whose log10 firing density lies in (lo, hi),
    most frequently firing first. Variances are those of the centred rows along each atom.

    ``schedule`` scales ``config``'s batch, epochs and warm-up to the number of gradients (None: ``config``
    as given). Runs inside ``inference_mode(False)`` (a ComfyUI executor runs nodes in inference mode) on a
    copy of the gradients. A dictionary that did not train (atoms at their init, or too little explained
    variance) raises :class:`InputError` instead of exporting random atoms as directions. The SAE trains on
    ``device`` (default: the gradients'), batches streamed there; the directions come back on the CPU.
    """
    x, source = _rows(grads)
    x = as_gradients(x)
    if config.k > config.width(int(x.shape[1])):
        raise InputError("sae_k", f"is {config.k} but the SAE has only {config.width(int(x.shape[1]))} features.",
                         f"lower sae_k to at most {config.width(int(x.shape[1]))}.")
    if schedule is not None:
        config = scaled_sae_config(int(x.shape[0]), config, schedule)
    with torch.inference_mode(False), torch.enable_grad():
        x = x.detach().float().clone()
        sae, stats = train_sae(x, config, progress=progress, check=check, device=device)
        atoms, ids = density_directions(sae, lo=lo, hi=hi)
        init = TopKSAE.create(int(x.shape[1]), config).decoder_directions()[ids]
    if atoms.shape[0] == 0:
        raise InputError("sae_epochs", f"no SAE feature fires with a log10 density in ({lo}, {hi}).",
                         "train longer (raise sae_epochs) or use method 'PCA (LID rule)'.")
    init_cos = float((atoms * init).sum(1).median())
    floor = schedule or SAE_SCHEDULE
    run = (f"{stats.steps} steps of batch {config.batch_size}, lr {config.lr:g}, "
           f"{config.warmup_steps} warm-up steps, {len(x)} gradients")
    if init_cos > floor.untrained_cos:
        raise InputError("sae_lr", f"the TopK SAE did not train: its atoms stayed at their random init (median "
                         f"cos {init_cos:.3f} with it) after {run}.",
                         f"raise sae_lr (default {ELROND_SAE.lr:g}) or sae_epochs, or use method 'PCA (LID rule)'.")
    if stats.explained_variance < floor.min_explained_variance:
        raise InputError("sae_epochs", f"the TopK SAE explains only {stats.explained_variance:.0%} of the "
                         f"gradients' variance (at least {floor.min_explained_variance:.0%} expected) after {run}: "
                         "its atoms do not describe them.",
                         "raise sae_epochs or sae_k, collect more gradients, or use method 'PCA (LID rule)'.")
    dens = sae.firing_density.detach().cpu().double()[ids]
    order = torch.argsort(dens, descending=True, stable=True)
    atoms, ids = atoms[order], ids[order]
    xd = x.double()
    mean = xd.mean(0)
    xc = xd - mean
    var = (xc @ atoms.double().T).square().sum(0) / max(1, x.shape[0] - 1)
    total = xc.square().sum() / max(1, x.shape[0] - 1)
    source.update(features=ids.tolist(), explained_variance=stats.explained_variance, k=config.k,
                  expansion=config.expansion, epochs=config.epochs, lo=lo, hi=hi, lr=config.lr,
                  batch_size=config.batch_size, warmup_steps=config.warmup_steps, steps=stats.steps,
                  atom_init_cos=init_cos)
    return Directions(atoms.float().contiguous(), var, var / total.clamp_min(1e-300), mean.float(),
                      int(x.shape[0]), getattr(grads, "space", ""), "topk_sae", source)


def check_directions_for(directions: Directions, space: str, width: int, input_name: str = "directions") -> None:
    """Refuse directions of another conditioning width or text-encoder family."""
    d = int(directions.components.shape[1])
    if d != width:
        raise InputError(input_name, f"are {d} wide ({directions.space or 'unknown space'}) but this conditioning "
                         f"is {width} wide.", "collect and decompose gradients with this model's text encoder.")
    if directions.space and space and directions.space != space:
        raise InputError(input_name, f"live in {directions.space!r}, not in this text encoder's {space!r}.",
                         "collect and decompose gradients with this model's text encoder.")


def save_directions(directions: Directions, path: str, overwrite: bool = False) -> None:
    """Write ``directions`` as one self-describing safetensors file (atomic)."""
    check_direction_values(directions, "the directions", "directions")  # nothing Load would refuse is written
    tensors, meta = directions.to_state(PREFIX)
    write_safetensors(tensors, path, {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION), **meta},
                      overwrite=overwrite)


def load_directions(path: str, input_name: str = "file") -> Directions:
    """Read a file written by :func:`save_directions`; foreign or damaged files raise :class:`InputError`."""
    from safetensors import safe_open

    name = os.path.basename(path)
    meta = read_header(path, input_name, FLOATS).get("__metadata__") or {}
    if meta.get("format") != FORMAT_NAME:
        raise InputError(input_name, f"{name!r} is not an ELROND directions file.",
                         "choose a file written by ELROND Save Directions.")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise InputError(input_name, f"{name!r} has format version {meta.get('format_version')!r}; this "
                         f"version reads {FORMAT_VERSION}.", "update the node pack or save the directions again.")
    damaged = f"{name!r} is damaged"
    count = str(meta.get(PREFIX + "n_samples", ""))
    if not (count.isdigit() and int(count) >= 2):
        raise InputError(input_name, f"{damaged}: n_samples is {count!r}; directions come from at least 2 "
                         "gradients.", "save the directions again with ELROND Save Directions.")
    try:
        with safe_open(path, framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        d = Directions.from_state(tensors, meta, PREFIX)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure of a damaged file
        raise InputError(input_name, f"{damaged} ({type(e).__name__}: {e}).", "save the directions again.") from None
    k, width = tuple(d.components.shape) if d.components.ndim == 2 else (0, 0)
    ok = (k > 0 and width > 0 and d.explained_variance.shape == (k,) and d.explained_variance_ratio.shape == (k,)
          and d.mean.shape == (width,) and all(bool(torch.isfinite(t).all()) for t in tensors.values()))
    if not ok:
        raise InputError(input_name, f"{damaged}: inconsistent or non-finite tensors.", "save the directions again.")
    check_direction_values(d, f"{name!r}", input_name)
    return d


UNIT_TOLERANCE = 1e-3
"""Directions are unit vectors: a stored row whose norm differs from 1 by more than this is refused."""


def check_direction_values(d: Directions, what: str = "the directions", input_name: str = "file") -> None:
    """Refuse directions that cannot do what their strengths say: a row whose norm is 0, non-finite or not 1
    (Apply would change nothing, or everything), negative or non-finite variances, or impossible counts."""
    fix = "decompose the gradients again (ELROND Decompose) and save them with ELROND Save Directions."
    norms = d.components.double().norm(dim=1)
    bad = torch.nonzero(~torch.isfinite(norms) | ((norms - 1).abs() > UNIT_TOLERANCE)).flatten().tolist()
    if bad:
        i = bad[0]
        raise InputError(input_name, f"{what}: direction {i} has norm {float(norms[i]):.4g}; directions are unit "
                         "vectors (a zero or rescaled one would change nothing, or everything).", fix)
    var, ratio = d.explained_variance.double(), d.explained_variance_ratio.double()
    pca = d.method in ("exact", "randomized")  # orthogonal: the shares add up to at most 1 (SAE atoms need not)
    limit = 1 + 1e-6
    if not (bool(torch.isfinite(var).all()) and bool((var >= 0).all()) and bool((ratio >= 0).all())
            and bool((ratio <= limit).all()) and (not pca or float(ratio.sum()) <= limit)):
        raise InputError(input_name, f"{what}: its explained variances are negative or exceed the total.", fix)
    k, width = d.components.shape
    if d.n_samples < 2 or (pca and k > min(d.n_samples, width)):
        raise InputError(input_name, f"{what}: {k} directions from n_samples {d.n_samples} gradients of width "
                         f"{width} is impossible.", fix)
