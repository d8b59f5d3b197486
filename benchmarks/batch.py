"""Batch throughput: ``python -m benchmarks.batch [--images 12] [--size 768x512] [--repeat 3] [--ray]``.

Answers which default ``--jobs`` the batch mode should have: N worker
processes with one ONNX Runtime thread each, or one process whose ONNX
Runtime uses all cores (intra-op threads).  Each variant runs the real
command line (``python -m runtime.encode DIR -o OUT -f --jobs N``, then
``runtime.decode`` on the result), process start and model load included,
on the same generated images.  Variants run back to back, interleaved,
``--repeat`` times, so that a background load (e.g. a training run) hits them
alike; the table gives the median and the best run, in seconds and images/s,
and the load average before the runs.  ``--ray`` adds ``l3ic.batch_ray``
with 1 and 2 workers on one local Ray instance of 2 CPUs started by this
script (so the cluster's start-up, about 5 s, is not counted; starting the
actors and loading the model in them is, and "after 1st" leaves that out too).
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


def timed_ray(argv):
    """Time one l3ic.batch_ray run in this process (on the Ray instance it has started).

    Returns the whole run and, separately, the time from its first result to
    its last: the steady state, once the actors have started and loaded the model.
    """
    from l3ic import batch_ray
    args = batch_ray.parse_args(argv)
    jobs = batch_ray.plan(args)
    os.makedirs(args.output, exist_ok=True)
    start, stamps = time.perf_counter(), []
    for row in batch_ray.run(args, batch_ray.encode_options(args), jobs):
        if row["error"]:
            raise SystemExit("failed: %s: %s" % (row["input"], row["error"]))
        stamps.append(time.perf_counter())
    return {"encode": stamps[-1] - start, "after 1st": stamps[-1] - stamps[0]}


def variants(jobs, ray_workers):
    """(label, [timer]) per variant; a timer maps (images folder, work folder) to {stage: seconds}."""
    py = sys.executable
    out = []
    for n in jobs:
        threads = "1 ORT thread each" if n > 1 else "ORT threads = all cores"
        out.append(("--jobs %d (%d process%s, %s)" % (n, n, "es" if n > 1 else "", threads), [
            lambda src, work, n=n: {"encode": timed([py, "-m", "runtime.encode", src, "-o", work, "-f", "--jobs", str(n)], work)},
            lambda src, work, n=n: {"decode": timed([py, "-m", "runtime.decode", work, "-o", work, "-f", "--jobs", str(n)], work)},
        ]))
    for n in ray_workers:
        out.append(("l3ic.batch_ray --workers %d (1 ORT thread each)" % n, [
            lambda src, work, n=n: timed_ray(["--input", src, "--output", work, "--workers", str(n), "--quiet"]),
        ]))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.batch", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=12)
    p.add_argument("--size", default="768x512", help="WIDTHxHEIGHT")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--jobs", default="1,2", help="--jobs values to compare (empty: none)")
    p.add_argument("--ray", action="store_true", help="also time l3ic.batch_ray with 1 and 2 workers")
    args = p.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    todo = variants([int(j) for j in args.jobs.split(",") if j], (1, 2) if args.ray else ())
    root = tempfile.mkdtemp(prefix="l3ic-batch-")
    try:
        src = os.path.join(root, "images")
        os.mkdir(src)
        make_images(src, args.images, size)
        load = os.getloadavg()
        if args.ray:
            import ray
            ray.init(num_cpus=2, object_store_memory=200 << 20, include_dashboard=False, logging_level="ERROR")
        times = {}
        for repetition in range(-1, args.repeat):  # -1: a warm-up round (file cache, Ray Data), not counted
            for label, stages in todo:  # interleaved: every repetition runs each variant once
                work = tempfile.mkdtemp(dir=root)
                for timer in stages:
                    for stage, seconds in timer(src, work).items():
                        if repetition >= 0:
                            times.setdefault((label, stage), []).append(seconds)
                shutil.rmtree(work)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("%d images of %dx%d, %d repetitions after a warm-up, %d CPUs, load average before: %.2f %.2f %.2f"
          % ((args.images,) + size + (args.repeat, os.cpu_count()) + load))
    print("%-50s %-9s %9s %9s %9s" % ("variant", "stage", "median s", "best s", "images/s"))
    for (label, stage), ts in times.items():
        median = statistics.median(ts)
        images = args.images - 1 if stage == "after 1st" else args.images
        print("%-50s %-9s %9.2f %9.2f %9.2f" % (label, stage, median, min(ts), images / median))
    if args.ray:
        print("ray 'encode': the whole run without the Ray start-up; 'after 1st': from the first result to the last")


if __name__ == "__main__":
    main()
