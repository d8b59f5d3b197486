"""``python -m runtime.encode INPUT... [-o OUTPUT]``: compress images to .l3ic.

One input file: prints one line (size, bits per pixel, model and quality,
time; with ``--verify`` also the PSNR of the decoded result).  Several
inputs, a folder or a glob: a batch with a progress bar and a summary line
(see ``l3ic.batch``).  ``-q`` is the quality, 0..100 (``l3ic.quality``: the
codec picks the model); ``--target-bpp`` finds, per image, the largest file
within the target.  ``--refine N`` spends N steps of encoder-side refinement
(``l3ic.refine``) per image for a better image in the same size; the files
decode as any other.
"""
import os
import sys
import time

import numpy as np

from l3ic import batch, cli
from l3ic import image as images
from l3ic.files import STDIO, check_output_path, display_name, write_bytes_atomic
from l3ic.codec import encode_picture
from l3ic.errors import L3icError
from l3ic.image import IMAGE_SUFFIXES  # the one list of image suffixes (l3ic.batch_ray imports it from here)
from l3ic.model import QUALITIES
from l3ic.options import CodecOptions, EncodeOptions
from l3ic.quality import PRESETS, served


def parse_args(argv, prog="l3ic encode"):
    p = cli.tool_parser(prog, "Compress images to l3ic files.",
                        "image files, folders or globs (PNG, JPEG, anything Pillow reads)",
                        "output .l3ic file (one input) or folder (ending in /, an existing folder, or any -o with "
                        "several inputs; created when missing); default: INPUT.l3ic next to each input")
    add_encode_flags(p)
    p.add_argument("--verify", action="store_true", help="decode the result and print its PSNR")
    batch.add_jobs_option(p)
    return p.parse_args(argv)


def add_encode_flags(parser):
    """-q, --target-bpp, --refine and --strip: what to encode with, as ``l3ic encode`` and the Ray job take them
    (``encode_options`` validates them)."""
    parser.add_argument("-q", "--quality", metavar="Q", help="quality 0..100, fractions allowed (the model that serves "
                                                               "q encodes it: %s), or a preset: %s (= %s)" % (
        ", ".join("%s %g..%g" % (name, *served(name)) for name in QUALITIES),
        ", ".join(QUALITIES), ", ".join("%g" % PRESETS[q] for q in QUALITIES)))
    parser.add_argument("--target-bpp", type=float, help="per image, the largest file within this many bits per pixel "
                                                         "(the quality is searched)")
    parser.add_argument("--refine", type=int, default=0, metavar="STEPS",
                        help="steps of encoder-side refinement: a better image in the same file size, slower encoding "
                             "(30 is a good trade-off, see docs/models.md; default 0 = off)")
    parser.add_argument("--strip", action="store_true", help="drop ICC profile and EXIF")


def encode_one(codecs, src, dst, options):
    """Encode one file; the unit of work of both the single-file and the batch mode."""
    chosen, strip, force, verify, max_pixels = options
    check_output_path(dst, inputs=[src], overwrite=force)
    picture = images.load(src, max_pixels=max_pixels, strip=strip)
    start = time.perf_counter()
    encoded = encode_picture(picture, chosen, codecs)
    seconds = time.perf_counter() - start
    data = encoded.data
    write_bytes_atomic(dst, data, overwrite=force)
    pixels = picture.width * picture.height
    quality = "" if encoded.quality is None else " q %g" % encoded.quality
    line = "%s -> %s: %dx%d %s, %d bytes, %.3f bpp, model %s%s" % (
        display_name(src, "standard input"), display_name(dst, "standard output"), picture.width, picture.height,
        kept_mode(picture), len(data), 8.0 * len(data) / pixels, encoded.model, quality)
    if verify:
        decoded = np.asarray(codecs(encoded.model).decode_to_pil(data).convert(picture.mode))
        line += ", PSNR %.2f dB" % images.psnr(picture.pixels, decoded)
    line += ", %.2f s in all" % cli.elapsed()
    for note in picture.notes + ([encoded.note] if encoded.note else []):
        line += "; note: " + note
    return {"line": line, "pixels": pixels, "bytes_in": None if src == STDIO else os.path.getsize(src),
            "bytes_out": len(data), "l3ic_bytes": len(data), "model": encoded.model, "seconds": seconds}



def kept_mode(picture):
    """The mode the file decodes to: RGB / L, with A when the alpha plane travels as side data."""
    return picture.mode + ("A" if images.ALPHA in picture.side_data else "")


def check_paths(args, is_batch, prog):
    """Refuse two mistakes before any work, whatever -f says.

    ``encode in.png out.l3ic`` (the output as cjxl and avifenc take it) would
    encode in.png and then fail on out.l3ic as a missing input; and
    ``-o x.png`` would put l3ic bytes under an image extension.
    """
    for arg in args.input:
        if arg.lower().endswith(".l3ic") and not os.path.isdir(arg):
            if len(args.input) == 2 and arg == args.input[1]:
                raise L3icError("the output is given with -o: %s %s -o %s" % (prog, args.input[0], arg))
            raise L3icError("%s is an l3ic file, not an image to encode (an output is given with -o)" % arg)
    if args.output and not batch.names_folder(args.output, is_batch) and images.is_image_name(args.output):
        raise L3icError("-o %s would put l3ic data under an image extension (%s): name it %s.l3ic"
                        % (args.output, os.path.splitext(args.output)[1], os.path.splitext(args.output)[0]))


def encode_options(args):
    """-m / -q / --target-bpp / --refine as ``EncodeOptions``, with --provider and --max-pixels checked too, before
    any work (``l3ic.options``: the checks the API and the Pillow plugin make, errors naming the flags)."""
    CodecOptions.validated(args.provider, args.max_pixels, flags=True)
    return EncodeOptions.validated(args.model, args.quality, args.target_bpp, args.refine, flags=True)


def main(argv=None, prog="l3ic encode"):
    args = parse_args(argv, prog)
    chosen = encode_options(args)
    files, is_batch = batch.expand(args.input, IMAGE_SUFFIXES)
    check_paths(args, is_batch, prog)
    batch.make_output_folder(args.output, is_batch)
    options = (chosen, args.strip, args.force, args.verify, args.max_pixels)
    jobs = [(f, batch.output_for(f, args.output, is_batch, ".l3ic"), options) for f in files]
    return batch.run_tool(encode_one, jobs, args, is_batch, "images")


if __name__ == "__main__":
    sys.exit(cli.run(main))
