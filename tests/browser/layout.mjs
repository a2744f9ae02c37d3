// Builds a staged template in the real frontend: stages left → right, one group per stage, nodes stacked in
// their stage from their own computed sizes, so no two nodes overlap; links drawn as a user would.
// Nodes are created in `spec.order` when given (node ids follow creation order), then linked; the layout
// comes last, once widgets that size themselves from their inputs (the slider-bank widget) have done so.
const GAP = 40; // between nodes in a stage, and between a group's edge and its nodes
const STAGE_GAP = 80;

export async function buildStaged(page, spec) {
  return page.evaluate(async ({ spec, GAP, STAGE_GAP }) => {
    const { app, LiteGraph } = window;
    app.graph.clear();
    const specs = Object.fromEntries(spec.stages.flatMap((s) => s.nodes.map((n) => [n.id, n])));
    const order = [...(spec.order ?? []), ...Object.keys(specs).filter((id) => !spec.order?.includes(id))];
    const made = {};
    for (const id of order) {
      const n = specs[id];
      if (!n) throw new Error(`order names ${id}, which no stage holds`);
      const node = LiteGraph.createNode(n.type);
      if (!node) throw new Error(`unknown node type ${n.type}`);
      if (n.title) node.title = n.title;
      app.graph.add(node);
      for (const [name, value] of Object.entries(n.w || {})) {
        const w = node.widgets?.find((v) => v.name === name);
        if (!w) throw new Error(`${n.type} has no widget ${name}`);
        w.value = value;
      }
      made[id] = node;
    }
    for (const [from, slot, to, input] of spec.links) {
      const dst = made[to];
      if (!dst || !made[from]) throw new Error(`link ${from} -> ${to}: unknown node`);
      const idx = dst.findInputSlot(input);
      if (idx < 0) throw new Error(`${dst.type} has no input ${input}`);
      if (!made[from].connect(slot, dst, idx)) throw new Error(`cannot link ${from}:${slot} -> ${to}.${input}`);
    }
    await new Promise((r) => setTimeout(r, 1500)); // widgets that fetch what they draw resize the node
    const title = LiteGraph.NODE_TITLE_HEIGHT;
    let x = 0;
    for (const stage of spec.stages) {
      const top = 0;
      let y = top + title + GAP + title; // group title bar, margin, the node's own title bar
      let width = 0;
      for (const n of stage.nodes) {
        const node = made[n.id];
        if (n.type === "Note") node.size = [420, 300];
        node.size = [Math.max(node.size[0], 320), node.size[1]];
        node.pos = [x + GAP, y];
        y += node.size[1] + title + GAP;
        width = Math.max(width, node.size[0]);
      }
      const group = new LiteGraph.LGraphGroup(stage.title);
      group.pos = [x, top];
      group.size = [width + 2 * GAP, y - top - title];
      app.graph.add(group);
      x += width + 2 * GAP + STAGE_GAP;
    }
    return app.graph.serialize();
  }, { spec, GAP, STAGE_GAP });
}
