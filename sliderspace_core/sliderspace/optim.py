"""AdamW with one state per slider: the optimiser of slider training.

Slider factors are stacked (dim 0 indexes sliders) so that one batched pass can pick any sliders, but each
slider must train as if it had its own optimiser: a step that did not draw slider ``i`` must leave its
weights, moments and step count untouched (a shared tensor under torch's AdamW would decay every row and keep
moving undrawn rows on their momentum). ``SliderAdamW.step(rows)`` updates only ``rows``, each with its own
step count for the bias correction — the same arithmetic as one ``torch.optim.AdamW`` per slider.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch


class SliderAdamW(torch.optim.Optimizer):
    """AdamW (decoupled weight decay) over stacked per-slider tensors; ``step(rows)`` updates only those rows."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, rows: Sequence[int] | torch.Tensor) -> None:  # type: ignore[override]
        """One AdamW update of slider rows ``rows`` of every parameter that has a gradient; other rows, and
        their state, are not touched."""
        rows = torch.as_tensor(rows, dtype=torch.long).unique()
        if rows.numel() == 0:
            return
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["steps"] = torch.zeros(p.shape[0], dtype=torch.float32, device=p.device)
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                r = rows.to(p.device)
                grad = p.grad[r]
                steps = st["steps"][r] + 1
                m = st["exp_avg"][r].lerp_(grad, 1 - b1)
                v = st["exp_avg_sq"][r].mul_(b2).addcmul_(grad, grad, value=1 - b2)
                shape = (-1,) + (1,) * (p.ndim - 1)
                bias1 = (1 - b1 ** steps.double()).float().view(shape)
                bias2 = (1 - b2 ** steps.double()).float().sqrt().view(shape)
                x = p[r].mul_(1 - lr * wd)
                x.addcdiv_(m, (v.sqrt() / bias2).add_(eps) * bias1, value=-lr)
                st["steps"][r], st["exp_avg"][r], st["exp_avg_sq"][r] = steps, m, v
                p[r] = x
