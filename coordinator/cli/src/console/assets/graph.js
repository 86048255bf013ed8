// A state machine's definition drawn as a graph: states as nodes, Next / Choice / Default /
// Catch edges, Map and Parallel as boxes holding their own graphs. Each graph is laid out by
// dagre (a layered, Sugiyama-style layout); a Map or Parallel is laid out inside-out, so its
// box is sized by the graph it holds before its parent graph is laid out.
const SVG = "http://www.w3.org/2000/svg";
const NODE_H = 34;
const PAD = 14;
const HEADER = 26;
const CHAR_W = 7.2;

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function textWidth(t) { return Math.max(110, t.length * CHAR_W + 28); }

/** The graph a Map state runs per item. */
export function processorOf(state) {
  return state.ItemProcessor || state.Iterator || null;
}

/** Finds a state by name anywhere in a definition (names are unique in a state machine). */
export function findState(graph, name) {
  for (const [n, st] of Object.entries(graph.States || {})) {
    if (n === name) return st;
    const inner = [];
    if (st.Type === "Map" && processorOf(st)) inner.push(processorOf(st));
    if (st.Type === "Parallel") inner.push(...(st.Branches || []));
    for (const g of inner) { const f = findState(g, name); if (f) return f; }
  }
  return null;
}

function edgesOf(name, st) {
  const out = [];
  if (st.Next) out.push({ to: st.Next, kind: "next" });
  if (st.Type === "Choice") {
    (st.Choices || []).forEach((c, i) => c.Next && out.push({ to: c.Next, kind: "choice", label: `rule ${i + 1}` }));
    if (st.Default) out.push({ to: st.Default, kind: "default", label: "default" });
  }
  for (const c of st.Catch || []) if (c.Next) out.push({ to: c.Next, kind: "catch", label: (c.ErrorEquals || []).join(", ") });
  const ends = st.End || st.Type === "Succeed" || st.Type === "Fail";
  return { out, ends };
}

/** Lays out one graph ({StartAt, States}); `top` adds Start and End markers. */
function layout(graph, top) {
  const g = new dagre.graphlib.Graph({ multigraph: true });
  g.setGraph({ rankdir: "TB", nodesep: 28, ranksep: 36, edgesep: 12, marginx: PAD, marginy: PAD });
  g.setDefaultEdgeLabel(() => ({}));
  const inner = {};
  for (const [name, st] of Object.entries(graph.States || {})) {
    if (st.Type === "Map" && processorOf(st)) {
      const l = layout(processorOf(st), false);
      inner[name] = [l];
      g.setNode(name, { width: Math.max(textWidth(name), l.width + 2 * PAD), height: l.height + HEADER + PAD });
    } else if (st.Type === "Parallel") {
      const ls = (st.Branches || []).map((b) => layout(b, false));
      inner[name] = ls;
      const w = ls.reduce((a, l) => a + l.width, 0) + PAD * (ls.length + 1);
      const hgt = Math.max(0, ...ls.map((l) => l.height));
      g.setNode(name, { width: Math.max(textWidth(name), w), height: hgt + HEADER + PAD });
    } else {
      g.setNode(name, { width: textWidth(name), height: NODE_H });
    }
  }
  if (top) {
    g.setNode("__start", { width: 44, height: 44 });
    g.setNode("__end", { width: 44, height: 44 });
    if (graph.StartAt) g.setEdge("__start", graph.StartAt, { kind: "start" }, "start");
  }
  for (const [name, st] of Object.entries(graph.States || {})) {
    const { out, ends } = edgesOf(name, st);
    out.forEach((e, i) => {
      if (!g.hasNode(e.to)) return;
      g.setEdge(name, e.to, { kind: e.kind, label: e.label, width: e.label ? Math.min(160, e.label.length * 6) : 0, height: e.label ? 12 : 0 }, `${e.kind}${i}`);
    });
    if (top && ends) g.setEdge(name, "__end", { kind: "end" }, "end");
  }
  dagre.layout(g);
  const nodes = g.nodes().map((id) => ({ id, ...g.node(id), state: (graph.States || {})[id], inner: inner[id] }));
  const edges = g.edges().map((e) => ({ ...g.edge(e), from: e.v, to: e.w }));
  const gg = g.graph();
  return { nodes, edges, width: gg.width || 200, height: gg.height || 80 };
}

function statusClass(tally) {
  if (!tally) return "st-none";
  if (tally.failed) return "st-failed";
  if (tally.running) return "st-running";
  if (tally.caught) return "st-caught";
  if (tally.aborted) return "st-aborted";
  if (tally.succeeded) return "st-succeeded";
  return "st-none";
}

function describe(name, st, tally) {
  const parts = [`${name}, ${st.Type} state`];
  if (tally) {
    for (const k of ["succeeded", "caught", "failed", "running", "aborted"]) if (tally[k]) parts.push(`${tally[k]} ${k}`);
  } else parts.push("not run");
  return parts.join(", ");
}

function draw(l, group, states, onPick) {
  for (const e of l.edges) {
    const pts = e.points || [];
    if (!pts.length) continue;
    const d = pts.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
    group.append(s("path", { d, class: `edge ${e.kind}`, "marker-end": "url(#arrow)", "data-from": e.from, "data-to": e.to }));
    if (e.label && e.x !== undefined) group.append(s("text", { x: e.x, y: e.y, class: "edge-label", "text-anchor": "middle" }, e.label));
  }
  for (const n of l.nodes) {
    const x = n.x - n.width / 2, y = n.y - n.height / 2;
    if (n.id === "__start" || n.id === "__end") {
      group.append(s("g", { class: "terminal", "aria-hidden": "true" },
        s("circle", { cx: n.x, cy: n.y, r: 20 }),
        s("text", { x: n.x, y: n.y + 4, "text-anchor": "middle" }, n.id === "__start" ? "Start" : "End")));
      continue;
    }
    const tally = states ? states[n.id] : null;
    const g = s("g", {
      class: `node ${n.inner ? "compound" : ""} ${statusClass(tally)}`, "data-state": n.id, "data-type": n.state.Type,
      "data-status": statusClass(tally).slice(3), tabindex: 0, role: "button", "aria-label": describe(n.id, n.state, tally),
    });
    g.append(s("title", {}, describe(n.id, n.state, tally)));
    g.append(s("rect", { x, y, width: n.width, height: n.height, rx: 6 }));
    const ty = n.inner ? y + 17 : n.y + 4;
    g.append(s("text", { x: n.inner ? x + 10 : n.x, y: ty, "text-anchor": n.inner ? "start" : "middle", "font-weight": n.inner ? 600 : 400 },
      n.inner ? `${n.id} (${n.state.Type})` : n.id));
    const pick = (ev) => { ev.stopPropagation(); onPick && onPick(n.id); };
    g.addEventListener("click", pick);
    g.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); pick(ev); } });
    group.append(g);
    if (n.inner) {
      let ox = x + PAD;
      for (const il of n.inner) {
        const sub = s("g", { transform: `translate(${ox},${y + HEADER})` });
        draw(il, sub, states, onPick);
        group.append(sub);
        ox += il.width + PAD;
      }
    }
  }
}

/**
 * Draws `graph` (a definition object or one of its nested graphs) as an SVG. `states` maps a
 * state name to its tally ({succeeded, caught, failed, running, aborted}) to colour it;
 * `onPick(name)` is called when a state is clicked or chosen with Enter.
 */
export function render(graph, { states = null, onPick = null, label = "State machine graph" } = {}) {
  const l = layout(graph, true);
  const svg = s("svg", { class: "graph", width: l.width, height: l.height, viewBox: `0 0 ${l.width} ${l.height}`, role: "group", "aria-label": label });
  svg.append(s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
    s("path", { d: "M0,0 L10,5 L0,10 z", fill: "#5f6b7a" }))));
  const group = s("g");
  draw(l, group, states, onPick);
  svg.append(group);
  return svg;
}
