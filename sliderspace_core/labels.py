"""Human labels for sliders: parse ``"0: smiling, 3: older"`` and return a relabelled COPY of a bank."""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Mapping

from .bank import SliderBank, check_bank
from .errors import InputError

_INDEXED = re.compile(r"^\s*(-?\d+)\s*[:=]\s*(.*?)\s*$", re.S)
_SPLIT = re.compile(r"\n|[,;]\s*(?=-?\d+\s*[:=])")
"""Entries are separated by new lines, or by a comma/semicolon that starts a new ``index:`` entry."""


def parse_labels(text: str, n_sliders: int) -> dict[int, str]:
    """Slider index → label.

    Two forms: ``"0: smiling, 3: older"`` (commas inside a label are fine unless followed by ``N:``), or
    one label per line in slider order, where an empty line leaves that slider's label unchanged.
    """
    fix = (f"write 'index: label' entries, e.g. '0: smiling, 3: older' (index 0..{n_sliders - 1}), or one "
           "label per line in slider order.")
    text = text or ""
    if not text.strip():
        raise InputError("labels", "is empty.", fix)
    entries = _SPLIT.split(text)
    indexed = [_INDEXED.match(e) for e in entries]
    if any(indexed):
        out: dict[int, str] = {}
        for entry, m in zip(entries, indexed, strict=True):
            if not entry.strip():
                continue
            if m is None:
                raise InputError("labels", f"entry {entry.strip()!r} has no 'index:' while others do.", fix)
            i = int(m[1])
            if not 0 <= i < n_sliders:
                raise InputError("labels", f"slider index {i} is out of range: the bank has {n_sliders} "
                                 "slider(s).", fix)
            if i in out:
                raise InputError("labels", f"slider {i} is labelled twice.", "label each slider once.")
            out[i] = m[2]
        return out
    lines = text.split("\n")
    while not lines[-1].strip():  # trailing blank lines carry no position
        lines.pop()
    if len(lines) > n_sliders:
        raise InputError("labels", f"has {len(lines)} lines but the bank has {n_sliders} slider(s).", fix)
    return {i: line.strip() for i, line in enumerate(lines) if line.strip()}


def with_labels(bank: SliderBank, labels: Mapping[int, str]) -> SliderBank:
    """A new bank with ``labels`` set; the input bank is untouched (tensors are shared, not copied)."""
    check_bank(bank, "bank")
    for i in labels:
        if not 0 <= int(i) < len(bank):
            raise InputError("labels", f"slider index {i} is out of range: the bank has {len(bank)} slider(s).",
                             f"use indices 0..{len(bank) - 1}.")
    sliders = [dataclasses.replace(s, down=dict(s.down), up=dict(s.up),
                                   label=str(labels.get(i, s.label)))
               for i, s in enumerate(bank.sliders)]
    return SliderBank(sliders, copy.deepcopy(bank.meta))
