"""A user's graph on the live server: conditioning-driven discovery, guided Train Sliders, two Apply Slider Bank
nodes in series (ToyWorld, a few seconds a run). Re-queueing is cached and bitwise; the text path and the
conditioning path give the same pixels; changing the training seed re-executes; a missing negative is refused."""

from __future__ import annotations

import copy
import hashlib

import numpy as np
import pytest
from PIL import Image


def graph(conditioning: bool = True) -> dict:
    sampling = {"sampler_name": "euler", "scheduler": "karras", "positive": ["pos", 0], "negative": ["neg", 0]}
    g = {
        "tw": {"class_type": "SliderSpaceLoadToyWorld", "inputs": {}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a circle", "clip": ["tw", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["tw", 1]}},
        "traj": {"class_type": "SliderSpaceTrajectorySampler", "inputs": {
            "model": ["tw", 0], "prompts": "a circle", "negative": "", "trajectories": 16, "seed": 0, "steps": 8,
            "cfg": 2.0, "sampler_name": "euler", "scheduler": "karras", "width": 32, "height": 32, "batch_size": 16,
            "keep_steps": "every step", "keep_every": 1, "store_dtype": "float16"}},
        "emb": {"class_type": "SliderSpaceClipEmbed", "inputs": {"batch_size": 64, "trajectories": ["traj", 0],
                                                                  "vae": ["tw", 2], "encoder": ["tw", 3]}},
        "pca": {"class_type": "SliderSpacePCADecompose", "inputs": {"embeddings": ["emb", 0], "n_components": 4,
                                                                     "method": "auto", "seed": 0}},
        "train": {"class_type": "SliderSpaceTrainSliders", "inputs": {
            "model": ["tw", 0], "vae": ["tw", 2], "encoder": ["tw", 3], "positive": ["pos", 0], "negative": ["neg", 0],
            "basis": ["pca", 0], "trajectories": ["traj", 0], "n_sliders": 2, "iterations": 30, "learning_rate": 0.02,
            "rank": 1, "targets": "auto", "target_pattern": "", "sliders_per_step": 2, "seed": 0,
            "bidirectional": False, "gradient_checkpointing": False, "cfg": 2.0}},
        "a1": {"class_type": "SliderSpaceApplySliderBank", "inputs": {"model": ["tw", 0], "bank": ["train", 0],
               "scales": "0:1.5", "multiplier": 1.0, "start_percent": 0.0, "end_percent": 1.0}},
        "a2": {"class_type": "SliderSpaceApplySliderBank", "inputs": {"model": ["a1", 0], "bank": ["train", 0],
               "scales": "1:1.5", "multiplier": 1.0, "start_percent": 0.0, "end_percent": 1.0}},
        "lat": {"class_type": "EmptyChromaRadianceLatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 4}},
        "ks": {"class_type": "KSampler", "inputs": {"model": ["a2", 0], "seed": 0, "steps": 8, "cfg": 2.0,
                                                    "latent_image": ["lat", 0], "denoise": 1.0, **sampling}},
        "dec": {"class_type": "VAEDecode", "inputs": {"samples": ["ks", 0], "vae": ["tw", 2]}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["dec", 0], "filename_prefix": "guided_graph"}},
    }
    if conditioning:
        g["traj"]["inputs"].update(conditioning=["pos", 0], negative_conditioning=["neg", 0])
    else:
        g["traj"]["inputs"]["clip"] = ["tw", 1]
    return g


def pixels(server, entry: dict) -> str:
    arrays = []
    for im in entry["outputs"]["save"]["images"]:
        with Image.open(server.base / "output" / im["subfolder"] / im["filename"]) as f:
            arrays.append(np.asarray(f.convert("RGB")))
    return hashlib.sha256(np.stack(arrays).tobytes()).hexdigest()


def test_guided_conditioning_graph_requeues_composes_and_refuses(comfy_server):
    first = pixels(comfy_server, comfy_server.run(graph(), timeout=900))
    assert pixels(comfy_server, comfy_server.run(graph(), timeout=900)) == first           # re-queued
    assert pixels(comfy_server, comfy_server.run(graph(conditioning=False), timeout=900)) == first  # text path
    other = graph()
    other["train"]["inputs"]["seed"] = 1
    assert pixels(comfy_server, comfy_server.run(other, timeout=900)) != first             # re-executes
    assert pixels(comfy_server, comfy_server.run(graph(), timeout=900)) == first           # nothing stacked
    unguided_with_negative = graph()
    unguided_with_negative["train"]["inputs"]["cfg"] = 1.0
    assert pixels(comfy_server, comfy_server.run(unguided_with_negative, timeout=900)) != first
    missing = copy.deepcopy(graph())
    del missing["train"]["inputs"]["negative"]
    with pytest.raises(AssertionError) as e:
        comfy_server.run(missing, timeout=900)
    text = str(e.value)
    assert "SliderSpace Train Sliders" in text and "'negative'" in text and "Fix:" in text, text
