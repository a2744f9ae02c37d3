"""A3: training throughput of our TopK SAE / overcomplete 0.3.0's ``TopKSAE`` on the same rows, same width,
k, batch, learning rate and one epoch (the SAE-concepts shape, width 4·d). A3e: the same at ELROND's
shape (expansion 1, k 32, batch 512).

Both sides do plain TopK training (no AuxK: overcomplete's auxiliary loss is a different one). The
reference gets every advantage we could give it: its own ``train_sae`` loop with monitoring and gradient
clipping off, fed pre-shuffled batch tensors (no DataLoader collation), while our time includes our
shuffling and the b_pre initialisation pass. Explained variance on the training rows is reported for
both as information only: after so few steps it mostly reflects the initialisation (ours starts from
b_pre = data mean and a tied encoder; overcomplete's default has no pre-bias, and the rows' mean has
norm ~20-30, so its early reconstructions are far off). Without overcomplete the rows are skipped.
"""

from __future__ import annotations

import torch

from benchmarks.common import Result, check, interleaved_times


def _data(n: int, d: int, atoms: int, k: int, seed: int = 0) -> torch.Tensor:
    """k-sparse non-negative combinations of random unit atoms plus a mean and a little noise."""
    g = torch.Generator().manual_seed(seed)
    dic = torch.randn(atoms, d, generator=g)
    dic /= dic.norm(dim=1, keepdim=True)
    idx = torch.randint(0, atoms, (n, k), generator=g)
    codes = torch.zeros(n, atoms).scatter_(1, idx, torch.rand(n, k, generator=g) + 0.5)
    return codes @ dic + 0.05 * torch.randn(n, d, generator=g) + torch.randn(d, generator=g)


def _ev(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    return 1.0 - float((x - x_hat).square().sum() / (x - x.mean(0)).square().sum())


def _row(row_id: str, n: int, d: int, width: int, k: int, batch: int, lr: float) -> Result:
    from overcomplete.sae import TopKSAE as OcTopKSAE
    from overcomplete.sae import train_sae as oc_train

    from sliderspace_core.decompose.topk_sae import TopKSAEConfig
    from sliderspace_core.decompose.topk_train import train_sae

    x = _data(n, d, atoms=width, k=k)
    cfg = TopKSAEConfig(k=k, n_latents=width, auxk=None, lr=lr, batch_size=batch, epochs=1, seed=0)
    batches = list(x[torch.randperm(n, generator=torch.Generator().manual_seed(1))].split(batch))
    out: dict[str, object] = {}

    def ours() -> None:
        out["ours"] = train_sae(x, cfg)[0]

    def reference() -> None:
        torch.manual_seed(0)
        model = OcTopKSAE(d, nb_concepts=width, top_k=k)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        oc_train(model, batches, lambda a, b, *_: (a - b).square().mean(), opt, nb_epochs=1, clip_grad=None,
                 monitoring=0)
        out["ref"] = model

    times = interleaved_times({"ours": ours, "ref": reference}, repeats=3)
    ratio = times["ref"] / times["ours"]  # throughput ratio = inverse time ratio (same rows)
    with torch.no_grad():
        ev_ours = _ev(x, out["ours"](x))
        ref = out["ref"].eval()
        ev_ref = _ev(x, ref(x)[2])
    steps = -(-n // batch)
    note = (f"{n} rows x {d} -> {width} latents, k {k}, batch {batch}, lr {lr}, 1 epoch ({steps} steps); "
            f"ours {n / times['ours']:.0f} rows/s ({times['ours']:.2f}s), overcomplete 0.3.0 "
            f"{n / times['ref']:.0f} rows/s ({times['ref']:.2f}s), best of 3 interleaved, "
            f"{torch.get_num_threads()} threads; EV on the training rows: ours {ev_ours:.3f}, "
            f"overcomplete {ev_ref:.3f}")
    measure = f"SAE train throughput, ours / overcomplete TopKSAE ({d}->{width}, k {k}, batch {batch})"
    return Result(row_id, measure, ratio, ">= 1.0", check(ratio, ">= 1.0"), note)


def run(quick: bool) -> list[Result]:
    """A3 (SAE-concepts shape) and A3e (ELROND shape); skipped when overcomplete is not installed."""
    try:
        import overcomplete.sae  # noqa: F401
    except ImportError:
        print("A3 skipped: overcomplete is not installed (pip install -c constraints.txt overcomplete==0.3.0)")
        return []
    if quick:
        return [_row("A3", 8192, 128, 512, 16, 1024, 1e-4), _row("A3e", 4096, 192, 192, 32, 512, 3e-5)]
    return [_row("A3", 65536, 512, 2048, 16, 4096, 1e-4), _row("A3e", 32768, 768, 768, 32, 512, 3e-5)]
