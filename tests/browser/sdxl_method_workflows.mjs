// The SDXL templates of ELROND and SAE concepts, laid out by stages as in family_workflows.mjs.
import { DOG, NEG, SDXL, fixed, note, sdxl, sdxlLoad, text } from "./family_workflows.mjs";

const SAMPLING = { steps: 25, cfg: 6.0, scheduler: "normal", width: 1024, height: 1024 };
const ks = (id, title) => ({ id, type: "KSampler", w: { seed: 0, ...fixed, steps: 25, cfg: 6.0 }, title });
const latent = () => ({ id: "latent", type: "EmptyLatentImage", w: { width: 1024, height: 1024, batch_size: 1 } });
const sample = (edited) => ({ title: "5. Sample (edited, plain)", nodes: [latent(),
  ks("ks", `KSampler (${edited})`), ks("ks_plain", "KSampler (plain)")] });
const compare = (edited, plain) => ({ title: "6. Decode and save", nodes: [
  { id: "dec", type: "VAEDecode" }, { id: "out", type: "SaveImage", w: { filename_prefix: edited } },
  { id: "dec_plain", type: "VAEDecode" }, { id: "out_plain", type: "SaveImage", w: { filename_prefix: plain } }] });
const compareLinks = (editedModel, editedPositive) => [
  [...editedModel, "ks", "model"], [...editedPositive, "ks", "positive"], ["neg", 0, "ks", "negative"],
  [...sdxl.model, "ks_plain", "model"], ["pos", 0, "ks_plain", "positive"], ["neg", 0, "ks_plain", "negative"],
  ["latent", 0, "ks", "latent_image"], ["latent", 0, "ks_plain", "latent_image"],
  ["ks", 0, "dec", "samples"], [...sdxl.vae, "dec", "vae"], ["dec", 0, "out", "images"],
  ["ks_plain", 0, "dec_plain", "samples"], [...sdxl.vae, "dec_plain", "vae"], ["dec_plain", 0, "out_plain", "images"]];

export const SDXL_METHOD_WORKFLOWS = {
  elrond_directions_sdxl: {
    stages: [
      sdxlLoad([note(`ELROND on SDXL (1024 px).\n\nFiles: ${SDXL} in models/checkpoints.\n\nType the prompt in ` +
        "the Prompt node once (it feeds Collect Gradients, Apply Directions — which encodes it itself — and the " +
        "plain path), and the concept `word` (here 'dog', a whole word of the prompt) in Collect Gradients and " +
        "Apply Directions. Start with 64 images / 2000 pairs; the paper used up to 10 000 " +
        "images on SDXL-DMD2 (steps 4, cfg 1, scheduler sgm_uniform). Concept Complexity's LID is the number " +
        "of directions worth applying; try strengths 25–60 (paper), one direction at a time.")]),
      { title: "2. Prompt (typed once) and collect gradients", nodes: [{ id: "prompt",
        type: "PrimitiveStringMultiline", w: { value: DOG }, title: "Prompt" },
        { id: "collect", type: "ELRONDCollectGradients", w: {
        word: "dog", negative: NEG, images: 64, pairs: 2000, seed: 0, ...fixed, ...SAMPLING, batch_size: 4,
        gradient_checkpointing: true } }] },
      { title: "3. Directions and complexity", nodes: [
        { id: "decompose", type: "ELRONDDecompose", w: { method: "PCA (LID rule)", c: 2.5, seed: 0, ...fixed } },
        { id: "spectrum", type: "PreviewImage", title: "Spectrum (kept directions)" },
        { id: "complexity", type: "ELRONDConceptComplexity", w: { c: 2.5, seed: 0, ...fixed } },
        { id: "stability", type: "PreviewImage", title: "LID vs number of gradients" },
        { id: "save_dirs", type: "ELRONDSaveDirections", w: { filename_prefix: "elrond_sdxl_dog" } }] },
      { title: "4. Apply a direction", nodes: [text("pos", "", "Positive (plain path)"), text("neg", NEG, "Negative"),
        { id: "apply", type: "ELRONDApplyDirections", w: { word: "dog", strengths: "0:30" } }] },
      sample("ELROND direction 0"),
      compare("elrond_sdxl", "elrond_sdxl_plain"),
    ],
    links: [[...sdxl.clip, "pos", "clip"], [...sdxl.clip, "neg", "clip"],
      [...sdxl.model, "collect", "model"], [...sdxl.clip, "collect", "clip"],
      ["collect", 0, "decompose", "gradients"], ["collect", 0, "complexity", "gradients"],
      ["decompose", 0, "save_dirs", "directions"], ["decompose", 1, "spectrum", "images"],
      ["complexity", 2, "stability", "images"],
      ["prompt", 0, "collect", "prompt"], ["prompt", 0, "apply", "prompt"], ["prompt", 0, "pos", "text"],
      [...sdxl.clip, "apply", "clip"], ["decompose", 0, "apply", "directions"],
      ...compareLinks(sdxl.model, ["apply", 0])],
  },
  sae_concepts_sdxl: {
    stages: [
      sdxlLoad([note(`SAE concepts on SDXL (1024 px), at sdxl-unbox's composition block input_blocks.8.1.\n\n` +
        `Files: ${SDXL} in models/checkpoints.\n\nOther sdxl-unbox blocks: output_blocks.1.1 (style), ` +
        "middle_block.1, output_blocks.0.1 (SAE List Blocks prints them). 48 samples × 25 steps × 128 locations " +
        "= 153 600 rows (≈ 390 MB of shards in output/), 20 epochs ≈ 750 optimiser steps; more rows make " +
        "cleaner features. Pick feature ids from the concept maps and put them in SAE Steer's `features` " +
        "(id:strength); window 0–0.4 steers composition, 0.4–0.8 style. A published sdxl-unbox SAE " +
        "(SDXL-Turbo) can replace Collect + Train: Import sdxl-unbox SAE.")]),
      { title: "2. Prompt and collect activations", nodes: [text("pos", DOG, "Prompt"), text("neg", NEG, "Negative"),
        { id: "collect", type: "SliderSpaceSAECollectActivations", w: { block: "input_blocks.8.1", capture: "cond",
          samples: 48, seed: 0, ...fixed, ...SAMPLING, spatial_subsample: 128, name: "sdxl_dog_in8" } }] },
      { title: "3. Train the SAE", nodes: [
        { id: "train", type: "SliderSpaceSAETrain", w: { width: 0, k: 10, epochs: 20, seed: 0, ...fixed } },
        { id: "plot", type: "PreviewImage", title: "SAE loss and dead latents" },
        { id: "save_sae", type: "SliderSpaceSaveSAE", w: { filename_prefix: "sae_sdxl_dog_in8" } }] },
      { title: "4. Concept maps and steer", nodes: [
        { id: "map", type: "SliderSpaceSAEConceptMap", w: { seed: 1, ...fixed, ...SAMPLING, step: 0, top: 8 } },
        { id: "maps", type: "PreviewImage", title: "Concept maps (feature ids in the titles)" },
        { id: "steer", type: "SliderSpaceSAESteer", w: { features: "0:8", mode: "global", start_percent: 0.0,
          end_percent: 0.4 }, title: "SAE Steer (feature ids from the maps)" }] },
      sample("SAE steered"),
      compare("sae_sdxl_steered", "sae_sdxl_plain"),
    ],
    links: [[...sdxl.clip, "pos", "clip"], [...sdxl.clip, "neg", "clip"],
      [...sdxl.model, "collect", "model"], ["pos", 0, "collect", "positive"], ["neg", 0, "collect", "negative"],
      ["collect", 0, "train", "activations"], ["train", 1, "plot", "images"], ["train", 0, "save_sae", "sae"],
      [...sdxl.model, "map", "model"], ["train", 0, "map", "sae"], ["pos", 0, "map", "positive"],
      ["neg", 0, "map", "negative"], [...sdxl.vae, "map", "vae"], ["map", 0, "maps", "images"],
      [...sdxl.model, "steer", "model"], ["train", 0, "steer", "sae"],
      ...compareLinks(["steer", 0], ["pos", 0])],
  },
};
