// Decode an .l3ic file in the browser: the same stages as l3ic.codec's Codec.decode_to_pil.
//
//   parse (container.js) -> the model the file names (models.js) -> entropy decoding: ẑ, the
//   hyper-synthesis's bases and table indices, the FSE chunks (hyperprior.js, fse.js) -> the
//   decoder network on onnxruntime-web, block by block with HALO cells of context -> crop, gray,
//   alpha (side data) -> pixels, and a PNG that carries the ICC profile for the browser to apply.
//
// With `trace`, it also returns the SHA-256 of what the golden files pin (tests/golden/make_golden.py):
// the latents (symbols_sha256) and, for format 3, ẑ, index maps, bases, modes and values
// (entropy_sha256), so a test can prove them bit-identical to the Python runtime's.

import { FLAG_LOSSLESS, FLAG_MEAN_SHIFT, FLAG_QUALITY, L3icFile, LOSSLESS, MAX_PIXELS } from './container.js';
import { FormatError } from './errors.js';
import { Fse } from './fse.js';
import { checkEntropyModel, Models, sha256 } from './models.js';
import { encodePng } from './png.js';

export const HALO = 12;  // latent cells of context around a block the decoder network runs on (codec.HALO)
const ADAPTIVE_MODES = [0, 4];  // FSE and CONTEXT chunks code plain values with per-file tables (hyperprior.ADAPTIVE_MODES)
const now = () => performance.now() / 1000;

export class Decoder {
  /**
   * `ort`: the onnxruntime-web module; `base`: the URL the server serves web/ and models/ under;
   * `threads`: ONNX Runtime's WebAssembly threads (1 unless the page is cross-origin isolated).
   */
  static async create(ort, { base = self.location.href, threads = 1 } = {}) {
    ort.env.wasm.wasmPaths = new URL('ort/', base).href;
    ort.env.wasm.numThreads = threads;
    ort.env.logLevel = 'error';
    const [fse, models] = await Promise.all([Fse.load(new URL('dist/l3ic_fse.wasm', base).href), Models.load(new URL('models/index.json', base).href)]);
    return new Decoder(ort, fse, models, threads);
  }

  constructor(ort, fse, models, threads) {
    this.ort = ort;
    this.fse = fse;
    this.models = models;
    this.threads = threads;
    this.sessionOptions = { executionProviders: ['wasm'], graphOptimizationLevel: 'all' };
  }

  /**
   * bytes (Uint8Array) -> {width, height, mode, channels, pixels, icc, png, info, timings, hashes?}.
   * Throws an L3icError with a one-line message for any bad file.
   */
  async decode(bytes, { maxPixels = MAX_PIXELS, trace = false, png = true } = {}) {
    const clock = stopwatch();
    const parsed = L3icFile.parse(bytes, { maxPixels });
    clock.lap('parse');
    const h = parsed.header, unzstd = (stored, capacity, tag) => this.fse.unzstd(stored, capacity, tag);
    let model = null, samples, traced = null;
    if (h.flags & FLAG_LOSSLESS) {  // a tiny image stored as pixels: no model involved
      samples = losslessPixels(parsed.sideRecord(LOSSLESS, unzstd), h);
      clock.lap('entropy');
    } else {
      model = this.models.find(h);
      await model.load(this.ort, this.fse, this.sessionOptions);
      checkEntropyModel(h, model);
      clock.lap('load');
      traced = trace ? { parts: [] } : null;
      const values = this.latentValues(parsed, model, traced);
      clock.lap('entropy');
      samples = await this.synthesise(model, values, h);
      clock.lap('network');
    }
    const image = toImage(samples, h, parsed.sideData(unzstd));
    clock.lap('output');
    const encoded = png ? await encodePng(image) : null;
    clock.lap('png');
    const timings = clock.laps;
    timings.decode = timings.parse + timings.entropy + timings.network + timings.output;  // without model loading and the PNG
    const result = { ...image, png: encoded, info: describe(parsed, model, bytes.length), timings };
    if (traced) result.hashes = await hashes(traced);
    return result;
  }

  /** Latent values for the decoder network, Float32Array (C, latent_h, latent_w) (codec.latent_values). */
  latentValues(parsed, model, traced) {
    const h = parsed.header;
    if (h.version < 3) return this.codebookValues(parsed, traced);
    const em = model.entropyModel;
    const gain = h.flags & FLAG_QUALITY ? em.gains.at(h.quality) : null;
    const z = this.decodeZ(parsed, em);
    if (traced) traced.parts.push(z);
    const plane = h.latentH * h.latentW, values = new Float32Array(h.channels * plane);
    const shifted = (h.flags & FLAG_MEAN_SHIFT) !== 0;
    for (let t = 0; t < h.nTiles; t++) {
      const rect = h.tileRect(t);
      const { origin, index } = tileOrigins(em.tileParameters(z, h.zShape, rect, gain), em.phases, shifted);
      const chunks = parsed.tileChunks(t);
      const block = this.decodeTile(em, chunks, origin, index, h, rect[3], shifted);
      if (traced) traced.parts.push(index, quarters(origin, shifted, Int32Array), chunks.modes, quarters(block, shifted, Int16Array));
      paste(values, h.latentH, h.latentW, block, rect);
    }
    if (traced) traced.latents = quarters(values, shifted, Int16Array);
    if (gain) {
      for (let c = 0; c < h.channels; c++) {
        for (let i = c * plane; i < (c + 1) * plane; i++) values[i] = Math.fround(values[i] * gain.inverse[c]);
      }
    }
    return values;
  }

  /**
   * The ẑ symbols of a format-3 file, Uint8Array (z channels, zh, zw) (ConditionalCoder.decode_z): channel c
   * uses z table c, or, in an FSE or CONTEXT chunk, the chunk's own table (rows of width zw).
   */
  decodeZ(parsed, em) {
    const h = parsed.header, [zh, zw] = h.zShape, n = h.zChannels * zh * zw;
    const chunks = parsed.zChunks();
    if (ADAPTIVE_MODES.includes(chunks.modes[0])) {
      return this.fse.decodeChannels(chunks.payload, chunks.modes, chunks.sizes, n, em.zAlphabet, zw);
    }
    const index = new Uint8Array(n);
    for (let c = 0; c < h.zChannels; c++) index.fill(c, c * zh * zw, (c + 1) * zh * zw);
    return em.zTables.decode(chunks.payload, chunks.modes, chunks.sizes, index, n);
  }

  /**
   * One tile's latent values (C, h, w) (conditional.tile_values): chunks in static modes code ŷ - origin
   * with the model's tables, FSE and CONTEXT chunks the values themselves (ŷ - origin too in a mean-shifted
   * file); each kind is decoded in one call, as in Python, so an error names the same chunk.
   */
  decodeTile(em, chunks, origin, index, h, width, shifted) {
    const C = chunks.modes.length, n = origin.length / C;
    const values = new Float32Array(C * n);
    const rows = [[], []];
    chunks.modes.forEach((mode, c) => rows[ADAPTIVE_MODES.includes(mode) ? 1 : 0].push(c));
    const [staticRows, adaptiveRows] = rows.map((r) => pick(chunks, r));
    if (staticRows.rows.length) {
      const tables = gather(index, staticRows.rows, n);
      const symbols = em.latentTables.decode(staticRows.payload, staticRows.modes, staticRows.sizes, tables, n);
      staticRows.rows.forEach((c, j) => {
        for (let i = 0; i < n; i++) values[c * n + i] = symbols[j * n + i] + h.codebookMin + origin[c * n + i];
      });
    }
    if (adaptiveRows.rows.length) {
      const symbols = this.fse.decodeChannels(adaptiveRows.payload, adaptiveRows.modes, adaptiveRows.sizes, n, h.codebookSize, width);
      adaptiveRows.rows.forEach((c, j) => {
        for (let i = 0; i < n; i++) values[c * n + i] = symbols[j * n + i] + h.codebookMin + (shifted ? origin[c * n + i] : 0);
      });
    }
    return values;
  }

  /** Formats 1 and 2: every tile's symbols as codebook values (codec.read_symbols). */
  codebookValues(parsed, traced) {
    const h = parsed.header, values = new Float32Array(h.channels * h.latentH * h.latentW);
    for (let t = 0; t < h.nTiles; t++) {
      const rect = h.tileRect(t), chunks = parsed.tileChunks(t);
      const symbols = this.fse.decodeChannels(chunks.payload, chunks.modes, chunks.sizes, rect[2] * rect[3], h.codebookSize, rect[3]);
      paste(values, h.latentH, h.latentW, Float32Array.from(symbols, (s) => s + h.codebookMin), rect);
    }
    if (traced) traced.latents = Int16Array.from(values);
    return values;
  }

  /**
   * The decoder network over the image, block by block with HALO cells of latent context, pasted into
   * uint8 samples of the image without its margin: RGB (height, width, 3), or gray (codec.synthesise).
   */
  async synthesise(model, values, h) {
    const s = h.stride, [my, mx] = h.margin;
    const [rx, ry, rw, rh] = [mx * s, my * s, h.width, h.height];
    const rgb = new Uint8Array(rh * rw * 3);
    for (const block of blocksOf(h, rx, ry, rw, rh)) {
      const [ya, yb, xa, xb] = window(h, block);
      const out = await model.decode(this.ort, cut(values, h.latentH, h.latentW, ya, yb, xa, xb), yb - ya, xb - xa);
      const ow = (xb - xa) * s;
      const y0 = Math.max(block[0] * s, ry), x0 = Math.max(block[1] * s, rx);
      const y1 = Math.min((block[0] + block[2]) * s, ry + rh), x1 = Math.min((block[1] + block[3]) * s, rx + rw);
      for (let y = y0; y < y1; y++) {
        const from = ((y - ya * s) * ow + (x0 - xa * s)) * 3, to = ((y - ry) * rw + (x0 - rx)) * 3;
        for (let i = 0; i < (x1 - x0) * 3; i++) rgb[to + i] = toUint8(out[from + i]);
      }
    }
    return h.mode === 'L' ? toGray(rgb) : rgb;
  }
}

/** The chunks `rows` of a tile, back to back: {rows, modes, sizes, payload}. */
function pick(chunks, rows) {
  const ends = [];
  chunks.sizes.reduce((end, size, c) => (ends[c] = end + size), 0);
  const parts = rows.map((c) => chunks.payload.subarray(ends[c] - chunks.sizes[c], ends[c]));
  const payload = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (payload.set(p, at), at + p.length), 0);
  return { rows, modes: Uint8Array.from(rows, (c) => chunks.modes[c]), sizes: Uint32Array.from(rows, (c) => chunks.sizes[c]), payload };
}

/** The rows of a (C x n) array, back to back. */
function gather(array, rows, n) {
  const out = new array.constructor(rows.length * n);
  rows.forEach((c, j) => out.set(array.subarray(c * n, (c + 1) * n), j * n));
  return out;
}

/** Write a (C, h, w) block into (C, H, W) planes at rect [y, x, h, w]. */
function paste(planes, H, W, block, [y, x, h, w]) {
  const C = planes.length / (H * W);
  for (let c = 0; c < C; c++) {
    for (let r = 0; r < h; r++) planes.set(block.subarray((c * h + r) * w, (c * h + r + 1) * w), (c * H + y + r) * W + x);
  }
}

/** The (C, yb - ya, xb - xa) window of (C, H, W) planes. */
function cut(planes, H, W, ya, yb, xa, xb) {
  const C = planes.length / (H * W), h = yb - ya, w = xb - xa, out = new Float32Array(C * h * w);
  for (let c = 0; c < C; c++) {
    for (let r = 0; r < h; r++) out.set(planes.subarray((c * H + ya + r) * W + xa, (c * H + ya + r) * W + xb), (c * h + r) * w);
  }
  return out;
}

/** Latent rectangles [y, x, h, w] to run the decoder on: the tiles cut down to the region (codec._blocks). */
function blocksOf(h, x, y, w, hh) {
  const s = h.stride;
  const ly0 = Math.floor(y / s), lx0 = Math.floor(x / s), ly1 = Math.ceil((y + hh) / s), lx1 = Math.ceil((x + w) / s);
  const blocks = [];
  for (let t = 0; t < h.nTiles; t++) {
    const [ty, tx, th, tw] = h.tileRect(t);
    const by0 = Math.max(ty, ly0), bx0 = Math.max(tx, lx0), by1 = Math.min(ty + th, ly1), bx1 = Math.min(tx + tw, lx1);
    if (by0 < by1 && bx0 < bx1) blocks.push([by0, bx0, by1 - by0, bx1 - bx0]);
  }
  return blocks;
}

/** [ya, yb, xa, xb]: a block with HALO cells around it, clipped to the latent (codec._with_halo). */
function window(h, [y, x, bh, bw]) {
  return [Math.max(0, y - HALO), Math.min(h.latentH, y + bh + HALO), Math.max(0, x - HALO), Math.min(h.latentW, x + bw + HALO)];
}

/** numpy's rint: round half to even. */
function rint(v) {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** A decoder output in [0, 1] -> uint8 as codec._to_uint8 does it (float32 product, rint, clip). */
function toUint8(unit) {
  return Math.min(255, Math.max(0, rint(Math.fround(unit * 255))));
}

/** Gray from decoded RGB as codec.synthesise makes it: numpy's mean of the three, then rint. */
function toGray(rgb) {
  const gray = new Uint8Array(rgb.length / 3);
  for (let p = 0; p < gray.length; p++) gray[p] = rint((rgb[3 * p] + rgb[3 * p + 1] + rgb[3 * p + 2]) / 3);
  return gray;
}

/**
 * The samples of a LOSSLESS record (l3ic.lossless.unpack): a filter byte - 0 NONE, 1 LEFT (PNG's Sub),
 * 2 GRADIENT - then (height, width, K) filtered samples, undone by cumulative sums modulo 256.
 */
function losslessPixels(record, h) {
  const k = h.mode === 'L' ? 1 : 3, row = h.width * k, expected = 1 + h.height * row;
  if (record.length !== expected) {
    throw new FormatError(`corrupt l3ic file: the lossless record has ${record.length} bytes, expected ${expected}`);
  }
  const filter = record[0];
  if (filter > 2) throw new FormatError(`corrupt l3ic file: unknown lossless filter ${filter}`);
  const v = record.slice(1);  // a Uint8Array: every sum below wraps modulo 256
  if (filter === 2) for (let i = row; i < v.length; i++) v[i] += v[i - row];
  if (filter >= 1) {
    for (let y = 0; y < h.height; y++) for (let i = y * row + k; i < (y + 1) * row; i++) v[i] += v[i - k];
  }
  return v;
}

/**
 * Pixels of the file's colour mode with its alpha plane and ICC profile (image.to_pil), from
 * `samples` of that mode (3 or 1 a pixel): {width, height, mode ('RGB', 'L', 'RGBA', 'LA'),
 * channels, pixels (interleaved), icc}.
 */
function toImage(samples, h, side) {
  const n = h.width * h.height, alpha = side.get('ALPH');
  if (alpha && alpha.length !== n) {
    throw new FormatError(`corrupt l3ic file: alpha plane has ${alpha.length} bytes for ${h.width}x${h.height} pixels`);
  }
  const colours = h.mode === 'L' ? 1 : 3, channels = colours + (alpha ? 1 : 0);
  let pixels = samples;
  if (alpha) {
    pixels = new Uint8Array(n * channels);
    for (let p = 0; p < n; p++) {
      for (let c = 0; c < colours; c++) pixels[p * channels + c] = samples[p * colours + c];
      pixels[p * channels + colours] = alpha[p];
    }
  }
  const icc = side.get('ICCP');
  return { width: h.width, height: h.height, mode: h.mode + (alpha ? 'A' : ''), channels, pixels, icc: icc && icc.length ? icc : null };
}

/** Seconds per named stage: lap(name) adds the time since the last lap. */
function stopwatch() {
  const laps = { parse: 0, load: 0, entropy: 0, network: 0, output: 0, png: 0 };
  let last = now();
  return {
    laps,
    lap(name) {
      const t = now();
      laps[name] += t - last;
      last = t;
    },
  };
}

/** What the viewer shows about a file (a subset of l3ic.codec.describe). */
function describe(parsed, model, nBytes) {
  const h = parsed.header;
  return {
    width: h.width, height: h.height, mode: h.mode, model: h.modelName, legacy: Boolean(model && model.legacy),
    lossless: Boolean(h.flags & FLAG_LOSSLESS), bytes: nBytes,
    bpp: (8 * nBytes) / (h.width * h.height), format_version: parsed.version, channels: h.channels, tiles: h.nTiles,
    quality: h.flags & FLAG_QUALITY ? h.quality / 100 : null, side_data: parsed.side.map((r) => r.tag),
  };
}

/**
 * What a tile's symbols count from, and their tables (EntropyModel.tile_origins): floor(mean) and the table of
 * the mean's scale and fractional step; mean-shifted, the mean itself (quarters, exact in float32) and the
 * scale's table of step 0.
 */
function tileOrigins({ base, index }, phases, shifted) {
  const origin = Float32Array.from(base);
  if (!shifted) return { origin, index };
  const table = new Uint8Array(index.length);
  for (let i = 0; i < index.length; i++) {
    const phase = index[i] & (phases - 1);
    origin[i] += phase / phases;
    table[i] = index[i] - phase;
  }
  return { origin, index: table };
}

/** Values as the golden hashes take them (make_golden.py): integers as `Type`, or quarters x 4 as int32. */
function quarters(values, shifted, Type) {
  return shifted ? Int32Array.from(values, (v) => 4 * v) : Type.from(values);
}

/** SHA-256 (hex) of the traced arrays, laid out as tests/golden/make_golden.py hashes them. */
async function hashes(traced) {
  const hex = async (arrays) => {
    const total = arrays.reduce((n, a) => n + a.byteLength, 0), all = new Uint8Array(total);
    arrays.reduce((at, a) => (all.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), at), at + a.byteLength), 0);
    return Array.from(await sha256(all), (b) => b.toString(16).padStart(2, '0')).join('');
  };
  return { symbols_sha256: await hex([traced.latents]), entropy_sha256: traced.parts.length ? await hex(traced.parts) : null };
}
