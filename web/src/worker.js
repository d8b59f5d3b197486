// The decoder runs in this worker, so that a large or hostile file never freezes the page: the
// page posts {id, bytes, options} and gets back {id, result} or {id, error: one line}.

import * as ort from '../ort/ort.wasm.min.mjs';
import { Decoder } from './decoder.js';
import { errorLine } from './errors.js';

let decoder = null;  // a Promise of the Decoder, made on the first request (its threads are fixed then)

function decoderFor(threads) {
  if (!decoder) {
    decoder = Decoder.create(ort, { base: new URL('../', self.location.href).href, threads }).catch((error) => {
      decoder = null;  // a failed start (a missing file) is retried by the next request
      throw error;
    });
  }
  return decoder;
}

async function handle({ id, bytes, options }) {
  try {
    const result = await (await decoderFor(options.threads || 1)).decode(new Uint8Array(bytes), options);
    const transfer = [result.pixels.buffer].concat(result.png ? [result.png.buffer] : []);
    self.postMessage({ id, result }, transfer);
  } catch (error) {
    self.postMessage({ id, error: errorLine(error) });
  }
}

// One decode at a time: an ONNX Runtime session runs one inference at a time, and a file dropped while
// another decodes simply waits its turn.
let queue = Promise.resolve();
self.onmessage = (event) => {
  queue = queue.then(() => handle(event.data));
};
