// The page `python -m benchmarks.web_decode` and tests/test_web.py drive in headless Chromium.
//
// It asks the local server (l3ic.web, harness mode) for the next job, decodes the file in the same
// worker the viewer uses - or opens it in the viewer page itself - and posts back one message per
// job: a JSON head (the result's info, timings, hashes, what the viewer shows, or the error line)
// followed by the PNG's bytes.  The server holds /harness/next
// open until there is a job, and answers {done: true} when the Python side is finished.

import { DecoderWorker } from './client.js';

const params = new URLSearchParams(location.search);
const threads = Number(params.get('threads') || 1);
const client = new DecoderWorker();
const state = document.getElementById('state');

/** Decode one job's file `repeat` times; the last run's PNG, every run's timings. */
async function run(job) {
  const bytes = await (await fetch(job.input)).arrayBuffer();
  const timings = [];
  let result = null;
  for (let r = 0; r < job.repeat; r++) {
    const last = r === job.repeat - 1;
    result = await client.decode(bytes, { threads, trace: job.trace && r === 0, png: last, maxPixels: job.max_pixels });
    timings.push(result.timings);
    if (job.trace && r === 0) job.hashes = result.hashes;
  }
  const { width, height, mode, channels, info } = result;
  return [{ ok: true, width, height, mode, channels, info, timings, hashes: job.hashes || null, threads, isolated: self.crossOriginIsolated }, result.png];
}

/**
 * Open the job's file in the viewer page (index.html, in a frame), wait until it shows the image or
 * an error, and report what a person would see: the status line, the info rows, the image's size.
 */
async function view(job) {
  const frame = document.createElement('iframe');
  frame.src = `index.html?threads=${threads}&name=${encodeURIComponent(job.name)}&open=${encodeURIComponent(job.input)}`;
  document.body.append(frame);
  await new Promise((resolve) => frame.addEventListener('load', resolve, { once: true }));
  const page = frame.contentDocument, status = page.getElementById('status'), image = page.getElementById('image');
  // the page says "decoding NAME …" from its start (module scripts run before the frame's load event)
  const settled = () => !status.textContent.startsWith('decoding') && (status.classList.contains('error') || image.complete);
  while (!settled()) await sleep(50);
  const info = [...page.querySelectorAll('#info dt')].map((dt) => [dt.textContent, dt.nextElementSibling.textContent]);
  const seen = { status: status.textContent, error: status.classList.contains('error'), info: page.getElementById('info').hidden ? [] : info,
    image: image.hidden ? null : [image.naturalWidth, image.naturalHeight], save: page.getElementById('save').hidden ? null : page.getElementById('save').download };
  frame.remove();
  return [{ ok: true, viewer: seen }, null];
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function post(id, head, png) {
  const text = new TextEncoder().encode(JSON.stringify(head));
  const size = new Uint8Array(new Uint32Array([text.length]).buffer);
  await fetch(`harness/result/${id}`, { method: 'POST', body: new Blob([size, text, png || new Uint8Array(0)]) });
}

async function main() {
  for (;;) {
    const job = await (await fetch('harness/next', { cache: 'no-store' })).json();
    if (job.done) break;
    if (job.idle) continue;
    state.textContent = `decoding job ${job.id}`;
    try {
      const [head, png] = await (job.viewer ? view(job) : run(job));
      await post(job.id, head, png);
    } catch (error) {
      await post(job.id, { ok: false, error: error.message });
    }
  }
  state.textContent = 'done';
}

main().catch((error) => post('fatal', { ok: false, error: `internal error: the harness stopped: ${error.message}` }));
