// A PNG of decoded pixels, written in the browser: what the viewer shows and offers to save, and
// what `python -m benchmarks.web_decode` writes.  An <img> of it is colour-managed by the browser
// with the file's ICC profile (iCCP), which a canvas would ignore; gray and alpha keep their PNG
// colour types (L, LA, RGB, RGBA, as `l3ic decode` writes them).

import { crc32 } from './crc32.js';

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const COLOUR_TYPES = { 1: 0, 2: 4, 3: 2, 4: 6 };  // channels -> PNG colour type

/** zlib-wrapped deflate (what IDAT and iCCP hold), by the browser's own compressor. */
async function deflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream('deflate'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function chunk(type, data) {
  const out = new Uint8Array(12 + data.length), view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out, 4, 8 + data.length));
  return out;
}

function header(width, height, channels) {
  const data = new Uint8Array(13), view = new DataView(data.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  data.set([8, COLOUR_TYPES[channels], 0, 0, 0], 8);  // 8 bits, colour type, deflate, adaptive filters, no interlace
  return data;
}

/** {width, height, channels, pixels (interleaved rows), icc} -> the PNG's bytes. */
export async function encodePng({ width, height, channels, pixels, icc }) {
  const row = width * channels;
  const raw = new Uint8Array(height * (row + 1));  // filter 0 (none) before each row: fast, and lossless
  for (let y = 0; y < height; y++) raw.set(pixels.subarray(y * row, (y + 1) * row), y * (row + 1) + 1);
  const parts = [Uint8Array.from(SIGNATURE), chunk('IHDR', header(width, height, channels))];
  if (icc) {
    const name = new TextEncoder().encode('ICC profile\0\0');  // keyword, NUL, compression method 0
    const profile = await deflate(icc), data = new Uint8Array(name.length + profile.length);
    data.set(name);
    data.set(profile, name.length);
    parts.push(chunk('iCCP', data));
  }
  parts.push(chunk('IDAT', await deflate(raw)), chunk('IEND', new Uint8Array(0)));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}
