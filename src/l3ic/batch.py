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
import glob
import os
import sys
import time
import traceback

from l3ic import cli, progress
from l3ic.codec import CodecCache
from l3ic.errors import L3icError
from l3ic.files import STDIO, display_name
from l3ic.image import IMAGE_SUFFIXES, list_images

DECODED = ".decoded"  # l3ic decode names photo.l3ic's output photo.decoded.png


MAX_DEFAULT_JOBS = 8  # each worker holds its own sessions: about 0.2 GB, 0.7 GB for 6 Mpx images


def add_jobs_option(parser):
    parser.add_argument("-j", "--jobs", type=cli.positive_int, metavar="N",
                        help="worker processes for a batch, each with one ONNX Runtime thread (default: one per "
                             "core, at most %d; 1 with CUDA); 1 = one process using all cores" % MAX_DEFAULT_JOBS)


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


def expand(inputs, suffixes=IMAGE_SUFFIXES):
    """Input arguments -> (files, whether this is a batch); a folder gives its files with ``suffixes``, except
    l3ic's own decoded outputs (``*.decoded.*``); ``-`` (standard input) only as the one input."""
    if STDIO in inputs and len(inputs) > 1:
        raise L3icError("standard input (-) can only be the one input")
    files, batch = [], len(inputs) > 1
    for arg in inputs:
        if os.path.isdir(arg):
            batch = True
            files += [f for f in list_images(arg, suffixes) if not is_decoded_output(f)]
        elif glob.has_magic(arg):
            batch = True
            files += sorted(glob.glob(arg))
        else:
            files.append(arg)  # a missing file is reported by its own job
    if batch and not files:
        raise L3icError("no input files found in %s" % ", ".join(inputs))
    return files, batch


def is_decoded_output(path):
    """Whether ``path`` is named as ``l3ic decode`` names its outputs (photo.decoded.png)."""
    return os.path.splitext(os.path.splitext(os.path.basename(path))[0])[1] == DECODED


def check_distinct_outputs(jobs):
    """Refuse a batch in which two inputs (a/x.png, b/x.png) would be written to the same output."""
    seen = {}
    for job in jobs:
        src, dst = job[0], os.path.abspath(job[1])
        if dst in seen:
            raise L3icError("%s and %s would both be written to %s; give them separate runs or outputs" % (seen[dst], src, dst))
        seen[dst] = src


def names_folder(output, batch):
    """Whether -o is a folder to write into: with several inputs always; with one when it ends in / or is a folder
    (``-o -``, standard output, never is, and takes one input)."""
    if output == STDIO:
        if batch:
            raise L3icError("-o - (standard output) takes one input")
        return False
    return bool(output) and (batch or output.endswith(("/", os.sep)) or os.path.isdir(output))


def make_output_folder(output, batch, flag="-o"):
    """Create the folder ``flag`` (-o) names (with its parents, as ``mkdir -p``): writing into a new folder needs no
    extra step."""
    if not names_folder(output, batch):
        return
    if os.path.exists(output) and not os.path.isdir(output):
        raise L3icError("%s must be a folder%s, and %s is a file" % (flag, " with several inputs" if batch else "", output))
    try:
        os.makedirs(output, exist_ok=True)
    except OSError as e:
        raise L3icError("cannot create the output folder %s: %s" % (output, e.strerror or e))


def output_for(path, output, batch, suffix):
    """Where one input's result goes: -o itself when it names a file, else INPUT's stem + ``suffix`` in the folder -o
    (or next to the input); standard input's goes to standard output unless -o says otherwise."""
    if path == STDIO and not output:
        return STDIO
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
    path = display_name(path, "standard input")
    return "l3ic: error: %s" % (error if path in error else "%s: %s" % (path, error))


def _job(work, job):
    return (job,) + attempt(work, _cache, job, _keep_going)


def run(work, jobs, workers, providers, max_pixels, batch, threads=None, report=None):
    """Apply ``work(codecs, *job)`` to every job; returns [(job, result dict or None, error or None)].

    A batch shows a progress bar on a terminal and reports only failures per
    file; a single file prints its result line to ``report`` (a stream; None:
    print nothing, ``--quiet``) and shows the progress of its stages.  ``threads``:
    ONNX Runtime threads (default: all cores for one worker, 1 per worker of several).
    """
    if len(jobs) > 1 and workers is None:
        workers = default_jobs(providers)
    workers = max(1, min(workers or 1, len(jobs)))
    threads = threads or (1 if workers > 1 else None)
    if workers == 1:
        _init(providers, threads, max_pixels, batch)
        return _report((_job(work, j) for j in jobs), jobs, batch, report)
    with ProcessPoolExecutor(workers, initializer=_init, initargs=(providers, threads, max_pixels, batch)) as pool:
        return _report(pool.map(_job, [work] * len(jobs), jobs), jobs, batch, report)


def _report(results, jobs, batch, report):
    """Print what the jobs gave as they finish: failures always, a single file's result line to ``report``."""
    bar = progress.Bar("%d files" % len(jobs) if batch else display_name(jobs[0][0], "standard input"),
                       delay=0.0 if batch else 0.5, enabled=report is not None)
    done = []
    with progress.reporting(None if batch else bar):
        for job, result, error in results:  # a single file's work runs here, as the generator is consumed
            if error is not None:
                bar.write(error_line(job[0], error))
            elif not batch and report is not None:
                bar.close()
                print(result["line"], file=report)
            done.append((job, result, error))
            if batch:
                bar("done", len(done), len(jobs))
    bar.close()
    return done


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
    """The common end of the encode and decode tools: run the jobs, print a batch's summary, return the exit code.

    Result lines go to stdout, or to stderr when stdout carries the data (``-o -``); ``--quiet`` prints errors only.
    """
    check_distinct_outputs(jobs)
    started = time.perf_counter()
    report = None if args.quiet else (sys.stderr if any(job[1] == STDIO for job in jobs) else sys.stdout)
    done = run(work, jobs, args.jobs, args.provider, args.max_pixels, is_batch, args.threads, report)
    if is_batch and report is not None:
        print(summary(done, started, noun), file=report)
    return 1 if any(error for _, _, error in done) else 0
