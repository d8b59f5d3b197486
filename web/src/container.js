// The l3ic container, format versions 1-3 (byte-exact spec: docs/FORMAT.md), read in the browser.
//
// A port of the Python reader (src/l3ic/container.py: L3icFile.parse, Header): the same checks in
// the same order with the same one-line messages, so a hostile file fails the same way everywhere.
// Every length and count is checked against the real size of the data before anything is
// allocated, the header and index are covered by one CRC32 checked before any field is trusted, and
// every chunk and side-data record is CRC-checked when it is read.

import { crc32 } from './crc32.js';
import { FormatError } from './errors.js';
import { hex4, reprBytes, reprStr } from './pyformat.js';

export const MAGIC = [0x4c, 0x33, 0x49, 0x43];  // "L3IC"
export const READABLE_VERSIONS = [1, 2, 3];
export const MAX_PIXELS = 2 ** 26;  // the browser's default: a 64 Mpx image already needs ~1 GB here
export const MAX_SIDE_DATA = 256 * 2 ** 20;
export const FLAG_MARGIN = 0x0001;
export const FLAG_QUALITY = 0x0002;
export const FLAG_LOSSLESS = 0x0004;  // no latent: a tiny image's pixels in the LOSSLESS record
export const FLAG_ADAPTIVE_Z = 0x0008;  // the ẑ chunk carries its own table (mode FSE or CONTEXT)
export const FLAG_MEAN_SHIFT = 0x0010;  // latents coded about the hyperprior's mean: s = ŷ - mean, ŷ in quarters
export const LOSSLESS = 'PIXL';
const KNOWN_FLAGS = FLAG_MARGIN | FLAG_QUALITY | FLAG_LOSSLESS | FLAG_ADAPTIVE_Z | FLAG_MEAN_SHIFT;
const PER_CHUNK_MODES = [0, 4];  // FSE and CONTEXT: chunks that carry their own tables
const MAX_QUALITY = 20000;  // a model's own q in hundredths, up to 200
const MAX_MARGIN = 8;
const MAX_MODEL_NAME = 64;
const COLOUR_MODES = ['RGB', 'L'];
const CODING_MODES = { 1: 4, 2: 5, 3: 6 };  // version -> number of modes (0 .. n-1)
const FIXED_SIZE = 57;
const HYPER_SIZE = 3;
const SIDE_SIZE = 17;
const MIN_ENTRY = 6;
const ZSTD = 1;

const ceilDiv = (a, b) => Math.ceil(a / b);

function truncated(what, end, size) {
  return new FormatError(`truncated l3ic file: ${what} ends at byte ${end} but the file has ${size} bytes`);
}

/**
 * The fixed header's fields (offsets 0..56, little-endian), after the checks that come before the
 * header CRC: magic, version, size, flags, and the counts the index's size is computed from.
 */
function readFixed(bytes, view) {
  const size = bytes.length;
  if (size < 4 || MAGIC.some((b, i) => bytes[i] !== b)) throw new FormatError('not an l3ic file (bad magic)');
  if (size < 5) throw truncated('version byte', 5, size);
  const version = bytes[4];
  if (!READABLE_VERSIONS.includes(version)) {
    throw new FormatError(`unsupported l3ic format version ${version} (this runtime reads versions ${READABLE_VERSIONS.join(', ')})`);
  }
  if (size < FIXED_SIZE) throw truncated('fixed header', FIXED_SIZE, size);
  const f = {
    version, flags: view.getUint16(5, true), width: view.getUint32(7, true),
    height: view.getUint32(11, true), mode: view.getUint8(15), stride: view.getUint8(16),
    codebookSize: view.getUint16(17, true), codebookMin: view.getInt16(19, true), channels: view.getUint16(21, true),
    latentH: view.getUint32(23, true), latentW: view.getUint32(27, true), tileH: view.getUint32(31, true),
    tileW: view.getUint32(35, true), sideCount: view.getUint8(55), nameLength: view.getUint8(56),
  };
  if ((f.flags & ~KNOWN_FLAGS) || (f.flags && version < 3)) {
    throw new FormatError(`unsupported l3ic flags 0x${hex4(f.flags)} (this runtime knows 0x${hex4(KNOWN_FLAGS)}, in version 3)`);
  }
  if ([f.channels, f.latentH, f.latentW, f.tileH, f.tileW].includes(0)) {
    throw new FormatError('invalid l3ic header: zero channel count, latent size or tile size');
  }
  return f;
}

/**
 * The geometry and identity of a file, validated as l3ic.container.Header validates them; the
 * getters are the Python properties of the same names.
 */
export class Header {
  constructor(fields) {
    Object.assign(this, fields);
    const problem = this.problem();
    if (problem) throw new FormatError(`invalid l3ic header: ${problem}`);
  }

  problem() {
    const nameBytes = new TextEncoder().encode(this.modelName).length;
    if (!(this.width >= 1 && this.height >= 1)) return `image size ${this.width}x${this.height} is outside 1..2^32-1`;
    if (!(nameBytes >= 1 && nameBytes <= MAX_MODEL_NAME)) {
      return `model name must be 1..${MAX_MODEL_NAME} bytes of UTF-8, got ${nameBytes}`;
    }
    if (/[\u0000-\u001f\u007f-\u009f]/.test(this.modelName)) {
      return `model name ${reprStr(this.modelName)} contains control characters`;
    }
    if (!(this.codebookSize >= 2 && this.codebookSize <= 256)) return `codebook size ${this.codebookSize} is outside 2..256`;
    if (!(this.codebookMin >= -(2 ** 15) && this.codebookMin <= 2 ** 15 - this.codebookSize)) {
      return `codebook ${this.codebookMin}..${this.codebookMin + this.codebookSize - 1} does not fit in int16`;
    }
    if (!(this.stride >= 1)) return `stride ${this.stride} is outside 1..255`;
    if ((this.flags & ~KNOWN_FLAGS) || (this.flags && !this.zChannels)) {
      return `unsupported flags 0x${hex4(this.flags)} (version 3 knows 0x${hex4(KNOWN_FLAGS)})`;
    }
    if ((this.flags & FLAG_LOSSLESS) && this.flags !== FLAG_LOSSLESS) return `the lossless flag goes alone (flags 0x${hex4(this.flags)})`;
    if (!(this.quality <= MAX_QUALITY && ((this.flags & FLAG_QUALITY) || this.quality === 0))) {
      return `quality ${this.quality} is outside 0..${MAX_QUALITY}, or given without FLAG_QUALITY`;
    }
    return this.latentProblem() || this.tileProblem();
  }

  /** latent_h and latent_w are redundant: they must be the image's at the stride (plus a margin with MARGIN). */
  latentProblem() {
    const expected = [ceilDiv(this.height, this.stride), ceilDiv(this.width, this.stride)];
    const extra = [this.latentH - expected[0], this.latentW - expected[1]];
    if (this.flags & FLAG_MARGIN) {
      const fits = extra.every((e) => e >= 0 && e <= 2 * MAX_MARGIN && e % 2 === 0);
      if (!fits || (extra[0] === 0 && extra[1] === 0)) {
        return `latent size ${this.latentH}x${this.latentW} is not a ${this.width}x${this.height} image at stride ` +
          `${this.stride} plus a margin of 0..${MAX_MARGIN} cells (not both 0)`;
      }
    } else if (extra[0] !== 0 || extra[1] !== 0) {
      return `latent size ${this.latentH}x${this.latentW} does not match a ${this.width}x${this.height} image at ` +
        `stride ${this.stride} (expected ${expected[0]}x${expected[1]})`;
    }
    return null;
  }

  tileProblem() {
    if (!(this.tileH >= 1 && this.tileH <= this.latentH && this.tileW >= 1 && this.tileW <= this.latentW)) {
      return `tile size ${this.tileH}x${this.tileW} is outside 1x1..${this.latentH}x${this.latentW} (the latent size)`;
    }
    if (this.nTiles * this.channels + (this.zChannels ? 1 : 0) >= 2 ** 32) {
      return `${this.nTiles} tiles x ${this.channels} channels is 2^32 chunks or more`;
    }
    if (!this.zChannels && !this.hyperStride) return null;
    if (!(this.zChannels >= 1 && this.hyperStride >= 1)) {
      return `z channels ${this.zChannels} / hyper stride ${this.hyperStride} outside 1..65535 / 1..255`;
    }
    for (const [tile, latent] of [[this.tileH, this.latentH], [this.tileW, this.latentW]]) {
      if (tile !== latent && tile % this.hyperStride) {
        return `tile size ${tile} is not a multiple of the hyper stride ${this.hyperStride}`;
      }
    }
    return null;
  }

  get version() { return this.zChannels ? 3 : 2; }
  get tileRows() { return ceilDiv(this.latentH, this.tileH); }
  get tileCols() { return ceilDiv(this.latentW, this.tileW); }
  get nTiles() { return this.tileRows * this.tileCols; }

  /** [y, x] latent cells of margin above / left of the image (FLAG_MARGIN; else [0, 0]). */
  get margin() {
    return [(this.latentH - ceilDiv(this.height, this.stride)) / 2, (this.latentW - ceilDiv(this.width, this.stride)) / 2];
  }

  /** [h, w] of the ẑ map (format 3). */
  get zShape() { return [ceilDiv(this.latentH, this.hyperStride), ceilDiv(this.latentW, this.hyperStride)]; }

  /** [y0, x0, h, w] of tile `index` (row-major) in latent cells; edge tiles are clipped. */
  tileRect(index) {
    const row = Math.floor(index / this.tileCols), col = index % this.tileCols;
    const y0 = row * this.tileH, x0 = col * this.tileW;
    return [y0, x0, Math.min(this.tileH, this.latentH - y0), Math.min(this.tileW, this.latentW - x0)];
  }
}

/**
 * `count` LEB128 chunk lengths from bytes[start, limit): [lengths, end offset].  The checks run as
 * the Python reader's vectorised ones do - all terminators, then every length, then minimality,
 * then the values - so the first problem reported is the same.
 */
function decodeVarints(bytes, start, count, limit) {
  const stop = Math.min(limit, start + 5 * count);
  const ends = [];
  for (let i = start; i < stop && ends.length < count; i++) if (bytes[i] < 0x80) ends.push(i);
  if (ends.length < count) {
    if (stop - start < 5 * count) throw new FormatError('truncated l3ic file: channel index runs past the end of the file');
    throw new FormatError('corrupt l3ic file: chunk length varint longer than 5 bytes');
  }
  const startOf = (j) => (j === 0 ? start : ends[j - 1] + 1);
  for (let j = 0; j < count; j++) {
    if (ends[j] - startOf(j) + 1 > 5) throw new FormatError('corrupt l3ic file: chunk length varint longer than 5 bytes');
  }
  for (let j = 0; j < count; j++) {
    if (bytes[ends[j]] === 0 && ends[j] > startOf(j)) throw new FormatError('corrupt l3ic file: chunk length varint is not minimal');
  }
  const lengths = new Float64Array(count);
  for (let j = 0; j < count; j++) {
    let value = 0;
    for (let i = startOf(j), scale = 1; i <= ends[j]; i++, scale *= 128) value += (bytes[i] & 0x7f) * scale;
    if (value >= 2 ** 32) throw new FormatError('corrupt l3ic file: chunk length of 2^32 bytes or more');
    lengths[j] = value;
  }
  return [lengths, count ? ends[count - 1] + 1 : start];
}

/**
 * The channel index of `count` entries at `index` and the header CRC after it, checked against the
 * file's size before it is read: [chunk lengths, where the CRCs start, where the header CRC is].
 */
function readIndex(bytes, view, index, count) {
  const size = bytes.length;
  if (index + MIN_ENTRY * count + 4 > size) throw truncated(`channel index (${count} entries)`, index + MIN_ENTRY * count + 4, size);
  const [lengths, crcStart] = decodeVarints(bytes, index + count, count, size - 4 * count - 4);
  const headEnd = crcStart + 4 * count;
  if (crc32(bytes, 0, headEnd) !== view.getUint32(headEnd, true)) throw new FormatError('corrupt l3ic file: header checksum mismatch');
  return [lengths, crcStart, headEnd];
}

/** The coding modes, each known to the file's version (the smallest unknown one is named). */
function checkedModes(modes, version) {
  const bad = modes.reduce((least, m) => (m >= CODING_MODES[version] && m < least ? m : least), 256);
  if (bad < 256) throw new FormatError(`corrupt l3ic file: unknown coding mode ${bad} for format version ${version} in channel index`);
  return modes;
}

/** The version-3 fields after the fixed header: [zChannels, hyperStride, quality, nameStart]. */
function readHyper(bytes, view, version, flags) {
  let zChannels = 0, hyperStride = 0, quality = 0, nameStart = FIXED_SIZE;
  const size = bytes.length;
  if (version === 3) {
    if (size < FIXED_SIZE + HYPER_SIZE) throw truncated('hyperprior header', FIXED_SIZE + HYPER_SIZE, size);
    zChannels = view.getUint16(FIXED_SIZE, true);
    hyperStride = view.getUint8(FIXED_SIZE + 2);
    nameStart += HYPER_SIZE;
    if (!(zChannels && hyperStride)) throw new FormatError('invalid l3ic header: format 3 with zero z channels or hyper stride');
  }
  if (flags & FLAG_QUALITY) {
    if (size < nameStart + 2) throw truncated('quality field', nameStart + 2, size);
    quality = view.getUint16(nameStart, true);
    nameStart += 2;
  }
  return [zChannels, hyperStride, quality, nameStart];
}

function decodeName(bytes) {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (e) {
    throw new FormatError('invalid l3ic header: the model name is not valid UTF-8');
  }
}

/**
 * The side-data table -> [records, end of the stored bytes]; each record is
 * {tag, compression, offset, storedLength, rawLength, crc}.
 */
function readSideTable(bytes, view, table, count, payloadEnd, maxSideData) {
  const records = [];
  let pos = payloadEnd, totalRaw = 0;
  for (let r = 0; r < count; r++) {
    const at = table + r * SIDE_SIZE;
    const tagBytes = bytes.subarray(at, at + 4);
    if (!tagBytes.every((b) => b >= 0x20 && b <= 0x7e)) {
      throw new FormatError(`invalid l3ic header: side-data tag ${reprBytes(tagBytes)} is not printable ASCII`);
    }
    const tag = String.fromCharCode(...tagBytes);
    if (records.some((rec) => rec.tag === tag)) throw new FormatError(`invalid l3ic header: side-data tag ${reprStr(tag)} appears twice`);
    const compression = view.getUint8(at + 4), stored = view.getUint32(at + 5, true), raw = view.getUint32(at + 9, true);
    if (compression > ZSTD || (compression === 0 && stored !== raw)) {
      throw new FormatError(`invalid l3ic header: side data ${reprStr(tag)} has compression ${compression} with ` +
        `${stored} bytes stored for ${raw}`);
    }
    records.push({ tag, compression, offset: pos, storedLength: stored, rawLength: raw, crc: view.getUint32(at + 13, true) });
    pos += stored;
    totalRaw += raw;
  }
  if (totalRaw > maxSideData) throw new FormatError(`l3ic side data is ${totalRaw} bytes, over the limit of ${maxSideData}`);
  return [records, pos];
}

/** A parsed l3ic file: the header and where every chunk and record lies in the original bytes. */
export class L3icFile {
  constructor(header, version, bytes, modes, offsets, crcs, side) {
    this.header = header;
    this.version = version;  // the file's format version, one of READABLE_VERSIONS
    this.bytes = bytes;
    this.modes = modes;  // chunk i: the ẑ chunk first (format 3), then tile by tile, channel by channel
    this.offsets = offsets;  // chunk i is bytes[offsets[i], offsets[i + 1])
    this.crcs = crcs;
    this.side = side;
  }

  /** Validate `bytes` (a Uint8Array) and index it; FormatError if it is malformed (L3icFile.parse). */
  static parse(bytes, { maxPixels = MAX_PIXELS, maxSideData = MAX_SIDE_DATA } = {}) {
    const size = bytes.length;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const f = readFixed(bytes, view), version = f.version;
    const [zChannels, hyperStride, quality, nameStart] = readHyper(bytes, view, version, f.flags);

    // Layout first, so that the header CRC is checked before the fields are interpreted.
    const table = nameStart + f.nameLength;
    const index = table + f.sideCount * SIDE_SIZE;
    const count = f.flags & FLAG_LOSSLESS ? 0 : ceilDiv(f.latentH, f.tileH) * ceilDiv(f.latentW, f.tileW) * f.channels + (zChannels ? 1 : 0);
    const [lengths, crcStart, headEnd] = readIndex(bytes, view, index, count);

    if (f.mode >= COLOUR_MODES.length) throw new FormatError(`invalid l3ic header: colour mode ${f.mode} is reserved`);
    const header = new Header({
      width: f.width, height: f.height, mode: COLOUR_MODES[f.mode], modelName: decodeName(bytes.subarray(nameStart, table)),
      decoderHash: bytes.slice(39, 55), codebookSize: f.codebookSize, codebookMin: f.codebookMin, channels: f.channels,
      stride: f.stride, latentH: f.latentH, latentW: f.latentW, tileH: f.tileH, tileW: f.tileW, zChannels, hyperStride,
      flags: f.flags, quality,
    });
    if (f.width * f.height > maxPixels) {
      throw new FormatError(`l3ic image is ${f.width}x${f.height}, over the limit of ${maxPixels} pixels`);
    }
    const modes = checkedModes(bytes.slice(index, index + count), version);
    if (zChannels && count && Boolean(f.flags & FLAG_ADAPTIVE_Z) !== PER_CHUNK_MODES.includes(modes[0])) {
      throw new FormatError(`corrupt l3ic file: the ẑ chunk's mode ${modes[0]} does not match the adaptive-ẑ flag`);
    }
    const payloadStart = headEnd + 4;
    const offsets = new Float64Array(count + 1);
    offsets[0] = payloadStart;
    for (let i = 0; i < count; i++) offsets[i + 1] = offsets[i] + lengths[i];
    const [side, end] = readSideTable(bytes, view, table, f.sideCount, offsets[count], maxSideData);
    if (end > size) throw truncated('payload and side data', end, size);
    if (end < size) throw new FormatError(`corrupt l3ic file: ${size - end} bytes of trailing garbage after the last record`);
    if (Boolean(f.flags & FLAG_LOSSLESS) !== side.some((rec) => rec.tag === LOSSLESS)) {
      throw new FormatError(`corrupt l3ic file: the lossless flag and the ${LOSSLESS} record go together`);
    }
    const crcs = new Uint32Array(count);
    for (let i = 0; i < count; i++) crcs[i] = view.getUint32(crcStart + 4 * i, true);
    return new L3icFile(header, version, bytes, modes, offsets, crcs, side);
  }

  /** Bytes of all chunks (the entropy-coded payload). */
  get chunkBytes() { return this.offsets[this.offsets.length - 1] - this.offsets[0]; }

  /** All chunks of tile `tile`, CRC-checked: {modes, sizes, payload} as the FSE layer takes them. */
  tileChunks(tile) {
    const first = this.header.zChannels ? 1 : 0;
    return this.chunks(first + tile * this.header.channels, this.header.channels, `tile ${tile}`);
  }

  /** The ẑ chunk (format 3: one chunk, all z channels), CRC-checked. */
  zChunks() { return this.chunks(0, 1, 'z'); }

  chunks(first, n, where) {
    const modes = new Uint8Array(n), sizes = new Uint32Array(n);
    for (let c = 0; c < n; c++) {
      const i = first + c, start = this.offsets[i], end = this.offsets[i + 1];
      if (crc32(this.bytes, start, end) !== this.crcs[i]) {
        throw new FormatError(`corrupt l3ic file: checksum mismatch in ${where} channel ${c}`);
      }
      modes[c] = this.modes[i];
      sizes[c] = end - start;
    }
    return { modes, sizes, payload: this.bytes.subarray(this.offsets[first], this.offsets[first + n]) };
  }

  /** The record with `tag` (CRC-checked, decompressed with `unzstd`), or null. */
  sideRecord(tag, unzstd) {
    const record = this.side.find((rec) => rec.tag === tag);
    return record ? this.readSide(record, unzstd) : null;
  }

  /** Every side-data record, tag -> bytes, in table order (as L3icFile.side_data reads them all). */
  sideData(unzstd) {
    return new Map(this.side.map((rec) => [rec.tag, this.readSide(rec, unzstd)]));
  }

  readSide(rec, unzstd) {
    const stored = this.bytes.subarray(rec.offset, rec.offset + rec.storedLength);
    if (crc32(stored) !== rec.crc) throw new FormatError(`corrupt l3ic file: checksum mismatch in side data ${reprStr(rec.tag)}`);
    if (rec.compression !== ZSTD) return stored.slice();  // a copy, as Python's bytes(): the page may keep it
    const data = unzstd(stored, rec.rawLength + 1, rec.tag);
    if (data.length !== rec.rawLength) {
      const got = data.length > rec.rawLength ? `more than ${rec.rawLength}` : data.length;
      throw new FormatError(`corrupt l3ic file: side data ${reprStr(rec.tag)} decompresses to ${got} bytes, expected ${rec.rawLength}`);
    }
    return data;
  }
}
