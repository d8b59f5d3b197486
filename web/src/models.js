// The installed models, as the server lists them (models/index.json), and the one a file needs.
//
// A file records its model's name and identity (l3ic.model.model_identity: the first 16 bytes of
// sha256(decoder.onnx) for format 2; of sha256(sha256(decoder.onnx) || sha256(entropy_model.npz)) for
// format 3).  The browser picks the installed model - current or legacy - with that name and
// identity, downloads its decoder.onnx and entropy_model.npz, and checks both against the manifest's
// SHA-256 before using them, as l3ic.model.Model does.

import { FLAG_QUALITY } from './container.js';
import { ModelError } from './errors.js';
import { EntropyModel } from './hyperprior.js';
import { parseNpz } from './npy.js';
import { reprStr } from './pyformat.js';

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
const fromHex = (text) => Uint8Array.from(text.match(/../g), (h) => parseInt(h, 16));

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

/** The 16-byte identity a file records for the model of `manifest` (l3ic.model.model_identity). */
export async function modelIdentity(manifest) {
  const files = manifest.files, decoder = fromHex(files['decoder.onnx'].sha256);
  if ((manifest.format || 2) < 3) return decoder.slice(0, 16);
  const both = new Uint8Array(64);
  both.set(decoder);
  both.set(fromHex(files['entropy_model.npz'].sha256), 32);
  return (await sha256(both)).slice(0, 16);
}

/** One model: its manifest, its ONNX Runtime session and, for format 3, its entropy model. */
export class Model {
  constructor(url, manifest, identity) {
    this.url = url;
    this.manifest = manifest;
    this.identity = identity;
    this.name = manifest.name;
    this.format = manifest.format || 2;
    this.channels = manifest.channels;
    this.stride = manifest.stride;
    this.codebookMin = manifest.codebook.minimum;
    this.codebookSize = manifest.codebook.size;
    this.hasHyperprior = this.format >= 3;
  }

  /** The bytes of one of the manifest's files, after checking their SHA-256 (Model._checked_file). */
  async checkedFile(name) {
    const response = await fetch(this.url + name);
    if (!response.ok) throw new ModelError(`model file missing: ${this.url}${name} (HTTP ${response.status})`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    if (hex(await sha256(bytes)) !== this.manifest.files[name].sha256) {
      throw new ModelError(`model file ${this.url}${name} does not match the sha256 in its manifest (damaged or replaced)`);
    }
    return bytes;
  }

  /** Download and check the model's files, create the decoder's session (once). */
  async load(ort, fse, sessionOptions) {
    if (this.session) return this;
    const onnx = await this.checkedFile('decoder.onnx');
    if (this.hasHyperprior) {
      this.entropyModel = new EntropyModel(await parseNpz(await this.checkedFile('entropy_model.npz')), fse, this.channels, this.codebookSize);
    }
    try {
      this.session = await ort.InferenceSession.create(onnx, sessionOptions);
    } catch (e) {
      throw new ModelError(`ONNX Runtime cannot load ${this.url}decoder.onnx: ${String(e.message || e).split('\n')[0]}`);
    }
    return this;
  }

  /**
   * Latent values (Float32Array, C x h x w, codebook units) -> Float32Array RGB in [0, 1], (h·s, w·s, 3)
   * (Model.decode): a format-2 decoder takes the symbols themselves, as uint8.
   */
  async decode(ort, values, h, w) {
    const feeds = {};
    if (this.hasHyperprior) {
      feeds.latents = new ort.Tensor('float32', values, [1, this.channels, h, w]);
    } else {
      feeds.symbols = new ort.Tensor('uint8', Uint8Array.from(values, (v) => v - this.codebookMin), [1, this.channels, h, w]);
    }
    const outputs = await this.session.run(feeds);
    const image = outputs.image;
    try {
      return image.data;
    } finally {
      for (const output of Object.values(outputs)) if (output !== image && output.dispose) output.dispose();
    }
  }
}

/** The installed models (current and legacy) and the sessions made so far. */
export class Models {
  /** The list at `url` (the server's models/index.json: [{url, manifest, legacy}]). */
  static async load(url) {
    const response = await fetch(url);
    if (!response.ok) throw new ModelError(`cannot list the installed models: ${url} (HTTP ${response.status})`);
    const entries = await response.json();
    const base = new URL(url, self.location.href);
    const models = await Promise.all(entries.map(async (e) => Object.assign(
      new Model(new URL(e.url, base).href, e.manifest, await modelIdentity(e.manifest)), { legacy: e.legacy })));
    return new Models(models);
  }

  constructor(models) {
    this.models = models;
  }

  /**
   * The model that decodes a file with this header (find_decoder, then Codec's checks); ModelError if
   * none, with the message `l3ic decode` gives: it takes the current model of the file's name, and an
   * earlier release's decoder only where the identity names one.
   */
  find(header) {
    const id = hex(header.decoderHash);
    const model = this.models.find((m) => m.name === header.modelName && hex(m.identity) === id);
    if (model) return checkedAgainst(header, model);
    const current = this.models.find((m) => m.name === header.modelName && !m.legacy);
    if (!current) {
      const shipped = [...new Set(this.models.filter((m) => !m.legacy).map((m) => m.name))].sort();
      throw new ModelError(`unknown model ${reprStr(header.modelName)} (shipped models: ${shipped.join(', ') || 'none'})`);
    }
    throw new ModelError(`this file was made with model ${reprStr(header.modelName)} (decoder ${id.slice(0, 12)}), `
      + `not with ${reprStr(current.name)} (decoder ${hex(current.identity).slice(0, 12)})`);
  }
}

/** `model`, after checking that the header describes a file it can have made (codec._checked_against). */
function checkedAgainst(h, m) {
  if (h.channels !== m.channels || h.stride !== m.stride || h.codebookSize !== m.codebookSize || h.codebookMin !== m.codebookMin
      || h.version !== m.format) {
    throw new ModelError(`this file's header does not match model ${reprStr(m.name)} (${m.channels} channels, stride ${m.stride}, format ${m.format})`);
  }
  return m;
}

/** The checks that need the entropy model (loaded): ẑ geometry and the quality field (codec._checked_against). */
export function checkEntropyModel(h, m) {
  if (!m.hasHyperprior) return;
  const em = m.entropyModel;
  if (h.zChannels !== em.zChannels || h.hyperStride !== em.hyperStride) {
    throw new ModelError(`this file's header does not match model ${reprStr(m.name)} (${m.channels} channels, stride ${m.stride}, format ${m.format})`);
  }
  const grid = em.gains ? em.gains.grid : null;
  const hasQuality = Boolean(h.flags & FLAG_QUALITY);
  if (hasQuality !== (grid !== null) || (grid && !(grid[0] <= h.quality && h.quality <= grid[grid.length - 1]))) {
    const range = grid ? `${grid[0] / 100}..${grid[grid.length - 1] / 100}` : 'none';
    throw new ModelError(`this file's quality field does not fit model ${reprStr(m.name)} (quality ${range})`);
  }
}
