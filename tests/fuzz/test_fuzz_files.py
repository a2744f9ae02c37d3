"""Fuzz every file format the pack reads (issue 16): seeded mutations → 0 uncaught exceptions, 0 code executed.

Each case copies a small valid file (or folder), applies one seeded mutation (truncation, bit flips, header
and metadata edits, NaN/Inf, wrong dtypes and shapes, huge declared sizes, pickle and zip payloads whose
unpickling would create a canary file) and hands it to the pack's reader. A case passes when the reader
returns a valid object or refuses with the pack's ``InputError`` (naming input, problem and fix); any other
exception, or the canary file appearing, fails. Default: COUNT cases per format; ``--long``: LONG_COUNT.
A JSON summary goes to artifacts/reliability/fuzz_<tier>.json (the README's Reliability table).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time

import pytest

from sliderspace_core.common.errors import InputError

from ..conftest import ROOT
from .formats import FORMATS, Format, canonical, mutate_file

COUNT = 40
LONG_COUNT = 1000
SEED = 16
OUT = ROOT / "artifacts" / "reliability"


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors on 2 shared cores


def fuzz(fmt: Format, count: int, workdir: str) -> dict:
    """Run ``count`` seeded cases of ``fmt``; returns the tally and every failure."""
    pristine = os.path.join(workdir, "pristine")
    os.makedirs(pristine)
    root, files = fmt.build(pristine)
    canonical(files)
    fmt.read(root)  # the unmutated file reads
    canary = os.path.join(workdir, "CANARY_code_ran")
    tally = {"cases": 0, "read": 0, "refused": 0, "uncaught": 0, "code_ran": 0, "code_payloads": 0}
    failures: list[str] = []
    start = time.perf_counter()
    for i in range(count):
        rng = random.Random(f"{SEED}:{fmt.name}:{i}")
        case = os.path.join(workdir, f"case{i}")
        shutil.copytree(pristine, case)
        rel = os.path.relpath(root, pristine)
        how = mutate_file(fmt, [os.path.join(case, os.path.relpath(f, pristine)) for f in files], rng, canary)
        tally["cases"] += 1
        tally["code_payloads"] += "pickle" in how  # a payload whose unpickling would create the canary
        try:
            fmt.read(os.path.join(case, rel))
            tally["read"] += 1
        except InputError as e:
            tally["refused"] += 1
            if not (e.input_name and e.problem and e.fix and "Fix:" in str(e)):
                failures.append(f"case {i} ({how}): unclear InputError {e}")
        except Exception as e:  # noqa: BLE001 - the point: anything but InputError is a failure
            tally["uncaught"] += 1
            failures.append(f"case {i} ({how}): {type(e).__name__}: {str(e)[:300]}")
        if os.path.exists(canary):
            tally["code_ran"] += 1
            failures.append(f"case {i} ({how}): the canary file appeared (a pickle ran code)")
            os.remove(canary)
        shutil.rmtree(case)
    tally["seconds"] = round(time.perf_counter() - start, 2)
    return {"tally": tally, "failures": failures}


def _record(name: str, long_run: bool, result: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"fuzz_{'long' if long_run else 'default'}.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[name] = result["tally"]
    path.write_text(json.dumps(data, indent=1, sort_keys=True))


@pytest.mark.parametrize("fmt", FORMATS, ids=[f.name for f in FORMATS])
def test_fuzzed_files_are_read_or_refused_clearly(fmt, tmp_path, long_run):
    count = LONG_COUNT if long_run else COUNT
    result = fuzz(fmt, count, str(tmp_path))
    _record(fmt.name, long_run, result)
    t = result["tally"]
    print(f"\nfuzz {fmt.name}: {t}")
    assert not result["failures"], f"{len(result['failures'])} failure(s):\n" + "\n".join(result["failures"][:40])
    assert t["cases"] == count and t["uncaught"] == 0 and t["code_ran"] == 0
    assert t["refused"] > count // 4, t  # the mutations do reach the readers' checks


@pytest.mark.parametrize("run", ["unet.up_blocks.0.attentions.1_k3_hidden16_auxk4_bs64_lr1.2.3",
                                 "unet.up_blocks.0.attentions.1_k3_hidden16_auxk4_bs0_lr0.0001",
                                 "unet.up_blocks.0.attentions.1_k3_hidden16_auxk4_bs64_lr-",
                                 "unet.up_blocks.0.attentions.1_k3_hidden16_auxk4_bs64_lr1e999",
                                 "unet.up_blocks.9.attentions.9_k99_hidden16_auxk4_bs64_lr0.0001",
                                 "unet.down_blocks.x_k3_hidden16_auxk4_bs64_lr0.0001", "final"])
def test_unbox_run_folder_names_are_read_or_refused_clearly(tmp_path, run):
    """The sdxl-unbox settings also come from the folder NAME (lr, batch size, hookpoint)."""
    from .formats import build_unbox, load_unbox

    built, _ = build_unbox(str(tmp_path))
    renamed = os.path.join(str(tmp_path), "x", run)
    os.makedirs(os.path.dirname(renamed))
    os.rename(built, renamed)
    try:
        load_unbox(renamed)
    except InputError as e:
        assert "Fix:" in str(e)
