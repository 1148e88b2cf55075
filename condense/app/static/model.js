// The condense metadata inside a .tflite file: the zlib-compressed JSON entry "condense.json.zlib"
// (condense.export.metadata). Read from the flatbuffer with the TFLite schema's field numbers, so the page
// needs nothing beside the model file: the file is its own contract.
const METADATA_NAME = "condense.json.zlib";
// tflite schema: Model {version 0, operator_codes 1, subgraphs 2, description 3, buffers 4, metadata_buffer 5,
// metadata 6, signature_defs 7}; Metadata {name 0, buffer 1}; Buffer {data 0, offset 1, size 2}
const MODEL_BUFFERS = 4, MODEL_METADATA = 6, METADATA_NAME_FIELD = 0, METADATA_BUFFER = 1, BUFFER_DATA = 0;

class Table {
  constructor(view, pos) {
    this.view = view;
    this.pos = pos;
    this.vtable = pos - view.getInt32(pos, true);
    this.vtableSize = view.getUint16(this.vtable, true);
  }
  field(index) {
    const at = 4 + 2 * index;
    if (at >= this.vtableSize) return 0;
    const offset = this.view.getUint16(this.vtable + at, true);
    return offset ? this.pos + offset : 0;
  }
  vector(index) {
    const p = this.field(index);
    if (!p) return null;
    const start = p + this.view.getUint32(p, true);
    return { length: this.view.getUint32(start, true), start: start + 4 };
  }
  tableAt(vector, k) {
    const e = vector.start + 4 * k;
    return new Table(this.view, e + this.view.getUint32(e, true));
  }
  uint(index) {
    const p = this.field(index);
    return p ? this.view.getUint32(p, true) : 0;
  }
}

/** The bytes of the file's condense metadata entry (compressed), or null when it has none. */
export function metadataBytes(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const model = new Table(view, view.getUint32(0, true));
  const entries = model.vector(MODEL_METADATA), buffers = model.vector(MODEL_BUFFERS);
  if (!entries || !buffers) return null;
  for (let k = 0; k < entries.length; k++) {
    const entry = model.tableAt(entries, k);
    const name = entry.vector(METADATA_NAME_FIELD);
    if (!name || new TextDecoder().decode(bytes.subarray(name.start, name.start + name.length)) !== METADATA_NAME) continue;
    const data = model.tableAt(buffers, entry.uint(METADATA_BUFFER)).vector(BUFFER_DATA);
    return data ? bytes.subarray(data.start, data.start + data.length) : null;
  }
  return null;
}

/** The file's condense metadata as an object; throws a sentence when it is missing or damaged. */
export async function readMetadata(bytes) {
  const packed = metadataBytes(bytes);
  if (!packed) throw new Error("the model file has no condense metadata: export it with `condense export`");
  const stream = new Blob([packed]).stream().pipeThrough(new DecompressionStream("deflate"));
  try {
    return JSON.parse(await new Response(stream).text());
  } catch (err) {
    throw new Error(`the model file's condense metadata does not parse (${err.message})`);
  }
}
