"""Peak memory of encoding and decoding a large image with the command-line tools: ``python -m benchmarks.memory``.

Generates a photo-like image of ``--megapixels`` (3:2, gradients, discs and
noise, built in bands so that this process stays small), writes it as a PNG,
then runs ``python -m runtime.encode`` and ``python -m runtime.decode`` on it,
each in its own child process, and reports each child's wall time and peak
resident memory (VmHWM, read by the child itself: see ``run_measured``).  The target: 50 MP encode and decode each under 1 GiB.

Images whose latent exceeds 256 x 256 cells are coded in 128 x 128-cell tiles
with a halo (l3ic/codec.py), so the networks' activations are bounded by
the tile size; what grows with the image is the pixels themselves (Pillow's
image, the numpy array, the decoded output) and the symbols.

    python -m benchmarks.memory                     # 50 MP, model medium
    python -m benchmarks.memory --megapixels 12 --model high --keep /tmp/mem
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

LIMIT_MIB = 1024


def photo_like(height, width, seed=0, band=512):
    """A smooth synthetic photo with edges (gradients, discs, a little noise), uint8 (H, W, 3), built band by band."""
    rng = np.random.default_rng(seed)
    planes = rng.uniform([-80, -80, 60], [80, 80, 190], (3, 3))
    discs = [(rng.uniform(0, height), rng.uniform(0, width), rng.uniform(2, max(3, min(height, width) / 3)),
              rng.uniform(0, 255, 3)) for _ in range(12)]
    out = np.empty((height, width, 3), np.uint8)
    xx = np.arange(width, dtype=np.float32)[None, :]
    for y0 in range(0, height, band):
        yy = np.arange(y0, min(height, y0 + band), dtype=np.float32)[:, None]
        image = np.empty((len(yy), width, 3), np.float32)
        for c, (a, b, base) in enumerate(planes):
            image[:, :, c] = a * yy / height + b * xx / width + base
        for cy, cx, r, colour in discs:
            image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = colour
        image += rng.normal(0, 2, image.shape).astype(np.float32)
        out[y0:y0 + len(yy)] = np.clip(image, 0, 255)
    return out


_PEAK_WRAPPER = """
import atexit, os, resource, runpy, sys

def report():
    try:  # the peak of this process's own memory map, which exec started afresh
        with open("/proc/self/status") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == "darwin" else 1)
    with open(os.environ["L3IC_PEAK_FILE"], "w") as f:
        f.write(str(kib))

atexit.register(report)
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def run_measured(module, args, cwd):
    """``python -m module args`` in a child; (completed process, wall seconds, peak RSS of that child in MiB).

    The peak is read by the child itself at exit (VmHWM).  ``ru_maxrss`` of a
    child, from ``wait4`` or ``RUSAGE_CHILDREN``, is no good here: Linux keeps
    it across fork and exec, so a child reports at least the parent's peak.
    """
    with tempfile.NamedTemporaryFile(prefix="l3ic-peak-", delete=False) as f:
        peak_file = f.name
    try:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _PEAK_WRAPPER, module] + list(args), cwd=cwd,
                              env=dict(os.environ, L3IC_PEAK_FILE=peak_file), capture_output=True, text=True)
        seconds = time.perf_counter() - start
        with open(peak_file) as f:
            text = f.read().strip()
        return done, seconds, int(text) / 1024.0 if text else float("nan")
    finally:
        os.remove(peak_file)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n")[0])
    p.add_argument("--megapixels", type=float, default=50.0, help="image size in millions of pixels (default 50)")
    p.add_argument("--model", default="medium", help="model to encode with (default medium)")
    p.add_argument("--provider", default="cpu", choices=["auto", "cpu", "cuda"])
    p.add_argument("--keep", help="write the image and results into this folder and keep them (default: a temporary folder)")
    p.add_argument("--json", help="also write the results as JSON to this file")
    args = p.parse_args(argv)

    width = int(round(math.sqrt(args.megapixels * 1e6 * 1.5)))
    height = int(round(args.megapixels * 1e6 / width))
    folder = args.keep or tempfile.mkdtemp(prefix="l3ic-memory-")
    os.makedirs(folder, exist_ok=True)
    source, coded, decoded = (os.path.join(folder, n) for n in ("big.png", "big.l3ic", "big.decoded.png"))
    results = {"width": width, "height": height, "megapixels": width * height / 1e6, "model": args.model}
    try:
        start = time.perf_counter()
        pixels = photo_like(height, width)
        Image.fromarray(pixels).save(source, compress_level=1)
        results["generate_s"] = time.perf_counter() - start
        results["png_bytes"] = os.path.getsize(source)
        print("%dx%d (%.1f MP) photo-like PNG, %.1f MB, made in %.1f s"
              % (width, height, width * height / 1e6, results["png_bytes"] / 1e6, results["generate_s"]), flush=True)
        del pixels  # read back for the PSNR at the end
        steps = [("encode", "runtime.encode", [source, "-o", coded, "-m", args.model]),
                 ("decode", "runtime.decode", [coded, "-o", decoded])]
        for name, module, command in steps:
            command += ["-f", "--provider", args.provider, "--max-pixels", str(width * height)]
            done, seconds, peak = run_measured(module, command, folder)
            if done.returncode != 0:
                raise SystemExit("%s failed (exit %d): %s" % (name, done.returncode, (done.stderr or done.stdout).strip()))
            results[name] = {"seconds": seconds, "peak_rss_mib": peak, "under_1_gib": peak < LIMIT_MIB}
            print("%s: %.1f s, peak RSS %.0f MiB (%s 1 GiB)" % (name, seconds, peak, "under" if peak < LIMIT_MIB else "OVER"),
                  flush=True)
        results["l3ic_bytes"] = os.path.getsize(coded)
        results["bpp"] = 8.0 * results["l3ic_bytes"] / (width * height)
        from l3ic.image import psnr
        with Image.open(source) as original, Image.open(decoded) as back:
            results["psnr"] = psnr(np.asarray(original), np.asarray(back))
        print("%d bytes, %.3f bpp, PSNR %.2f dB" % (results["l3ic_bytes"], results["bpp"], results["psnr"]))
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0 if results["encode"]["under_1_gib"] and results["decode"]["under_1_gib"] else 1


if __name__ == "__main__":
    sys.exit(main())
