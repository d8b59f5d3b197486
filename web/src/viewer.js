// The viewer page: open or drop an .l3ic file (or ?open=URL), decode it in the worker, show the
// image with its size, bpp, model, quality and decode time; any failure is one line in the page.

import { DecoderWorker, defaultThreads } from './client.js';

const $ = (id) => document.getElementById(id);
const client = new DecoderWorker();
const threads = Number(new URLSearchParams(location.search).get('threads')) || defaultThreads();
let shownUrl = null;
let latest = 0;  // the file opened last: a slower, earlier one must not replace it when it finishes

function status(text, isError = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', isError);
}

function clear() {
  $('info').hidden = true;
  $('image').hidden = true;
  $('save').hidden = true;
  if (shownUrl) URL.revokeObjectURL(shownUrl);
  shownUrl = null;
}

function showInfo(result, name) {
  const { info, timings } = result;
  const rows = [
    ['file', name],
    ['size', `${info.width} × ${info.height} ${result.mode}`],
    ['bpp', `${info.bpp.toFixed(3)} (${info.bytes} bytes)`],
    ['model', `${info.model}${info.legacy ? ' (legacy decoder)' : ''}, format ${info.format_version}${info.lossless ? ', stored losslessly' : ''}`],
    ['quality', info.quality === null ? '—' : String(info.quality)],
    ['decode time', `${timings.decode.toFixed(3)} s (entropy ${timings.entropy.toFixed(3)} s, network ${timings.network.toFixed(3)} s, ${threads} thread${threads > 1 ? 's' : ''})`
      + (timings.load > 0.001 ? `; model loaded in ${timings.load.toFixed(2)} s` : '')],
    ['side data', info.side_data.join(', ') || '—'],
  ];
  $('info').replaceChildren(...rows.flatMap(([k, v]) => [Object.assign(document.createElement('dt'), { textContent: k }),
    Object.assign(document.createElement('dd'), { textContent: v })]));
  $('info').hidden = false;
}

/** Decode `bytes` (ArrayBuffer) of a file called `name` and show it, or its one-line error. */
async function open(bytes, name) {
  const request = ++latest;
  clear();
  status(`decoding ${name} …`);
  try {
    const result = await client.decode(bytes, { threads });
    if (request !== latest) return;
    shownUrl = URL.createObjectURL(new Blob([result.png], { type: 'image/png' }));
    $('image').src = shownUrl;
    $('image').hidden = false;
    $('save').href = shownUrl;
    $('save').download = name.replace(/\.l3ic$/i, '') + '.decoded.png';
    $('save').hidden = false;
    showInfo(result, name);
    status(`decoded ${name}`);
  } catch (error) {
    if (request === latest) status(`${name}: ${error.message}`, true);
  }
}

$('file').addEventListener('change', async (event) => {
  const file = event.target.files[0];
  if (file) await open(await file.arrayBuffer(), file.name);
  event.target.value = '';
});

const drop = $('drop');
drop.addEventListener('dragover', (event) => { event.preventDefault(); drop.classList.add('dragging'); });
drop.addEventListener('dragleave', () => drop.classList.remove('dragging'));
drop.addEventListener('drop', async (event) => {
  event.preventDefault();
  drop.classList.remove('dragging');
  const file = event.dataTransfer.files[0];
  if (file) await open(await file.arrayBuffer(), file.name);
});

// ?open=URL (and &name=NAME): the file `python -m l3ic.web FILE` serves, opened at once
const query = new URLSearchParams(location.search), initial = query.get('open');
if (initial) {
  const name = query.get('name') || decodeURIComponent(initial.split('/').pop());
  status(`decoding ${name} …`);
  fetch(initial).then(async (response) => {
    if (!response.ok) throw new Error(`cannot read ${initial}: HTTP ${response.status}`);
    await open(await response.arrayBuffer(), name);
  }).catch((error) => status(error.message, true));
}
