"""One TopK sparse autoencoder for ELROND (METHODS §2.5) and SAE concepts (METHODS §3.2).

    z  = ReLU(TopK(W_enc (x - b_pre) + b_lat))        x_hat = W_dec^T z + b_pre

``W_enc`` and ``W_dec`` are both stored as (n_latents, d_in): row ``i`` of ``W_dec`` is latent ``i``'s
atom, kept at unit norm during training. TopK-then-ReLU (sdxl-unbox's order) and ReLU-then-TopK give
the same codes and the same gradients: if at least k pre-activations are positive both keep the same k;
if fewer are, both keep exactly the positive ones (the other selected entries are 0 either way, and
ReLU has zero gradient there). TopK first is cheaper: the ReLU touches k values per row, not n_latents.

Training lives in :mod:`.topk_train`; this module holds the config, the model, the file format and the
ELROND direction rule. Files are safetensors written through :mod:`sliderspace_core.common.safefile`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields, replace

import torch
from torch import Tensor, nn

from ..common.errors import InputError
from ..common.safefile import read_header, write_safetensors

FORMAT = "sliderspace.topk_sae"
FORMAT_VERSION = "1"
_TENSORS = ("W_enc", "b_lat", "W_dec", "b_pre", "firing_density")


def accumulator_dtype(device: torch.device) -> torch.dtype:
    """float64 for sums over many rows, or float32 on a device without float64 (Apple's MPS)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


@dataclass(frozen=True)
class TopKSAEConfig:
    """Architecture and training settings of a :class:`TopKSAE` (all of it is saved with the weights)."""

    k: int = 16
    """Latents kept per row (the TopK). ELROND: 32; SAE concepts: 10-20."""
    expansion: float = 4.0
    """Width as a multiple of the input size (n_latents = round(expansion * d_in)); ignored when
    ``n_latents`` is set. ELROND: 1; SAE concepts: 4."""
    n_latents: int | None = None
    """Explicit width (number of latents / dictionary atoms); overrides ``expansion``."""
    auxk: int | None = 256
    """AuxK: how many dead latents reconstruct the residual (Gao et al. 2024); None or 0 disables it."""
    auxk_coef: float = 1.0 / 32.0
    """Weight of the AuxK loss relative to the main normalised MSE."""
    dead_steps_threshold: int = 10_000_000
    """A latent is dead after this many consecutive training ROWS (tokens) without firing; only AuxK
    uses it. The name and unit follow the reference TopK code (its default is 10 M tokens)."""
    lr: float = 1e-4
    """Adam learning rate (betas 0.9/0.999, eps 1e-8, no weight decay). ELROND: 3e-5; SAE concepts: 1e-4."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up from lr/warmup_steps to lr over this many steps (0: none)."""
    batch_size: int = 4096
    """Rows per optimiser step. ELROND: 512; SAE concepts: 4096."""
    epochs: int = 1
    """Passes over the data. ELROND: 20; SAE concepts: 1."""
    seed: int = 0
    """Seeds the initial weights and the shuffling; same seed, data and device -> same weights."""
    shuffle_buffer: int = 262_144
    """Rows gathered from streamed chunks before they are shuffled into batches (a tensor input is
    shuffled whole, whatever its size)."""

    def width(self, d_in: int) -> int:
        """The number of latents for inputs of size ``d_in``."""
        return int(self.n_latents) if self.n_latents else max(1, round(self.expansion * d_in))

    def training_bytes(self, d_in: int) -> int:
        """Device memory one training run needs, roughly: the float32 weights with their gradients and two Adam
        moments, plus one batch's temporaries (pre-activations, dense codes and their gradient, row copies).
        The shuffle buffer stays in host memory. Hosts free this much before training (SDXL's 1280-wide block
        at 4x and batch 4096: about 0.6 GB)."""
        n = self.width(d_in)
        params = 2 * n * d_in + n + d_in
        return 4 * (4 * params + self.batch_size * (3 * n + 8 * d_in))

    def validate(self, d_in: int) -> None:
        """Raise :class:`InputError` naming the first bad setting."""
        ints = {"k": 1, "dead_steps_threshold": 1, "warmup_steps": 0, "batch_size": 1, "epochs": 1,
                "shuffle_buffer": 1, "seed": -(2**63)}
        for name, low in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise InputError(name, f"is {v!r}; it must be an integer >= {low}.", f"set {name} to >= {low}.")
        if self.n_latents is not None and (isinstance(self.n_latents, bool) or not isinstance(self.n_latents, int)
                                           or self.n_latents < 1):
            raise InputError("n_latents", f"is {self.n_latents!r}.", "set a positive integer, or leave it empty.")
        if not (isinstance(self.expansion, (int, float)) and math.isfinite(self.expansion) and self.expansion > 0):
            raise InputError("expansion", f"is {self.expansion!r}.", "use a positive number such as 1 or 4.")
        n = self.width(d_in)
        if self.k > n:
            raise InputError("k", f"is {self.k} but the SAE has only {n} latents.",
                             f"lower k to at most {n} or widen the SAE.")
        if self.auxk is not None and (isinstance(self.auxk, bool) or not isinstance(self.auxk, int) or self.auxk < 0):
            raise InputError("auxk", f"is {self.auxk!r}.", "use a non-negative integer (0 disables AuxK).")
        for name in ("lr", "auxk_coef"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise InputError(name, f"is {v!r}; it must be a positive number.", f"set {name} > 0.")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, input_name: str = "sae") -> TopKSAEConfig:
        """Parse :meth:`to_json` output; unknown or missing keys, or bad values, raise InputError."""
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise TypeError
        except (TypeError, ValueError, RecursionError):
            raise InputError(input_name, "the SAE config in the file is not valid JSON.",
                             "save the SAE again with SliderSpace.") from None
        names = {f.name for f in fields(cls)}
        if set(raw) != names:
            raise InputError(input_name, f"the SAE config keys {sorted(set(raw) ^ names)} are unexpected or "
                             "missing.", "save the SAE again with this version of SliderSpace.")
        return cls(**raw)


ELROND_PRESET = TopKSAEConfig(k=32, expansion=1.0, auxk=None, lr=3e-3, warmup_steps=0, batch_size=512, epochs=20)
"""ELROND's TopK SAE (METHODS §2.5): expansion 1, k 32, unit-norm decoder, batch up to 512, at least 20 epochs.
The paper's lr 3e-5 with 1 000 warm-up steps is tuned for 10-30 k gradients; at 2 000 (ELROND Collect's default)
the warm-up outlasts the run and the atoms never leave their init. So ELROND scales the schedule to the data
(``sliderspace_core.elrond.directions.scaled_sae_config``: batch, epochs and a warm-up that is a share of the
run) and uses lr 3e-3, measured to recover planted atoms at 2 000 and 10 000 gradients (benchmark E3)."""
SAE_CONCEPTS_PRESET = TopKSAEConfig(k=10, expansion=4.0, auxk=256, lr=1e-4, warmup_steps=0, batch_size=4096,
                                    epochs=1)
"""SAE concepts (METHODS §3.2, sdxl-unbox): width 4·d, k 10 (10-20), AuxK 256, Adam 1e-4, batch 4096, 1 epoch."""


class TopKSAE(nn.Module):
    """The autoencoder. Build it with :func:`TopKSAE.create` (seeded init) or :meth:`from_weights`."""

    def __init__(self, d_in: int, config: TopKSAEConfig) -> None:
        super().__init__()
        config.validate(d_in)
        n = config.width(d_in)
        self.config, self.d_in, self.n_latents, self.k = config, int(d_in), n, config.k
        self.W_enc = nn.Parameter(torch.zeros(n, d_in))
        self.b_lat = nn.Parameter(torch.zeros(n))
        self.W_dec = nn.Parameter(torch.zeros(n, d_in))
        self.b_pre = nn.Parameter(torch.zeros(d_in))
        self.register_buffer("firing_density", torch.zeros(n))
        """(n_latents,) share of training rows each latent fired on (over the last epoch)."""
        self.register_buffer("stats_last_nonzero", torch.zeros(n, dtype=torch.long))
        """(n_latents,) rows since each latent last fired (training state for AuxK; not saved)."""
        self.metadata: dict[str, str] = {}
        """Free-form string metadata (e.g. block, model family) carried through save/load."""

    @classmethod
    def create(cls, d_in: int, config: TopKSAEConfig) -> TopKSAE:
        """A fresh SAE: random unit decoder atoms from ``config.seed``, encoder = decoder (tied init)."""
        sae = cls(d_in, config)
        g = torch.Generator().manual_seed(config.seed)
        atoms = torch.randn(sae.n_latents, d_in, generator=g)
        atoms /= atoms.norm(dim=1, keepdim=True).clamp_min(1e-12)
        with torch.no_grad():
            sae.W_dec.copy_(atoms)
            sae.W_enc.copy_(atoms)
        return sae

    @classmethod
    def from_weights(cls, W_enc: Tensor, b_lat: Tensor, W_dec: Tensor, b_pre: Tensor,
                     config: TopKSAEConfig, firing_density: Tensor | None = None) -> TopKSAE:
        """Wrap existing weights (e.g. an imported sdxl-unbox SAE; W_enc/W_dec as (n_latents, d_in))."""
        n, d = W_dec.shape
        config = replace(config, n_latents=n)
        sae = cls(d, config)
        with torch.no_grad():
            for name, t in (("W_enc", W_enc), ("b_lat", b_lat), ("W_dec", W_dec), ("b_pre", b_pre),
                            ("firing_density", firing_density)):
                if t is not None:
                    target = getattr(sae, name)
                    if tuple(t.shape) != tuple(target.shape):
                        raise InputError("sae", f"{name} has shape {tuple(t.shape)}, expected "
                                         f"{tuple(target.shape)}.", "use weights of one SAE.")
                    target.copy_(t)
        return sae

    # ------------------------------------------------------------------ encode / decode

    def _check_input(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.d_in:
            raise InputError("activations", f"have width {x.shape[-1]} but the SAE was trained on width "
                             f"{self.d_in}.", "use an SAE trained for this block / conditioning.")
        return x.to(self.W_enc.dtype)

    def pre_activations(self, x: Tensor) -> Tensor:
        """W_enc (x - b_pre) + b_lat for rows ``x`` (..., d_in) -> (..., n_latents)."""
        x = self._check_input(x)
        flat = x.reshape(-1, self.d_in) - self.b_pre
        return torch.addmm(self.b_lat, flat, self.W_enc.T).reshape(*x.shape[:-1], self.n_latents)

    def encode_topk(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The k kept codes of each row: ``(values, indices)``, each (..., k); values >= 0 (ReLU)."""
        vals, idx = self.pre_activations(x).topk(self.k, dim=-1, sorted=False)
        return vals.clamp_min(0.0), idx

    def encode(self, x: Tensor) -> Tensor:
        """Dense codes (..., n_latents) with at most k non-zeros per row."""
        vals, idx = self.encode_topk(x)
        return torch.zeros(*vals.shape[:-1], self.n_latents, dtype=vals.dtype, device=vals.device).scatter_(
            -1, idx, vals)

    def decode(self, z: Tensor) -> Tensor:
        """x_hat = z W_dec + b_pre for dense codes (..., n_latents)."""
        return z.to(self.W_dec.dtype) @ self.W_dec + self.b_pre

    def decode_topk(self, values: Tensor, indices: Tensor) -> Tensor:
        """x_hat from ``encode_topk``'s output, without building dense codes."""
        flat_v, flat_i = values.reshape(-1, values.shape[-1]), indices.reshape(-1, indices.shape[-1])
        out = nn.functional.embedding_bag(flat_i, self.W_dec, per_sample_weights=flat_v, mode="sum")
        return (out + self.b_pre).reshape(*values.shape[:-1], self.d_in)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode_topk(*self.encode_topk(x))

    def decoder_directions(self) -> Tensor:
        """Unit atoms (n_latents, d_in), float32, detached: latent i's direction in input space."""
        w = self.W_dec.detach().float()
        return w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)


def explained_variance(sae: TopKSAE, x: Tensor, chunk_rows: int = 65536) -> float:
    """1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over the rows of ``x`` (N, d_in)."""
    x = x.reshape(-1, x.shape[-1])
    mean = x.double().mean(0)
    num = den = 0.0
    with torch.no_grad():
        for c in x.split(chunk_rows):
            c = c.to(sae.W_enc.device, torch.float32)
            num += float((sae(c) - c).double().square().sum())
            den += float((c.double() - mean.to(c.device)).square().sum())
    return 1.0 - num / max(den, 1e-30)


def density_directions(sae: TopKSAE, density: Tensor | None = None, lo: float = -6.0,
                       hi: float = 0.0) -> tuple[Tensor, Tensor]:
    """ELROND's direction rule: the unit decoder atoms of features with lo < log10(firing density) < hi.

    ``density`` defaults to the SAE's own ``firing_density`` (from its last training epoch). Returns
    ``(directions (m, d_in), feature_ids (m,))``, ordered by feature id. Never-firing features
    (density 0, log10 = -inf) and always-firing ones (density 1, log10 = 0) are excluded.
    """
    dens = (sae.firing_density if density is None else density).detach().double().cpu()
    if dens.shape != (sae.n_latents,):
        raise InputError("density", f"has shape {tuple(dens.shape)}, expected ({sae.n_latents},).",
                         "pass one firing density per SAE latent.")
    if not lo < hi:
        raise InputError("lo", f"lo={lo} must be below hi={hi}.", "use e.g. lo=-6, hi=0.")
    with torch.no_grad():
        logd = torch.log10(dens)
    ids = torch.nonzero((logd > lo) & (logd < hi)).flatten()
    return sae.decoder_directions().cpu()[ids], ids


# ---------------------------------------------------------------------------------- files


RESERVED = frozenset({"format", "format_version", "config", "d_in", "n_latents"})
"""Header keys the format itself uses (not free-form metadata)."""


def save_sae(sae: TopKSAE, path: str, metadata: dict[str, str] | None = None, overwrite: bool = False,
             input_name: str = "filename", per_feature: dict[str, Tensor] | None = None) -> None:
    """Write ``sae`` atomically as safetensors; its config (JSON) and ``metadata`` go in the header.

    ``per_feature``: extra named float32 tensors of shape (n_latents,) stored exactly (e.g. feature statistics).
    """
    extra = {**sae.metadata, **(metadata or {})}
    if RESERVED & set(extra):
        raise InputError("metadata", f"uses reserved keys {sorted(RESERVED & set(extra))}.", "rename them.")
    meta = {**{str(k): str(v) for k, v in extra.items()}, "format": FORMAT, "format_version": FORMAT_VERSION,
            "config": sae.config.to_json(), "d_in": str(sae.d_in), "n_latents": str(sae.n_latents)}
    tensors = {f"sae.{n}": getattr(sae, n).detach().float() for n in _TENSORS}
    for name, t in (per_feature or {}).items():
        if name.startswith("sae.") or tuple(t.shape) != (sae.n_latents,):
            raise ValueError(f"per-feature tensor {name!r}: shape {tuple(t.shape)} (want ({sae.n_latents},)) "
                             "and a name outside 'sae.'")
        tensors[name] = t.detach().float()
    write_safetensors(tensors, path, meta, overwrite=overwrite, input_name=input_name)


def read_sae(path: str, input_name: str = "sae_file", per_feature: tuple[str, ...] = ()
             ) -> tuple[TopKSAE, dict[str, Tensor]]:
    """Read a file written by :func:`save_sae`: the SAE (on the CPU) and those of the ``per_feature`` tensors
    the file holds (each optional). Anything foreign, truncated or inconsistent -> InputError."""
    from safetensors import safe_open

    header = read_header(path, input_name)
    meta = header.get("__metadata__") or {}
    name = os.path.basename(path)
    if meta.get("format") != FORMAT:
        raise InputError(input_name, f"{name!r} is not a SliderSpace TopK SAE file.",
                         "choose a file saved by SAE Train / ELROND Decompose.")
    if meta.get("format_version") != FORMAT_VERSION:
        raise InputError(input_name, f"{name!r} has SAE format version {meta.get('format_version')!r}; "
                         f"this version reads {FORMAT_VERSION}.", "update SliderSpace or re-save the SAE.")
    config = TopKSAEConfig.from_json(meta.get("config", ""), input_name)
    try:
        d_in, n = int(meta["d_in"]), int(meta["n_latents"])
        config.validate(d_in)
    except (KeyError, ValueError, InputError) as e:
        raise InputError(input_name, f"{name!r} has inconsistent SAE metadata ({e}).",
                         "save the SAE again.") from None
    if config.width(d_in) != n:
        raise InputError(input_name, f"{name!r}: n_latents {n} does not match its config.", "save the SAE again.")
    shapes = {"W_enc": [n, d_in], "b_lat": [n], "W_dec": [n, d_in], "b_pre": [d_in], "firing_density": [n]}
    got = {k: v for k, v in header.items() if k != "__metadata__"}
    want = {f"sae.{k}": s for k, s in shapes.items()} | {k: [n] for k in per_feature if k in got}
    if set(got) != set(want) or any(got[k].get("shape") != s or got[k].get("dtype") != "F32"
                                    for k, s in want.items()):
        raise InputError(input_name, f"{name!r}: its tensors do not match a {n}x{d_in} TopK SAE.",
                         "save the SAE again.")
    sae = TopKSAE(d_in, config)
    extras: dict[str, Tensor] = {}
    with safe_open(path, "pt") as f, torch.no_grad():
        for k in want:
            t = f.get_tensor(k)
            if not bool(torch.isfinite(t).all()):
                raise InputError(input_name, f"{name!r}: {k} contains NaN or infinite values.",
                                 "retrain or re-save the SAE.")
            if k.startswith("sae."):
                getattr(sae, k[4:]).copy_(t)
            else:
                extras[k] = t
    sae.metadata = {k: v for k, v in meta.items() if k not in RESERVED}
    return sae, extras


def load_sae(path: str, input_name: str = "sae_file", device: str | torch.device = "cpu") -> TopKSAE:
    """Read a file written by :func:`save_sae`; anything foreign, truncated or inconsistent -> InputError."""
    return read_sae(path, input_name)[0].to(device)
