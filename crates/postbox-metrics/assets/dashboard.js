// The postbox dashboard: polls /actors and /members once a second and redraws.
// Self-contained on purpose (no libraries, no CDN): it is compiled into the binary.
"use strict";

const HISTORY = 60;            // samples kept per series (one a second)
const SERIES = 6;              // deepest actors charted, besides the total
const COLORS = ["#1d4ed8", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2"];
const history = new Map();     // series key -> { label, values: [] }
let ticks = 0;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children) node.append(child);
  return node;
}

function shortType(type) {
  // "my_app::workers::Worker<T>" -> "Worker<T>": the module path adds little on screen.
  const generic = type.indexOf("<");
  const head = generic < 0 ? type : type.slice(0, generic);
  return head.slice(head.lastIndexOf("::") + 2 || 0) + (generic < 0 ? "" : type.slice(generic));
}

function record(key, label, value) {
  let series = history.get(key);
  if (!series) {
    series = { label, values: new Array(ticks).fill(0) };
    history.set(key, series);
  }
  series.values.push(value);
}

function sample(view) {
  record("total", "all mailboxes", view.total_depth);
  const seen = new Set(["total"]);
  for (const actor of view.top.slice(0, SERIES)) {
    const key = "actor:" + actor.id;
    record(key, actor.path, actor.depth);
    seen.add(key);
  }
  for (const [key, series] of history) {
    if (!seen.has(key)) series.values.push(0);
    if (series.values.length > HISTORY) series.values.splice(0, series.values.length - HISTORY);
  }
  // Forget series that have been flat at zero for the whole window.
  for (const [key, series] of history) {
    if (key !== "total" && series.values.every((v) => v === 0)) history.delete(key);
  }
  ticks = Math.min(ticks + 1, HISTORY);
}

function drawChart() {
  const svg = document.getElementById("depth-chart");
  const width = 800, height = 240, pad = 24;
  let max = 1;
  for (const series of history.values()) max = Math.max(max, ...series.values);
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  for (const fraction of [0, 0.5, 1]) {
    const y = height - pad - fraction * (height - 2 * pad);
    const line = document.createElementNS(ns, "line");
    line.setAttribute("x1", pad); line.setAttribute("x2", width);
    line.setAttribute("y1", y); line.setAttribute("y2", y);
    line.setAttribute("stroke", "#e5e7eb");
    svg.append(line);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", 2); label.setAttribute("y", y + 4);
    label.setAttribute("font-size", "10"); label.setAttribute("fill", "#6b7280");
    label.textContent = Math.round(max * fraction);
    svg.append(label);
  }
  const legend = document.getElementById("legend");
  legend.replaceChildren();
  let index = 0;
  for (const [key, series] of history) {
    const color = COLORS[index++ % COLORS.length];
    const values = series.values;
    const step = (width - pad) / Math.max(HISTORY - 1, 1);
    const offset = HISTORY - values.length;
    const points = values.map((v, i) =>
      `${(pad + (offset + i) * step).toFixed(1)},${(height - pad - (v / max) * (height - 2 * pad)).toFixed(1)}`);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", color);
    line.setAttribute("stroke-width", key === "total" ? "2.5" : "1.5");
    line.setAttribute("data-series", series.label);
    line.setAttribute("data-last", values[values.length - 1]);
    svg.append(line);
    const item = el("li", { "data-series": series.label, "data-depth": values[values.length - 1], style: `--color: ${color}` },
      `${series.label}: ${values[values.length - 1]}`);
    legend.append(item);
  }
  svg.setAttribute("data-samples", ticks);
  svg.setAttribute("data-max", max);
}

function drawTree(view) {
  const byParent = new Map();
  const listed = new Set(view.tree.nodes.map((n) => n.id));
  const roots = [];
  for (const node of view.tree.nodes) {
    if (node.parent !== null && listed.has(node.parent)) {
      if (!byParent.has(node.parent)) byParent.set(node.parent, []);
      byParent.get(node.parent).push(node);
    } else {
      roots.push(node);
    }
  }
  const render = (node) => {
    const depth = el("span", { class: node.depth > 0 ? "depth busy" : "depth", title: "mailbox depth" }, String(node.depth));
    const item = el("li", { "data-actor-id": node.id, "data-path": node.path, "data-depth": node.depth },
      el("span", { class: "path" }, node.path),
      el("span", { class: "type", title: node.actor_type }, shortType(node.actor_type)),
      depth,
      el("span", { class: "type" }, `processed ${node.processed}, restarts ${node.restarts}, ${node.status}`));
    const kids = byParent.get(node.id) || [];
    if (kids.length > 0 || node.children > 0) {
      const list = el("ul");
      for (const kid of kids) list.append(render(kid));
      if (node.children > kids.length) list.append(el("li", { class: "more" }, `… ${node.children - kids.length} more`));
      item.append(list);
    }
    return item;
  };
  document.getElementById("tree").replaceChildren(...roots.map(render));
  document.getElementById("tree-note").textContent = view.tree.truncated
    ? `(${view.tree.nodes.length} of ${view.tree.total} actors shown)` : `(${view.tree.total} actors)`;
}

function drawGroups(view) {
  const rows = view.groups.map((g) => el("tr", { "data-type": g.actor_type },
    el("td", { title: g.actor_type }, shortType(g.actor_type)),
    el("td", { class: "num" }, String(g.actors)),
    el("td", { class: "num" }, String(g.depth_sum)),
    el("td", { class: "num" }, String(g.depth_max))));
  document.querySelector("#groups tbody").replaceChildren(...rows);
}

function drawMembers(view) {
  const rows = view.members.map((m) => el("tr", { "data-member": m.id, "data-status": m.status },
    el("td", {}, m.id + (m.is_self ? " (this node)" : "")),
    el("td", {}, m.address),
    el("td", {}, m.status),
    el("td", { class: "num" }, m.load === null ? "–" : String(m.load)),
    el("td", { class: "num" }, m.shards === null ? "–" : String(m.shards)),
    el("td", { class: "num" }, m.allocated_shards === null ? "–" : String(m.allocated_shards))));
  document.querySelector("#members tbody").replaceChildren(...rows);
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const [actors, members] = await Promise.all([
      fetch("/actors?top=" + SERIES + "&tree=300").then((r) => r.ok ? r.json() : Promise.reject(new Error("/actors: " + r.status))),
      fetch("/members").then((r) => r.ok ? r.json() : Promise.reject(new Error("/members: " + r.status))),
    ]);
    sample(actors);
    drawChart();
    drawTree(actors);
    drawGroups(actors);
    drawMembers(members);
    document.getElementById("summary").textContent =
      `${actors.live} actors, ${actors.total_depth} messages waiting`;
    status.textContent = "";
    status.className = "status";
  } catch (error) {
    status.textContent = "update failed: " + error.message;
    status.className = "status error";
  }
}

refresh();
setInterval(refresh, 1000);
