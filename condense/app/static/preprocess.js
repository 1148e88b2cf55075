// One patient file -> the model's input, with every rule read from the model's metadata.
//
// The JavaScript twin of condense's Python readers: an IHM episode (`*_timeseries.csv`, the rules of
// condense.data.episodes.EpisodeBatch and condense.data.preprocessing.Discretizer) or a PhysioNet 2012
// record (`<RecordID>.txt`, condense.data.physionet2012.parse and .state). Nothing here knows a variable,
// a range or an imputation value: `metadata.rules` (condense.data.contract.input_rules) and
// `metadata.preprocessing` (the saved normalizer and the fitted PhysioNet state) hold them all.
// Bad input is counted by the same kinds the command line counts (`condense predict` prints them).
// No DOM and no network: node runs this module too (tests/app/test_preprocess_js.py).

export class Issues {
  // Counts of bad input by kind, with the first message of each kind.
  constructor(file) {
    this.file = file;
    this.counts = {};
    this.first = {};
  }
  add(kind, line, message) {
    this.counts[kind] = (this.counts[kind] || 0) + 1;
    if (!(kind in this.first)) this.first[kind] = line ? `${this.file}:${line}: ${message}` : `${this.file}: ${message}`;
  }
  get total() {
    return Object.values(this.counts).reduce((a, b) => a + b, 0);
  }
}

// Python's float(text): surrounding whitespace allowed, '_' between digits, inf / nan words; NaN when
// Python would raise (JavaScript's Number() takes '' and '0x10', which Python refuses).
const DECIMAL = /^[+-]?((\d(_?\d)*)(\.(\d(_?\d)*)?)?|\.\d(_?\d)*)([eE][+-]?\d(_?\d)*)?$/;
const SPECIAL = /^([+-]?)(inf|infinity|nan)$/i;
export function pyFloat(text) {
  const s = String(text).trim();
  if (DECIMAL.test(s)) return Number(s.replaceAll("_", ""));
  const m = SPECIAL.exec(s);
  if (!m) return NaN;
  if (m[2].toLowerCase() === "nan") return NaN;
  return m[1] === "-" ? -Infinity : Infinity;
}

// Python's "%r" of a str, for messages.
const repr = (s) => `'${String(s)}'`;

// One line of CSV as Python's csv.reader splits it (quotes, doubled quotes).
export function csvSplit(line) {
  const cells = [];
  let cell = "", quoted = false, k = 0, started = false;
  if (line === "") return [];
  while (k < line.length) {
    const ch = line[k];
    if (quoted) {
      if (ch === '"' && line[k + 1] === '"') { cell += '"'; k += 2; continue; }
      if (ch === '"') { quoted = false; k += 1; continue; }
      cell += ch; k += 1; continue;
    }
    if (ch === '"' && !started) { quoted = true; started = true; k += 1; continue; }
    if (ch === ",") { cells.push(cell); cell = ""; started = false; k += 1; continue; }
    cell += ch; started = true; k += 1;
  }
  cells.push(cell);
  return cells;
}

export function decode(bytes) {
  // UTF-8 (a byte-order mark dropped); throws on bytes that are not UTF-8, as Python's reader does
  return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
}

// ------------------------------------------------------------------------------------------------
// IHM episodes
// ------------------------------------------------------------------------------------------------
function ihmTables(rules) {
  const codes = rules.variables.map((v) => (v.kind === "categorical" ? new Map(v.values.map((t, i) => [t, i])) : null));
  const numeric = rules.variables.map((v) => (v.numeric ? new Map(v.numeric.map((n, i) => [n, i])) : null));
  return { codes, numeric };
}

function ihmCategory(tables, k, text) {
  // one-hot position of a non-exact spelling; -1 for a blank cell, null when unknown
  const stripped = text.trim();
  if (!stripped) return -1;
  let code = tables.codes[k].get(stripped);
  if (code === undefined && tables.numeric[k]) code = tables.numeric[k].get(pyFloat(stripped));
  return code === undefined ? null : code;
}

/** An IHM episode's text -> {X: Float32Array(bins * width) raw (not normalized), issues, skipped}. */
export function ihmEpisode(label, text, rules, width) {
  const issues = new Issues(label);
  const header = rules.header, W = header.length, eps = rules.eps, end = rules.hours;
  const headerLine = header.join(",");
  if (text.includes("\r")) text = text.replace(/\r\n/g, "\n").replace(/\r/g, "\n");
  let names = header, rows = [], lines = [];
  if (!text.trim()) {
    issues.add("empty_episode", 1, "empty file (no header, no rows); every value imputed");
  } else {
    const all = text.split("\n");
    names = all[0] === headerLine ? header : csvSplit(all[0]);
    const quoted = text.includes('"');
    for (let k = 1; k < all.length; k++) {
      if (all[k] === "") continue; // blank lines (a trailing newline, mostly) hold nothing
      rows.push(quoted ? csvSplit(all[k]) : all[k].split(","));
      lines.push(k + 1);
    }
    if (!rows.length) issues.add("empty_episode", 1, "header only, no data rows; every value imputed");
  }
  // each standard column's position in the file (-1: absent)
  let columns = header.map((_, j) => j);
  if (names !== header && names.join("\u0000") !== header.join("\u0000")) {
    const stripped = names.map((h) => h.trim());
    if (!stripped.includes(rules.time_column)) {
      issues.add("bad_header", 1, `no '${rules.time_column}' column in the header ${repr(names.join(","))}; episode skipped`);
      return { X: null, issues, skipped: true };
    }
    const where = new Map();
    stripped.forEach((name, j) => {
      if (where.has(name) || !header.includes(name)) {
        const why = where.has(name) ? "repeats an earlier column" : "is not one of the 17 IHM variables";
        issues.add("unknown_column", 1, `column ${repr(name)} ${why}; ignored`);
      } else where.set(name, j);
    });
    for (const v of rules.variables)
      if (!where.has(v.name)) issues.add("missing_column", 1, `no column ${repr(v.name)}; treated as never measured`);
    columns = header.map((name) => (where.has(name) ? where.get(name) : -1));
  }
  const ncols = names.length;
  let kept = [], keptLines = [];
  rows.forEach((row, k) => {
    if (row.length === ncols) { kept.push(row); keptLines.push(lines[k]); }
    else issues.add("ragged_row", lines[k], `row has ${row.length} cells, the header has ${ncols}; row dropped`);
  });
  const seen = new Map();
  rows = []; lines = [];
  kept.forEach((row, k) => {
    const key = row.join("\u0000");
    if (seen.has(key)) issues.add("duplicate_row", keptLines[k], `row repeats line ${seen.get(key)}; dropped`);
    else { seen.set(key, keptLines[k]); rows.push(row); lines.push(keptLines[k]); }
  });
  const cells = rows.map((row) => columns.map((j) => (j >= 0 ? row[j] : "")));

  // times: unusable rows are reported and dropped
  const hours = cells.map((row, r) => {
    const text = row[0];
    let h = pyFloat(text);
    if (!Number.isFinite(h)) {
      issues.add("bad_hours", lines[r], `Hours is not a number: ${repr(text)}; row dropped`);
      return NaN;
    }
    if (h < -eps) {
      issues.add("bad_hours", lines[r], `Hours is negative: ${repr(text)}; row dropped`);
      return NaN;
    }
    return h;
  });
  const usable = hours.map((h) => Number.isFinite(h) && h <= end + eps);
  const tables = ihmTables(rules);
  const V = rules.variables.length;
  const values = cells.map(() => new Float64Array(V).fill(NaN));
  rules.variables.forEach((v, k) => {
    cells.forEach((row, r) => {
      const text = row[k + 1];
      if (text === "") return;
      if (v.kind === "categorical") {
        let code = tables.codes[k].get(text);
        if (code === undefined) {
          code = ihmCategory(tables, k, text);
          if (code === null && usable[r])
            issues.add("unknown_category", lines[r], `${repr(v.name)} has no category ${repr(text)}; treated as missing`);
          if (code === null || code < 0) return;
        }
        values[r][k] = code;
        return;
      }
      const x = pyFloat(text);
      if (!Number.isFinite(x)) {
        if (text.trim() && usable[r])
          issues.add("bad_number", lines[r], `${repr(v.name)} is not a number: ${repr(text)}; treated as missing`);
        return;
      }
      const [lo, hi] = v.plausible;
      if (x < lo || x > hi || Math.abs(x) > rules.float32_max) {
        if (usable[r]) {
          const why = Math.abs(x) > rules.float32_max ? "does not fit in float32"
            : `is outside the plausible range [${fmtG(lo)}, ${fmtG(hi)}]`;
          issues.add(`implausible_value:${v.name}`, lines[r], `${repr(v.name)} value ${repr(text)} ${why}; treated as missing`);
        }
        return;
      }
      values[r][k] = x;
    });
  });
  hours.forEach((h, r) => {
    if (Number.isFinite(h) && h > end + eps)
      issues.add("after_end", lines[r], `Hours ${h} is after the ${fmtG(end)}-hour window; row dropped`);
  });
  // last value per (bin, variable) in time order (ties: the later row), carried forward
  const bins = rules.bins;
  const order = hours.map((h, r) => r).filter((r) => usable[r]);
  order.sort((a, b) => hours[a] - hours[b] || a - b);
  const grid = new Float64Array(bins * V).fill(NaN);
  for (const r of order) {
    const b = Math.trunc(hours[r] / rules.timestep - eps);
    for (let k = 0; k < V; k++) if (!Number.isNaN(values[r][k])) grid[b * V + k] = values[r][k];
  }
  const X = new Float32Array(bins * width);
  rules.variables.forEach((v, k) => {
    let last = v.impute;
    for (let b = 0; b < bins; b++) {
      const g = grid[b * V + k];
      const observed = !Number.isNaN(g);
      if (observed) last = g;
      if (v.kind === "categorical") X[b * width + v.channels[last]] = 1;
      else X[b * width + v.channels[0]] = last;
      X[b * width + v.mask] = observed ? 1 : 0;
    }
  });
  return { X, issues, skipped: false };
}

function fmtG(x) {
  // Python's format(x, "g") for the numbers in messages
  return Number.isInteger(x) && Math.abs(x) < 1e6 ? String(x) : String(Number(x.toPrecision(6)));
}

// ------------------------------------------------------------------------------------------------
// PhysioNet 2012 records
// ------------------------------------------------------------------------------------------------
/** A PhysioNet 2012 record's text -> {X: Float32Array(bins * width) raw, issues, skipped, recordId}. */
export function physionetRecord(label, text, rules, state, width) {
  const issues = new Issues(label);
  const timeRe = new RegExp(rules.time_pattern);
  const seriesIndex = new Map(rules.series.map((s, k) => [s.name, k]));
  const descriptorIndex = new Map(rules.descriptors.map((d, k) => [d.parameter, k]));
  const weight = seriesIndex.get("Weight"), admission = rules.descriptors.findIndex((d) => d.name === "AdmissionWeight");
  const nameMatch = /^(\d+)\.txt$/.exec(label.split("/").pop());
  const rid = nameMatch ? nameMatch[1] : null;
  if (text.includes("\r")) text = text.replace(/\r\n/g, "\n").replace(/\r/g, "\n");
  const newline = text.indexOf("\n");
  const first = newline < 0 ? text : text.slice(0, newline);
  let body = text, start = 1;
  if (first.replaceAll(" ", "") === rules.header) { body = newline < 0 ? "" : text.slice(newline + 1); start = 2; }
  else issues.add("missing_header", 1, `expected the header ${repr(rules.header)}, got ${repr(first.slice(0, 80))}`);
  const events = []; // [variable, hours, value, order]
  const statics = new Float64Array(rules.descriptors.length).fill(NaN);
  const seenStatic = new Set();
  body.split("\n").forEach((line, k) => {
    const lineno = start + k;
    if (!line || !line.trim()) return;
    const parts = line.split(",");
    if (parts.length !== 3) {
      issues.add("malformed_line", lineno, `expected 3 fields Time,Parameter,Value, got ${repr(line.slice(0, 80))}`);
      return;
    }
    const [t, pRaw, v] = parts;
    const p = pRaw.trim();
    const m = timeRe.exec(t.trim());
    if (!m) { issues.add("malformed_line", lineno, `time ${repr(t)} of ${repr(p)} is not HH:MM`); return; }
    const h = parseInt(m[1], 10) + parseInt(m[2], 10) / 60.0;
    const value = pyFloat(v);
    if (!Number.isFinite(value)) {
      issues.add("malformed_line", lineno, `value ${repr(v)} of ${repr(p)} is not a finite number`);
      return;
    }
    const s = seriesIndex.get(p);
    if (s !== undefined && !(s === weight && h === 0)) {
      if (h > rules.hours) { issues.add("after_48h", lineno, `${p} at ${t.trim()} is after ${rules.hours} hours`); return; }
      events.push([s, h, value, events.length]);
    } else if (s !== undefined || descriptorIndex.has(p)) {
      const col = s !== undefined ? admission : descriptorIndex.get(p);
      if (seenStatic.has(col)) issues.add(`duplicate_descriptor:${rules.descriptors[col].parameter}`, lineno, "the last row wins");
      seenStatic.add(col);
      statics[col] = value === rules.missing_marker ? NaN : value;
    } else if (p === "RecordID") {
      if (rid !== null && value !== Number(rid))
        issues.add("record_id_mismatch", lineno, `RecordID ${repr(v.trim())} disagrees with the file name ${rid}.txt`);
    } else {
      issues.add(`unknown_parameter:${p || "(empty)"}`, lineno, `unknown parameter ${repr(p)}`);
    }
  });
  if (!events.length) issues.add("no_time_series", 1, "no time-series row within 48 hours; every value imputed");

  // cleaning with the fitted state: impossible -> missing, outliers clipped, last value per hour wins
  const V = rules.series.length, bins = rules.bins;
  const spec = rules.series.map((s) => state.variables[s.name]);
  const cleaned = [];
  for (const [s, h, value, order] of events) {
    const [vlo, vhi] = spec[s].valid, [clo, chi] = spec[s].clip;
    if (value === rules.missing_marker) { issues.add(`missing_marker:${rules.series[s].name}`, 0, "value -1 (not measured)"); continue; }
    if (value < vlo || value > vhi) { issues.add(`out_of_range:${rules.series[s].name}`, 0, `value ${value} outside [${vlo}, ${vhi}]`); continue; }
    if (value < clo || value > chi) issues.add(`winsorized:${rules.series[s].name}`, 0, `value ${value} clipped to [${clo}, ${chi}]`);
    cleaned.push([s, h, Math.min(Math.max(value, clo), chi), order]);
  }
  cleaned.sort((a, b) => a[1] - b[1] || a[3] - b[3]);
  const grid = new Float32Array(bins * V).fill(NaN);
  for (const [s, h, value] of cleaned) grid[Math.trunc(h - rules.eps) * V + s] = value;
  const X = new Float32Array(bins * width);
  rules.series.forEach((s, k) => {
    let last = Math.fround(spec[k].impute);
    for (let b = 0; b < bins; b++) {
      const g = grid[b * V + k];
      const observed = !Number.isNaN(g);
      if (observed) last = g;
      X[b * width + s.channel] = last;
      X[b * width + s.mask] = observed ? 1 : 0;
    }
  });
  // descriptors: invalid -> missing, clipped, imputed; ICUType one-hot
  rules.descriptors.forEach((d, col) => {
    const st = state.variables[d.name];
    let value = statics[col];
    if (!Number.isNaN(value)) {
      const invalid = value < st.valid[0] || value > st.valid[1] || (d.codes && !d.codes.includes(value));
      if (invalid) { issues.add(`out_of_range:${d.name}`, 0, `${d.name} ${value} is not a valid value`); value = NaN; }
    }
    if (!Number.isNaN(value) && (value < st.clip[0] || value > st.clip[1])) {
      issues.add(`winsorized:${d.name}`, 0, `${d.name} ${value} clipped to [${st.clip[0]}, ${st.clip[1]}]`);
      value = Math.min(Math.max(value, st.clip[0]), st.clip[1]);
    }
    if (Number.isNaN(value)) value = st.impute;
    for (let b = 0; b < bins; b++) {
      if (d.kind === "one-hot") d.codes.forEach((code, i) => { X[b * width + d.channels[i]] = value === code ? 1 : 0; });
      else X[b * width + d.channels[0]] = value;
    }
  });
  return { X, issues, skipped: false, recordId: rid };
}

// ------------------------------------------------------------------------------------------------
// From the raw tensor to the file's input
// ------------------------------------------------------------------------------------------------
/** The raw (bins * width) tensor -> what the file takes: normalized with the saved mean / scale,
 *  unless the file has the normalizer folded into its first layer (metadata.normalizer_folded). */
export function modelInput(X, metadata) {
  const Z = metadata.normalizer_folded ? X : normalized(X, metadata);
  return metadata.preprocessing.kind === "features" ? dnnFeatures(Z, metadata) : Z;
}

function normalized(X, metadata) {
  const norm = metadata.preprocessing.normalizer;
  const width = metadata.preprocessing.layout.names.length;
  const out = Float32Array.from(X);
  const bins = X.length / width;
  norm.channels.forEach((c, i) => {
    const mean = norm.mean[i], std = norm.std[i];
    for (let b = 0; b < bins; b++) out[b * width + c] = (X[b * width + c] - mean) / std;
  });
  return out;
}

/** The DNN's input (condense.data.preprocessing.dnn_features): per channel, the mean over the hours
 *  where its variable was measured, else over all hours; masks give the fraction of measured hours. */
export function dnnFeatures(Z, metadata) {
  const layout = metadata.preprocessing.layout;
  const width = layout.names.length, bins = Z.length / width;
  const out = new Float32Array(width);
  for (let c = 0; c < width; c++) {
    const m = layout.observed_by[c];
    let count = 0, sum = 0, all = 0;
    for (let b = 0; b < bins; b++) {
      const x = Z[b * width + c];
      all += x;
      if (m < 0 || Z[b * width + m] > 0.5) { count += 1; sum += x; }
    }
    out[c] = count > 0 ? sum / count : all / bins;
  }
  return out;
}

/** Which variables were measured (hours with a value) and which were imputed throughout. */
export function observedSummary(X, metadata) {
  const names = metadata.preprocessing.layout.names;
  const width = names.length, bins = X.length / width;
  const out = [];
  names.forEach((name, c) => {
    if (!name.startsWith("mask->")) return;
    let hours = 0, firstHour = -1;
    for (let b = 0; b < bins; b++) if (X[b * width + c] > 0.5) { hours += 1; if (firstHour < 0) firstHour = b; }
    out.push({ variable: name.slice(6), hours, firstHour });
  });
  return out;
}

/** Read one file the model's way: {id, X (raw), input (what the file takes), issues, skipped, error}. */
export function readPatientFile(name, bytes, metadata) {
  const rules = metadata.rules || {};
  const width = metadata.preprocessing.layout.names.length;
  const id = name.replace(/_timeseries\.csv$/, "").replace(/\.txt$/, "");
  let text;
  try {
    text = decode(bytes);
  } catch (err) {
    const issues = new Issues(name);
    issues.add("unreadable_file", 1, "not UTF-8 text");
    return { id, name, X: null, input: null, issues, skipped: true, error: `${name}: not UTF-8 text` };
  }
  const looksPhysioNet = /^\ufeff?Time,Parameter,Value/.test(text.replaceAll(" ", ""));
  let result;
  if (rules.source === "physionet2012") {
    if (!looksPhysioNet && name.endsWith("_timeseries.csv"))
      return refused(id, name, "this model reads PhysioNet 2012 records (<RecordID>.txt), not IHM episodes");
    result = physionetRecord(name, text, rules, metadata.preprocessing.source, width);
  } else if (rules.source === "ihm") {
    if (looksPhysioNet) return refused(id, name, "this model reads IHM episodes (*_timeseries.csv), not PhysioNet 2012 records");
    result = ihmEpisode(name, text, rules, width);
  } else {
    return refused(id, name, "the model's metadata has no file rules (it was trained on arrays, not patient files)");
  }
  if ((metadata.preprocessing.extras || []).length)
    return refused(id, name, `the model takes extra channels (${metadata.preprocessing.extras}) this page does not compute`);
  if (result.skipped) return { id, name, ...result, input: null, error: Object.values(result.issues.first)[0] };
  return { id, name, ...result, input: modelInput(result.X, metadata), error: null };
}

function refused(id, name, why) {
  const issues = new Issues(name);
  issues.add("wrong_format", 1, why);
  return { id, name, X: null, input: null, issues, skipped: true, error: `${name}: ${why}` };
}
