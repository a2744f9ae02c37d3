// SliderSpace slider-bank widget for "SliderSpace Apply Slider Bank".
//
// One labelled slider per direction of the bank on the node's `bank` input. Where the count and the bank's own
// labels come from (following Label Bank nodes upstream, whose labels are laid over):
// - Load Slider Bank: the pack's route `/sliderspace/bank_info?name=<file>` (read from the file's header);
// - Train Sliders (a bank not saved yet): its `n_sliders` widget, until a run;
// - after a run, whatever the source: what the node reported about the bank it got (its UI output).
// Slider state lives in `node.properties.sliderspace` = {bank, values}, so it persists in the workflow JSON; every
// change rewrites the node's `scales` text ("0:1.5, 3:-2"), which is what the API prompt carries, and editing that
// text moves the sliders. Labels typed in the widget ARE the node's `labels` text (Label Bank's syntax,
// "0: smiling, 3: older"): one label system, and the node's `bank` output carries them into a saved bank.
// Reset sets all sliders to 0; Randomize draws each in [-2, 2].
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const APPLY = "SliderSpaceApplySliderBank";
const LOAD = "SliderSpaceLoadSliderBank";
const TRAIN = "SliderSpaceTrainSliders";
const LABEL = "SliderSpaceLabelBank";
const RANGE = 3; // slider span: [-RANGE, RANGE]; the paper explores ±2
const STEP = 0.05;
const ROW = 28;

const infoCache = new Map(); // bank file name -> Promise<info>

function fetchInfo(name) {
  if (!infoCache.has(name)) {
    const p = api.fetchApi(`/sliderspace/bank_info?name=${encodeURIComponent(name)}`).then(async (r) => {
      const body = await r.json();
      if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
      return body;
    });
    p.catch(() => infoCache.delete(name)); // retry next time (e.g. after the file is saved)
    infoCache.set(name, p);
  }
  return infoCache.get(name);
}

/** "0:1.5, 3:-2" -> {0: 1.5, 3: -2}; entries that do not parse are skipped (the server names them). */
export function parseScales(text) {
  const out = {};
  for (const entry of String(text || "").split(/[,;\n]/)) {
    const m = entry.trim().match(/^(-?\d+)\s*[:=]\s*(\S+)$/);
    if (m && Number.isFinite(Number(m[2]))) out[Number(m[1])] = Number(m[2]);
  }
  return out;
}

/** Non-zero values as Apply Slider Bank's `scales` text. */
export function formatScales(values) {
  return values
    .map((v, i) => [i, Math.round(v * 1000) / 1000])
    .filter(([, v]) => v !== 0)
    .map(([i, v]) => `${i}:${v}`)
    .join(", ");
}

/** Label Bank's `labels` syntax -> {index: label}: "0: smiling, 3: older" or one label per line in order. */
export function parseLabels(text) {
  const out = {};
  const t = String(text || "");
  const entries = t.split(/\n|[,;]\s*(?=-?\d+\s*[:=])/);
  if (entries.some((e) => /^\s*-?\d+\s*[:=]/.test(e))) {
    for (const e of entries) {
      const m = e.match(/^\s*(\d+)\s*[:=]\s*(.*)$/);
      if (m && m[2].trim()) out[Number(m[1])] = m[2].trim();
    }
  } else {
    t.split("\n").forEach((line, i) => { if (line.trim()) out[i] = line.trim(); });
  }
  return out;
}

/** {index: label} -> the `labels` text Apply Slider Bank (and Label Bank) parse. */
export function formatLabels(labels) {
  return labels.map((l, i) => [i, String(l ?? "").trim()]).filter(([, l]) => l).map(([i, l]) => `${i}: ${l}`)
    .join(", ");
}

const widgetValue = (node, name) => node?.widgets?.find((w) => w.name === name)?.value;

function inputNode(node, name) {
  const slot = node.findInputSlot?.(name) ?? node.inputs?.findIndex((i) => i.name === name);
  return slot >= 0 ? node.getInputNode?.(slot) : null;
}

/** Where `node`'s bank comes from, through any Label Bank nodes: {key, file | n | other, overlays}, or null.
 * `key` names the bank (a file name, or the node that makes it); `sig` changes whenever what is drawn would. */
function bankSource(node) {
  const overlays = [];
  const seen = new Set();
  let src = inputNode(node, "bank");
  while (src?.comfyClass === LABEL && !seen.has(src.id)) { // the nearest Label Bank is applied last
    seen.add(src.id);
    overlays.unshift(String(widgetValue(src, "labels") ?? ""));
    src = inputNode(src, "bank");
  }
  if (!src) return null;
  let out;
  if (src.comfyClass === LOAD) {
    const file = widgetValue(src, "file");
    if (!file) return null;
    out = { key: file, file };
  } else if (src.comfyClass === TRAIN) {
    out = { key: `node:${src.id}`, n: Math.max(0, Math.floor(Number(widgetValue(src, "n_sliders")) || 0)) };
  } else {
    out = { key: `node:${src.id}`, other: src.title || src.type };
  }
  const base = JSON.stringify([out.key, out.n]); // a run's report holds until the bank or its count changes
  return { ...out, overlays, base, sig: JSON.stringify([base, overlays]) };
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "style") Object.assign(e.style, v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

const NO_BANK = "Connect a bank (Load Slider Bank, Train Sliders or Label Bank) to get one slider per direction.";

class BankWidget {
  constructor(node) {
    this.node = node;
    this.scalesWidget = node.widgets.find((w) => w.name === "scales");
    this.labelsWidget = node.widgets.find((w) => w.name === "labels");
    this.root = el("div", { class: "sliderspace-bank", style: { display: "flex", flexDirection: "column",
      gap: "2px", font: "12px sans-serif", color: "var(--input-text, #ddd)", padding: "2px 4px" } });
    this.widget = node.addDOMWidget("sliderspace_sliders", "sliderspace_sliders", this.root, {
      serialize: false, // state is in node.properties; the prompt gets it through `scales` and `labels`
      hideOnZoom: false,
      getMinHeight: () => 54 + ROW * Math.max(1, this.state.values.length),
    });
    this.widget.serialize = false;
    this.sig = undefined;
    this.runInfo = null; // {base, n_sliders, labels}: what the node reported after its last run
    this.hook(this.scalesWidget, () => this.readScalesText());
    this.hook(this.labelsWidget, () => this.syncInputs());
    this.render(NO_BANK);
  }

  get state() {
    const p = (this.node.properties ??= {});
    p.sliderspace ??= { bank: null, values: [] };
    return p.sliderspace;
  }

  /** Call `fn` when the user edits `w` (not when this widget writes it). */
  hook(w, fn) {
    if (!w) return;
    const prev = w.callback;
    w.callback = (value, ...rest) => {
      const r = prev?.call(w, value, ...rest);
      if (!this.writing) fn();
      return r;
    };
  }

  readScalesText() {
    const parsed = parseScales(this.scalesWidget?.value);
    this.state.values = this.state.values.map((_, i) => parsed[i] ?? 0);
    this.syncInputs();
  }

  write(w, value) {
    if (!w) return;
    this.writing = true;
    w.value = value;
    w.callback?.(w.value);
    this.writing = false;
    this.node.setDirtyCanvas?.(true, true);
  }

  writeScalesText() { this.write(this.scalesWidget, formatScales(this.state.values)); }

  /** The labels typed for this node (its `labels` text), one per slider. */
  typedLabels() {
    const parsed = parseLabels(this.labelsWidget?.value);
    return this.state.values.map((_, i) => parsed[i] ?? "");
  }

  /** Slider count and the bank's own labels, or {message}. */
  async describe(src) {
    const run = this.runInfo?.base === src.base ? this.runInfo : null;
    if (run) return { n: run.n_sliders, labels: run.labels, from: "run" };
    if (src.file) {
      try {
        const info = await fetchInfo(src.file);
        return { n: info.n_sliders, labels: info.labels, from: "file" };
      } catch (e) {
        return { message: `Cannot read bank ${src.file}: ${e.message}` };
      }
    }
    if (src.n !== undefined) { // Train Sliders: the count it will train; its labels are known after a run
      return { n: src.n, labels: [], from: "n_sliders",
        note: "Count from Train Sliders' n_sliders; the bank's own labels show after a run." };
    }
    return { message: `Run the workflow once: the sliders of the bank from ${src.other} show after a run.` };
  }

  /** Look upstream; (re)build when the bank, its count or the labels laid over it changed. */
  async refresh(force = false) {
    const src = bankSource(this.node);
    const sig = src?.sig ?? null;
    if (sig === this.sig && !force) return;
    this.sig = sig;
    if (!src) return this.render(NO_BANK);
    const info = await this.describe(src);
    if (this.sig !== sig) return; // the choice changed while fetching
    if (info.message) return this.render(info.message);
    const s = this.state;
    const { n } = info;
    if (s.bank !== src.key) {
      // Another bank: values from the `scales` text; labels typed for the previous bank no longer apply.
      const parsed = parseScales(this.scalesWidget?.value);
      s.values = Array.from({ length: n }, (_, i) => parsed[i] ?? 0);
      if (s.bank != null) {
        this.write(this.labelsWidget, "");
        delete s.labels;
      }
      s.bank = src.key;
    } else {
      s.values = Array.from({ length: n }, (_, i) => Number(s.values[i] ?? 0));
    }
    if (s.labels?.some((l) => l) && !String(this.labelsWidget?.value ?? "").trim()) {
      // A workflow saved before labels were the node's `labels` input kept them here: they become real labels.
      this.write(this.labelsWidget, formatLabels(s.labels.slice(0, n)));
    }
    delete s.labels;
    const own = Array.from({ length: n }, (_, i) => String(info.labels?.[i] ?? ""));
    for (const text of src.overlays) Object.entries(parseLabels(text)).forEach(([i, l]) => { if (i < n) own[i] = l; });
    this.bankLabels = own;
    this.note = info.note ?? null;
    this.render(null);
    this.write(this.labelsWidget, formatLabels(this.typedLabels())); // drop labels of sliders that are gone
    this.writeScalesText();
  }

  /** The node's UI output after a run: the bank it really got (any source, saved or not). */
  executed(output) {
    const info = output?.sliderspace_bank?.[0];
    const src = bankSource(this.node);
    if (!info || !src) return;
    this.runInfo = { base: src.base, n_sliders: Number(info.n_sliders), labels: info.labels ?? [] };
    this.refresh(true);
  }

  render(message) {
    const s = this.state;
    this.inputs = [];
    const rows = [];
    if (message) {
      rows.push(el("div", { class: "sliderspace-message", style: { opacity: 0.7, whiteSpace: "normal" } }, message));
    } else {
      if (this.note) rows.push(el("div", { class: "sliderspace-note", style: { opacity: 0.7 } }, this.note));
      const typed = this.typedLabels();
      s.values.forEach((v, i) => rows.push(this.row(i, typed[i])));
      rows.push(el("div", { style: { display: "flex", gap: "6px", marginTop: "2px" } },
        el("button", { class: "sliderspace-reset", title: "All sliders to 0", onclick: () => this.setAll(() => 0) },
          "Reset"),
        el("button", { class: "sliderspace-randomize", title: "Each slider uniform in [-2, 2]",
          onclick: () => this.setAll(() => Math.round((Math.random() * 4 - 2) / STEP) * STEP) }, "Randomize")));
    }
    this.root.replaceChildren(...rows);
    const size = this.node.computeSize?.();
    if (size) this.node.setSize([Math.max(this.node.size[0], size[0]), Math.max(this.node.size[1], size[1])]);
    this.node.setDirtyCanvas?.(true, true);
  }

  row(i, typed) {
    const s = this.state;
    const label = el("input", { type: "text", class: "sliderspace-label", placeholder: this.bankLabels?.[i] || `slider ${i}`,
      title: "Label: written into the node's `labels` (and into its bank output)",
      style: { width: "34%", minWidth: "60px", background: "transparent", color: "inherit",
        border: "1px solid var(--border-color, #555)", borderRadius: "3px", padding: "1px 3px" } });
    label.value = typed || "";
    label.addEventListener("change", () => {
      const labels = this.typedLabels();
      labels[i] = label.value.replace(/[\n,;]+$/, "").trim();
      this.write(this.labelsWidget, formatLabels(labels));
    });
    const range = el("input", { type: "range", class: "sliderspace-slider", min: -RANGE, max: RANGE, step: STEP,
      "data-index": i, title: `slider ${i}`, style: { flex: "1" } });
    range.value = s.values[i];
    const num = el("span", { class: "sliderspace-value", style: { width: "40px", textAlign: "right" } });
    num.textContent = Number(s.values[i]).toFixed(2);
    range.addEventListener("input", () => {
      s.values[i] = Number(range.value);
      num.textContent = s.values[i].toFixed(2);
      this.writeScalesText();
    });
    range.addEventListener("dblclick", () => { range.value = 0; range.dispatchEvent(new Event("input")); });
    this.inputs.push([range, num, label]);
    return el("div", { class: "sliderspace-row", style: { display: "flex", alignItems: "center", gap: "4px",
      height: `${ROW - 4}px` } }, el("span", { style: { width: "16px", opacity: 0.6 } }, String(i)), label, range, num);
  }

  syncInputs() {
    const typed = this.typedLabels();
    this.inputs?.forEach(([range, num, label], i) => {
      range.value = this.state.values[i];
      num.textContent = Number(this.state.values[i]).toFixed(2);
      if (document.activeElement !== label) label.value = typed[i];
    });
  }

  setAll(fn) {
    this.state.values = this.state.values.map(fn);
    this.syncInputs();
    this.writeScalesText();
  }
}

app.registerExtension({
  name: "SliderSpace.SliderBankWidget",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== APPLY) return;
    const chain = (name, after) => {
      const prev = nodeType.prototype[name];
      nodeType.prototype[name] = function (...args) {
        const r = prev?.apply(this, args);
        after.call(this, ...args);
        return r;
      };
    };
    chain("onNodeCreated", function () { this.sliderspace = new BankWidget(this); });
    chain("onConnectionsChange", function () { queueMicrotask(() => this.sliderspace?.refresh()); });
    // links exist once the whole graph is configured
    chain("onConfigure", function () { setTimeout(() => this.sliderspace?.refresh(), 0); });
    chain("onExecuted", function (output) { this.sliderspace?.executed(output); });
    // The bank upstream (its file, n_sliders, Label Bank text) can change at any time: check (cheaply) when drawn.
    chain("onDrawForeground", function () {
      if (this.sliderspace && (bankSource(this)?.sig ?? null) !== this.sliderspace.sig) this.sliderspace.refresh();
    });
  },
});
