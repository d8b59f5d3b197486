"""Batch throughput: ``python -m benchmarks.batch [--images 12] [--size 768x512] [--repeat 3] [--ray]``.

Answers which default ``--jobs`` the batch mode should have: N worker
processes with one ONNX Runtime thread each, or one process whose ONNX
Runtime uses all cores (intra-op threads).  Each variant runs the real
command line (``python -m runtime.encode DIR -o OUT -f --jobs N``, then
``runtime.decode`` on the result), process start and model load included,
on the same generated images.  Variants run back to back, interleaved,
``--repeat`` times, so that a background load (e.g. a training run) hits them
alike; the table gives the median and the best run, in seconds and images/s,
and the load average before the runs.  ``--ray`` adds ``runtime.batch_ray``
(a local Ray cluster started by each run) with 1 and 2 workers.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from benchmarks.speed import test_image


def make_images(folder, count, size):
    """``count`` different photos of ``size``: the bundled sample, resized, shifted and flipped."""
    w, h = size
    base = test_image((w * 5 // 4, h * 5 // 4))
    for i in range(count):
        dy, dx = (i * 37) % (base.shape[0] - h + 1), (i * 53) % (base.shape[1] - w + 1)
        crop = base[dy:dy + h, dx:dx + w]
        if i % 2:
            crop = crop[:, ::-1]
        if i % 4 >= 2:
            crop = crop[::-1]
        Image.fromarray(np.ascontiguousarray(crop)).save(os.path.join(folder, "img%02d.png" % i))


def timed(command, cwd):
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit("failed: %s\n%s" % (" ".join(command), result.stderr[-2000:]))
    return elapsed


def variants(jobs, ray_workers):
    """(label, [(stage, command builder)]) per variant; a builder maps (images, work folder) to a command."""
    py = sys.executable
    out = []
    for n in jobs:
        threads = "1 ORT thread each" if n > 1 else "ORT threads = all cores"
        out.append(("--jobs %d (%d process%s, %s)" % (n, n, "es" if n > 1 else "", threads), [
            ("encode", lambda src, work, n=n: [py, "-m", "runtime.encode", src, "-o", work, "-f", "--jobs", str(n)]),
            ("decode", lambda src, work, n=n: [py, "-m", "runtime.decode", work, "-o", work, "-f", "--jobs", str(n)]),
        ]))
    for n in ray_workers:
        out.append(("ray, %d worker%s" % (n, "s" if n > 1 else ""), [
            ("encode", lambda src, work, n=n: [py, "-m", "runtime.batch_ray", "--input", src, "--output", work,
                                               "--workers", str(n), "--num-cpus", str(max(n, 2)), "--quiet"]),
        ]))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.batch", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=12)
    p.add_argument("--size", default="768x512", help="WIDTHxHEIGHT")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--jobs", default="1,2", help="--jobs values to compare")
    p.add_argument("--ray", action="store_true", help="also time runtime.batch_ray with 1 and 2 workers")
    args = p.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    todo = variants([int(j) for j in args.jobs.split(",")], (1, 2) if args.ray else ())
    root = tempfile.mkdtemp(prefix="l3ic-batch-")
    try:
        src = os.path.join(root, "images")
        os.mkdir(src)
        make_images(src, args.images, size)
        load = os.getloadavg()
        times = {}
        for _ in range(args.repeat):
            for label, stages in todo:  # interleaved: every repetition runs each variant once
                work = tempfile.mkdtemp(dir=root)
                for stage, command in stages:
                    times.setdefault((label, stage), []).append(timed(command(src, work), root))
                shutil.rmtree(work)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("%d images of %dx%d, %d repetitions, %d CPUs, load average before: %.2f %.2f %.2f"
          % ((args.images,) + size + (args.repeat, os.cpu_count()) + load))
    print("%-50s %-7s %9s %9s %9s" % ("variant", "stage", "median s", "best s", "images/s"))
    for (label, stage), ts in times.items():
        median = statistics.median(ts)
        print("%-50s %-7s %9.2f %9.2f %9.2f" % (label, stage, median, min(ts), args.images / median))


if __name__ == "__main__":
    main()
