// The entropy decoder in WebAssembly: l3ic's C glue and zstd's FSE, compiled by web/build_wasm.py.
//
// This wrapper copies inputs into the module's memory, calls the glue and copies results out; the
// glue checks every chunk as it does for Python (layouts before allocation, every symbol, exact
// stream ends), so the messages are those of l3ic.fse: "corrupt FSE data: <what> (chunk i of n)".
// Memory is freed on every path, and the module's memory is capped at build time.

import { FormatError, L3icError } from './errors.js';
import { reprStr } from './pyformat.js';

const WASI_ENOSYS = 52;  // the module's libc may ask to write to a file; a browser has none
const MAX_BLOCK = 2 ** 30;  // the module's memory is capped at 1 GiB (build_wasm.py)

/** Memory blocks taken from the module's malloc, all freed by release(). */
class Allocations {
  constructor(exports) {
    this.exports = exports;
    this.pointers = [];
  }

  /** A block of `size` bytes (at least 1), or "out of memory". */
  alloc(size) {
    if (!(size <= MAX_BLOCK)) throw new L3icError('out of memory');  // malloc takes a 32-bit size
    const pointer = this.exports.malloc(Math.max(1, size));
    if (!pointer) throw new L3icError('out of memory');
    this.pointers.push(pointer);
    return pointer;
  }

  /** A copy of a typed array in the module's memory; its address. */
  copy(array) {
    const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
    const pointer = this.alloc(bytes.length);
    new Uint8Array(this.exports.memory.buffer, pointer, bytes.length).set(bytes);
    return pointer;
  }

  release() {
    for (const pointer of this.pointers) this.exports.free(pointer);
    this.pointers = [];
  }
}

export class Fse {
  /** The module at `url` (web/dist/l3ic_fse.wasm), instantiated. */
  static async load(url) {
    const imports = { wasi_snapshot_preview1: { fd_close: () => WASI_ENOSYS, fd_seek: () => WASI_ENOSYS, fd_write: () => WASI_ENOSYS } };
    const response = await fetch(url);
    if (!response.ok) throw new L3icError(`cannot load the entropy decoder ${url}: HTTP ${response.status}`);
    const { instance } = await WebAssembly.instantiate(await response.arrayBuffer(), imports);
    return new Fse(instance.exports);
  }

  constructor(exports) {
    this.exports = exports;
    this.maxSymbols = Number(exports.l3ic_wasm_limit(0));
  }

  /** Run `body(allocations)`, freeing what it allocated whatever happens. */
  withMemory(body) {
    const allocations = new Allocations(this.exports);
    try {
      return body(allocations);
    } finally {
      allocations.release();
    }
  }

  cString(pointer) {
    const memory = new Uint8Array(this.exports.memory.buffer);
    let end = pointer;
    while (memory[end] !== 0) end++;
    return new TextDecoder().decode(memory.subarray(pointer, end));
  }

  /** Throw what l3ic.fse._raise_for raises for a glue error code. */
  check(code, where, n) {
    if (code === 0) return;
    const message = this.cString(this.exports.l3ic_fse_error_message(code));
    if (code === -4) throw new L3icError(`out of memory`);
    if (code === -1 || code === -10) throw new L3icError(`internal error: FSE decoder: ${message}`);
    const chunk = where < n ? ` (chunk ${where} of ${n})` : '';
    throw new FormatError(`corrupt FSE data: ${message}${chunk}`);
  }

  checkSymbols(nSymbols) {
    if (!(nSymbols >= 0 && nSymbols <= this.maxSymbols)) {
      throw new L3icError(`n_symbols must be 0..${this.maxSymbols} per channel, got ${nSymbols}`);
    }
  }

  /**
   * Chunks in modes 0..4 (l3ic.fse.decode_channels): `payload` holds modes.length chunks of
   * `nSymbols` symbols each, in rows of `width` -> Uint8Array (chunks x nSymbols).
   */
  decodeChannels(payload, modes, sizes, nSymbols, alphabetSize, width) {
    this.checkSymbols(nSymbols);
    const n = modes.length;
    return this.withMemory((m) => {
      const src = m.copy(payload), modesAt = m.copy(modes), sizesAt = m.copy(sizes);
      const out = m.alloc(n * nSymbols), where = m.alloc(4);
      new Uint32Array(this.exports.memory.buffer, where, 1)[0] = n;
      const code = this.exports.l3ic_fse_decode_channels(src, payload.length, modesAt, sizesAt, n, nSymbols, width,
        alphabetSize, out, where);
      this.check(code, new Uint32Array(this.exports.memory.buffer, where, 1)[0], n);
      return new Uint8Array(this.exports.memory.buffer, out, n * nSymbols).slice();
    });
  }

  /** Static tables from normalized counts (Int16Array, nTables x alphabetSize): l3ic.fse.StaticTables. */
  tables(counts, nTables, alphabetSize, tableLog) {
    return new StaticTables(this, counts, nTables, alphabetSize, tableLog);
  }

  /**
   * A zstd side-data record, decompressed to at most `capacity` bytes (container._unzstd); a
   * stream that does not decompress is "corrupt l3ic file: side data 'TAG' does not decompress (...)".
   */
  unzstd(stored, capacity, tag) {
    return this.withMemory((m) => {
      const src = m.copy(stored), dst = m.alloc(capacity), written = m.alloc(4);
      const code = this.exports.l3ic_wasm_unzstd(src, stored.length, dst, capacity, written);
      if (code === -1) throw new L3icError('out of memory');
      if (code !== 0) {
        const name = this.cString(this.exports.l3ic_wasm_zstd_error(code));
        throw new FormatError(`corrupt l3ic file: side data ${reprStr(tag)} does not decompress (zstd decompress error: ${name})`);
      }
      const length = new Uint32Array(this.exports.memory.buffer, written, 1)[0];
      return new Uint8Array(this.exports.memory.buffer, dst, length).slice();
    });
  }
}

/** K static FSE tables of one tableLog, built once in the module's memory (l3ic_fse_tables_create). */
class StaticTables {
  constructor(fse, counts, nTables, alphabetSize, tableLog) {
    this.fse = fse;
    this.nTables = nTables;
    this.alphabetSize = alphabetSize;
    this.pointer = fse.withMemory((m) => {
      const countsAt = m.copy(counts), out = m.alloc(4);
      const code = fse.exports.l3ic_fse_tables_create(countsAt, nTables, alphabetSize, tableLog, out);
      if (code !== 0) {
        throw new L3icError(`${fse.cString(fse.exports.l3ic_fse_error_message(code))} (${nTables} tables of ${alphabetSize} symbols, table_log ${tableLog})`);
      }
      return new Uint32Array(fse.exports.memory.buffer, out, 1)[0];
    });
  }

  /**
   * Chunks in modes 1, 2, 3, 5 whose symbol i of chunk c uses table tableIndex[c * nSymbols + i]
   * (StaticTables.decode) -> Uint8Array (chunks x nSymbols).
   */
  decode(payload, modes, sizes, tableIndex, nSymbols) {
    const fse = this.fse;
    fse.checkSymbols(nSymbols);
    const n = modes.length;
    return fse.withMemory((m) => {
      const src = m.copy(payload), modesAt = m.copy(modes), sizesAt = m.copy(sizes), index = m.copy(tableIndex);
      const out = m.alloc(n * nSymbols), where = m.alloc(4);
      new Uint32Array(fse.exports.memory.buffer, where, 1)[0] = n;
      const code = fse.exports.l3ic_fse_decode_static(this.pointer, src, payload.length, modesAt, sizesAt, index, n, nSymbols,
        out, where);
      fse.check(code, new Uint32Array(fse.exports.memory.buffer, where, 1)[0], n);
      return new Uint8Array(fse.exports.memory.buffer, out, n * nSymbols).slice();
    });
  }
}
