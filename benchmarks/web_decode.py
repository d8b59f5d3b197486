"""Decode .l3ic files in headless Chromium: ``python -m benchmarks.web_decode FILE.l3ic -o OUT.png``.

The browser decodes FILE with the web decoder (``web/``, served by ``l3ic.web``: container, integer
hyperprior and FSE in WebAssembly, the decoder network on onnxruntime-web) and this writes the PNG
the page made, in the file's mode (RGB, L, RGBA or LA), so that anyone can compare it with
``l3ic decode``.  An undecodable file prints one ``l3ic: error: ...`` line and exits with status 1.

``--benchmark`` prints the browser's decode time at 768x512 and 1920x1080 next to the Python
runtime's (``Codec.decode``), on the same machine and image (the bundled sample, resized), with
ONNX Runtime on the given number of threads on both sides.

The browser is Debian's ``chromium`` (``$CHROMIUM`` overrides), started headless with a fresh
profile and no network but the local server's; it is driven through the harness page
(``web/harness.html``), which fetches jobs from the server and posts results back, so nothing but
the standard library is needed here.  Every wait is bounded (``--timeout``), and the browser is
ended, with its process group, whatever happens.
"""
import json
import os
import queue
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

from l3ic.errors import L3icError

CHROMIUM_ENV = "CHROMIUM"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--disable-default-apps", "--mute-audio", "--enable-logging=stderr", "--v=0")
DEFAULT_TIMEOUT = 300.0  # seconds for one decode, model loading included (a 1080p decode takes ~10 s on one core)
POLL = 10.0  # seconds the server holds the page's /harness/next open when there is no job
MAX_PIXELS = 1 << 26  # the web decoder's default (web/src/container.js)


class Harness:
    """Jobs for the harness page, one at a time: ``submit`` one, the page takes it, ``wait`` for its result."""

    def __init__(self):
        self.jobs = queue.Queue()
        self.inputs = {}
        self.results = {}
        self.delivered = threading.Condition()
        self.count = 0
        self.finished = False

    def submit(self, data, **options):
        """Queue a job for ``data``; ``options``: trace, repeat, max_pixels, or viewer and name (harness.js)."""
        job = str(self.count)
        self.count += 1
        self.inputs[job] = bytes(data)
        self.jobs.put(dict(options, id=job, input="harness/input/" + job))
        return job

    def next_job(self):
        """What /harness/next answers: a job, {"idle": true} after POLL seconds without one, or {"done": true}."""
        if self.finished:
            return {"done": True}
        try:
            return self.jobs.get(timeout=POLL)
        except queue.Empty:
            return {"done": True} if self.finished else {"idle": True}

    def job_input(self, job):
        return self.inputs.get(job)

    def deliver(self, job, body):
        """A result from the page: a u32 length, that much JSON, then the PNG's bytes."""
        try:
            (length,) = struct.unpack_from("<I", body)
            head, png = json.loads(body[4:4 + length].decode("utf-8")), body[4 + length:]
        except (struct.error, ValueError):
            head, png = {"ok": False, "error": "internal error: the harness page sent a malformed result"}, b""
        with self.delivered:
            self.results[job] = (head, png)
            self.delivered.notify_all()

    def result(self, job):
        """(head, png) of a job, or of the page's fatal error, or None while neither has come."""
        return self.results.pop(job, None) or self.results.get("fatal")

    def finish(self):
        self.finished = True


def chromium_path():
    path = os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise L3icError("Chromium is not installed: apt-get install chromium (or set %s)" % CHROMIUM_ENV)
    return path


class BrowserDecoder:
    """Headless Chromium on the harness page of a local ``l3ic.web`` server; ``decode`` files one by one.

    ``threads``: ONNX Runtime's WebAssembly threads in the page.  Use as a context manager, or call
    ``close``: the browser and the server are stopped, and the browser's profile removed.
    """

    def __init__(self, threads=1, timeout=DEFAULT_TIMEOUT):
        from l3ic import web
        self.timeout = timeout
        self.harness = Harness()
        self.server = web.start(harness=self.harness, port=0)
        web.serve_in_thread(self.server)
        self.profile = tempfile.mkdtemp(prefix="l3ic-chromium-")
        self.log = open(os.path.join(self.profile, "chromium.log"), "w+b")
        try:
            command = [chromium_path(), *CHROMIUM_FLAGS, "--user-data-dir=" + self.profile,
                       self.server.url + "harness.html?threads=%d" % threads]
            self.browser = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log,
                                            start_new_session=True)
        except (L3icError, OSError) as e:
            self.browser = None
            self.close()
            raise e if isinstance(e, L3icError) else L3icError("cannot start Chromium: %s" % e)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def decode(self, data, trace=False, repeat=1, max_pixels=MAX_PIXELS):
        """Decode .l3ic bytes in the browser ``repeat`` times -> (head, png): head is the page's JSON (``ok``,
        ``width``, ``height``, ``mode``, ``info``, ``timings`` per run, ``hashes`` with ``trace``).  L3icError
        with the browser's one-line message for a file it cannot decode, or when the browser fails or times out."""
        job = self.harness.submit(data, trace=trace, repeat=repeat, max_pixels=max_pixels)
        return self._wait(job, self.timeout * repeat)

    def view(self, data, name="file.l3ic"):
        """Open .l3ic bytes in the viewer page -> what it shows: {status, error, info: [[term, value]], image:
        [width, height] or None, save: the PNG's download name or None}."""
        job = self.harness.submit(data, viewer=True, name=name)
        return self._wait(job, self.timeout)[0]["viewer"]

    def _wait(self, job, timeout):
        """The (head, png) of a job; L3icError for an error it reports, a browser that exits, or the timeout."""
        deadline = time.monotonic() + timeout
        with self.harness.delivered:
            while True:
                found = self.harness.result(job)
                if found is not None:
                    break
                if self.browser.poll() is not None:
                    raise L3icError("the browser exited with status %d: %s" % (self.browser.returncode, self.log_tail()))
                if time.monotonic() > deadline:
                    raise L3icError("the browser did not finish decoding within %g s" % timeout)
                self.harness.delivered.wait(0.5)
        head, png = found
        if not head.get("ok"):
            raise L3icError(head.get("error") or "internal error: the browser gave no result")
        return head, png

    def log_tail(self):
        """The browser's last line of output (stderr), for an error message."""
        self.log.flush()
        self.log.seek(0)
        lines = [line for line in self.log.read().decode("utf-8", "replace").splitlines() if line.strip()]
        return lines[-1][:300] if lines else "no output"

    def close(self):
        self.harness.finish()
        if self.browser is not None and self.browser.poll() is None:
            _end_group(self.browser)
        self.server.shutdown()
        self.server.server_close()
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


def _end_group(process):
    """End a process we started and its children (its own session): TERM, then KILL after 5 s."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
            process.wait(wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def decode_file(args):
    """The command: decode one file in the browser and write its PNG (``-``: standard input / output)."""
    from l3ic.files import STDIO, check_output_path, read_input, write_bytes_atomic
    output = args.output or (STDIO if args.file == STDIO else os.path.splitext(args.file)[0] + ".web.png")
    check_output_path(output, inputs=[args.file], overwrite=True)  # before the browser's work
    data = read_input(args.file)
    with BrowserDecoder(args.threads, args.timeout) as browser:
        head, png = browser.decode(data, repeat=args.runs)
    write_bytes_atomic(output, png, overwrite=True)
    decode = statistics.median(t["decode"] for t in head["timings"])
    print("%s -> %s: %dx%d %s, model %s, browser decode %.3f s (median of %d, %d thread%s; model loaded in %.2f s)"
          % (args.file, output, head["width"], head["height"], head["mode"], head["info"]["model"], decode,
             len(head["timings"]), args.threads, "s" if args.threads > 1 else "", head["timings"][0]["load"]),
          file=sys.stderr if output == STDIO else sys.stdout)
    return 0


def python_decode_time(data, threads, runs):
    """Median seconds of the Python runtime's Codec.decode of ``data`` (its sessions made by a warm-up decode)."""
    from l3ic import Codec
    codec = Codec("medium", "cpu", threads=threads)
    codec.decode(data)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        codec.decode(data)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def benchmark(sizes, threads, runs, timeout, out=None):
    """Print (to ``out``, default standard output) the browser's and the Python runtime's decode times of the medium
    model's files at ``sizes``; returns the rows: (size, bytes, Python seconds, browser seconds)."""
    out = out or sys.stdout
    from benchmarks.speed import SIZES, test_image
    from l3ic import Codec
    codec = Codec("medium", "cpu", threads=threads)
    files = {name: codec.encode(test_image(SIZES[name])) for name in sizes}
    rows = []
    with BrowserDecoder(threads, timeout) as browser:
        for name, data in files.items():
            head, _ = browser.decode(data, repeat=runs + 1)  # the first run loads the model
            web = statistics.median(t["decode"] for t in head["timings"][1:])
            rows.append((name, len(data), python_decode_time(data, threads, runs), web))
    print("decode of the medium model's default encode, median of %d runs, ONNX Runtime on %d thread%s"
          % (runs, threads, "s" if threads > 1 else ""), file=out)
    print("%-10s %8s %12s %12s %8s" % ("size", "bytes", "python (s)", "browser (s)", "ratio"), file=out)
    for name, n, python, web in rows:
        print("%-10s %8d %12.3f %12.3f %7.1fx" % (name, n, python, web, web / python), file=out)
    return rows


def parse_args(argv):
    from benchmarks.speed import SIZES
    from l3ic.cli import Parser
    parser = Parser(prog="python -m benchmarks.web_decode", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", nargs="?", help="the .l3ic file to decode (- for standard input)")
    parser.add_argument("-o", "--output", help="the PNG to write (default FILE without .l3ic + .web.png; - for standard "
                                                  "output); replaced if it exists")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads in the browser (and in Python, "
                                                               "for --benchmark); default %(default)d")
    parser.add_argument("--runs", type=int, default=1, help="decodes to time (the median is printed); default %(default)d")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds one decode may take; default %(default)g")
    parser.add_argument("--benchmark", action="store_true", help="time the browser against Python at --sizes instead")
    parser.add_argument("--sizes", default=",".join(SIZES), help="sizes for --benchmark, of %s" % ", ".join(SIZES))
    args = parser.parse_args(argv)
    if args.threads < 1 or args.runs < 1 or args.timeout <= 0:
        parser.error("--threads and --runs must be at least 1, --timeout positive")
    if not args.benchmark and not args.file:
        parser.error("give an .l3ic file, or --benchmark")
    if args.benchmark and any(s not in SIZES for s in args.sizes.split(",")):
        parser.error("--sizes must be some of %s" % ",".join(SIZES))
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.benchmark:
        benchmark(args.sizes.split(","), args.threads, args.runs, args.timeout)
        return 0
    return decode_file(args)


if __name__ == "__main__":
    from l3ic.cli import run
    sys.exit(run(main))
