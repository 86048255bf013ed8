// The console's pages. Each one renders into <main> from the API's operations and the
// console's read-only views, and refreshes itself while its run is going on.
import { h, call, get, link, crumbs, setLive, every } from "./app.js";
import { render, findState, processorOf } from "./graph.js";

const EXECUTION_STATUSES = ["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE"];
const ITERATION_STATUSES = ["RUNNING", "SUCCEEDED", "FAILED", "ABORTED"];
const POLL_MS = 2000;

const nameOf = (arn) => (arn || "").split(":").pop();
const machineOfExecution = (arn) => {
  const p = (arn || "").split(":");
  return p.slice(0, 5).join(":") + ":stateMachine:" + p[6];
};
function when(epoch) { return epoch ? new Date(epoch * 1000).toLocaleString() : "—"; }
function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}
const badge = (status) => h("span", { class: `badge s-${status}` }, status);
function pretty(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "string") { try { return JSON.stringify(JSON.parse(v), null, 2); } catch { return v; } }
  return JSON.stringify(v, null, 2);
}
function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(Boolean).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}
function block(title, id, value) {
  return h("section", { class: "panel", "aria-labelledby": `${id}-h` }, h("h2", { id: `${id}-h` }, title), h("pre", { id, tabindex: 0 }, pretty(value)));
}
function legend() {
  return h("ul", { class: "legend", "aria-label": "Colours" },
    [["succeeded", "Succeeded"], ["caught", "Failed, caught"], ["failed", "Failed"], ["running", "Running"], ["none", "Not run"]]
      .map(([k, t]) => h("li", { class: `k-${k}` }, t)));
}
function graphBlock(graph, opts) {
  const wrap = h("div", { class: "graph-wrap", id: "graph" });
  try { wrap.append(render(graph, opts)); } catch (e) { wrap.append(h("p", { class: "error" }, `Cannot draw the graph: ${e.message}`)); }
  return wrap;
}

/** An event history table with a text filter and rows that open to show the details. */
function eventsTable(events, { id = "events", filter = "" } = {}) {
  const input = h("input", { type: "search", id: `${id}-filter`, value: filter, placeholder: "type, state or error" });
  const count = h("span", { class: "muted", role: "status" });
  const body = h("tbody");
  const detailsOf = (e) => Object.entries(e).find(([k]) => k.endsWith("EventDetails"))?.[1];
  const stateOf = (e) => detailsOf(e)?.name || "";
  const fill = () => {
    const f = input.value.trim().toLowerCase();
    const shown = events.filter((e) => !f || `${e.type} ${stateOf(e)} ${JSON.stringify(detailsOf(e) || {})}`.toLowerCase().includes(f));
    count.textContent = `${shown.length} of ${events.length} events`;
    body.replaceChildren(...shown.flatMap((e) => {
      const d = detailsOf(e);
      const detailRow = h("tr", { class: "detail", hidden: true }, h("td", { colspan: 5 }, h("pre", {}, pretty(d || {}))));
      const btn = h("button", { type: "button", class: "expand", "aria-expanded": "false", "aria-label": `Details of event ${e.id}` }, "+");
      btn.addEventListener("click", () => {
        const open = detailRow.hidden;
        detailRow.hidden = !open;
        btn.setAttribute("aria-expanded", String(open));
        btn.textContent = open ? "−" : "+";
      });
      return [h("tr", { "data-event-id": e.id, "data-type": e.type },
        h("td", {}, btn), h("td", { class: "num" }, e.id), h("td", {}, e.type), h("td", {}, stateOf(e) || (d?.error ? `${d.error}` : "")),
        h("td", { class: "hide-narrow" }, when(e.timestamp))), detailRow];
    }));
  };
  input.addEventListener("input", fill);
  fill();
  const section = h("section", { "aria-labelledby": `${id}-h`, id },
    h("h2", { id: `${id}-h` }, "Events"),
    h("div", { class: "toolbar" }, h("label", { for: `${id}-filter` }, "Filter events", input), count),
    h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, h("span", { class: "muted" }, "Details")), h("th", {}, "ID"), h("th", {}, "Type"), h("th", {}, "State or error"), h("th", { class: "hide-narrow" }, "Time"))),
      body)));
  section.setFilter = (text) => { input.value = text; fill(); input.focus(); };
  return section;
}

async function machines(main) {
  crumbs(["State machines"]);
  const r = await call("ListStateMachines", { maxResults: 1000 });
  main.replaceChildren(
    h("h1", {}, "State machines"),
    r.stateMachines.length === 0 ? h("p", {}, "None yet: create one with `aws stepfunctions create-state-machine` or boto3.") :
      h("div", { class: "table-wrap" }, h("table", { id: "machines" },
        h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Type"), h("th", { class: "hide-narrow" }, "Created"))),
        h("tbody", {}, r.stateMachines.map((m) => h("tr", { "data-name": m.name },
          h("td", {}, h("a", { href: link("machine", { arn: m.stateMachineArn }) }, m.name)),
          h("td", {}, m.type), h("td", { class: "hide-narrow" }, when(m.creationDate))))))));
}

async function machine(main, { arn }) {
  const m = await call("DescribeStateMachine", { stateMachineArn: arn });
  crumbs(["State machines", link("machines")], [m.name]);
  let definition = {};
  try { definition = JSON.parse(m.definition); } catch { /* drawn as empty */ }
  const status = h("select", { id: "status-filter" }, h("option", { value: "" }, "All"), EXECUTION_STATUSES.map((s) => h("option", { value: s }, s)));
  const body = h("tbody");
  const more = h("button", { type: "button", id: "more-executions", hidden: true }, "Load more");
  let token = null;
  const load = async (reset) => {
    const input = { stateMachineArn: arn, maxResults: 50 };
    if (status.value) input.statusFilter = status.value;
    if (!reset && token) input.nextToken = token;
    const r = await call("ListExecutions", input);
    token = r.nextToken || null;
    more.hidden = !token;
    const rows = r.executions.map((e) => h("tr", { "data-name": e.name, "data-status": e.status },
      h("td", {}, h("a", { href: link("execution", { arn: e.executionArn }) }, e.name)),
      h("td", {}, badge(e.status)), h("td", { class: "hide-narrow" }, when(e.startDate)), h("td", { class: "hide-narrow" }, when(e.stopDate))));
    if (reset) body.replaceChildren(...rows); else body.append(...rows);
  };
  status.addEventListener("change", () => load(true));
  more.addEventListener("click", () => load(false));
  main.replaceChildren(
    h("h1", {}, m.name),
    h("div", { class: "panel" }, facts([["ARN", m.stateMachineArn], ["Type", m.type], ["Status", m.status], ["Created", when(m.creationDate)], ["Role", m.roleArn]])),
    h("h2", {}, "Graph"), graphBlock(definition, { label: `Graph of ${m.name}` }),
    h("section", { "aria-labelledby": "executions-h" },
      h("h2", { id: "executions-h" }, "Executions"),
      h("div", { class: "toolbar" }, h("label", { for: "status-filter" }, "Status", status)),
      h("div", { class: "table-wrap" }, h("table", { id: "executions" },
        h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Status"), h("th", { class: "hide-narrow" }, "Started"), h("th", { class: "hide-narrow" }, "Ended"))), body)),
      more),
    h("details", {}, h("summary", {}, "Definition"), h("pre", {}, pretty(m.definition))));
  await load(true);
}

async function allEvents(arn) {
  const events = [];
  let token;
  // Pages of 1000 up to 20,000 events; the rest stay reachable through GetExecutionHistory.
  for (let i = 0; i < 20; i++) {
    const r = await call("GetExecutionHistory", { executionArn: arn, maxResults: 1000, ...(token ? { nextToken: token } : {}) });
    events.push(...r.events);
    token = r.nextToken;
    if (!token) break;
  }
  return events;
}

function mapRunRows(arn, runs) {
  return runs.map((r) => {
    const done = (r.counts.SUCCEEDED || 0) + (r.counts.FAILED || 0) + (r.counts.ABORTED || 0);
    return h("tr", { "data-map": r.name },
      h("td", {}, h("a", { href: link("maprun", { arn, parent: r.parent, name: r.name }) }, r.name)),
      h("td", { class: "num" }, r.total),
      h("td", {}, h("progress", { max: r.total || 1, value: done, "aria-label": `${done} of ${r.total} iterations done` }), ` ${done}/${r.total}`),
      h("td", { class: "hide-narrow" }, ITERATION_STATUSES.filter((s) => r.counts[s]).map((s) => `${s} ${r.counts[s]}`).join(", ")));
  });
}

async function execution(main, { arn }) {
  // Built once; a poll refills the parts, so focus, scroll and the events filter stay put.
  const title = h("h1");
  const summary = h("div", { class: "panel" });
  const graphSlot = h("div");
  const mapsSlot = h("div");
  const ioSlot = h("div", { class: "grid" });
  const eventsSlot = h("div");
  let table = null;
  let shownEvents = -1;
  let drawn = null;
  const fill = async () => {
    const v = await get("execution", { arn });
    const e = v.execution;
    crumbs(["State machines", link("machines")], [nameOf(e.stateMachineArn), link("machine", { arn: e.stateMachineArn })], [e.name]);
    title.replaceChildren(e.name, " ", badge(e.status));
    summary.replaceChildren(facts([["ARN", e.executionArn], ["Started", when(e.startDate)], ["Ended", when(e.stopDate)],
      ["Duration", duration(e.stopDate ? Math.round((e.stopDate - e.startDate) * 1000) : null)],
      e.error && ["Error", h("span", { class: "error", id: "execution-error" }, e.error)], e.cause && ["Cause", e.cause]]));
    const key = JSON.stringify(v.states);
    if (key !== drawn) {
      drawn = key;
      let definition = {};
      try { definition = JSON.parse(v.definition || "{}"); } catch { /* none */ }
      graphSlot.replaceChildren(graphBlock(definition, { states: v.states, label: `Graph of ${e.name}`, onPick: (name) => table && table.setFilter(name) }));
    }
    mapsSlot.replaceChildren(v.mapRuns.length ? h("section", { "aria-labelledby": "maps-h" }, h("h2", { id: "maps-h" }, "Map runs"),
      h("div", { class: "table-wrap" }, h("table", { id: "map-runs" },
        h("thead", {}, h("tr", {}, h("th", {}, "Map state"), h("th", {}, "Items"), h("th", {}, "Progress"), h("th", { class: "hide-narrow" }, "By status"))),
        h("tbody", {}, mapRunRows(arn, v.mapRuns))))) : "",
      (v.distributedMapRuns || []).length ? h("section", { "aria-labelledby": "dmaps-h" }, h("h2", { id: "dmaps-h" }, "Distributed Map runs"),
        h("div", { class: "table-wrap" }, h("table", { id: "distributed-map-runs" },
          h("thead", {}, h("tr", {}, h("th", {}, "Map run"), h("th", {}, "Started"), h("th", {}, "Ended"))),
          h("tbody", {}, v.distributedMapRuns.map((r) => h("tr", {},
            h("td", {}, h("a", { href: link("dmaprun", { arn, run: r.mapRunArn }) }, nameOf(r.mapRunArn))),
            h("td", {}, when(r.startDate)), h("td", {}, when(r.stopDate)))))))) : "");
    ioSlot.replaceChildren(block("Input", "input", e.input), block("Output", "output", e.output ?? (e.error ? { error: e.error, cause: e.cause } : null)));
    if (v.events !== shownEvents) {
      shownEvents = v.events;
      const filter = table ? document.getElementById("events-filter").value : "";
      table = eventsTable(await allEvents(arn), { filter });
      eventsSlot.replaceChildren(table);
    }
    setLive(e.status === "RUNNING" ? `live: ${v.events} events` : "");
    return e.status;
  };
  main.replaceChildren(title, summary, h("h2", {}, "Graph"), legend(), graphSlot, mapsSlot, ioSlot, eventsSlot);
  if ((await fill()) === "RUNNING") {
    let going = true;
    every(POLL_MS, async () => { if (going && (await fill()) !== "RUNNING") going = false; });
  }
}

async function mapRun(main, { arn, parent = "", name, status = "", offset = "0" }) {
  const limit = 50;
  const filter = h("select", { id: "iteration-status" }, h("option", { value: "" }, "All"), ITERATION_STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)));
  filter.addEventListener("change", () => { location.hash = link("maprun", { arn, parent, name, status: filter.value, offset: 0 }); });
  const countsSlot = h("div");
  const tableSlot = h("div", { class: "table-wrap" });
  const pagerSlot = h("div");
  const fill = async () => {
    const r = await get("maprun", { arn, parent, name, status, offset, limit });
    crumbs(["State machines", link("machines")], [nameOf(machineOfExecution(arn)), link("machine", { arn: machineOfExecution(arn) })],
      [nameOf(arn), link("execution", { arn })], [`Map run: ${name}`]);
    const done = (r.counts.SUCCEEDED || 0) + (r.counts.FAILED || 0) + (r.counts.ABORTED || 0);
    const off = Number(offset);
    countsSlot.replaceChildren(
      h("ul", { class: "counts", id: "counts", "aria-label": "Iterations by status" },
        h("li", { "data-status": "TOTAL" }, h("span", { class: "n" }, r.total), "Total"),
        ITERATION_STATUSES.map((s) => h("li", { "data-status": s }, h("span", { class: "n" }, r.counts[s] || 0), badge(s)))),
      h("label", { for: "progress" }, `Progress: ${done} of ${r.total} done`),
      h("progress", { id: "progress", max: r.total || 1, value: done }));
    tableSlot.replaceChildren(h("table", { id: "iterations" },
      h("thead", {}, h("tr", {}, h("th", {}, "Index"), h("th", {}, "Status"), h("th", {}, "Outcome"), h("th", {}, "Duration"), h("th", { class: "hide-narrow" }, "Started"), h("th", {}, "Iteration"))),
      h("tbody", {}, r.iterations.map((i) => h("tr", { "data-index": i.index, "data-status": i.status },
        h("td", { class: "num" }, i.index), h("td", {}, badge(i.status)),
        h("td", { class: "outcome" }, i.error ? `${i.error}${i.cause ? ": " + i.cause : ""}` : `ended in ${i.lastState || "—"}`),
        h("td", { class: "num" }, duration(i.durationMs)), h("td", { class: "hide-narrow" }, when(i.start)),
        h("td", {}, h("a", { href: link("iteration", { arn, cursor: i.cursor }), "aria-label": `Iteration ${i.index}` }, "View")))))));
    pagerSlot.replaceChildren(h("div", { class: "toolbar", role: "navigation", "aria-label": "Pages of iterations" },
      off > 0 ? h("a", { href: link("maprun", { arn, parent, name, status, offset: Math.max(0, off - limit) }), id: "prev-page" }, "‹ Previous") : null,
      h("span", { id: "page-range" }, r.matched ? `${off + 1}–${Math.min(off + limit, r.matched)} of ${r.matched}` : "none"),
      off + limit < r.matched ? h("a", { href: link("maprun", { arn, parent, name, status, offset: off + limit }), id: "next-page" }, "Next ›") : null));
    setLive(r.executionStatus === "RUNNING" ? `live: ${done}/${r.total}` : "");
    return r.executionStatus;
  };
  main.replaceChildren(h("h1", {}, `Map run: ${name}`), countsSlot,
    h("div", { class: "toolbar" }, h("label", { for: "iteration-status" }, "Status", filter)), tableSlot, pagerSlot);
  if ((await fill()) === "RUNNING") {
    let going = true;
    every(POLL_MS, async () => { if (going && (await fill()) !== "RUNNING") going = false; });
  }
}

/** A Distributed Map run: DescribeMapRun's counts and a page of its child executions
 * (ListExecutions with mapRunArn, the last to end first), as AWS's Map Run page has them. */
async function distributedMapRun(main, { arn, run, token = "" }) {
  const limit = 50;
  const countsSlot = h("div");
  const tableSlot = h("div", { class: "table-wrap" });
  const pagerSlot = h("div");
  const fill = async () => {
    const d = await call("DescribeMapRun", { mapRunArn: run });
    crumbs(["State machines", link("machines")], [nameOf(machineOfExecution(arn)), link("machine", { arn: machineOfExecution(arn) })],
      [nameOf(arn), link("execution", { arn })], [`Map run ${nameOf(run)}`]);
    const c = d.itemCounts || {};
    countsSlot.replaceChildren(
      h("div", { class: "panel" }, facts([["Status", badge(d.status)], ["ARN", d.mapRunArn], ["Started", when(d.startDate)], ["Ended", when(d.stopDate)],
        ["Max concurrency", d.maxConcurrency || "no limit"], ["Tolerated failures", `${d.toleratedFailureCount} items or ${d.toleratedFailurePercentage}%`]])),
      h("ul", { class: "counts", id: "counts", "aria-label": "Items by status" },
        h("li", { "data-status": "TOTAL" }, h("span", { class: "n" }, c.total || 0), "Total"),
        ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"].map((s) => {
          const k = s === "TIMED_OUT" ? "timedOut" : s.toLowerCase();
          return h("li", { "data-status": s }, h("span", { class: "n" }, c[k] || 0), badge(s));
        })));
    if (d.status === "RUNNING") {
      tableSlot.replaceChildren(h("p", { class: "muted" }, "The child executions are listed once the run ends."));
      pagerSlot.replaceChildren();
      return d.status;
    }
    const page = await call("ListExecutions", token ? { mapRunArn: run, maxResults: limit, nextToken: token } : { mapRunArn: run, maxResults: limit });
    tableSlot.replaceChildren(h("table", { id: "children" },
      h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Status"), h("th", {}, "Duration"), h("th", { class: "hide-narrow" }, "Started"))),
      h("tbody", {}, page.executions.map((e) => h("tr", { "data-status": e.status },
        h("td", {}, e.name), h("td", {}, badge(e.status)),
        h("td", { class: "num" }, duration(e.stopDate ? Math.round((e.stopDate - e.startDate) * 1000) : null)),
        h("td", { class: "hide-narrow" }, when(e.startDate)))))));
    pagerSlot.replaceChildren(h("div", { class: "toolbar", role: "navigation", "aria-label": "Pages of child executions" },
      token ? h("a", { href: link("dmaprun", { arn, run }), id: "first-page" }, "« First") : null,
      page.nextToken ? h("a", { href: link("dmaprun", { arn, run, token: page.nextToken }), id: "next-page" }, "Next ›") : null));
    return d.status;
  };
  main.replaceChildren(h("h1", {}, `Map run ${nameOf(run)}`), countsSlot, tableSlot, pagerSlot);
  if ((await fill()) === "RUNNING") {
    let going = true;
    every(POLL_MS, async () => { if (going && (await fill()) !== "RUNNING") going = false; });
  }
}

async function iteration(main, { arn, cursor }) {
  const [it, ex] = await Promise.all([get("iteration", { arn, cursor }), get("execution", { arn })]);
  let definition = {};
  try { definition = JSON.parse(ex.definition || "{}"); } catch { /* none */ }
  const mapState = findState(definition, it.mapName);
  const parent = cursor.slice(0, cursor.lastIndexOf("/"));
  crumbs(["State machines", link("machines")], [nameOf(ex.execution.stateMachineArn), link("machine", { arn: ex.execution.stateMachineArn })],
    [ex.execution.name, link("execution", { arn })], [`Map run: ${it.mapName}`, link("maprun", { arn, parent, name: it.mapName })], [`Iteration ${it.index}`]);
  const table = eventsTable(it.events, { id: "events" });
  main.replaceChildren(
    h("h1", {}, `Iteration ${it.index} of ${it.mapName} `, badge(it.status)),
    h("div", { class: "panel" }, facts([["Started", when(it.start)], ["Ended", when(it.stop)], ["Duration", duration(it.durationMs)],
      it.error && ["Error", h("span", { class: "error" }, it.error)], it.cause && ["Cause", it.cause]])),
    h("section", { "aria-labelledby": "path-h" }, h("h2", { id: "path-h" }, "Path"),
      h("ol", { class: "path", id: "iteration-path" }, it.path.map((s) => h("li", { "data-state": s.name, "data-status": s.status },
        h("strong", {}, s.name), " ", badge(s.status === "CAUGHT" ? "CAUGHT" : s.status),
        s.error ? h("span", { class: "error" }, ` ${s.error}${s.cause ? ": " + s.cause : ""}`) : null,
        s.retries ? h("span", { class: "muted" }, ` (${s.retries} retried)`) : null)))),
    h("h2", {}, "Graph"), legend(),
    mapState && processorOf(mapState) ? graphBlock(processorOf(mapState), { states: it.states, label: `Graph of iteration ${it.index}`, onPick: (n) => table.setFilter(n) }) : h("p", {}, "No graph: the state machine is gone."),
    h("div", { class: "grid" }, block("Input", "input", it.input), block("Output", "output", it.output)),
    it.eventsTruncated ? h("p", { class: "muted" }, "Showing the first 1000 events.") : null,
    table);
}

export const pages = { machines, machine, execution, maprun: mapRun, dmaprun: distributedMapRun, iteration };
