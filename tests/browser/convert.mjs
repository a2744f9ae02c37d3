// Converts UI-format workflows to the API format with the real frontend: each file is loaded as a user
// would open it, then the frontend's own queuePrompt builds the prompt and POSTs it to /prompt, where it
// is captured (and answered here, so nothing is queued). Prints one JSON object:
//   {<file name>: {prompt: <API prompt>, console_errors: [...]}}
//   node convert.mjs <server url> <workflow.json>...
import fs from "node:fs";
import path from "node:path";
import { capturePrompt, launch, loadWorkflow, openApp } from "./lib.mjs";

const [url, ...files] = process.argv.slice(2);
const browser = await launch();
const out = {};
try {
  const { page, log } = await openApp(browser, url);
  for (const file of files) {
    const start = log.length;
    await loadWorkflow(page, JSON.parse(fs.readFileSync(file, "utf8")));
    const body = await capturePrompt(page);
    out[path.basename(file)] = { prompt: body.prompt, console_errors: log.slice(start) };
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + "\n");
