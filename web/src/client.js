// The page's side of the decoder worker (worker.js): one request at a time per call, answered by id.

export class DecoderWorker {
  constructor() {
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    this.pending = new Map();
    this.next = 0;
    this.worker.onmessage = ({ data }) => {
      const request = this.pending.get(data.id);
      this.pending.delete(data.id);
      if (data.error !== undefined) request.reject(new Error(data.error));
      else request.resolve(data.result);
    };
    // a worker that cannot start (its modules fail to load) or dies fails every request, with one line
    this.worker.onerror = (event) => {
      event.preventDefault();
      this.failAll(`internal error: the decoder stopped: ${event.message || 'the worker could not start'}`);
    };
  }

  failAll(message) {
    for (const request of this.pending.values()) request.reject(new Error(message));
    this.pending.clear();
  }

  /** Decode an .l3ic file's bytes (ArrayBuffer) -> the decoder's result (decoder.js). */
  decode(bytes, options = {}) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, bytes, options });
    });
  }
}

/** Threads for ONNX Runtime: several only where the page may share memory with workers. */
export function defaultThreads() {
  return self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
}
