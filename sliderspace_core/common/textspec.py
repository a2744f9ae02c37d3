"""The one parser for the short lists users type into widgets: ``index:value`` entries, index lists and
number lists ("0:1.5, 3:-2", "0-3, 7", "-2, -1, 0, 1, 2"). Every list the pack reads goes through here,
so separators, index ranges, duplicates and error wording are the same everywhere.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TypeVar

from .errors import InputError

V = TypeVar("V")

ENTRY_SEPARATORS = re.compile(r"[,;\n]")
"""Between entries: a comma, a semicolon or a new line."""
_INDEXED = re.compile(r"^\s*(-?\d+)\s*[:=]\s*(.*?)\s*$", re.S)
_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")
_NUMBER_SEPARATORS = re.compile(r"[,;\s]+")


def check_index(i: int, n: int, input_name: str, fix: str, noun: str = "slider", owner: str = "the bank") -> int:
    """``i`` if it is a valid index into ``n`` items, else an :class:`InputError` naming ``input_name``.

    ``noun`` / ``owner`` word the message: "feature index 9 is out of range: the SAE has 8 feature(s)".
    """
    if not 0 <= i < n:
        raise InputError(input_name, f"{noun} index {i} is out of range: {owner} has {n} {noun}(s).", fix)
    return i


def finite_number(text: str, input_name: str, what: str, fix: str) -> float:
    """``float(text)``, refusing text that is not a number or not finite; ``-0`` becomes ``0``.

    ``what`` prefixes the message (e.g. ``"entry '0:x'"``); empty for a bare list item.
    """
    where = f"{what}: " if what else ""
    try:
        v = float(text)
    except ValueError:
        raise InputError(input_name, f"{where}{text!r} is not a number.", fix) from None
    if not math.isfinite(v):
        raise InputError(input_name, f"{where}{text!r} is not finite; the scale must be finite.", fix)
    return v + 0.0


def parse_indexed(text: str, n: int, input_name: str, value: Callable[[str, str], V], fix: str,
                  split: re.Pattern[str] = ENTRY_SEPARATORS, what: str = "index:value",
                  single_token: bool = False, noun: str = "slider", owner: str = "the bank") -> dict[int, V]:
    """``"0:a, 3:b"`` → ``{0: value("a"), 3: value("b")}``; empty entries are skipped.

    ``value(raw, entry)`` converts one value (``entry`` is the whole entry, for messages). ``split``
    separates entries; ``single_token`` refuses values with inner spaces (``"0 1"`` is not ``0:1``).
    """
    out: dict[int, V] = {}
    for entry in split.split(text or ""):
        if not entry.strip():
            continue
        m = _INDEXED.match(entry)
        if m is None or (single_token and (not m[2] or re.search(r"\s", m[2]))):
            raise InputError(input_name, f"entry {entry.strip()!r} is not '{what}'.", fix)
        i = check_index(int(m[1]), n, input_name, fix, noun, owner)
        if i in out:
            raise InputError(input_name, f"{noun} {i} is given twice.", f"give each {noun} index once.")
        out[i] = value(m[2], entry.strip())
    return out


def is_indexed(entry: str) -> bool:
    """True when ``entry`` has the ``index:`` form."""
    return _INDEXED.match(entry) is not None


def parse_index_list(text: str, n: int, input_name: str, noun: str = "slider", owner: str = "the bank") -> list[int]:
    """``"0,1,2"``, ``"0-3, 7"`` or ``"all"`` → indices in the given order (each once)."""
    fix = f"write indices 0..{n - 1} separated by commas (ranges like '0-3' work), or 'all'."
    text = (text or "").strip()
    if text.lower() == "all":
        return list(range(n))
    out: list[int] = []
    for tok in ENTRY_SEPARATORS.split(text):
        tok = tok.strip()
        if not tok:
            continue
        m = _RANGE.match(tok)
        if m:
            lo, hi = int(m[1]), int(m[2])
            if lo > hi:
                raise InputError(input_name, f"range {tok!r} runs backwards.", "write ranges low-high, e.g. '0-3'.")
            idx = list(range(lo, hi + 1))
        elif tok.lstrip("-").isdigit():
            idx = [int(tok)]
        else:
            raise InputError(input_name, f"{tok!r} is not a {noun} index.", fix)
        for i in idx:
            check_index(i, n, input_name, fix, noun, owner)
            if i in out:
                raise InputError(input_name, f"{noun} {i} is listed twice.", f"list each {noun} once.")
            out.append(i)
    if not out:
        raise InputError(input_name, f"lists no {noun}.", fix)
    return out


def parse_number_list(text: str, input_name: str, fix: str) -> list[float]:
    """``"-2, -1, 0, 1, 2"`` → floats in the given order (commas, semicolons or spaces; each once)."""
    out: list[float] = []
    for tok in _NUMBER_SEPARATORS.split((text or "").strip()):
        if not tok:
            continue
        v = finite_number(tok, input_name, "", fix)
        if v in out:
            raise InputError(input_name, f"scale {v:g} is listed twice.", "list each scale once.")
        out.append(v)
    if not out:
        raise InputError(input_name, "lists no scale.", fix)
    return out
