"""``python -m runtime.decode INPUT.l3ic [-o OUTPUT.png]``: decompress an l3ic file.

The model named in the file is used unless ``-m`` says otherwise; a file made
by another model is refused (the file carries a hash of its decoder).
"""
import sys
import time

from runtime import cli
from runtime import image as images
from runtime.atomic import check_output_path
from runtime.codec import Codec, read_info
from runtime.errors import L3icError


def parse_args(argv):
    p = cli.tool_parser("python -m runtime.decode", "Decompress an l3ic file to an image.", ".l3ic file",
                        "output image; its extension picks the format (default: INPUT with .png)")
    p.add_argument("--channels", help="decode only these latent channels, e.g. 0,1,2 or 0-7 (others are zero)")
    return p.parse_args(argv)


def parse_channels(text):
    """'0,1,5-7' -> [0, 1, 5, 6, 7]."""
    if text is None:
        return None
    channels = []
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            channels += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    except ValueError:
        raise L3icError("--channels must look like 0,1,2 or 0-7, got %r" % text)
    return channels


def main(argv=None):
    args = parse_args(argv)
    output = args.output or cli.default_output(args.input, ".png")
    check_output_path(output, inputs=[args.input], overwrite=args.force)
    data = cli.read_input(args.input)
    channels = parse_channels(args.channels)
    codec = Codec(args.model or read_info(data)["model"], args.provider, max_pixels=args.max_pixels)
    start = time.perf_counter()
    picture = codec.decode_to_pil(data, channels)
    elapsed = time.perf_counter() - start
    images.save(picture, output, overwrite=args.force)
    print("%s -> %s: %dx%d %s, model %s, %.2f s" % (args.input, output, picture.width, picture.height,
                                                      picture.mode, codec.model.name, elapsed))


if __name__ == "__main__":
    sys.exit(cli.run(main))
