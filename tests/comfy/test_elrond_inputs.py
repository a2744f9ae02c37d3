"""ELROND nodes and what users type (issue 25): whole words, the prompt typed once, the word-transfer note,
Decompose's errors naming its own inputs. Every node runs through ComfyUI's executor."""

from __future__ import annotations

import pytest
import torch

from .elrond_nodes import PROMPT, SAE_LR, failure, input_of
from .executor import run_node
from .host import pack_module

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors on 2 shared cores


@pytest.fixture(scope="module")
def mods(comfy):
    names = {"cg": "nodes.glue.conditioning", "smp": "nodes.glue.sampling", "err": "sliderspace_core.common.errors",
             "dec": "nodes.elrond.decompose", "dr": "sliderspace_core.elrond.directions"}
    return type("M", (), {k: pack_module(v) for k, v in names.items()})


def test_a_word_matches_whole_words_only(tiny, mods):
    """Issue 25.1: 'horse' is not the second piece of 'seahorse' (CLIP and FLUX's T5 tokenizers)."""
    from types import SimpleNamespace

    from comfy.text_encoders.flux import FluxTokenizer

    t5 = FluxTokenizer()
    flux_clip = SimpleNamespace(cond_stage_model=SimpleNamespace(conditioning_row_key="t5xxl"), tokenizer=t5,
                                tokenize=t5.tokenize_with_weights)
    for clip in (tiny.clip, flux_clip):
        for prompt, word in (("a seahorse on the beach", "horse"), ("a firedog by the fire", "dog"),
                             ("an axolotl in a pond", "lotl"), ("two dogs", "dog")):
            with pytest.raises(mods.err.InputError) as e:
                mods.cg.token_rows(clip, prompt, word)
            assert e.value.input_name == "word" and "whole word" in e.value.problem, (prompt, word)
        one, two = mods.cg.token_rows(clip, "a dog, firedog", "dog"), mods.cg.token_rows(clip, "a dog", "dog")
        assert len(one) == 1 and one == two  # only the whole word, before the comma
        assert mods.cg.token_rows(clip, "an axolotl in a pond", "axolotl")  # several pieces, one word
    assert mods.cg.token_rows(tiny.clip, "a sea-horse", "horse") == [4]  # a hyphen separates words
    cond = mods.smp.encode_text(tiny.clip, "a seahorse on the beach")
    dirs = mods.dr.Directions(torch.eye(2, 768), torch.ones(2), torch.ones(2), torch.zeros(768), 9,
                              "conditioning:SD1ClipModel:768")
    err = failure("ELRONDApplyDirections", conditioning=cond, clip=tiny.clip, prompt="a seahorse on the beach",
                  word="horse", directions=dirs, strengths="0:30", multiplier=1.0)
    assert input_of(err) == "word" and "whole word" in err.message


def _dirs(word: str = "dog", k: int = 2):
    dr = pack_module("sliderspace_core.elrond.directions")
    return dr.Directions(torch.eye(k, 768), torch.ones(k), torch.ones(k), torch.zeros(768), 9,
                         "conditioning:SD1ClipModel:768", "exact", {"word": word, "prompt": PROMPT})


def test_prompt_typed_once_apply_encodes_it_or_checks_the_conditioning(tiny, mods):
    """Issue 25.2: Apply makes the conditioning from prompt + clip when none is connected; a connected one must
    be what clip makes of prompt (an edited or combined one that matches still works), else a clear refusal."""
    dirs = _dirs()
    args = dict(clip=tiny.clip, word="dog", directions=dirs, strengths="0:30", multiplier=1.0)
    own = run_node("ELRONDApplyDirections", prompt=PROMPT, **args)[0]
    given = run_node("ELRONDApplyDirections", conditioning=mods.smp.encode_text(tiny.clip, PROMPT), prompt=PROMPT,
                     **args)[0]
    assert torch.equal(own[0][0], given[0][0])
    # an edited (chained) and a combined conditioning of the same prompt still work
    edited = run_node("ELRONDApplyDirections", conditioning=own, prompt=PROMPT, **{**args, "word": "grass"})[0]
    assert torch.equal(edited[0][0][0, 5], own[0][0][0, 5]) and not torch.equal(edited[0][0], own[0][0])
    pos = mods.smp.encode_text(tiny.clip, PROMPT)
    combined = run_node("ConditioningCombine", conditioning_1=pos, conditioning_2=pos)[0]
    both = run_node("ELRONDApplyDirections", conditioning=combined, prompt=PROMPT, **args)[0]
    assert len(both) == 2 and all(torch.equal(e[0], own[0][0]) for e in both)
    # another prompt's conditioning (same row count) is refused, naming both inputs
    other = mods.smp.encode_text(tiny.clip, "an axolotl in a pond")
    err = failure("ELRONDApplyDirections", conditioning=other, prompt="a photo of an axolotl in a pond",
                  **{**args, "word": "axolotl"})
    assert input_of(err) == "conditioning" and "prompt" in err.message and "Fix:" in err.message
    # Collect checks a connected conditioning the same way, before any sampling
    err = failure("ELRONDCollectGradients", model=tiny.model, clip=tiny.clip, prompt="a photo of an axolotl in a pond",
                  word="axolotl", negative="", images=2, pairs=1, seed=0, steps=2, cfg=1.0, sampler_name="euler",
                  scheduler="normal", width=64, height=64, step=0, normalize=True, remove_common=False, batch_size=1,
                  gradient_checkpointing=False, conditioning=other)
    assert input_of(err) == "conditioning" and "prompt" in err.message


def test_apply_says_once_when_the_word_differs_from_the_directions_word(tiny, mods, caplog):
    """Issue 25.3: 'dog' directions on the word 'grass' may be an intended transfer: said in info and the log,
    once; nothing is said when the words agree."""
    import logging

    args = dict(clip=tiny.clip, prompt=PROMPT, directions=_dirs("dog"), strengths="0:30", multiplier=1.0)
    with caplog.at_level(logging.INFO):
        _, info = run_node("ELRONDApplyDirections", outputs=2, word="grass", **args)
    notes = [r for r in caplog.records if "collected for 'dog'" in r.getMessage()]
    assert "collected for 'dog'" in info and "'grass'" in info and "transfer" in info
    assert len(notes) == 1 and "'grass'" in notes[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        _, info = run_node("ELRONDApplyDirections", outputs=2, word="dog", **args)
    assert "transfer" not in info and not [r for r in caplog.records if "collected for" in r.getMessage()]


def _gradient_set(x: torch.Tensor):
    gr = pack_module("sliderspace_core.elrond.gradients")
    n = int(x.shape[0])
    return gr.GradientSet(x, torch.ones(n, dtype=torch.float64), torch.zeros(n, 2, dtype=torch.long), 14.6,
                          f"conditioning:test:{x.shape[1]}", "dog", "a dog", [2])


def test_every_decompose_error_names_its_own_input_and_a_fitting_fix(comfy, mods):
    """Issue 25.4: ELROND Decompose's errors name one of ITS inputs (not SliderSpace's 'embeddings') and a fix
    that fits ELROND (collect more gradients, not 'embed more samples')."""
    names = {i.id for i in mods.dec.Decompose.define_schema().inputs}
    g = torch.Generator().manual_seed(0)
    nan = torch.randn(20, 48, generator=g)
    nan[3, 4] = float("nan")
    cases = [
        (torch.randn(1, 48, generator=g), "PCA (top n)", {}, "gradients"),
        (torch.randn(1, 48, generator=g), "PCA (LID rule)", {}, "gradients"),
        (torch.randn(1, 48, generator=g), "TopK SAE", {}, "gradients"),
        (torch.randn(400, 48, generator=g), "PCA (LID rule)", {}, "method"),  # isotropic: no component stands out
        (torch.randn(30, 48, generator=g), "PCA (top n)", {"n": 40}, "n"),
        (nan, "PCA (top n)", {}, "gradients"),
        (torch.ones(10, 48), "PCA (top n)", {}, "gradients"),
        (torch.randn(30, 16, generator=g), "TopK SAE", {"sae_k": 20}, "sae_k"),
    ]
    for x, method, extra, want in cases:
        args = dict(gradients=_gradient_set(x), method=method, n=3, c=2.5, sae_k=4, sae_epochs=1, sae_lr=SAE_LR, seed=0)
        err = failure("ELRONDDecompose", **{**args, **extra})
        got = input_of(err)
        assert got in names and got == want, (method, tuple(x.shape), err.message)
        assert "ELROND Decompose" in err.message and "Fix:" in err.message
        assert "embed" not in err.message.lower() and "encoder" not in err.message.lower(), err.message
