"""Many files in one run of ``runtime.encode`` / ``runtime.decode``.

Inputs may be files, folders (their files with the right suffixes, not
recursive) or glob patterns.  Files are processed by a pool of worker
processes, each with its own ONNX Runtime sessions (``--jobs``); a file that
fails is reported on its own line and the run goes on, exiting non-zero at the
end if anything failed.  A single input file is the same code path with one
job and no progress bar.
"""
import glob
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from runtime.codec import Codec
from runtime.errors import L3icError


class CodecCache:
    """One Codec per model name, created on first use (a worker may meet several models when decoding)."""

    def __init__(self, providers, threads, max_pixels):
        self.providers, self.threads, self.max_pixels = providers, threads, max_pixels
        self.codecs = {}

    def __call__(self, model):
        if model not in self.codecs:
            self.codecs[model] = Codec(model, self.providers, self.max_pixels, self.threads)
        return self.codecs[model]


def expand(inputs, suffixes):
    """Input arguments -> (files, whether this is a batch)."""
    files, batch = [], len(inputs) > 1
    for arg in inputs:
        if os.path.isdir(arg):
            batch = True
            files += sorted(os.path.join(arg, n) for n in os.listdir(arg)
                            if n.lower().endswith(suffixes) and os.path.isfile(os.path.join(arg, n)))
        elif glob.has_magic(arg):
            batch = True
            files += sorted(glob.glob(arg))
        else:
            files.append(arg)  # a missing file is reported by its own job
    if batch and not files:
        raise L3icError("no input files found in %s" % ", ".join(inputs))
    return files, batch


def output_for(path, output, batch, suffix):
    """Where one input's result goes: -o itself for a single file, else a file in the folder -o (or next to the input)."""
    if not batch and not (output and os.path.isdir(output)):
        return output or os.path.splitext(path)[0] + suffix
    folder = output or os.path.dirname(path)
    return os.path.join(folder, os.path.splitext(os.path.basename(path))[0] + suffix)


_cache = None


def _init(providers, threads, max_pixels):
    global _cache
    _cache = CodecCache(providers, threads, max_pixels)


def _job(work, job):
    try:
        return job, work(_cache, *job), None
    except L3icError as e:
        return job, None, str(e)
    except MemoryError:
        return job, None, "out of memory"


def run(work, jobs, workers, providers, max_pixels, batch):
    """Apply ``work(codecs, *job)`` to every job; returns [(job, result dict or None, error or None)].

    A batch shows a progress bar and reports only failures per file; a single
    file prints its result line.
    """
    workers = max(1, min(workers, len(jobs)))
    threads = 1 if workers > 1 else None
    if workers == 1:
        _init(providers, threads, max_pixels)
        return _report((_job(work, j) for j in jobs), len(jobs), batch)
    with ProcessPoolExecutor(workers, initializer=_init, initargs=(providers, threads, max_pixels)) as pool:
        return _report(pool.map(_job, [work] * len(jobs), jobs), len(jobs), batch)


def _report(results, total, batch):
    progress = _progress(total) if batch else None
    done = []
    for job, result, error in results:
        if error is not None:
            _write_line("l3ic: error: %s: %s" % (job[0], error), progress)
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
    """tqdm when installed (it is not a runtime dependency), else a plain counter on stderr."""
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
