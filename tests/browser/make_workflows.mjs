// Builds the example workflows with the real frontend (nodes created and linked as a user would) and
// writes each as UI-format JSON plus a same-name thumbnail (a screenshot of the loaded graph).
// Run through scripts/make_example_workflows.py, which starts the server this needs.
//   node make_workflows.mjs <server url> <example_workflows dir> [name...]   (no names: all of them)
import fs from "node:fs";
import path from "node:path";
import { FAMILY_WORKFLOWS } from "./family_workflows.mjs";
import { buildStaged } from "./layout.mjs";
import { launch, loadWorkflow, openApp } from "./lib.mjs";
import { SDXL_METHOD_WORKFLOWS } from "./sdxl_method_workflows.mjs";

const VIEW = { x: 70, y: 90, width: 1520, height: 900 }; // the thumbnail: the canvas below the bars
const CKPT = "v1-5-pruned-emaonly.safetensors";
const CLIP_VISION = "clip_vision_vit_l14.safetensors";
const BANK = "sliderspace_bank_00001.safetensors";
const NEG = "blurry, low quality";
const DOG = "a photo of a dog";

const ckpt = (x = 20, y = 200) => ({ id: "ckpt", type: "CheckpointLoaderSimple", pos: [x, y], w: { ckpt_name: CKPT } });
const cv = (x, y) => ({ id: "cv", type: "CLIPVisionLoader", pos: [x, y], w: { clip_name: CLIP_VISION } });
const bank = (x, y) => ({ id: "bank", type: "SliderSpaceLoadSliderBank", pos: [x, y], w: { file: BANK } });
const text = (id, x, y, t) => ({ id, type: "CLIPTextEncode", pos: [x, y], w: { text: t }, title: id === "neg" ? "Negative" : "Positive" });

// Each node: id, type, pos, w (widget values by name); links: [from id, output slot, to id, input name].
const WORKFLOWS = {
  sliderspace_discover: {
    nodes: [ckpt(20, 120), cv(20, 420),
      text("pos", 380, 560, "a photo of a dog"),
      { id: "traj", type: "SliderSpaceTrajectorySampler", pos: [380, 40], w: { prompts: "a photo of a dog",
        trajectories: 64, steps: 20, batch_size: 4, keep_steps: "every k-th step", keep_every: 5,
        control_after_generate: "fixed" } },
      { id: "embed", type: "SliderSpaceClipEmbed", pos: [800, 40], w: { batch_size: 16 } },
      { id: "pca", type: "SliderSpacePCADecompose", pos: [800, 260],
        w: { n_components: 16, control_after_generate: "fixed" } },
      { id: "scree", type: "PreviewImage", pos: [1140, 40] },
      { id: "train", type: "SliderSpaceTrainSliders", pos: [1140, 360],
        w: { n_sliders: 8, iterations: 500, control_after_generate: "fixed" } },
      { id: "loss", type: "PreviewImage", pos: [1500, 40] },
      { id: "save", type: "SliderSpaceSaveSliderBank", pos: [1500, 420], w: { filename_prefix: "sliderspace_bank" } }],
    links: [["ckpt", 0, "traj", "model"], ["ckpt", 1, "traj", "clip"], ["ckpt", 1, "pos", "clip"],
      ["traj", 0, "embed", "trajectories"], ["ckpt", 2, "embed", "vae"], ["cv", 0, "embed", "clip_vision"],
      ["embed", 0, "pca", "embeddings"], ["pca", 1, "scree", "images"],
      ["ckpt", 0, "train", "model"], ["ckpt", 2, "train", "vae"], ["cv", 0, "train", "clip_vision"],
      ["pos", 0, "train", "positive"], ["pca", 0, "train", "basis"], ["traj", 0, "train", "trajectories"],
      ["train", 1, "loss", "images"], ["train", 0, "save", "bank"]],
  },
  sliderspace_apply: {
    nodes: [ckpt(20, 80), bank(20, 300),
      { id: "apply", type: "SliderSpaceApplySliderBank", pos: [380, 40], w: { scales: "0:1.5", start_percent: 0.2 } },
      text("pos", 380, 400, "a photo of a dog"), text("neg", 380, 660, NEG),
      { id: "latent", type: "EmptyLatentImage", pos: [380, 920], w: { width: 512, height: 512, batch_size: 1 } },
      { id: "ks", type: "KSampler", pos: [800, 40], w: { seed: 0, control_after_generate: "fixed", steps: 20 } },
      { id: "dec", type: "VAEDecode", pos: [1140, 40] },
      { id: "out", type: "SaveImage", pos: [1140, 160], w: { filename_prefix: "sliderspace_apply" } }],
    links: [["ckpt", 0, "apply", "model"], ["bank", 0, "apply", "bank"], ["ckpt", 1, "pos", "clip"],
      ["ckpt", 1, "neg", "clip"], ["apply", 0, "ks", "model"], ["pos", 0, "ks", "positive"],
      ["neg", 0, "ks", "negative"], ["latent", 0, "ks", "latent_image"], ["ks", 0, "dec", "samples"],
      ["ckpt", 2, "dec", "vae"], ["dec", 0, "out", "images"]],
  },
  sliderspace_sparse_diversity: {
    nodes: [ckpt(20, 100), bank(20, 320), cv(20, 460),
      text("pos", 380, 400, "a photo of a dog"), text("neg", 380, 660, NEG),
      { id: "latent", type: "EmptyLatentImage", pos: [380, 920], w: { width: 512, height: 512, batch_size: 4 } },
      { id: "sparse", type: "SliderSpaceRandomSparseSliders", pos: [380, 40],
        w: { seed: 0, control_after_generate: "fixed", k: 3, batch_size: 4 } },
      { id: "ks_sparse", type: "KSampler", pos: [800, 40], w: { seed: 0, control_after_generate: "fixed" },
        title: "KSampler (random sparse sliders)" },
      { id: "ks_plain", type: "KSampler", pos: [800, 600], w: { seed: 0, control_after_generate: "fixed" },
        title: "KSampler (plain seeds)" },
      { id: "dec_sparse", type: "VAEDecode", pos: [1140, 40] }, { id: "dec_plain", type: "VAEDecode", pos: [1140, 600] },
      { id: "save_sparse", type: "SaveImage", pos: [1400, 40], w: { filename_prefix: "sliderspace_sparse" } },
      { id: "save_plain", type: "SaveImage", pos: [1400, 600], w: { filename_prefix: "sliderspace_plain" } },
      { id: "div_sparse", type: "SliderSpaceDiversityScore", pos: [1140, 180], title: "Diversity (sparse sliders)" },
      { id: "div_plain", type: "SliderSpaceDiversityScore", pos: [1140, 740], title: "Diversity (plain seeds)" }],
    links: [["ckpt", 0, "sparse", "model"], ["bank", 0, "sparse", "bank"], ["ckpt", 1, "pos", "clip"],
      ["ckpt", 1, "neg", "clip"],
      ["sparse", 0, "ks_sparse", "model"], ["pos", 0, "ks_sparse", "positive"], ["neg", 0, "ks_sparse", "negative"],
      ["latent", 0, "ks_sparse", "latent_image"], ["ks_sparse", 0, "dec_sparse", "samples"],
      ["ckpt", 2, "dec_sparse", "vae"], ["dec_sparse", 0, "save_sparse", "images"],
      ["dec_sparse", 0, "div_sparse", "images"], ["cv", 0, "div_sparse", "clip_vision"],
      ["ckpt", 0, "ks_plain", "model"], ["pos", 0, "ks_plain", "positive"], ["neg", 0, "ks_plain", "negative"],
      ["latent", 0, "ks_plain", "latent_image"], ["ks_plain", 0, "dec_plain", "samples"],
      ["ckpt", 2, "dec_plain", "vae"], ["dec_plain", 0, "save_plain", "images"],
      ["dec_plain", 0, "div_plain", "images"], ["cv", 0, "div_plain", "clip_vision"]],
  },
  sliderspace_grid: {
    nodes: [ckpt(20, 80), bank(20, 300),
      text("pos", 380, 40, "a photo of a dog"), text("neg", 380, 300, NEG),
      { id: "grid", type: "SliderSpaceSliderGrid", pos: [800, 40],
        w: { sliders: "0-3", scales: "-2, -1, 0, 1, 2", seed: 0, control_after_generate: "fixed" } },
      { id: "out", type: "SaveImage", pos: [1180, 40], w: { filename_prefix: "sliderspace_grid" } }],
    links: [["ckpt", 0, "grid", "model"], ["ckpt", 2, "grid", "vae"], ["bank", 0, "grid", "bank"],
      ["ckpt", 1, "pos", "clip"], ["ckpt", 1, "neg", "clip"], ["pos", 0, "grid", "positive"],
      ["neg", 0, "grid", "negative"], ["grid", 0, "out", "images"]],
  },
  elrond_directions: {
    // The prompt is typed once: one String node feeds Collect, Apply (which encodes it itself) and the plain path.
    nodes: [ckpt(20, 80), { id: "prompt", type: "PrimitiveStringMultiline", pos: [20, 320], w: { value: DOG },
      title: "Prompt (typed once)" }, text("pos", 20, 1100, ""), text("neg", 20, 580, NEG),
      { id: "latent", type: "EmptyLatentImage", pos: [20, 840], w: { width: 512, height: 512, batch_size: 1 } },
      { id: "collect", type: "ELRONDCollectGradients", pos: [460, 40], w: { word: "dog", negative: NEG,
        images: 64, pairs: 2000, seed: 0, control_after_generate: "fixed", steps: 20, batch_size: 4 } },
      { id: "decompose", type: "ELRONDDecompose", pos: [880, 40], w: { method: "PCA (LID rule)", c: 2.5, seed: 0,
        control_after_generate: "fixed" } },
      { id: "complexity", type: "ELRONDConceptComplexity", pos: [880, 400],
        w: { c: 2.5, seed: 0, control_after_generate: "fixed" } },
      { id: "save_dirs", type: "ELRONDSaveDirections", pos: [880, 640], w: { filename_prefix: "elrond_dog" } },
      { id: "spectrum", type: "PreviewImage", pos: [1240, 40], title: "Spectrum (kept directions)" },
      { id: "stability", type: "PreviewImage", pos: [1240, 400], title: "LID vs number of gradients" },
      { id: "apply", type: "ELRONDApplyDirections", pos: [460, 780], w: { word: "dog", strengths: "0:30" } },
      { id: "ks", type: "KSampler", pos: [1600, 40], w: { seed: 0, control_after_generate: "fixed", steps: 20 },
        title: "KSampler (ELROND direction 0)" },
      { id: "ks_plain", type: "KSampler", pos: [1600, 560], w: { seed: 0, control_after_generate: "fixed", steps: 20 },
        title: "KSampler (plain prompt)" },
      { id: "dec", type: "VAEDecode", pos: [1960, 40] }, { id: "dec_plain", type: "VAEDecode", pos: [1960, 560] },
      { id: "out", type: "SaveImage", pos: [2200, 40], w: { filename_prefix: "elrond_directions" } },
      { id: "out_plain", type: "SaveImage", pos: [2200, 560], w: { filename_prefix: "elrond_plain" } }],
    links: [["ckpt", 1, "pos", "clip"], ["ckpt", 1, "neg", "clip"],
      ["prompt", 0, "collect", "prompt"], ["prompt", 0, "apply", "prompt"], ["prompt", 0, "pos", "text"],
      ["ckpt", 0, "collect", "model"], ["ckpt", 1, "collect", "clip"],
      ["collect", 0, "decompose", "gradients"], ["collect", 0, "complexity", "gradients"],
      ["decompose", 0, "save_dirs", "directions"], ["decompose", 1, "spectrum", "images"],
      ["complexity", 2, "stability", "images"],
      ["ckpt", 1, "apply", "clip"], ["decompose", 0, "apply", "directions"],
      ["ckpt", 0, "ks", "model"], ["apply", 0, "ks", "positive"], ["neg", 0, "ks", "negative"],
      ["latent", 0, "ks", "latent_image"], ["ks", 0, "dec", "samples"], ["ckpt", 2, "dec", "vae"],
      ["dec", 0, "out", "images"],
      ["ckpt", 0, "ks_plain", "model"], ["pos", 0, "ks_plain", "positive"], ["neg", 0, "ks_plain", "negative"],
      ["latent", 0, "ks_plain", "latent_image"], ["ks_plain", 0, "dec_plain", "samples"],
      ["ckpt", 2, "dec_plain", "vae"], ["dec_plain", 0, "out_plain", "images"]],
  },
  // Runs as shipped on CI (no SHRINK): ToyWorld is tiny. tests/e2e checks that one of the top sliders' rows
  // changes one factor of the world monotonically (read from the pixels); the grid shows every trained slider.
  toyworld_sliders: {
    nodes: [{ id: "tw", type: "SliderSpaceLoadToyWorld", pos: [20, 120] },
      text("pos", 20, 420, "a circle"), text("neg", 20, 700, ""),
      { id: "traj", type: "SliderSpaceTrajectorySampler", pos: [440, 40], w: { prompts: "a circle",
        trajectories: 32, seed: 0, control_after_generate: "fixed", steps: 16, cfg: 2.0, scheduler: "karras",
        width: 32, height: 32, batch_size: 32, keep_steps: "every step" } },
      { id: "embed", type: "SliderSpaceClipEmbed", pos: [800, 40], w: { batch_size: 64 } },
      { id: "pca", type: "SliderSpacePCADecompose", pos: [800, 260],
        w: { n_components: 8, control_after_generate: "fixed" } },
      { id: "scree", type: "PreviewImage", pos: [1140, 40] },
      { id: "train", type: "SliderSpaceTrainSliders", pos: [1140, 360],
        w: { n_sliders: 4, iterations: 400, learning_rate: 0.02, sliders_per_step: 2, bidirectional: true,
          control_after_generate: "fixed" } },
      { id: "loss", type: "PreviewImage", pos: [1500, 40] },
      { id: "grid", type: "SliderSpaceSliderGrid", pos: [1500, 360], w: { sliders: "0-3", scales: "-2, -1, 0, 1, 2",
        seed: 0, control_after_generate: "fixed", steps: 16, cfg: 2.0, scheduler: "karras", width: 32, height: 32,
        start_percent: 0.0 } },
      { id: "out", type: "SaveImage", pos: [1880, 40], w: { filename_prefix: "toyworld_grid" } },
      { id: "cells", type: "SaveImage", pos: [1880, 420], w: { filename_prefix: "toyworld_cells" },
        title: "Grid cells (row-major)" }],
    links: [["tw", 1, "pos", "clip"], ["tw", 1, "neg", "clip"],
      ["tw", 0, "traj", "model"], ["tw", 1, "traj", "clip"],
      ["traj", 0, "embed", "trajectories"], ["tw", 2, "embed", "vae"], ["tw", 3, "embed", "encoder"],
      ["embed", 0, "pca", "embeddings"], ["pca", 1, "scree", "images"],
      ["tw", 0, "train", "model"], ["tw", 2, "train", "vae"], ["tw", 3, "train", "encoder"],
      ["pos", 0, "train", "positive"], ["pca", 0, "train", "basis"], ["traj", 0, "train", "trajectories"],
      ["train", 1, "loss", "images"],
      ["tw", 0, "grid", "model"], ["tw", 2, "grid", "vae"], ["train", 0, "grid", "bank"],
      ["pos", 0, "grid", "positive"], ["neg", 0, "grid", "negative"],
      ["grid", 0, "out", "images"], ["grid", 1, "cells", "images"]],
  },
  sae_concepts: {
    nodes: [ckpt(20, 80), text("pos", 20, 320, DOG), text("neg", 20, 580, NEG),
      { id: "latent", type: "EmptyLatentImage", pos: [20, 840], w: { width: 512, height: 512, batch_size: 1 } },
      { id: "collect", type: "SliderSpaceSAECollectActivations", pos: [460, 40], w: { block: "middle_block.1",
        capture: "cond", samples: 32, seed: 0, control_after_generate: "fixed", steps: 20, spatial_subsample: 64,
        name: "dog_middle" } },
      { id: "train", type: "SliderSpaceSAETrain", pos: [880, 40], w: { width: 0, k: 10, epochs: 1, seed: 0,
        control_after_generate: "fixed" } },
      { id: "plot", type: "PreviewImage", pos: [1240, 40], title: "SAE loss and dead latents" },
      { id: "save_sae", type: "SliderSpaceSaveSAE", pos: [880, 420], w: { filename_prefix: "sae_dog_middle" } },
      { id: "map", type: "SliderSpaceSAEConceptMap", pos: [460, 640], w: { seed: 1, control_after_generate: "fixed",
        steps: 20, top: 8 } },
      { id: "maps", type: "PreviewImage", pos: [880, 640], title: "Concept maps (feature ids in the titles)" },
      { id: "steer", type: "SliderSpaceSAESteer", pos: [1240, 420], w: { features: "0:8", mode: "global",
        start_percent: 0.0, end_percent: 0.4 }, title: "SAE Steer (feature ids from the concept map)" },
      { id: "ks", type: "KSampler", pos: [1760, 40], w: { seed: 0, control_after_generate: "fixed", steps: 20 },
        title: "KSampler (SAE steered)" },
      { id: "ks_plain", type: "KSampler", pos: [1760, 560], w: { seed: 0, control_after_generate: "fixed", steps: 20 },
        title: "KSampler (plain model)" },
      { id: "dec", type: "VAEDecode", pos: [2120, 40] }, { id: "dec_plain", type: "VAEDecode", pos: [2120, 560] },
      { id: "out", type: "SaveImage", pos: [2360, 40], w: { filename_prefix: "sae_steered" } },
      { id: "out_plain", type: "SaveImage", pos: [2360, 560], w: { filename_prefix: "sae_plain" } }],
    links: [["ckpt", 1, "pos", "clip"], ["ckpt", 1, "neg", "clip"],
      ["ckpt", 0, "collect", "model"], ["pos", 0, "collect", "positive"], ["neg", 0, "collect", "negative"],
      ["collect", 0, "train", "activations"], ["train", 1, "plot", "images"], ["train", 0, "save_sae", "sae"],
      ["ckpt", 0, "map", "model"], ["train", 0, "map", "sae"], ["pos", 0, "map", "positive"],
      ["neg", 0, "map", "negative"], ["ckpt", 2, "map", "vae"], ["map", 0, "maps", "images"],
      ["ckpt", 0, "steer", "model"], ["train", 0, "steer", "sae"],
      ["steer", 0, "ks", "model"], ["pos", 0, "ks", "positive"], ["neg", 0, "ks", "negative"],
      ["latent", 0, "ks", "latent_image"], ["ks", 0, "dec", "samples"], ["ckpt", 2, "dec", "vae"],
      ["dec", 0, "out", "images"],
      ["ckpt", 0, "ks_plain", "model"], ["pos", 0, "ks_plain", "positive"], ["neg", 0, "ks_plain", "negative"],
      ["latent", 0, "ks_plain", "latent_image"], ["ks_plain", 0, "dec_plain", "samples"],
      ["ckpt", 2, "dec_plain", "vae"], ["dec_plain", 0, "out_plain", "images"]],
  },
};

async function build(page, spec) {
  return page.evaluate((spec) => {
    const { app, LiteGraph } = window;
    app.graph.clear();
    const made = {};
    for (const n of spec.nodes) {
      const node = LiteGraph.createNode(n.type);
      if (!node) throw new Error(`unknown node type ${n.type}`);
      node.pos = n.pos;
      if (n.title) node.title = n.title;
      app.graph.add(node);
      for (const [name, value] of Object.entries(n.w || {})) {
        const w = node.widgets?.find((x) => x.name === name);
        if (!w) throw new Error(`${n.type} has no widget ${name}`);
        w.value = value;
      }
      made[n.id] = node;
    }
    for (const [from, slot, to, input] of spec.links) {
      const dst = made[to];
      const idx = dst.findInputSlot(input);
      if (idx < 0) throw new Error(`${dst.type} has no input ${input}`);
      if (!made[from].connect(slot, dst, idx)) throw new Error(`cannot link ${from}:${slot} -> ${to}.${input}`);
    }
    return app.graph.serialize();
  }, spec);
}

/** Scale and centre the canvas so that every node is visible. */
export async function fitView(page) {
  await page.evaluate((VIEW) => {
    const { app } = window;
    const c = app.canvas;
    let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const n of app.graph.nodes) {
      x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - 30);
      x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
    }
    for (const g of app.graph.groups ?? []) { // staged templates: the groups' title bars too
      x0 = Math.min(x0, g.pos[0]); y0 = Math.min(y0, g.pos[1]);
      x1 = Math.max(x1, g.pos[0] + g.size[0]); y1 = Math.max(y1, g.pos[1] + g.size[1]);
    }
    const [L, T] = [VIEW.x, VIEW.y]; // leave the side bar and the top bar out
    const [W, H] = [VIEW.width, VIEW.height];
    const scale = Math.min(W / (x1 - x0 + 40), H / (y1 - y0 + 40), 1.2);
    c.ds.scale = scale;
    c.ds.offset = [L / scale - x0 + (W / scale - (x1 - x0)) / 2, T / scale - y0 + (H / scale - (y1 - y0)) / 2];
    c.show_info = false; // no FPS / node-count overlay in the thumbnail
    c.setDirty(true, true);
  }, VIEW);
}

Object.assign(WORKFLOWS, FAMILY_WORKFLOWS, SDXL_METHOD_WORKFLOWS); // staged templates: { stages, links }

const [url, outDir, ...only] = process.argv.slice(2);
const unknown = only.filter((n) => !(n in WORKFLOWS));
if (unknown.length) throw new Error(`no workflow named ${unknown.join(", ")}; known: ${Object.keys(WORKFLOWS).join(", ")}`);
const browser = await launch();
try {
  const { page } = await openApp(browser, url, { width: 1600, height: 1000 });
  for (const [name, spec] of Object.entries(WORKFLOWS).filter(([n]) => !only.length || only.includes(n))) {
    const wf = spec.stages ? await buildStaged(page, spec) : await build(page, spec);
    fs.writeFileSync(path.join(outDir, `${name}.json`), JSON.stringify(wf, null, 2) + "\n");
    await loadWorkflow(page, wf); // thumbnail: the workflow as it opens, fitted to the view
    await fitView(page);
    await page.waitForTimeout(800);
    // GRAPH_DIR: the graph screenshot goes there, for scripts/make_thumbnails.py to put beside a result
    const shotDir = process.env.GRAPH_DIR || outDir;
    await page.screenshot({ path: path.join(shotDir, `${name}.jpg`), type: "jpeg", quality: 80, clip: VIEW });
    console.log(`wrote ${name}.json and ${name}.jpg`);
  }
} finally {
  await browser.close();
}
