"""ELROND Decompose (PCA by the LID rule or top-n, or a TopK SAE) and ELROND Concept Complexity."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from comfy_api.latest import io

from ...sliderspace_core.common.drawing import FG, GRID, LINE, blank, scree_plot
from ...sliderspace_core.elrond.complexity import concept_complexity, lid_stability_curve, subspace_overlap
from ...sliderspace_core.elrond.directions import (
    ELROND_SAE,
    SAE_SCHEDULE,
    check_directions_for,
    pca_directions,
    sae_directions,
)
from .. import sockets as S
from ..glue.device import compute_device
from ..glue.ui import Progress, node_errors

METHODS = ("PCA (LID rule)", "PCA (top n)", "TopK SAE")


class Decompose(io.ComfyNode):
    NAME = "ELROND Decompose"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ELRONDDecompose", display_name=cls.NAME, category=S.ELROND_CATEGORY,
            description="Directions in the conditioning space from the gradients: PCA keeping the components that "
                        "explain more than C/min(N, D) of the variance (the concept's LID), the top n, or the "
                        "decoder atoms of a TopK SAE whose log10 firing density lies in (-6, 0).",
            inputs=[
                S.Gradients.Input("gradients"),
                io.Combo.Input("method", options=list(METHODS), default=METHODS[0],
                               tooltip="PCA (LID rule): the components above C/min(N, D) (paper); PCA (top n): the n "
                                       "largest; TopK SAE: decoder atoms (needs 10-30 k gradients)."),
                io.Int.Input("n", default=8, min=1, max=8192, tooltip="Components for 'PCA (top n)'."),
                io.Float.Input("c", default=2.5, min=0.01, max=1000.0, step=0.1, tooltip="C of the LID rule."),
                io.Int.Input("sae_k", default=32, min=1, max=4096, tooltip="TopK SAE: active features per row."),
                io.Int.Input("sae_epochs", default=ELROND_SAE.epochs, min=1, max=10000,
                             tooltip="TopK SAE: at least this many epochs (paper: 20); more are run when the "
                                     f"gradients are few, so the run has at least {SAE_SCHEDULE.min_steps} steps."),
                io.Float.Input("sae_lr", default=ELROND_SAE.lr, min=1e-7, max=1.0, step=1e-5, round=1e-7,
                               tooltip="TopK SAE learning rate, warmed up over the first "
                                       f"{SAE_SCHEDULE.warmup_fraction:.0%} of the steps. The paper's 3e-5 with "
                                       "1 000 warm-up steps is tuned for 10-30 k gradients and leaves the atoms at "
                                       "their init at 2 000 (measured); the node refuses an untrained dictionary."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, tooltip="TopK SAE initialisation."),
            ],
            outputs=[S.Directions.Output(display_name="directions"), io.Image.Output(display_name="spectrum")],
        )

    @classmethod
    def execute(cls, gradients, method, n, c, sae_k, sae_epochs, sae_lr, seed) -> io.NodeOutput:
        with node_errors(cls.NAME):
            if method == "TopK SAE":
                cfg = dataclasses.replace(ELROND_SAE, k=sae_k, epochs=sae_epochs, lr=sae_lr, seed=seed % 2**63)
                bar = Progress(100)

                def progress(step: int, total: int | None, stats: dict) -> None:
                    bar(min(100, int(100 * step / total)) if total else 0)

                device = compute_device(cfg.training_bytes(gradients.dim))
                d = sae_directions(gradients, cfg, progress=progress, check=bar.check, device=device)
            else:
                d = pca_directions(gradients, "lid" if method == METHODS[0] else "top_n", n, c)
            title = f"ELROND {method}: {d.n_components} directions of {gradients.word!r} ({len(gradients)} gradients)"
            plot = scree_plot(d.explained_variance_ratio.tolist(), title=title)
        return io.NodeOutput(d, plot)


def curve_picture(sizes: list[int], values: list[int], title: str, width: int = 640, height: int = 300) -> torch.Tensor:
    """LID (y) against the number of gradients (x), as an IMAGE tensor."""
    img, d = blank(width, height)
    left, right, top, bottom = 56, width - 24, 30, height - 36
    d.text((8, 8), title, fill=FG)
    d.rectangle([left, top, right, bottom], outline=GRID)
    hi = max(max(values), 1) * 1.15
    xs = np.linspace(left + 10, right - 10, num=max(len(sizes), 2))[: len(sizes)]
    pts = [(float(x), float(bottom - v / hi * (bottom - top))) for x, v in zip(xs, values, strict=True)]
    if len(pts) > 1:
        d.line(pts, fill=LINE, width=2)
    for (x, y), s, v in zip(pts, sizes, values, strict=True):
        d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=LINE)
        d.text((x - 10, y - 16), str(v), fill=FG)
        d.text((x - 12, bottom + 4), str(s), fill=FG)
    d.text((left, height - 16), "gradients used  ->  LID", fill=FG)
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0)[None]


class ConceptComplexity(io.ComfyNode):
    NAME = "ELROND Concept Complexity"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ELRONDConceptComplexity", display_name=cls.NAME, category=S.ELROND_CATEGORY,
            description="How many directions the concept varies along: the LID (components above C/min(N, D)), "
                        "the 95 % count and the spectral-gap count; the LID against the number of gradients "
                        "(a flat curve means enough gradients); optionally the subspace overlap "
                        "||V_A V_Bᵀ||²_F / k_A of two directions sets (1: same span, 0: orthogonal).",
            inputs=[
                S.Gradients.Input("gradients"),
                io.Float.Input("c", default=2.5, min=0.01, max=1000.0, step=0.1,
                               tooltip="LID constant C: components explaining more than C/min(N, D) of the variance "
                                       "count (paper: 2.5)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, tooltip="Order of the stability curve."),
                S.Directions.Input("directions", optional=True, tooltip="Concept A's directions (for the overlap)."),
                S.Directions.Input("other_directions", optional=True, tooltip="Concept B's directions."),
            ],
            outputs=[io.String.Output(display_name="report"), io.Int.Output(display_name="lid"),
                     io.Image.Output(display_name="stability")],
        )

    @classmethod
    def execute(cls, gradients, c, seed, directions=None, other_directions=None) -> io.NodeOutput:
        with node_errors(cls.NAME):
            rep = concept_complexity(gradients.vectors, c=c)
            curve = lid_stability_curve(gradients.vectors, seed=seed % 2**63, c=c)
            lines = [f"concept {gradients.word!r}: LID {rep.lid} (C = {c:g}, threshold {rep.threshold:.3g}), "
                     f"95 %: {rep.n95}, spectral gap: {rep.gap}; {rep.n_samples} gradients of width {rep.dim}",
                     "LID vs gradients: " + ", ".join(f"{s}: {v}" for s, v in zip(curve.sizes, curve.lid, strict=True))]
            if directions is not None and other_directions is not None:
                check_directions_for(other_directions, directions.space, int(directions.components.shape[1]),
                                     "other_directions")
                ov = subspace_overlap(directions.components, other_directions.components, orthonormalize=True)
                lines.append(f"subspace overlap: {ov:.4f} ({directions.n_components} vs "
                             f"{other_directions.n_components} directions)")
            pic = curve_picture(curve.sizes, curve.lid, f"LID of {gradients.word!r} vs number of gradients")
        return io.NodeOutput("\n".join(lines), rep.lid, pic)


__all__ = ["Decompose", "ConceptComplexity", "curve_picture"]
