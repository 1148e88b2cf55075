// Node runner for tests/app/test_preprocess_js.py: the page's preprocessing (condense/app/static/preprocess.js)
// on files from disk. argv: job.json (metadata and file paths), out.json. Writes per file the raw tensor and
// the model input (float32, base64), the issue counts and the error.
import { readFileSync, writeFileSync } from "node:fs";
import { basename } from "node:path";
import { pathToFileURL } from "node:url";

const [jobPath, outPath, modulePath] = process.argv.slice(2);
const { readPatientFile } = await import(pathToFileURL(modulePath).href);
const job = JSON.parse(readFileSync(jobPath, "utf8"));
const b64 = (a) => (a ? Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64") : null);
const out = {};
for (const path of job.files) {
  const r = readPatientFile(basename(path), new Uint8Array(readFileSync(path)), job.metadata);
  out[path] = { X: b64(r.X), input: b64(r.input), issues: r.issues.counts, error: r.error, skipped: r.skipped };
}
writeFileSync(outPath, JSON.stringify(out));
