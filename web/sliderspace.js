// SliderSpace slider-bank widget for "SliderSpace Apply Slider Bank".
//
// When the node's `bank` input comes from "SliderSpace Load Slider Bank", the widget asks the pack's
// route `/sliderspace/bank_info?name=<file>` for the bank's slider count and labels (read from the
// file's metadata on the server) and draws one labelled slider per direction. State lives in
// `node.properties.sliderspace` = {bank, values, labels}, so it persists in the workflow JSON; every
// change rewrites the node's `scales` text ("0:1.5, 3:-2"), which is what the API prompt carries.
// Editing the `scales` text moves the sliders. Reset sets all to 0; Randomize draws each in [-2, 2].
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const APPLY = "SliderSpaceApplySliderBank";
const LOAD = "SliderSpaceLoadSliderBank";
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

/** The file chosen on the Load Slider Bank node feeding `node`'s bank input, or null. */
function upstreamBank(node) {
  const slot = node.findInputSlot?.("bank") ?? node.inputs?.findIndex((i) => i.name === "bank");
  const src = slot >= 0 ? node.getInputNode?.(slot) : null;
  if (!src || src.comfyClass !== LOAD) return null;
  return src.widgets?.find((w) => w.name === "file")?.value ?? null;
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

class BankWidget {
  constructor(node) {
    this.node = node;
    this.scalesWidget = node.widgets.find((w) => w.name === "scales");
    this.root = el("div", { class: "sliderspace-bank", style: { display: "flex", flexDirection: "column",
      gap: "2px", font: "12px sans-serif", color: "var(--input-text, #ddd)", padding: "2px 4px" } });
    this.widget = node.addDOMWidget("sliderspace_sliders", "sliderspace_sliders", this.root, {
      serialize: false, // state is in node.properties; the prompt gets it through `scales`
      hideOnZoom: false,
      getMinHeight: () => 36 + ROW * Math.max(1, this.state.values.length),
    });
    this.widget.serialize = false;
    this.bankName = undefined;
    this.hookScalesText();
    this.render("Connect SliderSpace Load Slider Bank to the bank input to get one slider per direction.");
  }

  get state() {
    const p = (this.node.properties ??= {});
    p.sliderspace ??= { bank: null, values: [], labels: [] };
    return p.sliderspace;
  }

  hookScalesText() {
    const w = this.scalesWidget;
    if (!w) return;
    const prev = w.callback;
    w.callback = (value, ...rest) => {
      const r = prev?.call(w, value, ...rest);
      if (!this.writing) this.readScalesText();
      return r;
    };
  }

  readScalesText() {
    const parsed = parseScales(this.scalesWidget?.value);
    this.state.values = this.state.values.map((_, i) => parsed[i] ?? 0);
    this.syncInputs();
  }

  writeScalesText() {
    if (!this.scalesWidget) return;
    this.writing = true;
    this.scalesWidget.value = formatScales(this.state.values);
    this.scalesWidget.callback?.(this.scalesWidget.value);
    this.writing = false;
    this.node.setDirtyCanvas?.(true, true);
  }

  /** Look at the upstream Load Slider Bank; (re)build when the chosen file changed. */
  async refresh() {
    const name = upstreamBank(this.node);
    if (name === this.bankName) return;
    this.bankName = name;
    if (!name) {
      this.render("Connect SliderSpace Load Slider Bank to the bank input to get one slider per direction.");
      return;
    }
    let info;
    try {
      info = await fetchInfo(name);
    } catch (e) {
      if (this.bankName === name) this.render(`Cannot read bank ${name}: ${e.message}`);
      return;
    }
    if (this.bankName !== name) return; // the choice changed while fetching
    const s = this.state;
    const n = info.n_sliders;
    if (s.bank !== name) {
      // A newly chosen bank: labels from its metadata, values from the `scales` text.
      const parsed = parseScales(this.scalesWidget?.value);
      s.values = Array.from({ length: n }, (_, i) => parsed[i] ?? 0);
      s.labels = Array.from({ length: n }, () => "");
      s.bank = name;
    } else {
      s.values = Array.from({ length: n }, (_, i) => Number(s.values[i] ?? 0));
      s.labels = Array.from({ length: n }, (_, i) => String(s.labels[i] ?? ""));
    }
    this.bankLabels = info.labels;
    this.render(null);
    this.writeScalesText();
  }

  render(message) {
    const s = this.state;
    this.inputs = [];
    const rows = [];
    if (message) {
      rows.push(el("div", { class: "sliderspace-message", style: { opacity: 0.7, whiteSpace: "normal" } }, message));
    } else {
      s.values.forEach((v, i) => rows.push(this.row(i)));
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

  row(i) {
    const s = this.state;
    const label = el("input", { type: "text", class: "sliderspace-label", value: s.labels[i] || "",
      placeholder: this.bankLabels?.[i] || `slider ${i}`, title: "Label (saved in the workflow)",
      style: { width: "34%", minWidth: "60px", background: "transparent", color: "inherit",
        border: "1px solid var(--border-color, #555)", borderRadius: "3px", padding: "1px 3px" } });
    label.value = s.labels[i] || this.bankLabels?.[i] || "";
    label.addEventListener("change", () => { s.labels[i] = label.value; });
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
    this.inputs.push([range, num]);
    return el("div", { class: "sliderspace-row", style: { display: "flex", alignItems: "center", gap: "4px",
      height: `${ROW - 4}px` } }, el("span", { style: { width: "16px", opacity: 0.6 } }, String(i)), label, range, num);
  }

  syncInputs() {
    this.inputs?.forEach(([range, num], i) => {
      range.value = this.state.values[i];
      num.textContent = Number(this.state.values[i]).toFixed(2);
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
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      this.sliderspace = new BankWidget(this);
      return r;
    };
    const onConnectionsChange = nodeType.prototype.onConnectionsChange;
    nodeType.prototype.onConnectionsChange = function () {
      const r = onConnectionsChange?.apply(this, arguments);
      queueMicrotask(() => this.sliderspace?.refresh());
      return r;
    };
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function () {
      const r = onConfigure?.apply(this, arguments);
      setTimeout(() => this.sliderspace?.refresh(), 0); // links exist once the whole graph is configured
      return r;
    };
    // The chosen file on the Load node can change at any time: check (cheaply) whenever the node is drawn.
    const onDrawForeground = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function () {
      const r = onDrawForeground?.apply(this, arguments);
      if (this.sliderspace && upstreamBank(this) !== this.sliderspace.bankName) this.sliderspace.refresh();
      return r;
    };
  },
});
