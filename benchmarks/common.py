"""The benchmark row and small timing helpers shared by every benchmark module."""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Result:
    """One benchmark row: ``value`` compared against ``goal`` (a string such as ``"<= 1.05"``)."""

    id: str
    measure: str
    value: float
    goal: str
    passed: bool
    note: str = ""

    def as_json(self) -> dict:
        return {"id": self.id, "measure": self.measure, "value": round(float(self.value), 4),
                "goal": self.goal, "pass": bool(self.passed), "note": self.note}


def check(value: float, goal: str) -> bool:
    """Evaluate ``value`` against a goal string like ``"<= 1.05"`` or ``">= 1.5"``."""
    op, target = goal.split()
    t = float(target)
    return {"<=": value <= t, ">=": value >= t, "<": value < t, ">": value > t}[op]


def best_time(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """Best wall time of ``repeats`` calls after ``warmup`` calls (min is the least noisy estimate)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def interleaved_times(fns: dict[str, Callable[[], object]], repeats: int = 3) -> dict[str, float]:
    """Best time of each callable, alternating them so machine noise hits both alike."""
    for fn in fns.values():
        fn()
    best = {k: float("inf") for k in fns}
    order = list(fns.items())
    for r in range(repeats):
        for k, fn in (order if r % 2 == 0 else order[::-1]):  # ABBA: no side always runs first
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def timed_rows(fns: tuple[Callable[[bool], Result], ...], quick: bool,
               only: set[str] | None = None) -> list[Result]:
    """Run row functions (named after their ids, e.g. ``f6b``), skipping ids not in ``only``; each row's
    note ends with its wall time. A row that raises becomes a failed row naming the error, so one crash does
    not cost the rows measured before it."""
    rows = []
    for fn in fns:
        if only and fn.__name__.upper() not in only:
            continue
        t0 = time.perf_counter()
        try:
            row = fn(quick)
        except Exception as e:  # noqa: BLE001 — reported as the row's result
            traceback.print_exc(file=sys.stderr)
            row = Result(fn.__name__.upper(), "(raised)", float("nan"), "", False, f"raised {type(e).__name__}: {e}")
        row.note += f" [{time.perf_counter() - t0:.0f}s]"
        rows.append(row)
    return rows
