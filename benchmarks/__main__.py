"""``python -m benchmarks [--json] [--only P1,P4]``: run the benchmark modules, print ratios."""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys

from benchmarks.common import Result

# module name -> ids it produces; each module exposes ``run(quick: bool) -> list[Result]`` (modules whose run()
# also takes ``only`` measure just the requested rows)
MODULES: dict[str, tuple[str, ...]] = {
    "benchmarks.p1_sampler": ("P1",),
    "benchmarks.p2_embed": ("P2",),
    "benchmarks.p4_pca": ("P4", "P4b"),
    "benchmarks.p3_training": ("P3", "P6"),
    "benchmarks.p6_families": ("P6-SDXL", "P6-Flux", "P6-SD3"),
    "benchmarks.p5_apply": ("P5",),
    "benchmarks.a3_sae": ("A3", "A3e"),
    "benchmarks.a12_concepts": ("A1", "A2"),
    "benchmarks.f_toyworld": ("F0", "F1", "F2", "F3", "F4", "FA"),
    "benchmarks.f_toyworld_nodes": ("F0c", "F1c", "F2c", "F3c", "F4c"),
    "benchmarks.e_elrond": ("E1", "E2"),
    "benchmarks.e3_elrond_sae": ("E3", "E3b"),
    "benchmarks.d_dist": ("D1", "D2"),
    "benchmarks.f_elrond": ("F5", "F6", "F6B", "F7"),
    "benchmarks.f_concepts": ("F8", "F9", "F10", "F11"),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--only", default="", help="comma-separated ids, e.g. P1,P4b")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke run, not for goals)")
    args = ap.parse_args(argv)
    only = {s.strip().upper() for s in args.only.split(",") if s.strip()}

    def wanted(row_id: str) -> bool:  # "P6" also selects the per-family rows "P6-SDXL", ...
        return not only or row_id.upper() in only or row_id.upper().split("-")[0] in only

    rows: list[Result] = []
    for mod_name, ids in MODULES.items():
        if not any(wanted(i) for i in ids):
            continue
        mod = importlib.import_module(mod_name)
        kwargs = {"only": only} if only and "only" in inspect.signature(mod.run).parameters else {}
        for row in mod.run(quick=args.quick, **kwargs):
            if not wanted(row.id):
                continue
            rows.append(row)
            if args.json:
                print(json.dumps(row.as_json()), flush=True)
    if not args.json:
        print(f"{'id':<5} {'measure':<62} {'value':>9} {'goal':>8}  pass")
        for r in rows:
            print(f"{r.id:<5} {r.measure:<62} {r.value:>9.3f} {r.goal:>8}  {'yes' if r.passed else 'NO'}")
            if r.note:
                print(f"      {r.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
