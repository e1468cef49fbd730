// Attack view: the Comparator's threshold attack on the forget set, unlearned (positive) vs retrained model.
"use strict";
const ATTACK = {data: null};

function attackRates() {
  const a = ATTACK.data;
  if (!a) return;
  const metric = document.getElementById("attack-metric").value;
  const s = a.attack[metric];
  const i = Math.min(+document.getElementById("attack-threshold").value, s.thresholds.length - 1);
  const t = s.thresholds[i];
  const dir = metric === "entropy" ? "≤" : "≥";
  document.getElementById("attack-rates").textContent =
    `threshold ${t.toFixed(2)} (${dir}): FPR ${(100 * s.fpr[i]).toFixed(1)}%, FNR ${(100 * s.fnr[i]).toFixed(1)}%, ` +
    `attack success ${(100 * s.success[i]).toFixed(1)}%`;
  const el = document.getElementById("attack-hist");
  if (el.data) Plotly.relayout(el, {shapes: [{type: "line", x0: t, x1: t, yref: "paper", y0: 0, y1: 1,
                                              line: {color: "#000", width: 2, dash: "dot"}}]});
}

UL.renderers.attack = async () => {
  clearError("attack");
  const sel = document.getElementById("attack-model");
  const picked = UL.picked.filter((id) => UL.byId[id]);
  if (!picked.length) { needModels("attack-hist"); return; }
  const prev = sel.value;
  sel.innerHTML = picked.map((id) => `<option value="${id}">${esc(label(id))}</option>`).join("");
  if (picked.includes(prev)) sel.value = prev;
  const id = sel.value;
  const a = await runView(id, "attack");
  ATTACK.data = a;
  const metric = document.getElementById("attack-metric").value;
  const s = a.attack[metric];
  const mids = s.edges.slice(0, -1).map((e, k) => (e + s.edges[k + 1]) / 2);
  const width = s.edges[1] - s.edges[0];
  const ref = UL.byId[id].oracle_id ? label(UL.byId[id].oracle_id) : "retrained";
  plot("attack-hist", [
    {type: "bar", name: `unlearned: ${label(id)}`, x: mids, y: s.unlearned, width: width, opacity: 0.6, marker: {color: "#d62728"}},
    {type: "bar", name: `retrained: ${ref}`, x: mids, y: s.retrained, width: width, opacity: 0.6, marker: {color: "#1f77b4"}},
  ], {title: `${metric} of the forget set's outputs (n = ${a.attack.n})`, barmode: "overlay",
      xaxis: {title: metric === "entropy" ? "entropy of softmax(z / 2)" : "log p_max − log(1 − p_max)"},
      yaxis: {title: "examples"}});
  const p = a.attack.privacy;
  document.getElementById("attack-privacy").innerHTML =
    `Worst-case privacy score <b id="attack-ps">${p.ps.toFixed(3)}</b> (1 = indistinguishable from the retrained model; ` +
    `best attack scores: ${["entropy_unlearn_positive", "entropy_retrain_positive", "confidence_unlearn_positive",
      "confidence_retrain_positive"].map((k) => `${k} ${p[k].toFixed(3)}`).join(", ")})` +
    (a.reproduced.ok ? "" : ` <b>warning:</b> the rebuilt model's UA ${a.reproduced.UA.toFixed(2)} differs from the stored ${fmt(a.reproduced.stored_UA)}`);
  let html = "<tr><th>forget index</th><th>label</th><th>confidence unlearned</th><th>confidence retrained</th><th>gap (unlearned − retrained)</th><th class=\"noexport\">image</th></tr>";
  for (const l of a.attack.leaks) {
    html += `<tr><td>${l.index}</td><td>${esc(a.classes[l.label])}</td><td>${l.confidence_unlearned.toFixed(3)}</td>` +
      `<td>${l.confidence_retrained.toFixed(3)}</td><td>${l.gap.toFixed(3)}</td>` +
      `<td class="noexport">${l.thumb ? `<img class="thumb" src="${l.thumb}" alt="">` : ""}</td></tr>`;
  }
  document.getElementById("attack-leaks").innerHTML = html;
  attackRates();
};
document.getElementById("attack-threshold").addEventListener("input", attackRates);
document.getElementById("attack-metric").addEventListener("change", () => show("attack"));
document.getElementById("attack-model").addEventListener("change", () => show("attack"));
