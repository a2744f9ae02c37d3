"""Safetensors headers whose length happens to start with a pickle's or a zip's magic bytes still load."""

from __future__ import annotations

import struct

import pytest
import torch

from sliderspace_core.common.safefile import read_header, write_safetensors


@pytest.mark.parametrize(("first", "target"), [(b"\x80", 0x180), (b"PK", 0x4B50)])
def test_header_length_that_looks_like_a_pickle_or_zip(tmp_path, first, target):
    path = tmp_path / "x.safetensors"
    write_safetensors({"w": torch.ones(2)}, str(path), {"pad": ""})
    n0 = struct.unpack("<Q", path.read_bytes()[:8])[0]
    for pad in range(target - n0 - 8, target - n0 + 9):  # pad the metadata to a header of `target` bytes
        write_safetensors({"w": torch.ones(2)}, str(path), {"pad": "a" * pad}, overwrite=True)
        if path.read_bytes()[: len(first)] == first:
            break
    else:
        pytest.skip("no padding gave that header length")
    n = struct.unpack("<Q", path.read_bytes()[:8])[0]
    assert path.read_bytes()[8:9] == b"{" and n > 0
    header = read_header(str(path))
    assert header["__metadata__"]["pad"].startswith("a") and "w" in header
