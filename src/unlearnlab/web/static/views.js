// Class, Instance and Layer views: one request per shown model (the server reads each from its analysis cache).
"use strict";
const SPLIT_COLOURS = {forget: "#d62728", retain: "#1f77b4", test: "#2ca02c"};

async function viewData(name) {
  const ids = shownModels();
  const data = await Promise.all(ids.map((id) => runView(id, name)));
  return ids.map((id, i) => Object.assign({id: id, label: label(id) + (isReference(id) ? " (ref)" : "")}, data[i]));
}

UL.renderers.class = async () => {
  clearError("class");
  if (needModels("class-acc")) return;
  const ms = await viewData("class");
  const classes = ms[0].classes;
  const traces = [];
  for (const m of ms) {
    for (const part of ["train", "test"]) {
      traces.push({type: "bar", name: `${m.label} ${part}`, x: classes, y: m.class.accuracy[part],
                   opacity: part === "test" ? 0.55 : 1});
    }
  }
  plot("class-acc", traces, {title: "Per-class accuracy (%): train (solid) and test (light)", barmode: "group",
                             xaxis: {title: "class", type: "category"}, yaxis: {title: "accuracy %", range: [0, 101]}});
  const split = document.getElementById("class-split").value;
  plot("class-where", ms.map((m) => ({type: "bar", name: m.label, x: classes,
    y: classes.map((_, j) => m.class.matrix[split].reduce((s, row) => s + row[j], 0))})),
    {title: `Where the ${split} set's predictions went (count per predicted class)`, barmode: "group",
     xaxis: {title: "predicted class", type: "category"}, yaxis: {title: "examples"}});
  const box = document.getElementById("class-matrices");
  box.innerHTML = "";
  for (const m of ms) {
    const div = document.createElement("div");
    div.className = "panel"; div.id = "matrix-" + m.id;
    box.appendChild(div);
    const z = m.class.matrix[split];
    const forgetRows = m.class.matrix.forget.map((row, i) => (row.some((v) => v > 0) ? i : -1)).filter((i) => i >= 0);
    const shapes = forgetRows.length < classes.length ? forgetRows.map((i) => ({type: "rect", xref: "paper", x0: 0,
      x1: 1, yref: "y", y0: i - 0.5, y1: i + 0.5, line: {color: "#d62728", width: 2}})) : [];
    plot(div, [{type: "heatmap", z: z, x: classes, y: classes, colorscale: "Blues", reversescale: true, showscale: false,
                text: z.map((r) => r.map(String)), texttemplate: "%{text}", hovertemplate: "true %{y} → predicted %{x}: %{z}<extra></extra>"}],
         {title: {text: m.label, font: {size: 12}}, xaxis: {title: "predicted", type: "category"},
          yaxis: {title: "true", type: "category", autorange: "reversed"}, shapes: shapes, margin: {t: 30, l: 45, r: 5, b: 40}});
  }
};
document.getElementById("class-split").addEventListener("change", () => show("class"));

const INST = {panels: [], syncing: false};

function instDetail(key) {
  const rows = INST.panels.map((p) => ({p: p, pt: p.points[p.index[key]]})).filter((x) => x.pt);
  if (!rows.length) return;
  const first = rows[0].pt, classes = rows[0].p.classes;
  let html = `<div id="inst-key"><b>${esc(key)}</b> · ${esc(first.split)} · label ${esc(classes[first.label])}</div>`;
  if (first.thumb) html += `<img src="${first.thumb}" alt="example ${esc(key)}">`;
  html += '<table class="grid"><tr><th>model</th><th>pred</th><th>top probabilities</th></tr>';
  for (const {p, pt} of rows) {
    const top = pt.probs.map((v, c) => [v, c]).sort((a, b) => b[0] - a[0]).slice(0, 3)
      .map(([v, c]) => `${esc(classes[c])}: ${v.toFixed(3)}`).join(", ");
    html += `<tr><td class="t">${esc(p.label)}</td><td>${esc(classes[pt.pred])}</td><td class="t">${top}</td></tr>`;
  }
  document.getElementById("inst-detail").innerHTML = html + "</table>";
}

UL.renderers.instance = async () => {
  clearError("instance");
  if (needModels("inst-panels")) return;
  const ms = await viewData("instance");
  const proj = document.getElementById("inst-proj").value;
  const box = document.getElementById("inst-panels");
  box.innerHTML = "";
  INST.panels = [];
  for (const m of ms) {
    const pts = m.instance.points, xy = m.instance.projection[proj] || m.instance.projection.pca;
    const div = document.createElement("div");
    div.className = "panel"; div.id = "inst-" + m.id;
    box.appendChild(div);
    const index = {};
    pts.forEach((p, i) => { index[p.key] = i; });
    const panel = {div: div, points: pts, index: index, classes: m.classes, label: m.label};
    INST.panels.push(panel);
    plot(div, [{type: "scatter", mode: "markers", x: xy.map((v) => v[0]), y: xy.map((v) => v[1]),
      customdata: pts.map((p) => p.key), text: pts.map((p) => `${p.key} label ${m.classes[p.label]} → ${m.classes[p.pred]}`),
      hovertemplate: "%{text}<extra></extra>",
      marker: {color: pts.map((p) => SPLIT_COLOURS[p.split]), size: 8,
               symbol: pts.map((p) => (p.pred === p.label ? "circle" : "x")), line: {width: 0}}}],
      {title: {text: m.label, font: {size: 12}}, showlegend: false, hovermode: "closest", dragmode: "lasso",
       margin: {t: 30, l: 35, r: 5, b: 30}});
    div.on("plotly_hover", (ev) => linkHover(panel, ev.points[0].customdata));
    div.on("plotly_selected", (ev) => linkSelect(ev ? ev.points.map((p) => p.customdata) : null));
  }
  document.getElementById("inst-detail").innerHTML =
    '<span style="color:#d62728">● forget</span> <span style="color:#1f77b4">● retain</span> ' +
    '<span style="color:#2ca02c">● test</span> (× = misclassified). Hover a point.';
};

function linkHover(from, key) {
  if (INST.syncing) return;
  INST.syncing = true;
  try {
    for (const p of INST.panels) {
      if (p !== from && p.index[key] !== undefined) Plotly.Fx.hover(p.div, [{curveNumber: 0, pointNumber: p.index[key]}]);
    }
  } finally { INST.syncing = false; }
  instDetail(key);
}

function linkSelect(keys) {
  if (INST.syncing) return;
  INST.syncing = true;
  try {
    for (const p of INST.panels) {
      const sel = keys ? keys.map((k) => p.index[k]).filter((i) => i !== undefined) : null;
      Plotly.restyle(p.div, {selectedpoints: [sel]});
    }
  } finally { INST.syncing = false; }
}
document.getElementById("inst-proj").addEventListener("change", () => show("instance"));

UL.renderers.layer = async () => {
  clearError("layer");
  if (needModels("layer-plot")) return;
  const ms = await viewData("layer");
  const traces = [];
  const dash = {"original/forget": "solid", "retrained/forget": "dash", "original/retain": "dot", "retrained/retain": "dashdot"};
  const palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
  ms.forEach((m, i) => {
    for (const [k, d] of Object.entries(dash)) {  // one colour per model, one dash per comparison
      traces.push({type: "scatter", mode: "lines+markers", name: `${m.label} vs ${k.replace("/", " on ")}`,
                   x: m.layer.layers, y: m.layer.cka[k], line: {dash: d, color: palette[i % palette.length]},
                   marker: {color: palette[i % palette.length]}});
    }
  });
  plot("layer-plot", traces, {title: "Linear CKA per layer to the original and to the retrained model (forget vs retain data)",
                              xaxis: {title: "layer", type: "category"}, yaxis: {title: "CKA (1 = same representation)"}});
};
