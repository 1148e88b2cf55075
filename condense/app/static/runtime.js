// The model file on LiteRT.js: a step file hour by hour (the state kept here, zeros for a new patient),
// or a stateless whole-sequence / feature file in one call. Only LiteRT.js and this site's own files are
// fetched, all while the page loads; scoring makes no request.
import { loadLiteRt, loadAndCompile, Tensor } from "@litertjs/core";
import { readMetadata } from "./model.js";

export class ModelRunner {
  /** The model file (fetched once) with the metadata read from it, compiled for LiteRT.js's CPU backend. */
  static async open({ wasmPath = "./litert/wasm/", modelPath = "./model.tflite" } = {}) {
    const response = await fetch(modelPath);
    if (!response.ok) throw new Error(`cannot fetch ${modelPath}: HTTP ${response.status}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const metadata = await readMetadata(bytes);
    await loadLiteRt(wasmPath);
    const model = await loadAndCompile(bytes, { accelerator: "wasm" });
    const runner = new ModelRunner(model, metadata);
    runner.bytes = bytes.length;
    return runner;
  }

  constructor(model, metadata) {
    this.model = model;
    this.metadata = metadata;
    this.width = metadata.preprocessing.layout.names.length;
    this.states = (metadata.states || []).map((s) => ({ name: s.name, output: s.output, units: s.units }));
    this.step = metadata.form === "step";
    const inputs = model.getInputDetails().map((d) => d.name);
    if (this.step) {
      const missing = ["x", ...this.states.map((s) => s.name)].filter((n) => !inputs.includes(n));
      if (missing.length) throw new Error(`the model file lacks the inputs ${missing.join(", ")} its metadata names`);
    }
    this.inputShape = Array.from(model.getInputDetails()[0].shape);
  }

  /** The output after each hour (step files) or the one output of the sequence: Float64Array. */
  async trajectory(input) {
    const bins = input.length / this.width;
    if (!this.step) {
      const tensor = new Tensor(input, this.inputShape);
      const out = await this.model.run([tensor]);
      tensor.delete();
      const p = out[0].toTypedArray()[0];
      out.forEach((t) => t.delete());
      return Float64Array.of(p);
    }
    // the state never leaves LiteRT.js: each hour's state outputs are the next hour's state inputs
    let state = this.states.map((s) => new Tensor(new Float32Array(s.units), [1, s.units]));
    const path = new Float64Array(bins);
    try {
      for (let b = 0; b < bins; b++) {
        const x = new Tensor(input.subarray(b * this.width, (b + 1) * this.width), [1, this.width]);
        const feeds = { x };
        this.states.forEach((s, k) => { feeds[s.name] = state[k]; });
        let out;
        try {
          out = await this.model.run(feeds);
        } finally {
          x.delete();
        }
        path[b] = out.p.toTypedArray()[0];
        out.p.delete();
        state.forEach((t) => t.delete());
        state = this.states.map((s) => out[s.output]);
      }
    } finally {
      state.forEach((t) => t.delete());
    }
    return path;
  }
}
