// Runs view: the sortable, filterable table of stored runs; ticking a row picks the model for the other views.
"use strict";
const RUNS = {sort: "created", order: "desc", metrics: [], shown: []};
const ID_COLS = ["id", "method", "dataset", "forget", "model", "seed", "config"];

async function loadRuns() {
  const p = new URLSearchParams({sort: RUNS.sort, order: RUNS.order});
  const q = document.getElementById("runs-q").value.trim();
  if (q) p.set("q", q);
  for (const f of ["dataset", "method"]) {
    const v = document.getElementById("runs-" + f).value;
    if (v) p.set(f, v);
  }
  const res = await api("/api/runs?" + p.toString());
  RUNS.metrics = res.metrics; RUNS.shown = res.shown_metrics;
  for (const r of res.runs) UL.byId[r.id] = r;
  UL.rows = res.runs;
  document.getElementById("runs-count").textContent = `${res.total} runs`;
  renderRunsTable();
}

function renderRunsTable() {
  const all = document.getElementById("runs-all-metrics").checked;
  const mcols = all ? RUNS.metrics : RUNS.shown;
  const cols = ID_COLS.concat(mcols);
  const arrow = (c) => (c === RUNS.sort ? (RUNS.order === "asc" ? " ▲" : " ▼") : "");
  let html = '<tr><th class="noexport">pick</th>' +
    cols.map((c) => `<th data-col="${esc(c)}">${esc(c)}${arrow(c)}</th>`).join("") + "</tr>";
  for (const r of UL.rows) {
    const sel = UL.picked.includes(r.id);
    const box = r.task === "qa" || r.method === "oracle-floor" ? "" :
      `<input type="checkbox" class="pick" data-id="${r.id}"${sel ? " checked" : ""}${r.analysable ? "" : " disabled"}>`;
    html += `<tr data-id="${r.id}" class="${sel ? "sel" : ""}"><td class="noexport">${box}</td>` +
      cols.map((c) => {
        const v = r[c];
        const text = ID_COLS.includes(c) ? esc(c === "id" ? String(v).slice(0, 8) : v) : fmt(v);
        return `<td class="${ID_COLS.includes(c) ? "t" : ""}" data-value="${esc(v)}">${text}</td>`;
      }).join("") + "</tr>";
  }
  document.getElementById("runs-table").innerHTML = html;
}

function togglePick(id, on) {
  UL.picked = UL.picked.filter((x) => x !== id);
  if (on) UL.picked.push(id);
  sessionStorage.setItem("ul-picked", JSON.stringify(UL.picked));
  renderPicked();
  renderRunsTable();
}

async function initRuns() {
  UL.info = await api("/api/info");
  document.getElementById("nav-deletions").hidden = !UL.info.deletions;
  if (UL.info.umap) document.getElementById("inst-proj").insertAdjacentHTML("beforeend", '<option value="umap">UMAP</option>');
  const everything = await api("/api/runs?limit=100000");
  for (const r of everything.runs) UL.byId[r.id] = r;
  for (const f of ["dataset", "method"]) {
    const vals = [...new Set(everything.runs.map((r) => r[f]))].sort();
    document.getElementById("runs-" + f).insertAdjacentHTML("beforeend",
      vals.map((v) => `<option>${esc(v)}</option>`).join(""));
  }
  try { UL.picked = JSON.parse(sessionStorage.getItem("ul-picked") || "[]").filter((id) => UL.byId[id]); }
  catch (e) { UL.picked = []; }
  renderPicked();
  await loadRuns();
  const reports = (await api("/api/reports")).reports;
  if (reports.length) {
    document.getElementById("runs-reports").innerHTML = "Reports in this results directory: " +
      reports.map((r) => `<a href="${esc(r.url)}" target="_blank">${esc(r.name)}</a>`).join(", ");
  }
}

document.getElementById("runs-table").addEventListener("click", (ev) => {
  const th = ev.target.closest("th[data-col]");
  if (th) {
    const c = th.dataset.col;
    RUNS.order = RUNS.sort === c && RUNS.order === "asc" ? "desc" : "asc";
    RUNS.sort = c;
    loadRuns().catch((e) => showError("runs", e));
    return;
  }
  const box = ev.target.closest("input.pick");
  if (box) togglePick(box.dataset.id, box.checked);
});
let runsTimer = null;
document.getElementById("runs-q").addEventListener("input", () => {
  clearTimeout(runsTimer);
  runsTimer = setTimeout(() => loadRuns().catch((e) => showError("runs", e)), 200);
});
for (const id of ["runs-dataset", "runs-method"]) document.getElementById(id).addEventListener("change", () => loadRuns());
document.getElementById("runs-all-metrics").addEventListener("change", renderRunsTable);
document.getElementById("runs-clear").addEventListener("click", () => {
  UL.picked = []; sessionStorage.setItem("ul-picked", "[]"); renderPicked(); renderRunsTable();
});
UL.renderers.runs = async () => { clearError("runs"); };
