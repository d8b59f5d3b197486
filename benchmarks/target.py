"""How close ``--target-bpp`` lands: ``python -m benchmarks.target --images DIR [--targets 0.1,0.2,...]``.

For every image and every target X, ``l3ic.target.encode_to_target`` (the
search over continuous quality behind ``--target-bpp``) is run, and the file's
rate is compared with X.  Prints a table per target: how many files are
within [0.97 X, X] (the promise for targets inside the models' range), the
lowest and highest bpp / X, and the mean encode time; targets outside the
range of an image (below q 0 or above q 100) are counted apart.  With
``--out FILE`` the rows are also written as JSON.
"""
import argparse
import json
import time

import numpy as np

from l3ic.files import write_bytes_atomic
from l3ic.codec import CodecCache
from l3ic.target import encode_to_target
from l3ic.image import list_images, load

TARGETS = (0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5)
BAND = 0.97  # a file within [BAND * X, X] has landed


def measure(paths, targets, threads=None):
    """One row per (image, target): bpp reached, whether X was inside the image's range, seconds."""
    codec_for = CodecCache("cpu", threads)
    rows = []
    for path in paths:
        picture = load(path)
        pixels = picture.width * picture.height
        ends = [8.0 * len(encode_to_target(picture, x, codec_for).data) / pixels for x in (1e-6, 1e6)]  # q 0 and q 100
        for x in targets:
            start = time.perf_counter()
            encoded = encode_to_target(picture, x, codec_for)
            seconds = time.perf_counter() - start
            bpp = 8.0 * len(encoded.data) / pixels
            rows.append({"image": path, "target": x, "bpp": bpp, "model": encoded.model, "quality": encoded.quality,
                         "inside": ends[0] <= x <= ends[1], "seconds": seconds})
    return rows


def table(rows, targets):
    lines = ["| target bpp | images inside the range | landed in [%.2f X, X] | lowest bpp / X | highest bpp / X | "
             "outside the range | mean s |" % BAND, "|---|---|---|---|---|---|---|"]
    for x in targets:
        inside = [r for r in rows if r["target"] == x and r["inside"]]
        ratios = [r["bpp"] / x for r in inside]
        landed = sum(BAND <= q <= 1.0 for q in ratios)
        outside = sum(1 for r in rows if r["target"] == x and not r["inside"])
        seconds = np.mean([r["seconds"] for r in rows if r["target"] == x])
        lines.append("| %.2f | %d | %d | %s | %s | %d | %.2f |" % (
            x, len(inside), landed, "%.3f" % min(ratios) if ratios else "-", "%.3f" % max(ratios) if ratios else "-",
            outside, seconds))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.target", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", required=True, help="folder of test images (e.g. the Kodak set)")
    p.add_argument("--targets", default=",".join("%g" % t for t in TARGETS), help="comma-separated targets in bpp")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all cores)")
    p.add_argument("--out", help="also write the rows as JSON here")
    args = p.parse_args(argv)
    targets = [float(t) for t in args.targets.split(",")]
    rows = measure(list_images(args.images, required=True), targets, args.threads)
    print(table(rows, targets))
    if args.out:
        write_bytes_atomic(args.out, json.dumps(rows, indent=1).encode(), overwrite=True)


if __name__ == "__main__":
    main()
