// numpy's .npz (a zip of .npy arrays), read in the browser: a model's entropy_model.npz is used as it
// ships, the same bytes whose SHA-256 the manifest and every file's model identity name.

import { ModelError } from './errors.js';

const EOCD = 0x06054b50, CENTRAL = 0x02014b50, LOCAL = 0x04034b50;
const TYPES = {  // numpy dtype code -> [typed array, bytes per element]
  i1: [Int8Array, 1], u1: [Uint8Array, 1], i2: [Int16Array, 2], u2: [Uint16Array, 2], i4: [Int32Array, 4],
  u4: [Uint32Array, 4], i8: [BigInt64Array, 8], u8: [BigUint64Array, 8], f4: [Float32Array, 4], f8: [Float64Array, 8],
};

/** The end-of-central-directory record: [entries, central directory offset]. */
function endOfDirectory(bytes, view) {
  for (let at = bytes.length - 22; at >= Math.max(0, bytes.length - 22 - 65535); at--) {
    if (view.getUint32(at, true) === EOCD) return [view.getUint16(at + 10, true), view.getUint32(at + 16, true)];
  }
  throw new ModelError('not a zip archive (no end of central directory)');
}

/** Each member of a zip archive: {name, method, data (still compressed)}. */
function members(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let [count, at] = endOfDirectory(bytes, view);
  const found = [];
  for (let i = 0; i < count; i++) {
    if (at + 46 > bytes.length || view.getUint32(at, true) !== CENTRAL) throw new ModelError('zip central directory is damaged');
    const method = view.getUint16(at + 10, true), size = view.getUint32(at + 20, true);
    const nameLength = view.getUint16(at + 28, true), extra = view.getUint16(at + 30, true), comment = view.getUint16(at + 32, true);
    const local = view.getUint32(at + 42, true);
    const name = new TextDecoder().decode(bytes.subarray(at + 46, at + 46 + nameLength));
    if (size === 0xffffffff || local === 0xffffffff) throw new ModelError(`zip64 member ${name} is not supported`);
    if (local + 30 > bytes.length || view.getUint32(local, true) !== LOCAL) throw new ModelError(`zip member ${name} is damaged`);
    const start = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
    if (start + size > bytes.length) throw new ModelError(`zip member ${name} runs past the end of the archive`);
    found.push({ name, method, data: bytes.subarray(start, start + size) });
    at += 46 + nameLength + extra + comment;
  }
  return found;
}

async function inflate(data) {
  const stream = new Blob([data]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** One .npy array -> {dtype ('i8', ...), shape, data (a typed array; 64-bit integers as Numbers, exactly)}. */
export function parseNpy(bytes, name) {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (bytes.length < 10 || magic.some((b, i) => bytes[i] !== b)) throw new ModelError(`${name} is not a .npy array`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const wide = bytes[6] >= 2;
  const length = wide ? view.getUint32(8, true) : view.getUint16(8, true);
  const start = (wide ? 12 : 10) + length;
  const text = new TextDecoder().decode(bytes.subarray(wide ? 12 : 10, start));
  const descr = /'descr':\s*'([<|>=])([a-z]\d)'/.exec(text), shape = /'shape':\s*\(([^)]*)\)/.exec(text);
  if (!descr || !shape || /'fortran_order':\s*True/.test(text) || descr[1] === '>' || !(descr[2] in TYPES)) {
    throw new ModelError(`${name}: unsupported .npy header ${text.trim()}`);
  }
  const dims = shape[1].split(',').map((s) => s.trim()).filter((s) => s).map(Number);
  const [Type, width] = TYPES[descr[2]];
  const count = dims.reduce((a, b) => a * b, 1);
  if (start + count * width > bytes.length) throw new ModelError(`${name}: the .npy data is truncated`);
  const data = new Type(bytes.slice(start, start + count * width).buffer);
  return { dtype: descr[2], shape: dims, data: width === 8 && descr[2] !== 'f8' ? exactNumbers(data, name) : data };
}

/** 64-bit integers as float64 Numbers, refusing any that float64 cannot hold exactly. */
function exactNumbers(big, name) {
  const out = new Float64Array(big.length);
  for (let i = 0; i < big.length; i++) {
    const v = Number(big[i]);
    if (!Number.isSafeInteger(v)) throw new ModelError(`${name}: the integer ${big[i]} is beyond 2^53`);
    out[i] = v;
  }
  return out;
}

/** An .npz archive's bytes -> Map of array name (without .npy) -> parseNpy's result. */
export async function parseNpz(bytes) {
  const arrays = new Map();
  for (const member of members(bytes)) {
    if (!member.name.endsWith('.npy')) continue;
    if (member.method !== 0 && member.method !== 8) throw new ModelError(`${member.name}: zip compression ${member.method} is not supported`);
    const raw = member.method === 8 ? await inflate(member.data) : member.data;
    const name = member.name.slice(0, -4);
    arrays.set(name, parseNpy(raw, name));
  }
  return arrays;
}
