// Shared state and helpers of the dashboard: API calls, navigation, picked models, plot / table export.
"use strict";
const UL = {
  rows: [], byId: {}, picked: [], view: "runs", info: {}, data: {}, renderers: {},
};

async function api(path, opts) {
  const r = await fetch(path, opts || {});
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    const d = body.detail;
    throw new Error(typeof d === "string" ? d : JSON.stringify(d || body));
  }
  return body;
}

// Per-run view data (class, instance, layer, attack), fetched once per page.
async function runView(id, name) {
  const key = id + "/" + name;
  if (!UL.data[key]) UL.data[key] = api(`/api/runs/${id}/${name}`);
  return UL.data[key];
}

function label(id) {
  const r = UL.byId[id];
  if (!r) return id;
  return `${r.method} s${r.seed} · ${id.slice(0, 6)}`;
}

// The models a view shows: the picked runs, then the oracle of each (the reference) if not picked.
function shownModels() {
  const out = UL.picked.filter((id) => UL.byId[id]);
  for (const id of UL.picked) {
    const o = UL.byId[id] && UL.byId[id].oracle_id;
    if (o && !out.includes(o)) out.push(o);
  }
  return out;
}

function isReference(id) { return !UL.picked.includes(id); }

function renderPicked() {
  const el = document.getElementById("picked");
  const ids = shownModels();
  if (!ids.length) { el.textContent = "No models picked: tick runs in the Runs view."; return; }
  el.innerHTML = "Comparing: " + ids.map((id) =>
    `<span class="chip${isReference(id) ? " ref" : ""}">${esc(label(id))}${isReference(id) ? " (reference)" : ""}</span>`).join("");
}

function esc(s) {
  return String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g, (c) =>
    ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}

function fmt(v, d) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(d === undefined ? 2 : d);
  return String(v);
}

// plotly.js 3 takes titles only as {text}: accept plain strings for the figure and axis titles.
function titled(layout) {
  const out = Object.assign({}, layout);
  for (const k of Object.keys(out)) {
    if (k === "title" && typeof out[k] === "string") out[k] = {text: out[k]};
    else if (/^[xy]axis/.test(k) && typeof out[k].title === "string") out[k] = Object.assign({}, out[k], {title: {text: out[k].title}});
  }
  return out;
}

// A plotly figure with PNG / SVG export buttons above it.
function plot(div, traces, layout, config) {
  const el = typeof div === "string" ? document.getElementById(div) : div;
  layout = titled(layout);
  Plotly.react(el, traces, Object.assign({margin: {t: 40, l: 55, r: 20, b: 50}}, layout),
    Object.assign({displaylogo: false, responsive: true}, config || {}));
  let bar = el.previousElementSibling;
  if (!bar || !bar.classList.contains("exports")) {
    bar = document.createElement("div");
    bar.className = "exports";
    for (const f of ["png", "svg"]) {
      const b = document.createElement("button");
      b.className = "export"; b.textContent = f.toUpperCase(); b.dataset.format = f;
      b.onclick = () => Plotly.downloadImage(el, {format: f, filename: el.id || "plot"});
      bar.appendChild(b);
    }
    el.parentNode.insertBefore(bar, el);
  }
  return el;
}

function tableCSV(table) {
  const lines = [];
  for (const tr of table.querySelectorAll("tr")) {
    const cells = [...tr.querySelectorAll("th,td")].filter((c) => !c.classList.contains("noexport"));
    lines.push(cells.map((c) => {
      const t = c.dataset.value !== undefined ? c.dataset.value : c.textContent.trim();
      return /[",\n]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
    }).join(","));
  }
  return lines.join("\n") + "\n";
}

function downloadText(name, text, type) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], {type: type || "text/csv"}));
  a.download = name;
  document.body.appendChild(a); a.click(); a.remove();
}

document.addEventListener("click", (ev) => {
  const b = ev.target.closest("button.csv");
  if (b) downloadText(b.dataset.table + ".csv", tableCSV(document.getElementById(b.dataset.table)));
});

function needModels(el) {
  if (shownModels().length) return false;
  (typeof el === "string" ? document.getElementById(el) : el).innerHTML =
    '<p class="muted">Pick models in the Runs view first.</p>';
  return true;
}

// plotly.min.js (4.8 MB, served from the installed plotly package) loads after the runs table is up, so the first
// page does not wait for the browser to compile it; plot views wait for it.
let plotlyLoading = null;
function ensurePlotly() {
  if (window.Plotly) return Promise.resolve();
  if (!plotlyLoading) {
    plotlyLoading = new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = "/vendor/plotly.min.js";
      s.onload = () => resolve();
      s.onerror = () => reject(new Error("plotly.min.js could not be loaded: pip install 'unlearnlab[web]'"));
      document.head.appendChild(s);
    });
  }
  return plotlyLoading;
}

async function show(view) {
  UL.view = view;
  for (const b of document.querySelectorAll("#nav button")) b.classList.toggle("active", b.dataset.view === view);
  for (const s of document.querySelectorAll("section.view")) s.hidden = s.id !== "view-" + view;
  location.hash = view;
  const r = UL.renderers[view];
  if (r) {
    try { if (view !== "runs") await ensurePlotly(); await r(); } catch (e) { console.error(e); showError(view, e); }
  }
}

function showError(view, e) {
  const s = document.getElementById("view-" + view);
  let p = s.querySelector(".error");
  if (!p) { p = document.createElement("p"); p.className = "error"; s.prepend(p); }
  p.textContent = "error: " + e.message;
}

function clearError(view) {
  const p = document.querySelector(`#view-${view} .error`);
  if (p) p.remove();
}

document.getElementById("nav").addEventListener("click", (ev) => {
  const b = ev.target.closest("button[data-view]");
  if (b) show(b.dataset.view);
});
