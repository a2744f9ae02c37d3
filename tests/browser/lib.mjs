// Shared helpers: headless Debian chromium (no browser download) on the real ComfyUI frontend.
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

export async function launch() {
  return chromium.launch({ executablePath: CHROMIUM, args: ARGS });
}

/** Open the frontend; resolves once window.app has a graph and the node definitions are registered. */
export async function openApp(browser, url, viewport = { width: 1400, height: 900 }) {
  const page = await browser.newPage({ viewport });
  const log = [];
  page.on("console", (m) => { if (m.type() === "error") log.push(m.text()); });
  page.on("pageerror", (e) => log.push(`pageerror: ${e.message}`));
  await page.goto(url);
  await page.waitForFunction(() => window.app?.graph && window.LiteGraph?.registered_node_types
    && Object.keys(window.LiteGraph.registered_node_types).length > 50, null, { timeout: 90000 });
  await page.waitForTimeout(1500); // extensions finish their setup()
  await page.evaluate(() => { // hide (never click) a one-time announcement banner over the canvas
    const t = [...document.querySelectorAll("body *")].find((e) => e.children.length === 0
      && e.textContent.startsWith("Introducing Nodes 2.0"));
    let e = t;
    while (e && e.offsetWidth < window.innerWidth * 0.9) e = e.parentElement;
    if (e && e !== document.body) e.style.display = "none";
  });
  return { page, log };
}

/** Load a UI-format workflow through the frontend, as opening the file would. */
export async function loadWorkflow(page, workflow) {
  await page.evaluate(async (wf) => { await window.app.loadGraphData(wf, true, true, null); }, workflow);
  await page.waitForTimeout(800);
}

/** Let the frontend convert the graph and POST it to /prompt; the request is answered here, not queued. */
export async function capturePrompt(page) {
  let body = null;
  const handler = async (route) => {
    if (route.request().method() !== "POST") return route.fallback();
    body = JSON.parse(route.request().postData());
    await route.fulfill({ status: 200, contentType: "application/json",
      body: JSON.stringify({ prompt_id: "captured", number: 0, node_errors: {} }) });
  };
  await page.route(/\/prompt$/, handler);
  await page.evaluate(async () => { await window.app.queuePrompt(0, 1); });
  for (let i = 0; i < 100 && !body; i++) await page.waitForTimeout(100);
  await page.unroute(/\/prompt$/, handler);
  if (!body) throw new Error("the frontend sent no POST /prompt");
  return body;
}
