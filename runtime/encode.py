"""``python -m runtime.encode INPUT [-o OUTPUT]``: compress an image to .l3ic.

Prints one line per file: size, bits per pixel, time (and with ``--verify``
the PSNR of the decoded result, which decodes the written bytes again).
"""
import sys
import time

import numpy as np

from runtime import cli
from runtime import image as images
from runtime.atomic import check_output_path, write_bytes_atomic
from runtime.codec import Codec
from runtime.model import DEFAULT_MODEL


def parse_args(argv):
    p = cli.tool_parser("python -m runtime.encode", "Compress an image to an l3ic file.",
                        "image file (PNG, JPEG, anything Pillow reads)", "output file (default: INPUT with the suffix .l3ic)")
    p.add_argument("--strip", action="store_true", help="drop ICC profile and EXIF")
    p.add_argument("--verify", action="store_true", help="decode the result and print its PSNR")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    output = args.output or cli.default_output(args.input, ".l3ic")
    check_output_path(output, inputs=[args.input], overwrite=args.force)
    picture = images.load(args.input, max_pixels=args.max_pixels, strip=args.strip)
    codec = Codec(args.model or DEFAULT_MODEL, args.provider, max_pixels=args.max_pixels)
    start = time.perf_counter()
    data = codec.encode(picture)
    elapsed = time.perf_counter() - start
    write_bytes_atomic(output, data, overwrite=args.force)
    line = "%s -> %s: %dx%d %s, %d bytes, %.3f bpp, model %s, %.2f s" % (
        args.input, output, picture.width, picture.height, picture.mode, len(data),
        8.0 * len(data) / (picture.width * picture.height), codec.model.name, elapsed)
    if args.verify:
        decoded = np.asarray(codec.decode_to_pil(data).convert(picture.mode))
        line += ", PSNR %.2f dB" % images.psnr(picture.pixels, decoded)
    for note in picture.notes:
        line += "; note: " + note
    print(line)


if __name__ == "__main__":
    sys.exit(cli.run(main))
