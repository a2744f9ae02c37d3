"""Human labels for sliders: parse ``"0: smiling, 3: older"`` and return a relabelled COPY of a bank."""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Mapping

from ..common.errors import InputError
from ..common.textspec import check_index, is_indexed, parse_indexed
from .bank import SliderBank, check_bank

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
    if any(is_indexed(e) for e in _SPLIT.split(text)):
        return parse_indexed(text, n_sliders, "labels", lambda raw, entry: raw, fix, split=_SPLIT,
                             what="index: label")
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
        check_index(int(i), len(bank), "labels", f"use indices 0..{len(bank) - 1}.")
    sliders = [dataclasses.replace(s, down=dict(s.down), up=dict(s.up),
                                   label=str(labels.get(i, s.label)))
               for i, s in enumerate(bank.sliders)]
    return SliderBank(sliders, copy.deepcopy(bank.meta))
