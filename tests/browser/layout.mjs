// Builds a staged template in the real frontend: stages left → right, one group per stage, nodes stacked in
// their stage from their own computed sizes, so no two nodes overlap; then links as a user would draw them.
const GAP = 40; // between nodes in a stage, and between a group's edge and its nodes
const STAGE_GAP = 80;

export async function buildStaged(page, spec) {
  return page.evaluate(({ spec, GAP, STAGE_GAP }) => {
    const { app, LiteGraph } = window;
    app.graph.clear();
    const made = {};
    const title = LiteGraph.NODE_TITLE_HEIGHT;
    let x = 0;
    for (const stage of spec.stages) {
      const top = 0;
      let y = top + title + GAP + title; // group title bar, margin, the node's own title bar
      let width = 0;
      for (const n of stage.nodes) {
        const node = LiteGraph.createNode(n.type);
        if (!node) throw new Error(`unknown node type ${n.type}`);
        if (n.title) node.title = n.title;
        app.graph.add(node);
        for (const [name, value] of Object.entries(n.w || {})) {
          const w = node.widgets?.find((v) => v.name === name);
          if (!w) throw new Error(`${n.type} has no widget ${name}`);
          w.value = value;
        }
        if (n.type === "Note") node.size = [420, 300];
        node.size = [Math.max(node.size[0], 320), node.size[1]];
        node.pos = [x + GAP, y];
        y += node.size[1] + title + GAP;
        width = Math.max(width, node.size[0]);
        made[n.id] = node;
      }
      const group = new LiteGraph.LGraphGroup(stage.title);
      group.pos = [x, top];
      group.size = [width + 2 * GAP, y - top - title];
      app.graph.add(group);
      x += width + 2 * GAP + STAGE_GAP;
    }
    for (const [from, slot, to, input] of spec.links) {
      const dst = made[to];
      if (!dst || !made[from]) throw new Error(`link ${from} -> ${to}: unknown node`);
      const idx = dst.findInputSlot(input);
      if (idx < 0) throw new Error(`${dst.type} has no input ${input}`);
      if (!made[from].connect(slot, dst, idx)) throw new Error(`cannot link ${from}:${slot} -> ${to}.${input}`);
    }
    return app.graph.serialize();
  }, { spec, GAP, STAGE_GAP });
}
