"""The pack's model folders (registered with ComfyUI once) and the files in them."""

from __future__ import annotations

import os
from collections.abc import Callable

import folder_paths

from ...sliderspace_core.common.errors import InputError
from ...sliderspace_core.common.safefile import SUFFIX, next_free_path, sanitize_name

BANK_FOLDER = "sliderspace"
"""models/sliderspace: slider banks."""
OPEN_CLIP_FOLDER = "sliderspace_encoders"
"""models/sliderspace_encoders: optional open_clip image encoders."""
SAE_FOLDER = "sae"
"""models/sae: SAE-concepts SAEs (.safetensors) and imported sdxl-unbox folders."""
ELROND_FOLDER = "elrond"
"""models/elrond: ELROND directions."""
NONE_FOUND = "(none found)"
"""Combo placeholder for an empty folder; execute then names the fix."""

for _name in (BANK_FOLDER, OPEN_CLIP_FOLDER, SAE_FOLDER, ELROND_FOLDER):
    if _name not in folder_paths.folder_names_and_paths:
        folder_paths.add_model_folder_path(_name, os.path.join(folder_paths.models_dir, _name))


def listed(kind: str, suffix: str | None = None) -> list[str]:
    """Files ComfyUI lists for folder ``kind`` (optionally only ``suffix``), or the placeholder."""
    files = [f for f in folder_paths.get_filename_list(kind) if suffix is None or f.lower().endswith(suffix)]
    return files or [NONE_FOUND]  # an empty combo fails validation with a generic message; ours names the fix


def bank_files() -> list[str]:
    """The ``.safetensors`` files in the ``models/sliderspace`` folder(s)."""
    return listed(BANK_FOLDER, SUFFIX)


def full_path(kind: str, file: str, fix: str, input_name: str = "file") -> str:
    """The path of ``file`` in folder ``kind``, or an :class:`InputError` naming ``input_name`` and ``fix``."""
    path = folder_paths.get_full_path(kind, file) if file and file != NONE_FOUND else None
    if not path:
        raise InputError(input_name, f"{file!r} is not in models/{kind}.", fix)
    return path


def save_folder(kind: str) -> str:
    """The first folder ComfyUI lists for ``kind`` (``sliderspace`` or ``loras``), created if missing."""
    folder = folder_paths.get_folder_paths(kind)[0]
    os.makedirs(folder, exist_ok=True)
    return folder


def save_new(kind: str, name: str, write: Callable[[str], None], input_name: str = "filename_prefix") -> str:
    """``write(path)`` a NEW file in folder ``kind`` named from ``name`` (checked, ``_00001``-style counter,
    never overwriting); returns the file name."""
    path = next_free_path(save_folder(kind), sanitize_name(name, input_name))
    write(path)
    return os.path.basename(path)


def file_fingerprint(kind: str, file: str):
    """What ComfyUI's cache compares for a Load node's ``file``: the name plus the file's mtime and size,
    so replacing the file re-runs the node."""
    path = folder_paths.get_full_path(kind, file) if file and file != NONE_FOUND else None
    if not path or not os.path.isfile(path):
        return file
    return file, os.path.getmtime(path), os.path.getsize(path)
