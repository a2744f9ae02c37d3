// Opens a node's help page in the real frontend, as a user would: put the node on the canvas, select it and
// press the selection toolbox's Info button; the frontend fetches web/docs/<node_id>.md and renders it in the
// side panel. Prints what was shown.
//   node node_docs.mjs <server url> <node_id> <screenshot.png>
import { launch, openApp } from "./lib.mjs";

const [url, nodeId, shot] = process.argv.slice(2);
const report = { node_id: nodeId };
const browser = await launch();
try {
  const { page, log } = await openApp(browser, url);
  report.placed = await page.evaluate((type) => {
    const { app, LiteGraph } = window;
    const node = LiteGraph.createNode(type);
    if (!node) return false;
    node.pos = [200, 200];
    app.graph.add(node);
    app.canvas.selectNode(node);
    app.canvas.setDirty(true, true);
    return true;
  }, nodeId);
  const info = page.locator('[data-testid="info-button"]').first();
  await info.waitFor({ state: "visible", timeout: 20000 });
  await info.click();
  // The rendered page: wait until the panel shows the page's generated "Inputs" section.
  await page.waitForFunction(() => [...document.querySelectorAll("h2")].some((h) => h.textContent.trim() === "Inputs"),
    null, { timeout: 20000 });
  await page.waitForTimeout(1000); // images inside the page
  Object.assign(report, await page.evaluate(() => {
    const h2 = [...document.querySelectorAll("h2")].find((h) => h.textContent.trim() === "Inputs");
    let panel = h2;
    while (panel && !panel.querySelector("h1")) panel = panel.parentElement; // the rendered page's root
    return {
      headings: [...panel.querySelectorAll("h1, h2")].map((h) => h.textContent.trim()),
      text: panel.innerText,
      images: [...panel.querySelectorAll("img")].map((i) => ({ src: i.src, width: i.naturalWidth })),
    };
  }));
  await page.screenshot({ path: shot });
  report.console_errors = log.filter((l) => /docs|sliderspace/i.test(l));
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
