// Builds the example workflows with the real frontend (nodes created and linked as a user would) and
// writes each as UI-format JSON plus a same-name thumbnail (a screenshot of the loaded graph).
// Run through scripts/make_example_workflows.py, which starts the server this needs.
//   node make_workflows.mjs <server url> <example_workflows dir> [name...]   (no names: all of them)
import fs from "node:fs";
import path from "node:path";
import { FAMILY_WORKFLOWS } from "./family_workflows.mjs";
import { buildStaged } from "./layout.mjs";
import { launch, loadWorkflow, openApp } from "./lib.mjs";
import { SD15_WORKFLOWS } from "./sd15_workflows.mjs";
import { note } from "./family_workflows.mjs";
import { SDXL_METHOD_WORKFLOWS } from "./sdxl_method_workflows.mjs";

const VIEW = { x: 70, y: 90, width: 1520, height: 900 }; // the thumbnail: the canvas below the bars
const text = (id, t) => ({ id, type: "CLIPTextEncode", w: { text: t }, title: id === "neg" ? "Negative" : "Positive" });

// Each template: stages of nodes (id, type, w: widget values by name), links: [from id, output slot, to id, input name].
const WORKFLOWS = {
  // Runs as shipped on CI (no SHRINK): ToyWorld is tiny. tests/e2e checks that one of the top sliders' rows
  // changes one factor of the world monotonically (read from the pixels); the grid shows every trained slider.
  toyworld_sliders: {
    order: ["tw", "pos", "neg", "traj", "embed", "pca", "scree", "train", "loss", "grid", "out", "cells"],
    stages: [
      { title: "1. Load ToyWorld", nodes: [{ id: "tw", type: "SliderSpaceLoadToyWorld" },
        note("SliderSpace on ToyWorld, the pack's own 32×32 test world: runs on the CPU, nothing to download.\n\n" +
          "Change the prompt ('a circle', 'a square', 'a triangle', with words such as 'red', 'small', " +
          "'on the left'); raise `trajectories`, `n_sliders` or `iterations` for more or steadier sliders.")] },
      { title: "2. Prompt", nodes: [text("pos", "a circle"), text("neg", "")] },
      { title: "3. Sample trajectories", nodes: [{ id: "traj", type: "SliderSpaceTrajectorySampler",
        w: { prompts: "a circle", trajectories: 32, seed: 0, control_after_generate: "fixed", steps: 16, cfg: 2.0,
          scheduler: "karras", width: 32, height: 32, batch_size: 32, keep_steps: "every step" } }] },
      { title: "4. Embed and PCA", nodes: [{ id: "embed", type: "SliderSpaceClipEmbed", w: { batch_size: 64 } },
        { id: "pca", type: "SliderSpacePCADecompose", w: { n_components: 8, control_after_generate: "fixed" } },
        { id: "scree", type: "PreviewImage", title: "Scree plot" }] },
      { title: "5. Train sliders", nodes: [{ id: "train", type: "SliderSpaceTrainSliders",
        w: { n_sliders: 4, iterations: 400, learning_rate: 0.02, sliders_per_step: 2, bidirectional: true,
          control_after_generate: "fixed" } }, { id: "loss", type: "PreviewImage", title: "Loss curve" }] },
      { title: "6. Slider Grid", nodes: [{ id: "grid", type: "SliderSpaceSliderGrid", w: { sliders: "0-3",
        scales: "-2, -1, 0, 1, 2", seed: 0, control_after_generate: "fixed", steps: 16, cfg: 2.0, scheduler: "karras",
        width: 32, height: 32, start_percent: 0.0 } },
        { id: "out", type: "SaveImage", w: { filename_prefix: "toyworld_grid" } },
        { id: "cells", type: "SaveImage", w: { filename_prefix: "toyworld_cells" }, title: "Grid cells (row-major)" }] },
    ],
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
};

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

Object.assign(WORKFLOWS, SD15_WORKFLOWS, FAMILY_WORKFLOWS, SDXL_METHOD_WORKFLOWS); // staged templates: { stages, links }

const [url, outDir, ...only] = process.argv.slice(2);
const unknown = only.filter((n) => !(n in WORKFLOWS));
if (unknown.length) throw new Error(`no workflow named ${unknown.join(", ")}; known: ${Object.keys(WORKFLOWS).join(", ")}`);
const browser = await launch();
try {
  const { page } = await openApp(browser, url, { width: 1600, height: 1000 });
  for (const [name, spec] of Object.entries(WORKFLOWS).filter(([n]) => !only.length || only.includes(n))) {
    const wf = await buildStaged(page, spec); // every template is laid out by stage
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
