// The slider widget on a bank straight from Train Sliders, through a real run: the discover template opened in the
// real frontend, shrunk (a few 64 px trajectories, 2 sliders, 2 iterations), its Save Slider Bank removed (the
// server's bank folder stays as the other tests expect), Apply Slider Bank → KSampler → Preview added as a user
// would, then queued on the real server. Prints the widget before and after the run as JSON.
//   node train_run.mjs <server url> <sliderspace_discover.json>
import fs from "node:fs";
import { launch, loadWorkflow, openApp } from "./lib.mjs";

const [url, discoverFile] = process.argv.slice(2);
const SHRINK = {
  SliderSpaceTrajectorySampler: { trajectories: 4, steps: 2, width: 64, height: 64, batch_size: 4, keep_steps: "final only" },
  SliderSpacePCADecompose: { n_components: 3 },
  SliderSpaceTrainSliders: { n_sliders: 2, iterations: 2, sliders_per_step: 1 },
};
const state = (page) => page.evaluate(() => ({
  n: document.querySelectorAll(".sliderspace-slider").length,
  placeholders: [...document.querySelectorAll(".sliderspace-label")].map((e) => e.placeholder),
  note: document.querySelector(".sliderspace-note")?.textContent ?? null,
}));

const browser = await launch();
const out = {};
try {
  const { page, log } = await openApp(browser, url);
  await loadWorkflow(page, JSON.parse(fs.readFileSync(discoverFile, "utf8")));
  await page.evaluate((SHRINK) => {
    const { app, LiteGraph } = window;
    const find = (type) => app.graph.nodes.find((n) => n.type === type);
    for (const n of app.graph.nodes) {
      for (const [k, v] of Object.entries(SHRINK[n.type] ?? {})) n.widgets.find((w) => w.name === k).value = v;
    }
    app.graph.remove(find("SliderSpaceSaveSliderBank"));
    const add = (type, w = {}) => {
      const n = LiteGraph.createNode(type);
      app.graph.add(n);
      for (const [k, v] of Object.entries(w)) n.widgets.find((x) => x.name === k).value = v;
      return n;
    };
    const link = (a, slot, b, input) => a.connect(slot, b, b.findInputSlot(input));
    const [ckpt, train, pos] = [find("CheckpointLoaderSimple"), find("SliderSpaceTrainSliders"), find("CLIPTextEncode")];
    const apply = add("SliderSpaceApplySliderBank");
    const latent = add("EmptyLatentImage", { width: 64, height: 64 });
    const ks = add("KSampler", { steps: 1, control_after_generate: "fixed" });
    const dec = add("VAEDecode");
    const preview = add("PreviewImage");
    link(ckpt, 0, apply, "model"); link(train, 0, apply, "bank");
    link(apply, 0, ks, "model"); link(pos, 0, ks, "positive"); link(pos, 0, ks, "negative");
    link(latent, 0, ks, "latent_image"); link(ks, 0, dec, "samples"); link(ckpt, 2, dec, "vae");
    link(dec, 0, preview, "images");
    const c = app.canvas; // Apply in view: the widget looks upstream when it is drawn
    c.ds.scale = 1;
    c.ds.offset = [-apply.pos[0] + 120, -apply.pos[1] + 140];
    c.setDirty(true, true);
  }, SHRINK);
  await page.waitForFunction(() => document.querySelectorAll(".sliderspace-slider").length === 2, null,
    { timeout: 10000 }).catch(() => {});
  out.before = await state(page);
  await page.evaluate(async () => { await window.app.queuePrompt(0, 1); });
  await page.waitForFunction(() => !document.querySelector(".sliderspace-note"), null, { timeout: 280000 })
    .catch(() => {});
  out.after = await state(page);
  // the pack's own: a vanilla frontend logs errors of its own (e.g. a TypeError from its Vue code)
  out.errors = log.filter((e) => /sliderspace/i.test(e) && !/Failed to load resource|Content Security/.test(e));
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + "\n");
