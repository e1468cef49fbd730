// LM, Trade-off and Deletions views, then start-up.
"use strict";

UL.renderers.lm = async () => {
  clearError("lm");
  const res = await api("/api/lm");
  const note = document.getElementById("lm-note");
  if (!res.runs.length) {
    note.textContent = "No language-model runs in this store (run one with `unlearnlab run --task qa ...`).";
    document.getElementById("lm-table").innerHTML = "";
    return;
  }
  note.textContent = "Forget quality vs model utility per run (" + res.note + ").";
  const cols = ["id", "method", "seed", "Forget Quality", "Model Utility", "forget_ROUGE", "forget_TruthRatio",
                "retain_ROUGE", "PrivLeak"];
  document.getElementById("lm-table").innerHTML = "<tr>" + cols.map((c) => `<th>${esc(c)}</th>`).join("") + "</tr>" +
    res.runs.map((r) => "<tr>" + cols.map((c) => `<td data-value="${esc(r[c])}">${c === "id" ? esc(r.id.slice(0, 8)) : fmt(r[c], 3)}</td>`).join("") + "</tr>").join("");
  document.querySelectorAll("#lm-table tr").forEach((tr, i) => {
    if (i > 0) tr.addEventListener("click", () => lmAnswers(res.runs[i - 1].id));
  });
  plot("lm-plot", [{type: "scatter", mode: "markers+text", x: res.runs.map((r) => r["Model Utility"]),
    y: res.runs.map((r) => r["Forget Quality"]), text: res.runs.map((r) => r.method), textposition: "top center"}],
    {title: "Forget quality vs model utility", xaxis: {title: "model utility"}, yaxis: {title: "forget quality", type: "log"}});
};

async function lmAnswers(id) {
  const box = document.getElementById("lm-answers");
  let res;
  try { res = await api(`/api/lm/${encodeURIComponent(id)}/answers?split=forget&limit=50`); }
  catch (e) { box.innerHTML = `<tr><td>${esc(e.message)}</td></tr>`; return; }
  const cell = (a) => a ? `${esc(a.answer)}<br><small>ROUGE ${fmt(a.rouge, 2)}, TR ${fmt(a.truth_ratio, 2)}</small>` : "–";
  box.innerHTML = `<tr><th>question</th><th>expected</th><th>target</th><th>oracle</th><th>${esc(res.method)}</th></tr>` +
    res.questions.map((q) => `<tr><td>${esc(q.question)}</td><td>${esc(q.expected)}</td><td>${cell(q.target)}</td>` +
      `<td>${cell(q.oracle)}</td><td>${cell(q.run)}</td></tr>`).join("");
}

UL.renderers.tradeoff = async () => {
  clearError("tradeoff");
  const sel = document.getElementById("trade-scenario");
  const res = await api("/api/tradeoff");
  if (!sel.options.length) sel.innerHTML = res.scenarios.map((s) => `<option>${esc(s)}</option>`).join("");
  const sc = sel.value;
  const pts = res.points.filter((p) => p.scenario === sc);
  const fronts = res.fronts[sc] || {gap_rte: [], fq_mu: []};
  const scatter = (xk, yk, front, title) => {
    const have = pts.filter((p) => p[xk] !== null && p[yk] !== null);
    const f = have.filter((p) => front.includes(p.id)).sort((a, b) => a[xk] - b[xk]);
    return [[{type: "scatter", mode: "markers+text", name: "runs", x: have.map((p) => p[xk]), y: have.map((p) => p[yk]),
              text: have.map((p) => p.method), textposition: "top center",
              customdata: have.map((p) => p.id), hovertemplate: "%{text} (%{customdata})<br>%{x:.3g}, %{y:.3g}<extra></extra>"},
             {type: "scatter", mode: "lines", name: "Pareto front", x: f.map((p) => p[xk]), y: f.map((p) => p[yk]),
              line: {color: "#f0b429", width: 3}}],
            {title: title, xaxis: {title: xk}, yaxis: {title: yk}}];
  };
  const [t1, l1] = scatter("RTE", "Avg.Gap", fronts.gap_rte, "Avg.Gap (lower = closer to retraining) vs run time (s)");
  plot("trade-gap", t1, l1);
  if (pts.some((p) => p["Forget Quality"] !== null && p["Model Utility"] !== null)) {
    const [t2, l2] = scatter("Model Utility", "Forget Quality", fronts.fq_mu, "Forget quality vs model utility");
    plot("trade-fq", t2, l2);
  } else {
    document.getElementById("trade-fq").innerHTML = '<p class="muted">Forget quality / model utility: language-model runs only.</p>';
  }
};
document.getElementById("trade-scenario").addEventListener("change", () => show("tradeoff"));

function keyHeaders() {
  const k = document.getElementById("del-key").value.trim();
  sessionStorage.setItem("ul-del-key", k);
  return k ? {Authorization: "Bearer " + k} : {};
}

UL.renderers.deletions = async () => {
  clearError("deletions");
  const over = document.getElementById("del-overdue").checked;
  const res = await api("/ledger-api/deletions" + (over ? "?overdue=true" : ""), {headers: keyHeaders()});
  const cols = ["request_id", "status", "received_at", "deadline", "overdue"];
  document.getElementById("del-table").innerHTML = "<tr>" + cols.map((c) => `<th>${c}</th>`).join("") +
    '<th class="noexport">certificate</th></tr>' + res.requests.map((r) => "<tr>" +
      cols.map((c) => `<td class="t">${esc(r[c])}</td>`).join("") + '<td class="noexport">' +
      (r.status === "completed" ? `<button class="verify" data-id="${esc(r.request_id)}">verify</button>` : "") +
      "</td></tr>").join("");
  document.getElementById("del-status").textContent = `${res.count} requests` +
    (res.requests.some((r) => r.overdue) ? ` (${res.requests.filter((r) => r.overdue).length} overdue)` : "");
};
document.getElementById("del-table").addEventListener("click", async (ev) => {
  const b = ev.target.closest("button.verify");
  if (!b) return;
  const out = document.getElementById("del-status");
  try {
    const v = await api(`/api/deletions/${encodeURIComponent(b.dataset.id)}/verify`, {headers: keyHeaders()});
    out.textContent = `certificate of ${b.dataset.id}: ${v.ok ? "VALID" : "INVALID"}${v.reason ? " (" + v.reason + ")" : ""}`;
  } catch (e) { out.textContent = `certificate of ${b.dataset.id}: error: ${e.message}`; }
});
document.getElementById("del-refresh").addEventListener("click", () => show("deletions"));
document.getElementById("del-overdue").addEventListener("change", () => show("deletions"));

(async () => {
  document.getElementById("del-key").value = sessionStorage.getItem("ul-del-key") || "";
  try { await initRuns(); } catch (e) { showError("runs", e); }
  const start = (location.hash || "#runs").slice(1);
  await show(UL.renderers[start] ? start : "runs");
  document.body.dataset.ready = "1";
  ensurePlotly().then(() => { document.body.dataset.plotly = "1"; }, (e) => showError("runs", e));
})();
