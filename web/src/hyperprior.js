// The entropy model of format 3, computed exactly as l3ic.hyperprior does: ẑ -> per-element base and
// table index through the integer hyper-synthesis.
//
// Every layer is acc = bias + Σ kernel · input over integers, then clip(floor(acc · 2^shift + 1/2)).
// JavaScript numbers are IEEE float64, like the numpy arrays of the Python runtime: the loader checks
// (as EntropyModel._check does) that every accumulator stays below 2^52, where float64 adds and
// multiplies integers exactly in any order, so these loops give the numpy result bit for bit.  The
// gains' mean multiplication reaches 2^55 (int64 in Python) and is split in two exact halves here.
// The golden files' index maps prove it (tests/test_web.py).

import { ModelError } from './errors.js';

export const HALO = 3;  // z cells of context around a tile: more than the hyper-synthesis's receptive field
const EXACT_LIMIT = 2 ** 53;
const SPLIT = 2 ** 20;  // gain multipliers (< 2^40) are used as two 20-bit halves

/** One integer layer: k x k convolution, rescale, clip, then depth-to-space (IntegerLayer). */
class IntegerLayer {
  constructor(arrays, prefix, block = 1) {
    const kernel = arrays.get(prefix + '_kernel');
    [this.size, , this.cin, this.cout] = kernel.shape;
    this.kernel = Float64Array.from(kernel.data);
    this.bias = Float64Array.from(arrays.get(prefix + '_bias').data);
    this.scale = Float64Array.from(arrays.get(prefix + '_shift').data, (s) => 2 ** s);
    [this.lo, this.hi] = arrays.get(prefix + '_clip').data;
    this.block = block;
    if (this.size % 2 !== 1 || ![1, 2].includes(block) || this.lo > this.hi || this.cout % (block * block)) {
      throw new ModelError(`entropy model: invalid layer (kernel ${this.size}, depth-to-space ${block}, clip ${this.lo}..${this.hi})`);
    }
  }

  /** The largest |acc| any input with |values| <= inputBound can give. */
  accumulatorBound(inputBound) {
    let largest = 0;
    for (let o = 0; o < this.cout; o++) {
      let sum = 0;
      for (let i = o; i < this.kernel.length; i += this.cout) sum += Math.abs(this.kernel[i]);
      largest = Math.max(largest, sum * inputBound + Math.abs(this.bias[o]));
    }
    return largest;
  }

  get outputBound() { return Math.max(Math.abs(this.lo), Math.abs(this.hi)); }
  get outChannels() { return this.cout / (this.block * this.block); }

  /** x: Float64Array (h, w, cin) of integers -> [(h*b, w*b, cout/b²) Float64Array, h*b, w*b]. */
  apply(x, h, w) {
    const { size, cin, cout, kernel, bias, scale, lo, hi } = this;
    const pad = size >> 1;
    const out = new Float64Array(h * w * cout);
    const acc = new Float64Array(cout);
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < w; xx++) {
        acc.set(bias);
        for (let ky = 0; ky < size; ky++) {
          const sy = y + ky - pad;
          if (sy < 0 || sy >= h) continue;
          for (let kx = 0; kx < size; kx++) {
            const sx = xx + kx - pad;
            if (sx < 0 || sx >= w) continue;
            const input = (sy * w + sx) * cin;
            let k = (ky * size + kx) * cin * cout;
            for (let c = 0; c < cin; c++, k += cout) {
              const v = x[input + c];
              if (v === 0) continue;
              for (let o = 0; o < cout; o++) acc[o] += v * kernel[k + o];
            }
          }
        }
        const at = (y * w + xx) * cout;
        for (let o = 0; o < cout; o++) out[at + o] = Math.min(hi, Math.max(lo, Math.floor(acc[o] * scale[o] + 0.5)));
      }
    }
    return this.block === 1 ? [out, h, w] : depthToSpace(out, h, w, cout, this.block);
  }
}

/** TensorFlow's depth_to_space on (h, w, b²c): input channel (dy * b + dx) * c + ch -> (b*y + dy, b*x + dx, ch). */
function depthToSpace(x, h, w, channels, b) {
  const c = channels / (b * b), W = w * b;
  const out = new Float64Array(x.length);
  for (let y = 0; y < h; y++) {
    for (let xx = 0; xx < w; xx++) {
      for (let dy = 0; dy < b; dy++) {
        for (let dx = 0; dx < b; dx++) {
          const from = (y * w + xx) * channels + (dy * b + dx) * c, to = ((y * b + dy) * W + xx * b + dx) * c;
          out.set(x.subarray(from, from + c), to);
        }
      }
    }
  }
  return [out, h * b, W];
}

/** floor(a / b) for integers a, b > 0, exact even where a / b rounds. */
function floorDiv(a, b) {
  let q = Math.floor(a / b);
  if (q * b > a) q -= 1;
  else if ((q + 1) * b <= a) q += 1;
  return q;
}

/** floor((mean · G + half) / 2^bits) exactly, G = gh · 2^20 + gl (int64 arithmetic in Python). */
function gainedMean(mean, gh, gl, bits, half) {
  const a = mean * gh, b = mean * gl + half;  // |a| < 2^35, |b| < 2^40: exact
  if (bits >= 20) return Math.floor((a + Math.floor(b / SPLIT)) / 2 ** (bits - 20));
  return a * 2 ** (20 - bits) + Math.floor(b / 2 ** bits);  // past 2^53 only far outside the mean's clip
}

export class EntropyModel {
  /** From an entropy_model.npz's arrays (parseNpz) and the FSE module; ModelError if they do not fit. */
  constructor(arrays, fse, channels, codebookSize) {
    const get = (name) => {
      if (!arrays.has(name)) throw new ModelError(`cannot read entropy model: no array ${name}`);
      return arrays.get(name);
    };
    const scalar = (name) => get(name).data[0];
    this.layers = [];
    for (let i = 0; i < scalar('hidden_layers'); i++) this.layers.push(new IntegerLayer(arrays, `hs${i}`, scalar(`hs${i}_depth_to_space`)));
    this.meanHead = new IntegerLayer(arrays, 'mean');
    this.scaleHead = new IntegerLayer(arrays, 'scale');
    this.meanExp = scalar('mean_exp');
    this.hyperStride = scalar('hyper_stride');
    this.zMin = scalar('z_min');
    this.phases = 2 ** -this.meanExp;
    const tableLog = scalar('table_log'), latent = get('latent_counts'), z = get('z_counts');
    this.latentTables = fse.tables(Int16Array.from(latent.data), latent.shape[0], latent.shape[1], tableLog);
    this.zTables = fse.tables(Int16Array.from(z.data), z.shape[0], z.shape[1], tableLog);
    this.zChannels = z.shape[0];
    this.zAlphabet = z.shape[1];
    this.check(channels, codebookSize);
    this.gains = arrays.has('quality_grid') ? new Gains(arrays, channels) : null;
  }

  /** Shapes fit together and every accumulator stays below 2^52 (EntropyModel._check). */
  check(channels, codebookSize) {
    let bound = Math.max(Math.abs(this.zMin), Math.abs(this.zMin + this.zAlphabet - 1)), cin = this.zChannels, upsampling = 1;
    const checkLayer = (layer) => {
      if (layer.cin !== cin) throw new ModelError(`entropy model: a layer takes ${layer.cin} channels, its input has ${cin}`);
      const acc = layer.accumulatorBound(bound);
      if (Math.max(acc, acc * Math.max(...layer.scale)) >= EXACT_LIMIT / 2) {
        throw new ModelError("entropy model: a layer's accumulator can reach 2^52, where float64 is no longer exact");
      }
    };
    for (const layer of this.layers) {
      checkLayer(layer);
      [bound, cin, upsampling] = [layer.outputBound, layer.outChannels, upsampling * layer.block];
    }
    for (const head of [this.meanHead, this.scaleHead]) checkLayer(head);
    const problems = [
      [Math.max(Math.abs(this.meanHead.lo), Math.abs(this.meanHead.hi)) > 2 ** 15, `means ${this.meanHead.lo}..${this.meanHead.hi} out of range`],
      [upsampling !== this.hyperStride, `the hyper-synthesis upsamples ${upsampling}x, not the hyper stride ${this.hyperStride}`],
      [this.meanHead.cout !== channels || this.scaleHead.cout !== channels, `heads give ${this.meanHead.cout}/${this.scaleHead.cout} channels, the model has ${channels}`],
      [!(this.meanExp <= 0 && this.scaleHead.lo >= 0 && (this.scaleHead.hi + 1) * this.phases <= this.latentTables.nTables),
        `scale indices ${this.scaleHead.lo}..${this.scaleHead.hi} x ${this.phases} mean phases do not fit the ${this.latentTables.nTables} tables`],
      [this.latentTables.alphabetSize !== codebookSize, `latent tables have ${this.latentTables.alphabetSize} symbols, the codebook ${codebookSize}`],
    ];
    for (const [bad, what] of problems) if (bad) throw new ModelError(`entropy model: ${what}`);
  }

  /**
   * ẑ symbols (Uint8Array, zc x zh x zw) -> {base: Int32Array, index: Uint8Array}, each (C, f·zh, f·zw)
   * (EntropyModel.parameters); with a gain, those of the gained latent.
   */
  parameters(z, zh, zw, gain) {
    const zc = this.zChannels, plane = zh * zw;
    let x = new Float64Array(plane * zc), h = zh, w = zw;
    for (let c = 0; c < zc; c++) for (let p = 0; p < plane; p++) x[p * zc + c] = z[c * plane + p] + this.zMin;
    for (const layer of this.layers) [x, h, w] = layer.apply(x, h, w);
    const [mean] = this.meanHead.apply(x, h, w), [scale] = this.scaleHead.apply(x, h, w);
    return this.baseAndIndex(mean, scale, h * w, gain);
  }

  /** The heads' outputs (positions x C) -> CHW base and table index, with the gain's exact arithmetic. */
  baseAndIndex(mean, scale, positions, gain) {
    const C = this.meanHead.cout, shift = Math.log2(this.phases);
    const base = new Int32Array(C * positions), index = new Uint8Array(C * positions);
    const half = gain && gain.bits ? 2 ** (gain.bits - 1) : 0;  // (1 << bits) >> 1
    for (let c = 0; c < C; c++) {
      const gh = gain ? Math.floor(gain.multipliers[c] / SPLIT) : 0, gl = gain ? gain.multipliers[c] - gh * SPLIT : 0;
      for (let p = 0; p < positions; p++) {
        let m = mean[p * C + c], s = scale[p * C + c];
        if (gain) {
          m = Math.min(this.meanHead.hi, Math.max(this.meanHead.lo, gainedMean(m, gh, gl, gain.bits, half)));
          s = Math.min(this.scaleHead.hi, Math.max(this.scaleHead.lo, s + gain.exponents[c]));
        }
        base[c * positions + p] = m >> shift;
        index[c * positions + p] = (s << shift) | (m & (this.phases - 1));
      }
    }
    return { base, index };
  }

  /**
   * `parameters` for the latent rectangle [y, x, h, w] from ẑ with HALO cells around it
   * (EntropyModel.tile_parameters): bit for bit the whole map's, cut to the rectangle.
   */
  tileParameters(z, zShape, rect, gain) {
    const [y, x, h, w] = rect, s = this.hyperStride, [zh, zw] = zShape, zc = this.zChannels;
    const zy0 = Math.max(0, Math.floor(y / s) - HALO), zx0 = Math.max(0, Math.floor(x / s) - HALO);
    const zy1 = Math.min(zh, Math.ceil((y + h) / s) + HALO), zx1 = Math.min(zw, Math.ceil((x + w) / s) + HALO);
    const wh = zy1 - zy0, ww = zx1 - zx0;
    const window = new Uint8Array(zc * wh * ww);
    for (let c = 0; c < zc; c++) {
      for (let r = 0; r < wh; r++) {
        const from = (c * zh + zy0 + r) * zw + zx0;
        window.set(z.subarray(from, from + ww), (c * wh + r) * ww);
      }
    }
    const { base, index } = this.parameters(window, wh, ww, gain);
    return { base: crop(base, wh * s, ww * s, y - zy0 * s, x - zx0 * s, h, w), index: crop(index, wh * s, ww * s, y - zy0 * s, x - zx0 * s, h, w) };
  }
}

/** (C, H, W) planes -> their (C, h, w) window at (oy, ox). */
function crop(array, H, W, oy, ox, h, w) {
  const C = array.length / (H * W);
  const out = new array.constructor(C * h * w);
  for (let c = 0; c < C; c++) {
    for (let r = 0; r < h; r++) {
      const from = (c * H + oy + r) * W + ox;
      out.set(array.subarray(from, from + w), (c * h + r) * w);
    }
  }
  return out;
}

/** A model's gains for continuous quality (EntropyModel.interpolated / gain_with). */
class Gains {
  constructor(arrays, channels) {
    const data = (name) => arrays.get(name).data;
    const exponents = arrays.get('gain_exponents'), corrections = arrays.get('gain_corrections');
    this.grid = Array.from(data('quality_grid'));
    this.exponents = exponents.data;
    this.corrections = corrections.data;
    this.multipliers = data('gain_multipliers');
    this.bits = data('multiplier_bits')[0];
    this.channels = channels;
    this.maxExponent = (this.multipliers.length - 1) >> 1;
    const g = this.grid;
    const ok = g.length >= 2 && g.every((q, i) => i === 0 || q > g[i - 1]) && g[0] >= 0 && g[g.length - 1] <= 20000
      && exponents.shape[0] === g.length && exponents.shape[1] === channels && corrections.shape.join() === exponents.shape.join()
      && this.multipliers.length % 2 === 1 && this.exponents.every((e) => Math.abs(e) <= this.maxExponent)
      && this.multipliers.every((m) => m > 0 && m < 2 ** 40) && this.bits >= 0 && this.bits <= 40
      && corrections.data.every((c) => Number.isFinite(c) && c > 0);
    if (!ok) throw new ModelError('entropy model: invalid gains (quality grid, exponents, multipliers or corrections)');
  }

  /** The gain of quality `q` (hundredths): {exponents, multipliers, bits, inverse (Float32Array)}. */
  at(q) {
    const grid = this.grid, C = this.channels;
    if (!(grid[0] <= q && q <= grid[grid.length - 1])) {
      throw new ModelError(`quality ${q / 100} is outside this model's range ${grid[0] / 100}..${grid[grid.length - 1] / 100}`);
    }
    let b = grid.findIndex((g) => g >= q);
    b = Math.min(Math.max(b, 1), grid.length - 1);
    const qa = grid[b - 1], qb = grid[b], t = q - qa, d = qb - qa, fraction = t / d;
    const exponents = new Int32Array(C), multipliers = new Float64Array(C), inverse = new Float32Array(C);
    for (let c = 0; c < C; c++) {
      const ea = this.exponents[(b - 1) * C + c], eb = this.exponents[b * C + c];
      exponents[c] = floorDiv(2 * C * (ea * (d - t) + eb * t) + d * (2 * c + 1), 2 * C * d);
      multipliers[c] = this.multipliers[exponents[c] + this.maxExponent];
      const correction = this.corrections[(b - 1) * C + c] ** (1 - fraction) * this.corrections[b * C + c] ** fraction;
      inverse[c] = correction / (multipliers[c] / 2 ** this.bits);
    }
    return { quality: q, exponents, multipliers, bits: this.bits, inverse };
  }
}
