"""``python -m runtime.encode INPUT... [-o OUTPUT]``: compress images to .l3ic.

One input file: prints one line (size, bits per pixel, time; with
``--verify`` also the PSNR of the decoded result).  Several inputs, a folder
or a glob: a batch with a progress bar and a summary line (see
``l3ic.batch``).  ``--target-bpp`` picks, per image, the best model whose
file fits the target.  ``--refine N`` spends N steps of encoder-side
refinement (``l3ic.refine``) per image for a smaller file at the same
quality; the files decode as any other.
"""
import os
import sys
import time

import numpy as np

from l3ic import batch, cli
from l3ic import image as images
from l3ic.atomic import check_output_path, write_bytes_atomic
from l3ic.codec import encode_to_target
from l3ic.errors import L3icError
from l3ic.model import DEFAULT_MODEL, QUALITIES, installed_qualities

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".gif")


def parse_args(argv, prog="l3ic encode"):
    p = cli.tool_parser(prog, "Compress images to l3ic files.",
                        "image files, folders or globs (PNG, JPEG, anything Pillow reads)",
                        "output file (one input) or folder (several inputs; default: next to each input)")
    p.add_argument("-q", "--quality", choices=QUALITIES, help="same as -m low|medium|high")
    p.add_argument("--target-bpp", type=float, help="per image, the highest-quality model whose file is within this many bits per pixel")
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="steps of encoder-side refinement: smaller files at the same quality, slower encoding "
                        "(30 is a good trade-off, see README; default 0 = off)")
    p.add_argument("--strip", action="store_true", help="drop ICC profile and EXIF")
    p.add_argument("--verify", action="store_true", help="decode the result and print its PSNR")
    batch.add_jobs_option(p)
    return p.parse_args(argv)


def encode_one(codecs, src, dst, options):
    """Encode one file; the unit of work of both the single-file and the batch mode."""
    model, target, strip, force, verify, max_pixels, refine = options
    check_output_path(dst, inputs=[src], overwrite=force)
    picture = images.load(src, max_pixels=max_pixels, strip=strip)
    start = time.perf_counter()
    if target is not None:
        data, model = encode_to_target(picture, target, codecs, installed_qualities(), refine)
    else:
        data = codecs(model).encode(picture, refine=refine)
    elapsed = time.perf_counter() - start
    write_bytes_atomic(dst, data, overwrite=force)
    pixels = picture.width * picture.height
    line = "%s -> %s: %dx%d %s, %d bytes, %.3f bpp, model %s, %.2f s" % (
        src, dst, picture.width, picture.height, picture.mode, len(data), 8.0 * len(data) / pixels, model, elapsed)
    if verify:
        decoded = np.asarray(codecs(model).decode_to_pil(data).convert(picture.mode))
        line += ", PSNR %.2f dB" % images.psnr(picture.pixels, decoded)
    for note in picture.notes:
        line += "; note: " + note
    return {"line": line, "pixels": pixels, "bytes_in": os.path.getsize(src), "bytes_out": len(data), "l3ic_bytes": len(data),
            "model": model, "seconds": elapsed}


def model_choice(args):
    """The model that -m / -q name (default medium), or None with --target-bpp; one-line errors for conflicts."""
    if args.target_bpp is not None:
        if args.model or args.quality:
            raise L3icError("--target-bpp chooses the model itself: drop -m/--quality")
        if not args.target_bpp > 0:
            raise L3icError("--target-bpp must be positive")
        return None
    if args.model and args.quality:
        raise L3icError("give -m or -q, not both")
    return args.model or args.quality or DEFAULT_MODEL


def refine_choice(args):
    if args.refine < 0:
        raise L3icError("--refine must be 0 or more steps")
    return args.refine


def main(argv=None, prog="l3ic encode"):
    args = parse_args(argv, prog)
    model = model_choice(args)
    files, is_batch = batch.expand(args.input, IMAGE_SUFFIXES)
    if is_batch and args.output and not os.path.isdir(args.output):
        raise L3icError("with several inputs, -o must be an existing folder: %s" % args.output)
    options = (model, args.target_bpp, args.strip, args.force, args.verify, args.max_pixels, refine_choice(args))
    jobs = [(f, batch.output_for(f, args.output, is_batch, ".l3ic"), options) for f in files]
    return batch.run_tool(encode_one, jobs, args, is_batch, "images")


if __name__ == "__main__":
    sys.exit(cli.run(main))
