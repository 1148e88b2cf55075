// The scoring page: patient files in, the model's risk out, computed on this device.
// Everything the page fetches (this script, LiteRT.js, its WebAssembly, the model and its metadata) is
// fetched while it loads; after "ready" no request leaves the page (tests/app/test_app_browser.py checks).
import { observedSummary, readPatientFile } from "./preprocess.js";
import { ModelRunner } from "./runtime.js";

const $ = (id) => document.getElementById(id);
const state = { metadata: null, runner: null, results: [], selected: null };
// what the tests (and a curious user, in the console) read
window.condenseApp = { ready: null, results: state.results, timings: { pageToReadyMs: null, firstResultMs: null } };

function setStatus(text, kind = "") {
  $("status").textContent = text;
  $("status").className = `status ${kind}`;
}

async function start() {
  state.runner = await ModelRunner.open();
  window.condenseApp.runner = state.runner;
  const metadata = state.runner.metadata;
  state.metadata = metadata;
  describeModel(metadata, state.runner.bytes);
  window.condenseApp.timings.pageToReadyMs = performance.now();
  const kind = metadata.rules.source === "physionet2012" ? "PhysioNet 2012 records (<RecordID>.txt)"
    : "IHM episodes (*_timeseries.csv)";
  setStatus(`Ready. Choose or drop ${kind}: they are read and scored here, nothing is uploaded.`, "ok");
  $("files").disabled = false;
}

function describeModel(m, bytes) {
  const auroc = m.test_auroc == null ? "" : ` · test AUROC ${Number(m.test_auroc).toFixed(3)}`;
  $("model").textContent = `${m.model} · ${m.format} ${m.form} file of ${bytes.toLocaleString("en")} bytes · ` +
    `${m.steps || 48} hours of data${auroc} · condense ${m.condense_version}`;
  $("contract").textContent = m.normalizer_folded
    ? "The file takes imputed values in clinical units (its normalizer is folded into the first layer)."
    : "Inputs are normalized here with the mean / scale stored in the model's metadata.";
}

async function scoreFiles(files) {
  $("files").disabled = true;
  const sorted = [...files].sort((a, b) => a.name.localeCompare(b.name, "en", { numeric: true }));
  for (const file of sorted) {
    const bytes = new Uint8Array(await file.arrayBuffer());
    const t0 = performance.now();
    const read = readPatientFile(file.name, bytes, state.metadata);
    const t1 = performance.now();
    let trajectory = null, scoreMs = null;
    if (!read.skipped) {
      trajectory = await state.runner.trajectory(read.input);
      scoreMs = performance.now() - t1;
    }
    const result = {
      name: file.name, id: read.id, error: read.error,
      probability: trajectory ? trajectory[trajectory.length - 1] : null,
      trajectory: trajectory ? Array.from(trajectory) : null,
      issues: read.issues.counts, firstIssues: read.issues.first,
      observed: read.X ? observedSummary(read.X, state.metadata) : [],
      readMs: t1 - t0, scoreMs,
    };
    state.results.push(result);
    if (window.condenseApp.timings.firstResultMs === null) window.condenseApp.timings.firstResultMs = performance.now();
    addRow(result, state.results.length - 1);
  }
  if (state.selected === null && state.results.length) select(0);
  const scored = state.results.filter((r) => r.probability !== null).length;
  setStatus(`${scored} of ${state.results.length} file(s) scored on this device; ${state.results.length - scored} refused.`, "ok");
  $("files").disabled = false;
  document.body.dataset.done = String(state.results.length);
}

function addRow(r, index) {
  const row = document.createElement("tr");
  const problems = Object.values(r.issues).reduce((a, b) => a + b, 0);
  row.innerHTML = `<td></td><td class="num"></td><td class="num"></td><td></td>`;
  row.children[0].textContent = r.name;
  row.children[1].textContent = r.probability === null ? "—" : r.probability.toFixed(4);
  row.children[2].textContent = String(problems);
  row.children[3].textContent = r.error || (problems ? Object.keys(r.issues).join(", ") : "");
  if (r.error) row.className = "refused";
  row.addEventListener("click", () => select(index));
  $("results").appendChild(row);
}

function select(index) {
  state.selected = index;
  const r = state.results[index];
  $("detail").hidden = false;
  $("detail-title").textContent = r.error ? `${r.name}: not scored` : `${r.name}: ${(100 * r.probability).toFixed(1)} % ` +
    `risk of in-hospital death (after hour ${r.trajectory.length})`;
  drawChart(r.trajectory || []);
  const list = $("problems");
  list.replaceChildren(...Object.entries(r.firstIssues).map(([kind, message]) => {
    const li = document.createElement("li");
    li.textContent = `${kind} × ${r.issues[kind]} — first: ${message}`;
    return li;
  }));
  if (!list.children.length) list.innerHTML = "<li>none: every row was read</li>";
  $("observed").replaceChildren(...r.observed.map((o) => {
    const chip = document.createElement("span");
    chip.textContent = `${o.variable} ${o.hours}`;
    chip.title = o.hours === 0 ? "never measured: imputed for all hours"
      : `measured in ${o.hours} hour(s) from hour ${o.firstHour + 1}; carried forward between measurements` +
        (o.firstHour > 0 ? ", imputed before" : "");
    if (o.hours === 0) chip.className = "imputed";
    return chip;
  }));
}

function drawChart(path) {
  const svg = $("chart");
  const W = 640, H = 220, L = 44, B = 28, T = 10, R = 10;
  const x = (h) => L + (h / Math.max(1, path.length - 1)) * (W - L - R);
  const y = (p) => T + (1 - p) * (H - T - B);
  const parts = [`<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" class="frame"/>`];
  for (const p of [0, 0.25, 0.5, 0.75, 1]) {
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y(p)}" y2="${y(p)}" class="grid"/>`);
    parts.push(`<text x="${L - 6}" y="${y(p) + 4}" text-anchor="end">${p.toFixed(2)}</text>`);
  }
  for (let h = 0; h < path.length; h += 6) parts.push(`<text x="${x(h)}" y="${H - 8}" text-anchor="middle">${h + 1}</text>`);
  if (path.length) {
    const d = path.map((p, h) => `${h ? "L" : "M"}${x(h).toFixed(1)},${y(p).toFixed(1)}`).join("");
    parts.push(`<path d="${d}" class="risk"/>`);
    const last = path.length - 1;
    parts.push(`<circle cx="${x(last)}" cy="${y(path[last])}" r="4" class="final"/>`);
  }
  svg.innerHTML = parts.join("");
}

$("files").addEventListener("change", (e) => scoreFiles(e.target.files));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); scoreFiles(e.dataTransfer.files); });

window.condenseApp.ready = start().catch((err) => {
  setStatus(`Cannot start: ${err.message || err}`, "error");
  throw err;
});
