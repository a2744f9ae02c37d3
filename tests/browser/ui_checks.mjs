// Collects facts about the pack in the real frontend; tests/browser/test_frontend.py asserts on them.
//   node ui_checks.mjs <server url> <artifact dir> <another bank file> <apply workflow> <discover workflow>
//     <workflow.json>...
// Prints one JSON object: library, workflows (per file: new console errors, missing node types, widget
// values that did not survive loading), widget (sliders, labels, prompts after moving / reset / randomize,
// persistence), screenshot path.
import fs from "node:fs";
import path from "node:path";
import { capturePrompt, launch, loadWorkflow, openApp } from "./lib.mjs";

const [url, artifactDir, otherBank, applyFile, discoverFile, ...files] = process.argv.slice(2);
const report = { workflows: {} };

async function applyNode(page) {
  return page.evaluate(() => window.app.graph.nodes.find((n) => n.type === "SliderSpaceApplySliderBank")?.id);
}

async function scalesSent(page) {
  const body = await capturePrompt(page);
  const [id] = Object.entries(body.prompt).find(([, n]) => n.class_type === "SliderSpaceApplySliderBank");
  return { scales: body.prompt[id].inputs.scales, labels: body.prompt[id].inputs.labels, workflowProps: body.extra_data?.extra_pnginfo?.workflow?.nodes
    ?.find((n) => String(n.id) === id)?.properties?.sliderspace ?? null };
}

async function sliderState(page) {
  return page.evaluate(() => ({
    values: [...document.querySelectorAll(".sliderspace-slider")].map((e) => Number(e.value)),
    labels: [...document.querySelectorAll(".sliderspace-label")].map((e) => e.value || e.placeholder),
    typed: [...document.querySelectorAll(".sliderspace-label")].map((e) => e.value),
    note: document.querySelector(".sliderspace-note")?.textContent ?? null,
    shown: [...document.querySelectorAll(".sliderspace-value")].map((e) => e.textContent),
  }));
}

/** Put the Apply node at the top left of the view at 100 % and return its screen rectangle. */
async function focusApply(page) {
  return page.evaluate(() => {
    const { app } = window;
    const node = app.graph.nodes.find((n) => n.type === "SliderSpaceApplySliderBank");
    const c = app.canvas;
    c.ds.scale = 1;
    c.ds.offset = [-node.pos[0] + 120, -node.pos[1] + 140];
    c.setDirty(true, true);
    const r = c.canvas.getBoundingClientRect();
    const [x, y] = c.ds.convertOffsetToCanvas(node.pos);
    return { x: r.left + x - 10, y: r.top + y - 40, width: node.size[0] + 20, height: node.size[1] + 50 };
  });
}

const browser = await launch();
try {
  const { page, log } = await openApp(browser, url);
  report.baseline_console_errors = [...log];

  // 1. The node library lists the pack's nodes (opened and expanded as a user would).
  await page.evaluate(() => window.app.extensionManager.sidebarTab.toggleSidebarTab("node-library"));
  await page.getByText("SliderSpace", { exact: true }).first().click();
  await page.waitForTimeout(800);
  for (const sub of ["Sliders", "ELROND", "SAE concepts", "ToyWorld"]) { // one subfolder per system
    await page.getByText(sub, { exact: true }).first().click();
    await page.waitForTimeout(500);
  }
  report.library_text = await page.evaluate(() => document.body.innerText);
  report.registered = await page.evaluate(() => Object.keys(window.LiteGraph.registered_node_types)
    .filter((k) => k.startsWith("SliderSpace") || k.startsWith("ELROND")));
  await page.evaluate(() => window.app.extensionManager.sidebarTab.toggleSidebarTab("node-library"));

  // 2. Every example workflow loads with no missing node type, no widget shift and no new console error.
  for (const file of files) {
    const wf = JSON.parse(fs.readFileSync(file, "utf8"));
    const start = log.length;
    await loadWorkflow(page, wf);
    const facts = await page.evaluate((wf) => {
      const { app, LiteGraph } = window;
      const missing = app.graph.nodes.filter((n) => !LiteGraph.registered_node_types[n.type] || n.has_errors)
        .map((n) => n.type);
      const now = app.graph.serialize();
      const mismatched = [];
      for (const n of wf.nodes) {
        const m = now.nodes.find((x) => x.id === n.id);
        if (!m) { mismatched.push(`${n.type} #${n.id} vanished`); continue; }
        if (JSON.stringify(m.widgets_values ?? []) !== JSON.stringify(n.widgets_values ?? [])) {
          mismatched.push(`${n.type} #${n.id}: ${JSON.stringify(n.widgets_values)} -> ${JSON.stringify(m.widgets_values)}`);
        }
      }
      const dialogs = [...document.querySelectorAll(".p-dialog")].map((d) => d.innerText.slice(0, 300));
      const T = LiteGraph.NODE_TITLE_HEIGHT; // a node's rectangle includes its title bar
      const rects = app.graph.nodes.map((n) => ({ type: n.type, title: n.title,
        box: [n.pos[0], n.pos[1] - T, n.size[0], n.size[1] + T] }));
      const groups = (app.graph.groups ?? app.graph._groups ?? []).map((g) => ({ title: g.title,
        box: [g.pos[0], g.pos[1], g.size[0], g.size[1]] }));
      return { missing, mismatched, dialogs, nodes: app.graph.nodes.length, rects, groups };
    }, wf);
    report.workflows[path.basename(file)] = { ...facts, console_errors: log.slice(start) };
  }

  // 3. The slider-bank widget on Apply Slider Bank fed by Load Slider Bank.
  const w = (report.widget = {});
  await loadWorkflow(page, JSON.parse(fs.readFileSync(applyFile, "utf8")));
  await page.waitForSelector(".sliderspace-slider", { timeout: 15000 });
  const rect = await focusApply(page);
  await page.waitForTimeout(500);
  w.initial = await sliderState(page);
  w.initial_sent = await scalesSent(page);

  // Move slider 2 with the mouse (a click at 3/4 of its track), then one keyboard step to the right.
  const s2 = page.locator(".sliderspace-slider").nth(2);
  const box = await s2.boundingBox();
  await page.mouse.click(box.x + box.width * 0.75, box.y + box.height / 2);
  await s2.press("ArrowRight");
  w.moved = await sliderState(page);
  w.moved_sent = await scalesSent(page);

  // Edit a label; it must persist in the workflow.
  const l1 = page.locator(".sliderspace-label").nth(1);
  await l1.fill("older (edited)");
  await l1.press("Enter");
  await l1.blur();
  w.edited_props = await page.evaluate((id) => window.app.graph.getNodeById(id).properties.sliderspace,
    await applyNode(page));
  w.edited_sent = await scalesSent(page);
  fs.mkdirSync(artifactDir, { recursive: true });
  w.screenshot = path.join(artifactDir, "widget.png");
  await page.screenshot({ path: w.screenshot, clip: rect });

  // The state survives saving and re-opening the workflow.
  const saved = await page.evaluate(() => window.app.graph.serialize());
  await loadWorkflow(page, JSON.parse(fs.readFileSync(files[0], "utf8")));
  await loadWorkflow(page, saved);
  await page.waitForSelector(".sliderspace-slider", { timeout: 15000 });
  await page.waitForTimeout(500);
  w.reloaded = await sliderState(page);
  w.reloaded_sent = await scalesSent(page);

  await page.locator(".sliderspace-reset").click();
  w.reset = await sliderState(page);
  w.reset_sent = await scalesSent(page);
  await page.locator(".sliderspace-randomize").click();
  w.randomized = await sliderState(page);
  w.randomized_sent = await scalesSent(page);

  // Typing into the scales text box moves the sliders.
  await page.evaluate((id) => {
    const sw = window.app.graph.getNodeById(id).widgets.find((x) => x.name === "scales");
    sw.inputEl.setAttribute("data-test", "sliderspace-scales");
  }, await applyNode(page));
  await page.locator("[data-test=sliderspace-scales]").fill("1:-2, 3:0.5");
  w.from_text = await sliderState(page);

  // Choosing another bank on Load Slider Bank redraws the widget with that bank's sliders.
  await page.evaluate((name) => {
    const load = window.app.graph.nodes.find((n) => n.type === "SliderSpaceLoadSliderBank");
    const fw = load.widgets.find((x) => x.name === "file");
    fw.value = name;
    fw.callback?.(name);
    window.app.canvas.setDirty(true, true);
  }, otherBank);
  await page.waitForFunction((n) => document.querySelectorAll(".sliderspace-slider").length === n, 2,
    { timeout: 10000 }).catch(() => {});
  w.switched = await sliderState(page);
  w.switched_sent = await scalesSent(page);

  // 4. A bank straight from Train Sliders (no file yet): the count is Train Sliders' n_sliders until a run, then
  // what Apply Slider Bank reported about the bank it got (its UI output, delivered as the server's "executed").
  const t = (w.train = {});
  await loadWorkflow(page, JSON.parse(fs.readFileSync(discoverFile, "utf8")));
  const applyId = await page.evaluate(() => { // added and linked as a user would
    const { app, LiteGraph } = window;
    const find = (type) => app.graph.nodes.find((n) => n.type === type);
    const apply = LiteGraph.createNode("SliderSpaceApplySliderBank");
    apply.pos = [0, 1400];
    app.graph.add(apply);
    find("CheckpointLoaderSimple").connect(0, apply, apply.findInputSlot("model"));
    find("SliderSpaceTrainSliders").connect(0, apply, apply.findInputSlot("bank"));
    return apply.id;
  });
  const count = (n) => page.waitForFunction((n) => document.querySelectorAll(".sliderspace-slider").length === n, n,
    { timeout: 10000 }).catch(() => {});
  const setTrain = (n) => page.evaluate((n) => {
    const train = window.app.graph.nodes.find((x) => x.type === "SliderSpaceTrainSliders");
    const nw = train.widgets.find((x) => x.name === "n_sliders");
    nw.value = n;
    nw.callback?.(n);
    window.app.canvas.setDirty(true, true);
  }, n);
  await focusApply(page); // in view, so it is drawn (the widget looks upstream when drawn)
  await count(8);
  t.from_widget = await sliderState(page);
  await setTrain(3);
  await count(3);
  t.changed = await sliderState(page);
  const l0 = page.locator(".sliderspace-label").nth(0);
  await l0.fill("wider");
  await l0.press("Enter");
  await l0.blur();
  t.labelled_sent = await scalesSent(page);
  t.ran = await page.evaluate((id) => {
    const api = window.app.api ?? window.comfyAPI?.api?.api;
    const output = { sliderspace_bank: [{ n_sliders: 2, labels: ["slider 0", "slider 1"] }] };
    api.dispatchCustomEvent("executed", { node: String(id), display_node: String(id), output, prompt_id: "p" });
    return Boolean(api);
  }, applyId);
  await count(2);
  t.after_run = await sliderState(page);
  t.after_run_sent = await scalesSent(page);
  await setTrain(5); // the report was about 2 sliders; another count means another bank
  await count(5);
  t.recounted = await sliderState(page);

  // Label Bank between the bank and Apply: its labels are laid over the bank's own (the grey placeholders).
  await loadWorkflow(page, JSON.parse(fs.readFileSync(applyFile, "utf8")));
  await page.evaluate(() => {
    const { app, LiteGraph } = window;
    const find = (type) => app.graph.nodes.find((n) => n.type === type);
    const lb = LiteGraph.createNode("SliderSpaceLabelBank");
    app.graph.add(lb);
    lb.widgets.find((x) => x.name === "labels").value = "2: from Label Bank";
    const apply = find("SliderSpaceApplySliderBank");
    find("SliderSpaceLoadSliderBank").connect(0, lb, lb.findInputSlot("bank"));
    lb.connect(0, apply, apply.findInputSlot("bank"));
  });
  await focusApply(page);
  await page.waitForFunction(() => document.querySelectorAll(".sliderspace-label")[2]?.placeholder === "from Label Bank",
    null, { timeout: 10000 }).catch(() => {});
  w.label_bank = await sliderState(page);

  // 5. A workflow saved by 0.1.0, whose widget kept typed labels only in the node's properties: on opening,
  // they become the node's `labels` (so they reach the bank); the saved widget values stay where they were.
  const old = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, "..", "legacy_workflows", "0.1.0", "ui",
    "sliderspace_apply.json"), "utf8"));
  const oldApply = old.nodes.find((n) => n.type === "SliderSpaceApplySliderBank");
  oldApply.properties.sliderspace = { bank: null, values: [], labels: ["", "older (typed in 0.1.0)"] };
  await loadWorkflow(page, old);
  await count(4);
  w.legacy = await sliderState(page);
  w.legacy_sent = await scalesSent(page);
  w.console_errors = log.filter((e) => /sliderspace/i.test(e));
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report) + "\n");
