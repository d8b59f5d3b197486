"""Many files in one run of ``runtime.encode`` / ``runtime.decode``.

Inputs may be files, folders (their files with the right suffixes, not
recursive) or glob patterns.  Files are processed by a pool of worker
processes, each with its own ONNX Runtime sessions (``--jobs``); a file that
fails is reported on its own line and the run goes on, exiting non-zero at the
end if anything failed.  A single input file is the same code path with one
job and no progress bar.

By default a batch on CPU runs one worker process per available core (at most
``MAX_DEFAULT_JOBS``), each with a single ONNX Runtime thread: measured with
``benchmarks/batch.py``, that is faster than one process whose ONNX Runtime
uses all cores, because image reading and writing (PNG, JPEG) run in parallel
too and single-threaded sessions do not stall when another program takes a
core.  With the CUDA provider the default is one process (the GPU does the
work; every process would hold its own CUDA context).
"""
import argparse
import glob
import os
import sys
import time
import traceback

from l3ic.codec import Codec
from l3ic.errors import L3icError
from l3ic.image import IMAGE_SUFFIXES, list_images


MAX_DEFAULT_JOBS = 8  # each worker holds its own sessions: about 0.2 GB, 0.7 GB for 6 Mpx images


def add_jobs_option(parser):
    parser.add_argument("-j", "--jobs", type=positive_int, metavar="N",
                        help="worker processes for a batch, each with one ONNX Runtime thread (default: one per "
                             "core, at most %d; 1 with CUDA); 1 = one process using all cores" % MAX_DEFAULT_JOBS)


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer, got %r" % text)
    return value


def ProcessPoolExecutor(*args, **kwargs):  # noqa: N802 (stands for the class, which tests replace)
    """concurrent.futures' process pool, imported only when a batch needs one: 10-20 ms a single file need not pay."""
    from concurrent.futures import ProcessPoolExecutor as pool
    return pool(*args, **kwargs)


def default_jobs(providers):
    """``--jobs`` when not given: one worker per available core (at most MAX_DEFAULT_JOBS); 1 on CUDA."""
    from l3ic.model import resolve_providers
    if "CUDAExecutionProvider" in resolve_providers(providers):
        return 1
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use (taskset, cgroup cpusets)
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_JOBS))


class CodecCache:
    """One Codec per model name, created on first use (a worker may meet several models when decoding)."""

    def __init__(self, providers, threads, max_pixels):
        self.providers, self.threads, self.max_pixels = providers, threads, max_pixels
        self.codecs = {}

    def __call__(self, model):
        if model not in self.codecs:
            self.codecs[model] = Codec(model, providers=self.providers, max_pixels=self.max_pixels, threads=self.threads)
        return self.codecs[model]


def expand(inputs, suffixes=IMAGE_SUFFIXES):
    """Input arguments -> (files, whether this is a batch); a folder gives its files with ``suffixes``."""
    files, batch = [], len(inputs) > 1
    for arg in inputs:
        if os.path.isdir(arg):
            batch = True
            files += list_images(arg, suffixes)
        elif glob.has_magic(arg):
            batch = True
            files += sorted(glob.glob(arg))
        else:
            files.append(arg)  # a missing file is reported by its own job
    if batch and not files:
        raise L3icError("no input files found in %s" % ", ".join(inputs))
    return files, batch


def check_distinct_outputs(jobs):
    """Refuse a batch in which two inputs (a/x.png, b/x.png) would be written to the same output."""
    seen = {}
    for job in jobs:
        src, dst = job[0], os.path.abspath(job[1])
        if dst in seen:
            raise L3icError("%s and %s would both be written to %s; give them separate runs or outputs" % (seen[dst], src, dst))
        seen[dst] = src


def names_folder(output, batch):
    """Whether -o is a folder to write into: with several inputs always; with one when it ends in / or is a folder."""
    return bool(output) and (batch or output.endswith(("/", os.sep)) or os.path.isdir(output))


def make_output_folder(output, batch):
    """Create the folder -o names (with its parents, as ``mkdir -p``): writing into a new folder needs no extra step."""
    if not names_folder(output, batch):
        return
    if os.path.exists(output) and not os.path.isdir(output):
        raise L3icError("-o must be a folder%s, and %s is a file" % (" with several inputs" if batch else "", output))
    try:
        os.makedirs(output, exist_ok=True)
    except OSError as e:
        raise L3icError("cannot create the output folder %s: %s" % (output, e.strerror or e))


def output_for(path, output, batch, suffix):
    """Where one input's result goes: -o itself when it names a file, else INPUT's stem + ``suffix`` in the folder -o
    (or next to the input)."""
    if output and not names_folder(output, batch):
        return output
    folder = output or os.path.dirname(path)
    return os.path.join(folder, os.path.splitext(os.path.basename(path))[0] + suffix)


_cache = None
_keep_going = False  # a batch reports a file's unexpected failure and goes on; a single file lets it surface


def _init(providers, threads, max_pixels, keep_going=False):
    global _cache, _keep_going
    _cache, _keep_going = CodecCache(providers, threads, max_pixels), keep_going


def attempt(work, codecs, job, keep_going=True):
    """``work(codecs, *job)`` -> (result, None), or (None, the one-line error) if it failed."""
    try:
        return work(codecs, *job), None
    except L3icError as e:
        return None, str(e)
    except MemoryError:
        return None, "out of memory"
    except Exception as e:  # a bug hit by one file of a batch: report it with that file, go on with the others
        if not keep_going:
            raise
        if os.environ.get("L3IC_DEBUG"):
            traceback.print_exc()
        return None, "internal error: %s: %s" % (type(e).__name__, e)


def error_line(path, error):
    """The stderr line of a file that failed (its path is not repeated when the message names it)."""
    return "l3ic: error: %s" % (error if path in error else "%s: %s" % (path, error))


def _job(work, job):
    return (job,) + attempt(work, _cache, job, _keep_going)


def run(work, jobs, workers, providers, max_pixels, batch):
    """Apply ``work(codecs, *job)`` to every job; returns [(job, result dict or None, error or None)].

    A batch shows a progress bar and reports only failures per file; a single
    file prints its result line.
    """
    if len(jobs) > 1 and workers is None:
        workers = default_jobs(providers)
    workers = max(1, min(workers or 1, len(jobs)))
    threads = 1 if workers > 1 else None
    if workers == 1:
        _init(providers, threads, max_pixels, batch)
        return _report((_job(work, j) for j in jobs), len(jobs), batch)
    with ProcessPoolExecutor(workers, initializer=_init, initargs=(providers, threads, max_pixels, batch)) as pool:
        return _report(pool.map(_job, [work] * len(jobs), jobs), len(jobs), batch)


def _report(results, total, batch):
    progress = _progress(total) if batch else None
    done = []
    for job, result, error in results:
        if error is not None:
            _write_line(error_line(job[0], error), progress)
        elif not batch:
            print(result["line"])
        done.append((job, result, error))
        if progress is not None:
            progress.update(1)
    if progress is not None:
        progress.close()
    return done


def _write_line(line, progress):
    if progress is not None and hasattr(progress, "write"):
        progress.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr)


def _progress(total):
    """On a terminal: tqdm when installed (it is not a runtime dependency), else a plain counter on stderr."""
    if not sys.stderr.isatty():
        return None  # logs and pipes get the error lines and the summary only
    try:
        from tqdm import tqdm
        return tqdm(total=total, unit="file", file=sys.stderr)
    except ImportError:
        return _Counter(total)


class _Counter:
    def __init__(self, total):
        self.total, self.n = total, 0

    def update(self, n):
        self.n += n
        print("%d/%d" % (self.n, self.total), file=sys.stderr, end="\r" if self.n < self.total else "\n")

    def close(self):
        pass


def summary(done, started, noun):
    """The closing line of a batch: files, bytes in/out, mean bpp, elapsed."""
    ok = [r for _, r, e in done if e is None]
    failed = len(done) - len(ok)
    pixels = sum(r["pixels"] for r in ok)
    line = "%d %s done, %d failed; %d bytes in, %d bytes out" % (
        len(ok), noun, failed, sum(r["bytes_in"] for r in ok), sum(r["bytes_out"] for r in ok))
    if pixels:
        line += ", mean %.3f bpp" % (sum(8.0 * r["l3ic_bytes"] / r["pixels"] for r in ok) / len(ok))
    return line + ", %.1f s" % (time.perf_counter() - started)


def run_tool(work, jobs, args, is_batch, noun):
    """The common end of the encode and decode tools: run the jobs, print a batch's summary, return the exit code."""
    check_distinct_outputs(jobs)
    started = time.perf_counter()
    done = run(work, jobs, args.jobs, args.provider, args.max_pixels, is_batch)
    if is_batch:
        print(summary(done, started, noun))
    return 1 if any(error for _, _, error in done) else 0
